"""Generated blocks in hand-written markdown: replaced in place, appended when missing, prose kept."""

from pipeline.markdown import markers, replace_block, table


def test_replace_block_keeps_prose_and_other_blocks(tmp_path):
    md = tmp_path / "r.md"
    replace_block(md, "a", "first", title="T")
    assert md.read_text().startswith("# T\n\n") and "first" in md.read_text()
    replace_block(md, "b", "other")
    md.write_text(md.read_text().replace(markers("a")[0], "intro\n" + markers("a")[0]) + "\noutro\n")
    replace_block(md, "a", "second")
    text = md.read_text()
    assert "first" not in text and "second" in text and "other" in text
    assert text.index("intro") < text.index("second") < text.index("other") < text.index("outro")
    assert text.count(markers("a")[0]) == 1 and text.count(markers("b")[1]) == 1


def test_table():
    assert table(["x", "y"], [[1, "a"]]).splitlines() == ["| x | y |", "|---|---|", "| 1 | a |"]


def test_a_block_with_one_marker_is_an_error_not_a_second_copy(tmp_path):
    import pytest

    md = tmp_path / "r.md"
    begin, end = markers("a")
    md.write_text(f"prose\n\n broken begin\n\nold\n\n{end}\n")
    with pytest.raises(ValueError, match="has the end marker of block 'a' but not the other"):
        replace_block(md, "a", "new")
    assert "new" not in md.read_text()
