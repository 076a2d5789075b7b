"""The plots of a training run, as PNG files (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from chainrule.archive import atomic_write


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: works on machines without a screen
    import matplotlib.pyplot as plt

    return plt


def confusion_matrix(y_true: NDArray, y_pred: NDArray, classes: int) -> NDArray:
    """``matrix[i, j]``: how many examples of class ``i`` were predicted as ``j``."""
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (y_true, y_pred), 1)
    return matrix


def plot_run(result, X_test_raw: NDArray, y_test: NDArray) -> list[Path]:
    """Write every plot of ``result`` into its folder; returns the files written."""
    plt = _pyplot()
    model = result.model
    probs = model.predict_proba(X_test_raw)
    predicted = probs.argmax(axis=1)
    files = [
        _save(plt, learning_curves(plt, result.history), result.out / "learning_curves.png"),
        _save(
            plt,
            _confusion(plt, confusion_matrix(y_test, predicted, len(model.classes)), model.classes),
            result.out / "confusion_matrix.png",
        ),
    ]
    if model.image_shape is not None:
        W = next(layer.params["W"].data for layer in model.network.layers if "W" in layer.params)
        files.append(
            _save(
                plt,
                _weights(plt, W, model.image_shape, model.classes if W.shape[1] == len(model.classes) else None),
                result.out / "first_layer_weights.png",
            )
        )
        files.append(
            _save(
                plt, _confident_errors(plt, X_test_raw, y_test, probs, model), result.out / "most_confident_errors.png"
            )
        )
    return files


def _save(plt, figure, path: Path) -> Path:
    atomic_write(path, lambda f: figure.savefig(f, format="png", dpi=100, bbox_inches="tight"))
    plt.close(figure)
    return path


def learning_curves(plt, history):
    epochs = [e.epoch for e in history]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(epochs, [e.loss for e in history], "o-", label="train")
    right.plot(epochs, [e.accuracy for e in history], "o-", label="train")
    if history and history[0].val_loss is not None:
        left.plot(epochs, [e.val_loss for e in history], "s-", label="validation")
        right.plot(epochs, [e.val_accuracy for e in history], "s-", label="validation")
    for axis, label in ((left, "loss"), (right, "accuracy")):
        axis.set_xlabel("epoch")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle("Learning curves")
    return figure


#: The most classes whose confusion matrix is drawn with its labels and a count in every cell.
MAX_LABELLED = 30


def _confusion(plt, matrix: NDArray, classes):
    figure, axis = plt.subplots(figsize=(7, 6))
    image = axis.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=axis)
    ticks = range(len(classes))
    if len(classes) <= MAX_LABELLED:  # beyond, labels and counts are unreadable and cost minutes to draw
        axis.set_xticks(ticks, classes, rotation=45, ha="right")
        axis.set_yticks(ticks, classes)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    limit = matrix.max() / 2 if matrix.size else 0
    for i in ticks if len(classes) <= MAX_LABELLED else ():
        for j in ticks:
            axis.text(
                j,
                i,
                str(matrix[i, j]),
                ha="center",
                va="center",
                fontsize=7,
                color="white" if matrix[i, j] > limit else "black",
            )
    accuracy = np.trace(matrix) / max(1, matrix.sum())
    axis.set_title(f"Confusion matrix on the test set (accuracy {accuracy:.4f})")
    return figure


def _weights(plt, W: NDArray, image_shape, classes):
    """Each unit's incoming weights as an image (at most 64 units, said in the title), on one colour scale
    with its bar: for softmax regression, the ten class templates."""
    units = min(W.shape[1], 64)
    cols = min(units, 8 if units > 10 else 5)
    rows = int(np.ceil(units / cols))
    figure, axes = plt.subplots(rows, cols, figsize=(1.6 * cols + 1.0, 1.6 * rows + 0.6), squeeze=False)
    limit = float(np.abs(W[:, :units]).max()) or 1.0
    for k, axis in enumerate(axes.flat):
        axis.axis("off")
        if k < units:
            image = axis.imshow(W[:, k].reshape(image_shape), cmap="RdBu_r", vmin=-limit, vmax=limit)
            axis.set_title(classes[k] if classes else f"unit {k}", fontsize=9)
    figure.colorbar(image, ax=axes, shrink=0.8, label="weight")
    shown = f"all {units} units" if units == W.shape[1] else f"the first {units} of {W.shape[1]} units"
    figure.suptitle(f"First layer's weights, {shown} (red positive, blue negative)")
    return figure


def probability_label(p: float) -> str:
    """A probability as a label that tells 0.9996 from 1: three decimals, or its distance from 1."""
    return f"{p:.3f}" if p < 0.999 else f"1 − {1 - p:.0e}" if p < 1 else "1"


def _confident_errors(plt, X_raw: NDArray, y: NDArray, probs: NDArray, model, count: int = 16):
    predicted = probs.argmax(axis=1)
    wrong = np.flatnonzero(predicted != y)
    wrong = wrong[np.argsort(-probs[wrong, predicted[wrong]])][:count]
    cols = 8
    rows = max(1, int(np.ceil(len(wrong) / cols)))
    figure, axes = plt.subplots(rows, cols, figsize=(2.0 * cols, 2.4 * rows + 0.4), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, i in zip(axes.flat, wrong, strict=False):
        axis.imshow(np.asarray(X_raw[i]).reshape(model.image_shape), cmap="gray_r")
        axis.set_title(
            f"{model.classes[predicted[i]]} {probability_label(probs[i, predicted[i]])}\ntrue: {model.classes[y[i]]}",
            fontsize=10,
        )
    figure.suptitle("Most confidently wrong test examples (predicted, probability, true class)")
    return figure
