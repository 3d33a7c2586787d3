"""The CFG encoding: a grammar whose non-terminals each expand to a finite, ordered list of terminals.

A *semantic encoding* is an integer vector with one index per non-terminal (an *axis*); the encoding
space is the n-dimensional grid of the RLDF paper. The start production is a template such as
``"a <size> <colour> <object> on a <background> background"``; decoding fills each ``<axis>`` with the
chosen terminal, and parsing inverts that exactly.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import yaml

from pipeline.errors import ConfigError

Encoding = tuple[int, ...]
_SLOT = re.compile(r"<([A-Za-z_][A-Za-z0-9_]*)>")


@dataclass(frozen=True)
class Axis:
    """One non-terminal of the grammar and its ordered terminals (neighbours should be semantically close)."""

    name: str
    choices: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.choices)


class Grammar:
    """A prompt grammar with one start template and one ordered terminal list per axis."""

    def __init__(
        self,
        name: str,
        start: str,
        rules: Mapping[str, Sequence[str]],
        class_axis: str | None = None,
        groups: Mapping[str, Mapping[str, Sequence[str]]] | None = None,
    ) -> None:
        self.name = name
        self.start = " ".join(str(start).split())
        if not rules:
            raise ConfigError(f"grammar '{name}': 'rules' is empty")
        axes = []
        for axis_name, choices in rules.items():
            if choices is None or len(choices) == 0:
                raise ConfigError(f"grammar '{name}': axis '{axis_name}' has no choices")
            terms = tuple(" ".join(str(c).split()) for c in choices)
            if len(set(t.lower() for t in terms)) != len(terms):
                raise ConfigError(f"grammar '{name}': axis '{axis_name}' repeats a choice")
            axes.append(Axis(str(axis_name), terms))
        self.axes: tuple[Axis, ...] = tuple(axes)
        self._index = {a.name: i for i, a in enumerate(self.axes)}
        slots = _SLOT.findall(self.start)
        unknown = [s for s in slots if s not in self._index]
        if unknown:
            raise ConfigError(f"grammar '{name}': start template uses unknown attribute '<{unknown[0]}>'")
        missing = [a.name for a in self.axes if a.name not in slots]
        if missing:
            raise ConfigError(f"grammar '{name}': axis '{missing[0]}' does not appear in the start template")
        if len(set(slots)) != len(slots):
            raise ConfigError(f"grammar '{name}': an axis appears twice in the start template")
        if class_axis is not None and class_axis not in self._index:
            raise ConfigError(f"grammar '{name}': class_axis '{class_axis}' is not an axis")
        self.class_axis = class_axis
        self._lookup = [{c.lower(): i for i, c in enumerate(a.choices)} for a in self.axes]  # choice -> index, per axis
        self.groups: dict[str, dict[str, list[str]]] = {}
        for group, axes in (groups or {}).items():
            for axis_name in axes or {}:
                if axis_name not in self._index:
                    raise ConfigError(f"grammar '{name}': group '{group}' names unknown attribute '{axis_name}'")
                if axis_name == class_axis:
                    raise ConfigError(f"grammar '{name}': group '{group}' may not replace the class axis '{class_axis}'")
            self.groups[str(group)] = {str(k): list(v) for k, v in (axes or {}).items()}
        for group in self.groups:
            self.for_group(group)  # every group's grammar loads (non-empty, no repeated choice)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_yaml(cls, path: str | Path) -> "Grammar":
        """Load a grammar file (the same format as ``conf/grammar/*.yaml``)."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"grammar file '{path}' does not exist")
        data = yaml.safe_load(path.read_text())
        data = {k: v for k, v in data.items() if not k.startswith("_")}
        return cls(**data)

    def with_choices(self, axis: str, choices: Sequence[str]) -> "Grammar":
        """A copy whose ``axis`` expands to ``choices`` (e.g. the class axis filled from a dataset)."""
        self.axis(axis)
        rules = {a.name: (list(choices) if a.name == axis else list(a.choices)) for a in self.axes}
        return Grammar(self.name, self.start, rules, self.class_axis, self.groups)

    def for_group(self, group: str | None) -> "Grammar":
        """The grammar of a class group: the axes the group names take its vocabulary (a shark's scenes are
        underwater, a toaster's in kitchens), the others stay. ``None`` is this grammar."""
        if group is None:
            return self
        if group not in self.groups:
            known = ", ".join(self.groups) or "none"
            raise ConfigError(f"grammar '{self.name}' has no group '{group}' (groups: {known})")
        rules = {a.name: self.groups[group].get(a.name, list(a.choices)) for a in self.axes}
        return Grammar(f"{self.name}/{group}", self.start, rules, self.class_axis)

    def restrict(self, fix: Mapping[str, str] | None = None, exclude: Mapping[str, Sequence[str]] | None = None) -> "Grammar":
        """A sub-grammar for attribute control and concept exclusion: each axis in ``fix`` keeps only the
        named choice, each choice in ``exclude`` is removed (the others keep their order). Prompts of the
        sub-grammar are prompts of this one."""
        fix = dict(fix or {})
        exclude = {k: [v] if isinstance(v, str) else list(v or []) for k, v in (exclude or {}).items()}
        for key, what in (("fix", fix), ("exclude", exclude)):
            for axis_name in what:
                if axis_name not in self._index:
                    raise ConfigError(f"env.{key}: grammar '{self.name}' has no attribute '{axis_name}' (known: {', '.join(self._index)})")
        def choice(key: str, axis: Axis, term: str) -> str:
            try:
                return axis.choices[self._choice_index(axis, term)]
            except ConfigError as e:
                raise ConfigError(f"env.{key}: {e}") from None

        rules = {}
        for a in self.axes:
            keep = list(a.choices)
            if a.name in exclude:
                drop = {choice("exclude", a, c) for c in exclude[a.name]}
                keep = [c for c in keep if c not in drop]
            if a.name in fix:
                chosen = choice("fix", a, fix[a.name])
                if chosen not in keep:
                    raise ConfigError(f"env.fix: '{chosen}' of attribute '{a.name}' is also excluded")
                keep = [chosen]
            if not keep:
                raise ConfigError(f"env.exclude removes every choice of attribute '{a.name}'")
            rules[a.name] = keep
        return Grammar(self.name, self.start, rules, self.class_axis, self.groups)

    def translate(self, encoding: Sequence[int], source: "Grammar") -> Encoding:
        """An encoding of ``source`` (same axes, other choice lists, e.g. before :meth:`restrict`) on this
        grid: each choice by name, or, where this grammar lacks it, the nearest choice it has in
        ``source``'s order (lower first on ties); an axis with no choice in common (a class group's own
        vocabulary) takes the same relative position."""
        enc = source.check(encoding)
        out = []
        for j, (a, src, i) in enumerate(zip(self.axes, source.axes, enc)):
            name = src.choices[i].lower()
            mine = self._lookup[j]  # once per sample: a dict, not a scan of 21,841 class names
            if name in mine:
                out.append(mine[name])
                continue
            src_pos = source._lookup[j]
            ranked = sorted((abs(src_pos[c] - i), src_pos[c], k) for c, k in mine.items() if c in src_pos)
            out.append(ranked[0][2] if ranked else min(len(a) - 1, i * len(a) // len(src)))
        return tuple(out)

    # ------------------------------------------------------------------ the grid
    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(a) for a in self.axes)

    @property
    def size(self) -> int:
        """Number of encodings in the grid."""
        n = 1
        for k in self.shape:
            n *= k
        return n

    def axis(self, name: str) -> Axis:
        return self.axes[self.axis_index(name)]

    def axis_index(self, name: str) -> int:
        if name not in self._index:
            known = ", ".join(self._index)
            raise ConfigError(f"grammar '{self.name}' has no attribute '{name}' (known: {known})")
        return self._index[name]

    def grid(self) -> Iterator[Encoding]:
        """Every encoding, in lexicographic order."""
        return itertools.product(*(range(k) for k in self.shape))

    def check(self, encoding: Sequence[int]) -> Encoding:
        """Return ``encoding`` as a tuple, or raise if it is not on the grid."""
        enc = tuple(int(i) for i in encoding)
        if len(enc) != len(self.axes) or any(not 0 <= i < k for i, k in zip(enc, self.shape)):
            raise ConfigError(f"encoding {list(enc)} is not on the grid of shape {list(self.shape)}")
        return enc

    # ------------------------------------------------------------------ decode / parse
    def decode(self, encoding: Sequence[int]) -> str:
        """The prompt of an encoding (deterministic)."""
        enc = self.check(encoding)
        words = {a.name: a.choices[i] for a, i in zip(self.axes, enc)}
        return _SLOT.sub(lambda m: words[m.group(1)], self.start)

    def describe(self, encoding: Sequence[int]) -> dict[str, str]:
        """Axis name -> chosen terminal."""
        enc = self.check(encoding)
        return {a.name: a.choices[i] for a, i in zip(self.axes, enc)}

    def encode(self, attributes: Mapping[str, str]) -> Encoding:
        """The encoding of a full attribute assignment (axis name -> terminal)."""
        enc = []
        for a in self.axes:
            if a.name not in attributes:
                raise ConfigError(f"attribute '{a.name}' is missing")
            enc.append(self._choice_index(a, attributes[a.name]))
        extra = set(attributes) - set(self._index)
        if extra:
            raise ConfigError(f"grammar '{self.name}' has no attribute '{sorted(extra)[0]}'")
        return tuple(enc)

    def encode_choice(self, axis: str, term: str) -> int:
        """The index of ``term`` among ``axis``'s choices (case-insensitive)."""
        return self._choice_index(self.axis(axis), term)

    @cached_property
    def _parser(self) -> re.Pattern:
        """The prompt parser, compiled on first use: an alternation over every choice (at ImageNet-21k's 21,841 classes a
        regular expression that takes seconds to compile, for each class group's grammar, so none is built unused)."""
        return re.compile(self._pattern(), re.IGNORECASE)

    def parse(self, prompt: str) -> Encoding:
        """Invert :meth:`decode`: a prompt of this grammar back to its encoding."""
        m = self._parser.fullmatch(" ".join(prompt.split()))
        if m is None:
            raise ConfigError(f"prompt '{prompt}' is not in grammar '{self.name}'")
        return tuple(self._choice_index(a, m.group(a.name)) for a in self.axes)

    def extract(self, prompt: str) -> dict[str, int]:
        """Lenient parse of any free-text prompt: the axes whose terminals it mentions (first mention wins).

        A text-to-image model receives arbitrary prompts (``"a photo of a star"``); this finds what of
        the grammar they say, leaving unmentioned axes out.
        """
        text = " " + " ".join(re.sub(r"[^\w\s'-]", " ", prompt.lower()).split()) + " "
        found: dict[str, int] = {}
        for a in self.axes:
            best: tuple[int, int] | None = None  # (position, choice index)
            for i, term in sorted(enumerate(a.choices), key=lambda t: -len(t[1])):
                pos = text.find(" " + term.lower() + " ")
                if pos >= 0 and (best is None or pos < best[0]):
                    best = (pos, i)
            if best is not None:
                found[a.name] = best[1]
        return found

    def _choice_index(self, axis: Axis, term: str) -> int:
        norm = " ".join(str(term).split()).lower()
        i = self._lookup[self._index[axis.name]].get(norm)  # ``axis`` is one of this grammar's
        if i is not None:
            return i
        raise ConfigError(f"'{term}' is not a choice of attribute '{axis.name}'")

    def _pattern(self) -> str:
        parts, last = [], 0
        for m in _SLOT.finditer(self.start):
            parts.append(re.escape(self.start[last : m.start()]))
            choices = sorted(self.axis(m.group(1)).choices, key=len, reverse=True)
            parts.append(f"(?P<{m.group(1)}>" + "|".join(re.escape(c) for c in choices) + ")")
            last = m.end()
        parts.append(re.escape(self.start[last:]))
        return "".join(parts)

    def __repr__(self) -> str:
        dims = "x".join(str(k) for k in self.shape)
        return f"Grammar({self.name!r}, axes={[a.name for a in self.axes]}, grid={dims})"
