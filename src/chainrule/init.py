"""Weight initialisation: He (Kaiming) and Xavier (Glorot), normal and uniform, seeded.

For a weight ``W`` of shape ``(fan_in, fan_out)``:

=================  ==========================================  ======================================
scheme             distribution                                suits
=================  ==========================================  ======================================
``he_normal``      ``N(0, 2/fan_in)``                          ReLU, LeakyReLU
``he_uniform``     ``U(-√(6/fan_in), √(6/fan_in))``            ReLU, LeakyReLU
``xavier_normal``  ``N(0, 2/(fan_in+fan_out))``                sigmoid, tanh, softmax regression
``xavier_uniform`` ``U(-√(6/(fan_in+fan_out)), +…)``           sigmoid, tanh, softmax regression
``zeros``          all zero                                    softmax regression (convex)
=================  ==========================================  ======================================
"""

from __future__ import annotations

import numpy as np
from numpy.typing import DTypeLike, NDArray

from chainrule.errors import check_choice

SCHEMES = ("he_normal", "he_uniform", "xavier_normal", "xavier_uniform", "zeros")


def make_rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    """A NumPy generator from a seed, or the generator itself; ``None`` gives fresh entropy."""
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)


def init_weight(
    scheme: str,
    fan_in: int,
    fan_out: int,
    rng: int | np.random.Generator | None = None,
    dtype: DTypeLike = np.float32,
) -> NDArray:
    """A ``(fan_in, fan_out)`` weight drawn by ``scheme`` (one of :data:`SCHEMES`)."""
    check_choice("initialisation", scheme, SCHEMES)
    shape = (fan_in, fan_out)
    if scheme == "zeros":
        return np.zeros(shape, dtype=dtype)
    rng = make_rng(rng)
    variance = 2.0 / fan_in if scheme.startswith("he") else 2.0 / (fan_in + fan_out)
    if scheme.endswith("normal"):
        weight = rng.normal(0.0, np.sqrt(variance), size=shape)
    else:  # U(-a, a) has variance a²/3
        bound = np.sqrt(3.0 * variance)
        weight = rng.uniform(-bound, bound, size=shape)
    return weight.astype(dtype, copy=False)
