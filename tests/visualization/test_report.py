"""The HTML report: its content, its figures for any family, and how it renders in Chromium."""

from __future__ import annotations

import re
import struct
import subprocess
import warnings
import zlib

import optuna
import plotly.offline
import pytest

from mtl_search.architectures.describe import architecture_markdown, sharing_tables
from mtl_search.records.attributes import STUDY_ATTR
from mtl_search.visualization.report import main_figures, report_html
from tests.helpers import require_chromium

TASKS = ["a", "b", "c"]


def three_task_study() -> optuna.Study:
    """Hand-made records of three families, one pruned trial, and per-epoch history."""
    study = optuna.create_study(study_name="three <tasks>", directions=["minimize"] * 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([f"{t}/mse" for t in TASKS])
    study.set_user_attr(
        STUDY_ATTR,
        {
            "data": {"source": "synthetic", "options": {"rows": 50}},
            "tasks": [
                {"name": t, "kind": "regression", "n_classes": 0, "metrics": ["mse"], "given": None} for t in TASKS
            ],
            "input_schema": {"kind": "vector", "size": 4},
            "objectives": [{"task": t, "metric": "mse", "direction": "minimize"} for t in TASKS],
            "space": {"families": {"tree": {}, "mmoe": {}}},
            "preprocessing": {},
        },
    )
    records = [
        (
            "tree",
            {"groups": [[["a", "b", "c"]], [["a", "b"], ["c"]]], "widths": [8, 8]},
            {"tree": "0:{a,b,c} 1:{a,b}{c}"},
            (1.0, 2.0, 3.0),
        ),
        ("mmoe", {"experts": 2}, {"gates": {t: {"e0": 0.25, "e1": 0.75} for t in TASKS}}, (2.0, 1.0, 3.0)),
        (
            "cross_stitch",
            {"widths": [8]},
            {"alpha": {"after_layer_0": [[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.0, 0.2, 0.8]]}},
            (3.0, 3.0, 1.0),
        ),
        ("tree", {"groups": [[["a"], ["b"], ["c"]]], "widths": [8]}, {}, (4.0, 4.0, 4.0)),  # dominated
    ]
    for family, spec, sharing, values in records:
        history = [
            {
                "epoch": e,
                "validation": {t: {"mse": v + 1 - e} for t, v in zip(TASKS, values)},
                "weights": {t: 1.0 + 0.1 * e for t in TASKS},
            }
            for e in (1, 2)
        ]
        # the first trial kept its first epoch (training.checkpoint best); the others predate the record
        kept = {"kept_epoch": 1} if family == "tree" and values[0] == 1.0 else {}
        study.add_trial(
            optuna.trial.create_trial(
                values=list(values),
                user_attrs={
                    "candidate": {"architecture": {"family": family, **spec}},
                    "summary": f"{family} <summary>",
                    "sharing": sharing,
                    "history": history,
                    "test": {t: {"mse": 9.0} for t in TASKS},
                    "n_params": 100,
                }
                | kept,
            )
        )
    study.add_trial(
        optuna.trial.create_trial(
            state=optuna.trial.TrialState.PRUNED, user_attrs={"validation": {t: {"mse": 5.0} for t in TASKS}}
        )
    )
    return study


def test_three_task_report_has_every_section_and_draws_each_family():
    study = three_task_study()
    figures = main_figures(study)
    assert set(figures) >= {
        "pareto-front",
        "pareto-parallel-coordinates",
        "best-per-family",
        "loss-weights",
        "validation-curves",
    }
    splom_names = [trace.name for trace in figures["pareto-front"].data]
    assert splom_names == ["pruned (last validation)", "dominated", "Pareto front"]
    assert [len(trace.dimensions[0].values) for trace in figures["pareto-front"].data] == [1, 1, 3]
    stars = [trace for trace in figures["validation-curves"].data if trace.mode == "markers"]
    # one star per objective panel, on trial 0's kept epoch 1, at that epoch's value (1.0 + 1 - 1 for task a)
    assert [trace.name for trace in stars] == ["trial 0: kept epoch 1"] * 3 and all(list(t.x) == [1] for t in stars)
    assert [list(t.y) for t in stars] == [[1.0], [2.0], [3.0]]
    family_bars = figures["best-per-family"].data[0]
    assert list(family_bars.x) == ["cross_stitch", "mmoe", "tree"] and list(family_bars.y) == [3.0, 2.0, 1.0]

    page = report_html(study)
    assert page.count(plotly.offline.get_plotlyjs()[:300]) == 1  # plotly.js inlined exactly once
    assert "<script src=" not in page  # nothing fetched from the network
    for heading in (
        "Pareto front",
        "Hypervolume over trials",
        "Families compared",
        "Architectures on the front",
        "Loss weights",
        "Training curves",
        "Data and search space",
    ):
        assert f"<h2>{heading}</h2>" in page
    for div in ("trial-0-tree", "trial-1-sharing-0", "trial-2-sharing-0"):
        assert f'id="{div}"' in page
    assert "three &lt;tasks&gt;" in page and "<tasks>" not in page  # user text is escaped
    assert "trial-3-tree" not in page  # dominated trials are not drawn


def test_a_hierarchy_on_the_front_is_drawn_as_heads_on_its_stack():
    study = three_task_study()
    spec = {
        "family": "hierarchy",
        "widths": [8, 8],
        "head_depths": {"a": 1, "b": 2, "c": 2},
        "feed_upward": {"a": True},
    }
    study.add_trial(
        optuna.trial.create_trial(
            values=[0.5, 5.0, 5.0],
            user_attrs={
                "candidate": {"architecture": spec},
                "summary": "hierarchy L=2",
                "sharing": {"hierarchy": "a@1^ b@2 c@2"},
            },
        )
    )
    page = report_html(study)
    assert 'id="trial-5-stack"' in page and "a: tower reads block 1; its prediction feeds block 2" in page
    assert "trial-5-tree" not in page and "trial-0-stack" not in page


def test_sharing_reports_become_labelled_tables():
    gates = sharing_tables({"gates": {"L0.a": {"a.0": 0.5, "shared0": 0.5}, "L0.shared": {"shared0": 1.0}}}, TASKS)
    assert gates[0][:3] == ("gates", ["L0.a", "L0.shared"], ["a.0", "shared0"])
    assert gates[0][3][1][0] != gates[0][3][1][0]  # a gate without that expert: NaN, not 0
    sluice = sharing_tables(
        {"subspaces": 2, "alpha": [[[1.0, 0.0], [0.0, 1.0]]], "beta": {"a": [0.5, 0.5]}}, ["a", "b"]
    )
    assert [(title, rows, columns) for title, rows, columns, _ in sluice] == [
        ("alpha[0]", ["a", "b"], ["a", "b"]),
        ("beta", ["a"], ["layer 1", "layer 2"]),
    ]
    # with 2 subspaces per task, alpha mixes task-major subspaces: the card says which is which
    ((_, rows, columns, _),) = sharing_tables(
        {"alpha": [[[float(i == j) for j in range(4)] for i in range(4)]]}, ["a", "b"]
    )
    assert rows == columns == ["a.s0", "a.s1", "b.s0", "b.s1"]
    text = architecture_markdown(
        {"candidate": {"architecture": {"family": "mmoe"}}, "sharing": {"gates": {"a": {"e0": 1.0}}}}, ["a"]
    )
    assert "Learned `gates`" in text and "| a | 1.000 |" in text


def test_report_cli_writes_the_page_and_attaches_figures_for_the_dashboard(cli, trained_study, tmp_path):
    url, name, _ = trained_study
    result = cli("report", name, "--storage", url, "--out", str(tmp_path / "r.html"))
    assert result.code == 0, result
    page = (tmp_path / "r.html").read_text()
    assert 'id="hypervolume"' in page and 'id="pareto-front"' in page
    study = optuna.load_study(study_name=name, storage=url)
    attrs = study._storage.get_study_system_attrs(study._study_id)
    assert any(key.startswith("dashboard:plot_data:mtl-search:pareto-front:") for key in attrs)


def test_report_of_unknown_study_is_a_one_line_error(cli, trained_study, tmp_path):
    from tests.helpers import assert_one_line_error

    url, _, _ = trained_study
    assert_one_line_error(
        cli("report", "nope", "--storage", url, "--out", str(tmp_path / "r.html")), "study 'nope' not found"
    )


# -- in a real browser -------------------------------------------------------------------


def open_in_chromium(chromium: str, page: str, folder) -> tuple[str, str, bytes]:
    """(rendered DOM, browser log, screenshot PNG) of the page opened headless, offline."""
    (folder / "page.html").write_text(page)
    process = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={folder / 'profile'}",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1280,1600",
            "--force-device-scale-factor=0.5",  # a half-size screenshot: the same layout, a quarter of the pixels to decode
            "--enable-unsafe-swiftshader",  # software WebGL for scatter matrices, without deprecation messages
            "--virtual-time-budget=5000",
            f"--screenshot={folder / 'shot.png'}",
            "--dump-dom",
            (folder / "page.html").as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return process.stdout, process.stderr, (folder / "shot.png").read_bytes()


def console_errors(log: str) -> list[str]:
    return [line for line in log.splitlines() if "CONSOLE" in line and re.search(r"Uncaught|Error|error", line)]


def png_pixels(data: bytes) -> list[bytes]:
    """The rows of an 8-bit RGB(A) non-interlaced PNG, unfiltered (enough for screenshots)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    position, idat, header = 8, b"", None
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        body = data[position + 8 : position + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        position += 12 + length
    width, height, depth, colour, _, _, interlace = header
    assert depth == 8 and colour in (2, 6) and interlace == 0
    size = 3 if colour == 2 else 4
    raw, stride, rows, previous = zlib.decompress(idat), width * size, [], bytearray(width * size)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for x in range(stride):
            left = line[x - size] if x >= size else 0
            up, corner = previous[x], previous[x - size] if x >= size else 0
            if kind == 1:
                line[x] = (line[x] + left) & 255
            elif kind == 2:
                line[x] = (line[x] + up) & 255
            elif kind == 3:
                line[x] = (line[x] + (left + up) // 2) & 255
            elif kind == 4:
                p = left + up - corner
                nearest = min((abs(p - left), 0, left), (abs(p - up), 1, up), (abs(p - corner), 2, corner))[2]
                line[x] = (line[x] + nearest) & 255
        rows.append(bytes(line))
        previous = line
    return rows


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.parametrize("which", ["trained, two tasks", "hand-made, three tasks"])
def test_report_renders_in_chromium_without_console_errors(which, trained_study, tmp_path):
    chromium = require_chromium()
    url, name, _ = trained_study
    study = optuna.load_study(study_name=name, storage=url) if which.startswith("trained") else three_task_study()
    page = report_html(study)
    dom, log, screenshot = open_in_chromium(chromium, page, tmp_path)
    assert console_errors(log) == [], log
    # plotly marks each figure it drew; every figure of the page was drawn
    divs = re.findall(r'<div id="([\w-]+)" class="plotly-graph-div', page)
    drawn = set(re.findall(r'<div id="([\w-]+)" class="plotly-graph-div js-plotly-plot"', dom))
    assert divs and set(divs) == drawn
    rows = png_pixels(screenshot)
    step = len(rows[0]) // 640  # bytes per pixel
    colours = {row[i : i + 3] for row in rows for i in range(0, len(row), step)}
    assert len(colours) > 20  # text, markers and lines, not a blank page
    assert any(r > 180 and g < 90 and b < 90 for r, g, b in colours)  # the front's red markers


@pytest.mark.browser
def test_the_console_check_catches_a_broken_page(tmp_path):
    chromium = require_chromium()
    _, log, _ = open_in_chromium(
        chromium, "<html><body><script>throw new Error('boom')</script></body></html>", tmp_path
    )
    assert any("boom" in line for line in console_errors(log))


def test_front_table_shows_costs_once_and_refined_trials_as_mean_and_std():
    from mtl_search.records.objective import Objective
    from mtl_search.visualization.report import _front_table

    study = optuna.create_study(directions=["minimize", "minimize"])
    study.add_trial(
        optuna.trial.create_trial(values=[0.5, 1234.0], user_attrs={"test": {"a": {"mse": 0.6}}, "summary": "tree"})
    )
    study.set_user_attr(
        "refined:0", {"seeds": [0, 1], "validation": {"a": {"mse": {"mean": 0.55, "std": 0.05, "n": 2}}}, "test": {}}
    )
    objectives = [Objective("a", "mse", "minimize"), Objective("", "params", "minimize", kind="cost")]
    table = _front_table(study, study.trials, objectives)
    headers = re.findall(r"<th>(.*?)</th>", table)
    assert headers == ["trial", "a/mse (validation)", "a/mse (test)", "params", "architecture"]
    cells = re.findall(r"<td>(.*?)</td>", table)
    assert cells == ["0", "0.5; 0.55 ± 0.05 (n=2)", "0.6", "1,234", "tree"]  # the search's run chose the front
    assert "mean ± std over their training seeds" in table


def test_report_shows_the_measured_affinity_and_why_trials_left_the_front():
    study = three_task_study()
    study.set_user_attr(
        "affinity",
        {
            "tasks": TASKS,
            "matrix": [[1.0, 0.7, 0.5], [0.7, 1.0, 0.52], [0.5, 0.52, 1.0]],
            "measure": "easy_hard",
            "method": "lu2017 easy/hard agreement",
            "seeded": 3,
            "chain": [[["a", "b", "c"]], [["a", "b"], ["c"]]],
        },
    )
    study.enqueue_trial({})  # a seeded tree still waiting to run
    waiting = len(study.trials) - 1
    page = report_html(study)
    assert "<h2>Task affinity</h2>" in page and "<td>0.700</td>" in page and "about 0.5 = unrelated" in page
    assert "Grouping order: {a,b,c} → {a,b}{c}.</p>" in page
    assert f"<tr><td>{waiting}</td><td>waiting</td><td>not started</td></tr>" in page
    assert "<h2>Trials not on the front</h2>" in page  # its one pruned trial has no reason: listed as such
    assert "<td>4</td><td>pruned</td><td>no reason recorded</td>" in page


def _front_trial(study: optuna.Study, spec: dict, sharing: dict) -> int:
    study.add_trial(
        optuna.trial.create_trial(
            values=[0.5, 5.0, 5.0],
            user_attrs={"candidate": {"architecture": spec}, "summary": spec["family"], "sharing": sharing},
        )
    )
    return len(study.trials) - 1


def test_a_learned_branching_on_the_front_is_drawn_as_its_tree_with_the_parent_choices():
    import torch

    from mtl_search.architectures import build_model
    from mtl_search.tasks import Task

    spec = {"family": "ltb", "widths": [8, 8], "nodes": [2, 2], "initial_temperature": 1.0, "annealing": 0.5}
    model = build_model(spec, {"kind": "vector", "size": 4}, [Task(name=t, kind="regression") for t in TASKS])
    with torch.no_grad():  # both layer-1 nodes read node 0; a and b read node 0, c node 1: split at depth 1
        model.body.parent_logits[0].copy_(torch.tensor([[3.0, 0.0], [2.0, 0.0]]))
        for task, logits in zip(TASKS, ([1.0, 0.0], [2.0, 0.0], [0.0, 1.0])):
            model.body.tower_logits[task].copy_(torch.tensor(logits))
    sharing = model.eval().sharing_report()
    study = three_task_study()
    number = _front_trial(study, spec, sharing)
    page = report_html(study)
    assert f'id="trial-{number}-tree"' in page and "learned branching" in page
    assert "depth 1, width 8: a, b (shared)" in page
    assert f'id="trial-{number}-sharing-0"' in page and f'id="trial-{number}-sharing-1"' in page  # parents per depth
    text = architecture_markdown({"candidate": {"architecture": spec}, "sharing": sharing}, TASKS)
    assert "Learned branching" in text and "| 1 | 8 | {a, b} {c} |" in text
    assert "learned `tree`: 0:{a,b,c} 1:{a,b}{c}" in text


def test_task_attention_masks_on_the_front_are_drawn():
    import torch

    from mtl_search.architectures import build_model
    from mtl_search.tasks import Task

    spec = {"family": "mtan", "widths": [6, 6], "attention_width": 3}
    torch.manual_seed(0)
    model = build_model(spec, {"kind": "vector", "size": 4}, [Task(name=t, kind="regression") for t in TASKS]).eval()
    model({"x": torch.randn(20, 4)})
    sharing = model.sharing_report()
    study = three_task_study()
    number = _front_trial(study, spec, sharing)
    page = report_html(study)
    # the mean mask per task and stage, then the correlation of the tasks' channel masks per stage
    assert all(f'id="trial-{number}-sharing-{i}"' in page for i in range(3))
    tables = sharing_tables(sharing, TASKS)
    assert [(title, rows, columns) for title, rows, columns, _ in tables] == [
        ("masks", TASKS, ["stage 1", "stage 2"]),
        ("mask_correlation[0]", TASKS, TASKS),
        ("mask_correlation[1]", TASKS, TASKS),
    ]
