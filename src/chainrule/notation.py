"""Formulas as chainrule shows them: written once, in Unicode maths, and turned into LaTeX here.

Each kind declares its formulas next to its code, as the text a terminal shows (``σ(z)(1 − σ(z))``,
``∂L/∂{W} = {in}ᵀ·{δ}``). Names in braces are placeholders for the arrays and numbers of one layer (its
input ``{in}``, output ``{out}``, upstream gradient ``{δ}``, a parameter ``{W}``, a value its forward
computed ``{x_hat}``, a setting ``{eps}``): a renderer puts in their symbols (``X``, ``W₀``, ``x̂``, ``ε``)
and, on a second line, their numbers. :func:`to_latex` gives the same text as LaTeX maths, so that the
terminal, Markdown, LaTeX (and any later format) read one source.

Conventions of the text: ``·`` a product (of matrices, or of numbers), ``⊙`` element by element,
``Σ_rows``/``Σ_cols`` a sum over the rows (objects) or the columns (features), ``[z > 0]`` 1 where the
condition holds and 0 elsewhere, ``∂L/∂X`` the gradient of the loss with respect to ``X`` (an array of
``X``'s shape), ``θ ← …`` an update.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

#: The symbol of a placeholder, when it is not the layer's input, output or a parameter (those are named
#: by their place in the network: ``X``, ``Z₂``, ``W₂``).
SYMBOLS = {
    "δ": "δ",
    "mean": "μ",
    "var": "σ²",
    "x_hat": "x̂",
    "running_mean": "μ̄",
    "running_var": "σ̄²",
    "mask": "M",
    "gamma": "γ",
    "beta": "β",
    "eps": "ε",
    "alpha": "α",
    "momentum": "μ",
    "beta1": "β₁",
    "beta2": "β₂",
    "lr": "lr",
    "weight_decay": "wd",
    "dampening": "τ",
    "k": "k",
    "y": "y",
    "f′": "f′({in})",
}

#: Placeholders: ``{name}``, where a name is letters, digits, ``_``, ``'`` or a Greek letter.
PLACEHOLDER = re.compile(r"\{([\w'′]+)\}")


@dataclass(frozen=True)
class Eq:
    """An equation to show with numbers, written once: ``"∂L/∂{W} = {in}ᵀ·{δ}"``.

    ``result`` names the array that the equation computes, shown after it: by default the left-hand
    side's (``{x}`` → ``x``, ``∂L/∂{x}`` → ``∂x``, the gradient of ``x``); ``None`` for a definition that
    has no numbers of its own. With ``values`` the renderer shows the right-hand side once more with the
    numbers put in (the last part, if it is written in several: ``a = b = c``).
    """

    text: str
    result: str | None = ""
    values: bool = True

    @property
    def lhs(self) -> str:
        return split(self.text)[0]

    @property
    def rhs(self) -> str:
        return split(self.text)[1]

    def computes(self) -> str | None:
        """The name of the array this equation computes (see ``result``)."""
        if self.result != "":
            return self.result
        lhs = self.lhs.strip()
        match = re.fullmatch(r"(∂L/∂)?\{([\w'′]+)\}", lhs)
        if match is None:
            return None
        return ("∂" if match.group(1) else "") + match.group(2)


@dataclass(frozen=True)
class Formulas:
    """The formulas of a layer, in the order they are computed: its forward pass, then its backward pass."""

    forward: tuple[Eq, ...] = ()
    backward: tuple[Eq, ...] = ()


def with_formulas(doc: str | None, formulas: list[str], names: dict[str, str]) -> str:
    """A class's docstring with its formulas appended as LaTeX (``.. math::``): the placeholders become
    the symbols in ``names`` (``{in}`` → ``z``) or in :data:`SYMBOLS`. Kinds write their formulas once, as
    the text that ``explain`` shows, and their docstrings are made from it."""
    text = ",  ".join(formulas)
    text = PLACEHOLDER.sub(lambda m: names.get(m.group(1), SYMBOLS.get(m.group(1), m.group(1))), text)
    return f"{(doc or '').rstrip()}\n\n    .. math:: {to_latex(text)}\n"


def split(text: str) -> tuple[str, str]:
    """``(left side, right side)`` of ``a = b`` or ``a ← b`` (the first ``=`` or ``←`` between spaces)."""
    match = re.search(r" (=|←) ", text)
    if match is None:
        return text, ""
    return text[: match.start()], text[match.end() :]


def last_part(rhs: str) -> tuple[str, str]:
    """``(what comes before, the last part)`` of a right side written as ``b = c``: the numbers are put
    into the last part only."""
    parts = rhs.rsplit(" = ", 1)
    return (parts[0] + " = ", parts[1]) if len(parts) == 2 else ("", rhs)


# -- Unicode maths -> LaTeX -------------------------------------------------------------------------------
def _greek() -> dict[str, str]:
    """Every Greek letter as LaTeX: a command (``γ`` → ``\\gamma``, ``Δ`` → ``\\Delta``, ``ς`` →
    ``\\varsigma``), or the Latin letter for the capitals that look like one (``Α`` → ``A``)."""
    latin = {
        "alpha": "A",
        "beta": "B",
        "epsilon": "E",
        "zeta": "Z",
        "eta": "H",
        "iota": "I",
        "kappa": "K",
        "mu": "M",
        "nu": "N",
        "omicron": "O",
        "rho": "P",
        "tau": "T",
        "chi": "X",
    }
    table = {}
    for code in range(0x391, 0x3CA):
        name = unicodedata.name(chr(code), "")
        if not name.startswith("GREEK"):
            continue
        word = name.split()[-1].lower().replace("lamda", "lambda")
        if name.endswith("FINAL SIGMA"):
            table[chr(code)] = r"\varsigma "
        elif "CAPITAL" in name:
            table[chr(code)] = latin.get(word) or f"\\{word.capitalize()} "
        else:
            table[chr(code)] = "o" if word == "omicron" else f"\\{word} "
    return table


_CHARS = {
    **_greek(),
    "ϑ": r"\vartheta ",
    "ϕ": r"\phi ",
    "ϵ": r"\epsilon ",
    "−": "-",
    "·": r"\cdot ",
    "⊙": r"\odot ",
    "×": r"\times ",
    "←": r"\leftarrow ",
    "→": r"\to ",
    "≤": r"\le ",
    "≥": r"\ge ",
    "≈": r"\approx ",
    "∈": r"\in ",
    "Σ": r"\sum ",
    "‖": r"\|",
    "∞": r"\infty ",
    "∂": r"\partial ",
    "½": r"\tfrac12 ",
    "′": "'",
    "…": r"\cdots ",
    "⋮": r"\vdots ",
    "≠": r"\neq ",
    "±": r"\pm ",
    "∇": r"\nabla ",
    "∝": r"\propto ",
    "⊗": r"\otimes ",
    "⊕": r"\oplus ",
    "∀": r"\forall ",
    "∃": r"\exists ",
    "∫": r"\int ",
    "∏": r"\prod ",
    "ℝ": r"\mathbb{R}",
    "Ŷ": r"\hat{Y}",
    "ŷ": r"\hat{y}",
    "ĝ": r"\hat{g}",
}
_SUPERSCRIPTS = {
    **dict(zip("⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻ᵏᵗⁿ", "0123456789+-ktn", strict=True)),
    "ᵀ": r"\top ",
}
_SUBSCRIPTS = {
    **{d: str(i) for i, d in enumerate("₀₁₂₃₄₅₆₇₈₉")},
    **dict(zip("ᵢⱼₖₗₘₙₚₜ₊₋", "ijklmnpt+-", strict=True)),
}
_ACCENTS = {"\u0302": r"\hat", "\u0304": r"\bar"}  # combining circumflex (x̂) and macron (μ̄)
_FUNCTIONS = {"max": r"\max", "min": r"\min", "ln": r"\ln", "log": r"\log", "exp": r"\exp", "tanh": r"\tanh"}
_SENTINELS = range(0xE000, 0xF900)
_E_NOTATION = re.compile(
    r"(\d+(?:\.\d+)?)e([+-]?\d+)"
)  # 1.000e-05: a number, not a product with e  # Unicode's private use area: opaque atoms that a caller put in


def to_latex(text: str) -> str:
    """Unicode maths as LaTeX maths: ``σ(z)(1 − σ(z))`` → ``\\sigma \\left(z\\right)\\left(1-\\sigma …``.

    Greek letters and operators become their commands; ``x̂``, ``μ̄`` become ``\\hat{x}``, ``\\bar{\\mu}``;
    ``²``, ``ᵀ``, ``^(…)`` become superscripts, ``₀``, ``_rows`` subscripts; ``√(…)`` a square root;
    ``∂L/∂X`` a fraction; words a function (``\\max``, ``\\operatorname{erf}``) or upright text (``lr``);
    matched parentheses grow with what they hold. Characters of Unicode's private use area pass through
    unchanged: a caller can stand them for parts it writes itself (a symbol, a matrix).
    """
    return _Converter(text).run()


class _Converter:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pairs = _matching_parentheses(text)

    def run(self, start: int = 0, stop: int | None = None) -> str:
        text, out = self.text, []
        i, stop = start, len(self.text) if stop is None else stop
        while i < stop:
            c = text[i]
            if text.startswith("∂L/∂", i) and i + 4 < stop:
                atom, i = self.atom(i + 4, stop)
                out.append(rf"\frac{{\partial L}}{{\partial {atom}}}")
                continue
            if c == "√":
                inner, i = self.group(i + 1, stop)
                out.append(rf"\sqrt{{{inner}}}")
                continue
            if c == "^":
                inner, i = self.group(i + 1, stop)
                out.append(f"^{{{inner}}}")
                continue
            number = _E_NOTATION.match(text, i, stop) if c.isdigit() and (i == 0 or not text[i - 1].isalnum()) else None
            if number:
                out.append(f"{number.group(1)}\\times 10^{{{int(number.group(2))}}}")
                i = number.end()
                continue
            if c in _SUPERSCRIPTS:
                j = i
                while j < stop and text[j] in _SUPERSCRIPTS:
                    j += 1
                out.append("^{" + "".join(_SUPERSCRIPTS[s] for s in text[i:j]).strip() + "}")
                i = j
                continue
            if c in _SUBSCRIPTS:
                j = i
                while j < stop and text[j] in _SUBSCRIPTS:
                    j += 1
                out.append("_{" + "".join(_SUBSCRIPTS[s] for s in text[i:j]) + "}")
                i = j
                continue
            if c == "_":
                match = re.compile(r"_([A-Za-z]+)").match(text, i, stop)
                if match:
                    out.append(rf"_{{\text{{{match.group(1)}}}}}")
                    i = match.end()
                    continue
            if c in "([" and i in self.pairs:
                j = self.pairs[i]
                close = ")" if c == "(" else "]"
                out.append(rf"\left{c}{self.run(i + 1, j)}\right{close}")
                i = j + 1
                continue
            if i + 1 < stop and text[i + 1] in _ACCENTS:
                base = _CHARS.get(c, c).strip()
                out.append(f"{_ACCENTS[text[i + 1]]}{{{base}}}")
                i += 2
                continue
            if c.isascii() and c.isalpha():
                j = i
                while j < stop and text[j].isascii() and text[j].isalpha():
                    j += 1
                out.append(_word(text[i:j]))
                i = j
                continue
            if c == " ":
                j = i
                while j < stop and text[j] == " ":
                    j += 1
                out.append(r"\quad " if j - i > 1 else " ")
                i = j
                continue
            out.append(_CHARS.get(c, c))
            i += 1
        return "".join(out)

    def atom(self, i: int, stop: int) -> tuple[str, int]:
        """One symbol from ``i``: a letter with its accents and indices, or an opaque character (nothing
        at the end of the text)."""
        if i >= stop:
            return "", i
        j = i + 1
        while j < stop and (self.text[j] in _ACCENTS or self.text[j] in _SUBSCRIPTS or self.text[j] == "′"):
            j += 1
        return self.run(i, j), j

    def group(self, i: int, stop: int) -> tuple[str, int]:
        """What a root or a power applies to: a parenthesised group (without its parentheses) or one atom."""
        if i < stop and self.text[i] == "(" and i in self.pairs:
            j = self.pairs[i]
            return self.run(i + 1, j), j + 1
        return self.atom(i, stop)


def _word(word: str) -> str:
    if len(word) == 1:
        return word
    if word in _FUNCTIONS:
        return _FUNCTIONS[word] + " "
    if word in ("erf", "softmax", "mean"):
        return rf"\operatorname{{{word}}}"
    return rf"\mathrm{{{word}}}"


def _matching_parentheses(text: str) -> dict[int, int]:
    """Position of each ``(`` or ``[`` → position of its partner; unmatched ones are left out (and so
    written as plain characters)."""
    pairs, stacks = {}, {"(": [], "[": []}
    partners = {")": "(", "]": "["}
    for i, c in enumerate(text):
        if c in stacks:
            stacks[c].append(i)
        elif c in partners and stacks[partners[c]]:
            pairs[stacks[partners[c]].pop()] = i
    return pairs


_SPECIALS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "^": r"\^{}",
    "~": r"\~{}",
    '"': r"{\ttfamily\char34}",  # straight, and not the shorthand that Russian babel makes of "
}


def text_to_latex(text: str) -> str:
    """A sentence (text, not maths) for a LaTeX document: its text escaped, each run of maths characters
    (Greek letters, operators, indices, and a letter under a hat: x̂) in maths mode. Letters of other
    languages (é, ü) stay text."""

    def maths(i: int) -> bool:
        return is_maths(text[i]) or (i + 1 < len(text) and text[i + 1] in "\u0302\u0304")

    out, i = [], 0
    while i < len(text):
        j = i
        while j < len(text) and maths(j):
            j += 1
        if j > i:
            out.append(f"${to_latex(text[i:j])}$")
            i = j
        else:
            out.append(_SPECIALS.get(text[i], text[i]))
            i += 1
    return "".join(out)


def is_maths(c: str) -> bool:
    """Whether ``c`` is a character of maths that :func:`to_latex` writes as a command or an index (a Greek
    letter, an operator, a super- or subscript, a combining accent), rather than a letter of some language
    (é, ü, я), which stays text."""
    return c in _CHARS or c in _SUPERSCRIPTS or c in _SUBSCRIPTS or c in _ACCENTS or c == "√"


def sentinel(k: int) -> str:
    """The ``k``-th opaque character that :func:`to_latex` passes through unchanged."""
    return chr(_SENTINELS[k])


def is_sentinel(c: str) -> bool:
    return len(c) == 1 and ord(c) in _SENTINELS
