"""Architecture figures: the task-grouping tree and the heads on a shared stack, drawn from the spec."""

from __future__ import annotations

from mtl_search.visualization.architecture import stack_figure, tree_figure

TASKS = ["click", "purchase", "dwell"]
HIERARCHY = {
    "widths": [64, 64, 64, 64],
    "head_depths": {"click": 1, "purchase": 2, "dwell": 3},
    "feed_upward": {"click": True, "purchase": False, "dwell": True},
    "prediction_embedding": 4,
}


def test_the_stack_figure_hangs_each_head_under_the_block_it_reads():
    figure = stack_figure(HIERARCHY, TASKS)
    nodes = figure.data[-1]
    # the fourth width is never built (no head above block 3), so it is not drawn
    assert list(nodes.text) == [
        "input",
        "block 1",
        "block 2",
        "block 3",
        "click tower",
        "purchase tower",
        "dwell tower",
    ]
    assert list(nodes.x[4:]) == [1.0, 2.0, 3.0]
    assert "click: tower reads block 1; its prediction feeds block 2" in nodes.hovertext
    assert "purchase: tower reads block 2" in nodes.hovertext


def test_only_a_head_below_the_top_feeds_a_block_and_its_edge_is_drawn():
    fed = stack_figure(HIERARCHY, TASKS).data[2]
    # one dashed edge (from, to, gap): click's, from its tower up to block 2; dwell is the top head
    assert fed.line.dash == "dash" and list(fed.x) == [1.0, 2.0, None] and fed.showlegend
    unfed = stack_figure(dict(HIERARCHY, feed_upward={}), TASKS).data[2]
    assert list(unfed.x) == [] and not unfed.showlegend


def test_heads_at_one_depth_do_not_overlap():
    figure = stack_figure(dict(HIERARCHY, head_depths={"click": 2, "purchase": 2, "dwell": 2}), TASKS)
    heads = list(zip(figure.data[-1].x[3:], figure.data[-1].y[3:]))
    assert len(set(heads)) == 3


def test_each_figure_is_drawn_only_from_its_own_keys():
    tree = {"widths": [32, 16], "groups": [[["click", "purchase", "dwell"]], [["click", "purchase"], ["dwell"]]]}
    assert stack_figure(tree, TASKS) is None and tree_figure(HIERARCHY, TASKS) is None
    texts = list(tree_figure(tree, TASKS).data[-1].text)
    assert texts[:4] == ["input", "{click,purchase,dwell}", "{click,purchase}", "{dwell}"]
