"""The building block: a :class:`Module` with a forward pass, a backward pass and its :class:`Parameter` s.

Convention (PRODUCT.md): batches are rows, ``X`` has shape ``(n, features)``.

* ``forward(x)`` computes the output and keeps in the module what ``backward`` will need (the cache);
* ``backward(grad_output, input_grad=True)`` takes ``∂L/∂output`` (same shape as the output), **adds**
  the gradients of the parameters into ``param.grad`` and returns ``∂L/∂input``. It reads the cache,
  never recomputes the forward pass. Gradients are reset by :meth:`Module.zero_grad`, so two backward
  passes accumulate. With ``input_grad=False`` a module may skip ``∂L/∂input`` and return ``None``: the
  first layer of a network in training, whose input is the data, saves a whole matrix product.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

import numpy as np
from numpy.typing import DTypeLike, NDArray

from chainrule.errors import ConfigError, ShapeError


class Parameter:
    """A trainable array ``data`` with its gradient ``grad`` (same shape and dtype).

    ``decay`` says whether L2 regularisation applies to it: true for weights, false for biases and
    BatchNorm's shift and scale, as in seed 003 (``λ/2·‖W‖²`` over weights only).

    :meth:`zero_grad` does not write the zeros at once: the first gradient added after it (a layer's
    ``Xᵀ·δ`` at every training step) is written straight into ``grad``, which saves a pass over the
    array to zero it and one to add to it. Reading ``grad`` before that writes the zeros, so ``grad``
    always reads as the sum of what was added since :meth:`zero_grad`.
    """

    __slots__ = ("data", "_grad", "decay", "_zero_pending")

    def __init__(self, data: NDArray, *, decay: bool = False) -> None:
        self.data = data
        self._grad = np.zeros_like(data)
        self.decay = decay
        self._zero_pending = False

    @property
    def grad(self) -> NDArray:
        if self._zero_pending:
            self._grad.fill(0)
            self._zero_pending = False
        return self._grad

    @grad.setter
    def grad(self, value: NDArray) -> None:
        self._grad = value
        self._zero_pending = False

    def zero_grad(self) -> None:
        self._zero_pending = True

    def add_matmul(self, a: NDArray, b: NDArray) -> None:
        """``grad += a @ b``; right after :meth:`zero_grad` the product is written straight into
        ``grad``, saving a temporary array and two passes over it (the weight gradient of every step)."""
        if self._zero_pending and self._grad.flags.c_contiguous:
            np.matmul(a, b, out=self._grad)
            self._zero_pending = False
        else:
            self.grad += a @ b

    def add(self, value: NDArray) -> None:
        """``grad += value`` (right after :meth:`zero_grad`: ``grad = value``, without the zeros)."""
        if self._zero_pending:
            np.copyto(self._grad, value)
            self._zero_pending = False
        else:
            self._grad += value

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    def __repr__(self) -> str:
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype})"


class Module:
    """Base class of layers and networks.

    Subclasses set ``self.params`` (name → :class:`Parameter`) and ``self.buffers`` (name → array of
    state that is not trained, e.g. BatchNorm's running statistics) and implement ``forward`` and
    ``backward``.
    """

    training: bool = True

    def __init__(self) -> None:
        self.params: dict[str, Parameter] = {}
        self.buffers: dict[str, NDArray] = {}
        self.training = True

    # -- the two passes -------------------------------------------------------------------------
    def forward(self, x: NDArray) -> NDArray:
        raise NotImplementedError

    def backward(self, grad_output: NDArray, input_grad: bool = True) -> NDArray | None:
        raise NotImplementedError

    def __call__(self, x: NDArray) -> NDArray:
        return self.forward(x)

    # -- structure --------------------------------------------------------------------------------
    def modules(self) -> Iterator[Module]:
        """This module and every module inside it, depth first."""
        yield self

    def named_parameters(self) -> Iterator[tuple[str, Parameter]]:
        yield from self.params.items()

    def parameters(self) -> list[Parameter]:
        return [p for _, p in self.named_parameters()]

    def zero_grad(self) -> None:
        for m in self.modules():  # a parameter shared by two layers is reset twice, which is harmless
            for p in m.params.values():
                p.zero_grad()

    def train(self, mode: bool = True) -> Module:
        """Training mode (batch statistics, dropout on) or, with ``mode=False``, evaluation mode."""
        for m in self.modules():
            m.training = mode
        return self

    def eval(self) -> Module:
        return self.train(False)

    def astype(self, dtype: DTypeLike) -> Module:
        """A deep copy whose parameters and buffers have ``dtype`` (e.g. float64 for gradient checks)."""
        dtype = np.dtype(dtype)
        clone = copy.deepcopy(self)
        for m in clone.modules():
            for p in m.params.values():
                p.data = p.data.astype(dtype)
                p.grad = np.zeros_like(p.data)
            for name, buf in m.buffers.items():
                m.buffers[name] = buf.astype(dtype)
            if getattr(m, "dtype", None) is not None:
                m.dtype = dtype
        return clone

    def _cached(self, name: str):
        """The value that ``forward`` kept for ``backward``, or a clear error if forward was not run."""
        value = getattr(self, name, None)
        if value is None:
            raise ConfigError(f"{self!r}: backward called before forward")
        return value

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def as_batch(x, owner: object, features: int | None = None, dtype: DTypeLike | None = None) -> NDArray:
    """``x`` as a 2-D array of rows (cast to ``dtype`` if given), or a :class:`ShapeError` naming ``owner``.

    ``features`` is the number of columns expected; ``None`` accepts any.
    """
    try:
        arr = np.asarray(x, dtype=dtype) if dtype is not None else np.asarray(x)
    except (TypeError, ValueError) as err:
        raise ShapeError(f"{owner!r}: expected a numeric array, got {type(x).__name__} ({err})") from None
    if arr.dtype.kind not in "fiub":
        raise ShapeError(f"{owner!r}: expected a numeric array, got dtype {arr.dtype}")
    if arr.ndim != 2 or (features is not None and arr.shape[1] != features):
        want = f"(n, {features})" if features is not None else "(n, features)"
        raise ShapeError(f"{owner!r}: expected input of shape {want}, got {arr.shape}")
    return arr


def check_grad_shape(owner: object, grad: NDArray, expected: tuple[int, ...]) -> NDArray:
    grad = np.asarray(grad)
    if grad.shape != expected:
        raise ShapeError(f"{owner!r}: expected an upstream gradient of shape {expected}, got {grad.shape}")
    return grad
