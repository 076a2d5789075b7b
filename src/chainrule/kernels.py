"""The compiled loops of ``chainrule/_kernels.c``, each next to the NumPy code it replaces.

Callers ask for an operation (``adam_step``, ``relu_grad``, ``erf``, ``matmul``); whether it runs compiled
or in NumPy is decided here, per call, from the arrays it is given.

The extension is built at install where a C compiler is found (``setup.py``). Without it, or with the
environment variable ``CHAINRULE_NO_KERNELS=1``, ``compiled`` is ``None`` and chainrule runs the NumPy
code, which gives the same results (the tests compare both); only the speed differs.
"""

from __future__ import annotations

import math
import os

import numpy as np
from numpy.typing import NDArray

try:
    from chainrule import _kernels as compiled
except ImportError:
    compiled = None
if os.environ.get("CHAINRULE_NO_KERNELS") == "1":
    compiled = None


def fusable(first: NDArray, *others: NDArray) -> bool:
    """Whether the compiled updates can work on these arrays: C-contiguous, all float32 or all float64."""
    dtype = first.dtype
    if compiled is None or dtype.char not in "fd" or not first.flags.c_contiguous:
        return False
    for a in others:  # noqa: SIM110 - a loop, not all() over a generator: called several times per step
        if a.dtype != dtype or not a.flags.c_contiguous:
            return False
    return True


def sgd_step(param: NDArray, grad: NDArray, lr: float) -> None:
    """``param -= lr·grad`` in place."""
    if fusable(param, grad):
        compiled.sgd_step(param, grad, lr)
    else:
        param -= lr * grad


def adam_step(
    param: NDArray,
    grad: NDArray,
    m: NDArray,
    v: NDArray,
    beta1: float,
    beta2: float,
    step_size: float,
    inv_sqrt_bc2: float,
    eps: float,
) -> None:
    """One Adam update in place, with the bias corrections folded into ``step_size = lr/(1 − β₁ᵗ)`` and
    ``inv_sqrt_bc2 = 1/√(1 − β₂ᵗ)``::

        m ← β₁·m + (1 − β₁)·g,   v ← β₂·v + (1 − β₂)·g²,   θ ← θ − step_size·m/(√v·inv_sqrt_bc2 + ε)

    The NumPy code rounds each operation as the compiled loop does, so both give the same bits, but for
    one thing: the compiled loop stores a moment that falls below the smallest normal number as 0 (a
    subnormal moment of a weight whose gradient stays 0 makes every later update of it 3.5× slower)."""
    if fusable(param, grad, m, v):
        compiled.adam_step(param, grad, m, v, beta1, beta2, step_size, inv_sqrt_bc2, eps)
        return
    m *= beta1
    m += (1.0 - beta1) * grad
    v *= beta2
    v += (1.0 - beta2) * (grad * grad)
    denominator = np.sqrt(v)
    denominator *= inv_sqrt_bc2
    denominator += eps
    param -= step_size * (m / denominator)


# The sgemm of NumPy's BLAS (its address, and whether it takes 64-bit integers) while training shares the
# products out in blocks (chainrule.training.threads); None: every product is NumPy's.
_sgemm: tuple[int, bool] | None = None


def matmul(a: NDArray, b: NDArray, out: NDArray | None = None, accumulate: bool = False) -> NDArray:
    """``a @ b`` (into ``out``, or added to it with ``accumulate``); returns the result.

    While training (:mod:`chainrule.training.threads`) a float32 product of 2-D arrays stored in either
    order (a C-contiguous array or the transpose of one) is cut into blocks that depend on the shapes
    alone (rows or columns of the result, or parts of the inner dimension whose products are added in a
    fixed order), each computed by BLAS on one thread, shared with a helper thread where that is measured
    faster: the same numbers on one thread as on two, idle or busy."""
    if accumulate:
        out += matmul(a, b)  # as NumPy's ``out += a @ b`` rounds: BLAS adding into out would not
        return out
    if (
        _sgemm is not None
        and a.ndim == 2
        and b.ndim == 2
        and a.dtype == b.dtype == np.float32
        and (out is None or (out.dtype == np.float32 and out.flags.c_contiguous))
    ):
        trans_a, trans_b = not a.flags.c_contiguous, not b.flags.c_contiguous
        if (not trans_a or a.T.flags.c_contiguous) and (not trans_b or b.T.flags.c_contiguous):
            if out is None:
                out = np.empty((a.shape[0], b.shape[1]), dtype=np.float32)
            compiled.matmul(a.T if trans_a else a, b.T if trans_b else b, out, trans_a, trans_b, *_sgemm)
            return out
    return a @ b if out is None else np.matmul(a, b, out=out)


def batch_norm(
    x: NDArray, gamma: NDArray, beta: NDArray, eps: float
) -> tuple[NDArray, NDArray, NDArray, NDArray, NDArray]:
    """BatchNorm's training-mode forward pass on a batch ``x`` (n, d), n ≥ 1: ``(out, x̂, μ, σ², 1/√(σ² + ε))``
    with ``μ = Σ_rows x / n``, ``σ² = Σ_rows (x − μ)² / n`` (biased), ``x̂ = (x − μ)/√(σ² + ε)`` and
    ``out = γ ⊙ x̂ + β``. The compiled loop makes three passes over the batch and rounds as this NumPy code."""
    n, d = x.shape
    eps = float(eps)  # rounded to x's type, as a Python number is: the same ε in both codes
    # One feature: NumPy sums a contiguous column pairwise, not row after row as the loop does
    if d > 1 and fusable(x, gamma, beta):
        out, x_hat = np.empty_like(x), np.empty_like(x)
        mean, var, inv_std = (np.empty(d, dtype=x.dtype) for _ in range(3))
        compiled.batch_norm(x, gamma, beta, out, x_hat, mean, var, inv_std, eps)
        return out, x_hat, mean, var, inv_std
    mean = x.sum(axis=0) / n  # the rows added in order, as the compiled loop does
    x_hat = x - mean
    var = np.square(x_hat).sum(axis=0) / n
    inv_std = 1.0 / np.sqrt(var + eps)
    x_hat *= inv_std
    out = x_hat * gamma
    out += beta
    return out, x_hat, mean, var, inv_std


def batch_norm_backward(
    g: NDArray, x_hat: NDArray, gamma: NDArray, inv_std: NDArray
) -> tuple[NDArray, NDArray, NDArray]:
    """BatchNorm's training-mode backward pass from ``g = ∂L/∂out`` (n, d): ``(∂L/∂x, ∂L/∂γ, ∂L/∂β)`` with
    ``∂L/∂γ = Σ_rows g ⊙ x̂``, ``∂L/∂β = Σ_rows g`` and ``∂L/∂x = (n·g − ∂L/∂β − x̂ ⊙ ∂L/∂γ)·γ/(n√(σ² + ε))``
    (:class:`chainrule.layers.BatchNorm1d` derives it). The compiled loop makes two passes."""
    n, d = g.shape
    if d > 1 and fusable(g, x_hat, gamma, inv_std):
        grad_input = np.empty_like(g)
        d_gamma, d_beta, scale = (np.empty(d, dtype=g.dtype) for _ in range(3))
        compiled.batch_norm_backward(g, x_hat, gamma, inv_std, grad_input, d_gamma, d_beta, scale)
        return grad_input, d_gamma, d_beta
    d_gamma = (g * x_hat).sum(axis=0)  # (d,), the rows added in order
    d_beta = g.sum(axis=0)  # (d,)
    grad_input = g * n
    grad_input -= d_beta
    grad_input -= x_hat * d_gamma
    grad_input *= gamma * inv_std / n
    return grad_input, d_gamma, d_beta


def take_rows(X: NDArray, rows: NDArray, out: NDArray) -> NDArray:
    """``out[...] = X[rows]`` for a batch of row indices; returns ``out``."""
    if (
        compiled is not None
        and rows.dtype == np.intp
        and X.flags.c_contiguous
        and out.flags.c_contiguous
        and out.dtype == X.dtype
    ):
        compiled.take_rows(X, rows, out)
        return out
    return np.take(X, rows, axis=0, out=out)


def relu(z: NDArray) -> NDArray:
    """``max(z, 0)`` as a new array (NaN stays NaN)."""
    if fusable(z):
        out = np.empty_like(z)
        compiled.relu(z, out)
        return out
    return np.maximum(z, 0)


def relu_grad(grad: NDArray, a: NDArray) -> NDArray:
    """``grad · [a > 0]`` as a new array: the ReLU's backward pass from its output ``a``."""
    if fusable(grad, a):
        out = np.empty_like(grad)
        compiled.relu_grad(grad, a, out)
        return out
    return grad * (a > 0)


def erf(x: NDArray) -> NDArray:
    """The error function of each entry of ``x`` (float32 or float64), as a new array of its dtype."""
    out = np.empty_like(x)
    if fusable(x):
        compiled.erf(x, out)
        return out
    out[...] = _erf_each(x)
    return out


_erf_each = np.frompyfunc(math.erf, 1, 1)  # math.erf, one Python call per entry: correct, not fast
