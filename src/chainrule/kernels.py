"""The compiled loops of ``chainrule/_kernels.c``, each next to the NumPy code it replaces.

The extension is built at install where a C compiler is found (``setup.py``). Without it, or with the
environment variable ``CHAINRULE_NO_KERNELS=1``, ``compiled`` is ``None`` and chainrule runs the NumPy
code, which gives the same results (the tests compare both); only the speed differs.
"""

from __future__ import annotations

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
    for a in others:
        if a.dtype != dtype or not a.flags.c_contiguous:
            return False
    return True


def take_rows(X: NDArray, rows: NDArray, out: NDArray) -> NDArray:
    """``out[...] = X[rows]`` for a batch of row indices; returns ``out``."""
    if (compiled is not None and rows.dtype == np.intp and X.flags.c_contiguous and out.flags.c_contiguous
            and out.dtype == X.dtype):
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
