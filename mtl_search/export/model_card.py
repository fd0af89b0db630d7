"""The README.md model card of an exported model: what it predicts, how well, how to run it."""

from __future__ import annotations

import math
from typing import Any

from mtl_search.visualization.architecture import architecture_markdown

OUTPUT_MEANING = {
    "multiclass": "one logit per class; `torch.softmax(output, -1)` gives the class probabilities",
    "regression": "the predicted value in the target column's units, one per row",
}


def condition_chain(task: dict[str, Any], tasks: list[dict[str, Any]]) -> list[str]:
    """The task's name, then the task it is given, and so on up the chain of conditions."""
    by_name = {t["name"]: t for t in tasks}
    chain = [task["name"]]
    while by_name[chain[-1]].get("given"):
        chain.append(by_name[chain[-1]]["given"])
    return chain


def probability(task: dict[str, Any]) -> str:
    """What sigmoid of a binary task's output is: P(task = 1), or P(task = 1 | given = 1) for a conditional task."""
    given = task.get("given")
    return f"P({task['name']} = 1 | {given} = 1)" if given else f"P({task['name']} = 1)"


def joint(task: dict[str, Any], tasks: list[dict[str, Any]]) -> tuple[str, str]:
    """A conditional task's joint probability and the expression that computes it from the outputs.

    The towers output the conditional logit and training multiplies the probabilities down the
    chain (architectures/conditional.py), so the joint is that product here too.
    """
    chain = condition_chain(task, tasks)
    return (f"P({' and '.join(f'{name} = 1' for name in chain)})",
            " * ".join(f"torch.sigmoid(outputs[{name!r}])" for name in chain))


def output_meaning(task: dict[str, Any], tasks: list[dict[str, Any]]) -> str:
    """One line on what a task's raw output is (plain text, for model.json)."""
    if task["kind"] == "regression" and task.get("target_std") is not None:
        return (OUTPUT_MEANING["regression"] + f" (the network learned it standardised with the train split's mean "
                f"{task['target_mean']:.6g} and std {task['target_std']:.6g}, and turns it back)")
    if task["kind"] != "binary":
        return OUTPUT_MEANING[task["kind"]].replace("`", "")
    text = f"one logit per row; torch.sigmoid(output) is {probability(task)}"
    if task.get("given"):
        event, expression = joint(task, tasks)
        text += f", conditional on {task['given']} (not P({task['name']} = 1)); the joint {event} is {expression}"
    return text


def scoring(task: dict[str, Any], tasks: list[dict[str, Any]]) -> str:
    """Which rows and which prediction a task's metrics come from (training.evaluate), and
    for a regression task which of them are in the column's units."""
    if not task.get("given"):
        text = f"computed over the rows of the split where {task['name']} is labelled"
        if task["kind"] == "regression" and task.get("target_std") is not None:
            text += (f"; its `loss` is the mean squared error of the standardised target (MSE / {task['target_std']:.6g}², "
                     f"the train split's std), what training minimised; the other metrics are in the column's units")
        return text
    conditions = " and ".join(f"{name} = 1" for name in condition_chain(task, tasks)[1:])
    return (f"computed from {probability(task)} over the rows of the split where {conditions}; its loss is the "
            f"joint (entire-space) loss of {joint(task, tasks)[0]} over every labelled row")


def model_card(description: dict[str, Any], metrics: list[dict[str, Any]], record: dict[str, Any],
               notes: list[str], preprocessing: dict[str, Any], refined: dict[str, Any] | None = None) -> str:
    tasks = description["tasks"]
    task_names = [t["name"] for t in tasks]
    lines = [
        f"# {description['study']}, trial {description['trial']}",
        "",
        f"A multi-task network found by mtl-search {description['mtl_search_version']} in study "
        f"`{description['study']}` (trial {description['trial']}). Weights: {description['weights_source']}.",
        "",
        "## Tasks",
        "",
        "| task | kind | classes | output |",
        "|---|---|---|---|",
    ]
    lines += [f"| {t['name']} | {t['kind']} | {t.get('n_classes') or ''} | {_output_cell(t)} |" for t in tasks]
    conditional = [t for t in tasks if t.get("given")]
    for t in conditional:
        event, expression = joint(t, tasks)
        lines += ["", f"**{t['name']} is conditional on {t['given']}** (entire-space task, declared `given={t['given']}`): "
                  f"`torch.sigmoid(outputs[{t['name']!r}])` is {probability(t)}, the probability of {t['name']} "
                  f"for a row where {t['given']} happens, not P({t['name']} = 1). The joint {event} is `{expression}`."]
    lines += ["", "## Metrics", "", "| split | model | task | metric | value |", "|---|---|---|---|---|"]
    for entry in metrics:
        for task, values in (entry.get("values") or {}).items():
            for metric, value in values.items():
                shown = f"{value:.4g}" if isinstance(value, (int, float)) and math.isfinite(value) else str(value)
                lines.append(f"| {entry['split']} | {entry['model']} | {task} | {metric} | {shown} |")
    explained = [t for t in tasks if t.get("given") or (t["kind"] == "regression" and t.get("target_std") is not None)]
    lines += [""] + [f"{t['name']}: metrics {scoring(t, tasks)}." for t in explained] + ([""] if explained else [])
    lines += ["The search chose among architectures by their validation metrics; the test split was never used "
              "to choose anything. `metrics.json` has the same numbers.", ""]
    lines += _refined_lines(refined)
    lines += ["## Structure", "", architecture_markdown(record, task_names), "",
              "## Inputs", "", "| input | shape | dtype |", "|---|---|---|"]
    lines += [f"| `{name}` | {tuple(spec['shape'])} | {spec['dtype']} |" for name, spec in description["inputs"].items()]
    lines += [""]
    if preprocessing:
        lines += [
            "Raw rows become these inputs with the preprocessing fitted on the train split (`preprocessing.json`):",
            "",
            "```python",
            "import json, pandas as pd",
            "from mtl_search.data.preprocessing import apply_preprocessing",
            "state = json.load(open('preprocessing.json'))",
            "inputs = apply_preprocessing(state, pd.read_csv('new_rows.csv'))",
            "```",
            "",
        ]
    else:
        lines += ["The inputs need no preprocessing beyond what the table above shows.", ""]
    lines += [
        "## Loading",
        "",
        "With mtl-search installed (weights come from `weights.safetensors`; nothing is unpickled):",
        "",
        "```python",
        "import mtl_search, torch",
        "model = mtl_search.load('.')          # an nn.Module in eval mode",
        "with torch.no_grad():                 # inference: tensors you can call .numpy() on",
        "    outputs = model(inputs)           # {task: tensor}",
        "```",
        "",
    ]
    if description.get("torchscript"):
        lines += [
            "With PyTorch alone:",
            "",
            "```python",
            "import torch",
            f"model = torch.jit.load('{description['torchscript']}')",
            "outputs = model(inputs)               # inputs: {name: tensor}; outputs: {task: tensor}",
            "```",
            "",
        ]
    if description.get("onnx"):
        lines += [
            f"ONNX (`{description['onnx']}`): inputs {', '.join(description['inputs'])} (in that order), outputs "
            f"{', '.join(description['outputs'])}; the first dimension is the batch.",
            "",
        ]
    lines += ["## Files", "",
              "- `architecture.json`: the architecture spec", "- `model.json`: spec, input schema and tasks, what `mtl_search.load` reads",
              "- `weights.safetensors`: the weights"]
    if description.get("torchscript"):
        lines.append(f"- `{description['torchscript']}`: TorchScript module")
    if description.get("onnx"):
        lines.append(f"- `{description['onnx']}`: ONNX graph")
    if preprocessing:
        lines.append("- `preprocessing.json`: input preprocessing state")
    lines.append("- `metrics.json`: metrics with their splits")
    if notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def _output_cell(task: dict[str, Any]) -> str:
    if task["kind"] == "regression":
        return output_meaning(task, [task])
    if task["kind"] != "binary":
        return OUTPUT_MEANING[task["kind"]]
    # a bare | would end the table cell
    cell = f"one logit per row; `torch.sigmoid(output)` is {probability(task)}".replace("|", "\\|")
    return cell + (f", conditional on {task['given']}: see below" if task.get("given") else "")


def _refined_lines(refined: dict[str, Any] | None) -> list[str]:
    """The `mtl-search refine` record: mean ± std over training seeds, kept apart from the exported weights' numbers."""
    if not refined:
        return []
    lines = ["### Over several training seeds (`mtl-search refine`)", "", refined["model"] + ". " + refined["exported_weights"] + ".", "",
             "| split | task | metric | mean ± std | n |", "|---|---|---|---|---|"]
    for split in ("validation", "test"):
        for task, values in (refined.get(split) or {}).items():
            for metric, stats in values.items():
                # the format `mtl-search pareto` shows refined values in, so the two read alike
                lines.append(f"| {split} | {task} | {metric} | {stats['mean']:.4g} ± {stats['std']:.2g} | {stats['n']} |")
    return lines + ["", "`metrics.json` has these under `refined`.", ""]
