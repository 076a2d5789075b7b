"""The training loop: mini-batch gradient descent over shuffled data, one plain function.

Each step is the one of seed 001: forward, loss, backward from the loss, (L2 gradient), update.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from chainrule.errors import ConfigError, ShapeError
from chainrule.losses import Loss, add_l2_grad, l2_penalty
from chainrule.module import Module
from chainrule.optim import Optimizer


@dataclass
class EpochResult:
    epoch: int
    loss: float
    accuracy: float | None


@dataclass
class History:
    epochs: list[EpochResult] = field(default_factory=list)

    @property
    def losses(self) -> list[float]:
        return [e.loss for e in self.epochs]


def accuracy(output: NDArray, target: NDArray) -> float:
    """The share of rows whose arg-max (or, for one output, sign of the logit / side of 0.5) is right."""
    target = np.asarray(target)
    if target.ndim == 2 and target.shape[1] > 1:
        target = target.argmax(axis=1)
    target = target.reshape(-1)
    if output.shape[1] == 1:
        threshold = 0.5 if output.min() >= 0 and output.max() <= 1 else 0.0
        predicted = (output[:, 0] > threshold).astype(np.int64)
    else:
        predicted = output.argmax(axis=1)
    return float(np.mean(predicted == target))


def train_step(model: Module, loss: Loss, optimizer: Optimizer | None, X: NDArray, y: NDArray,
               l2: float = 0.0) -> tuple[float, NDArray]:
    """One step of gradient descent on the batch ``(X, y)``: forward, loss (+ ``λ/2·Σ‖W‖²``),
    backward from the loss, ``λW`` added to the weights' gradients, update (none without an
    optimizer). Returns the loss before the update and the network's output."""
    model.zero_grad()
    out = model.forward(X)
    value = loss.forward(out, y)
    model.backward(loss.backward())
    if l2:
        params = model.parameters()
        value += l2_penalty(params, l2)
        add_l2_grad(params, l2)
    if optimizer is not None:
        optimizer.step()
    return value, out


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
    seed: int | None = 0,
    on_epoch: Callable[[EpochResult], None] | None = None,
) -> History:
    """Train ``model`` on ``(X, y)`` for ``epochs`` passes of shuffled mini-batches.

    Returns the mean training loss (and accuracy, for classification losses) of each epoch.
    """
    X = np.asarray(X)
    y = np.asarray(y)
    if X.ndim != 2 or len(X) != len(y):
        raise ShapeError(f"fit: expected X of shape (n, features) and n targets, got X {X.shape}, y {y.shape}")
    if not isinstance(epochs, int) or epochs < 1:
        raise ConfigError(f"fit: epochs must be a positive integer, got {epochs!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"fit: batch_size must be a positive integer, got {batch_size!r}")
    rng = np.random.default_rng(seed)
    classify = loss.target_kind != "values"
    history = History()
    model.train()
    for epoch in range(1, epochs + 1):
        order = rng.permutation(len(X))
        X_epoch, y_epoch = X[order], y[order]  # one contiguous shuffled copy per epoch
        total_loss = total_correct = 0.0
        for start in range(0, len(X), batch_size):
            xb, yb = X_epoch[start : start + batch_size], y_epoch[start : start + batch_size]
            batch_loss, out = train_step(model, loss, optimizer, xb, yb, l2)
            total_loss += batch_loss * len(xb)
            if classify:
                total_correct += accuracy(out, yb) * len(xb)
        result = EpochResult(epoch, total_loss / len(X), total_correct / len(X) if classify else None)
        history.epochs.append(result)
        if on_epoch is not None:
            on_epoch(result)
    return history
