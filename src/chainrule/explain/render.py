"""Render an :class:`~chainrule.explain.explanation.Explanation` as text, Markdown (LaTeX maths) or a LaTeX
document.

The content is built once, as a list of blocks (headings, sentences and equations whose parts are maths
text, symbols or matrices), and each format only decides how a block looks. The formulas are the ones
each layer, loss and optimizer declares (``formulas()``, see :mod:`chainrule.notation`); the numbers are
the trace's. The renderer puts symbols and numbers into the formulas and lays them out: every number it
shows is one the library computed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from chainrule.derive.topics import topic_of
from chainrule.explain.explanation import Explanation, StepRecord, derivations, to_json
from chainrule.i18n import _, display_width, language, ngettext
from chainrule.latex import document_head
from chainrule.losses import SCALE_FORMULAS
from chainrule.notation import PLACEHOLDER, SYMBOLS, Eq, is_sentinel, last_part, sentinel, text_to_latex, to_latex
from chainrule.trace import LayerRecord

FORMATS = ("text", "markdown", "latex", "json", "html")
MAX_SHOWN = 8  # rows or columns of a matrix shown in full; larger ones are elided in the middle


# -- the document model ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Sym:
    """A symbol (``W₀``, ``f′(Z₂)``), written in Unicode maths; its LaTeX is derived."""

    text: str

    def latex(self) -> str:
        return to_latex(self.text)


@dataclass
class Heading:
    level: int
    text: str
    anchor: str | None = None  # the id a link may point to (the page's diagram links to each layer)


@dataclass
class Sentence:
    text: str


@dataclass
class Equation:
    parts: list  # str (maths text) | Sym | NDArray


_SUB = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")


def indexed(symbol: str, index: int) -> Sym:
    return Sym(f"{symbol}{str(index).translate(_SUB)}")


# -- formulas with symbols and numbers put in --------------------------------------------------------
Lookup = Mapping[str, Any]  # placeholder name -> Sym | NDArray | number


def _fill(text: str, lookup: Lookup) -> list:
    """The parts of ``text`` with each placeholder replaced by what ``lookup`` has for it (an array
    followed by ``ᵀ`` is transposed)."""
    parts: list = []
    position = 0
    for match in PLACEHOLDER.finditer(text):
        parts.append(text[position : match.start()])
        value = lookup[match.group(1)]
        position = match.end()
        if isinstance(value, np.ndarray) and text.startswith("ᵀ", position):
            value, position = value.T, position + 1
        if isinstance(value, (int, float)):
            value = ("·" if parts[-1][-1:].isdigit() else "") + fmt(value)  # 2·k: 2·0.25, not 20.25
        parts.append(value)
    parts.append(text[position:])
    return [p for p in parts if not isinstance(p, str) or p]


class _Symbols(dict):
    """Placeholder → symbol: those given, else :data:`~chainrule.notation.SYMBOLS` (which may name
    other placeholders: ``f′`` is ``f′({in})``), else the name itself."""

    def __missing__(self, name: str) -> Sym:
        return Sym(PLACEHOLDER.sub(lambda m: self[m.group(1)].text, SYMBOLS.get(name, name)))


def show(eq: Eq, symbols: Lookup, numbers: Lookup, results: Lookup) -> Equation | None:
    """``eq`` with its symbols, then (with ``eq.values``) its last right-hand part with the numbers put
    in, then the array it computes. ``None`` when a number it needs was not recorded."""
    result = eq.computes()
    if result is not None and results.get(result) is None:
        return None
    symbols = _Symbols(symbols)
    parts = _fill(eq.text, symbols)
    if eq.values and eq.rhs:
        _, last = last_part(eq.rhs)
        names = PLACEHOLDER.findall(last)
        if names and all(numbers.get(n) is not None for n in names):
            parts += [" = ", *_fill(last, _Symbols({**symbols, **{n: numbers[n] for n in names}}))]
    if result is not None:
        value = results[result]
        parts += [" = ", fmt(value) if np.ndim(value) == 0 else value]
    return Equation(parts)


def _layer_lookups(r: LayerRecord, in_name: Sym, out_name: Sym) -> tuple[_Symbols, dict, dict]:
    """The symbols, numbers and results of one layer's formulas."""
    layer = r.layer
    settings = {k: v for k, v in layer.config().items() if isinstance(v, float)}
    symbols = _Symbols(
        {
            "in": in_name,
            "out": out_name,
            "δ": Sym("δ"),
            **{name: indexed(SYMBOLS.get(name, name), r.index) for name in r.params},
        }
    )
    numbers = {"in": r.input, "out": r.output, "δ": r.grad_output, **r.params, **r.details, **settings}
    results = {
        "out": r.output,
        "∂in": r.grad_input,
        **r.details,
        **{f"∂{name}": grad for name, grad in r.grads.items()},
    }
    return symbols, numbers, results


# -- building the document -------------------------------------------------------------------------
def build(explanation: Explanation) -> list:
    problem, step = explanation.problem, explanation.first
    loss = problem.loss
    doc: list = [Heading(1, problem.title)]
    n = problem.X.shape[0]
    optimizer = explanation.optimizer
    values = {
        "n": n,
        "layers": len(step.layers),
        "loss": loss.kind,
        "scale": loss.scale,
        "optimizer": problem.optimizer_name,
    }
    if optimizer is not None:
        summary = _(
            "One batch of n = {n} objects (rows), {layers} layers, loss {loss} ({scale}), optimizer {optimizer} "
            "with lr = {lr}."
        ).format(**values, lr=fmt(optimizer.config()["lr"]))
    else:
        summary = _(
            "One batch of n = {n} objects (rows), {layers} layers, loss {loss} ({scale}) (no parameters: forward "
            "and backward only)."
        ).format(**values)
    doc.append(Sentence(summary))
    doc.append(Equation(["X = ", problem.X, ",   y = ", problem.y]))

    doc.append(Heading(2, _("Forward pass")))
    names: list[Sym] = []
    lookups = []
    for r in step.layers:
        in_name = Sym("X") if r.index == 0 else names[-1]
        names.append(indexed(r.layer.symbol, r.index))
        lookups.append(_layer_lookups(r, in_name, names[-1]))
        doc.append(Heading(3, _layer_heading(r), anchor=f"layer-{r.index}"))
        doc.extend(filter(None, (show(eq, *lookups[-1]) for eq in r.layer.formulas().forward)))

    last = step.layers[-1]
    k = loss.factor(n)
    loss_symbols = _Symbols({"in": names[-1], "y": Sym("y"), "k": Sym("k")})
    loss_numbers = {"in": last.output, "y": loss.target, "k": k}
    doc.append(Heading(3, _("Loss: {kind}, scale {scale}").format(kind=loss.kind, scale=loss.scale)))
    doc.extend(
        filter(
            None,
            (show(eq, loss_symbols, loss_numbers, {"L": step.loss - step.penalty}) for eq in loss.formulas().forward),
        )
    )
    doc.append(Equation([f"k = {SCALE_FORMULAS[loss.scale]} = {fmt(k)}"]))
    if problem.l2:
        doc.append(
            Equation(
                [f"L + λ/2·Σ‖W‖² = {fmt(step.loss - step.penalty)} + {fmt(problem.l2)}/2·Σ‖W‖² = {fmt(step.loss)}"]
            )
        )

    doc.append(Heading(2, _("Backward pass")))
    doc.append(Heading(3, _("Loss gradient")))
    doc.extend(_why(derivations(explanation)["loss"]))
    doc.extend(
        filter(None, (show(eq, loss_symbols, loss_numbers, {"∂in": step.loss_grad}) for eq in loss.formulas().backward))
    )
    if loss.after is None and loss.scale == loss.delta_scale:
        doc.append(Sentence(_delta_sentence()))
    for r in reversed(step.layers):
        symbols, numbers, results = lookups[r.index]
        doc.append(Heading(3, _layer_heading(r)))
        doc.extend(_why(topic_of("layer", r.layer.kind)))
        doc.append(show(Eq("{δ} = ∂L/∂{out}", result="δ", values=False), symbols, numbers, {"δ": r.grad_output}))
        for eq in r.layer.formulas().backward:
            block = show(eq, symbols, numbers, results)
            if block is not None:
                doc.append(block)
            name = (eq.computes() or "")[1:]
            if problem.l2 and name in r.params and r.layer.params[name].decay:
                doc.append(
                    show(
                        Eq("∂L/∂{θ} + λ·{θ}", result="total"),
                        {**symbols, "θ": symbols[name]},
                        {},
                        {"total": step.grads[r.index][name]},
                    )
                )
        if r is last and loss.after == r.layer.kind:
            doc.extend(_paired(loss, symbols, numbers, results))

    if optimizer is not None:
        doc.append(
            Heading(2, _("Update: {optimizer}, lr = {lr}").format(optimizer=problem.optimizer_name, lr=fmt(step.lr)))
        )
        doc.extend(_why(derivations(explanation)["optimizer"]))
        doc.extend(_update(explanation, step, lookups))

    doc.append(Heading(2, _("Loss")))
    doc.extend(_history(explanation))
    return doc


def _delta_sentence() -> str:
    return _(
        "At this scale this is (Ŷ − Y)/n: the δ that enters the last linear layer for each of the three output "
        "pairs, MSE (1/(2n)) after an identity, cross-entropy after a softmax and binary cross-entropy after a "
        "sigmoid (1/n)."
    )


def _why(topic: str | None) -> list:
    """The sentence that names the derivation behind the formulas that follow."""
    return [Sentence(_("Why: chainrule derive {topic}").format(topic=topic))] if topic else []


def _layer_heading(r: LayerRecord) -> str:
    """``Layer 1: leaky_relu (α = 0.2)``: the kind, and the settings that its formulas use."""
    formulas = r.layer.formulas()
    used = {name for eq in (*formulas.forward, *formulas.backward) for name in PLACEHOLDER.findall(eq.text)}
    settings = ", ".join(f"{SYMBOLS.get(k, k)} = {fmt(v)}" for k, v in r.layer.config().items() if k in used)
    if settings:
        return _("Layer {index}: {kind} ({settings})").format(index=r.index, kind=r.layer.kind, settings=settings)
    return _("Layer {index}: {kind}").format(index=r.index, kind=r.layer.kind)


def _paired(loss, symbols, numbers, results) -> list:
    """A loss on probabilities after its activation: the two backward factors simplify to ``k·(a − y)``,
    and the numbers of the backward pass just shown are those of that formula."""
    names = {"activation": loss.after, "loss": loss.kind, "fused": loss.fused}
    if loss.scale == loss.delta_scale:
        text = _(
            "{activation}, then {loss}: the two factors simplify to k·(a − y), which the fused {fused} computes "
            "directly from the logits; at this scale it is (Ŷ − Y)/n."
        )
    else:
        text = _(
            "{activation}, then {loss}: the two factors simplify to k·(a − y), which the fused {fused} computes "
            "directly from the logits."
        )
    blocks: list = [Sentence(text.format(**names))]
    eq = Eq("∂L/∂{in} = {k}·({out} − {y})")
    blocks.append(
        show(
            eq,
            {**symbols, "k": Sym("k"), "y": Sym("y")},
            {**numbers, "k": loss.factor(len(loss.target)), "y": loss.target},
            results,
        )
    )
    return blocks


def _update(explanation: Explanation, step: StepRecord, lookups) -> list:
    optimizer = explanation.optimizer
    rules = optimizer.formulas()
    used = {name for eq in rules for name in PLACEHOLDER.findall(eq.text)}
    settings = {k: v for k, v in optimizer.config().items() if k in used and k != "lr"}
    symbols = _Symbols()
    blocks: list = [Equation(_fill(eq.text, symbols)) for eq in rules]
    if settings:
        blocks.append(Sentence(", ".join(f"{SYMBOLS.get(k, k)} = {fmt(v)}" for k, v in settings.items())))
    plain = len(rules) == 1  # θ ← θ − lr·g: shown with the numbers put in
    for r in step.layers:
        layer_symbols = lookups[r.index][0]
        for name, before in r.params.items():
            theta = layer_symbols[name]
            grad, after = step.grads[r.index][name], step.params_after[r.index][name]
            state = step.optimizer_state[r.index][name]
            row = (lambda a: a[None, :]) if before.ndim == 1 else (lambda a: a)
            if plain and not state:
                blocks.append(
                    show(
                        rules[0],
                        {**symbols, "θ": theta, "g": Sym(f"∂L/∂{theta.text}")},
                        {"θ": row(before), "g": row(grad), "lr": step.lr},
                        {"θ": row(after)},
                    )
                )
                continue
            for key, array in state.items():  # the optimizer's state for this parameter, after the step
                blocks.append(Equation([f"{optimizer.state_symbols.get(key, key)}(", theta, ") = ", row(array)]))
            blocks.append(Equation([theta, " : ", row(before), " → ", row(after)]))
    return blocks


def _history(explanation: Explanation) -> list:
    history = explanation.history
    if explanation.optimizer is None:
        return [Sentence(_("L = {loss} (nothing to update).").format(loss=fmt(history[0])))]
    if len(history) == 1:
        return [
            Sentence(
                _("Loss before the step: {before}; after it: {after}.").format(
                    before=fmt(history[0]), after=fmt(explanation.final_loss)
                )
            )
        ]
    count = len(history)
    shown = (
        range(count)
        if count <= 12
        else [*range(5), *np.linspace(5, count - 6, 4).astype(int)[1:-1], *range(count - 5, count)]
    )
    steps = ngettext(
        "{n} step on the same batch. The first step is shown above in full.",
        "{n} steps on the same batch. The first step is shown above in full.",
        count,
    )
    blocks: list = [Sentence(steps.format(n=count))]
    line = _("step {step:>6}: loss before {loss}")
    blocks += [Sentence(line.format(step=i + 1, loss=fmt(history[i]))) for i in sorted(set(shown))]
    blocks.append(Sentence(_("final loss {loss}").format(loss=fmt(explanation.final_loss))))
    return blocks


# -- numbers ----------------------------------------------------------------------------------------
_precision: ContextVar[int] = ContextVar("precision", default=4)


@contextmanager
def decimals(count: int) -> Iterator[None]:
    """Numbers shown with ``count`` decimals by :func:`fmt` while the context is active."""
    token = _precision.set(count)
    try:
        yield
    finally:
        _precision.reset(token)


def fmt(x: float, precision: int | None = None) -> str:
    """A number rounded for reading: integers without a point, at most ``precision`` decimals (by
    default the one :func:`render` was given), tiny or huge numbers in scientific notation."""
    p = _precision.get() if precision is None else precision
    x = float(x)
    if not np.isfinite(x):
        return str(x)
    if abs(x) < 1e-12:  # rounding noise of float64 arithmetic (e.g. 1 − 1 + tiny) reads as zero
        return "0"
    if x == int(x) and abs(x) < 1e15:
        return str(int(x))
    if abs(x) < 10 ** (-p) or abs(x) >= 1e7:
        return f"{x:.{max(p - 1, 1)}e}"
    text = f"{x:.{p}f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def shown(count: int) -> list[int | None]:
    """The rows (or columns) of a matrix that are shown: all, or the first three and last two around a
    gap (``None``)."""
    return list(range(count)) if count <= MAX_SHOWN else [*range(3), None, *range(count - 2, count)]


def _cells(matrix: NDArray) -> list[list[str]]:
    rows, cols = matrix.shape
    return [["⋮" if i is None else ("…" if j is None else fmt(matrix[i, j])) for j in shown(cols)] for i in shown(rows)]


def _as_matrix(array) -> NDArray:
    array = np.asarray(array, dtype=np.float64)
    return array.reshape(1, -1) if array.ndim <= 1 else array.reshape(array.shape[0], -1)


# -- text --------------------------------------------------------------------------------------------
def _text_matrix(array) -> list[str]:
    matrix = _as_matrix(array)
    cells = _cells(matrix)
    widths = [max(display_width(row[j]) for row in cells) for j in range(len(cells[0]))]
    lines = ["  ".join(" " * (w - display_width(c)) + c for c, w in zip(row, widths, strict=True)) for row in cells]
    label = "ₓ".join(str(s).translate(_SUB) for s in matrix.shape)
    if len(lines) == 1:
        return [f"[{lines[0]}]{label}"]
    out = []
    for k, line in enumerate(lines):
        left, right = ("⎡", "⎤") if k == 0 else ("⎣", "⎦") if k == len(lines) - 1 else ("⎢", "⎥")
        out.append(f"{left}{line}{right}" + (label if k == len(lines) - 1 else " " * len(label)))
    return out


def _text_equation(eq: Equation) -> list[str]:
    """The parts side by side; one-line parts sit on the middle line, matrices are centred. A matrix is
    set off by a space from an operator beside it (``A · B``), not from a bracket (``max(0, A)``)."""
    pieces = []
    for k, part in enumerate(eq.parts):
        if isinstance(part, np.ndarray):
            pieces.append(_text_matrix(part))
            continue
        text = part.text if isinstance(part, Sym) else part
        if k > 0 and isinstance(eq.parts[k - 1], np.ndarray) and text[:1] not in " )],":
            text = " " + text
        if k + 1 < len(eq.parts) and isinstance(eq.parts[k + 1], np.ndarray) and text[-1:] not in " ([":
            text = text + " "
        pieces.append([text])
    height = max(len(p) for p in pieces)
    lines = [""] * height
    for piece in pieces:
        width = max(display_width(s) for s in piece)
        top = (height - 1) // 2 if len(piece) == 1 else (height - len(piece)) // 2
        for k in range(height):
            j = k - top
            text = piece[j] if 0 <= j < len(piece) else ""
            lines[k] += text + " " * (width - display_width(text))
    return [line.rstrip() for line in lines]


def to_text(doc: list) -> str:
    out: list[str] = []
    for block in doc:
        if isinstance(block, Heading):
            if out:
                out.append("")
            out.append(block.text if block.level != 2 else f"== {block.text} ==")
            if block.level == 1:
                out.append("=" * display_width(block.text))
        elif isinstance(block, Sentence):
            out.append(block.text)
        else:
            out.extend("  " + line for line in _text_equation(block))
    return "\n".join(out) + "\n"


# -- LaTeX and Markdown -------------------------------------------------------------------------------
def _tex_matrix(array) -> str:
    matrix = _as_matrix(array)
    body = r" \\ ".join(" & ".join(to_latex(c) for c in row) for row in _cells(matrix))
    rows, cols = matrix.shape
    return rf"\underset{{{rows}\times{cols}}}{{\begin{{pmatrix}} {body} \end{{pmatrix}}}}"


def _tex_equation(eq: Equation) -> str:
    """The equation's maths text converted as a whole (so that a root or a bracket may hold a matrix),
    with each symbol and matrix standing in as an opaque character until it is written itself."""
    held, text = [], []
    for part in eq.parts:
        if isinstance(part, str):
            text.append(part)
        else:
            text.append(sentinel(len(held)))
            held.append(part.latex() if isinstance(part, Sym) else _tex_matrix(part))
    return "".join(held[ord(c) - ord(sentinel(0))] if is_sentinel(c) else c for c in to_latex("".join(text)))


def to_markdown(doc: list) -> str:
    out: list[str] = []
    for block in doc:
        if isinstance(block, Heading):
            out += ["#" * block.level + " " + block.text, ""]
        elif isinstance(block, Sentence):
            out += [block.text, ""]
        else:
            out += ["$$", _tex_equation(block), "$$", ""]
    return "\n".join(out)


def to_latex_document(doc: list) -> str:
    out = document_head(r"\usepackage[margin=2cm,landscape]{geometry}", r"\allowdisplaybreaks")
    for block in doc:
        if isinstance(block, Heading):
            command = {1: "section*", 2: "subsection*", 3: "subsubsection*"}[block.level]
            out.append(rf"\{command}{{{text_to_latex(block.text)}}}")
        elif isinstance(block, Sentence):
            out.append(text_to_latex(block.text) + "\n")
        else:
            out.append(r"\[" + _tex_equation(block) + r"\]")
    out.append(r"\end{document}")
    return "\n".join(out) + "\n"


def render(explanation: Explanation, format: str = "text", precision: int = 4, lang: str | None = None) -> str:
    """The explanation in ``format`` (``text``, ``markdown``, ``latex``, ``json`` or ``html``, a
    self-contained page) and in ``lang`` (``en``, ``ru`` or ``zh``; by default the language in effect, see
    :mod:`chainrule.i18n`); numbers are rounded to ``precision`` decimals except in JSON, which has them in
    full. A Chinese LaTeX document is compiled with XeLaTeX (its first line says so)."""
    if format == "json":
        return json.dumps(to_json(explanation), indent=2) + "\n"
    with language(lang), decimals(precision):
        doc = build(explanation)
        if format == "html":
            from chainrule.explain.page import to_html

            return to_html(explanation, doc)
        return {"text": to_text, "markdown": to_markdown, "latex": to_latex_document}[format](doc)


def example_pages(problems: Iterable[str | Path]) -> dict[str, str]:
    """Each problem file explained in Markdown in every language: ``NAME.md`` (English), ``NAME.ru.md``,
    ``NAME.zh.md`` — the pages of docs/examples."""
    from chainrule.explain.explanation import run_problem
    from chainrule.explain.problem import load_problem
    from chainrule.i18n import LANGUAGES

    pages = {}
    for problem in problems:
        path = Path(problem)
        explanation = run_problem(load_problem(path))
        for lang in LANGUAGES:
            suffix = "" if lang == "en" else f".{lang}"
            pages[f"{path.stem}{suffix}.md"] = render(explanation, "markdown", lang=lang)
    return pages


if __name__ == "__main__":  # pragma: no cover - writes docs/examples: python -m chainrule.explain.render DIR FILE...
    import sys

    folder = Path(sys.argv[1])
    for name, text in example_pages(sys.argv[2:]).items():
        (folder / name).write_text(text, encoding="utf-8")
