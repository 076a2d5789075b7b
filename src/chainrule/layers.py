"""Layers with parameters or state: :class:`Linear`, :class:`BatchNorm1d`, :class:`Dropout`.

Rows are objects: ``X`` has shape ``(n, in_features)``. Seed 001 writes the same maths for one column
vector with ``W`` of shape ``(out, in)`` (``z = W·a + b``); here ``W`` is its transpose, ``(in, out)``, so
that a whole batch is one product ``Z = X·W + b`` (seeds 002 and 003).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import DTypeLike, NDArray

from chainrule.errors import ConfigError, check_positive
from chainrule.init import init_weight, make_rng
from chainrule.module import Module, Parameter, as_batch, check_grad_shape


class Linear(Module):
    r"""Affine layer :math:`Z = X W + b`.

    Shapes: ``X`` (n, in), ``W`` (in, out), ``b`` (out,), ``Z`` (n, out).

    Backward, with :math:`\delta = \partial L/\partial Z` of shape (n, out):

    .. math:: \partial L/\partial W = X^\top \delta,\quad
              \partial L/\partial b = \textstyle\sum_{rows} \delta,\quad
              \partial L/\partial X = \delta W^\top
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        init: str = "xavier_uniform",
        seed: int | np.random.Generator | None = None,
        dtype: DTypeLike = np.float32,
    ) -> None:
        super().__init__()
        for what, n in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
                raise ConfigError(f"Linear: {what} must be a positive integer, got {n!r}")
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.dtype = np.dtype(dtype)
        weight = init_weight(init, self.in_features, self.out_features, seed, self.dtype)
        self.params["W"] = Parameter(weight, decay=True)
        if bias:
            self.params["b"] = Parameter(np.zeros(self.out_features, dtype=self.dtype))
        self.x = None

    @classmethod
    def from_arrays(cls, W, b=None, dtype: DTypeLike = np.float64) -> Linear:
        """A layer with the given weight ``W`` (in, out) and optional bias ``b`` (out,)."""
        W = np.array(W, dtype=dtype, ndmin=2)
        layer = cls(W.shape[0], W.shape[1], bias=b is not None, init="zeros", dtype=dtype)
        layer.params["W"].data[...] = W
        if b is not None:
            b = np.asarray(b, dtype=dtype)
            if b.shape != (W.shape[1],):
                raise ConfigError(f"{layer!r}: expected b of shape ({W.shape[1]},), got {b.shape}")
            layer.params["b"].data[...] = b
        return layer

    def forward(self, x: NDArray) -> NDArray:
        x = as_batch(x, self, self.in_features, self.dtype)
        self.x = x
        z = x @ self.params["W"].data  # (n, out)
        if "b" in self.params:
            z += self.params["b"].data
        return z

    def backward(self, grad_output: NDArray, input_grad: bool = True) -> NDArray | None:
        x = self._cached("x")
        delta = check_grad_shape(self, grad_output, (x.shape[0], self.out_features))
        W = self.params["W"]
        W.add_matmul(x.T, delta)  # ∂L/∂W += Xᵀ·δ, (in, out)
        if "b" in self.params:
            self.params["b"].add(delta.sum(axis=0))  # (out,)
        return delta @ W.data.T if input_grad else None  # (n, in)

    def __repr__(self) -> str:
        bias = "" if "b" in self.params else ", bias=False"
        return f"Linear({self.in_features}, {self.out_features}{bias})"


class BatchNorm1d(Module):
    r"""Batch normalisation over the rows of a batch, per feature (seed 001, section 5).

    Training mode, for a batch ``X`` (n, d):

    .. math:: \mu = \tfrac1n\textstyle\sum_i x_i,\quad \sigma^2 = \tfrac1n\sum_i (x_i-\mu)^2,\quad
              \hat x = (x-\mu)/\sqrt{\sigma^2+\epsilon},\quad y = \gamma\hat x + \beta

    and the running averages move by ``momentum`` towards ``μ`` and the *unbiased* variance
    ``σ²·n/(n−1)`` (as PyTorch does). Evaluation mode uses the running statistics instead.

    Backward in training mode is the full one: ``μ`` and ``σ²`` depend on every row, so with
    :math:`g = \partial L/\partial y` and :math:`\hat g = g\gamma`:

    .. math:: \partial L/\partial x = \frac{1}{n\sqrt{\sigma^2+\epsilon}}
              \Big(n\hat g - \textstyle\sum_i \hat g_i - \hat x \sum_i \hat g_i \hat x_i\Big),\quad
              \partial L/\partial\gamma = \sum_i g_i\hat x_i,\quad \partial L/\partial\beta = \sum_i g_i

    Since :math:`\gamma` is the same in every row, :math:`\sum_i \hat g_i = \gamma\,\partial L/\partial\beta`
    and :math:`\sum_i \hat g_i\hat x_i = \gamma\,\partial L/\partial\gamma`, so the code computes
    :math:`\partial L/\partial x = \frac{\gamma}{n\sqrt{\sigma^2+\epsilon}}\big(ng - \partial L/\partial\beta
    - \hat x\,\partial L/\partial\gamma\big)` from the two sums it needs anyway: five passes over the
    batch instead of twelve.

    In evaluation mode the statistics are constants: :math:`\partial L/\partial x = g\gamma/\sqrt{v+\epsilon}`.
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float = 0.1,
        *,
        dtype: DTypeLike = np.float32,
    ) -> None:
        super().__init__()
        if not isinstance(num_features, (int, np.integer)) or num_features < 1:
            raise ConfigError(f"BatchNorm1d: num_features must be a positive integer, got {num_features!r}")
        self.num_features = int(num_features)
        self.eps = check_positive("BatchNorm1d eps", eps)
        self.momentum = float(momentum)
        if not 0.0 <= self.momentum <= 1.0:
            raise ConfigError(f"BatchNorm1d: momentum must be in [0, 1], got {momentum!r}")
        self.dtype = np.dtype(dtype)
        self.params["gamma"] = Parameter(np.ones(num_features, dtype=self.dtype))
        self.params["beta"] = Parameter(np.zeros(num_features, dtype=self.dtype))
        self.buffers["running_mean"] = np.zeros(num_features, dtype=self.dtype)
        self.buffers["running_var"] = np.ones(num_features, dtype=self.dtype)
        self.x_hat = self.inv_std = None
        self.batch_stats = True  # whether the cached forward used batch statistics

    def forward(self, x: NDArray) -> NDArray:
        x = as_batch(x, self, self.num_features, self.dtype)
        if self.training:
            n = x.shape[0]
            if n < 2:
                raise ConfigError(f"{self!r}: training mode needs at least 2 rows per batch, got {n}")
            mean = x.sum(axis=0) / n  # (d,); the same numbers as x.mean(axis=0), without its overhead
            centered = x - mean  # (n, d)
            var = np.einsum("ij,ij->j", centered, centered) / n  # (d,), biased; no (n, d) temporary
            m = self.momentum
            self.buffers["running_mean"] *= 1 - m
            self.buffers["running_mean"] += m * mean
            self.buffers["running_var"] *= 1 - m
            self.buffers["running_var"] += (m * n / (n - 1)) * var
        else:
            centered = x - self.buffers["running_mean"]
            var = self.buffers["running_var"]
        self.mean, self.var = (mean if self.training else self.buffers["running_mean"]), var
        self.inv_std = 1.0 / np.sqrt(var + self.eps)  # (d,)
        centered *= self.inv_std  # x̂, in the array of x − μ, which is not needed again
        self.x_hat = centered  # (n, d)
        self.batch_stats = self.training
        out = self.x_hat * self.params["gamma"].data
        out += self.params["beta"].data
        return out

    def backward(self, grad_output: NDArray, input_grad: bool = True) -> NDArray:
        x_hat = self._cached("x_hat")
        g = check_grad_shape(self, grad_output, x_hat.shape)
        gamma = self.params["gamma"]
        d_gamma = np.einsum("ij,ij->j", g, x_hat)  # Σ g·x̂, (d,)
        d_beta = g.sum(axis=0)  # Σ g, (d,)
        gamma.add(d_gamma)
        self.params["beta"].add(d_beta)
        scale = gamma.data * self.inv_std  # γ/√(σ²+ε), (d,)
        if not self.batch_stats:
            return g * scale
        n = x_hat.shape[0]
        grad_input = g * n  # n·g − Σg − x̂·Σ(g·x̂), then times γ/(n√(σ²+ε))
        grad_input -= d_beta
        grad_input -= x_hat * d_gamma
        grad_input *= scale / n
        return grad_input

    def __repr__(self) -> str:
        return f"BatchNorm1d({self.num_features})"


class Dropout(Module):
    r"""Inverted dropout: each input is zeroed with probability ``p`` (the **drop** probability) and the
    kept ones are scaled by ``1/(1−p)``, so that evaluation mode is the identity.

    .. math:: y = x \odot m / (1-p),\quad m_{ij}\sim\text{Bernoulli}(1-p),\qquad
              \partial L/\partial x = g \odot m / (1-p)
    """

    def __init__(self, p: float = 0.5, *, seed: int | np.random.Generator | None = None) -> None:
        super().__init__()
        try:
            p = float(p)
        except (TypeError, ValueError):
            raise ConfigError(f"Dropout: p must be a number in [0, 1), got {p!r}") from None
        if not 0.0 <= p < 1.0:
            raise ConfigError(f"Dropout: p is the drop probability and must be in [0, 1), got {p!r}")
        self.p = p
        self.rng = make_rng(seed)
        self.mask = None

    def forward(self, x: NDArray) -> NDArray:
        x = np.asarray(x)
        if not self.training or self.p == 0.0:
            self.mask = 1.0
            return x
        keep = self.rng.random(x.shape, dtype=np.float64) >= self.p
        self.mask = keep.astype(x.dtype) * x.dtype.type(1.0 / (1.0 - self.p))
        return x * self.mask

    def backward(self, grad_output: NDArray, input_grad: bool = True) -> NDArray:
        return grad_output * self._cached("mask")

    def __repr__(self) -> str:
        return f"Dropout(p={self.p})"
