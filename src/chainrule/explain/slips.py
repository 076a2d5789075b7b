"""The catalogue of slips that ``chainrule check`` recognises: each one a wrong version of one formula of
the computation that ``chainrule explain`` performs.

A slip changes one value where it is computed (a *hook*): a layer's output (``forward``), an element-wise
activation's local derivative (``derivative``), the gradient a layer passes back (``grad_input``), a
parameter's gradient (``param_grad``), the λ·W of L2 (``l2_grad``), the penalty (``l2_penalty``), the loss
(``loss``), its gradient (``loss_grad``) or a parameter's update (``update``). :func:`replay
<chainrule.explain.replay.replay>` runs the problem with any set of slips applied, which is how
``check`` tests each hypothesis "this slip, at this place" against a student's numbers.

Each slip says where it can happen (``when``, given the layer, loss or optimizer there) and what the
student computed instead (``change``: the wrong value, from the right one and the values around it). The
documentation of the catalogue, ``docs/slips.md``, is written from this table (``python -m
chainrule.explain.slips``).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from chainrule.activations import ElementWise, Identity, softmax
from chainrule.i18n import N_
from chainrule.optim import SGD

HOOKS = ("forward", "derivative", "grad_input", "param_grad", "l2_grad", "l2_penalty", "loss", "loss_grad", "update")


@dataclass(frozen=True)
class Slip:
    """One kind of slip: its id, what the student did in plain words, the formula they used beside the
    right one, where it can happen and what it computes instead. The words, and the formulas that hold
    words, are marked for translation (``N_``) and translated where they are shown."""

    id: str
    words: str
    wrong: str
    right: str
    hooks: tuple[str, ...]
    when: Callable[[Any], bool]
    change: Callable[[NDArray, dict], NDArray]


def _kind(*kinds: str) -> Callable[[Any], bool]:
    return lambda target: getattr(target, "kind", None) in kinds


def _square(c: dict) -> bool:
    W = c["layer"].params["W"].data
    return W.shape[0] == W.shape[1] > 1


def _elementwise(target: Any) -> bool:
    layer = getattr(target, "layer", target)
    return isinstance(layer, ElementWise) and not isinstance(layer, Identity)


def _derivative_at(layer: Any, z: NDArray) -> NDArray:
    """``f'(z)`` of an element-wise activation at ``z`` (a fresh copy of the layer, run forward on ``z``)."""
    twin = copy.copy(layer)
    twin.forward(z)
    return twin.local_derivative()


def _normalization_backward(c: dict, mean_term: bool) -> NDArray:
    """The input gradient of a normalisation without the term through σ², and (without ``mean_term``)
    without the one through μ either."""
    layer, g = c["layer"], c["g"]
    axis = 0 if layer.kind == "batchnorm" else 1
    g_hat = g * layer.params["gamma"].data
    centred = g_hat - g_hat.mean(axis=axis, keepdims=True) if mean_term else g_hat
    return centred * layer.inv_std


def _own_update(c: dict, direction: Callable[[NDArray, dict, dict], NDArray]) -> NDArray:
    """An update the student computed by a rule of their own, keeping its state (moments, buffer) between
    steps: ``θ − lr·direction``, after the optimizer's weight decay."""
    opt, before, grad = c["optimizer"], c["before"], c["raw_grad"]
    if getattr(opt, "weight_decay", 0.0):
        grad = grad + opt.weight_decay * before
    theta = before
    if getattr(opt, "decoupled_decay", 0.0):
        theta = theta * (1.0 - opt.lr * opt.decoupled_decay)
    return theta - opt.lr * direction(grad, c["state"], {"t": c["t"], "opt": opt})


def _momentum_dampened(g, state, info):
    opt = info["opt"]
    mu = opt.momentum
    state["b"] = (1 - mu) * g if "b" not in state else mu * state["b"] + (1 - mu) * g
    return g + mu * state["b"] if opt.nesterov else state["b"]


def _nesterov_as_momentum(g, state, info):
    state["b"] = g.copy() if "b" not in state else info["opt"].momentum * state["b"] + g
    return state["b"]


def _adam(correct: bool, root: bool):
    def direction(g, state, info):
        opt, t = info["opt"], info["t"]
        state["m"] = opt.beta1 * state.get("m", 0.0) + (1 - opt.beta1) * g
        state["v"] = opt.beta2 * state.get("v", 0.0) + (1 - opt.beta2) * g * g
        m, v = state["m"], state["v"]
        if correct:
            m, v = m / (1 - opt.beta1**t), v / (1 - opt.beta2**t)
        return m / ((np.sqrt(v) if root else v) + opt.eps)

    return direction


def _rmsprop_without_root(g, state, info):
    opt = info["opt"]
    state["v"] = opt.alpha * state.get("v", 0.0) + (1 - opt.alpha) * g * g
    scaled = g / (state["v"] + opt.eps)
    if opt.momentum:
        state["b"] = opt.momentum * state.get("b", 0.0) + scaled
        return state["b"]
    return scaled


def _per_object(loss: Any) -> bool:
    return loss.scale in ("mean", "half_mean")


def _gelu_tanh(z: NDArray) -> NDArray:
    return 0.5 * z * (1 + np.tanh(math.sqrt(2 / math.pi) * (z + 0.044715 * z**3)))


SLIPS: tuple[Slip, ...] = (
    # -- forward -------------------------------------------------------------------------------------
    Slip(
        "linear.bias_forgotten",
        N_("the bias was left out of the layer's output"),
        "Z = X·W",
        "Z = X·W + b",
        ("forward",),
        lambda t: getattr(t, "kind", None) == "linear" and "b" in t.params,
        lambda v, c: c["x"] @ c["layer"].params["W"].data,
    ),
    Slip(
        "linear.weights_transposed",
        N_("the weight matrix was used transposed in the layer's output"),
        "Z = X·Wᵀ + b",
        "Z = X·W + b",
        ("forward",),
        _kind("linear"),
        lambda v, c: (
            v - c["x"] @ c["layer"].params["W"].data + c["x"] @ c["layer"].params["W"].data.T if _square(c) else v
        ),
    ),
    Slip(
        "activation.not_applied",
        N_("the activation function was not applied: its input was passed on as its output"),
        "a = z",
        "a = f(z)",
        ("forward",),
        _elementwise,
        lambda v, c: c["x"].copy(),
    ),
    Slip(
        "sigmoid.exponent_sign",
        N_("the sign of the exponent in the sigmoid was lost"),
        "σ(z) = 1/(1 + e^z)",
        "σ(z) = 1/(1 + e^(−z))",
        ("forward",),
        _kind("sigmoid"),
        lambda v, c: 1.0 - v,
    ),
    Slip(
        "softmax.over_columns",
        N_("the softmax was normalised over the column (the objects of the batch) instead of the row"),
        "ŷ_ik = e^(z_ik)/Σ_i e^(z_ik)",
        "ŷ_ik = e^(z_ik)/Σ_k e^(z_ik)",
        ("forward",),
        _kind("softmax"),
        lambda v, c: softmax(c["x"].T).T,
    ),
    Slip(
        "normalization.unbiased_variance",
        N_("the variance was divided by n − 1 (the unbiased estimate) instead of n"),
        "σ² = 1/(n − 1)·Σ(x − μ)²",
        "σ² = 1/n·Σ(x − μ)²",
        ("forward",),
        _kind("batchnorm", "layernorm"),
        lambda v, c: _unbiased_normalization(c),
    ),
    Slip(
        "gelu.tanh_approximation",
        N_("GELU was computed with its tanh approximation instead of the exact erf form"),
        "a = ½z(1 + tanh(√(2/π)(z + 0.044715z³)))",
        "a = z·Φ(z)",
        ("forward",),
        _kind("gelu"),
        lambda v, c: _gelu_tanh(c["x"]),
    ),
    # -- an activation's local derivative ------------------------------------------------------------------
    Slip(
        "activation.derivative_not_applied",
        N_("the activation's derivative was not applied on the way back (for ReLU: its mask [z > 0])"),
        "∂L/∂z = ∂L/∂a",
        "∂L/∂z = ∂L/∂a ⊙ f′(z)",
        ("derivative",),
        _elementwise,
        lambda v, c: np.ones_like(v),
    ),
    Slip(
        "activation.derivative_at_output",
        N_("the activation's derivative was evaluated at its output a instead of its input z"),
        "f′(a)",
        "f′(z)",
        ("derivative",),
        _kind("sigmoid", "tanh", "gelu", "silu"),
        lambda v, c: _derivative_at(c["layer"], c["out"]),
    ),
    Slip(
        "activation.output_form_at_input",
        N_(
            "the derivative written in terms of the output was fed the input: z(1 − z) for the sigmoid, 1 − z² for tanh"
        ),
        "σ′ = z(1 − z),  tanh′ = 1 − z²",
        "σ′ = a(1 − a),  tanh′ = 1 − a²",
        ("derivative",),
        _kind("sigmoid", "tanh"),
        lambda v, c: c["x"] * (1 - c["x"]) if c["layer"].kind == "sigmoid" else 1 - c["x"] ** 2,
    ),
    Slip(
        "tanh.square_forgotten",
        N_("the square was left out of tanh's derivative"),
        "tanh′(z) = 1 − tanh(z)",
        "tanh′(z) = 1 − tanh²(z)",
        ("derivative",),
        _kind("tanh"),
        lambda v, c: 1 - c["out"],
    ),
    Slip(
        "sigmoid.one_minus_forgotten",
        N_("the factor (1 − σ) was left out of the sigmoid's derivative"),
        "σ′(z) = σ(z)",
        "σ′(z) = σ(z)(1 − σ(z))",
        ("derivative",),
        _kind("sigmoid"),
        lambda v, c: c["out"].copy(),
    ),
    Slip(
        "leaky_relu.negative_slope_forgotten",
        N_("LeakyReLU's derivative was taken as 0 for negative inputs, as ReLU's, instead of α"),
        "f′(z) = [z > 0]",
        "f′(z) = [z > 0] + α·[z ≤ 0]",
        ("derivative",),
        _kind("leaky_relu"),
        lambda v, c: (c["x"] > 0).astype(v.dtype),
    ),
    # -- the gradient passed back --------------------------------------------------------------------------
    Slip(
        "linear.input_gradient_not_transposed",
        N_("the gradient passed back used W instead of Wᵀ"),
        "∂L/∂X = δ·W",
        "∂L/∂X = δ·Wᵀ",
        ("grad_input",),
        _kind("linear"),
        lambda v, c: c["g"] @ c["layer"].params["W"].data if _square(c) else v,
    ),
    Slip(
        "linear.input_gradient_after_update",
        N_("the gradient passed back used the weights already updated by this step"),
        "∂L/∂X = δ·(W − lr·∂L/∂W)ᵀ",
        N_("∂L/∂X = δ·Wᵀ (the weights before the update)"),
        ("grad_input",),
        _kind("linear"),
        lambda v, c: v if c["updated_W"]() is None else c["g"] @ c["updated_W"]().T,
    ),
    Slip(
        "softmax.jacobian_diagonal_only",
        N_("the softmax's Jacobian was taken as its diagonal ŷ(1 − ŷ): the terms −ŷ_k·ŷ_j, k ≠ j, were dropped"),
        "∂L/∂z_k = ∂L/∂ŷ_k·ŷ_k(1 − ŷ_k)",
        "∂L/∂z_k = Σ_j ∂L/∂ŷ_j·ŷ_j(Δ_jk − ŷ_k)",
        ("grad_input",),
        _kind("softmax"),
        lambda v, c: c["g"] * c["out"] * (1 - c["out"]),
    ),
    Slip(
        "paired.minus_y_forgotten",
        N_("the −y of δ = k·(ŷ − y) was forgotten (the gradient through the output activation and its loss)"),
        "δ = k·ŷ",
        "δ = k·(ŷ − y)",
        ("grad_input",),
        lambda t: getattr(t, "paired_last", False),
        lambda v, c: c["k"] * c["out"],
    ),
    Slip(
        "normalization.backward_without_statistics",
        N_(
            "the backward pass treated the mean and the variance as constants: the terms that come through "
            "μ and σ² were left out"
        ),
        "∂L/∂x = γ·g/√(σ² + ε)",
        "∂L/∂x = γ/√(σ² + ε)·(g − mean(g) − x̂·mean(g ⊙ x̂))",
        ("grad_input",),
        _kind("batchnorm", "layernorm"),
        lambda v, c: _normalization_backward(c, mean_term=False),
    ),
    Slip(
        "normalization.backward_without_variance_term",
        N_("the backward pass left out the term that comes through the variance"),
        "∂L/∂x = γ/√(σ² + ε)·(g − mean(g))",
        "∂L/∂x = γ/√(σ² + ε)·(g − mean(g) − x̂·mean(g ⊙ x̂))",
        ("grad_input",),
        _kind("batchnorm", "layernorm"),
        lambda v, c: _normalization_backward(c, mean_term=True),
    ),
    # -- a parameter's gradient ------------------------------------------------------------------------------
    Slip(
        "linear.weight_gradient_transposed",
        N_("the weight gradient was written transposed: δᵀ·X instead of Xᵀ·δ"),
        "∂L/∂W = δᵀ·X",
        "∂L/∂W = Xᵀ·δ",
        ("param_grad",),
        _kind("linear"),
        lambda v, c: v.T if c["name"] == "W" and v.ndim == 2 and max(v.shape) > 1 else v,
    ),
    Slip(
        "linear.weight_gradient_pre_activation",
        N_("the weight gradient used the activation's input z of the layer before instead of its output a"),
        "∂L/∂W = Zᵀ·δ",
        "∂L/∂W = Aᵀ·δ",
        ("param_grad",),
        lambda t: getattr(t, "kind", None) == "linear" and getattr(t, "after_activation", False),
        lambda v, c: c["prev_x"].T @ c["g"] if c["name"] == "W" else v,
    ),
    Slip(
        "linear.bias_gradient_not_summed",
        N_("the bias gradient was not summed over the rows (objects): δ itself was written"),
        "∂L/∂b = δ",
        "∂L/∂b = Σ_rows δ",
        ("param_grad",),
        lambda t: getattr(t, "kind", None) == "linear" and "b" in t.params,
        lambda v, c: c["g"].copy() if c["name"] == "b" and len(c["g"]) > 1 else v,
    ),
    Slip(
        "linear.bias_gradient_averaged",
        N_("the bias gradient was averaged over the rows instead of summed (the 1/n is already in δ)"),
        "∂L/∂b = 1/n·Σ_rows δ",
        "∂L/∂b = Σ_rows δ",
        ("param_grad",),
        lambda t: getattr(t, "kind", None) == "linear" and "b" in t.params,
        lambda v, c: v / len(c["g"]) if c["name"] == "b" else v,
    ),
    Slip(
        "normalization.gamma_gradient_with_input",
        N_("γ's gradient used the layer's input x instead of the normalised x̂"),
        "∂L/∂γ = Σ_rows g ⊙ x",
        "∂L/∂γ = Σ_rows g ⊙ x̂",
        ("param_grad",),
        _kind("batchnorm", "layernorm"),
        lambda v, c: (c["g"] * c["x"]).sum(axis=0) if c["name"] == "gamma" else v,
    ),
    # -- the loss --------------------------------------------------------------------------------------------
    Slip(
        "loss.mean_forgotten",
        N_("the 1/n of the mean over the objects was forgotten"),
        "L = Σ ℓ,  ∂L/∂ŷ = ∂ℓ/∂ŷ",
        "L = 1/n·Σ ℓ,  ∂L/∂ŷ = 1/n·∂ℓ/∂ŷ",
        ("loss", "loss_grad"),
        _per_object,
        lambda v, c: v * c["n"] if c["n"] > 1 else v,
    ),
    Slip(
        "loss.half_forgotten",
        N_("the ½ of the loss's scale was forgotten"),
        N_("L = k·Σ(ŷ − y)² with k = 1/n or 1"),
        N_("L = k·Σ(ŷ − y)² with k = 1/(2n) or ½"),
        ("loss", "loss_grad"),
        lambda loss: loss.scale in ("half_mean", "half_sum"),
        lambda v, c: 2 * v,
    ),
    Slip(
        "mse.two_forgotten",
        N_("the 2 that comes down from the square was left out of the gradient"),
        "∂L/∂ŷ = k·(ŷ − y)",
        "∂L/∂ŷ = 2k·(ŷ − y)",
        ("loss_grad",),
        _kind("mse"),
        lambda v, c: v / 2,
    ),
    Slip(
        "mse.mean_over_outputs",
        N_("the squared error was averaged over the outputs too (divided by n·d instead of n)"),
        "L = k/d·Σ(ŷ − y)²",
        "L = k·Σ(ŷ − y)²",
        ("loss", "loss_grad"),
        _kind("mse"),
        lambda v, c: v / c["d"] if c["d"] > 1 else v,
    ),
    Slip(
        "loss.gradient_sign",
        N_("the loss's gradient was written with the wrong sign (y − ŷ instead of ŷ − y)"),
        N_("∂L/∂ŷ = −(right gradient), e.g. 2k·(y − ŷ)"),
        "∂L/∂ŷ, e.g. 2k·(ŷ − y)",
        ("loss_grad",),
        lambda loss: True,
        lambda v, c: -v,
    ),
    Slip(
        "cross_entropy.log10",
        N_("the logarithm was taken to base 10 instead of the natural logarithm"),
        "L = −k·Σ y·log₁₀ ŷ",
        "L = −k·Σ y·ln ŷ",
        ("loss",),
        _kind("cross_entropy", "softmax_cross_entropy", "bce", "bce_with_logits"),
        lambda v, c: v / math.log(10),
    ),
    Slip(
        "cross_entropy.minus_forgotten",
        N_("the minus sign in front of the cross-entropy was forgotten (a negative loss)"),
        "L = k·Σ y·ln ŷ",
        "L = −k·Σ y·ln ŷ",
        ("loss",),
        _kind("cross_entropy", "softmax_cross_entropy", "bce", "bce_with_logits"),
        lambda v, c: -v,
    ),
    Slip(
        "fused.minus_y_forgotten",
        N_("the −Y of the fused gradient was forgotten"),
        "∂L/∂Z = k·Ŷ",
        "∂L/∂Z = k·(Ŷ − Y)",
        ("loss_grad",),
        _kind("softmax_cross_entropy", "bce_with_logits"),
        lambda v, c: v + c["k"] * c["target"],
    ),
    Slip(
        "bce.y_term_sign",
        N_("the term of y = 1 in the logloss's derivative lost its minus sign"),
        "∂L/∂p = k·(y/p + (1 − y)/(1 − p))",
        "∂L/∂p = k·(−y/p + (1 − y)/(1 − p))",
        ("loss_grad",),
        _kind("bce"),
        lambda v, c: v + 2 * c["k"] * c["target"] / c["pred"],
    ),
    # -- L2 ----------------------------------------------------------------------------------------------------
    Slip(
        "l2.gradient_two_lambda",
        N_("the penalty λ/2·‖W‖² was differentiated to 2λW instead of λW"),
        "∂/∂W (λ/2·‖W‖²) = 2λW",
        "∂/∂W (λ/2·‖W‖²) = λW",
        ("l2_grad",),
        lambda p: p.decay,
        lambda v, c: 2 * v,
    ),
    Slip(
        "l2.gradient_forgotten",
        N_("the penalty's gradient λW was not added to the weight gradient"),
        N_("∂L/∂W (without λW)"),
        "∂L/∂W + λW",
        ("l2_grad",),
        lambda p: p.decay,
        lambda v, c: np.zeros_like(v),
    ),
    Slip(
        "l2.bias_penalised",
        N_("the bias was penalised too: λb added to its gradient"),
        "∂L/∂b + λb",
        N_("∂L/∂b (biases are not penalised)"),
        ("l2_grad",),
        lambda p: not p.decay,
        lambda v, c: c["lam"] * c["param"],
    ),
    Slip(
        "l2.penalty_half_forgotten",
        N_("the ½ of the penalty λ/2·Σ‖W‖² was forgotten"),
        "λ·Σ‖W‖²",
        "λ/2·Σ‖W‖²",
        ("l2_penalty",),
        lambda problem: True,
        lambda v, c: 2 * v,
    ),
    # -- the update --------------------------------------------------------------------------------------------
    Slip(
        "update.sign_flipped",
        N_("the step was added instead of subtracted: the update went up the gradient"),
        "θ ← θ + lr·g",
        "θ ← θ − lr·g",
        ("update",),
        lambda opt: True,
        lambda v, c: 2 * c["before"] - v,
    ),
    Slip(
        "update.lr_forgotten",
        N_("the learning rate was left out of the step"),
        "θ ← θ − g",
        "θ ← θ − lr·g",
        ("update",),
        lambda opt: opt.lr != 1,
        lambda v, c: c["before"] - (c["before"] - v) / c["optimizer"].lr,
    ),
    Slip(
        "update.not_applied",
        N_("the parameter was written as it was before the step: no update"),
        "θ ← θ",
        "θ ← θ − lr·g",
        ("update",),
        lambda opt: True,
        lambda v, c: c["before"].copy(),
    ),
    Slip(
        "update.gradient_transposed",
        N_("the update used the transposed gradient"),
        "W ← W − lr·gᵀ",
        "W ← W − lr·g",
        ("update",),
        lambda opt: True,
        lambda v, c: c["before"] - (c["before"] - v).T if v.ndim == 2 and v.shape[0] == v.shape[1] > 1 else v,
    ),
    Slip(
        "momentum.dampened",
        N_("the momentum buffer was an average b ← μ·b + (1 − μ)·g instead of the sum b ← μ·b + g"),
        "b ← μ·b + (1 − μ)·g",
        "b ← μ·b + g",
        ("update",),
        lambda opt: isinstance(opt, SGD) and opt.momentum and not opt.dampening,
        lambda v, c: _own_update(c, _momentum_dampened),
    ),
    Slip(
        "nesterov.plain_momentum",
        N_("Nesterov's look-ahead was forgotten: the step was the plain momentum buffer"),
        "θ ← θ − lr·b",
        "θ ← θ − lr·(g + μ·b)",
        ("update",),
        lambda opt: isinstance(opt, SGD) and opt.nesterov,
        lambda v, c: _own_update(c, _nesterov_as_momentum),
    ),
    Slip(
        "adam.bias_correction_forgotten",
        N_("Adam's bias correction was forgotten: m and v were used for m̂ and v̂"),
        "θ ← θ − lr·m/(√v + ε)",
        "θ ← θ − lr·m̂/(√v̂ + ε),  m̂ = m/(1 − β₁ᵗ),  v̂ = v/(1 − β₂ᵗ)",
        ("update",),
        lambda opt: hasattr(opt, "beta1"),
        lambda v, c: _own_update(c, _adam(correct=False, root=True)),
    ),
    Slip(
        "adam.square_root_forgotten",
        N_("the square root of v̂ was forgotten in Adam's step"),
        "θ ← θ − lr·m̂/(v̂ + ε)",
        "θ ← θ − lr·m̂/(√v̂ + ε)",
        ("update",),
        lambda opt: hasattr(opt, "beta1"),
        lambda v, c: _own_update(c, _adam(correct=True, root=False)),
    ),
    Slip(
        "rmsprop.square_root_forgotten",
        N_("the square root of v was forgotten in RMSprop's step"),
        "θ ← θ − lr·g/(v + ε)",
        "θ ← θ − lr·g/(√v + ε)",
        ("update",),
        lambda opt: hasattr(opt, "alpha"),
        lambda v, c: _own_update(c, _rmsprop_without_root),
    ),
)

#: The slips by id.
BY_ID: dict[str, Slip] = {slip.id: slip for slip in SLIPS}


def _unbiased_normalization(c: dict) -> NDArray:
    layer, x = c["layer"], c["x"]
    axis = 0 if layer.kind == "batchnorm" else 1
    m = x.shape[axis]
    if m < 2:
        return c["out"]  # one value: no variance to estimate
    mean = x.mean(axis=axis, keepdims=True)
    var = ((x - mean) ** 2).sum(axis=axis, keepdims=True) / (m - 1)
    # the student's backward pass goes on from their own x̂ and 1/√(σ² + ε)
    layer.inv_std = 1 / np.sqrt(var + layer.eps)
    layer.x_hat = (x - mean) * layer.inv_std
    return layer.x_hat * layer.params["gamma"].data + layer.params["beta"].data


def catalogue_markdown(problems: dict[str, Any] | None = None) -> str:
    """``docs/slips.md``: every slip with its id, words, the wrong formula beside the right one, and an
    example: the first number it changes in one of ``problems`` (name → :class:`Problem`)."""
    lines = [
        "# The slips `chainrule check` recognises",
        "",
        "Each is a wrong version of one formula of the computation that `chainrule explain` shows. For the",
        "wrong numbers of an answer sheet, `check` tries every slip at every place where it can happen (one",
        "layer, one parameter, the loss) and everywhere at once, replays the whole computation with it, and",
        "keeps the slip that explains the most written numbers at the precision they were written with (then",
        "pairs of slips). The example is the first number the slip changes in one of the problems of",
        "`examples/`. Written by `python -m chainrule.explain.slips examples/*.toml`; `chainrule check --slips`",
        "lists the ids.",
        "",
        "| id | what the student did | used | right | example |",
        "|---|---|---|---|---|",
    ]
    for slip in SLIPS:
        example = _example(slip, problems or {})
        lines.append(f"| `{slip.id}` | {slip.words} | `{slip.wrong}` | `{slip.right}` | {example} |")
    return "\n".join(lines) + "\n"


def _example(slip: Slip, problems: dict[str, Any]) -> str:
    from chainrule.explain.render import fmt
    from chainrule.explain.replay import placements, replay

    def shown(a: NDArray) -> str:
        a = np.asarray(a)
        if a.ndim == 0:
            return fmt(float(a))
        rows = a if a.ndim == 2 else a[None, :]
        text = "; ".join(", ".join(fmt(float(x)) for x in row) for row in rows)
        return f"[{text}]"

    for name, problem in problems.items():
        right = replay(problem, steps=1)
        for placed in placements(problem):
            if placed.slip.id != slip.id or placed.everywhere:
                continue
            slipped = replay(problem, (placed,), steps=1)
            for path, value in slipped.items():
                if path in right and (value.shape != right[path].shape or not np.allclose(value, right[path])):
                    return f"`{name}`, {placed.where}: `{path}` {shown(value)} instead of {shown(right[path])}"
    return ""


if __name__ == "__main__":  # pragma: no cover - writes the catalogue's documentation
    import sys
    from pathlib import Path

    from chainrule.explain.problem import load_problem

    print(catalogue_markdown({Path(p).name: load_problem(p) for p in sys.argv[1:]}), end="")
