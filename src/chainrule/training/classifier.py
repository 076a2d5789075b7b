"""A trained network with what it needs to read raw inputs: the :class:`Classifier` that a run saves.

The inputs are normalised as in training, ``x = (raw/scale − mean)/std``, where ``scale`` maps the raw
range to [0, 1] (255 for pixels) and ``mean``, ``std`` are measured on the training set
(:func:`normalisation`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from chainrule.errors import ConfigError, DataError
from chainrule.i18n import _
from chainrule.network import Sequential, class_probabilities, predicted_classes


@dataclass
class Classifier:
    """A trained network with its input normalisation ``x = (raw/scale − mean)/std`` and class names.

    ``predict_proba`` gives class probabilities, ``predict`` the class indices; both take raw features,
    shape ``(n, features)``, or images of ``image_shape``.
    """

    network: Sequential
    mean: NDArray
    std: NDArray
    scale: float
    classes: tuple[str, ...]
    image_shape: tuple[int, int] | None = None
    frame_fill: float = 1.0  # share of the frame that the content of a training image fills

    @classmethod
    def of(cls, network: Sequential, classes: Sequence[str] | None = None) -> Classifier:
        """``network`` as a classifier of inputs that it reads as they are (mean 0, std 1, scale 1), with
        the ``classes`` given or named ``"0"``, ``"1"``, ...: a network built or imported in Python, which
        no run has measured the inputs of."""
        features = network.in_features
        if features is None:
            raise ConfigError(
                "cannot tell the number of input features of a network without a Linear or normalisation layer"
            )
        outputs, dtype = network.output_features(features), network.dtype
        names = tuple(str(c) for c in classes) if classes is not None else tuple(map(str, range(max(outputs, 2))))
        return cls(network, np.zeros(features, dtype), np.ones(features, dtype), 1.0, names)

    @property
    def features(self) -> int:
        return int(self.mean.shape[0])

    def transform(self, raw: NDArray) -> NDArray:
        """Raw inputs as the network reads them: one row each, normalised."""
        raw = np.asarray(raw)
        if raw.ndim == 1 or (self.image_shape is not None and raw.shape == tuple(self.image_shape)):
            raw = raw.reshape(1, -1)
        raw = raw.reshape(len(raw), int(np.prod(raw.shape[1:])))  # not -1: 0 rows cannot say it
        if raw.shape[1] != self.features:
            if self.image_shape:
                message = _("the model expects {features} features per input (images of {rows}×{columns}), got {got}")
            else:
                message = _("the model expects {features} features per input, got {got}")
            rows, columns = self.image_shape or (0, 0)
            raise DataError(message.format(features=self.features, rows=rows, columns=columns, got=raw.shape[1]))
        dtype = self.mean.dtype
        return (as_dtype(raw, dtype, _("the inputs")) / dtype.type(self.scale) - self.mean) / self.std

    def outputs(self, raw: NDArray, batch_size: int = 4096) -> NDArray:
        """The network's outputs (logits, or probabilities if it ends in a softmax) for raw inputs; inputs
        for which they are not finite (values so large that the network overflows) are a :class:`DataError`."""
        with np.errstate(over="ignore", invalid="ignore"):
            result = self.network.outputs(self.transform(raw), batch_size)
        if not np.all(np.isfinite(result)):
            rows = np.flatnonzero(~np.all(np.isfinite(result), axis=1))
            raise DataError(
                _(
                    "the network's outputs overflow for inputs {rows} (values up to {largest:.3g}, far beyond those "
                    "it was trained on)"
                ).format(
                    rows=f"{rows[:5].tolist()}{'…' if len(rows) > 5 else ''}", largest=np.abs(np.asarray(raw)).max()
                )
            )
        return result

    def predict_proba(self, raw: NDArray, batch_size: int = 4096) -> NDArray:
        return class_probabilities(self.outputs(raw, batch_size), self.network.gives_probabilities)

    def predict(self, raw: NDArray, batch_size: int = 4096) -> NDArray:
        return predicted_classes(self.outputs(raw, batch_size), self.network.gives_probabilities)

    def save(self, path: str | Path) -> None:
        from chainrule.training.modelfile import save_model

        save_model(self, path)

    def __repr__(self) -> str:
        layers = " → ".join(repr(layer) for layer in self.network.layers)
        shape = f", images {self.image_shape[0]}×{self.image_shape[1]}" if self.image_shape else ""
        return f"Classifier({layers}; {len(self.classes)} classes, {self.features} features{shape})"


def as_dtype(values: NDArray, dtype, what: str) -> NDArray:
    """``values`` converted to ``dtype``, or a :class:`DataError` if some are too large for it (a float32
    holds at most about 3.4e38: 1e308 would become inf)."""
    values = np.asarray(values)
    dtype = np.dtype(dtype)
    most = float(np.finfo(dtype).max) if dtype.kind == "f" else math.inf
    if values.dtype.kind == "f" and values.size and most < float(np.finfo(values.dtype).max):
        largest = float(np.abs(values).max())
        if largest > most:  # in Python floats: NumPy would cast 1e300 to float32 to compare, with a warning
            raise DataError(
                _("{what}: values up to {largest:.3g} overflow {dtype} (at most {most:.3g})").format(
                    what=what, largest=largest, dtype=dtype, most=most
                )
            )
    return values.astype(dtype)


def normalisation(X_train: NDArray, image: bool, dtype) -> tuple[float, NDArray, NDArray]:
    """``scale`` (the raw maximum, e.g. 255 or 16), then mean and std of ``X/scale``: one value for all
    pixels of images, one per feature otherwise (constant features keep std 1)."""
    scale = float(X_train.max()) if X_train.max() > 1 else 1.0
    # sums in float64 over blocks of rows: no float64 copy of the whole set (it would double the memory)
    total = np.zeros(X_train.shape[1])
    squares = np.zeros(X_train.shape[1])
    for start in range(0, len(X_train), 4096):
        block = X_train[start : start + 4096].astype(np.float64) / scale
        total += block.sum(axis=0)
        squares += np.einsum("ij,ij->j", block, block)
    n = len(X_train)
    if image:
        mean = total.sum() / (n * X_train.shape[1])
        var = squares.sum() / (n * X_train.shape[1]) - mean**2
        mean, std = np.full(X_train.shape[1], mean), np.full(X_train.shape[1], np.sqrt(max(var, 0.0)) or 1.0)
    else:
        mean = total / n
        std = np.sqrt(np.maximum(squares / n - mean**2, 0.0))
        std[std < 1e-8] = 1.0
    return scale, mean.astype(dtype), std.astype(dtype)
