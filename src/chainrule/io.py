"""Model files: architecture, weights, input normalisation and class names in one ``.npz``, no pickle.

The file holds one array per parameter or buffer (``layers.0.W``, ``layers.1.running_mean``, ...), the
normalisation (``input.mean``, ``input.std``) and a JSON document (``meta``, a unicode array) with the
architecture and the rest. Loading uses ``allow_pickle=False`` and checks everything against the
declared architecture before building anything: object arrays, missing or extra arrays, wrong shapes,
non-finite weights, a truncated archive or a huge declared size are refused with one clear message.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from chainrule.activations import ACTIVATIONS, LeakyReLU, Softmax
from chainrule.errors import DataError
from chainrule.layers import BatchNorm1d, Dropout, Linear
from chainrule.module import Module
from chainrule.network import Sequential

FORMAT = "chainrule-model"
VERSION = 1
#: The largest model file accepted: far above any MLP this library trains, far below a memory bomb.
MAX_BYTES = 2 * 1024**3
#: What reading a damaged or crafted .npz can raise (zipfile: unsupported compression method ->
#: NotImplementedError, "encrypted" flag -> RuntimeError; found by fuzzing).
ARCHIVE_ERRORS = (zipfile.BadZipFile, zlib.error, OSError, ValueError, EOFError, KeyError, NotImplementedError,
                  RuntimeError)
_UMASK = os.umask(0)
os.umask(_UMASK)


@dataclass
class Classifier:
    """A trained network with what it needs to read raw inputs: ``x = (raw/scale − mean)/std``.

    ``predict_proba`` gives class probabilities (a softmax of the logits, unless the network ends in
    one), ``predict`` the class indices; both take raw features, shape ``(n, features)`` or images.
    """

    network: Sequential
    mean: NDArray
    std: NDArray
    scale: float
    classes: tuple[str, ...]
    image_shape: tuple[int, int] | None = None
    frame_fill: float = 1.0  # share of the frame that the content of a training image fills

    @property
    def features(self) -> int:
        return int(self.mean.shape[0])

    def transform(self, raw: NDArray) -> NDArray:
        raw = np.asarray(raw)
        if raw.ndim == 1 or (self.image_shape is not None and raw.shape == tuple(self.image_shape)):
            raw = raw.reshape(1, -1)
        raw = raw.reshape(len(raw), -1)
        if raw.shape[1] != self.features:
            raise DataError(f"the model expects {self.features} features per input"
                            + (f" (images of {self.image_shape[0]}×{self.image_shape[1]})" if self.image_shape else "")
                            + f", got {raw.shape[1]}")
        dtype = self.mean.dtype
        return (raw.astype(dtype) / dtype.type(self.scale) - self.mean) / self.std

    def logits(self, raw: NDArray, batch_size: int = 4096) -> NDArray:
        return self.network.predict_proba(self.transform(raw), batch_size)

    def predict_proba(self, raw: NDArray, batch_size: int = 4096) -> NDArray:
        out = self.logits(raw, batch_size).astype(np.float64)
        if isinstance(self.network.layers[-1], Softmax):
            return out
        out -= out.max(axis=1, keepdims=True)
        np.exp(out, out=out)
        return out / out.sum(axis=1, keepdims=True)

    def predict(self, raw: NDArray, batch_size: int = 4096) -> NDArray:
        return self.logits(raw, batch_size).argmax(axis=1)

    def save(self, path: str | Path) -> None:
        save_model(self, path)


# -- architecture <-> JSON --------------------------------------------------------------------------------
def layer_spec(layer: Module) -> dict[str, Any]:
    if isinstance(layer, Linear):
        return {"type": "linear", "in": layer.in_features, "out": layer.out_features, "bias": "b" in layer.params}
    if isinstance(layer, BatchNorm1d):
        return {"type": "batchnorm", "features": layer.num_features, "eps": layer.eps, "momentum": layer.momentum}
    if isinstance(layer, Dropout):
        return {"type": "dropout", "p": layer.p}
    if isinstance(layer, LeakyReLU):
        return {"type": "leaky_relu", "alpha": layer.alpha}
    for name, cls in ACTIVATIONS.items():
        if type(layer) is cls:
            return {"type": name}
    raise DataError(f"cannot save a layer of type {type(layer).__name__}")


def build_layer(spec: Any, dtype: np.dtype, where: str) -> Module:
    if not isinstance(spec, dict) or not isinstance(spec.get("type"), str):
        raise DataError(f"{where}: expected a layer description with a 'type'")
    kind = spec["type"]
    try:
        if kind == "linear":
            return Linear(_int(spec["in"]), _int(spec["out"]), bool(spec["bias"]), init="zeros", dtype=dtype)
        if kind == "batchnorm":
            return BatchNorm1d(_int(spec["features"]), float(spec["eps"]), float(spec["momentum"]), dtype=dtype)
        if kind == "dropout":
            return Dropout(float(spec["p"]))
        if kind == "leaky_relu":
            return LeakyReLU(float(spec["alpha"]))
        if kind in ACTIVATIONS:
            return ACTIVATIONS[kind]()
    except (KeyError, TypeError, ValueError) as err:
        raise DataError(f"{where}: invalid {kind} layer description {spec} ({err})") from None
    raise DataError(f"{where}: unknown layer type {kind!r}")


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**24:
        raise ValueError(f"expected a positive integer, got {value!r}")
    return value


# -- save and load ------------------------------------------------------------------------------------------
def save_model(model: Classifier, path: str | Path) -> None:
    """Write ``model`` to ``path`` atomically (a temporary file renamed into place)."""
    network = model.network
    meta = {
        "format": FORMAT, "version": VERSION,
        "layers": [layer_spec(layer) for layer in network.layers],
        "dtype": str(model.mean.dtype), "scale": float(model.scale),
        "classes": list(model.classes),
        "image_shape": list(model.image_shape) if model.image_shape else None,
        "frame_fill": float(model.frame_fill),
    }
    arrays = {"meta": np.array(json.dumps(meta))}
    for i, layer in enumerate(network.layers):
        for name, p in layer.params.items():
            arrays[f"layers.{i}.{name}"] = p.data
        for name, buf in layer.buffers.items():
            arrays[f"layers.{i}.{name}"] = buf
    arrays["input.mean"], arrays["input.std"] = model.mean, model.std
    atomic_write(path, lambda f: np.savez(f, **arrays))


def atomic_write(path: str | Path, write) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it to ``path``: a crash
    leaves the old file or the new one, never half of one."""
    path = Path(path)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; a result file gets the usual permissions
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    finally:
        Path(temp).unlink(missing_ok=True)


def load_model(path: str | Path) -> Classifier:
    """Read a model file written by :func:`save_model`, without pickle, checking every array."""
    path = Path(path)
    arrays = _read_archive(path)
    try:
        meta = json.loads(str(arrays.pop("meta")[()]))
    except (KeyError, ValueError, TypeError, IndexError):
        raise DataError(f"{path}: not a chainrule model file (no readable 'meta' record)") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise DataError(f"{path}: not a chainrule model file (format {meta.get('format') if isinstance(meta, dict) else None!r})")
    if meta.get("version") != VERSION:
        raise DataError(f"{path}: model file version {meta.get('version')!r}; this chainrule reads version {VERSION}")
    try:
        dtype = np.dtype(meta["dtype"])
        scale = float(meta["scale"])
        classes = tuple(str(c) for c in meta["classes"])
        specs = meta["layers"]
        image_shape = tuple(_int(s) for s in meta["image_shape"]) if meta.get("image_shape") else None
        fill = float(meta.get("frame_fill", 1.0))
        if not 0 < fill <= 1:
            raise ValueError(f"frame_fill {fill} outside (0, 1]")
    except (KeyError, TypeError, ValueError) as err:
        raise DataError(f"{path}: incomplete model description ({err})") from None
    if dtype not in (np.float32, np.float64) or not np.isfinite(scale) or scale <= 0 or not isinstance(specs, list) \
            or not specs:
        raise DataError(f"{path}: invalid model description (dtype {dtype}, scale {scale}, {len(specs)} layers)")
    layers = [build_layer(spec, dtype, f"{path}: layers[{i}]") for i, spec in enumerate(specs)]
    expected: dict[str, NDArray] = {}
    for i, layer in enumerate(layers):
        for name, p in layer.params.items():
            expected[f"layers.{i}.{name}"] = p.data
        for name, buf in layer.buffers.items():
            expected[f"layers.{i}.{name}"] = buf
    features = layers[0].in_features if isinstance(layers[0], Linear) else None
    if features is None:
        raise DataError(f"{path}: the first layer must be linear, got {specs[0].get('type')!r}")
    expected["input.mean"] = np.zeros(features, dtype)
    expected["input.std"] = np.ones(features, dtype)
    extra = sorted(set(arrays) - set(expected))
    missing = sorted(set(expected) - set(arrays))
    if extra or missing:
        raise DataError(f"{path}: the weights do not match the architecture"
                        + (f"; missing {', '.join(missing[:5])}" if missing else "")
                        + (f"; unexpected {', '.join(extra[:5])}" if extra else ""))
    for name, target in expected.items():
        value = arrays[name]
        if value.shape != target.shape or value.dtype.kind != "f":
            raise DataError(f"{path}: {name} has shape {value.shape} and dtype {value.dtype}, the architecture "
                            f"needs shape {target.shape} of floats")
        if not np.all(np.isfinite(value)):
            raise DataError(f"{path}: {name} contains NaN or inf")
        target[...] = value
    try:
        network = Sequential(*layers).eval()  # eval first: a training-mode probe would move BatchNorm's statistics
        network.forward(np.zeros((2, features), dtype))  # the shapes of consecutive layers fit
    except Exception as err:  # noqa: BLE001 - any failure here means the file is inconsistent
        raise DataError(f"{path}: the layers do not fit together ({err})") from None
    std = expected["input.std"]
    if np.any(std <= 0):
        raise DataError(f"{path}: input.std must be positive")
    return Classifier(network, expected["input.mean"], std, scale, classes, image_shape, fill)


def _read_archive(path: Path) -> dict[str, NDArray]:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as err:
        raise DataError(f"{path}: cannot read it ({err})") from None
    if size > MAX_BYTES:
        raise DataError(f"{path}: {size} bytes is larger than any chainrule model ({MAX_BYTES} bytes at most)")
    try:
        with zipfile.ZipFile(path) as archive:
            declared = sum(info.file_size for info in archive.infolist())
            if declared > MAX_BYTES:
                raise DataError(f"{path}: declares {declared} bytes of arrays; refusing (at most {MAX_BYTES})")
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except DataError:
        raise
    except ARCHIVE_ERRORS as err:
        reason = "it holds Python objects, which are never loaded" if "pickle" in str(err) else str(err)
        raise DataError(f"{path}: not a readable chainrule model file ({reason})") from None


def load(path: str | Path) -> Classifier:
    """A trained model, ready to predict: ``chainrule.load("runs/.../model.npz").predict(images)``."""
    return load_model(path)
