"""Hand-friendly numbers: which values a sheet asks for, which of them must come out short, and the search
for a draw where they do.

Every value a student writes, up to the first one that needs an exponential, a logarithm or a square
root, must be an integer or a decimal of at most two places; from there on (probabilities, a logloss,
everything computed from them) the sheet asks for three decimal places. No ReLU may receive an exact 0
(where its derivative is a matter of convention), some ReLU input must be negative (a ReLU that changes
nothing teaches nothing), no gradient may be all zeros, and no logit may be so large that its probability
reads as 0 or 1.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from chainrule.errors import ChainruleError, ConfigError
from chainrule.explain.explanation import Explanation, run_problem
from chainrule.explain.problem import Problem, parse_problem
from chainrule.explain.replay import replay
from chainrule.i18n import _

#: Layer kinds whose output needs exp, a square root or erf; losses that need a logarithm.
TRANSCENDENTAL_LAYERS = ("sigmoid", "tanh", "softmax", "gelu", "batchnorm", "layernorm")
LOG_LOSSES = ("bce", "bce_with_logits", "cross_entropy", "softmax_cross_entropy")
#: Decimals of a value that works out by hand, and of one that must be rounded.
SHORT, ROUNDED = 2, 3
#: The largest number a student should have to write.
LARGEST = 20.0
#: The largest logit (input of a sigmoid or softmax) in absolute value: beyond it a probability reads as 0
#: or 1 at three decimals.
LARGEST_LOGIT = 3.0
#: Draws tried for one variant before giving up.
TRIES = 20_000

_ASKED = re.compile(
    r"^(loss|loss_grad|history\[\d+\]|layers\[\d+\]\."
    r"(output|local_derivative|grad_input|details\.\w+|grads\.\w+|moments\.\w+\.\w+|params_after\.\w+))$"
)


@dataclass
class Asked:
    """One value a sheet asks for: its place in the JSON of ``chainrule explain``, the right value, and
    whether it is to be rounded (to :data:`ROUNDED` places) rather than exact."""

    path: str
    value: NDArray
    rounded: bool


def asked(problem: Problem) -> list[Asked]:
    """The values a sheet asks for, in the order the computation reaches them: each layer's output, the
    loss and its gradient, each layer's local derivative, passed-back gradient (not the first layer's: no
    one asks for ∂L/∂X, except through a BatchNorm, where it is the lesson) and parameter gradients,
    BatchNorm's pieces (μ, σ², x̂ and the terms of its backward pass), Adam's moments, the parameters after
    the step(s), and the loss before each later step."""
    values = replay(problem, steps=problem.steps)
    out, rounded = [], False
    first_asked = problem.model.layers[0].kind == "batchnorm"
    for path, value in values.items():
        if not _ASKED.match(path) or (path == "layers[0].grad_input" and not first_asked):
            continue
        rounded = rounded or _transcendental(problem, path)
        out.append(Asked(path, np.asarray(value, dtype=np.float64), rounded))
    return out


def _transcendental(problem: Problem, path: str) -> bool:
    """Whether computing ``path`` itself needs exp, log or a square root."""
    if path == "loss":
        return problem.loss.kind in LOG_LOSSES
    if path == "loss_grad":  # the fused losses' gradient is softmax or sigmoid of the logits
        return problem.loss.kind in ("bce_with_logits", "softmax_cross_entropy")
    if re.search(r"\.details\.(mean|var)$|\.moments\.\w+\.(m|v|m_hat|v_hat)$", path):
        return False  # a batch's mean and variance, Adam's moments: sums and products
    if ".details." in path:  # x̂ and everything after it: a square root
        return True
    match = re.match(r"layers\[(\d+)\]\.(output|params_after)", path)
    if match and match.group(2) == "output":
        return problem.model.layers[int(match.group(1))].kind in TRANSCENDENTAL_LAYERS
    return bool(match) and problem.optimizer_name not in ("sgd", "momentum")


def is_short(value: NDArray) -> bool:
    """Whether every entry is an integer or a decimal of at most :data:`SHORT` places."""
    scaled = np.asarray(value, dtype=np.float64) * 10**SHORT
    return bool(np.all(np.abs(scaled - np.round(scaled)) <= 1e-9 * np.maximum(1.0, np.abs(scaled))))


def why_not_friendly(problem: Problem, relu_must_cut: bool = True) -> str | None:
    """Why the numbers of ``problem`` do not work out by hand, or ``None`` when they do."""
    if not np.all(np.any(problem.X != 0, axis=0)) or not np.all(np.any(problem.X != 0, axis=1)):
        return _("X has a row or a column of zeros")
    values = asked(problem)
    for a in values:
        if not np.all(np.isfinite(a.value)) or np.max(np.abs(a.value)) > LARGEST:
            return _("{path} has a number beyond ±{largest}").format(path=a.path, largest=f"{LARGEST:g}")
        if not a.rounded and not is_short(a.value):
            return _("{path} has more than {short} decimals").format(path=a.path, short=SHORT)
        if ".grads." in a.path and not np.any(np.abs(a.value) > 1e-12):
            return _("{path} is all zeros").format(path=a.path)
    if all(np.all(np.abs(a.value) <= 1e-12) for a in values if a.path == "loss_grad"):
        return _("the loss gradient is all zeros: the prediction is already the target")
    layers = problem.model.layers
    outputs = {a.path: a.value for a in values}
    inputs = [problem.X, *(outputs[f"layers[{i}].output"] for i in range(len(layers) - 1))]
    logits = [z for z, layer in zip(inputs, layers, strict=True) if layer.kind in ("sigmoid", "softmax", "tanh")]
    if problem.loss.kind in ("bce_with_logits", "softmax_cross_entropy"):
        logits.append(outputs[f"layers[{len(layers) - 1}].output"])
    if any(np.max(np.abs(z)) > LARGEST_LOGIT for z in logits):
        return _("a logit beyond ±{largest}").format(largest=f"{LARGEST_LOGIT:g}")
    for i, (z, layer) in enumerate(zip(inputs, layers, strict=True)):
        if layer.kind != "relu":
            continue
        if np.any(z == 0):
            return _("the ReLU of layer {i} receives an exact 0").format(i=i)
        if relu_must_cut and not np.any(z < 0):
            return _("the ReLU of layer {i} receives no negative number").format(i=i)
    return _why_not_later(problem) if problem.steps > 1 else None


def _why_not_later(problem: Problem) -> str | None:
    """The later steps of a problem of several: each must still teach something (no ReLU input exactly 0,
    no gradient all zeros, no number beyond the bound), and the loss must move."""
    explanation = run_problem(problem)
    for step in explanation.steps[1:]:
        for r in step.layers:
            if r.layer.kind == "relu" and np.any(r.input == 0):
                return _("the ReLU of layer {i} receives an exact 0 at step {step}").format(i=r.index, step=step.number)
            if np.max(np.abs(r.output)) > LARGEST:
                return _("layer {i} has a number beyond ±{largest} at step {step}").format(
                    i=r.index, largest=f"{LARGEST:g}", step=step.number
                )
        for i, grads in step.grads.items():
            for name, g in grads.items():
                if not np.any(np.abs(g) > 1e-12):
                    return _("the gradient of {name} (layer {i}) is all zeros at step {step}").format(
                        name=name, i=i, step=step.number
                    )
    if np.any(np.abs(np.diff(explanation.history)) < 1e-9):
        return _("the loss does not move from one step to the next")
    return None


def search(draw, rng: np.random.Generator, title: str, relu_must_cut: bool = True) -> tuple[dict, Explanation]:
    """The first problem file drawn by ``draw(rng)`` whose numbers work out by hand, with its explanation;
    a :class:`ConfigError` that says what failed most often when :data:`TRIES` draws do not."""
    reasons: dict[str, int] = {}
    for _attempt in range(TRIES):
        document = {"title": title, **draw(rng)}
        try:
            problem = parse_problem(document, title)
        except ChainruleError as err:  # a draw the loss refuses (a probability of exactly 0)
            reasons[str(err)] = reasons.get(str(err), 0) + 1
            continue
        reason = why_not_friendly(problem, relu_must_cut)
        if reason is None:
            return document, run_problem(problem)
        kind = re.sub(r"\[\d+\]", "[i]", reason)
        reasons[kind] = reasons.get(kind, 0) + 1
    common = max(reasons, key=reasons.__getitem__)
    raise ConfigError(
        _(
            "{title}: no numbers that work out by hand in {tries} draws (most often: {common}); choose smaller "
            "sizes, fewer rows or one step"
        ).format(title=title, tries=TRIES, common=common)
    )
