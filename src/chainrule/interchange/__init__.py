"""The way out and in: a chainrule model as ONNX, safetensors or PyTorch, and a PyTorch model as chainrule's.

* :func:`export` (``chainrule export``) writes a model in one of :data:`FORMATS`:

  - ``onnx``: the whole classifier as an ONNX graph (opset :data:`~chainrule.interchange.onnx.OPSET`),
    input normalisation included, optionally ending in the class probabilities (:mod:`.onnx`);
  - ``safetensors``: chainrule's model file in the safetensors format instead of ``.npz``: the same
    arrays under the same names, the architecture in its metadata (:mod:`chainrule.archive`);
  - ``torch``: a PyTorch state dict in safetensors, and a short Python file whose ``nn.Sequential`` loads
    it (:mod:`.pytorch`).

* :func:`~chainrule.interchange.pytorch.to_torch` and :func:`~chainrule.interchange.pytorch.from_torch`
  turn a network into its ``torch.nn`` twin and back (``chainrule import`` reads a TorchScript file or a
  ``--format torch`` export).

Each layer kind says how it is written elsewhere (:class:`chainrule.module.Module`: ``torch_name``,
``torch_settings``, ``torch_arrays``, ``to_onnx``), so a new kind is exported by its own class. The core of
chainrule stays NumPy-only: ``onnx``, ``onnxruntime``, ``torch`` and ``safetensors`` are imported only here,
when asked for (the extras ``chainrule[onnx]``, ``chainrule[torch]``, ``chainrule[safetensors]``).
"""

from __future__ import annotations

from pathlib import Path

from chainrule.errors import ConfigError, check_choice
from chainrule.i18n import _
from chainrule.network import Sequential
from chainrule.training.classifier import Classifier

#: Export formats, by name, with the suffix of the file they write.
FORMATS = {"onnx": ".onnx", "safetensors": ".safetensors", "torch": ".py"}


def export(
    model: Classifier | Sequential,
    path: str | Path,
    format: str | None = None,
    *,
    probabilities: bool = False,
) -> list[Path]:
    """Write ``model`` (a trained :class:`Classifier`, or a network) to ``path`` in ``format`` (by default,
    the one of ``path``'s suffix: ``.onnx``, ``.safetensors``, ``.py``) and return the files written.

    ``probabilities`` (ONNX only) ends the graph in the class probabilities, as ``predict_proba`` gives
    them, instead of the network's outputs. The ``torch`` format writes two files: the Python file at
    ``path`` and its weights beside it (the same name, ``.safetensors``).
    """
    path = Path(path)
    if format is None:
        format = next((name for name, suffix in FORMATS.items() if suffix == path.suffix), None)
        if format is None:
            raise ConfigError(
                _("cannot tell the format of {name}; name one of {formats}").format(
                    name=path.name, formats=", ".join(FORMATS)
                )
            )
    check_choice("export format", format, tuple(FORMATS))
    if probabilities and format != "onnx":
        raise ConfigError(_("probabilities=True is for the ONNX format (the others keep the network as it is)"))
    classifier = model if isinstance(model, Classifier) else Classifier.of(model)
    if format == "onnx":
        from chainrule.interchange.onnx import save_onnx

        save_onnx(classifier, path, probabilities=probabilities)
        return [path]
    if format == "safetensors":
        if path.suffix != ".safetensors":
            raise ConfigError(_("a safetensors model file is named *.safetensors, got {name}").format(name=path.name))
        classifier.save(path)
        return [path]
    from chainrule.interchange.pytorch import save_torch

    return save_torch(classifier, path)


def import_torch(
    path: str | Path,
    out: str | Path,
    *,
    classes: list[str] | None = None,
    data: str | Path | None = None,
    loss: str | None = None,
    optimizer: str = "sgd",
    lr: float = 0.1,
    steps: int = 1,
    rows: int = 4,
    seed: int = 0,
) -> str:
    """Read the PyTorch model in ``path`` (:func:`~chainrule.interchange.pytorch.read_torch`) and write it
    to ``out``: a model file (``.npz``, ``.safetensors``) with ``classes`` (default: its own, or ``0``,
    ``1``, ...), or a problem file (``.toml``) of one training step on the batch in ``data`` (an ``.npz``
    with arrays ``X`` and ``y``; default: ``rows`` random rows) with ``loss`` (default: the one its last
    layer calls for), ``optimizer``, ``lr`` and ``steps``. Returns what was written, in a line."""
    from chainrule.interchange.pytorch import from_torch, read_torch

    path, out = Path(path), Path(out)
    if out.resolve() == path.resolve():
        raise ConfigError(_("--out {out} is the file being imported").format(out=out))
    if classes is not None and (len(set(classes)) != len(classes) or not all(c.strip() for c in classes)):
        raise ConfigError(_("--classes: expected distinct, non-empty names, got {got!r}").format(got=",".join(classes)))
    model = from_torch(read_torch(path))
    if out.suffix in (".npz", ".safetensors"):
        classifier = model if isinstance(model, Classifier) else Classifier.of(model, classes)
        if classes is not None:
            classifier.classes = tuple(classes)
        classifier.save(out)
        return _("wrote {path}: {model}").format(path=out, model=repr(classifier))
    if out.suffix != ".toml":
        raise ConfigError(
            _("--out {name}: expected a model file (.npz, .safetensors) or a problem file (.toml)").format(
                name=out.name
            )
        )
    network = model.network if isinstance(model, Classifier) else model
    written = _write_step(network, out, data, loss, optimizer, lr, steps, rows, seed, source=path.name)
    return _("wrote {path}: {step}; run `chainrule explain {path}`").format(path=out, step=written)


def _write_step(network, out, data, loss, optimizer, lr, steps, rows, seed, source) -> str:
    """The problem file of one training step of ``network`` (see :func:`import_torch`)."""
    import numpy as np

    from chainrule.archive import read_npz
    from chainrule.errors import DataError
    from chainrule.explain.problem import parse_problem, problem_document, write_problem
    from chainrule.registry import LOSSES

    features = network.in_features
    last = network.layers[-1].kind
    outputs = network.output_features(features or 1)
    if loss is None:
        after = [kind.name for kind in LOSSES.kinds() if kind.cls.after == last]
        loss = after[0] if after else ("bce_with_logits" if outputs == 1 else "softmax_cross_entropy")
    target = LOSSES[loss].cls.target_kind
    if data is not None:
        arrays = read_npz(data, "batch (.npz with arrays X and y)")
        if set(arrays) != {"X", "y"}:
            raise DataError(
                _("{path}: expected arrays X and y, got {got}").format(path=data, got=", ".join(sorted(arrays)) or "-")
            )
        X, y, batch = arrays["X"], arrays["y"], f"the batch of {Path(data).name}"
        if X.dtype.kind not in "fiub" or y.dtype.kind not in "fiub":
            raise DataError(
                _("{path}: X and y must hold numbers, got dtypes {x} and {y}").format(path=data, x=X.dtype, y=y.dtype)
            )
        if X.ndim != 2 or (features is not None and X.shape[1] != features):
            raise DataError(
                _("{path}: X has shape {shape}; the network reads rows of {features} features").format(
                    path=data, shape=X.shape, features=features
                )
            )
    else:
        rng = np.random.default_rng(seed)
        X = rng.normal(size=(rows, features or 1)).round(2)
        y = {
            "classes": lambda: rng.integers(0, outputs, rows),
            "binary": lambda: rng.integers(0, 2, (rows, outputs)),
            "values": lambda: rng.normal(size=(rows, outputs)).round(2),
        }[target]()
        batch = f"{rows} random rows (seed {seed})"
    document = problem_document(
        network, X, y, loss=loss, optimizer=optimizer, title=f"{source}: one training step", steps=steps, lr=lr
    )
    parse_problem(document, f"{out.name} (not written)")  # what explain would refuse, refused before writing
    evaluating = any(not layer.training for layer in network.layers)
    mode = "; the model was in evaluation mode, the step here is in training mode (batch statistics)" * evaluating
    write_problem(
        out,
        document,
        f"Imported from {source} by `chainrule import`; [data] is {batch}{mode}.\n"
        "Every number of the step: `chainrule explain` on this file.",
    )
    return f"{len(network.layers)} layers, {batch}, {loss}, {optimizer} (lr {lr}){mode}"
