"""A trace of one training step: what every layer received and returned, forward and backward.

The trace is recorded where :class:`~chainrule.network.Sequential` calls its layers (its ``observer``),
so it holds copies of the arrays the library computed — never a second computation of the maths. Beside
a layer's inputs, outputs and gradients it keeps what the layer reports of its own work: after the
forward pass its :meth:`~chainrule.module.Module.details` (BatchNorm's batch mean and variance, kept for
this, and its ``x̂``), after the backward pass its
:meth:`~chainrule.module.Module.backward_details` (an element-wise activation's local derivative, which
is its backward pass applied to ones).

    >>> trace = Trace()
    >>> with trace.recording(model):
    ...     train_step(model, loss, optimizer, X, y)
    >>> trace.layers[0].grads["W"]
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from chainrule.i18n import _
from chainrule.module import Module
from chainrule.network import Sequential


@dataclass
class LayerRecord:
    """One layer's part of a step.

    ``params`` are its parameters before the step; ``grads`` what their ``.grad`` held right after its
    backward pass (its own gradients, after ``zero_grad``; with tied weights, plus what the later layer
    sharing them added first); ``details`` the values named in :meth:`Module.details` and
    :meth:`Module.backward_details`.
    """

    index: int
    layer: Module
    input: NDArray | None = None
    output: NDArray | None = None
    params: dict[str, NDArray] = field(default_factory=dict)
    details: dict[str, NDArray] = field(default_factory=dict)
    grad_output: NDArray | None = None
    grad_input: NDArray | None = None
    grads: dict[str, NDArray] = field(default_factory=dict)

    @property
    def local_derivative(self) -> NDArray | None:
        """An element-wise activation's ``f'(z)`` (``None`` for other layers)."""
        return self.details.get("f′")


class Trace:
    """Records every layer call of a :class:`Sequential` while :meth:`recording` is active."""

    def __init__(self) -> None:
        self.layers: dict[int, LayerRecord] = {}

    @contextmanager
    def recording(self, model: Sequential) -> Iterator[Trace]:
        if not isinstance(model, Sequential):
            raise TypeError(_("a trace records a Sequential, got {got}").format(got=type(model).__name__))
        previous, model.observer = model.observer, self
        try:
            yield self
        finally:
            model.observer = previous

    def __repr__(self) -> str:
        kinds = ", ".join(r.layer.kind for r in self.layers.values())
        return f"Trace({len(self.layers)} layers recorded: {kinds})"

    def _repr_html_(self) -> str:
        """Jupyter's display: what was recorded of each layer, by shape."""
        from chainrule.html import escape, table

        def shape(array) -> str:
            return "" if array is None else "×".join(map(str, array.shape))

        rows = [
            (
                r.index,
                repr(r.layer),
                shape(r.input),
                shape(r.output),
                shape(r.grad_input),
                ", ".join(f"∂{name} {shape(g)}" for name, g in r.grads.items()),
                ", ".join(r.details),
            )
            for r in (self.layers[i] for i in sorted(self.layers))
        ]
        header = ("#", "layer", "input", "output", "∂input", "parameter gradients", "details")
        return f"<p>{escape(repr(self))}</p>" + table(header, rows)

    # -- the observer interface of Sequential ---------------------------------------------------
    def on_forward(self, index: int, layer: Module, x: NDArray, out: NDArray) -> None:
        record = self.layers[index] = LayerRecord(index, layer)
        record.input, record.output = _copy(x), _copy(out)
        record.params = {name: p.data.copy() for name, p in layer.params.items()}
        record.details = {name: _copy(value) for name, value in layer.details().items()}

    def on_backward(self, index: int, layer: Module, grad_output: NDArray, grad_input: NDArray) -> None:
        record = self.layers.setdefault(index, LayerRecord(index, layer))
        record.grad_output, record.grad_input = _copy(grad_output), _copy(grad_input)
        record.grads = {name: p.grad.copy() for name, p in layer.params.items()}
        record.details.update({name: _copy(value) for name, value in layer.backward_details().items()})


def _copy(array) -> NDArray | None:
    return None if array is None else np.array(array, copy=True)
