"""Layers with parameters or state: :class:`Linear`, :class:`BatchNorm1d`, :class:`LayerNorm`, :class:`Dropout`.

Rows are objects: ``X`` has shape ``(n, in_features)`` and a linear layer's ``W`` has shape ``(in, out)``, so
that a whole batch is one product ``Z = X·W + b``. (Written for one column vector, as many notes do, the
same layer is ``z = Wᵀx + b``: their ``W`` of shape ``(out, in)`` is our ``Wᵀ``; see docs/background.md.)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
from numpy.typing import DTypeLike, NDArray

from chainrule import kernels
from chainrule.errors import ConfigError, SettingError, ShapeError, check_fraction, check_positive
from chainrule.i18n import _, ngettext
from chainrule.init import init_weight, make_rng
from chainrule.module import Module, Parameter, as_batch, check_grad_shape
from chainrule.notation import Eq, Formulas
from chainrule.registry import LAYERS


def _size(owner: str, what: str, n: Any) -> int:
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise ConfigError(
            _("{owner}: {what} must be a positive integer, got {got!r}").format(owner=owner, what=what, got=n)
        )
    return int(n)


@LAYERS.register("linear")
class Linear(Module):
    r"""Affine layer :math:`Z = X W + b`.

    Shapes: ``X`` (n, in), ``W`` (in, out), ``b`` (out,), ``Z`` (n, out).

    Backward, with :math:`\delta = \partial L/\partial Z` of shape (n, out):

    .. math:: \partial L/\partial W = X^\top \delta,\quad
              \partial L/\partial b = \textstyle\sum_{rows} \delta,\quad
              \partial L/\partial X = \delta W^\top
    """

    symbol = "Z"
    sizes = ("in_features", "out_features")
    torch_name = "Linear"
    torch_settings: ClassVar[dict[str, str]] = {
        "in_features": "in_features",
        "out_features": "out_features",
        "bias": "bias",
    }
    torch_arrays: ClassVar[dict[str, str]] = {"W": "weight", "b": "bias"}
    torch_transposed = ("W",)

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
        self.in_features = _size("Linear", "in_features", in_features)
        self.out_features = _size("Linear", "out_features", out_features)
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
        layer.load_state_dict({"W": W, **({"b": np.asarray(b, dtype=dtype)} if b is not None else {})})
        return layer

    def forward(self, x: NDArray) -> NDArray:
        x = as_batch(x, self, self.in_features, self.dtype)
        self.x = x
        z = kernels.matmul(x, self.params["W"].data)  # (n, out)
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
        return kernels.matmul(delta, W.data.T) if input_grad else None  # (n, in)

    def output_features(self, in_features: int) -> int:
        return self.out_features

    def config(self) -> dict[str, Any]:
        return {"in_features": self.in_features, "out_features": self.out_features, "bias": "b" in self.params}

    @classmethod
    def config_from_torch(cls, module: Any) -> dict[str, Any]:
        return {"in_features": module.in_features, "out_features": module.out_features, "bias": module.bias is not None}

    def to_onnx(self, graph: Any, x: str) -> str:
        W = graph.constant(self.params["W"].data, "W")
        if "b" not in self.params:
            return graph.node("MatMul", [x, W])
        return graph.node("Gemm", [x, W, graph.constant(self.params["b"].data, "b")])  # X·W + b

    @classmethod
    def inferred_config(cls, in_features: int, given: Mapping[str, Any]) -> dict[str, Any]:
        W = given["W"]  # a problem file must give W: KeyError names it
        if not isinstance(W, np.ndarray) or W.ndim != 2:
            shown = _("shape {shape}").format(shape=W.shape) if isinstance(W, np.ndarray) else repr(W)
            raise SettingError(
                "W", _("expected a matrix (a list of rows, e.g. [[1, 2], [3, 4]]), got {got}").format(got=shown)
            )
        if W.shape[0] != in_features:
            message = ngettext(
                "expected {n} row (the layer's input has {n} feature), got shape {shape}",
                "expected {n} rows (the layer's input has {n} features), got shape {shape}",
                in_features,
            )
            raise SettingError("W", message.format(n=in_features, shape=W.shape))
        return {"in_features": W.shape[0], "out_features": W.shape[1], "bias": "b" in given}

    def formulas(self) -> Formulas:
        bias = "b" in self.params
        return Formulas(
            forward=(Eq("{out} = {in}·{W}" + (" + {b}" if bias else "")),),
            backward=(
                Eq("∂L/∂{W} = {in}ᵀ·{δ}"),
                *((Eq("∂L/∂{b} = Σ_rows {δ}"),) if bias else ()),
                Eq("∂L/∂{in} = {δ}·{W}ᵀ"),
            ),
        )

    @classmethod
    def gradcheck_cases(cls, features: int, rng: np.random.Generator) -> dict[str, Module]:
        return {"linear": cls(features, 3, seed=rng), "linear_no_bias": cls(features, 2, bias=False, seed=rng)}

    def __repr__(self) -> str:
        bias = "" if "b" in self.params else ", bias=False"
        return f"Linear({self.in_features}, {self.out_features}{bias})"


class _Normalization(Module):
    """What BatchNorm and LayerNorm share: ``x̂ = (x − μ)/√(σ² + ε)``, then ``y = γ ⊙ x̂ + β`` with a
    scale ``γ`` and a shift ``β`` per feature, and the backward pass through ``γ`` and ``β``."""

    symbol = "N"
    torch_arrays: ClassVar[dict[str, str]] = {"gamma": "weight", "beta": "bias"}

    def __init__(self, features: int, eps: float, dtype: DTypeLike) -> None:
        super().__init__()
        self.eps = check_positive(f"{type(self).__name__} eps", eps, key="eps")
        self.dtype = np.dtype(dtype)
        self.params["gamma"] = Parameter(np.ones(features, dtype=self.dtype))
        self.params["beta"] = Parameter(np.zeros(features, dtype=self.dtype))
        self.x_hat = self.inv_std = self.mean = self.var = None

    def _normalize(self, x: NDArray, mean: NDArray, var: NDArray, centered: NDArray | None = None) -> NDArray:
        """``γ ⊙ x̂ + β``, keeping ``x̂`` and ``1/√(σ² + ε)`` for the backward pass (and ``μ``, ``σ²``
        for :meth:`details`)."""
        self.mean, self.var = mean, var
        self.inv_std = 1.0 / np.sqrt(var + self.eps)
        x_hat = x - mean if centered is None else centered
        x_hat *= self.inv_std  # x̂, in the array of x − μ, which is not needed again
        self.x_hat = x_hat
        out = x_hat * self.params["gamma"].data
        out += self.params["beta"].data
        return out

    def _affine_backward(self, g: NDArray) -> tuple[NDArray, NDArray]:
        """Adds ``∂L/∂γ = Σ_rows g ⊙ x̂`` and ``∂L/∂β = Σ_rows g`` and returns both."""
        d_gamma = np.einsum("ij,ij->j", g, self.x_hat)  # (d,)
        d_beta = g.sum(axis=0)  # (d,)
        self.params["gamma"].add(d_gamma)
        self.params["beta"].add(d_beta)
        return d_gamma, d_beta

    def details(self) -> dict[str, NDArray]:
        return {"mean": self.mean, "var": self.var, "x_hat": self.x_hat}

    @classmethod
    def inferred_config(cls, in_features: int, given: Mapping[str, Any]) -> dict[str, Any]:
        return {cls.sizes[0]: in_features}

    @classmethod
    def gradcheck_cases(cls, features: int, rng: np.random.Generator) -> dict[str, Module]:
        layer = cls(features)
        layer.load_state_dict({"gamma": rng.normal(size=features), "beta": rng.normal(size=features)}, strict=False)
        return {cls.kind: layer}


@LAYERS.register("batchnorm")
class BatchNorm1d(_Normalization):
    r"""Batch normalisation: each feature (column) normalised over the rows of the batch.

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
    - \hat x\,\partial L/\partial\gamma\big)` from the two sums it needs anyway
    (:func:`chainrule.kernels.batch_norm_backward`: two passes over the batch; the forward pass three).

    In evaluation mode the statistics are constants: :math:`\partial L/\partial x = g\gamma/\sqrt{v+\epsilon}`.
    """

    sizes = ("num_features",)
    torch_name = "BatchNorm1d"
    torch_settings: ClassVar[dict[str, str]] = {"num_features": "num_features", "eps": "eps", "momentum": "momentum"}
    torch_arrays: ClassVar[dict[str, str]] = {
        **_Normalization.torch_arrays,
        "running_mean": "running_mean",
        "running_var": "running_var",
    }

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float = 0.1,
        *,
        dtype: DTypeLike = np.float32,
    ) -> None:
        self.num_features = _size("BatchNorm1d", "num_features", num_features)
        super().__init__(self.num_features, eps, dtype)
        self.momentum = check_fraction("BatchNorm1d: momentum", momentum, "momentum", closed=True)
        self.buffers["running_mean"] = np.zeros(num_features, dtype=self.dtype)
        self.buffers["running_var"] = np.ones(num_features, dtype=self.dtype)
        self.batch_stats = True  # whether the cached forward used batch statistics

    def forward(self, x: NDArray) -> NDArray:
        x = as_batch(x, self, self.num_features, self.dtype)
        self.batch_stats = self.training
        if not self.training:
            return self._normalize(x, self.buffers["running_mean"], self.buffers["running_var"])
        n = x.shape[0]
        if n < 2:
            raise ConfigError(
                _("{owner!r}: training mode needs at least 2 rows per batch, got {n}").format(owner=self, n=n)
            )
        out, self.x_hat, mean, var, self.inv_std = kernels.batch_norm(
            x, self.params["gamma"].data, self.params["beta"].data, self.eps
        )
        self.mean, self.var = mean, var  # (d,); var biased
        m = self.momentum
        self.buffers["running_mean"] *= 1 - m
        self.buffers["running_mean"] += m * mean
        self.buffers["running_var"] *= 1 - m
        self.buffers["running_var"] += (m * n / (n - 1)) * var
        return out

    def backward(self, grad_output: NDArray, input_grad: bool = True) -> NDArray:
        x_hat = self._cached("x_hat")
        g = check_grad_shape(self, grad_output, x_hat.shape)
        gamma = self.params["gamma"].data
        if not self.batch_stats:
            self._affine_backward(g)
            return g * (gamma * self.inv_std)  # γ/√(v + ε)
        # n·g − Σg − x̂·Σ(g·x̂), then times γ/(n√(σ²+ε)), with ∂L/∂β = Σg and ∂L/∂γ = Σ(g·x̂)
        grad_input, d_gamma, d_beta = kernels.batch_norm_backward(g, x_hat, gamma, self.inv_std)
        self.params["gamma"].add(d_gamma)
        self.params["beta"].add(d_beta)
        return grad_input

    def config(self) -> dict[str, Any]:
        return {"num_features": self.num_features, "eps": self.eps, "momentum": self.momentum}

    def load_state_dict(self, state: Mapping[str, NDArray], strict: bool = True) -> None:
        var = state.get("running_var") if isinstance(state, Mapping) else None
        if var is not None and np.asarray(var).dtype.kind in "fiu" and np.any(np.asarray(var) < 0):
            raise ShapeError(_("{owner!r}: running_var holds negative numbers; a variance is >= 0").format(owner=self))
        super().load_state_dict(state, strict)

    @classmethod
    def config_from_torch(cls, module: Any) -> dict[str, Any]:
        if not module.affine or not module.track_running_stats or module.momentum is None:
            torch = (
                f"BatchNorm1d(affine={module.affine}, track_running_stats={module.track_running_stats}, "
                f"momentum={module.momentum})"
            )
            raise ConfigError(
                _(
                    "{module}: chainrule's BatchNorm1d has γ and β, and running statistics that move by a momentum"
                ).format(module=torch)
            )
        return super().config_from_torch(module)

    def to_onnx(self, graph: Any, x: str) -> str:
        arrays = [
            graph.constant(self.state_dict()[name], name) for name in ("gamma", "beta", "running_mean", "running_var")
        ]
        return graph.node("BatchNormalization", [x, *arrays], epsilon=self.eps)

    def details(self) -> dict[str, NDArray]:
        if self.batch_stats:
            return super().details()
        return {"running_mean": self.mean, "running_var": self.var, "x_hat": self.x_hat}

    def formulas(self) -> Formulas:
        affine = (Eq("{out} = {gamma} ⊙ {x_hat} + {beta}"),)
        gradients = (Eq("∂L/∂{gamma} = Σ_rows {δ} ⊙ {x_hat}"), Eq("∂L/∂{beta} = Σ_rows {δ}"))
        if not self.batch_stats:
            return Formulas(
                forward=(Eq("{x_hat} = ({in} − {running_mean})/√({running_var} + {eps})", values=False), *affine),
                backward=(*gradients, Eq("∂L/∂{in} = {δ} ⊙ {gamma}/√({running_var} + {eps})")),
            )
        return Formulas(
            forward=(
                Eq("{mean} = (1/n)·Σ_rows {in}", values=False),
                Eq("{var} = (1/n)·Σ_rows ({in} − {mean})²", values=False),
                Eq("{x_hat} = ({in} − {mean})/√({var} + {eps})", values=False),
                *affine,
            ),
            backward=(
                *gradients,
                Eq(
                    "∂L/∂{in} = {gamma}/(n·√({var} + {eps})) ⊙ (n·{δ} − ∂L/∂{beta} − {x_hat} ⊙ ∂L/∂{gamma})",
                    values=False,
                ),
            ),
        )

    @classmethod
    def gradcheck_cases(cls, features: int, rng: np.random.Generator) -> dict[str, Module]:
        evaluation = cls(features)
        evaluation.load_state_dict(
            {"running_mean": rng.standard_normal(features), "running_var": rng.uniform(0.5, 2, features)}, strict=False
        )
        return {**super().gradcheck_cases(features, rng), "batchnorm_eval": evaluation.eval()}

    def __repr__(self) -> str:
        return f"BatchNorm1d({self.num_features})"


@LAYERS.register("layernorm")
class LayerNorm(_Normalization):
    r"""Layer normalisation: each row (object) normalised over its own features, as ``torch.nn.LayerNorm``
    over the last dimension, with a scale ``γ`` and a shift ``β`` per feature.

    For a row ``x`` of ``d`` features:

    .. math:: \mu = \tfrac1d\textstyle\sum_j x_j,\quad \sigma^2 = \tfrac1d\sum_j (x_j-\mu)^2,\quad
              \hat x = (x-\mu)/\sqrt{\sigma^2+\epsilon},\quad y = \gamma\odot\hat x + \beta

    The statistics are those of the row itself, in training and evaluation alike (nothing is kept
    between batches). Backward, with :math:`g = \partial L/\partial y` and :math:`\hat g = g\odot\gamma`,
    row by row:

    .. math:: \partial L/\partial x = \frac{1}{\sqrt{\sigma^2+\epsilon}}
              \Big(\hat g - \tfrac1d\textstyle\sum_j \hat g_j - \hat x\,\tfrac1d\sum_j \hat g_j\hat x_j\Big),\quad
              \partial L/\partial\gamma = \sum_{rows} g\odot\hat x,\quad \partial L/\partial\beta = \sum_{rows} g
    """

    sizes = ("normalized_shape",)
    torch_name = "LayerNorm"
    torch_settings: ClassVar[dict[str, str]] = {"normalized_shape": "normalized_shape", "eps": "eps"}

    def __init__(self, normalized_shape: int, eps: float = 1e-5, *, dtype: DTypeLike = np.float32) -> None:
        self.normalized_shape = _size("LayerNorm", "normalized_shape", normalized_shape)
        super().__init__(self.normalized_shape, eps, dtype)

    def forward(self, x: NDArray) -> NDArray:
        x = as_batch(x, self, self.normalized_shape, self.dtype)
        d = x.shape[1]
        mean = x.sum(axis=1, keepdims=True) / d  # (n, 1)
        centered = x - mean  # (n, d)
        var = np.einsum("ij,ij->i", centered, centered)[:, None] / d  # (n, 1), biased
        return self._normalize(x, mean, var, centered)

    def backward(self, grad_output: NDArray, input_grad: bool = True) -> NDArray:
        x_hat = self._cached("x_hat")
        g = check_grad_shape(self, grad_output, x_hat.shape)
        self._affine_backward(g)
        g_hat = g * self.params["gamma"].data  # ĝ = g ⊙ γ, (n, d)
        d = x_hat.shape[1]
        grad_input = g_hat - g_hat.sum(axis=1, keepdims=True) / d
        grad_input -= x_hat * (np.einsum("ij,ij->i", g_hat, x_hat)[:, None] / d)
        grad_input *= self.inv_std  # (n, 1) broadcast over the features
        return grad_input

    def config(self) -> dict[str, Any]:
        return {"normalized_shape": self.normalized_shape, "eps": self.eps}

    @classmethod
    def config_from_torch(cls, module: Any) -> dict[str, Any]:
        shape = tuple(module.normalized_shape)
        if len(shape) != 1 or not module.elementwise_affine or getattr(module, "bias", None) is None:
            torch = (
                f"LayerNorm({shape}, elementwise_affine={module.elementwise_affine}, "
                f"bias={getattr(module, 'bias', None) is not None})"
            )
            raise ConfigError(
                _("{module}: chainrule's LayerNorm normalises the last dimension of rows, with γ and β").format(
                    module=torch
                )
            )
        return {"normalized_shape": shape[0], "eps": module.eps}

    def to_onnx(self, graph: Any, x: str) -> str:
        scale, shift = (graph.constant(self.params[name].data, name) for name in ("gamma", "beta"))
        return graph.node("LayerNormalization", [x, scale, shift], axis=-1, epsilon=self.eps)

    def formulas(self) -> Formulas:
        return Formulas(
            forward=(
                Eq("{mean} = (1/d)·Σ_cols {in}", values=False),
                Eq("{var} = (1/d)·Σ_cols ({in} − {mean})²", values=False),
                Eq("{x_hat} = ({in} − {mean})/√({var} + {eps})", values=False),
                Eq("{out} = {gamma} ⊙ {x_hat} + {beta}"),
            ),
            backward=(
                Eq("∂L/∂{gamma} = Σ_rows {δ} ⊙ {x_hat}"),
                Eq("∂L/∂{beta} = Σ_rows {δ}"),
                Eq("ĝ = {δ} ⊙ {gamma}", result=None, values=False),
                Eq(
                    "∂L/∂{in} = (ĝ − (1/d)·Σ_cols ĝ − {x_hat} ⊙ (1/d)·Σ_cols(ĝ ⊙ {x_hat}))/√({var} + {eps})",
                    values=False,
                ),
            ),
        )

    def __repr__(self) -> str:
        return f"LayerNorm({self.normalized_shape})"


@LAYERS.register("dropout")
class Dropout(Module):
    r"""Inverted dropout: each input is zeroed with probability ``p`` (the **drop** probability) and the
    kept ones are scaled by ``1/(1−p)``, so that evaluation mode is the identity.

    .. math:: y = x \odot m / (1-p),\quad m_{ij}\sim\text{Bernoulli}(1-p),\qquad
              \partial L/\partial x = g \odot m / (1-p)
    """

    #: Its output depends on random numbers, which a problem file (where every number is given) cannot hold.
    deterministic = False
    torch_name = "Dropout"
    torch_settings: ClassVar[dict[str, str]] = {"p": "p"}

    def __init__(self, p: float = 0.5, *, seed: int | np.random.Generator | None = None) -> None:
        super().__init__()
        self.p = check_fraction(_("Dropout: p is the drop probability and"), p, "p")
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

    def config(self) -> dict[str, Any]:
        return {"p": self.p}

    def to_onnx(self, graph: Any, x: str) -> str:
        return x  # the identity in evaluation mode

    def details(self) -> dict[str, NDArray]:
        return {"mask": self.mask} if isinstance(self.mask, np.ndarray) else {}

    def formulas(self) -> Formulas:
        if not isinstance(self.mask, np.ndarray):  # evaluation mode (or p = 0): the identity
            return Formulas(forward=(Eq("{out} = {in}"),), backward=(Eq("∂L/∂{in} = {δ}"),))
        return Formulas(
            forward=(Eq("{out} = {in} ⊙ {mask}"), Eq("M = [u ≥ p]/(1 − p),  u uniform in [0, 1)", result=None)),
            backward=(Eq("∂L/∂{in} = {δ} ⊙ {mask}"),),
        )

    @classmethod
    def gradcheck_cases(cls, features: int, rng: np.random.Generator) -> dict[str, Module]:
        return {"dropout": cls(0.4, seed=rng)}
