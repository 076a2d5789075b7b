"""Activation layers (seed 001, section 2): element-wise functions and the row-wise softmax.

Each caches what its derivative needs — for most, its own output ``a`` (``σ' = a(1−a)``,
``tanh' = 1−a²``, ``ReLU' = [a > 0]``) — and its backward multiplies the incoming gradient by the local
derivative: ``∂L/∂z = ∂L/∂a ⊙ f'(z)``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from chainrule import kernels
from chainrule.errors import ConfigError, ShapeError
from chainrule.module import Module, check_grad_shape


class Activation(Module):
    """An element-wise activation ``a = f(z)``; subclasses give ``f`` and ``f'`` from the cache."""

    #: The local derivative as it is written in the trace (e.g. ``[z > 0]``).
    derivative_formula = "f'(z)"

    def __init__(self) -> None:
        super().__init__()
        self.out = None

    def forward(self, x: NDArray) -> NDArray:
        x = np.asarray(x)
        if x.dtype.kind not in "fiub":
            raise ShapeError(f"{self!r}: expected a numeric array, got dtype {x.dtype}")
        if x.dtype.kind != "f":
            x = x.astype(np.float64)
        self.out = self.function(x)
        return self.out

    def backward(self, grad_output: NDArray, input_grad: bool = True) -> NDArray:
        out = self._cached("out")
        grad_output = check_grad_shape(self, grad_output, out.shape)
        return grad_output * self.local_derivative()

    def function(self, x: NDArray) -> NDArray:
        raise NotImplementedError

    def local_derivative(self) -> NDArray:
        """``f'(z)`` at the cached forward input, as an array of the input's shape."""
        raise NotImplementedError


class Identity(Activation):
    r""":math:`a = z`, :math:`a' = 1` (the output layer of a regression)."""

    derivative_formula = "1"

    def function(self, x):
        return x

    def local_derivative(self):
        return np.ones_like(self.out)


class Sigmoid(Activation):
    r""":math:`\sigma(z) = 1/(1+e^{-z})`, :math:`\sigma'(z) = \sigma(z)(1-\sigma(z))`."""

    derivative_formula = "σ(z)(1 − σ(z))"

    def function(self, x):
        with np.errstate(over="ignore"):  # exp(-z) = inf for z ≪ 0 gives the right limit, 0
            return 1.0 / (1.0 + np.exp(-x))

    def local_derivative(self):
        return self.out * (1.0 - self.out)


class Tanh(Activation):
    r""":math:`\tanh(z)`, :math:`\tanh'(z) = 1 - \tanh^2(z)`."""

    derivative_formula = "1 − tanh²(z)"

    def function(self, x):
        return np.tanh(x)

    def local_derivative(self):
        return 1.0 - self.out * self.out


class ReLU(Activation):
    r""":math:`\max(0, z)`, derivative :math:`[z > 0]` (0 at :math:`z = 0`, as in PyTorch)."""

    derivative_formula = "[z > 0]"

    def function(self, x):
        return kernels.relu(x)

    def local_derivative(self):
        return (self.out > 0).astype(self.out.dtype)  # a > 0 exactly where z > 0

    def backward(self, grad_output: NDArray, input_grad: bool = True) -> NDArray:
        out = self._cached("out")
        grad_output = check_grad_shape(self, grad_output, out.shape)
        return kernels.relu_grad(grad_output, out)  # grad · [z > 0] in one pass, without the 0/1 array


class LeakyReLU(Activation):
    r""":math:`z` for :math:`z > 0`, else :math:`\alpha z`; derivative 1 or :math:`\alpha`."""

    def __init__(self, alpha: float = 0.01) -> None:
        super().__init__()
        try:
            self.alpha = float(alpha)
        except (TypeError, ValueError):
            raise ConfigError(f"LeakyReLU: alpha must be a number, got {alpha!r}") from None
        if not 0.0 <= self.alpha < 1.0:
            raise ConfigError(f"LeakyReLU: alpha must be in [0, 1), got {alpha!r}")
        self.derivative_formula = f"[z > 0] + {self.alpha:g}·[z ≤ 0]"

    def function(self, x):
        return np.where(x > 0, x, x * x.dtype.type(self.alpha))

    def local_derivative(self):
        return np.where(self.out > 0, 1.0, self.alpha).astype(self.out.dtype)

    def __repr__(self) -> str:
        return f"LeakyReLU(alpha={self.alpha:g})"


class Softmax(Module):
    r"""Softmax over each row, stable through the max-subtraction of seed 003:

    .. math:: s_{ik} = \frac{e^{z_{ik} - \max_j z_{ij}}}{\sum_j e^{z_{ij} - \max_j z_{ij}}}

    Its Jacobian is :math:`\partial s_k/\partial z_j = s_k(\Delta_{kj} - s_j)` (seeds 003, 004), so the
    backward pass is the full Jacobian-vector product, row by row:

    .. math:: \partial L/\partial z = s \odot \big(g - \textstyle\sum_k g_k s_k\big)
    """

    derivative_formula = "s ⊙ (g − Σ(g ⊙ s))"

    def __init__(self) -> None:
        super().__init__()
        self.out = None

    def forward(self, x: NDArray) -> NDArray:
        x = np.asarray(x)
        if x.ndim != 2 or x.dtype.kind not in "fiub":
            raise ShapeError(f"{self!r}: expected numeric logits of shape (n, classes), got {x.shape}")
        self.out = softmax(x)
        return self.out

    def backward(self, grad_output: NDArray, input_grad: bool = True) -> NDArray:
        s = self._cached("out")
        g = check_grad_shape(self, grad_output, s.shape)
        return s * (g - np.sum(g * s, axis=1, keepdims=True))  # (n, classes)


def row_max(x: NDArray) -> NDArray:
    """The largest value of each row of ``x`` (n, k), as a column (n, 1).

    The same as ``x.max(axis=1, keepdims=True)`` (NaN included), twice as fast on the short rows of
    class scores, where NumPy's max pays its set-up on every row and its arg-max does not."""
    return x[np.arange(len(x)), x.argmax(axis=1)][:, None]


def softmax(logits: NDArray) -> NDArray:
    """Row-wise softmax of ``logits`` (n, classes), finite for any finite logits."""
    shifted = logits - row_max(logits)
    if shifted.dtype.kind != "f":
        shifted = shifted.astype(np.float64)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=1, keepdims=True)
    return shifted


ACTIVATIONS: dict[str, type[Module]] = {
    "identity": Identity,
    "sigmoid": Sigmoid,
    "tanh": Tanh,
    "relu": ReLU,
    "leaky_relu": LeakyReLU,
    "softmax": Softmax,
}
