"""Which image indices of a class take a search render (``clone.reuse_search_renders``, ``clone.reuse_max_share``)."""

from types import SimpleNamespace

import pytest

from pipeline.clone.search_renders import SearchRender, assign, reuse_limit


def render(prompt, seed=0):
    return SearchRender(prompt, seed, 0.9, "png", 0, 1)


def picks(*prompts):
    return [SimpleNamespace(prompt=p) for p in prompts]


def test_each_render_serves_one_index_in_sequence_order():
    seq = picks("a", "b", "a", "c", "a")
    out = assign(seq, [render("a", 1), render("a", 2), render("c")], n=5)
    assert {i: (r.prompt, r.seed) for i, r in out.items()} == {0: ("a", 1), 2: ("a", 2), 3: ("c", 0)}


def test_only_the_first_n_picks_count():
    assert sorted(assign(picks("a", "b", "c"), [render("a"), render("c")], n=2)) == [0]


def test_the_limit_caps_the_reused_indices_and_keeps_the_earliest():
    seq = picks("a", "b", "c", "d", "e", "f")
    renders = [render(p) for p in "abcdef"]
    assert sorted(assign(seq, renders, n=6, limit=2)) == [0, 1]
    assert assign(seq, renders, n=6, limit=0) == {}
    assert len(assign(seq, renders, n=6, limit=None)) == 6
    # the same picks with the same limit give the same indices, whatever comes after them: resumable
    assert assign(seq, renders, n=6, limit=3) == assign(seq + picks("a"), renders, n=6, limit=3)


@pytest.mark.parametrize("share, n, want", [(0.25, 12, 3), (0.25, 200, 50), (0.29, 100, 29), (0.3, 10, 3),
                                            (1.0, 7, 7), (0.0, 9, 0), (0.25, 3, 0)])
def test_reuse_limit_rounds_down_without_float_error(share, n, want):
    assert reuse_limit(share, n) == want
