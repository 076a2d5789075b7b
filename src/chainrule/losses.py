"""Losses: each gives its value ``forward(pred, target)`` and ``∂L/∂pred`` from ``backward()``.

Every loss sums over the outputs of a row and then scales over the ``n`` rows (objects) of the batch
(PRODUCT.md). The scale is named, because the seeds use all four:

=============  ==========  ==========================================
``scale``      factor      where
=============  ==========  ==========================================
``mean``       ``1/n``     the default; seeds 000, 001, 003
``sum``        ``1``
``half_mean``  ``1/(2n)``  seed 002's ``MSE = 1/(2n)·Σ(ŷ − y)²``
``half_sum``   ``1/2``     ``½·Σ``
=============  ==========  ==========================================

For the three output pairs of seed 001 the gradient entering the last linear layer is ``δ = (a − y)/m``:
MSE (``half_mean``) after :class:`~chainrule.activations.Identity`, :class:`CrossEntropyLoss` after
:class:`~chainrule.activations.Softmax`, :class:`BCELoss` after :class:`~chainrule.activations.Sigmoid`.
The fused losses :class:`SoftmaxCrossEntropyLoss` and :class:`BCEWithLogitsLoss` compute that ``δ``
directly from the logits, which is faster and stays finite for any logit.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from chainrule.activations import row_max
from chainrule.errors import ConfigError, ShapeError, check_choice, check_positive
from chainrule.module import Parameter

SCALES = {"mean": (1.0, True), "sum": (1.0, False), "half_mean": (0.5, True), "half_sum": (0.5, False)}
#: Each scale's factor as written, for the terminal and for LaTeX.
SCALE_FORMULAS = {"mean": ("1/n", r"\frac1n"), "sum": ("1", "1"), "half_mean": ("1/(2n)", r"\frac1{2n}"),
                  "half_sum": ("1/2", r"\frac12")}

#: Logarithms are clamped here, as PyTorch's BCELoss does, so that p = 0 or 1 gives a finite loss.
LOG_FLOOR = -100.0
#: The smallest denominator of a probability-space gradient (p(1 − p), or p).
GRAD_FLOOR = 1e-12


class Loss:
    """Base class: validates ``pred`` and ``target``, keeps what ``backward`` needs."""

    #: How the targets are read: ``"values"`` (same shape as pred), ``"classes"`` (class indices or
    #: probability rows), or ``"binary"`` (values in [0, 1], same shape as pred).
    target_kind = "values"

    def __init__(self, scale: str = "mean") -> None:
        self.scale = check_choice("loss scale", scale, tuple(SCALES))
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
            raise ConfigError(f"{self!r}: backward called before forward")
        out = self.gradient()
        if grad != 1.0:
            out *= grad
        return out

    def value(self) -> float:
        raise NotImplementedError

    def gradient(self) -> NDArray:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(scale={self.scale!r})"


class MSELoss(Loss):
    r"""Squared error :math:`L = k\sum_{i,j}(\hat y_{ij} - y_{ij})^2`, :math:`\partial L/\partial\hat y = 2k(\hat y - y)`.

    With ``scale="half_mean"`` (:math:`k = 1/(2n)`, seed 002) the gradient is :math:`(\hat y - y)/n`.
    """


    def value(self):
        diff = self.pred - self.target
        return self.k * np.sum(diff * diff)

    def gradient(self):
        return (2.0 * self.k) * (self.pred - self.target)


class BCELoss(Loss):
    r"""Binary cross-entropy on probabilities :math:`p` (after a sigmoid):

    .. math:: L = -k\sum [y\ln p + (1-y)\ln(1-p)],\qquad
              \partial L/\partial p = k\,\frac{p - y}{p(1-p)}

    The logarithms are clamped at -100 and the denominator at 1e-12, so ``p = 0`` or ``1`` is finite.
    """

    target_kind = "binary"

    def value(self):
        p, y = self.pred, self.target
        with np.errstate(divide="ignore"):
            log_p = np.maximum(np.log(p), LOG_FLOOR)
            log_q = np.maximum(np.log1p(-p), LOG_FLOOR)
        return -self.k * np.sum(y * log_p + (1.0 - y) * log_q)

    def gradient(self):
        p, y = self.pred, self.target
        return self.k * (p - y) / np.maximum(p * (1.0 - p), GRAD_FLOOR)


class BCEWithLogitsLoss(Loss):
    r"""Binary cross-entropy on logits :math:`z` (sigmoid fused in), stable for any logit:

    .. math:: L = k\sum [\max(z, 0) - zy + \ln(1 + e^{-|z|})],\qquad
              \partial L/\partial z = k(\sigma(z) - y)
    """

    target_kind = "binary"

    def value(self):
        z, y = self.pred, self.target
        return self.k * np.sum(np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z))))

    def gradient(self):
        z = self.pred
        with np.errstate(over="ignore"):
            probs = 1.0 / (1.0 + np.exp(-z))
        return self.k * (probs - self.target)


class CrossEntropyLoss(Loss):
    r"""Cross-entropy on probabilities :math:`\hat y` (after a softmax), seeds 000 and 004:

    .. math:: L = -k\sum_{i,c} y_{ic}\ln\hat y_{ic},\qquad \partial L/\partial\hat y = -k\,y/\hat y

    Targets are class indices ``(n,)`` or probability rows ``(n, classes)``.
    """

    target_kind = "classes"

    def value(self):
        with np.errstate(divide="ignore"):
            log_p = np.maximum(np.log(self.pred), LOG_FLOOR)
        return -self.k * np.sum(self.target * log_p)

    def gradient(self):
        return -self.k * self.target / np.maximum(self.pred, GRAD_FLOOR)


class SoftmaxCrossEntropyLoss(Loss):
    r"""Softmax and cross-entropy fused, on logits :math:`z` (seeds 000, 003, 004):

    .. math:: L = -k\sum_{i,c} y_{ic}\Big(z_{ic} - \max_j z_{ij} - \ln\sum_j e^{z_{ij} - \max_j z_{ij}}\Big),
              \qquad \partial L/\partial z = k(\mathrm{softmax}(z) - y)

    which for the mean is seed 000's :math:`(\hat Y - Y)/m`. Finite for logits of any size.
    """

    target_kind = "classes"

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


LOSSES: dict[str, type[Loss]] = {
    "mse": MSELoss,
    "bce": BCELoss,
    "bce_with_logits": BCEWithLogitsLoss,
    "cross_entropy": CrossEntropyLoss,
    "softmax_cross_entropy": SoftmaxCrossEntropyLoss,
}


def make_loss(name: str, scale: str = "mean") -> Loss:
    """The loss called ``name`` (a key of :data:`LOSSES`)."""
    return LOSSES[check_choice("loss", name, tuple(LOSSES))](scale=scale)


# -- L2 regularisation (seed 003) -----------------------------------------------------------------
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
def _as_predictions(pred, loss: Loss) -> NDArray:
    try:
        pred = np.asarray(pred)
    except (TypeError, ValueError) as err:
        raise ShapeError(f"{loss!r}: expected a numeric array of predictions ({err})") from None
    if pred.dtype.kind not in "fiub" or pred.ndim != 2:
        raise ShapeError(f"{loss!r}: expected numeric predictions of shape (n, outputs), got {pred.shape}")
    if pred.dtype.kind != "f":
        pred = pred.astype(np.float64)
    if isinstance(loss, (BCELoss, CrossEntropyLoss)) and (np.any(pred < 0) or np.any(pred > 1)):
        raise ShapeError(f"{loss!r}: expects probabilities in [0, 1] (put a sigmoid/softmax before it, "
                         f"or use the loss on logits); got values in [{pred.min():g}, {pred.max():g}]")
    return pred


def _as_target(target, pred: NDArray, loss: Loss) -> NDArray:
    """The target as a float array of ``pred``'s shape (class indices become one-hot rows)."""
    name = type(loss).__name__
    try:
        target = np.asarray(target)
    except (TypeError, ValueError) as err:
        raise ShapeError(f"{name}: expected a numeric array of targets ({err})") from None
    if target.dtype.kind not in "fiub":
        raise ShapeError(f"{name}: expected numeric targets, got dtype {target.dtype}")
    n, outputs = pred.shape
    if loss.target_kind == "classes" and target.shape == (n,):
        classes = target
        if target.dtype.kind not in "iu":  # floats (or booleans) must hold whole numbers
            classes = target.astype(np.int64)
            if not np.array_equal(classes, target):
                classes = None
        if classes is None or classes.min() < 0 or classes.max() >= outputs:
            raise ShapeError(f"{name}: class indices must be integers in [0, {outputs - 1}], "
                             f"got {np.unique(target)[:10].tolist()}")
        one_hot = np.zeros(pred.shape, dtype=pred.dtype)
        one_hot[np.arange(n), classes] = 1.0
        return one_hot
    if target.shape == (n,) and outputs == 1 and loss.target_kind != "classes":
        target = target.reshape(n, 1)  # one value per row for a single-output model
    if target.shape != pred.shape:
        extra = f" or class indices of shape ({n},)" if loss.target_kind == "classes" else ""
        raise ShapeError(f"{name}: expected targets of shape {pred.shape}{extra}, got {target.shape}")
    target = target.astype(pred.dtype, copy=False)
    if not np.all(np.isfinite(target)):
        raise ShapeError(f"{name}: targets contain NaN or inf")
    if loss.target_kind != "values" and (target.min() < 0 or target.max() > 1):
        raise ShapeError(f"{name}: targets must be in [0, 1], got values in [{target.min():g}, {target.max():g}]")
    if loss.target_kind == "classes" and not np.allclose(target.sum(axis=1), 1.0, atol=1e-6):
        raise ShapeError(f"{name}: each target row must be one-hot or a probability distribution summing to 1")
    return target
