"""The README.md model card of an exported model: what it predicts, how well, how to run it."""

from __future__ import annotations

import math
from typing import Any

from mtl_search.visualization.architecture import architecture_markdown

OUTPUT_MEANING = {
    "binary": "one logit per row; `torch.sigmoid(output)` is P(label = 1)",
    "multiclass": "one logit per class; `torch.softmax(output, -1)` gives the class probabilities",
    "regression": "the predicted value, one per row",
}


def model_card(description: dict[str, Any], metrics: list[dict[str, Any]], record: dict[str, Any],
               notes: list[str], preprocessing: dict[str, Any]) -> str:
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
    lines += [f"| {t['name']} | {t['kind']} | {t.get('n_classes') or ''} | {OUTPUT_MEANING[t['kind']]} |" for t in tasks]
    lines += ["", "## Metrics", "", "| split | model | task | metric | value |", "|---|---|---|---|---|"]
    for entry in metrics:
        for task, values in (entry.get("values") or {}).items():
            for metric, value in values.items():
                shown = f"{value:.4g}" if isinstance(value, (int, float)) and math.isfinite(value) else str(value)
                lines.append(f"| {entry['split']} | {entry['model']} | {task} | {metric} | {shown} |")
    lines += ["", "The search chose among architectures by their validation metrics; the test split was never used "
              "to choose anything. `metrics.json` has the same numbers.", "",
              "## Structure", "", architecture_markdown(record, task_names), "",
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
        "import mtl_search",
        "model = mtl_search.load('.')          # an nn.Module in eval mode",
        "outputs = model(inputs)               # {task: tensor}",
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
