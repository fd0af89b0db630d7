"""The README.md model card of an exported model: what it predicts, how well, how to run it."""

from __future__ import annotations

import math
from typing import Any

import torch

from mtl_search.architectures.describe import architecture_markdown
from mtl_search.export.inputs import shape_text

OUTPUT_MEANING = {
    "multiclass": "one logit per class{order}; `torch.softmax(output, -1)` gives the class probabilities",
    "regression": "the predicted value in the target column's units, one per row",
}


def with_labels(tasks: list[dict[str, Any]], targets: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The tasks with the class labels the preprocessing recorded (``classes``, class 0 first), for
    the wording below; data that records none (synthetic, built-in sets) leaves them as they are."""
    labelled = []
    for task in tasks:
        classes = ((targets or {}).get(task["name"]) or {}).get("classes")
        if task["kind"] in ("binary", "multiclass") and classes:
            task = task | {"classes": [str(c) for c in classes]}
        labelled.append(task)
    return labelled


def event(task: dict[str, Any]) -> str:
    """What class 1 of a binary task is: ``churn = 'yes'`` where the label is recorded, else ``churn = 1``."""
    classes = task.get("classes")
    if classes and len(classes) == 2 and classes != ["0", "1"]:
        return f"{task['name']} = {classes[1]!r}"
    return f"{task['name']} = 1"


def class_order(task: dict[str, Any]) -> str:
    """A multiclass task's classes in output order: "classes ['a', 'b'] in this order" (empty where the labels are not recorded)."""
    classes = task.get("classes")
    if not classes:
        return ""
    unseen = int(task.get("n_classes") or 0) - len(classes)
    return f"classes {classes} in this order" + (
        f", then {unseen} declared class(es) the data never held" if unseen > 0 else ""
    )


def multiclass_meaning(task: dict[str, Any]) -> str:
    """A multiclass output, with its class order where the labels are recorded (markdown)."""
    order = class_order(task)
    return OUTPUT_MEANING["multiclass"].format(order=f", over {order}" if order else "")


def condition_chain(task: dict[str, Any], tasks: list[dict[str, Any]]) -> list[str]:
    """The task's name, then the task it is given, and so on up the chain of conditions."""
    by_name = {t["name"]: t for t in tasks}
    chain = [task["name"]]
    while by_name[chain[-1]].get("given"):
        chain.append(by_name[chain[-1]]["given"])
    return chain


def chain_events(task: dict[str, Any], tasks: list[dict[str, Any]]) -> list[str]:
    """:func:`event` of the task, then of each task up its chain of conditions."""
    by_name = {t["name"]: t for t in tasks}
    return [event(by_name[name]) for name in condition_chain(task, tasks)]


def probability(task: dict[str, Any], tasks: list[dict[str, Any]]) -> str:
    """What sigmoid of a binary task's output is: P(task = 1), or P(task = 1 | given = 1) for a conditional task."""
    events = chain_events(task, tasks)
    return f"P({events[0]} | {events[1]})" if task.get("given") else f"P({events[0]})"


def joint(task: dict[str, Any], tasks: list[dict[str, Any]]) -> tuple[str, str]:
    """A conditional task's joint probability and the expression that computes it from the outputs.

    The towers output the conditional logit and training multiplies the probabilities down the
    chain (architectures/conditional.py), so the joint is that product here too.
    """
    return (
        f"P({' and '.join(chain_events(task, tasks))})",
        " * ".join(f"torch.sigmoid(outputs[{name!r}])" for name in condition_chain(task, tasks)),
    )


def output_meaning(task: dict[str, Any], tasks: list[dict[str, Any]]) -> str:
    """One line on what a task's raw output is (plain text, for model.json)."""
    if task["kind"] == "regression" and task.get("target_std") is not None:
        return (
            OUTPUT_MEANING["regression"] + f" (the network learned it standardised with the train split's mean "
            f"{task['target_mean']:.6g} and std {task['target_std']:.6g}, and turns it back)"
        )
    if task["kind"] == "regression":
        return OUTPUT_MEANING["regression"]
    if task["kind"] == "multiclass":
        return multiclass_meaning(task).replace("`", "")
    text = f"one logit per row; torch.sigmoid(output) is {probability(task, tasks)}"
    if task.get("given"):
        both, expression = joint(task, tasks)
        text += f", conditional on {task['given']} (not P({event(task)})); the joint {both} is {expression}"
    return text


def scoring(task: dict[str, Any], tasks: list[dict[str, Any]]) -> str:
    """Which rows and which prediction a task's metrics come from (training.evaluate), and
    for a regression task which of them are in the column's units."""
    if not task.get("given"):
        text = f"computed over the rows of the split where {task['name']} is labelled"
        if task["kind"] == "regression" and task.get("target_std") is not None:
            text += (
                f"; its `loss` is the mean squared error of the standardised target (MSE / {task['target_std']:.6g}², "
                f"the train split's std), what training minimised; the other metrics are in the column's units"
            )
        return text
    conditions = " and ".join(chain_events(task, tasks)[1:])
    return (
        f"computed from {probability(task, tasks)} over the rows of the split where {conditions}; its loss is the "
        f"joint (entire-space) loss of {joint(task, tasks)[0]} over every labelled row"
    )


def model_card(
    description: dict[str, Any],
    metrics: list[dict[str, Any]],
    record: dict[str, Any],
    notes: list[str],
    preprocessing: dict[str, Any],
    refined: dict[str, Any] | None = None,
    example: dict[str, torch.Tensor] | None = None,
) -> str:
    """The card's markdown; ``example``: inputs whose first rows the torch-only snippet shows."""
    tasks = with_labels(description["tasks"], (preprocessing or {}).get("targets"))
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
    lines += [f"| {t['name']} | {t['kind']} | {t.get('n_classes') or ''} | {_output_cell(t, tasks)} |" for t in tasks]
    conditional = [t for t in tasks if t.get("given")]
    for t in conditional:
        both, expression = joint(t, tasks)
        lines += [
            "",
            f"**{t['name']} is conditional on {t['given']}** (entire-space task, declared `given={t['given']}`): "
            f"`torch.sigmoid(outputs[{t['name']!r}])` is {probability(t, tasks)}, the probability of {t['name']} "
            f"for a row where {t['given']} happens, not P({event(t)}). The joint {both} is `{expression}`.",
        ]
    lines += ["", "## Metrics", "", "| split | model | task | metric | value |", "|---|---|---|---|---|"]
    for entry in metrics:
        for task, values in (entry.get("values") or {}).items():
            for metric, value in values.items():
                shown = f"{value:.4g}" if isinstance(value, (int, float)) and math.isfinite(value) else str(value)
                lines.append(f"| {entry['split']} | {entry['model']} | {task} | {metric} | {shown} |")
    explained = [t for t in tasks if t.get("given") or (t["kind"] == "regression" and t.get("target_std") is not None)]
    lines += [""] + [f"{t['name']}: metrics {scoring(t, tasks)}." for t in explained] + ([""] if explained else [])
    lines += [
        "The search chose among architectures by their validation metrics; the test split was never used "
        "to choose anything. `metrics.json` has the same numbers.",
        "",
    ]
    lines += _refined_lines(refined)
    lines += [
        "## Structure",
        "",
        architecture_markdown(record, task_names),
        "",
        "## Inputs",
        "",
        "| input | shape | dtype |",
        "|---|---|---|",
    ]
    lines += [
        f"| `{name}` | {shape_text(tuple(spec['shape']))} | {spec['dtype']} |"
        for name, spec in description["inputs"].items()
    ]
    lines += [
        "",
        "The model `mtl_search.load` returns checks these names, shapes and dtypes (float64 becomes float32; "
        "floats are never taken as codes); `model.pt2` and ONNX take them exactly as shown.",
        "",
    ]
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
    lines += ["## Loading", ""]
    if description.get("exported_program") and example:
        lines += _torch_only_lines(description["exported_program"], example, description.get("torch_version"))
    lines += [
        "With mtl-search installed (weights come from `weights.safetensors`; nothing is unpickled):",
        "",
        "```python",
        "import mtl_search, torch",
        "model = mtl_search.load('.')          # an nn.Module in eval mode, on the CPU (device='cuda': a GPU)",
        "with torch.no_grad():                 # inference: tensors you can call .numpy() on",
        "    outputs = model(inputs)           # {task: tensor}",
        "```",
        "",
    ]
    labelled = [_reading(t, tasks) for t in tasks if t.get("classes")]
    if labelled:
        lines += ["Reading the outputs: " + "; ".join(labelled) + ".", ""]
    if description.get("onnx"):
        lines += [
            f"ONNX (`{description['onnx']}`): inputs {', '.join(description['inputs'])} (in that order), outputs named "
            f"{', '.join(description['outputs'])}; the first dimension is the batch. With onnxruntime:",
            "",
            "```python",
            "import onnxruntime",
            f"session = onnxruntime.InferenceSession('{description['onnx']}')",
            "names = [output.name for output in session.get_outputs()]",
            "values = session.run(names, {name: tensor.numpy() for name, tensor in inputs.items()})",
            "outputs = dict(zip(names, values))    # {task: numpy array}",
            "```",
            "",
        ]
    lines += [
        "## Files",
        "",
        "- `architecture.json`: the architecture spec",
        "- `model.json`: spec, input schema and tasks, what `mtl_search.load` reads",
        "- `weights.safetensors`: the weights",
    ]
    if description.get("exported_program"):
        lines.append(f"- `{description['exported_program']}`: the network as a `torch.export` program")
    if description.get("onnx"):
        lines.append(f"- `{description['onnx']}`: ONNX graph")
    if preprocessing:
        lines.append("- `preprocessing.json`: input preprocessing state")
    lines.append("- `metrics.json`: metrics with their splits")
    if notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


# rows shown in the card's example input; inputs wider than this are shown as zeros of their shape
EXAMPLE_ROWS = 2
LITERAL_VALUES = 16


def _torch_only_lines(program_file: str, example: dict[str, torch.Tensor], torch_version: str | None) -> list[str]:
    """The card's snippet that runs ``model.pt2`` with PyTorch alone, on example inputs written out."""
    release = f" (written with PyTorch {torch_version}: load it with that release)" if torch_version else ""
    lines = [
        f"With PyTorch alone (no mtl-search, no numpy): `{program_file}` is the network as a `torch.export` program "
        f"with a dynamic batch dimension{release}. It takes the inputs `mtl_search.load`'s model takes "
        "(`{name: tensor}`, as the Inputs table lists them) and returns `{task: tensor}`:",
        "",
        "```python",
        "import torch",
        "",
        f"model = torch.export.load({program_file!r}).module()",
        f"inputs = {{  # {EXAMPLE_ROWS} example rows",
    ]
    for name, tensor in example.items():
        lines.append(f"    {name!r}: {_tensor_literal(tensor[:EXAMPLE_ROWS])},")
    return lines + [
        "}",
        "with torch.no_grad():",
        "    outputs = model(inputs)",
        "print({task: output.tolist() for task, output in outputs.items()})",
        "```",
        "",
    ]


def _tensor_literal(tensor: torch.Tensor) -> str:
    """Python that makes ``tensor``: its values written out, or zeros of its shape where a row has many."""
    dtype = f"torch.{str(tensor.dtype).removeprefix('torch.')}"
    if tensor[0].numel() > LITERAL_VALUES:
        return "torch.zeros(" + ", ".join(map(str, tensor.shape)) + f", dtype={dtype})"
    if tensor.dtype.is_floating_point:
        values = _nested(tensor.tolist(), lambda value: f"{value:.4g}")
    else:
        values = _nested(tensor.tolist(), str)
    return f"torch.tensor({values}, dtype={dtype})"


def _nested(values: Any, write: Any) -> str:
    if isinstance(values, list):
        return "[" + ", ".join(_nested(value, write) for value in values) + "]"
    return write(values)


def _output_cell(task: dict[str, Any], tasks: list[dict[str, Any]]) -> str:
    if task["kind"] == "regression":
        cell = output_meaning(task, [task])
    elif task["kind"] != "binary":
        cell = multiclass_meaning(task)
    else:
        cell = f"one logit per row; `torch.sigmoid(output)` is {probability(task, tasks)}"
    # a bare | would end the table cell
    return cell.replace("|", "\\|") + (f", conditional on {task['given']}: see below" if task.get("given") else "")


def _reading(task: dict[str, Any], tasks: list[dict[str, Any]]) -> str:
    """How to read a classification output whose class labels are recorded, for the loading section."""
    if task["kind"] == "binary":
        return f"`torch.sigmoid(outputs[{task['name']!r}])` is {probability(task, tasks)}"
    return f"`torch.softmax(outputs[{task['name']!r}], -1)` gives the probabilities of {class_order(task)}"


def _refined_lines(refined: dict[str, Any] | None) -> list[str]:
    """The `mtl-search refine` record: mean ± std over training seeds, kept apart from the exported weights' numbers."""
    if not refined:
        return []
    lines = [
        "### Over several training seeds (`mtl-search refine`)",
        "",
        refined["model"] + ". " + refined["exported_weights"] + ".",
        "",
        "| split | task | metric | mean ± std | n |",
        "|---|---|---|---|---|",
    ]
    for split in ("validation", "test"):
        for task, values in (refined.get(split) or {}).items():
            for metric, stats in values.items():
                # the format `mtl-search pareto` shows refined values in, so the two read alike
                lines.append(
                    f"| {split} | {task} | {metric} | {stats['mean']:.4g} ± {stats['std']:.2g} | {stats['n']} |"
                )
    return lines + ["", "`metrics.json` has these under `refined`.", ""]
