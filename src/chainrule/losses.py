"""Losses: each gives its value ``forward(pred, target)`` and ``∂L/∂pred`` from ``backward()``.

Every loss sums over the outputs of a row and then scales over the ``n`` rows (objects) of the batch. The
scale is named, because all four are in common use:

=============  ==========  ==========================================
``scale``      factor      where
=============  ==========  ==========================================
``mean``       ``1/n``     the default
``sum``        ``1``
``half_mean``  ``1/(2n)``  ``MSE = 1/(2n)·Σ(ŷ − y)²``, whose gradient is ``(ŷ − y)/n``
``half_sum``   ``1/2``     ``½·Σ``
=============  ==========  ==========================================

For three output pairs the gradient entering the last linear layer is ``δ = (a − y)/n``: MSE
(``half_mean``) after :class:`~chainrule.activations.Identity`, :class:`CrossEntropyLoss` after
:class:`~chainrule.activations.Softmax`, :class:`BCELoss` after :class:`~chainrule.activations.Sigmoid`.
The fused losses :class:`SoftmaxCrossEntropyLoss` and :class:`BCEWithLogitsLoss` compute that ``δ``
directly from the logits, which is faster and stays finite for any logit.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from chainrule import registry
from chainrule.activations import row_max, softmax
from chainrule.errors import ConfigError, ShapeError, check_choice, check_positive
from chainrule.i18n import _
from chainrule.module import Parameter
from chainrule.notation import Eq, Formulas, with_formulas
from chainrule.registry import LOSSES

SCALES = {"mean": (1.0, True), "sum": (1.0, False), "half_mean": (0.5, True), "half_sum": (0.5, False)}
#: Each scale's factor as it is shown.
SCALE_FORMULAS = {"mean": "1/n", "sum": "1", "half_mean": "1/(2n)", "half_sum": "1/2"}

#: Logarithms are clamped here, as PyTorch's BCELoss does, so that p = 0 or 1 gives a finite loss.
LOG_FLOOR = -100.0
#: The smallest denominator p(1 − p) of the BCE gradient, as in PyTorch's BCELoss.
GRAD_FLOOR = 1e-12


class Loss:
    """Base class: validates ``pred`` and ``target``, keeps what ``backward`` needs.

    A registered loss declares its formulas (``function`` and ``derivative``, with ``{in}`` for the prediction,
    ``{y}`` for the target and ``{k}`` for the scale's factor) and, for one that expects probabilities,
    the activation it follows (``after``) and the fused loss that takes that activation's input instead.
    """

    #: The name of this kind in problem files (set by :meth:`Registry.register`).
    kind: ClassVar[str] = ""
    #: How the targets are read: ``"values"`` (same shape as pred), ``"classes"`` (class indices or
    #: probability rows), or ``"binary"`` (values in [0, 1], same shape as pred).
    target_kind: ClassVar[str] = "values"
    #: For a loss on probabilities: the activation that must come before it, and the fused loss that
    #: takes that activation's input (the logits) instead.
    after: ClassVar[str | None] = None
    fused: ClassVar[str | None] = None
    #: The scale at which the gradient with respect to the logits (or, for MSE, the outputs) is
    #: ``(Ŷ − Y)/n``.
    delta_scale: ClassVar[str | None] = None
    function: ClassVar[str] = "L"
    derivative: ClassVar[str] = "∂L/∂{in}"
    definitions: ClassVar[tuple[str, ...]] = ()
    #: The symbol of the prediction in the docstring's formulas (``ŷ``, ``p`` for a probability, ``z`` for a logit).
    symbol: ClassVar[str] = "ŷ"

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        formulas = [f"L = {cls.function}", f"∂L/∂{cls.symbol} = {cls.derivative}", *cls.definitions]
        cls.__doc__ = with_formulas(cls.__doc__, formulas, {"in": cls.symbol})

    def __init__(self, scale: str = "mean") -> None:
        self.scale = check_choice(_("loss scale"), scale, tuple(SCALES))
        self.pred = self.target = None

    def factor(self, n: int) -> float:
        """The number the summed loss is multiplied by for a batch of ``n`` rows."""
        half, per_object = SCALES[self.scale]
        return half / n if per_object else half

    def __call__(self, pred: NDArray, target: NDArray) -> float:
        return self.forward(pred, target)

    def forward(self, pred: NDArray, target: NDArray) -> float:
        pred = _as_predictions(pred, self)
        self.pred, self.target = pred, _as_target(target, pred, self)
        self.k = self.factor(pred.shape[0])
        return float(self.value())

    def backward(self, grad: float = 1.0) -> NDArray:
        """``∂L/∂pred`` (same shape as ``pred``), times the upstream scalar ``grad``."""
        if self.pred is None:
            raise ConfigError(_("{owner!r}: backward called before forward").format(owner=self))
        out = self.gradient()
        if grad != 1.0:
            out *= grad
        return out

    def value(self) -> float:
        raise NotImplementedError

    def gradient(self) -> NDArray:
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        return {"scale": self.scale}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Loss:
        return registry.build(cls, config)

    def formulas(self) -> Formulas:
        """The loss and its gradient as shown (see :mod:`chainrule.notation`)."""
        return Formulas(
            forward=(Eq(f"L = {self.function}", result="L"), *(Eq(d, result=None) for d in self.definitions)),
            backward=(Eq(f"∂L/∂{{in}} = {self.derivative}"),),
        )

    @classmethod
    def gradcheck_cases(cls, batch: int, rng: np.random.Generator) -> dict[str, tuple[Loss, NDArray, NDArray]]:
        """``(loss, prediction, target)`` to check against finite differences, by name."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(scale={self.scale!r})"


@LOSSES.register("mse")
class MSELoss(Loss):
    """Squared error, summed over a row's outputs. With ``scale="half_mean"`` (``k = 1/(2n)``) the
    gradient is ``(ŷ − y)/n``."""

    delta_scale = "half_mean"
    function, derivative = "{k}·Σ({in} − {y})²", "2·{k}·({in} − {y})"

    def value(self):
        diff = self.pred - self.target
        return self.k * np.sum(diff * diff)

    def gradient(self):
        return (2.0 * self.k) * (self.pred - self.target)

    @classmethod
    def gradcheck_cases(cls, batch, rng):
        pred, target = rng.standard_normal((batch, 3)), rng.standard_normal((batch, 3))
        return {f"mse_{scale}": (cls(scale), pred, target) for scale in SCALES}


@LOSSES.register("bce")
class BCELoss(Loss):
    """Binary cross-entropy on probabilities ``p`` (after a sigmoid). As in PyTorch's ``BCELoss``, the
    logarithms are clamped at -100 and the denominator at 1e-12, so ``p = 0`` or ``1`` is finite."""

    target_kind, after, fused, delta_scale, symbol = "binary", "sigmoid", "bce_with_logits", "mean", "p"
    function = "−{k}·Σ[{y}·ln {in} + (1 − {y})·ln(1 − {in})]"
    derivative = "{k}·({in} − {y})/({in}·(1 − {in}))"

    def value(self):
        p, y = self.pred, self.target
        with np.errstate(divide="ignore"):
            log_p = np.maximum(np.log(p), LOG_FLOOR)
            log_q = np.maximum(np.log1p(-p), LOG_FLOOR)
        return -self.k * np.sum(y * log_p + (1.0 - y) * log_q)

    def gradient(self):
        p, y = self.pred, self.target
        return self.k * (p - y) / np.maximum(p * (1.0 - p), GRAD_FLOOR)

    @classmethod
    def gradcheck_cases(cls, batch, rng):
        logits = 3 * rng.standard_normal((batch, 1))
        return {"bce": (cls(), 1 / (1 + np.exp(-logits)), rng.integers(0, 2, (batch, 1)).astype(np.float64))}


@LOSSES.register("bce_with_logits")
class BCEWithLogitsLoss(Loss):
    """Binary cross-entropy on logits ``z``, the sigmoid fused in: stable for any logit."""

    target_kind, delta_scale, symbol = "binary", "mean", "z"
    function = "{k}·Σ[max({in}, 0) − {in}·{y} + ln(1 + e^(−|{in}|))]"
    derivative = "{k}·(σ({in}) − {y})"

    def value(self):
        z, y = self.pred, self.target
        return self.k * np.sum(np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z))))

    def gradient(self):
        z = self.pred
        with np.errstate(over="ignore"):
            probs = 1.0 / (1.0 + np.exp(-z))
        return self.k * (probs - self.target)

    @classmethod
    def gradcheck_cases(cls, batch, rng):
        logits = 3 * rng.standard_normal((batch, 1))
        return {"bce_with_logits": (cls(), logits, rng.integers(0, 2, (batch, 1)).astype(np.float64))}


@LOSSES.register("cross_entropy")
class CrossEntropyLoss(Loss):
    """Cross-entropy on probabilities ``ŷ`` (after a softmax); targets are class indices ``(n,)`` or
    probability rows ``(n, classes)``.

    Its gradient is exact down to the probability ``1/max``, the smallest whose reciprocal is finite (about
    5.6e-309 in float64, 2.9e-39 in float32: logits up to about 709 or 88 apart), so that a softmax followed
    by this loss gives the fused loss's gradient. Below it the gradient's denominator is taken at ``1/max``:
    a probability that small (exactly 0 beyond logits about 745 apart in float64) has lost what the
    gradient needs, which the fused loss, working on the logits, keeps. The logarithm is taken at the
    smallest positive number instead of at 0.
    """

    target_kind, after, fused, delta_scale = "classes", "softmax", "softmax_cross_entropy", "mean"
    function, derivative = "−{k}·Σ {y} ⊙ ln {in}", "−{k}·{y}/{in}"

    def value(self):
        info = np.finfo(self.pred.dtype)
        return -self.k * np.sum(self.target * np.log(np.maximum(self.pred, info.smallest_subnormal)))

    def gradient(self):
        info = np.finfo(self.pred.dtype)
        return -self.k * self.target / np.maximum(self.pred, 1 / info.max)

    @classmethod
    def gradcheck_cases(cls, batch, rng):
        # −y/p is steep at small p: finite differences need p well above their step to be exact to 1e-7
        probs = softmax(rng.standard_normal((batch, 3)))
        return {"cross_entropy": (cls(), probs, rng.integers(0, 3, batch))}


@LOSSES.register("softmax_cross_entropy")
class SoftmaxCrossEntropyLoss(Loss):
    """Softmax and cross-entropy fused, on logits ``z``: finite for logits of any size. For the mean the
    gradient is ``(Ŷ − Y)/n``."""

    target_kind, delta_scale, symbol = "classes", "mean", "z"
    function, derivative = "−{k}·Σ {y} ⊙ ln softmax({in})", "{k}·(softmax({in}) − {y})"
    definitions = ("ln softmax(z) = z − max z − ln Σ_cols e^(z − max z)",)

    def value(self):
        z = self.pred
        shifted = z - row_max(z)
        self.log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))  # kept for backward
        return -self.k * (self.target * self.log_probs).sum()

    def gradient(self):
        probs = np.exp(self.log_probs)  # softmax(z), from the forward pass's log-softmax
        probs -= self.target
        probs *= self.k
        return probs

    @classmethod
    def gradcheck_cases(cls, batch, rng):
        return {"softmax_cross_entropy": (cls(), 3 * rng.standard_normal((batch, 3)), rng.integers(0, 3, batch))}


def make_loss(name: str, scale: str = "mean") -> Loss:
    """The loss registered as ``name`` (``mse``, ``cross_entropy``, ...; see :data:`~chainrule.registry.LOSSES`)."""
    return LOSSES[name].cls(scale=scale)


# -- L2 regularisation -----------------------------------------------------------------
def l2_penalty(params: list[Parameter], lam: float) -> float:
    r""":math:`\frac{\lambda}{2}\sum\|W\|^2` over the weights among ``params`` (not the biases)."""
    lam = check_positive("l2", lam, allow_zero=True)
    return 0.5 * lam * sum(float(np.sum(p.data * p.data)) for p in params if p.decay)


def add_l2_grad(params: list[Parameter], lam: float) -> None:
    r"""Add the penalty's gradient :math:`\lambda W` to the gradient of every weight among ``params``."""
    lam = check_positive("l2", lam, allow_zero=True)
    if lam:
        for p in params:
            if p.decay:
                p.add(lam * p.data)


# -- validation -----------------------------------------------------------------------------------
class ProbabilitiesExpected(ShapeError):
    """Predictions outside [0, 1] given to a loss that expects probabilities: the layer before it, not the
    targets, is what is wrong (a problem file's error points at ``loss.type``)."""


def _as_predictions(pred, loss: Loss) -> NDArray:
    try:
        pred = np.asarray(pred)
    except (TypeError, ValueError) as err:
        raise ShapeError(
            _("{loss!r}: expected a numeric array of predictions ({error})").format(loss=loss, error=err)
        ) from None
    if pred.dtype.kind not in "fiub" or pred.ndim != 2:
        raise ShapeError(
            _("{loss!r}: expected numeric predictions of shape (n, outputs), got {got}").format(
                loss=loss, got=pred.shape
            )
        )
    if pred.dtype.kind != "f":
        pred = pred.astype(np.float64)
    if loss.after is not None and (np.any(pred < 0) or np.any(pred > 1)):
        raise ProbabilitiesExpected(
            _(
                "{loss!r}: expects probabilities in [0, 1] (put a sigmoid/softmax before it, "
                "or use the loss on logits); got values in [{low}, {high}]"
            ).format(loss=loss, low=f"{pred.min():g}", high=f"{pred.max():g}")
        )
    return pred


def _as_target(target, pred: NDArray, loss: Loss) -> NDArray:
    """The target as a float array of ``pred``'s shape (class indices become one-hot rows)."""
    name = type(loss).__name__
    try:
        target = np.asarray(target)
    except (TypeError, ValueError) as err:
        raise ShapeError(
            _("{loss}: expected a numeric array of targets ({error})").format(loss=name, error=err)
        ) from None
    if target.dtype.kind not in "fiub":
        raise ShapeError(_("{loss}: expected numeric targets, got dtype {dtype}").format(loss=name, dtype=target.dtype))
    n, outputs = pred.shape
    if loss.target_kind == "classes" and target.shape == (n,):
        classes = target
        if target.dtype.kind not in "iu":  # floats (or booleans) must hold whole numbers
            classes = target.astype(np.int64)
            if not np.array_equal(classes, target):
                classes = None
        if classes is None or classes.min() < 0 or classes.max() >= outputs:
            raise ShapeError(
                _("{loss}: class indices must be integers in [0, {last}], got {got}").format(
                    loss=name, last=outputs - 1, got=np.unique(target)[:10].tolist()
                )
            )
        one_hot = np.zeros(pred.shape, dtype=pred.dtype)
        one_hot[np.arange(n), classes] = 1.0
        return one_hot
    if target.shape == (n,) and outputs == 1 and loss.target_kind != "classes":
        target = target.reshape(n, 1)  # one value per row for a single-output model
    if target.shape != pred.shape:
        if loss.target_kind == "classes":
            message = _("{loss}: expected targets of shape {shape} or class indices of shape ({n},), got {got}")
        else:
            message = _("{loss}: expected targets of shape {shape}, got {got}")
        raise ShapeError(message.format(loss=name, shape=pred.shape, n=n, got=target.shape))
    target = target.astype(pred.dtype, copy=False)
    if not np.all(np.isfinite(target)):
        raise ShapeError(_("{loss}: targets contain NaN or inf").format(loss=name))
    if loss.target_kind != "values" and (target.min() < 0 or target.max() > 1):
        raise ShapeError(
            _("{loss}: targets must be in [0, 1], got values in [{low}, {high}]").format(
                loss=name, low=f"{target.min():g}", high=f"{target.max():g}"
            )
        )
    if loss.target_kind == "classes" and not np.allclose(target.sum(axis=1), 1.0, atol=1e-6):
        raise ShapeError(
            _("{loss}: each target row must be one-hot or a probability distribution summing to 1").format(loss=name)
        )
    return target
