"""The training loop: mini-batch gradient descent over shuffled data, one plain function (:func:`fit`).

Each step is :func:`chainrule.step.train_step`: forward, loss, backward from the loss, (L2 gradient),
update.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from chainrule import kernels
from chainrule.errors import ChainruleError, ConfigError, ShapeError
from chainrule.i18n import _
from chainrule.losses import Loss
from chainrule.module import Module
from chainrule.network import predicted_classes
from chainrule.optim import Optimizer
from chainrule.step import train_step
from chainrule.training.threads import while_training


class TrainingError(ChainruleError):
    """Training that cannot go on (a loss that became NaN or inf)."""


@dataclass
class EpochResult:
    """One epoch: the mean training loss and accuracy over its batches, and on the validation data."""

    epoch: int
    loss: float
    accuracy: float | None
    val_loss: float | None = None
    val_accuracy: float | None = None
    seconds: float = 0.0


@dataclass
class History:
    epochs: list[EpochResult] = field(default_factory=list)
    best_epoch: int | None = None  # with early stopping: the epoch whose weights the model keeps
    stopped_early: bool = False

    @property
    def losses(self) -> list[float]:
        return [e.loss for e in self.epochs]

    def rows(self) -> list[tuple[object, ...]]:
        """One row per epoch: epoch, loss, accuracy, validation loss and accuracy, seconds (rounded; ``""``
        for what was not measured)."""

        def show(x: float | None, digits: int = 4) -> object:
            return "" if x is None else round(float(x), digits)

        return [
            (e.epoch, show(e.loss), show(e.accuracy), show(e.val_loss), show(e.val_accuracy), show(e.seconds, 2))
            for e in self.epochs
        ]

    def __repr__(self) -> str:
        if not self.epochs:
            return "History(no epochs)"
        first, last = self.epochs[0], self.epochs[-1]
        val = f", validation accuracy {last.val_accuracy:.4f}" if last.val_accuracy is not None else ""
        best = f", best epoch {self.best_epoch}" if self.best_epoch is not None else ""
        stopped = ", stopped early" if self.stopped_early else ""
        return f"History({len(self.epochs)} epochs, loss {first.loss:.4f} → {last.loss:.4f}{val}{best}{stopped})"

    def _repr_html_(self) -> str:
        """Jupyter's display: a table of the epochs."""
        from chainrule.html import escape, table

        header = ("epoch", "loss", "accuracy", "val loss", "val accuracy", "seconds")
        return f"<p>{escape(repr(self))}</p>" + table(header, self.rows(), (True,) * 6)

    def plot(self):
        """The learning curves (loss and accuracy per epoch, training and validation) as a matplotlib
        figure, shown by Jupyter; needs chainrule[train]. (Unlike the run's plots, this keeps the backend
        that the notebook chose.)"""
        import matplotlib.pyplot as plt

        from chainrule.training.plots import learning_curves

        return learning_curves(plt, self.epochs)


def accuracy(output: NDArray, target: NDArray, probabilities: bool = False) -> float:
    """The share of rows whose :func:`~chainrule.network.predicted_classes` is the target's class (an
    index, or the arg-max of a one-hot row)."""
    target = np.asarray(target)
    if target.ndim == 2 and target.shape[1] > 1:
        target = target.argmax(axis=1)
    predicted = predicted_classes(output, probabilities)
    return np.count_nonzero(predicted == target.reshape(-1)) / len(target)


def run_epoch(
    model: Module,
    loss: Loss,
    optimizer: Optimizer,
    X: NDArray,
    y: NDArray,
    batch_size: int,
    rng: np.random.Generator,
    l2: float = 0.0,
    on_batch: Callable[[int, float, float | None], None] | None = None,
    classify: bool | None = None,
) -> tuple[float, float | None]:
    """One pass over ``(X, y)`` in shuffled mini-batches; the mean loss and accuracy of its batches.

    ``on_batch(rows_done, mean_loss_so_far, accuracy_so_far)`` is called after every batch. Accuracy is
    measured when ``classify`` (by default: for classification losses; MSE on one-hot rows needs it said).
    Its matrix products run on one or two threads, whichever is measured faster, with the same numbers
    either way (:mod:`chainrule.training.threads`).
    """
    classify = loss.target_kind != "values" if classify is None else classify
    order = rng.permutation(len(X))
    # Each batch is gathered into one reused buffer: the same bytes move as with a shuffled copy of the
    # whole set, but without allocating (and page-faulting) that copy every epoch.
    buffer = np.empty((min(batch_size, len(X)), *X.shape[1:]), dtype=X.dtype)
    total_loss = total_correct = 0.0
    model.train()
    with while_training():  # fast when idle, steady when the machine is shared (chainrule.training.threads)
        for start in range(0, len(X), batch_size):
            rows = order[start : start + batch_size]
            xb = kernels.take_rows(X, rows, buffer[: len(rows)])
            yb = y[rows]
            batch_loss, out = train_step(model, loss, optimizer, xb, yb, l2)
            if not math.isfinite(batch_loss):
                raise TrainingError(
                    _(
                        "batch {batch}: the loss became {loss}; the learning rate is probably too high for these "
                        "data (try a smaller --lr), or the inputs are not normalised"
                    ).format(batch=start // batch_size + 1, loss=batch_loss)
                )
            total_loss += batch_loss * len(xb)
            if classify:
                total_correct += accuracy(out, yb, model.gives_probabilities) * len(xb)
            if on_batch is not None:
                done = start + len(xb)
                on_batch(done, total_loss / done, total_correct / done if classify else None)
    return total_loss / len(X), total_correct / len(X) if classify else None


def evaluate(
    model: Module, loss: Loss, X: NDArray, y: NDArray, batch_size: int = 4096, classify: bool | None = None
) -> tuple[float, float | None]:
    """The mean loss and accuracy on ``(X, y)`` in evaluation mode (the mode is restored after)."""
    classify = loss.target_kind != "values" if classify is None else classify
    modes = [m.training for m in model.modules()]
    model.eval()
    try:
        total_loss = total_correct = 0.0
        for start in range(0, len(X), batch_size):
            xb, yb = X[start : start + batch_size], y[start : start + batch_size]
            out = model.forward(xb)
            total_loss += loss.forward(out, yb) * len(xb)
            total_correct += accuracy(out, yb, model.gives_probabilities) * len(xb) if classify else 0.0
    finally:
        for m, mode in zip(model.modules(), modes, strict=True):
            m.training = mode
    return total_loss / len(X), total_correct / len(X) if classify else None


@dataclass
class FitState:
    """Where a :func:`fit` stands after a whole epoch: everything a checkpoint must keep to go on as
    if never stopped (the epoch, the history, the shuffling stream, the early-stopping bookkeeping)."""

    rng: np.random.Generator
    epoch: int = 0
    history: History = field(default_factory=History)
    best_loss: float = float("inf")
    best_state: dict[str, NDArray] | None = None  # the model's state dict at its best epoch (a copy)
    waited: int = 0


def fit(
    model: Module,
    loss: Loss,
    optimizer: Optimizer,
    X: NDArray,
    y: NDArray,
    *,
    epochs: int = 10,
    batch_size: int = 64,
    l2: float = 0.0,
    seed: int | np.random.Generator | None = 0,
    validation: tuple[NDArray, NDArray] | None = None,
    early_stopping: int | None = None,
    scheduler=None,
    on_batch: Callable[[int, float, float | None], None] | None = None,
    on_epoch: Callable[[EpochResult], None] | None = None,
    on_checkpoint: Callable[[FitState], None] | None = None,
    state: FitState | None = None,
    classify: bool | None = None,
    verbose: bool = False,
) -> History:
    """Train ``model`` on ``(X, y)`` for ``epochs`` passes of shuffled mini-batches.

    With ``validation=(X_val, y_val)`` each epoch is also evaluated there; with ``early_stopping=k``
    training stops when the validation loss has not improved for ``k`` epochs, and the model keeps the
    weights of its best epoch. ``scheduler.step()`` is called after every epoch, then
    ``on_checkpoint(state)``; a ``state`` saved there, passed back in with the model and optimizer as
    they were, continues the run bit for bit. A loss that becomes NaN or inf stops the run with a
    :class:`TrainingError` naming the epoch and batch. This is the loop that ``chainrule train`` runs.
    ``verbose=True`` prints one line per epoch to standard error (its losses, accuracies and seconds).
    """
    X, y = np.asarray(X), np.asarray(y)
    if X.ndim != 2 or len(X) != len(y) or len(X) == 0:
        raise ShapeError(f"fit: expected X of shape (n, features) and n targets, got X {X.shape}, y {y.shape}")
    for what, value in (("epochs", epochs), ("batch_size", batch_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"fit: {what} must be a positive integer, got {value!r}")
    if early_stopping is not None and (validation is None or early_stopping < 1):
        raise ConfigError("fit: early_stopping needs validation data and a patience >= 1")
    if state is None:
        state = FitState(seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed))
    if verbose:
        on_epoch = _printing(on_epoch, epochs)
    history = state.history
    while state.epoch < epochs and not history.stopped_early:
        epoch = state.epoch + 1
        started = time.perf_counter()
        try:
            train_loss, train_accuracy = run_epoch(
                model, loss, optimizer, X, y, batch_size, state.rng, l2, on_batch, classify
            )
        except TrainingError as err:
            raise TrainingError(_("epoch {epoch}, {error}").format(epoch=epoch, error=err)) from None
        result = EpochResult(epoch, train_loss, train_accuracy)
        if validation is not None:
            result.val_loss, result.val_accuracy = evaluate(model, loss, *validation, classify=classify)
        if scheduler is not None:
            scheduler.step()
        result.seconds = time.perf_counter() - started
        history.epochs.append(result)
        state.epoch = epoch
        if early_stopping is not None:
            if result.val_loss < state.best_loss:
                best = {key: array.copy() for key, array in model.state_dict().items()}
                state.best_loss, state.best_state, state.waited = result.val_loss, best, 0
                history.best_epoch = epoch
            else:
                state.waited += 1
                history.stopped_early = state.waited >= early_stopping
        if on_epoch is not None:
            on_epoch(result)
        if on_checkpoint is not None:
            on_checkpoint(state)
    if state.best_state is not None:
        model.load_state_dict(state.best_state)
    return history


def _printing(on_epoch: Callable[[EpochResult], None] | None, epochs: int) -> Callable[[EpochResult], None]:
    """``on_epoch``, after a line on standard error for the epoch."""

    def report(result: EpochResult) -> None:
        line = f"epoch {result.epoch}/{epochs}: loss {result.loss:.4f}"
        if result.accuracy is not None:
            line += f", accuracy {result.accuracy:.4f}"
        if result.val_loss is not None:
            line += f"; validation loss {result.val_loss:.4f}"
            if result.val_accuracy is not None:
                line += f", accuracy {result.val_accuracy:.4f}"
        print(f"{line} ({result.seconds:.1f} s)", file=sys.stderr)
        if on_epoch is not None:
            on_epoch(result)

    return report
