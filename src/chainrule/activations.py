"""Activation layers: element-wise functions ``a = f(z)``, and the softmax of each row.

An element-wise activation passes back ``∂L/∂z = ∂L/∂a ⊙ f'(z)``. Each writes that product once, in
:meth:`ElementWise.times_derivative`; the local derivative ``f'(z)`` that the trace records and ``explain``
shows is that same product for an upstream gradient of ones, so the number shown is the number used.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from chainrule import kernels
from chainrule.errors import ConfigError, ShapeError, check_fraction
from chainrule.i18n import _
from chainrule.module import Module, check_grad_shape
from chainrule.notation import Eq, Formulas, with_formulas
from chainrule.registry import LAYERS


class Activation(Module):
    """A layer without parameters that applies a fixed function to its input (element-wise or by row)."""

    #: Formulas used in this layer's formulas, defined (``Φ(z) = …``), shown once under its forward pass.
    definitions: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        super().__init__()
        self.out = None

    def _input(self, x) -> NDArray:
        x = np.asarray(x)
        if x.dtype.kind not in "fiub":
            raise ShapeError(
                _("{owner!r}: expected a numeric array, got dtype {dtype}").format(owner=self, dtype=x.dtype)
            )
        return x if x.dtype.kind == "f" else x.astype(np.float64)


class ElementWise(Activation):
    """An element-wise activation ``a = f(z)``: subclasses give ``f`` (:meth:`apply`), the backward
    product ``g ⊙ f'(z)`` (:meth:`times_derivative`, from what forward cached) and both as text, from
    which their docstring's formulas are written."""

    #: ``f`` and ``f'`` as shown, with ``{in}`` for ``z`` and ``{out}`` for ``a`` (``= …`` adds a form).
    function: ClassVar[str] = "f({in})"
    derivative: ClassVar[str] = "f′({in})"
    #: The initialisation of the weights before it that keeps the scale of the signal (:mod:`chainrule.init`):
    #: Xavier for functions that are linear near 0, He for the ReLU family, which zero half their inputs.
    init: ClassVar[str] = "xavier_uniform"
    #: The ONNX operator computing ``f`` (``"Relu"``), for the kinds that are one operator.
    onnx_op: ClassVar[str | None] = None

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        formulas = [f"a = {cls.function}", f"f′(z) = {cls.derivative}", *cls.definitions]
        cls.__doc__ = with_formulas(cls.__doc__, formulas, {"in": "z", "out": "a"})

    def forward(self, x: NDArray) -> NDArray:
        self.out = self.apply(x if type(x) is np.ndarray and x.dtype.kind == "f" else self._input(x))
        return self.out

    def backward(self, grad_output: NDArray, input_grad: bool = True) -> NDArray:
        out = self._cached("out")
        return self.times_derivative(check_grad_shape(self, grad_output, out.shape))

    def apply(self, z: NDArray) -> NDArray:
        """``f(z)``, element by element, in ``z``'s dtype; keeps what :meth:`times_derivative` needs
        besides the output ``self.out`` (most need only that)."""
        raise NotImplementedError

    def times_derivative(self, grad: NDArray) -> NDArray:
        """``grad ⊙ f'(z)`` at the input of the last forward pass (from ``self.out``, which its callers
        have checked is there, and what :meth:`apply` kept), as a new array."""
        raise NotImplementedError

    def local_derivative(self) -> NDArray:
        """``f'(z)`` at the input of the last forward pass: :meth:`times_derivative` of ones."""
        return self.times_derivative(np.ones_like(self._cached("out")))

    def formulas(self) -> Formulas:
        return Formulas(
            forward=(Eq(f"{{out}} = {self.function}"), *(Eq(d, result=None) for d in self.definitions)),
            backward=(Eq(f"{{f′}} = {self.derivative}", values=False), Eq("∂L/∂{in} = {δ} ⊙ {f′}")),
        )

    def backward_details(self) -> dict[str, NDArray]:
        return {"f′": self.local_derivative()}

    def to_onnx(self, graph, x):
        return graph.node(self.onnx_op, [x]) if self.onnx_op else super().to_onnx(graph, x)


@LAYERS.register("identity")
class Identity(ElementWise):
    """The identity, for the output layer of a regression (and the logits of a classifier)."""

    function, derivative = "{in}", "1"
    torch_name = "Identity"

    def apply(self, z):
        return z

    def to_onnx(self, graph, x):
        return x

    def times_derivative(self, grad):
        return grad.copy()


@LAYERS.register("sigmoid")
class Sigmoid(ElementWise):
    """The logistic sigmoid, whose outputs are probabilities."""

    gives_probabilities = True
    function, derivative = "σ({in})", "σ({in})(1 − σ({in})) = {out}(1 − {out})"
    definitions = ("σ(z) = 1/(1 + e^(−z))",)
    torch_name = onnx_op = "Sigmoid"

    def apply(self, z):
        with np.errstate(over="ignore"):  # exp(-z) = inf for z ≪ 0 gives the right limit, 0
            return 1.0 / (1.0 + np.exp(-z))

    def times_derivative(self, grad):
        a = self.out
        return grad * (a * (1.0 - a))


@LAYERS.register("tanh")
class Tanh(ElementWise):
    """The hyperbolic tangent."""

    function, derivative = "tanh({in})", "1 − tanh²({in}) = 1 − {out}²"
    torch_name = onnx_op = "Tanh"

    def apply(self, z):
        return np.tanh(z)

    def times_derivative(self, grad):
        a = self.out
        return grad * (1.0 - a * a)


@LAYERS.register("relu")
class ReLU(ElementWise):
    """The rectified linear unit; its derivative at ``z = 0`` is taken as 0, as in PyTorch."""

    function, derivative = "max(0, {in})", "[{in} > 0]"
    init = "he_normal"
    torch_name, onnx_op = "ReLU", "Relu"

    def apply(self, z):
        return kernels.relu(z)

    def times_derivative(self, grad):
        return kernels.relu_grad(grad, self.out)  # a > 0 exactly where z > 0


@LAYERS.register("leaky_relu")
class LeakyReLU(ElementWise):
    """``z`` where ``z > 0``, else ``alpha·z``, with ``alpha`` in ``[0, 1)``."""

    function, derivative = "max({alpha}·{in}, {in})", "[{in} > 0] + {alpha}·[{in} ≤ 0]"
    init = "he_normal"
    torch_name = "LeakyReLU"
    torch_settings: ClassVar[dict[str, str]] = {"alpha": "negative_slope"}

    def __init__(self, alpha: float = 0.01) -> None:
        super().__init__()
        self.alpha = check_fraction("LeakyReLU: alpha", alpha, "alpha")

    def config(self) -> dict[str, Any]:
        return {"alpha": self.alpha}

    def to_onnx(self, graph, x):
        if graph.dtype == np.float32:
            return graph.node("LeakyRelu", [x], alpha=self.alpha)
        # ONNX's attributes are float32: in float64, α is a constant of the graph's type and f(z) = max(z, α·z)
        return graph.node("Max", [x, graph.node("Mul", [x, graph.constant(self.alpha, "alpha")])])

    def apply(self, z):
        return np.where(z > 0, z, z * z.dtype.type(self.alpha))

    def times_derivative(self, grad):
        a = self.out
        return grad * np.where(a > 0, 1.0, self.alpha).astype(a.dtype)  # a > 0 exactly where z > 0


@LAYERS.register("gelu")
class GELU(ElementWise):
    """The Gaussian error linear unit, exact (PyTorch's default form, not the tanh approximation), with
    ``Φ`` the standard normal distribution function and ``φ`` its density; the forward pass keeps ``Φ(z)``
    for the backward pass."""

    function, derivative = "{in}·Φ({in})", "Φ({in}) + {in}·φ({in})"
    init = "he_normal"
    definitions = ("Φ(z) = ½·(1 + erf(z/√2)),  φ(z) = e^(−z²/2)/√(2π)",)
    torch_name = "GELU"

    def __init__(self) -> None:
        super().__init__()
        self.x = self.cdf = None

    @classmethod
    def config_from_torch(cls, module):
        if module.approximate != "none":
            raise ConfigError(
                _("{module}: chainrule's GELU is the exact one").format(
                    module=f"GELU(approximate={module.approximate!r})"
                )
            )
        return {}

    def to_onnx(self, graph, x):  # ONNX's Gelu operator came in opset 20; this is its definition
        erf = graph.node("Erf", [graph.node("Mul", [x, graph.constant(math.sqrt(0.5), "sqrt_half")])])
        cdf = graph.node("Mul", [graph.node("Add", [erf, graph.constant(1.0, "one")]), graph.constant(0.5, "half")])
        return graph.node("Mul", [x, cdf])

    def apply(self, z):
        self.x = z
        half = z.dtype.type(0.5)
        self.cdf = half * (1 + kernels.erf(z * z.dtype.type(math.sqrt(0.5))))  # Φ(z)
        return z * self.cdf

    def times_derivative(self, grad):
        z, cdf = self.x, self.cdf
        pdf = np.exp(z * z * z.dtype.type(-0.5))
        pdf *= z.dtype.type(1 / math.sqrt(2 * math.pi))  # φ(z)
        return grad * (cdf + z * pdf)


@LAYERS.register("silu")
class SiLU(ElementWise):
    """The sigmoid-weighted linear unit (swish with β = 1), as ``torch.nn.SiLU``; the forward pass keeps
    ``σ(z)`` for the backward pass."""

    function, derivative = "{in}·σ({in})", "σ({in})·(1 + {in}·(1 − σ({in})))"
    definitions = ("σ(z) = 1/(1 + e^(−z))",)
    init = "he_normal"
    torch_name = "SiLU"

    def __init__(self) -> None:
        super().__init__()
        self.x = self.sigmoid = None

    def to_onnx(self, graph, x):
        return graph.node("Mul", [x, graph.node("Sigmoid", [x])])

    def apply(self, z):
        self.x = z
        with np.errstate(over="ignore"):  # exp(-z) = inf for z ≪ 0 gives the right limit, 0
            self.sigmoid = 1.0 / (1.0 + np.exp(-z))
        return z * self.sigmoid

    def times_derivative(self, grad):
        s = self.sigmoid
        return grad * (s * (1.0 + self.x * (1.0 - s)))


@LAYERS.register("softmax")
class Softmax(Activation):
    r"""Softmax over each row, made stable by subtracting the row's maximum (which changes nothing):

    .. math:: s_{ik} = \frac{e^{z_{ik} - \max_j z_{ij}}}{\sum_j e^{z_{ij} - \max_j z_{ij}}}

    Its Jacobian is :math:`\partial s_k/\partial z_j = s_k(\Delta_{kj} - s_j)`, so the backward pass is
    the full Jacobian-vector product, row by row:

    .. math:: \partial L/\partial z = s \odot \big(g - \textstyle\sum_k g_k s_k\big)
    """

    gives_probabilities = True
    definitions = ("softmax(z)ᵢ = e^(zᵢ − max z)/Σⱼ e^(zⱼ − max z)",)
    torch_name = "Softmax"

    def forward(self, x: NDArray) -> NDArray:
        x = self._input(x)
        if x.ndim != 2:
            raise ShapeError(
                _("{owner!r}: expected logits of shape (n, classes), got {got}").format(owner=self, got=x.shape)
            )
        self.out = softmax(x)
        return self.out

    def backward(self, grad_output: NDArray, input_grad: bool = True) -> NDArray:
        s = self._cached("out")
        g = check_grad_shape(self, grad_output, s.shape)
        return s * (g - np.sum(g * s, axis=1, keepdims=True))  # (n, classes)

    def formulas(self) -> Formulas:
        return Formulas(
            forward=(Eq("{out} = softmax({in})"), *(Eq(d, result=None) for d in self.definitions)),
            backward=(Eq("∂L/∂{in} = {out} ⊙ ({δ} − Σ_cols({δ} ⊙ {out}))"),),
        )

    def torch_config(self) -> dict[str, Any]:
        return {"dim": 1}

    @classmethod
    def config_from_torch(cls, module):
        if module.dim not in (1, -1, None):  # PyTorch's dim=None picks 1 for a matrix (and warns)
            raise ConfigError(
                _("{module}: chainrule's softmax is over each row (dim=1)").format(module=f"Softmax(dim={module.dim})")
            )
        return {}

    def to_onnx(self, graph, x):
        return graph.node("Softmax", [x], axis=1)


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


def names(hidden: bool = False) -> tuple[str, ...]:
    """The registered activations: every one (for the output of a network), or with ``hidden`` the
    element-wise ones (for its hidden layers)."""
    base = ElementWise if hidden else Activation
    return LAYERS.names(lambda kind: issubclass(kind.cls, base))
