import pytest

from pipeline.errors import ConfigError
from pipeline.grammar import Grammar


def test_round_trip_over_the_whole_grid(grammar):
    prompts = set()
    for enc in grammar.grid():
        prompt = grammar.decode(enc)
        assert grammar.parse(prompt) == enc
        prompts.add(prompt)
    assert len(prompts) == grammar.size == 10 * 8 * 4 * 3 * 3


def test_decode_is_the_start_template(grammar):
    enc = grammar.encode({"object": "star", "colour": "blue", "background": "black", "size": "large", "pattern": "dotted"})
    assert grammar.decode(enc) == "a large blue dotted star on a black background"
    assert grammar.parse("A  large blue dotted STAR on a black background") == enc


def test_multiword_terminals_parse():
    g = Grammar("t", "a <colour> <thing>", {"colour": ["red", "dark red"], "thing": ["car", "race car"]})
    for enc in g.grid():
        assert g.parse(g.decode(enc)) == enc


def test_extract_reads_free_text(grammar):
    said = grammar.extract("a photo of a red star, large")
    index = lambda axis, term: grammar.axis(axis).choices.index(term)  # noqa: E731
    assert said == {"object": index("object", "star"), "colour": index("colour", "red"), "size": index("size", "large")}


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda g: g.parse("a purple elephant"), "not in grammar"),
        (lambda g: g.axis("shape"), "has no attribute 'shape'"),
        (lambda g: g.encode({"object": "circle"}), "attribute 'colour' is missing"),
        (lambda g: g.check((0, 0, 0, 0, 99)), "not on the grid"),
        (lambda g: g.with_choices("object", []), "has no choices"),
    ],
)
def test_errors_name_the_problem(grammar, call, message):
    with pytest.raises(ConfigError, match=message):
        call(grammar)


def test_invalid_grammars_are_rejected():
    with pytest.raises(ConfigError, match="unknown attribute '<size>'"):
        Grammar("t", "a <size> <thing>", {"thing": ["a"]})
    with pytest.raises(ConfigError, match="repeats a choice"):
        Grammar("t", "a <thing>", {"thing": ["a", "A"]})
    with pytest.raises(ConfigError, match="does not appear"):
        Grammar("t", "a <thing>", {"thing": ["a"], "colour": ["red"]})


def test_with_choices_fills_the_class_axis(grammar):
    g = grammar.with_choices("object", ["circle", "square"])
    assert g.shape[0] == 2 and g.shape[1:] == grammar.shape[1:]
