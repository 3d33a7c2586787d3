"""Generated tables inside hand-written markdown: each generator owns one marked block of a file."""

from __future__ import annotations

from pathlib import Path


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:begin (generated; rerun the command to update) -->", f"<!-- {name}:end -->"


def replace_block(path: str | Path, name: str, body: str, title: str = "") -> None:
    """Write ``body`` between ``name``'s markers in ``path``, keeping everything around them; a missing
    block is appended (a missing file starts with ``title``); a block with one marker of two is an error,
    since appending would leave the damaged one and a copy."""
    path = Path(path)
    begin, end = markers(name)
    block = f"{begin}\n\n{body.strip()}\n\n{end}"
    text = path.read_text() if path.is_file() else (f"# {title}\n\n" if title else "")
    if (begin in text) != (end in text):
        raise ValueError(f"{path} has the {'begin' if begin in text else 'end'} marker of block '{name}' but not the other: "
                         f"repair it ({begin} ... {end}) and rerun")
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + ("\n\n" if text.strip() else "") + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def table(header: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)
