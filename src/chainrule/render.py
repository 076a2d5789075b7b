"""Render an :class:`~chainrule.explain.Explanation` as text, Markdown (LaTeX maths) or a LaTeX document.

The content is built once, as a list of blocks (headings, sentences and equations whose parts are
symbols or matrices), and each format only decides how a block looks. The numbers come from the trace:
the renderer substitutes and lays out, it does not compute the network again.
"""

from __future__ import annotations

import json
import unicodedata
from contextvars import ContextVar
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from chainrule.activations import Activation, Softmax
from chainrule.explain import Explanation, StepRecord, to_json
from chainrule.layers import BatchNorm1d, Linear
from chainrule.losses import SCALE_FORMULAS
from chainrule.trace import LayerRecord

FORMATS = ("text", "markdown", "latex", "json")
MAX_SHOWN = 8  # rows or columns of a matrix shown in full; larger ones are elided in the middle


# -- the document model ---------------------------------------------------------------------------
@dataclass
class Sym:
    """A piece of formula, written for the terminal (``text``) and for LaTeX (``latex``)."""

    text: str
    latex: str | None = None

    def tex(self) -> str:
        return self.text if self.latex is None else self.latex


@dataclass
class Heading:
    level: int
    text: str


@dataclass
class Sentence:
    text: str


@dataclass
class Equation:
    parts: list  # Sym | NDArray


def S(text: str, latex: str | None = None) -> Sym:
    return Sym(text, latex)


_SUB = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")


def name_of(letter: str, index: int) -> Sym:
    return S(f"{letter}{str(index).translate(_SUB)}", f"{letter}_{{{index}}}")


# -- building the document -------------------------------------------------------------------------
def build(explanation: Explanation) -> list:
    problem, step = explanation.problem, explanation.first
    doc: list = [Heading(1, problem.title)]
    n = problem.X.shape[0]
    training = (f", optimizer {problem.optimizer_name} with lr = {fmt(problem.optimizer_settings['lr'])}"
                if step.grads else " (no parameters: forward and backward only)")
    doc.append(Sentence(f"One batch of n = {n} objects (rows), {len(step.layers)} layers, loss "
                        f"{problem.loss_type} ({problem.loss.scale}){training}."))
    doc.append(Equation([S("X = "), problem.X, S(",   y = "), problem.y]))

    doc.append(Heading(2, "Forward pass"))
    names = []
    for record, kind in zip(step.layers, problem.layer_types, strict=True):
        in_name = S("X") if record.index == 0 else names[-1]
        out_name = name_of({"linear": "Z", "batchnorm": "N"}.get(kind, "A"), record.index)
        names.append(out_name)
        doc.append(Heading(3, f"Layer {record.index}: {kind}"))
        doc.extend(_forward(record, in_name, out_name))

    doc.append(Heading(3, f"Loss: {problem.loss_type}, scale {problem.loss.scale}"))
    doc.extend(_loss(explanation, step, names[-1]))

    doc.append(Heading(2, "Backward pass"))
    doc.extend(_loss_gradient(explanation, step, names[-1]))
    for record, kind in zip(reversed(step.layers), reversed(problem.layer_types), strict=True):
        in_name = S("X") if record.index == 0 else names[record.index - 1]
        doc.append(Heading(3, f"Layer {record.index}: {kind}"))
        doc.extend(_backward(explanation, step, record, in_name, names[record.index]))

    if step.grads:  # a network with parameters to update
        doc.append(Heading(2, f"Update: {problem.optimizer_name}, lr = {fmt(step.lr)}"))
        doc.extend(_update(explanation, step))

    doc.append(Heading(2, "Loss"))
    doc.extend(_history(explanation))
    return doc


def _forward(r: LayerRecord, x: Sym, out: Sym) -> list:
    layer = r.layer
    if isinstance(layer, Linear):
        has_b = "b" in r.params
        W, b = _param_name("W", r.index), _param_name("b", r.index)
        formula = f"{x.text}·{W.text}" + (f" + {b.text}" if has_b else "")
        latex = f"{x.tex()} {W.tex()}" + (f" + {b.tex()}" if has_b else "")
        parts = [out, S(f" = {formula} = ", f" = {latex} = "), r.input, S(" · ", r" \cdot "), r.params["W"]]
        if has_b:
            parts += [S(" + "), r.params["b"][None, :]]
        return [Equation(parts + [S(" = "), r.output])]
    if isinstance(layer, BatchNorm1d):
        d = r.details
        return [
            Sentence("Training mode: the statistics of this batch, per feature (column)."),
            Equation([S("μ = mean over rows = ", r"\mu = \tfrac1n\textstyle\sum_i x_i = "), d["mean"][None, :],
                      S(",   σ² = mean((x − μ)²) = ", r",\quad \sigma^2 = \tfrac1n\textstyle\sum_i (x_i-\mu)^2 = "),
                      d["var"][None, :]]),
            Equation([S("x̂ = (x − μ)/√(σ² + ε) = ", r"\hat x = \frac{x-\mu}{\sqrt{\sigma^2+\epsilon}} = "),
                      d["x_hat"]]),
            Equation([out, S(" = γ ⊙ x̂ + β = ", r" = \gamma \odot \hat x + \beta = "), r.params["gamma"][None, :],
                      S(" ⊙ x̂ + ", r" \odot \hat x + "), r.params["beta"][None, :], S(" = "), r.output]),
        ]
    text, tex = _FUNCTIONS[type(layer).__name__]
    (text_open, text_close), (tex_open, tex_close) = text.split("{}"), tex.split("{}")
    return [Equation([out, S(f" = {text.replace('{}', x.text)} = {text_open}", f" = {tex.replace('{}', x.tex())} = {tex_open}"),
                      r.input, S(text_close, tex_close), S(" = "), r.output])]


#: Each activation as a template of its argument, for the terminal and for LaTeX.
_FUNCTIONS = {
    "ReLU": ("max(0, {})", r"\max\left(0, {}\right)"),
    "Sigmoid": ("σ({})", r"\sigma\left({}\right)"),
    "Tanh": ("tanh({})", r"\tanh\left({}\right)"),
    "LeakyReLU": ("LeakyReLU({})", r"\mathrm{LeakyReLU}\left({}\right)"),
    "Identity": ("id({})", r"\mathrm{id}\left({}\right)"),
    "Softmax": ("softmax({})", r"\mathrm{softmax}\left({}\right)"),
}

_LOSS_FORMULAS = {
    "mse": ("k·Σ(ŷ − y)²", r"k\sum(\hat y - y)^2"),
    "bce": ("−k·Σ[y·ln p + (1 − y)·ln(1 − p)]", r"-k\sum\left[y\ln p + (1-y)\ln(1-p)\right]"),
    "bce_with_logits": ("k·Σ[max(z, 0) − z·y + ln(1 + e^(−|z|))]", r"k\sum\left[\max(z,0) - zy + \ln(1+e^{-|z|})\right]"),
    "cross_entropy": ("−k·Σ y·ln ŷ", r"-k\sum y\ln\hat y"),
    "softmax_cross_entropy": ("−k·Σ y·(z − max z − ln Σ e^(z − max z))",
                              r"-k\sum y\left(z - \max z - \ln\textstyle\sum e^{z-\max z}\right)"),
}
_GRAD_FORMULAS = {
    "mse": ("2k·(ŷ − y)", r"2k(\hat y - y)"),
    "bce": ("k·(p − y)/(p(1 − p))", r"k\frac{p-y}{p(1-p)}"),
    "bce_with_logits": ("k·(σ(z) − y)", r"k(\sigma(z) - y)"),
    "cross_entropy": ("−k·y/ŷ", r"-k\frac{y}{\hat y}"),
    "softmax_cross_entropy": ("k·(softmax(z) − y)", r"k(\mathrm{softmax}(z) - y)"),
}


def _scale_text(explanation: Explanation) -> tuple[str, str]:
    loss = explanation.problem.loss
    k = fmt(loss.factor(explanation.problem.X.shape[0]))
    text, tex = SCALE_FORMULAS[loss.scale]
    return f"k = {text} = {k}", f"k = {tex} = {k}"


def _targets(explanation: Explanation) -> NDArray:
    return explanation.problem.loss.target  # the loss's own reading of y (class indices → one-hot)


def _loss(explanation: Explanation, step: StepRecord, out: Sym) -> list:
    problem = explanation.problem
    formula = _LOSS_FORMULAS[problem.loss_type]
    k_text, k_tex = _scale_text(explanation)
    blocks = [Equation([S(f"L = {formula[0]},   {k_text}", f"L = {formula[1]},\\quad {k_tex}")])]
    value = step.loss - step.penalty
    blocks.append(Equation([S(f"L({out.text} = ", f"L\\left({out.tex()} = "), step.layers[-1].output,
                            S(", y = ", ",\\ y = "), _targets(explanation), S(") = ", r"\right) = "),
                            S(fmt(value))]))
    if problem.l2:
        blocks.append(Equation([S(f"+ λ/2·Σ‖W‖² = {fmt(problem.l2)}/2·Σ‖W‖² = {fmt(step.penalty)},   "
                                  f"total L = {fmt(step.loss)}",
                                  rf"+ \frac{{\lambda}}2\sum\|W\|^2 = \frac{{{fmt(problem.l2)}}}2\sum\|W\|^2"
                                  rf" = {fmt(step.penalty)},\quad L = {fmt(step.loss)}")]))
    return blocks


def _loss_gradient(explanation: Explanation, step: StepRecord, out: Sym) -> list:
    problem = explanation.problem
    formula = _GRAD_FORMULAS[problem.loss_type]
    blocks = [Heading(3, "Loss gradient"),
              Equation([S(f"∂L/∂{out.text} = {formula[0]} = ", f"\\frac{{\\partial L}}{{\\partial {out.tex()}}} = {formula[1]} = "),
                        step.loss_grad])]
    # the pairs of seed 001 whose gradient is (Ŷ − Y)/m, at the scale that makes it so
    pair, scale = _FUSED.get(problem.loss_type, (None, None))
    if pair and problem.loss.scale == scale:
        blocks.append(Sentence(f"{pair}: this is (Ŷ − Y)/m, the δ of seed 001."))
    return blocks


_FUSED = {"softmax_cross_entropy": ("softmax and cross-entropy fused", "mean"),
          "bce_with_logits": ("sigmoid and BCE fused", "mean"),
          "mse": ("MSE with 1/(2n) after a linear output", "half_mean")}


def _backward(explanation: Explanation, step: StepRecord, r: LayerRecord, x: Sym, out: Sym) -> list:
    layer, problem = r.layer, explanation.problem
    d_out = S(f"δ = ∂L/∂{out.text} = ", f"\\delta = \\frac{{\\partial L}}{{\\partial {out.tex()}}} = ")
    blocks: list = [Equation([d_out, r.grad_output])]
    if isinstance(layer, Linear):
        xT = r.input.T
        W, b = _param_name("W", r.index), _param_name("b", r.index)
        grad_W = [S(f"∂L/∂{W.text} = {x.text}ᵀ·δ = ", f"\\frac{{\\partial L}}{{\\partial {W.tex()}}} = {x.tex()}^\\top \\delta = "),
                  xT, S(" · ", r" \cdot "), r.grad_output, S(" = "), r.grads["W"]]
        if problem.l2:
            grad_W += [S(" ;  + λW = ", r";\quad + \lambda W = "), step.grads[r.index]["W"]]
        blocks.append(Equation(grad_W))
        if "b" in r.params:
            blocks.append(Equation([S(f"∂L/∂{b.text} = Σ_rows δ = ", f"\\frac{{\\partial L}}{{\\partial {b.tex()}}} = \\textstyle\\sum_{{rows}}\\delta = "),
                                    r.grads["b"][None, :]]))
        blocks.append(Equation([S(f"∂L/∂{x.text} = δ·{W.text}ᵀ = ", f"\\frac{{\\partial L}}{{\\partial {x.tex()}}} = \\delta {W.tex()}^\\top = "),
                                r.grad_output, S(" · ", r" \cdot "), r.params["W"].T, S(" = "), r.grad_input]))
    elif isinstance(layer, Softmax):
        blocks.append(Equation([S(f"∂L/∂{x.text} = s ⊙ (δ − Σ_row(δ ⊙ s)) with s = ",
                                  f"\\frac{{\\partial L}}{{\\partial {x.tex()}}} = s \\odot \\left(\\delta - \\textstyle\\sum_{{row}} \\delta\\odot s\\right),\\ s = "),
                                r.output, S(" : "), r.grad_input]))
        if problem.loss_type == "cross_entropy" and r.index == len(step.layers) - 1:
            blocks.extend(_fused_note(explanation, step, r, "softmax + cross-entropy"))
    elif isinstance(layer, BatchNorm1d):
        blocks.append(Equation([S("∂L/∂γ = Σ_rows δ ⊙ x̂ = ", r"\frac{\partial L}{\partial\gamma} = \textstyle\sum_{rows}\delta\odot\hat x = "),
                                r.grads["gamma"][None, :], S(",   ∂L/∂β = Σ_rows δ = ", r",\quad \frac{\partial L}{\partial\beta} = \textstyle\sum_{rows}\delta = "),
                                r.grads["beta"][None, :]]))
        blocks.append(Equation([S(f"∂L/∂{x.text} = (1/(n·√(σ²+ε)))·(n·ĝ − Σ ĝ − x̂ ⊙ Σ ĝ⊙x̂),  ĝ = δ ⊙ γ  = ",
                                  f"\\frac{{\\partial L}}{{\\partial {x.tex()}}} = \\frac{{1}}{{n\\sqrt{{\\sigma^2+\\epsilon}}}}"
                                  r"\left(n\hat g - \textstyle\sum\hat g - \hat x\odot\sum\hat g\odot\hat x\right),\ \hat g = \delta\odot\gamma = "),
                                r.grad_input]))
    elif isinstance(layer, Activation):
        derivative = layer.derivative_formula
        blocks.append(Equation([S(f"local derivative f'({x.text}) = {derivative} = ",
                                  f"f'({x.tex()}) = {_tex_derivative(derivative)} = "), r.local_derivative]))
        blocks.append(Equation([S(f"∂L/∂{x.text} = δ ⊙ f'({x.text}) = ", f"\\frac{{\\partial L}}{{\\partial {x.tex()}}} = \\delta \\odot f'({x.tex()}) = "),
                                r.grad_output, S(" ⊙ ", r" \odot "), r.local_derivative, S(" = "), r.grad_input]))
        if problem.loss_type == "bce" and type(layer).__name__ == "Sigmoid" and r.index == len(step.layers) - 1:
            blocks.extend(_fused_note(explanation, step, r, "sigmoid + BCE"))
    return blocks


def _fused_note(explanation: Explanation, step: StepRecord, r: LayerRecord, pair: str) -> list:
    """The simplification of seed 001: both factors together are ``k·(a − y)``, ``(Ŷ − Y)/m`` for the mean."""
    k = explanation.problem.loss.factor(r.output.shape[0])
    return [
        Sentence(f"{pair}: the two factors simplify to k·(a − y), which is (Ŷ − Y)/m for the mean — the same numbers:"),
        Equation([S(f"k·(a − y) = {fmt(k)} · (", f"k(a - y) = {fmt(k)}\\left("), r.output, S(" − ", " - "),
                  _targets(explanation), S(") = ", r"\right) = "), k * (r.output - _targets(explanation))]),
    ]


def _tex_derivative(text: str) -> str:
    return (text.replace("σ", r"\sigma").replace("−", "-").replace("²", "^2").replace("≤", r"\le ")
            .replace("·", r"\cdot ").replace("tanh", r"\tanh"))


def _update(explanation: Explanation, step: StepRecord) -> list:
    problem = explanation.problem
    blocks: list = []
    settings = problem.optimizer_settings
    if settings.get("weight_decay"):
        blocks.append(Sentence(f"weight_decay = {fmt(settings['weight_decay'])}: g = ∂L/∂θ + wd·θ."))
    if problem.optimizer_name == "momentum":
        blocks.append(Sentence(f"Momentum μ = {fmt(settings['momentum'])}: v ← μ·v + g (v = g at the first step), "
                               + ("θ ← θ − lr·(g + μ·v) (Nesterov)." if settings["nesterov"] else "θ ← θ − lr·v.")))
    if problem.optimizer_name == "adam":
        blocks.append(Sentence(f"Adam β₁ = {fmt(settings['beta1'])}, β₂ = {fmt(settings['beta2'])}, "
                               f"ε = {fmt(settings['eps'])}: m ← β₁m + (1 − β₁)g, v ← β₂v + (1 − β₂)g², "
                               f"θ ← θ − lr·m̂/(√v̂ + ε) with m̂ = m/(1 − β₁ᵗ), v̂ = v/(1 − β₂ᵗ)."))
    for record in step.layers:
        for name, before in record.params.items():
            theta = _param_name(name, record.index)
            grad, after = step.grads[record.index][name], step.params_after[record.index][name]
            state = step.optimizer_state[record.index][name]
            as_row = (lambda a: a[None, :]) if before.ndim == 1 else (lambda a: a)
            if problem.optimizer_name == "sgd" and not settings.get("weight_decay"):
                blocks.append(Equation([theta, S(f" ← {theta.text} − lr·∂L/∂{theta.text} = ",
                                                 f" \\leftarrow {theta.tex()} - \\mathrm{{lr}}\\,\\frac{{\\partial L}}{{\\partial {theta.tex()}}} = "),
                                        as_row(before), S(f" − {fmt(step.lr)} · ", f" - {fmt(step.lr)} \\cdot "),
                                        as_row(grad), S(" = "), as_row(after)]))
                continue
            for key, array in state.items():  # the optimizer's state for this parameter, after the step
                blocks.append(Equation([S(f"{key}({theta.text}) = ", f"{key}({theta.tex()}) = "), as_row(array)]))
            blocks.append(Equation([theta, S(" : ", r": "), as_row(before), S(" → ", r" \to "), as_row(after)]))
    return blocks


def _param_name(name: str, index: int) -> Sym:
    tex = name if len(name) == 1 else "\\" + name  # W, b; \gamma, \beta
    return S(f"{name}{str(index).translate(_SUB)}", f"{tex}_{{{index}}}")


def _history(explanation: Explanation) -> list:
    history = explanation.history
    blocks: list = []
    if not explanation.first.grads:
        return [Sentence(f"L = {fmt(history[0])} (nothing to update).")]
    if len(history) == 1:
        blocks.append(Sentence(f"Loss before the step: {fmt(history[0])}; after it: {fmt(explanation.final_loss)}."))
        return blocks
    shown = list(range(len(history))) if len(history) <= 12 else [*range(5), *np.linspace(5, len(history) - 6, 4).astype(int)[1:-1], *range(len(history) - 5, len(history))]
    lines = [f"step {i + 1:>6}: loss before {fmt(history[i])}" for i in sorted(set(shown))]
    blocks.append(Sentence(f"{len(history)} steps on the same batch. " + ("The first step is shown above in full." if len(history) > 1 else "")))
    for line in lines:
        blocks.append(Sentence(line))
    blocks.append(Sentence(f"final loss {fmt(explanation.final_loss)}"))
    return blocks


# -- numbers ----------------------------------------------------------------------------------------
_precision: ContextVar[int] = ContextVar("precision", default=4)


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


def _cells(matrix: NDArray) -> list[list[str]]:
    rows, cols = matrix.shape
    row_ids = list(range(rows)) if rows <= MAX_SHOWN else [*range(3), None, *range(rows - 2, rows)]
    col_ids = list(range(cols)) if cols <= MAX_SHOWN else [*range(3), None, *range(cols - 2, cols)]
    return [["⋮" if i is None else ("…" if j is None else fmt(matrix[i, j])) for j in col_ids] for i in row_ids]


def _as_matrix(array) -> NDArray:
    array = np.asarray(array, dtype=np.float64)
    return array.reshape(1, -1) if array.ndim <= 1 else array.reshape(array.shape[0], -1)


def _shape_label(array) -> str:
    return "×".join(str(s) for s in _as_matrix(array).shape)


# -- text --------------------------------------------------------------------------------------------
def _text_matrix(array) -> list[str]:
    matrix = _as_matrix(array)
    cells = _cells(matrix)
    widths = [max(len(row[j]) for row in cells) for j in range(len(cells[0]))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells]
    label = _shape_label(matrix).translate(_SUB).replace("×", "ₓ")
    if len(lines) == 1:
        return [f"[{lines[0]}]{label}"]
    out = []
    for k, line in enumerate(lines):
        left, right = ("⎡", "⎤") if k == 0 else ("⎣", "⎦") if k == len(lines) - 1 else ("⎢", "⎥")
        out.append(f"{left}{line}{right}" + (label if k == len(lines) - 1 else " " * len(label)))
    return out


def _text_equation(eq: Equation) -> list[str]:
    """The parts side by side; one-line symbols sit on the middle line, matrices are centred."""
    pieces = [_text_matrix(p) if isinstance(p, np.ndarray) else [p.text] for p in eq.parts]
    height = max(len(p) for p in pieces)
    lines = [""] * height
    for piece in pieces:
        width = max(_columns(s) for s in piece)
        top = (height - 1) // 2 if len(piece) == 1 else (height - len(piece)) // 2
        for k in range(height):
            j = k - top
            text = piece[j] if 0 <= j < len(piece) else ""
            lines[k] += text + " " * (width - _columns(text))
    return [line.rstrip() for line in lines]


def _columns(text: str) -> int:
    """Terminal columns of ``text``: a combining mark (the hat of x̂) takes none."""
    return sum(not unicodedata.combining(c) for c in text)


def to_text(doc: list) -> str:
    out: list[str] = []
    for block in doc:
        if isinstance(block, Heading):
            if out:
                out.append("")
            out.append(block.text if block.level != 2 else f"== {block.text} ==")
            if block.level == 1:
                out.append("=" * len(block.text))
        elif isinstance(block, Sentence):
            out.append(block.text)
        else:
            out.extend("  " + line for line in _text_equation(block))
    return "\n".join(out) + "\n"


# -- LaTeX and Markdown -------------------------------------------------------------------------------
def _tex_matrix(array) -> str:
    matrix = _as_matrix(array)
    body = r" \\ ".join(" & ".join(c.replace("⋮", r"\vdots").replace("…", r"\cdots") for c in row)
                        for row in _cells(matrix))
    rows, cols = matrix.shape
    return rf"\underset{{{rows}\times{cols}}}{{\begin{{pmatrix}} {body} \end{{pmatrix}}}}"


def _tex_equation(eq: Equation) -> str:
    return "".join(_tex_matrix(p) if isinstance(p, np.ndarray) else _tex_text(p.tex()) for p in eq.parts)


#: The Unicode of the terminal formulas, as LaTeX maths.
_UNICODE_TEX = {
    "−": "-", "·": r"\cdot ", "⊙": r"\odot ", "←": r"\leftarrow ", "→": r"\to ", "≤": r"\le ",
    "λ": r"\lambda ", "Σ": r"\sum ", "‖": r"\|", "²": "^2", "σ": r"\sigma ", "μ": r"\mu ",
    "γ": r"\gamma ", "β": r"\beta ", "ε": r"\epsilon ", "δ": r"\delta ", "θ": r"\theta ", "√": r"\surd ",
    "ᵗ": "^t", "ᵀ": r"^\top ", "∂": r"\partial ", "Ŷ": r"\hat Y", "ŷ": r"\hat y", "ĝ": r"\hat g",
    **{digit: f"_{i}" for i, digit in enumerate("₀₁₂₃₄₅₆₇₈₉")},
}
_HAT = "\u0302"  # combining circumflex: x̂, m̂, v̂


def _symbols(text: str):
    """``(character, its LaTeX or None)`` for each character of ``text``; a letter with a combining
    circumflex (x̂) is one symbol."""
    i = 0
    while i < len(text):
        if i + 1 < len(text) and text[i + 1] == _HAT:
            yield text[i : i + 2], rf"\hat {text[i]}"
            i += 2
        else:
            yield text[i], _UNICODE_TEX.get(text[i])
            i += 1


def _tex_text(text: str) -> str:
    """Symbol text in maths mode: its Unicode as LaTeX."""
    return "".join(tex if tex is not None else c for c, tex in _symbols(text))


_SPECIALS = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
             "{": r"\{", "}": r"\}", "^": r"\^{}", "~": r"\~{}"}


def _inline_tex(text: str) -> str:
    """A sentence for LaTeX: plain characters escaped, each maths symbol in maths mode."""
    pieces = (f"${tex}$" if tex is not None else _SPECIALS.get(c, c) for c, tex in _symbols(text))
    return "".join(pieces).replace("$$", "")


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


def to_latex(doc: list) -> str:
    out = [r"\documentclass{article}", r"\usepackage{amsmath,amssymb}", r"\usepackage[utf8]{inputenc}",
           r"\usepackage[margin=2cm,landscape]{geometry}", r"\allowdisplaybreaks", r"\begin{document}"]
    for block in doc:
        if isinstance(block, Heading):
            command = {1: "section*", 2: "subsection*", 3: "subsubsection*"}[block.level]
            out.append(rf"\{command}{{{_inline_tex(block.text)}}}")
        elif isinstance(block, Sentence):
            out.append(_inline_tex(block.text) + "\n")
        else:
            out.append(r"\[" + _tex_equation(block) + r"\]")
    out.append(r"\end{document}")
    return "\n".join(out) + "\n"


def render(explanation: Explanation, format: str = "text", precision: int = 4) -> str:
    """The explanation in ``format`` (``text``, ``markdown``, ``latex`` or ``json``); numbers are
    rounded to ``precision`` decimals except in JSON, which has them in full."""
    if format == "json":
        return json.dumps(to_json(explanation), indent=2) + "\n"
    token = _precision.set(precision)
    try:
        doc = build(explanation)
        return {"text": to_text, "markdown": to_markdown, "latex": to_latex}[format](doc)
    finally:
        _precision.reset(token)
