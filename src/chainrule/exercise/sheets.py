"""A variant's papers: the question sheet posed in parts (as a document of :mod:`chainrule.explain.render`'s
blocks, so Markdown and LaTeX come from the same renderers as ``explain``), the answer template a student
fills, and the key (the trace of ``chainrule explain`` and the right answers)."""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np

from chainrule.exercise.friendly import ROUNDED, SHORT, Asked
from chainrule.explain.entries import formula
from chainrule.explain.explanation import Explanation
from chainrule.explain.render import Equation, Heading, Sentence, Sym, fmt, indexed
from chainrule.i18n import _, ngettext
from chainrule.notation import SYMBOLS

_NAMES = {"relu": "ReLU", "sigmoid": "σ", "tanh": "tanh", "softmax": "softmax", "gelu": "GELU"}
_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def part_label(k: int) -> str:
    """The letter of the sheet's part ``k`` (from 0): a … z, then aa, ab … az, ba …, as spreadsheet
    columns count, so that no part is left without one."""
    label = ""
    k += 1
    while k:
        k, rest = divmod(k - 1, 26)
        label = _LETTERS[rest] + label
    return label


def _symbols(explanation: Explanation) -> list[Sym]:
    """Each layer's output as ``explain`` names it (``Z₀``, ``A₁``)."""
    return [indexed(layer.symbol, i) for i, layer in enumerate(explanation.problem.model.layers)]


def _param(name: str, i: int) -> str:
    return indexed(SYMBOLS.get(name, name), i).text


def network_formula(explanation: Explanation) -> str:
    """The network as one formula, as the notes write it: ``ReLU(X·W₀)·W₂``."""
    expr = "X"
    for i, layer in enumerate(explanation.problem.model.layers):
        if layer.kind == "linear":
            factor = f"({expr})" if " + " in expr else expr
            expr = f"{factor}·{_param('W', i)}" + (f" + {_param('b', i)}" if "b" in layer.params else "")
        else:
            expr = f"{_NAMES.get(layer.kind, layer.kind)}({expr})"
    return expr


def question_sheet(explanation: Explanation, values: list[Asked], variant: str, title: str) -> list:
    """The question sheet: the network, every number it starts from, then the parts, each asking for
    values by their place in the answers file."""
    problem = explanation.problem
    names = _symbols(explanation)
    by_path = {a.path: a for a in values}
    doc: list = [Heading(1, _("Exercise {variant}: {title}").format(variant=variant, title=_(title)))]
    doc.append(Sentence(_("The network, with rows of X as objects:")))
    doc.append(Equation([f"{names[-1].text} = {network_formula(explanation)}"]))
    given: list = ["X = ", problem.X]
    for i, layer in enumerate(problem.model.layers):
        for name, p in layer.params.items():
            given += [f",   {_param(name, i)} = ", p.data]
    doc.append(Equation(given))
    if problem.loss.target_kind == "classes":
        doc.append(Sentence(_("y is the class of each row, counted from 0:")))
    else:
        doc.append(Sentence(_("y is the target of each row:")))
    doc.append(Equation(["y = ", problem.y]))
    if any(a.rounded for a in values):
        precision = _(
            "Every number you write is an integer or has at most {short} decimals until exponentials, logarithms "
            "or square roots come in; from there on (the parts marked so) round to {rounded} decimal places, and "
            "go on with your rounded numbers."
        )
    else:
        precision = _("Every number you write is an integer or has at most {short} decimals.")
    doc.append(Sentence(precision.format(short=SHORT, rounded=ROUNDED)))
    doc.append(
        Sentence(
            _(
                "Write each answer in the answers file of variant {variant}, at the place named in brackets "
                '(a matrix as rows: [[1, 2], [3, 4]]). Leave "" where you have no answer.'
            ).format(variant=variant)
        )
    )
    parts = _forward_parts(explanation, names) + _backward_parts(explanation, values, names)
    parts += _update_parts(explanation, values)

    parts = [(text, [p for p in paths if p in by_path]) for text, paths in parts]
    for k, (text, paths) in enumerate((text, paths) for text, paths in parts if paths):
        letter = part_label(k)
        if any(by_path[p].rounded for p in paths):
            heading = _("{letter}) (round to {rounded} decimals)").format(letter=letter, rounded=ROUNDED)
        else:
            heading = f"{letter})"
        doc.append(Heading(3, heading))
        doc.append(Sentence(text))
        places = ", ".join(f"[{p}] {_shape(by_path[p].value)}" for p in paths)
        doc.append(Sentence(_("Answers: {places}").format(places=places)))
    return doc


def _forward_parts(explanation: Explanation, names: list[Sym]) -> list[tuple[str, list[str]]]:
    """The parts of the forward pass and the loss: each layer's output, the loss, its gradient."""
    problem = explanation.problem
    parts = []
    for i, layer in enumerate(problem.model.layers):
        source = "X" if i == 0 else names[i - 1].text
        if layer.kind == "batchnorm":
            text = _(
                "Layer {i} is batch normalisation in training mode, with ε = {eps} (too small to change a number "
                "at 3 decimals). Find the mean μ and the variance σ² of each column of {source} over the rows, the "
                "normalised x̂ = ({source} − μ)/√(σ² + ε), and {output} = γ ⊙ x̂ + β."
            )
            pieces = [f"layers[{i}].details.{name}" for name in ("mean", "var", "x_hat")]
        elif layer.kind == "linear":
            text = _(
                "Layer {i} is linear. By what formula is its forward pass done? Compute it for {source}: {output} = ?"
            )
            pieces = []
        else:
            text = _(
                "Layer {i} is the activation {activation}. By what formula is its forward pass done? Compute it for "
                "{source}: {output} = ?"
            )
            pieces = []
        activation = _NAMES.get(layer.kind, layer.kind)
        eps = _small(getattr(layer, "eps", 0.0))
        text = text.format(i=i, source=source, output=names[i].text, activation=activation, eps=eps)
        parts.append((text, [*pieces, f"layers[{i}].output"]))
    loss = problem.loss
    loss_formula = formula(explanation, "data_loss") or f"L = {loss.kind}"
    k = {"mean": "1/n", "sum": "1", "half_mean": "1/(2n)", "half_sum": "1/2"}[loss.scale]
    l2 = f" + {fmt(problem.l2)}/2·Σ‖W‖²" if problem.l2 else ""
    text = _("The loss is {formula}, with k = {k} and n = {n}. Find L.")
    parts.append((text.format(formula=loss_formula + l2, k=k, n=problem.X.shape[0]), ["loss"]))
    text = _(
        "What is the derivative of the loss by the prediction, ∂L/∂{output}? It is the gradient the loss passes "
        "back into the network."
    )
    parts.append((text.format(output=names[-1].text), ["loss_grad"]))
    return parts


def _backward_parts(explanation: Explanation, values: list[Asked], names: list[Sym]) -> list[tuple[str, list[str]]]:
    """The parts of the backward pass, one per layer from the last."""
    layers = explanation.problem.model.layers
    parts = []
    for i in reversed(range(len(layers))):
        layer = layers[i]
        source = "X" if i == 0 else names[i - 1].text
        pattern = rf"layers\[{i}\]\.(local_derivative|grads\.|grad_input|details\.grad_)"
        paths = [a.path for a in values if re.match(pattern, a.path)]
        if layer.kind == "batchnorm":
            text = _(
                "Backward through layer {i} (batch normalisation): find ∂L/∂γ and ∂L/∂β; then, by the route "
                "through x̂, σ² and μ, find ∂L/∂x̂, the σ² term ∂L/∂σ², the μ term ∂L/∂μ, and ∂L/∂{source}. By "
                "what formula is each found?"
            )
        elif layer.kind == "linear" and i == 0:
            text = _("Backward through layer {i} (linear): find {grads}. By what formula is each found?")
        elif layer.kind == "linear":
            text = _(
                "Backward through layer {i} (linear): find {grads}, and the gradient it passes back, ∂L/∂{source}. "
                "By what formula is each found?"
            )
        elif any(p.endswith("local_derivative") for p in paths):
            text = _(
                "Find the derivative of layer {i}'s output by its input, f′({source}), and the gradient it passes "
                "back, ∂L/∂{source}."
            )
        else:
            text = _("Backward through layer {i} ({kind}): find the gradient it passes back, ∂L/∂{source}.")
        grads = ", ".join(f"∂L/∂{_param(name, i)}" for name in layer.params)
        parts.append((text.format(i=i, source=source, grads=grads, kind=layer.kind), paths))
    return parts


def _update_parts(explanation: Explanation, values: list[Asked]) -> list[tuple[str, list[str]]]:
    """The parts of the step: Adam's moments, the parameters after, the loss before each later step."""
    problem, optimizer = explanation.problem, explanation.optimizer
    parts = []
    moments = [a.path for a in values if ".moments." in a.path]
    if moments:
        text = _(
            "The first step of Adam, with β₁ = {beta1} and β₂ = {beta2}, from the moments m = v = 0: find each "
            "parameter's m and v after it, and their bias corrections m̂ = m/(1 − β₁ᵗ) and v̂ = v/(1 − β₂ᵗ) with "
            "t = 1."
        )
        parts.append((text.format(beta1=fmt(optimizer.beta1), beta2=fmt(optimizer.beta2)), moments))
    updated = [a.path for a in values if ".params_after." in a.path]
    if updated:
        n = problem.steps
        if problem.optimizer_name == "sgd":
            text = ngettext(
                "With the learning rate {symbol} = {rate}, make one step of gradient descent: the parameters after.",
                "With the learning rate {symbol} = {rate}, make {n} steps of gradient descent (on the same batch): "
                "the parameters after.",
                n,
            )
        elif problem.optimizer_name == "adam":
            text = ngettext(
                "With the learning rate {symbol} = {rate} and ε = {eps}, make one step of Adam: the parameters after.",
                "With the learning rate {symbol} = {rate} and ε = {eps}, make {n} steps of Adam (on the same "
                "batch): the parameters after.",
                n,
            )
        else:
            text = ngettext(
                "With the learning rate {symbol} = {rate}, make one step of {method}: the parameters after.",
                "With the learning rate {symbol} = {rate}, make {n} steps of {method} (on the same batch): the "
                "parameters after.",
                n,
            )
        batchnorm = any(layer.kind == "batchnorm" for layer in problem.model.layers)
        symbol = "η" if batchnorm else "γ"  # γ is BatchNorm's scale
        eps = _small(getattr(optimizer, "eps", 0.0))
        rate = fmt(explanation.first.lr)
        parts.append((text.format(symbol=symbol, rate=rate, eps=eps, n=n, method=problem.optimizer_name), updated))
    later = [a.path for a in values if a.path.startswith("history[")]
    if later:
        parts.append((_("The loss before each later step."), later))
    return parts


def _small(value: float) -> str:
    """A small constant as a power of ten where it is one (``10⁻⁵``), else as :func:`fmt` writes it."""
    exponent = round(np.log10(value)) if value > 0 else 0
    if value > 0 and np.isclose(value, 10.0**exponent, rtol=1e-12) and exponent < 0:
        return "10⁻" + str(-exponent).translate(str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹"))
    return fmt(value)


def _shape(value: np.ndarray) -> str:
    return _("(a number)") if value.ndim == 0 else "(" + "×".join(map(str, value.shape)) + ")"


def answers_toml(variant: str, title: str, values: list[Asked], key: bool = False) -> str:
    """The answers file of a variant: with ``key``, the right values (rounded ones to the places the sheet
    asks); without, blanks (``""``) of each value's shape for the student to fill."""

    def number(v: float, rounded: bool) -> str:
        v = round(float(v), ROUNDED if rounded else SHORT + 6) + 0.0
        return str(int(v)) if v.is_integer() else repr(v)

    def written(value: Any, rounded: bool) -> str:
        if isinstance(value, list):
            return "[" + ", ".join(written(v, rounded) for v in value) + "]"
        return number(value, rounded) if key else '""'

    if key:
        head = _("The right answers of exercise {variant} (check a sheet with chainrule check)")
    else:
        head = _('Your answers to exercise {variant}: write each number at its place; leave "" where you have none.')
    head = head.format(variant=variant)
    lines = [
        f"# {head}",
        f"variant = {json.dumps(variant)}",
        f"title = {json.dumps(_(title), ensure_ascii=False)}",
    ]
    lines += [f"{json.dumps(a.path)} = {written(a.value.tolist(), a.rounded)}" for a in values]
    return "\n".join(lines) + "\n"
