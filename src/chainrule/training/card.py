"""The model card: ``README.md`` beside ``model.npz``, in the shape of a Hugging Face model card.

YAML front matter (``library_name``, ``tags``, ``datasets``, ``metrics`` and a ``model-index`` with the test
accuracy, which the Hub shows as the model's results), then what a reader of the folder wants to know:
the architecture, the input and how it is normalised, the data and the training, the results, how to
load, use and export the model, and the command that trains it again.

A card is recognised as chainrule's by its :data:`MARK`: ``chainrule train --force`` replaces only such a
card, never a ``README.md`` of the user's own.
"""

from __future__ import annotations

import shlex
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING

from chainrule._version import __version__
from chainrule.archive import atomic_write
from chainrule.errors import need
from chainrule.training.config import TrainConfig

if TYPE_CHECKING:
    from chainrule.training.data import Dataset
    from chainrule.training.run import RunResult

NAME = "README.md"
#: The comment that marks a card as written by chainrule.
MARK = "<!-- written by `chainrule train`"
#: Dataset ids on the Hugging Face Hub of the named datasets that are there.
HUB_DATASETS = {"mnist": "ylecun/mnist", "fashion-mnist": "zalando-datasets/fashion_mnist"}
#: Settings that say where a run writes, not what it is: left out of the command that repeats it.
_NOT_REPEATED = ("data_dir", "out", "force", "quiet", "plots")


def is_ours(path: Path) -> bool:
    """Whether the file at ``path`` is a card chainrule wrote (and may replace): YAML front matter that
    names chainrule as its library, then a heading, then a line that starts with :data:`MARK`."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read(1 << 16)
    except OSError:
        return False
    parts = text.split("\n---\n", 1)
    if not text.startswith("---\n") or len(parts) != 2 or "\nlibrary_name: chainrule\n" not in parts[0] + "\n":
        return False
    body = [line for line in parts[1].splitlines() if line.strip()]
    return len(body) >= 2 and body[0].startswith("# ") and body[1].startswith(MARK)


def write_card(result: RunResult, config: TrainConfig, dataset: Dataset) -> Path | None:
    """Write the card of ``result`` into its folder and return its path; ``None`` (nothing written) if a
    ``README.md`` that chainrule did not write is there."""
    path = result.out / NAME
    if path.exists() and not is_ours(path):
        return None
    text = card(result, config, dataset)
    atomic_write(path, lambda f: f.write(text.encode()))
    return path


def card(result: RunResult, config: TrainConfig, dataset: Dataset) -> str:
    """The text of the card (see the module's description)."""
    yaml = need("yaml", "train", "writing the model card")
    model, metrics = result.model, result.metrics
    images = dataset.image_shape is not None
    task = "image-classification" if images else "tabular-classification"
    name, dataset_name = (" ".join(str(n).split()) for n in (result.out.name, metrics["dataset"]["name"]))  # 1 line
    hub = HUB_DATASETS.get(dataset_name)
    front = {
        "library_name": "chainrule",
        "tags": ["chainrule", "numpy", task, "mlp" if config.hidden else "softmax-regression"],
        **({"datasets": [hub]} if hub else {}),
        "metrics": ["accuracy"],
        "model-index": [
            {
                "name": name,
                "results": [
                    {
                        "task": {"type": task, "name": task.replace("-", " ").capitalize()},
                        "dataset": {"name": dataset_name, "type": hub or dataset_name, "split": "test"},
                        "metrics": [
                            {
                                "type": "accuracy",
                                "value": round(float(result.test_accuracy), 4),
                                "name": "Test accuracy",
                            }
                        ],
                    }
                ],
            }
        ],
    }
    parameters = sum(p.data.size for p in model.network.parameters())
    layers = " → ".join(repr(layer) for layer in model.network.layers)
    shape = f"{dataset.image_shape[0]}×{dataset.image_shape[1]} grey images, " if images else ""
    if images or len(set(model.mean.tolist())) == 1:
        mean, std = float(model.mean[0]), float(model.std[0])
        norm = f"x = (raw/{model.scale:g} − μ)/σ, μ = {mean:.4g} and σ = {std:.4g} of the training set"
    else:
        norm = f"x = (raw/{model.scale:g} − μ)/σ, μ and σ of each feature on the training set"
    outputs = "class probabilities (a softmax)" if model.network.gives_probabilities else "logits"
    data = metrics["dataset"]
    settings = {k: v for k, v in metrics["optimizer"].items() if k != "name"}
    optimizer = ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in settings.items())
    epochs = result.history
    stopped = f"; stopped early, best epoch {metrics['best_epoch']} kept" if metrics["stopped_early"] else ""
    rows = "\n".join(
        f"| {e.epoch} | {e.loss:.4f} | {e.accuracy:.4f} | "
        + (f"{e.val_loss:.4f} | {e.val_accuracy:.4f} |" if e.val_loss is not None else "– | – |")
        for e in epochs
    )
    classes = ", ".join(model.classes)
    split = f"{data['train']:,} training, {data['validation']:,} validation, {data['test']:,} test examples"
    inputs = f"raw features, (n, {model.features})" + (" or images" if images else "")
    return f"""---
{yaml.safe_dump(front, sort_keys=False, allow_unicode=True).strip()}
---

# {name}: a chainrule classifier of {dataset_name}

{MARK} (chainrule {__version__}); it replaces this file when the run is repeated with --force -->

A {"multi-layer perceptron" if config.hidden else "softmax regression"} trained with
[chainrule](https://pypi.org/project/chainrule/), neural networks in NumPy whose every gradient is the
hand-derived formula. Test accuracy **{result.test_accuracy:.4f}** on the {data["test"]} examples of the
{dataset_name} test set.

## Model

| | |
|---|---|
| Layers | {layers} |
| Parameters | {parameters:,} ({model.mean.dtype}) |
| Input | {shape}{model.features} raw features, normalised as {norm} |
| Output | {outputs} of {len(model.classes)} classes: {classes} |

## Training

| | |
|---|---|
| Data | {dataset_name}: {split} |
| Loss | {config.loss} |
| Optimizer | {config.optimizer}: {optimizer}; schedule {config.schedule} |
| Batches, epochs | {config.batch_size} rows, {len(epochs)} epochs{stopped} |
| Seed | {config.seed} (the same seed gives the same numbers) |

To train it again: `{command(config)}`. The whole configuration and every epoch's numbers are in
`metrics.json`.

## Results

Test loss {result.test_loss:.4f}, test accuracy {result.test_accuracy:.4f}.

| Epoch | Train loss | Train accuracy | Validation loss | Validation accuracy |
|---|---|---|---|---|
{rows}

## Use

```python
import chainrule

model = chainrule.load("model.npz")
model.predict(inputs)        # class indices; inputs: {inputs}
model.predict_proba(inputs)  # the probability of each class
```

```console
$ chainrule predict model.npz {"image.png" if images else "inputs.npy"}
$ chainrule evaluate model.npz --dataset {shlex.quote(config.dataset)}
```

## Export

```console
$ chainrule export model.npz --format onnx          # model.onnx, for ONNX Runtime (input normalisation included)
$ chainrule export model.npz --format safetensors   # model.safetensors, read by chainrule.load too
$ chainrule export model.npz --format torch         # model_torch.py and its weights, a torch.nn.Sequential
```

## Limitations

The model knows only the {len(model.classes)} classes of {dataset_name}, and inputs like its training
data{" (centred grey images of the same size; `chainrule predict` converts pictures to that form)" if images else ""}.
It was trained once, with one seed: its accuracy on other data of the same kind will differ by chance.
"""


def command(config: TrainConfig) -> str:
    """The ``chainrule train`` command line of ``config`` (the options whose value is not the default),
    quoted for a POSIX shell."""
    parts = ["chainrule", "train"]
    for f in fields(TrainConfig):
        value = getattr(config, f.name)
        if f.name in _NOT_REPEATED or value == f.default:
            continue
        flag = f.metadata["flag"] or "--" + f.name.replace("_", "-")
        if isinstance(value, bool):
            parts.append(flag)
        elif isinstance(value, tuple):
            parts += [flag, ",".join(map(str, value)) or "0"]
        else:
            parts += [flag, str(value)]
    return shlex.join(parts)
