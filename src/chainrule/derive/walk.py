"""``chainrule derive --problem FILE``: the chain rule walked from the loss back to the first weight, in the
layers, symbols and numbers of one problem file.

Each step is a backward formula that the layer's kind declares (the ones ``explain`` shows), with the
file's symbols (``∂L/∂W₀ = Xᵀ·δ₀``) and the numbers chainrule computed. SymPy checks each one as one link
of the chain rule: it writes the layer's forward pass (declared by the topics with
:func:`~chainrule.derive.topics.forward`) as an expression of the quantity the step differentiates by,
differentiates ``Σ δ ⊙ output`` (δ = ∂L/∂output, the previous step's numbers; for the first step, the
loss itself) and evaluates it at the file's numbers with 30 digits. The step is verified where that equals
chainrule's numbers to 1e-9; step by step, the whole walk is then the derivative of the loss.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from chainrule.derive.core import Derivation, Step, gradient
from chainrule.derive.topics import forward_of, topic_of
from chainrule.errors import ConfigError
from chainrule.i18n import _
from chainrule.losses import SCALE_FORMULAS
from chainrule.notation import PLACEHOLDER, SYMBOLS, split

#: Relative agreement asked of SymPy's derivative and chainrule's float64 numbers.
WALK_TOLERANCE = 1e-9
_SUB = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")


def _numbers(array: Any) -> str:
    """A short, rounded form of an array for a step's text: ``[[0.5, −1.25], [0, 2]]``."""

    def one(v: float) -> str:
        text = f"{v:.4g}" if v != 0 else "0"
        return "−" + text[1:] if text.startswith("-") else text

    array = np.atleast_2d(np.asarray(array, dtype=np.float64))
    return "[" + ", ".join("[" + ", ".join(one(v) for v in row) + "]" for row in array) + "]"


def walk(problem: Any, sp: Any) -> Derivation:
    """The walk for a problem file (:class:`~chainrule.explain.Problem`), every step checked."""
    from chainrule.explain import run_problem

    for kind in {layer.kind for layer in problem.model.layers}:
        if forward_of("layer", kind) is None:
            raise ConfigError(_("derive --problem: no SymPy forward pass for layer {kind!r} yet").format(kind=kind))
    if forward_of("loss", problem.loss.kind) is None:
        raise ConfigError(
            _("derive --problem: no SymPy forward pass for loss {kind!r} yet").format(kind=problem.loss.kind)
        )

    step = run_problem(problem, steps=1).first
    records, loss = step.layers, problem.loss
    k = sp.Float(loss.factor(problem.X.shape[0]), 30)
    target = sp.Matrix(loss.target)

    def const(array) -> Any:
        return sp.Matrix(np.atleast_2d(np.asarray(array, dtype=np.float64)).tolist()).applyfunc(
            lambda v: sp.Float(v, 30)
        )

    def through(r, x: Any, params: dict) -> Any:
        """Σ δ ⊙ (layer r's output computed from ``x`` and ``params``): its gradient by ``x`` or a
        parameter is the chain rule through that layer alone, with δ = ∂L/∂output the previous step's."""
        out = forward_of("layer", r.layer.kind)(sp, r.layer, x, params)
        return sum(d * o for d, o in zip(const(r.grad_output), out, strict=True))

    def derivative(make_loss, at: Any) -> Any:
        """SymPy's gradient of ``make_loss(S)`` by a matrix of symbols ``S``, at ``S = at``."""
        values = const(at)
        S = sp.Matrix(*values.shape, lambda i, j: sp.Dummy(f"s_{i}_{j}"))
        grad = gradient(sp, make_loss(S), S)
        return grad.xreplace(dict(zip(S, values, strict=True)))

    names = ["X"] + [f"{r.layer.symbol}{str(r.index).translate(_SUB)}" for r in records]
    first = next((r.index for r in records if r.params), 0)

    def symbols_of(r) -> dict[str, str]:
        index = str(r.index).translate(_SUB)
        return {
            "in": names[r.index],
            "out": names[r.index + 1],
            "δ": f"δ{index}",
            **{name: f"{SYMBOLS.get(name, name)}{index}" for name in r.params},
        }

    given = [_fill(eq.text, symbols_of(r)) for r in records for eq in r.layer.formulas().forward]
    given += [_fill(eq.text, {"in": names[-1], "y": "Y", "k": "k"}) for eq in loss.formulas().forward]
    given.append(f"k = {SCALE_FORMULAS[loss.scale]},  n = {problem.X.shape[0]}")
    steps: list[Step] = []

    loss_topic = topic_of("loss", loss.kind)
    out = records[-1].output
    for eq in loss.formulas().backward:
        text = _fill(eq.text, {"in": names[-1], "y": "Y", "k": "k"})
        steps.append(
            Step(
                _with_numbers(text, step.loss_grad),
                _("the loss {loss}, scale {scale}, k = {k} (derive {topic})").format(
                    loss=loss.kind, scale=loss.scale, k=f"{float(k):.4g}", topic=loss_topic
                ),
                derivative(lambda S: forward_of("loss", loss.kind)(sp, loss, S, target, k), out),
                const(step.loss_grad),
                how="numeric",
                tolerance=WALK_TOLERANCE,
            )
        )
    for r in reversed(records):
        if r.index < first:
            break
        topic = topic_of("layer", r.layer.kind)
        symbols, definitions = symbols_of(r), []
        for eq in r.layer.formulas().backward:
            name = eq.computes() or ""
            if not name.startswith("∂"):  # a definition (f′ = …, ĝ = …): shown with the step that uses it
                definitions.append(_fill(eq.text, symbols))
                continue
            if name == "∂in" and r.index == first:
                continue  # the gradient of the data: the walk ends at the first weight
            text = ",  ".join([*definitions, _fill(eq.text, symbols)])
            definitions = []
            if name == "∂in":
                lhs = derivative(lambda S, r=r: through(r, S, {n: const(v) for n, v in r.params.items()}), r.input)
                value = r.grad_input
            else:
                param = name[1:]

                def make_loss(S, r=r, param=param):
                    own = {n: const(v) for n, v in r.params.items()}
                    own[param] = S
                    return through(r, const(r.input), own)

                lhs, value = derivative(make_loss, r.params[param]), r.grads[param]
            steps.append(
                Step(
                    _with_numbers(text, value),
                    _("layer {index}, {kind}: its backward formula (derive {topic})").format(
                        index=r.index, kind=r.layer.kind, topic=topic
                    ),
                    lhs,
                    const(value).reshape(*lhs.shape),
                    how="numeric",
                    tolerance=WALK_TOLERANCE,
                )
            )
    return Derivation(
        "problem",
        _("From the loss back to the first weight: {title}").format(title=problem.title),
        given,
        steps,
        None,
        notes=[
            _("δᵢ is the gradient of the loss {loss} ({scale}) by the output of layer i; Y the targets.").format(
                loss=loss.kind, scale=loss.scale
            ),
            _(
                "Each step is checked against SymPy's derivative of that one layer (times the δ of the step before), "
                "at the file's numbers; chainrule derive TOPIC shows why each formula holds."
            ),
        ],
    )


def _with_numbers(text: str, value: Any) -> str:
    """``text`` followed by its numbers: ``= [[…]]`` at its end, or, after a long formula, as an equation
    of its own (``∂L/∂Z₀ = [[…]]``), which LaTeX sets on the next line."""
    if len(text) <= 60:
        return f"{text} = {_numbers(value)}"
    return f"{text},  {split(text.split(',  ')[-1])[0]} = {_numbers(value)}"


def _fill(text: str, symbols: dict[str, str]) -> str:
    """``text`` with each placeholder replaced by its symbol (``{W}`` → ``W₀``), else by :data:`SYMBOLS`."""

    def one(match) -> str:
        name = match.group(1)
        if name in symbols:
            return symbols[name]
        return PLACEHOLDER.sub(lambda m: symbols.get(m.group(1), m.group(1)), SYMBOLS.get(name, name))

    return PLACEHOLDER.sub(one, text)
