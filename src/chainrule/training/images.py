"""Inputs for ``chainrule predict``: images (PNG, JPEG, ...) and ``.npy`` arrays, in a model's raw units."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from chainrule.archive import open_regular, read_npy
from chainrule.errors import DataError, need
from chainrule.i18n import N_, _
from chainrule.training.classifier import Classifier

#: The most pixels a picture may have (a 20000×20000 PNG of a few KB would take GBs to decode).
MAX_PIXELS = 25_000_000


def read_input(path: Path, model: Classifier) -> NDArray:
    """The raw inputs of shape ``(n, features)`` in the picture or ``.npy`` at ``path``."""
    if path.suffix.lower() == ".npy":
        array = read_npy(path)
        if array.dtype.kind not in "uif" or not np.all(np.isfinite(array)):
            raise DataError(
                _("{path}: expected finite numbers, got dtype {dtype}").format(path=path, dtype=array.dtype)
            )
        if array.size % model.features or array.size == 0:
            raise DataError(
                _("{path}: shape {shape} does not hold inputs of {features} features").format(
                    path=path, shape=array.shape, features=model.features
                )
            )
        return array.reshape(-1, model.features)
    return image_to_input(path, model)


def range_warning(path: Path, raw: NDArray, model: Classifier) -> str | None:
    """A warning when inputs look scaled to [0, 1] for a model that reads raw values up to its scale
    (pixels of 0–255): such inputs give confident nonsense."""
    if model.scale > 1 and raw.size and raw.min() >= 0 and raw.max() <= 1:
        return _(
            "{path}: all values are within [0, 1], but this model reads raw values up to {scale:g} (it divides them "
            "by {scale:g}); multiply them by {scale:g} if they are scaled pixels"
        ).format(path=path, scale=model.scale)
    return None


def image_to_input(path: Path, model: Classifier) -> NDArray:
    """A picture as one input of ``model``: grey (a transparent background becomes the background that
    the strokes stand out from); a light background turned dark (MNIST-style data are light strokes on
    black); cropped to its content, which is scaled to fill the share of the frame that
    it fills in the training images (``model.frame_fill``) and placed with its centre of mass at the
    frame's centre (as MNIST was made); scaled to the model's raw range."""
    with open_regular(path, N_("an image or a .npy array")) as f:
        if model.image_shape is None:
            raise DataError(
                _(
                    "{path}: this model was trained on rows of {features} numbers, not on images, so it cannot read "
                    "pictures: give its inputs as .npy (a model trained on an IDX folder, or on an .npz whose X "
                    "arrays are (n, rows, columns), reads pictures)"
                ).format(path=path, features=model.features)
            )
        Image = need("PIL.Image", "train", "reading images")
        pillows_limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # ours is checked instead
        try:
            with Image.open(f) as image:  # reads the header only: the size is known before any decoding
                if image.width * image.height > MAX_PIXELS:
                    raise DataError(
                        _("{path}: an image of {width}×{height} pixels; at most {most} are read").format(
                            path=path, width=image.width, height=image.height, most=MAX_PIXELS
                        )
                    )
                pixels = _grey(image)
        except Image.UnidentifiedImageError:
            raise DataError(_("{path}: not an image that can be read (PNG, JPEG, ...)").format(path=path)) from None
        except (OSError, ValueError) as err:
            raise DataError(
                _("{path}: not an image that can be read (PNG, JPEG, ...; {error})").format(path=path, error=err)
            ) from None
        finally:
            Image.MAX_IMAGE_PIXELS = pillows_limit
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    if border.mean() > 127:
        pixels = 255.0 - pixels
    rows, cols = model.image_shape
    content = _crop_to_content(pixels)
    side = max(content.shape)
    square = np.zeros((side, side))
    top, left = (side - content.shape[0]) // 2, (side - content.shape[1]) // 2
    square[top : top + content.shape[0], left : left + content.shape[1]] = content
    inner = (max(1, round(rows * model.frame_fill)), max(1, round(cols * model.frame_fill)))
    resized = Image.fromarray(square.astype(np.float32), mode="F").resize(inner[::-1], Image.Resampling.LANCZOS)
    content = np.clip(np.asarray(resized, dtype=np.float64), 0, 255)
    # centre of mass at the frame's centre, as MNIST was made (within the frame)
    total = content.sum() or 1.0
    mass_row = (content.sum(axis=1) @ np.arange(inner[0])) / total
    mass_col = (content.sum(axis=0) @ np.arange(inner[1])) / total
    top = int(np.clip(round((rows - 1) / 2 - mass_row), 0, rows - inner[0]))
    left = int(np.clip(round((cols - 1) / 2 - mass_col), 0, cols - inner[1]))
    frame = np.zeros((rows, cols))
    frame[top : top + inner[0], left : left + inner[1]] = content
    return (frame * (model.scale / 255.0)).reshape(1, -1)


def _grey(image) -> NDArray:
    """The picture's grey levels (float64); transparent parts take the background that contrasts with
    the opaque strokes (white behind dark strokes, black behind light ones), not the black that the
    colour of a fully transparent pixel usually is."""
    if "A" not in image.getbands() and "transparency" not in image.info:
        return np.asarray(image.convert("L"), dtype=np.float64)
    rgba = image.convert("RGBA")
    grey = np.asarray(rgba.convert("L"), dtype=np.float64)
    alpha = np.asarray(rgba, dtype=np.float64)[..., 3] / 255.0
    if alpha.sum() == 0:
        return grey
    strokes = float((grey * alpha).sum() / alpha.sum())
    background = 255.0 if strokes < 128 else 0.0
    return grey * alpha + background * (1 - alpha)


def _crop_to_content(pixels: NDArray) -> NDArray:
    """The smallest box around the pixels brighter than a tenth of the brightest (all, if none is)."""
    rows, cols = np.nonzero(pixels > 0.1 * pixels.max()) if pixels.max() > 0 else ([], [])
    if len(rows) == 0:
        return pixels
    return pixels[min(rows) : max(rows) + 1, min(cols) : max(cols) + 1]


def frame_fill(images: NDArray, sample: int = 1000) -> float:
    """How much of the frame the content of ``images`` (n, rows, cols) fills, on average: the longer side
    of each image's content box over the frame's side (1 for the 8×8 digits, about 0.71 for MNIST)."""
    fills = []
    for image in images[:sample]:
        box = _crop_to_content(np.asarray(image, dtype=np.float64))
        fills.append(max(box.shape[0] / image.shape[0], box.shape[1] / image.shape[1]))
    return float(np.mean(fills)) if fills else 1.0
