"""One number of an explanation opened into its computation: ``chainrule explain --entry PATH`` and the
numbers of the HTML page.

A path names a place in the JSON of ``chainrule explain`` (``layers[0].grads.W[1][0]``, ``loss``). Its
formula is the one the renderers show — the equation of the layer, loss or optimizer (``formulas()``)
that computes that array — and its operands are the arrays that equation names, with their numbers from
the trace. The right-hand side is read as an expression (:func:`parse`) and written out for one entry,
with the numbers put in::

    ∂L/∂W₀[1][0] = Σᵢ X[i][1]·δ[i][0] = 2·(−0.25) + 2·0 = −0.5

The value shown last is the trace's (what the library computed); the expression's own value is kept
beside it (``Expansion.computed``), so that a test sees the declared formula and the code agree. A
formula this reader does not follow (one that uses a name defined by an earlier equation, as Adam's
``m̂``) is shown with its symbols and the value only.

Conventions of the expressions, from :mod:`chainrule.notation`: ``·`` between two arrays named directly
(``{in}ᵀ·{δ}``) is a matrix product, otherwise a product of numbers; ``⊙`` element by element;
``Σ_rows`` and ``Σ_cols`` sum over rows or columns, a bare ``Σ`` over everything; ``[a > b]`` is 1 where
the condition holds.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from chainrule.errors import ChainruleError
from chainrule.explain.explanation import Explanation, StepRecord
from chainrule.i18n import N_, _, ngettext
from chainrule.notation import PLACEHOLDER, SYMBOLS, Eq, last_part

MAX_TERMS = 8  # terms of a sum written out; longer sums are elided in the middle

_SUB = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")


class EntryError(ChainruleError):
    """A path that names no number of the explanation."""


@dataclass
class Expansion:
    """How the number at ``path`` is computed.

    ``formula``: the equation for this entry in symbols (``∂L/∂W₀[1][0] = Σᵢ X[i][1]·δ[i][0]``);
    ``numbers``: its right-hand side with the numbers put in (empty when the formula is shown with its
    symbols only, or the number is given rather than computed); ``value``: the number, as the library
    computed it; ``computed``: the value of ``numbers`` (``None`` without them); ``sources``: the paths of
    the entries it is computed from.
    """

    path: str
    formula: str
    numbers: str
    value: float
    computed: float | None = None
    sources: list[str] = field(default_factory=list)
    note: str = ""  # for a number given rather than computed: where it comes from

    def text(self, fmt: Callable[[float], str]) -> str:
        """``formula = numbers = value``, in one line."""
        parts = [self.formula, self.numbers] if self.numbers else [self.formula]
        line = " = ".join([*parts, _signed(fmt(self.value))])
        return f"{line} ({_(self.note)})" if self.note else line  # a path or a formula is its own translation


# -- paths -------------------------------------------------------------------------------------------
_PATH = re.compile(r"(?P<array>[a-z_]+(?:\[\d+\]\.[a-z_]+(?:\.\w+)?)?)(?P<index>(?:\[\d+\])*)")


def parse_path(path: str) -> tuple[str, tuple[int, ...]]:
    """``("layers[0].grads.W", (1, 0))`` for ``layers[0].grads.W[1][0]``."""
    match = _PATH.fullmatch(path.replace(" ", ""))
    if match is None:
        raise EntryError(_("expected a path such as layers[0].grads.W[1][0] or loss, got {got!r}").format(got=path))
    return match.group("array"), tuple(int(i) for i in re.findall(r"\d+", match.group("index")))


# -- expressions -------------------------------------------------------------------------------------
class Unreadable(Exception):
    """A formula that the expression reader does not follow."""


Env = Mapping[str, object]  # placeholder -> NDArray (2-D) | float


@dataclass
class _Node:
    def value(self, env: Env) -> NDArray:
        raise NotImplementedError

    def shape(self, env: Env) -> tuple[int, ...]:
        return np.shape(self.value(env))

    def write(self, idx: tuple, env: Env, numbers: bool, out: set) -> str:
        """This node at entry ``idx`` (ints, or letters for an index that a sum runs over) as symbols, or
        with numbers (ints only); the entries of placeholders it reads are added to ``out``."""
        raise NotImplementedError


def _fit(idx: tuple, shape: tuple[int, ...]) -> tuple:
    """``idx`` for an operand of ``shape`` (broadcasting: an axis of length 1 is read at 0)."""
    if not shape:
        return ()
    return tuple(0 if n == 1 else i for i, n in zip(idx, shape, strict=True))


@dataclass
class Ph(_Node):
    name: str
    transposed: bool = False
    symbols: Mapping[str, str] = field(default_factory=dict, repr=False)

    def value(self, env):
        if self.name not in env or env[self.name] is None:
            raise Unreadable(self.name)
        v = env[self.name]
        v = np.asarray(v, dtype=np.float64)
        if v.ndim == 0:
            return v
        v = v.reshape(1, -1) if v.ndim == 1 else v
        return v.T if self.transposed else v

    def write(self, idx, env, numbers, out):
        v = self.value(env)
        symbol = self.symbols.get(self.name) or SYMBOLS.get(self.name, self.name)
        if v.ndim == 0:
            return _num(float(v)) if numbers else symbol
        i, j = _fit(idx, v.shape)
        if self.transposed:
            i, j = j, i
        if numbers:
            out.add((self.name, (i, j)))
            return _num(float(v[j, i] if self.transposed else v[i, j]))
        return f"{symbol}[{j}]" if np.ndim(env[self.name]) == 1 else f"{symbol}[{i}][{j}]"


@dataclass
class Num(_Node):
    text: str

    def value(self, env):
        return np.asarray(float(self.text))

    def write(self, idx, env, numbers, out):
        return self.text


_ELEMENTWISE = {
    "+": np.add,
    "−": np.subtract,
    "⊙": np.multiply,
    "·": np.multiply,
    "/": np.divide,
    ">": lambda a, b: (a > b).astype(np.float64),
    "≤": lambda a, b: (a <= b).astype(np.float64),
    "≥": lambda a, b: (a >= b).astype(np.float64),
    "<": lambda a, b: (a < b).astype(np.float64),
}


@dataclass
class Bin(_Node):
    op: str
    left: _Node
    right: _Node

    def value(self, env):
        return _ELEMENTWISE[self.op](self.left.value(env), self.right.value(env))

    def write(self, idx, env, numbers, out):
        left = self.left.write(_fit(idx, self.left.shape(env)), env, numbers, out)
        right = self.right.write(_fit(idx, self.right.shape(env)), env, numbers, out)
        if self.op in "·⊙/":
            left, right = _group(self.left, left, "+−"), _group(self.right, right, "+−·⊙/" if self.op == "/" else "+−")
        elif self.op == "−":
            right = _group(self.right, right, "+−")
        if self.op in "⊙·":
            return f"{left}·{right}"
        return f"{left}{self.op}{right}" if self.op == "/" else f"{left} {self.op} {right}"


@dataclass
class MatMul(_Node):
    left: _Node
    right: _Node

    def value(self, env):
        return self.left.value(env) @ self.right.value(env)

    def write(self, idx, env, numbers, out):
        i, j = idx
        inner = self.left.shape(env)[1]
        letter = "i" if isinstance(self.left, Ph) and self.left.transposed else "k"
        if not numbers:
            k, sigma = (0, "") if inner == 1 else (letter, f"Σ{_subscript(letter)} ")  # one term: no sum
            return sigma + self.left.write((i, k), env, False, out) + "·" + self.right.write((k, j), env, False, out)
        return _terms(
            [
                f"{self.left.write((i, k), env, True, out)}·{self.right.write((k, j), env, True, out)}"
                for k in range(inner)
            ]
        )


@dataclass
class Sum(_Node):
    axis: str  # rows | cols | all
    body: _Node

    def value(self, env):
        v = self.body.value(env)
        if v.ndim == 0:
            return v
        return {"rows": v.sum(axis=0, keepdims=True), "cols": v.sum(axis=1, keepdims=True), "all": v.sum()}[self.axis]

    def write(self, idx, env, numbers, out):
        rows, cols = self.body.shape(env) or (1, 1)
        if self.axis == "rows":
            letter, cells = "i", [(r, idx[1]) for r in range(rows)]
            free = ("i", idx[1])
        elif self.axis == "cols":
            letter, cells = "j", [(idx[0], c) for c in range(cols)]
            free = (idx[0], "j")
        else:
            letter, cells = "ij", [(r, c) for r in range(rows) for c in range(cols)]
            free = ("i", "j")
        if not numbers:
            return f"Σ{_subscript(letter)} " + _group(self.body, self.body.write(free, env, False, out), "+−")
        return "(" + _terms([_group(self.body, self.body.write(c, env, True, out), "+−") for c in cells]) + ")"


_FUNCTIONS: dict[str, Callable[[NDArray], NDArray]] = {
    "σ": lambda z: 1 / (1 + np.exp(-z)),
    "tanh": np.tanh,
    "ln": np.log,
    "Φ": lambda z: 0.5 * (1 + np.vectorize(math.erf)(z / math.sqrt(2))),
    "φ": lambda z: np.exp(-(z**2) / 2) / math.sqrt(2 * math.pi),
    "e^": np.exp,
    "√": np.sqrt,
    "|": np.abs,
    "²": np.square,
}


@dataclass
class Func(_Node):
    name: str
    arg: _Node

    def value(self, env):
        return _FUNCTIONS[self.name](np.asarray(self.arg.value(env), dtype=np.float64))

    def write(self, idx, env, numbers, out):
        inner = self.arg.write(idx, env, numbers, out)
        if self.name == "²":
            return _group(self.arg, inner, "+−·⊙/") + "²"
        if self.name == "|":
            return f"|{inner}|"
        if self.name == "e^":
            return f"e^({inner})"
        if self.name == "√":
            return f"√({inner})"
        return f"{self.name}({inner})"


@dataclass
class Softmax(_Node):
    arg: _Node

    def value(self, env):
        z = self.arg.value(env)
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def write(self, idx, env, numbers, out):
        i, j = idx
        if not numbers or isinstance(j, str):
            return f"softmax({self.arg.write((i, 'j'), env, False, out).replace('[j]', '')})[{j}]"
        row = [self.arg.write((i, c), env, True, out) for c in range(self.arg.shape(env)[1])]
        return f"softmax({', '.join(row)})[{j}]"


@dataclass
class Max(_Node):
    left: _Node
    right: _Node

    def value(self, env):
        return np.maximum(self.left.value(env), self.right.value(env))

    def write(self, idx, env, numbers, out):
        left = self.left.write(_fit(idx, self.left.shape(env)), env, numbers, out)
        right = self.right.write(_fit(idx, self.right.shape(env)), env, numbers, out)
        return f"max({left}, {right})"


@dataclass
class Power(_Node):
    base: _Node
    exponent: _Node

    def value(self, env):
        return np.power(self.base.value(env), self.exponent.value(env))

    def write(self, idx, env, numbers, out):
        base = _group(self.base, self.base.write(idx, env, numbers, out), "+−·⊙/")
        return f"{base}^{self.exponent.write(idx, env, numbers, out)}"


@dataclass
class Neg(_Node):
    arg: _Node

    def value(self, env):
        return -self.arg.value(env)

    def write(self, idx, env, numbers, out):
        return "−" + _group(self.arg, self.arg.write(idx, env, numbers, out), "+−")


@dataclass
class Bracket(_Node):
    """``[…]``: an Iverson bracket around a comparison, or square brackets used as parentheses."""

    body: _Node

    def value(self, env):
        return self.body.value(env)

    def write(self, idx, env, numbers, out):
        return f"[{self.body.write(idx, env, numbers, out)}]"


def _group(node: _Node, text: str, ops: str) -> str:
    """``text`` in parentheses when ``node`` is an operation of lower precedence (one of ``ops``), or
    a negative number written after an operator."""
    if isinstance(node, Bin) and node.op in ops:
        return f"({text})"
    if isinstance(node, Neg):
        return f"({text})"
    return text


def _terms(terms: list[str]) -> str:
    if len(terms) > MAX_TERMS:
        more = ngettext("… ({n} more term)", "… ({n} more terms)", len(terms) - 5).format(n=len(terms) - 5)
        terms = [*terms[:3], more, *terms[-2:]]
    return " + ".join(terms)


def _subscript(letters: str) -> str:
    return "".join({"i": "ᵢ", "j": "ⱼ", "k": "ₖ"}[c] for c in letters)


def _num(x: float) -> str:
    """A number of a formula: a negative one in parentheses, since it follows an operator."""
    from chainrule.explain.render import fmt

    text = _signed(fmt(x))
    return f"({text})" if text.startswith("−") else text


def _signed(text: str) -> str:
    """A number with a minus sign, not a hyphen (except in its exponent: 1e-05)."""
    return re.sub(r"^-", "−", text)


# -- the reader --------------------------------------------------------------------------------------
_TOKEN = re.compile(
    r"\s*(?:(?P<grad>∂L/∂\{[\w'′]+\})|(?P<ph>\{[\w'′]+\})|(?P<num>\d+(?:\.\d+)?)|(?P<sum>Σ_rows|Σ_cols|Σ)"
    r"|(?P<exp>e\^)|(?P<func>softmax|tanh|ln|max|σ|Φ|φ)|(?P<op>[−+·⊙/()\[\]²ᵀᵗ√|,><≤≥-])"
    r"|(?P<name>[A-Za-z][\u0302\u0304]?)|(?P<other>\S))"
)


def parse(text: str, symbols: Mapping[str, str], definitions: Mapping[str, _Node] | None = None) -> _Node:
    """The expression tree of a right-hand side (placeholders in braces); :class:`Unreadable` for
    anything else (a word the reader does not know, a sentence after the formula). A one-letter name is
    one of ``definitions`` (``ĝ``, defined by an earlier equation) or a count (``n``, ``d``, ``t``) that
    the numbers give."""
    tokens = []
    for match in _TOKEN.finditer(text):
        kind = match.lastgroup
        if kind == "other":
            raise Unreadable(match.group(kind))
        tokens.append((kind, match.group(kind)))
    reader = _Reader(tokens, symbols, definitions or {})
    node = reader.expr()
    if reader.i != len(tokens):
        raise Unreadable(text)
    return node


class _Reader:
    def __init__(self, tokens: list[tuple[str, str]], symbols: Mapping[str, str], definitions) -> None:
        self.tokens, self.i, self.symbols, self.definitions = tokens, 0, symbols, definitions

    def peek(self) -> tuple[str, str]:
        return self.tokens[self.i] if self.i < len(self.tokens) else ("end", "")

    def take(self, value: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if token[0] == "end" or (value is not None and token[1] != value):
            raise Unreadable(f"expected {value!r}")
        self.i += 1
        return token

    def expr(self) -> _Node:
        node = self.term()
        while self.peek()[1] in ("+", "−", "-"):
            op = "−" if self.take()[1] in "−-" else "+"
            node = Bin(op, node, self.term())
        if self.peek()[1] in (">", "≤", "≥", "<"):
            op = self.take()[1]
            node = Bin(op, node, self.expr())
        return node

    def term(self) -> _Node:
        node = self.unary()
        while True:
            kind, value = self.peek()
            if value in ("·", "⊙", "/"):
                self.take()
                right = self.unary()
                matrices = value == "·" and isinstance(node, Ph) and isinstance(right, Ph)
                node = _MaybeMatMul(node, right) if matrices else Bin(value, node, right)
            elif kind in ("ph", "grad", "func", "exp", "name") or value in ("(", "√"):
                node = Bin("·", node, self.unary())  # σ(z)(1 − σ(z)): juxtaposition is a product
            else:
                return node

    def unary(self) -> _Node:
        if self.peek()[1] in ("−", "-"):
            self.take()
            return Neg(self.unary())
        return self.power()

    def power(self) -> _Node:
        node = self.atom()
        while self.peek()[1] in ("²", "ᵀ", "ᵗ"):
            op = self.take()[1]
            if op == "²":
                node = Func("²", node)
            elif op == "ᵗ":
                node = Power(node, Ph("t", symbols=self.symbols))
            elif isinstance(node, Ph):
                node = Ph(node.name, not node.transposed, node.symbols)
            else:
                raise Unreadable("ᵀ")
        return node

    def atom(self) -> _Node:
        kind, value = self.take()
        if kind == "ph":
            return self.definitions.get(value) or Ph(value[1:-1], symbols=self.symbols)
        if kind == "grad":
            return Ph("∂" + value[5:-1], symbols=self.symbols)
        if kind == "num":
            return Num(value)
        if kind == "name":
            return self.definitions.get(value) or Ph(value, symbols=self.symbols)
        if kind == "sum":
            axis = {"Σ_rows": "rows", "Σ_cols": "cols", "Σ": "all"}[value]
            return Sum(axis, self.term())
        if kind == "exp":
            return Func("e^", self.atom())
        if kind == "func":
            if value == "max":
                self.take("(")
                left = self.expr()
                self.take(",")
                right = self.expr()
                self.take(")")
                return Max(left, right)
            if value == "ln":
                return Func("ln", self.power())
            self.take("(")
            arg = self.expr()
            self.take(")")
            return Softmax(arg) if value == "softmax" else Func(value, arg)
        if value == "√":
            return Func("√", self.atom())
        if value == "(":
            node = self.expr()
            self.take(")")
            return node
        if value == "[":
            node = self.expr()
            self.take("]")
            return Bracket(node)
        if value == "|":
            node = self.expr()
            self.take("|")
            return Func("|", node)
        raise Unreadable(value)


@dataclass
class _MaybeMatMul(_Node):
    """``A·B`` of two arrays named directly: a matrix product of two matrices, a product of numbers when
    one is a number (known once the values are)."""

    left: Ph
    right: Ph

    def _matrices(self, env) -> bool:
        return self.left.value(env).ndim == 2 and self.right.value(env).ndim == 2

    def _node(self, env) -> _Node:
        return MatMul(self.left, self.right) if self._matrices(env) else Bin("·", self.left, self.right)

    def value(self, env):
        return self._node(env).value(env)

    def write(self, idx, env, numbers, out):
        return self._node(env).write(idx, env, numbers, out)


# -- explanation paths -> formulas -------------------------------------------------------------------
@dataclass
class _Place:
    """What a path's formula needs: the equation, symbols and numbers, the path of each operand, and the
    library's value of the whole array."""

    eq: Eq | None
    symbols: Mapping[str, object]
    numbers: dict[str, object]
    operands: dict[str, str]  # placeholder -> path of its array in the JSON
    value: NDArray
    name: str  # the symbol of the array itself, e.g. ∂L/∂W₀
    note: str = ""  # for a number given rather than computed
    definitions: tuple[Eq, ...] = ()  # equations that name a value the formula uses (ĝ = δ ⊙ γ)
    arrow: str = "="  # ← for an update


def _layer_paths(i: int, r) -> dict[str, str]:
    paths = {
        "in": f"layers[{i}].input",
        "out": f"layers[{i}].output",
        "δ": f"layers[{i}].grad_output",
        "f′": f"layers[{i}].local_derivative",
    }
    paths.update({name: f"layers[{i}].params.{name}" for name in r.params})
    paths.update({f"∂{name}": f"layers[{i}].grads.{name}" for name in r.grads})
    paths.update({name: f"layers[{i}].details.{name}" for name in r.details if name != "f′"})
    return paths


def _step_for(explanation: Explanation, array: str) -> StepRecord:
    """The step whose numbers give ``array``: the last one for ``params_after`` (which the JSON gives after
    all steps), else the first."""
    if array.split(".")[1:2] == ["params_after"]:
        if len(explanation.history) > len(explanation.steps):
            raise EntryError(
                ngettext(
                    "{array}: only the first {n} step is recorded in full",
                    "{array}: only the first {n} steps are recorded in full",
                    len(explanation.steps),
                ).format(array=array, n=len(explanation.steps))
            )
        return explanation.steps[-1]
    return explanation.first


def _place(explanation: Explanation, array: str) -> _Place:
    from chainrule.explain.render import Sym, _layer_lookups, indexed

    problem = explanation.problem
    step = _step_for(explanation, array)
    records = step.layers
    names = [indexed(r.layer.symbol, r.index).text for r in records]
    loss = problem.loss
    if array in ("loss", "data_loss", "loss_grad"):
        last = len(records) - 1
        symbols = {"in": names[-1], "y": "y", "k": "k"}
        numbers = {"in": records[-1].output, "y": loss.target, "k": loss.factor(problem.X.shape[0])}
        operands = {"in": f"layers[{last}].output"}
        if array == "loss_grad":
            eq = _computing([*loss.formulas().backward], "∂in")
            return _Place(eq, symbols, numbers, operands, step.loss_grad, f"∂L/∂{names[-1]}")
        value = np.asarray(step.loss - step.penalty)
        if array == "loss" and problem.l2:
            numbers["l2"], numbers["penalty"] = problem.l2, step.penalty
            return _Place(None, symbols, numbers, operands, np.asarray(step.loss), "L", "L + λ/2·Σ‖W‖²")
        return _Place(_computing([*loss.formulas().forward], "L"), symbols, numbers, operands, value, "L")

    match = re.fullmatch(r"layers\[(\d+)\]\.(\w+)(?:\.(\w+))?", array)
    if match is None or int(match.group(1)) >= len(records):
        raise EntryError(
            _("no array {array!r} in this explanation (layers 0 to {last})").format(array=array, last=len(records) - 1)
        )
    i, key, name = int(match.group(1)), match.group(2), match.group(3)
    r = records[i]
    in_name = Sym("X") if i == 0 else Sym(names[i - 1])
    lookup_symbols, numbers, results = _layer_lookups(r, in_name, Sym(names[i]))
    used = {*PLACEHOLDER.findall(" ".join(_all_text(r.layer))), *numbers, *results}
    symbols = {k.lstrip("∂"): lookup_symbols[k.lstrip("∂")].text for k in used}
    operands = _layer_paths(i, r)
    numbers = {**numbers, "n": float(r.input.shape[0]), "d": float(np.prod(r.input.shape[1:]))}
    formulas = r.layer.formulas()
    definitions = tuple(eq for eq in (*formulas.forward, *formulas.backward) if eq.result is None)
    lookup = {"output": ("out", formulas.forward), "grad_input": ("∂in", formulas.backward)}
    lookup["local_derivative"] = ("f′", formulas.backward)
    if key in lookup and name is None:
        wanted, equations = lookup[key]
        if results.get(wanted) is None:
            raise EntryError(
                _("{array}: not recorded for layer {index} ({kind})").format(array=array, index=i, kind=r.layer.kind)
            )
        symbol = _array_symbol(wanted, symbols)
        eq = _computing(equations, wanted)
        return _Place(eq, symbols, numbers, operands, results[wanted], symbol, "", definitions)
    if key == "details" and name in r.details:
        eq = _computing([*formulas.forward, *formulas.backward], name)
        return _Place(eq, symbols, numbers, operands, r.details[name], symbols.get(name, name), "", definitions)
    if key == "grads" and name in r.grads:
        eq = _computing(formulas.backward, f"∂{name}")
        total = step.grads[i][name]
        if problem.l2 and r.layer.params[name].decay and eq is not None:
            eq = Eq(f"{eq.lhs} = {last_part(eq.rhs)[1]} + {{l2}}·{{{name}}}")
            numbers = {**numbers, "l2": problem.l2}
            symbols = {**symbols, "l2": "λ"}
        return _Place(eq, symbols, numbers, operands, total, f"∂L/∂{symbols[name]}", "", definitions)
    if key == "params_after" and name in r.params:
        return _update_place(explanation, step, i, name, symbols, operands)
    if (key in ("input", "grad_output") and name is None) or (key == "params" and name in r.params):
        value = {"input": r.input, "grad_output": r.grad_output}.get(key) if name is None else r.params[name]
        given = {
            "input": N_("given in the problem file") if i == 0 else f"layers[{i - 1}].output",
            "grad_output": "loss_grad" if i == len(records) - 1 else f"layers[{i + 1}].grad_input",
            "params": N_("given in the problem file") if step is explanation.first else N_("after the steps before"),
        }[key]
        symbol = {"input": symbols["in"], "grad_output": "δ"}.get(key) or symbols[name]
        return _Place(None, symbols, numbers, operands, value, symbol, given)
    raise EntryError(_("no array {array!r} in this explanation").format(array=array))


def _all_text(layer) -> list[str]:
    formulas = layer.formulas()
    return [eq.text for eq in (*formulas.forward, *formulas.backward)]


def _array_symbol(wanted: str, symbols: Mapping[str, str]) -> str:
    if wanted.startswith("∂"):
        return f"∂L/∂{symbols.get(wanted[1:], wanted[1:])}"
    return symbols.get(wanted, SYMBOLS.get(wanted, wanted))


def _update_place(explanation, step, i, name, symbols, operands) -> _Place:
    optimizer = explanation.optimizer
    if optimizer is None:
        raise EntryError(_("this problem has no optimizer, so no params_after"))
    r = step.layers[i]
    state = step.optimizer_state[i][name]
    numbers = {
        "θ": r.params[name],
        "g": step.grads[i][name],
        **{optimizer.state_symbols.get(k, k): v for k, v in state.items()},
        **{k: v for k, v in optimizer.config().items() if isinstance(v, float)},
        "lr": step.lr,
        "t": float(step.number),
        "∂θ": step.grads[i][name],
    }
    theta = symbols[name]
    symbols = {
        "θ": theta,
        "g": f"∂L/∂{theta}",
        **{symbol: f"{symbol}({theta})" for symbol in optimizer.state_symbols.values()},
    }
    operands = {"θ": operands[name], "g": f"layers[{i}].grads.{name}"}
    rules = optimizer.formulas()
    definitions = tuple(eq for eq in rules if eq.result is None)
    after = step.params_after[i][name]
    return _Place(_computing(rules, "θ"), symbols, numbers, operands, after, theta, "", definitions, "←")


def _computing(equations, wanted: str) -> Eq | None:
    return next((eq for eq in equations if eq.computes() == wanted), None)


def formula(explanation: Explanation, array: str) -> str | None:
    """The formula that computes the array at ``array`` (a place in the JSON of ``explain``), with its
    symbols: ``∂L/∂W₂ = A₁ᵀ·δ`` for ``layers[2].grads.W``. ``None`` for a value no single formula gives."""
    try:
        place = _place(explanation, array)
    except EntryError:
        return None
    if place.eq is None:
        return None
    return f"{place.name} {place.arrow} {_with_symbols(place)}"


def _with_symbols(place: _Place) -> str:
    return PLACEHOLDER.sub(lambda m: str(place.symbols.get(m.group(1), m.group(1))), last_part(place.eq.rhs)[1])


# -- the expansion -----------------------------------------------------------------------------------
def expand(explanation: Explanation, path: str) -> Expansion:
    """How the number at ``path`` (a place in ``chainrule explain``'s JSON) is computed."""

    array, index = parse_path(path)
    place = _place(explanation, array)
    value = np.asarray(place.value, dtype=np.float64)
    if len(index) != value.ndim:
        raise EntryError(
            ngettext(
                "{array} has shape {shape}: expected {n} index, got {got} in {path!r}",
                "{array} has shape {shape}: expected {n} indices, got {got} in {path!r}",
                value.ndim,
            ).format(array=array, shape=tuple(value.shape), n=value.ndim, got=len(index), path=path)
        )
    if any(not 0 <= k < n for k, n in zip(index, value.shape, strict=True)):
        raise EntryError(
            _("{path}: index out of range for {array} of shape {shape}").format(
                path=path, array=array, shape=tuple(value.shape)
            )
        )
    number = float(value[index])
    where = "".join(f"[{k}]" for k in index)
    lhs = f"{place.name}{where}"
    if place.eq is None:
        if place.note.startswith("layers[") or place.note == "loss_grad":
            source = f"{place.note}{where}"
            return Expansion(path, f"{lhs} = {source}", "", number, None, [source])
        return Expansion(path, lhs, "", number, None, [], place.note)
    idx2 = (0, index[0]) if value.ndim == 1 else tuple(index) if value.ndim == 2 else ()
    env = {k: v for k, v in place.numbers.items() if v is not None}
    try:
        node = parse(last_part(place.eq.rhs)[1], place.symbols, _definitions(place))
        computed_all = np.asarray(node.value(env), dtype=np.float64)
        if computed_all.shape != _as2d(value).shape:
            raise Unreadable(f"shape {computed_all.shape}")
        used: set = set()
        formula = node.write(idx2, env, False, set())
        numbers = node.write(idx2, env, True, used)
    except (Unreadable, KeyError, ValueError, IndexError):
        return Expansion(path, f"{lhs} {place.arrow} {_with_symbols(place)}", "", number, None, [])
    computed = float(computed_all[idx2] if computed_all.ndim else computed_all)
    ndims = {k: np.ndim(v) for k, v in place.numbers.items()}
    sources = sorted({_source(place.operands.get(name), ndims.get(name, 2), cell) for name, cell in used} - {None})
    return Expansion(path, f"{lhs} {place.arrow} {formula}", numbers, number, computed, sources)


def _definitions(place: _Place) -> dict[str, _Node]:
    """The values that earlier equations define, read as expressions: a name of one letter (``ĝ = δ ⊙ γ``,
    Adam's ``m̂``), or a placeholder given a new value before the formula (AdamW's decay ``θ ← θ −
    lr·wd·θ``, keyed ``{θ}``). A definition the reader does not follow is left out (and a formula using it
    is then shown with its symbols only)."""
    found: dict[str, _Node] = {}
    for eq in place.definitions:
        for part in eq.text.split(",  "):
            pieces = re.split(r" (?:=|←) ", part, maxsplit=1)
            name, rhs = (pieces[0].strip(), pieces[1].strip()) if len(pieces) == 2 else ("", "")
            if re.fullmatch(r"[A-Za-z][\u0302\u0304]?|\{[\w'′]+\}", name) and rhs:
                try:
                    found[name] = parse(rhs, place.symbols, found)
                except Unreadable:
                    continue
    return found


def _as2d(v):
    if isinstance(v, np.ndarray) and v.ndim == 1:
        return v.reshape(1, -1)
    return v


def _source(path: str | None, ndim: int, cell: tuple[int, int]) -> str | None:
    """The path of one entry of an operand (a 1-D array, such as a bias, is read as one row)."""
    if path is None:
        return None
    return path + "".join(f"[{k}]" for k in (cell[1:] if ndim == 1 else cell))


def paths(explanation: Explanation) -> Iterator[str]:
    """Every path of a number that :func:`expand` opens: each entry of each array of the JSON."""
    from chainrule.explain.explanation import to_json

    data = to_json(explanation)
    yield "loss"
    yield from _entries("loss_grad", data["loss_grad"])
    for i, layer in enumerate(data["layers"]):
        for key in ("input", "output", "grad_output", "grad_input", "local_derivative"):
            if key in layer:
                yield from _entries(f"layers[{i}].{key}", layer[key])
        for key in ("params", "grads", "params_after"):
            for name, array in layer.get(key, {}).items():
                yield from _entries(f"layers[{i}].{key}.{name}", array)


def _entries(prefix: str, array) -> Iterator[str]:
    a = np.asarray(array)
    for idx in np.ndindex(a.shape):
        yield prefix + "".join(f"[{k}]" for k in idx)
