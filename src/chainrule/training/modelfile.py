"""Model files: a :class:`~chainrule.training.classifier.Classifier` in one ``.npz``, read without pickle.

The file (see :mod:`chainrule.archive`) holds the architecture as a list of layers, each its registered
kind and configuration (``{"type": "linear", "in_features": 784, "out_features": 256, "bias": true}``),
the network's state dict (arrays ``model.0.W``, ``model.1.running_mean``, ...), the input normalisation
(``input.mean``, ``input.std``), the class names and the image shape. Loading checks everything against
the declared architecture before building anything: object arrays, missing or extra arrays, wrong shapes,
non-finite weights, a truncated archive or a huge declared size are refused with one clear message.

Version 1 files (chainrule before the registry: arrays ``layers.0.W``, layer sizes ``in``/``out``) are
still read.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from chainrule import archive
from chainrule.errors import ChainruleError, ConfigError, DataError
from chainrule.i18n import N_, _
from chainrule.module import Module
from chainrule.network import Sequential
from chainrule.registry import LAYERS
from chainrule.training.classifier import Classifier
from chainrule.training.data import MAX_CLASSES, MAX_IMAGE_SIDE

FORMAT = "chainrule-model"
VERSION = 2
WHAT = N_("chainrule model file")
#: The most layers a model file may declare: far beyond any network trained here, far below a file whose
#: list of layers takes minutes to build and check.
MAX_LAYERS = 1000


def save_model(model: Classifier, path: str | Path) -> None:
    """Write ``model`` to ``path`` atomically (a temporary file renamed into place). A model that
    :func:`load_model` would refuse (class names or an image shape that do not fit its network) is a
    :class:`ConfigError` instead of a file."""
    problem = _misfit(model.network, model.features, model.mean.dtype, model.classes, model.image_shape)
    if not np.isfinite(model.scale) or model.scale <= 0:
        problem = _("the input scale must be a finite number > 0, got {got}").format(got=model.scale)
    elif not (np.all(np.isfinite(model.mean)) and np.all(np.isfinite(model.std)) and np.all(model.std > 0)):
        problem = _("the input mean and std must be finite, std > 0")
    elif not 0 < model.frame_fill <= 1:
        problem = _("frame_fill must be in (0, 1], got {got}").format(got=model.frame_fill)
    else:
        problem = problem or next(
            (
                _("{name} contains NaN or inf").format(name=name)
                for name, a in model.network.state_dict().items()
                if not np.all(np.isfinite(a))
            ),
            None,
        )
    if problem:
        raise ConfigError(_("cannot save this model: {problem}").format(problem=problem))
    archive.save(
        path,
        {
            "format": FORMAT,
            "version": VERSION,
            "layers": [{"type": layer.kind, **layer.config()} for layer in model.network.layers],
            "dtype": str(model.mean.dtype),
            "scale": float(model.scale),
            "classes": list(model.classes),
            "image_shape": list(model.image_shape) if model.image_shape else None,
            "frame_fill": float(model.frame_fill),
            "model": model.network.state_dict(),
            "input": {"mean": model.mean, "std": model.std},
        },
    )


def load_model(path: str | Path) -> Classifier:
    """Read a model file written by :func:`save_model`, without pickle, checking every array."""
    path = Path(path)
    doc = archive.load(path, FORMAT, WHAT, upgrade=_upgrade)
    if doc.get("version") != VERSION:
        raise DataError(
            _("{path}: model file version {version!r}; this chainrule reads versions 1 and {latest}").format(
                path=path, version=doc.get("version"), latest=VERSION
            )
        )
    try:
        dtype = np.dtype(doc["dtype"])
        scale = float(doc["scale"])
        classes = tuple(str(c) for c in doc["classes"])
        specs = doc["layers"]
        image_shape = tuple(_size(s) for s in doc["image_shape"]) if doc.get("image_shape") else None
        if image_shape is not None and len(image_shape) != 2:
            raise ValueError(f"image_shape {list(image_shape)} is not (rows, columns)")
        fill = float(doc.get("frame_fill", 1.0))
        if not 0 < fill <= 1:
            raise ValueError(f"frame_fill {fill} outside (0, 1]")
        state, mean, std = doc["model"], doc["input"]["mean"], doc["input"]["std"]
        if not isinstance(state, dict):
            raise TypeError("the model's state is not a table of arrays")
    except (KeyError, TypeError, ValueError) as err:
        raise DataError(_("{path}: incomplete model description ({error})").format(path=path, error=err)) from None
    if (
        dtype not in (np.float32, np.float64)
        or not np.isfinite(scale)
        or scale <= 0
        or not isinstance(specs, list)
        or not specs
    ):
        raise DataError(
            _("{path}: invalid model description (dtype {dtype}, scale {scale}, layers {layers})").format(
                path=path, dtype=dtype, scale=scale, layers=f"{specs!r:.80}"
            )
        )
    if len(specs) > MAX_LAYERS:
        raise DataError(
            _("{path}: declares {layers} layers; a model file holds {most} at most").format(
                path=path, layers=len(specs), most=MAX_LAYERS
            )
        )
    archive.require_finite(path, state, "model.")
    archive.require_finite(path, {"mean": mean, "std": std}, "input.")
    if mean.ndim != 1 or std.shape != mean.shape or np.any(std <= 0):
        raise DataError(
            _("{path}: input.mean and input.std must be vectors of one length, std positive").format(path=path)
        )
    largest = max((max(a.shape, default=1) for a in state.values()), default=1)
    network = Sequential(*(_build_layer(spec, dtype, largest, f"{path}: layers[{i}]") for i, spec in enumerate(specs)))
    try:
        network.load_state_dict(state)
    except ChainruleError as err:
        raise DataError(
            _("{path}: the weights do not match the architecture: {error}").format(path=path, error=err)
        ) from None
    problem = _misfit(network.eval(), mean.shape[0], dtype, classes, image_shape)
    if problem:
        raise DataError(f"{path}: {problem}")
    return Classifier(network, mean.astype(dtype), std.astype(dtype), scale, classes, image_shape, fill)


def save(model: Classifier | Sequential, path: str | Path, classes: Sequence[str] | None = None) -> None:
    """Write a trained model to ``path`` (``.npz``, or ``.safetensors``) for ``chainrule.load``, ``predict``,
    ``evaluate`` and ``export``: a :class:`Classifier` as it is, or a network trained with ``fit`` on inputs
    it reads as they are, with its ``classes`` (default ``"0"``, ``"1"``, ...)."""
    if isinstance(model, Sequential):
        model = Classifier.of(model, classes)
    elif classes is not None:
        raise ConfigError(_("save: classes go with a network; a Classifier has its own"))
    save_model(model, path)


def load(path: str | Path) -> Classifier:
    """A trained model, ready to predict: ``chainrule.load("runs/.../model.npz").predict(images)``."""
    return load_model(path)


def _misfit(network: Sequential, features: int, dtype, classes: tuple[str, ...], image_shape) -> str | None:
    """What does not fit in a classifier (``None`` if all does): no layers, layers that do not take
    ``features`` inputs one after the other, class names that are not one per output, an image shape that
    is not ``features`` pixels."""
    if not network.layers:
        return "a network without layers"
    modes = [m.training for m in network.modules()]
    network.eval()  # a training-mode probe would move BatchNorm's statistics
    try:
        outputs = network.forward(np.zeros((2, features), dtype))
    except Exception as err:  # any failure here means the layers are inconsistent
        return _("the layers do not fit together or the {features} input features ({error})").format(
            features=features, error=err
        )
    finally:
        for m, mode in zip(network.modules(), modes, strict=True):
            m.training = mode
    if len(classes) > MAX_CLASSES:
        return _("{names} class names; a model has {most} classes at most").format(names=len(classes), most=MAX_CLASSES)
    if outputs.ndim != 2 or (outputs.shape[1] != len(classes) and not (outputs.shape[1] == 1 and len(classes) == 2)):
        return _("{names} class names for a network with {outputs} outputs").format(
            names=len(classes), outputs=outputs.shape[-1]
        )
    if image_shape is not None and not all(isinstance(n, int) and 0 < n <= MAX_IMAGE_SIDE for n in image_shape):
        return _("image_shape {shape} is not two sizes (rows, columns)").format(shape=image_shape)
    if image_shape is not None and image_shape[0] * image_shape[1] != features:
        return _("images of {rows}×{columns} for {features} input features").format(
            rows=image_shape[0], columns=image_shape[1], features=features
        )
    return None


def _build_layer(spec: Any, dtype: np.dtype, largest: int, where: str) -> Module:
    """A layer from its description, with zeros for weights (the file's arrays replace them; NumPy asks the
    system for zeros lazily, so a size that the file declares and its arrays refuse costs no memory).
    ``largest`` is the longest axis of the file's arrays: no size of an array (``in_features``, the settings
    a kind lists in ``sizes``) may exceed it."""
    if not isinstance(spec, dict) or not isinstance(spec.get("type"), str):
        raise DataError(_("{where}: expected a layer description with a 'type'").format(where=where))
    config = {k: v for k, v in spec.items() if k != "type"}
    try:
        cls = LAYERS[spec["type"]].cls
        sizes = {k: v for k, v in config.items() if k in cls.sizes and isinstance(v, int) and not isinstance(v, bool)}
        if any(not 0 < size <= largest for size in sizes.values()):
            raise DataError(
                _("{where}: declares {sizes}, but the file's arrays are at most {largest} long").format(
                    where=where, sizes=sizes, largest=largest
                )
            )
        return cls.from_config(config, dtype=dtype, init="zeros")
    except DataError:
        raise
    except (ChainruleError, KeyError, TypeError, ValueError) as err:
        raise DataError(
            _("{where}: invalid layer description {spec} ({error})").format(where=where, spec=spec, error=err)
        ) from None
    except MemoryError:
        raise DataError(
            _("{where}: declares a layer too large for this machine's memory ({spec})").format(where=where, spec=spec)
        ) from None


def _size(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_IMAGE_SIDE:
        raise ValueError(f"expected a positive integer below {MAX_IMAGE_SIDE + 1}, got {value!r}")
    return value


#: Version 1's layer settings, by their names of version 2.
_V1_SETTINGS = {"in": "in_features", "out": "out_features", "features": "num_features"}


def _upgrade(meta: dict[str, Any], arrays: dict[str, NDArray]) -> dict[str, Any]:
    """A version 1 file's JSON in version 2's form: settings renamed, and each array referred to where
    version 2 keeps it (version 1 named arrays ``layers.{i}.{name}`` and left them unreferenced)."""
    if meta.get("version") != 1 or not isinstance(meta.get("layers"), list):
        return meta
    layers = [
        {_V1_SETTINGS.get(k, k): v for k, v in spec.items()} if isinstance(spec, dict) else spec
        for spec in meta["layers"]
    ]
    state = {name[len("layers.") :]: {"$array": name} for name in arrays if name.startswith("layers.")}
    inputs = {"mean": {"$array": "input.mean"}, "std": {"$array": "input.std"}}
    return {**meta, "version": VERSION, "layers": layers, "model": state, "input": inputs}
