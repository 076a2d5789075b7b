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
    doc: list = [Heading(1, f"Exercise {variant}: {title}")]
    doc.append(Sentence("The network, with rows of X as objects:"))
    doc.append(Equation([f"{names[-1].text} = {network_formula(explanation)}"]))
    given: list = ["X = ", problem.X]
    for i, layer in enumerate(problem.model.layers):
        for name, p in layer.params.items():
            given += [f",   {_param(name, i)} = ", p.data]
    doc.append(Equation(given))
    classes = problem.loss.target_kind == "classes"
    target = "the class of each row, counted from 0" if classes else "the target of each row"
    doc.append(Sentence(f"y is {target}:"))
    doc.append(Equation(["y = ", problem.y]))
    rounded = [a.path for a in values if a.rounded]
    precision = f"Every number you write is an integer or has at most {SHORT} decimals"
    if rounded:
        precision += (
            " until exponentials, logarithms or square roots come in; from there on (the parts marked so) round "
            f"to {ROUNDED} decimal places, and go on with your rounded numbers"
        )
    doc.append(Sentence(precision + "."))
    doc.append(
        Sentence(
            f"Write each answer in the answers file of variant {variant}, at the place named in brackets "
            '(a matrix as rows: [[1, 2], [3, 4]]). Leave "" where you have no answer.'
        )
    )

    parts: list[tuple[str, list[str]]] = []
    layers = problem.model.layers
    for i, layer in enumerate(layers):
        source = "X" if i == 0 else names[i - 1].text
        if layer.kind == "batchnorm":
            pieces = [f"layers[{i}].details.{name}" for name in ("mean", "var", "x_hat")]
            text = (
                f"Layer {i} is batch normalisation in training mode, with ε = {_small(layer.eps)} (too small to "
                f"change a number at 3 decimals). Find the mean μ and the variance σ² of each column of {source} "
                f"over the rows, the normalised x̂ = ({source} − μ)/√(σ² + ε), and {names[i].text} = γ ⊙ x̂ + β."
            )
            parts.append((text, [*pieces, f"layers[{i}].output"]))
            continue
        what = "linear" if layer.kind == "linear" else f"the activation {_NAMES.get(layer.kind, layer.kind)}"
        parts.append(
            (
                f"Layer {i} is {what}. By what formula is its forward pass done? Compute it for {source}: "
                f"{names[i].text} = ?",
                [f"layers[{i}].output"],
            )
        )
    loss = problem.loss
    loss_formula = formula(explanation, "data_loss") or f"L = {loss.kind}"
    k = {"mean": "1/n", "sum": "1", "half_mean": "1/(2n)", "half_sum": "1/2"}[loss.scale]
    l2 = f" + {fmt(problem.l2)}/2·Σ‖W‖²" if problem.l2 else ""
    parts.append((f"The loss is {loss_formula}{l2}, with k = {k} and n = {problem.X.shape[0]}. Find L.", ["loss"]))
    parts.append(
        (
            f"What is the derivative of the loss by the prediction, ∂L/∂{names[-1].text}? It is the gradient the "
            "loss passes back into the network.",
            ["loss_grad"],
        )
    )
    for i in reversed(range(len(layers))):
        layer = layers[i]
        source = "X" if i == 0 else names[i - 1].text
        paths = [
            a.path
            for a in values
            if re.match(rf"layers\[{i}\]\.(local_derivative|grads\.|grad_input|details\.grad_)", a.path)
        ]
        if layer.kind == "batchnorm":
            text = (
                f"Backward through layer {i} (batch normalisation): find ∂L/∂γ and ∂L/∂β; then, by the route "
                f"through x̂, σ² and μ, find ∂L/∂x̂, the σ² term ∂L/∂σ², the μ term ∂L/∂μ, and ∂L/∂{source}. "
                "By what formula is each found?"
            )
        elif layer.kind == "linear":
            grads = ", ".join(f"∂L/∂{_param(name, i)}" for name in layer.params)
            back = "" if i == 0 else f", and the gradient it passes back, ∂L/∂{source}"
            text = f"Backward through layer {i} (linear): find {grads}{back}. By what formula is each found?"
        elif any(p.endswith("local_derivative") for p in paths):
            text = (
                f"Find the derivative of layer {i}'s output by its input, f′({source}), and the gradient it passes "
                f"back, ∂L/∂{source}."
            )
        else:
            text = f"Backward through layer {i} ({layer.kind}): find the gradient it passes back, ∂L/∂{source}."
        parts.append((text, paths))
    moments = [a.path for a in values if ".moments." in a.path]
    if moments:
        optimizer = explanation.optimizer
        parts.append(
            (
                f"The first step of Adam, with β₁ = {fmt(optimizer.beta1)} and β₂ = {fmt(optimizer.beta2)}, from "
                "the moments m = v = 0: find each parameter's m and v after it, and their bias corrections "
                "m̂ = m/(1 − β₁ᵗ) and v̂ = v/(1 − β₂ᵗ) with t = 1.",
                moments,
            )
        )
    updated = [a.path for a in values if ".params_after." in a.path]
    if updated:
        rate = fmt(explanation.first.lr)
        symbol = "η" if any(layer.kind == "batchnorm" for layer in layers) else "γ"  # γ is BatchNorm's scale
        steps = "one step" if problem.steps == 1 else f"{problem.steps} steps (on the same batch)"
        if problem.optimizer_name == "adam":
            eps = _small(explanation.optimizer.eps)
            text = (
                f"With the learning rate {symbol} = {rate} and ε = {eps}, make {steps} of Adam: the parameters after."
            )
        else:
            method = "gradient descent" if problem.optimizer_name == "sgd" else problem.optimizer_name
            text = f"With the learning rate {symbol} = {rate}, make {steps} of {method}: the parameters after."
        parts.append((text, updated))
    later = [a.path for a in values if a.path.startswith("history[")]
    if later:
        parts.append(("The loss before each later step.", later))

    parts = [(text, [p for p in paths if p in by_path]) for text, paths in parts]
    for k, (text, paths) in enumerate((text, paths) for text, paths in parts if paths):
        letter = part_label(k)
        marked = any(by_path[p].rounded for p in paths)
        doc.append(Heading(3, f"{letter}) (round to {ROUNDED} decimals)" if marked else f"{letter})"))
        doc.append(Sentence(text))
        doc.append(Sentence("Answers: " + ", ".join(f"[{p}] {_shape(by_path[p].value)}" for p in paths)))
    return doc


def _small(value: float) -> str:
    """A small constant as a power of ten where it is one (``10⁻⁵``), else as :func:`fmt` writes it."""
    exponent = round(np.log10(value)) if value > 0 else 0
    if value > 0 and np.isclose(value, 10.0**exponent, rtol=1e-12) and exponent < 0:
        return "10⁻" + str(-exponent).translate(str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹"))
    return fmt(value)


def _shape(value: np.ndarray) -> str:
    return "(a number)" if value.ndim == 0 else "(" + "×".join(map(str, value.shape)) + ")"


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

    head = (
        f"The right answers of exercise {variant} (check a sheet with chainrule check)"
        if key
        else f'Your answers to exercise {variant}: write each number at its place; leave "" where you have none.'
    )
    lines = [
        f"# {head}",
        f"variant = {json.dumps(variant)}",
        f"title = {json.dumps(title, ensure_ascii=False)}",
    ]
    lines += [f"{json.dumps(a.path)} = {written(a.value.tolist(), a.rounded)}" for a in values]
    return "\n".join(lines) + "\n"
