"""One step of gradient descent on one batch: forward, loss, backward, update.

The step of every training loop and of ``chainrule explain``: the network's output, the loss (plus an
L2 penalty ``λ/2·Σ‖W‖²`` on the weights), the backward pass from the loss through every layer, ``λW``
added to the weights' gradients, and the optimizer's update.
"""

from __future__ import annotations

from numpy.typing import NDArray

from chainrule.losses import Loss, add_l2_grad, l2_penalty
from chainrule.module import Module
from chainrule.optim import Optimizer


def train_step(
    model: Module,
    loss: Loss,
    optimizer: Optimizer | None,
    X: NDArray,
    y: NDArray,
    l2: float = 0.0,
    input_grad: bool = False,
) -> tuple[float, NDArray]:
    """One step on the batch ``(X, y)``; returns the loss before the update and the network's output.

    Without an optimizer the step stops after the backward pass (the gradients are in ``param.grad``).
    ``∂L/∂X`` is computed only with ``input_grad=True`` (a trace that shows it)."""
    model.zero_grad()
    out = model.forward(X)
    value = loss.forward(out, y)
    model.backward(loss.backward(), input_grad=input_grad)
    if l2:
        params = model.parameters()
        value += l2_penalty(params, l2)
        add_l2_grad(params, l2)
    if optimizer is not None:
        optimizer.step()
    return value, out
