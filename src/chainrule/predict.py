"""Inputs for ``chainrule predict``: images (PNG, JPEG, ...) and ``.npy`` arrays, in a model's raw units."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from chainrule.errors import DataError
from chainrule.io import Classifier


def read_inputs(files: list[str], model: Classifier) -> Iterator[tuple[str, NDArray]]:
    """``(file name, raw inputs of shape (n, features))`` for each file; every file is read and checked
    before the first result, so a bad file among many stops the command before it prints anything."""
    inputs = [(name, read_input(Path(name), model)) for name in files]
    yield from inputs


def read_input(path: Path, model: Classifier) -> NDArray:
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if path.suffix.lower() == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as err:
            raise DataError(f"{path}: not a readable .npy array ({err})") from None
        if array.dtype.kind not in "uif" or not np.all(np.isfinite(array)):
            raise DataError(f"{path}: expected finite numbers, got dtype {array.dtype}")
        if array.size % model.features or array.size == 0:
            raise DataError(f"{path}: shape {array.shape} does not hold inputs of {model.features} features")
        return array.reshape(-1, model.features)
    return image_to_input(path, model)


def image_to_input(path: Path, model: Classifier) -> NDArray:
    """A picture as one input of ``model``: grey, resized to its image shape, a light background turned
    dark (MNIST-style data are light strokes on black), scaled to the model's raw range."""
    if model.image_shape is None:
        raise DataError(f"{path}: this model was not trained on images; give its inputs as .npy")
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise DataError("reading images needs Pillow: pip install 'chainrule[train]'") from None
    try:
        with Image.open(path) as image:
            grey = image.convert("L")
            rows, cols = model.image_shape
            if grey.size != (cols, rows):
                grey = grey.resize((cols, rows), Image.Resampling.LANCZOS)
            pixels = np.asarray(grey, dtype=np.float64)
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise DataError(f"{path}: not an image that can be read (PNG, JPEG, ...; {err})") from None
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    if border.mean() > 127:
        pixels = 255.0 - pixels
    return (pixels * (model.scale / 255.0)).reshape(1, -1)
