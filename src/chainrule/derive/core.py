"""Derivations as data, and the check of each step by SymPy.

A derivation is a list of :class:`Step` s. Each step is shown as an equation in the Unicode maths of
:mod:`chainrule.notation` with a one-line reason, and carries the two sides that SymPy compares: ``lhs``
and ``rhs`` (expressions or explicit matrices of symbols). A step is verified

* by ``simplify``: ``simplify(lhs − rhs)`` is 0 (every entry, for matrices); or, where that does not reach
  0 (an identity of indices, roots and sums that SymPy cannot close),
* by ``numeric``: both sides, evaluated with 30 significant digits at random values of their symbols
  (from the derivation's ``domain``: a variance is positive, a probability in (0, 1)), agree to 1e-20.

A step written with ``how="numeric"`` skips the simplification (where it would be slow). ``given``
substitutes what the step assumes (``y₃ = 1 − y₁ − y₂`` for targets that sum to 1) before either check.

The topics themselves (:mod:`chainrule.derive.topics`) are functions of the ``sympy`` module, called
only when a derivation is asked for: nothing here imports SymPy until then.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from chainrule.i18n import _, current, ngettext

#: Points at which a numeric check evaluates both sides, and the digits it evaluates them with.
NUMERIC_POINTS = 5
DIGITS = 30
TOLERANCE = 1e-20


@dataclass(frozen=True)
class Step:
    """One step: the equation as shown (``shown``), why it holds (``reason``), and the two sides SymPy
    compares. ``how`` is ``"simplify"`` (falling back to numeric points if that does not reach 0) or
    ``"numeric"``; ``given`` maps symbols to what the step assumes they are. ``tolerance`` is the largest
    relative difference a numeric check accepts (looser where a side holds float64 numbers). ``label``
    is prose shown before the equation ("the notes' column form"), which stays maths only."""

    shown: str
    reason: str
    lhs: Any
    rhs: Any
    how: str = "simplify"
    given: Mapping[Any, Any] = field(default_factory=dict)
    tolerance: float = TOLERANCE
    label: str = ""


@dataclass(frozen=True)
class Check:
    """The verdict on one step: ``verified``, ``how`` it was reached, and what was compared (``detail``)."""

    verified: bool
    how: str
    detail: str


@dataclass
class Derivation:
    """A topic worked out: what it starts from (``given``: definitions in maths, shown, not checked;
    ``about``: what they mean, in words), its ``steps``, and ``result``, the final formula as SymPy has
    it, which :attr:`against` compares with chainrule's own backward pass (or optimizer). ``domain``
    bounds the random values of symbols in numeric checks; ``checks`` is filled by :func:`verify`. ``lang``
    is the language its words were written in (the one in effect when it was built).

    ``against(rng)`` returns cases ``(values, library)``: a number for each of the result's symbols
    (:func:`bind` gives them for a matrix of symbols) and what chainrule computes there.
    """

    topic: str
    title: str
    given: list[str]
    steps: list[Step]
    result: Any
    against: Callable[[np.random.Generator], list[tuple[dict, Any]]] | None = None
    domain: Mapping[Any, tuple[float, float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    about: list[str] = field(default_factory=list)
    kinds: tuple[str, ...] = ()
    checks: list[Check] = field(default_factory=list)
    lang: str = field(default_factory=current)

    @property
    def verified(self) -> bool:
        return len(self.checks) == len(self.steps) and all(c.verified for c in self.checks)

    def __repr__(self) -> str:
        state = "verified" if self.verified else "not verified" if self.checks else "not checked"
        return f"Derivation({self.topic!r}: {self.title}, {len(self.steps)} steps, {state})"

    def _repr_markdown_(self) -> str:
        """Jupyter's display: the steps as ``chainrule derive --format markdown`` writes them."""
        from chainrule.derive.output import render

        return render(self, "markdown")


# -- checking ------------------------------------------------------------------------------------------
def verify(derivation: Derivation, sp: Any, seed: int = 0) -> Derivation:
    """Check every step of ``derivation`` (in place, into ``checks``) and return it."""
    rng = random.Random(seed)
    derivation.checks = [check_step(step, sp, derivation.domain, rng) for step in derivation.steps]
    return derivation


def check_step(step: Step, sp: Any, domain: Mapping[Any, tuple[float, float]], rng: random.Random) -> Check:
    """Whether ``step.lhs`` equals ``step.rhs``: by simplification, else at random points."""
    lhs, rhs = _substituted(step.lhs, step.given), _substituted(step.rhs, step.given)
    if _shape(lhs) != _shape(rhs):
        return Check(
            False, "shape", _("the sides have shapes {left} and {right}").format(left=_shape(lhs), right=_shape(rhs))
        )
    difference = lhs - rhs
    if step.how == "simplify" and _simplifies_to_zero(difference, sp):
        return Check(True, "simplify", "simplify(lhs − rhs) = 0")
    worst, point, symbolic = _numeric_difference(lhs, rhs, sp, domain, rng)
    fallback = "" if step.how == "numeric" else _("simplify did not reach 0; ")
    if symbolic:
        where = ngettext("at {n} random point", "at {n} random points", NUMERIC_POINTS).format(n=NUMERIC_POINTS)
    else:
        where = _("(no symbols: both sides are numbers)")
    if worst <= step.tolerance:
        agree = _("|lhs − rhs| ≤ {worst} relative {where}, {digits} digits")
        return Check(True, "numeric", fallback + agree.format(worst=f"{worst:.1e}", where=where, digits=DIGITS))
    differ = _("lhs − rhs = {worst} (relative) {where}").format(worst=f"{worst:.3g}", where=point or where)
    return Check(False, "numeric", fallback + differ)


def _substituted(expr: Any, given: Mapping[Any, Any]) -> Any:
    return expr.subs(dict(given)) if given else expr


def _shape(expr: Any) -> tuple[int, ...]:
    return tuple(expr.shape) if hasattr(expr, "shape") else ()


def _entries(expr: Any) -> list:
    return list(expr) if hasattr(expr, "shape") else [expr]


def _simplifies_to_zero(difference: Any, sp: Any) -> bool:
    return all(e == 0 or sp.expand(e) == 0 or sp.simplify(e) == 0 for e in _entries(difference))


def _numeric_difference(lhs, rhs, sp, domain, rng) -> tuple[float, str, bool]:
    """The largest relative difference of the two sides at random values of their symbols, where it was
    reached, and whether there were symbols at all."""
    symbols = sorted(
        set().union(*(e.free_symbols for e in (*_entries(lhs), *_entries(rhs)))),
        key=lambda s: s.name,
    )
    worst, where = 0.0, ""
    for _point in range(NUMERIC_POINTS if symbols else 1):
        values = {s: sp.Float(rng.uniform(*domain.get(s, _default_range(s))), DIGITS) for s in symbols}
        for a, b in zip(_entries(lhs), _entries(rhs), strict=True):
            left = sp.N(a.xreplace(values), DIGITS)
            right = sp.N(b.xreplace(values), DIGITS)
            try:
                gap = abs(complex(left - right)) / max(1.0, abs(complex(left)))
            except TypeError:  # a side that is not a number there (an undefined function): not verified
                return float("inf"), _("{value} (not a number)").format(value=left), bool(symbols)
            if gap > worst or gap != gap:
                worst = gap
                where = ", ".join(f"{s} = {float(v):.3g}" for s, v in values.items())
    return worst, where, bool(symbols)


def _default_range(symbol) -> tuple[float, float]:
    return (0.1, 2.0) if symbol.is_positive else (-2.0, 2.0)


# -- building blocks of the topics ------------------------------------------------------------------
def matrix(sp, name: str, rows: int, cols: int, **assumptions):
    """A ``rows × cols`` matrix of real symbols ``name_i_j`` (1-based, as the notes count)."""
    return sp.Matrix(rows, cols, lambda i, j: sp.Symbol(f"{name}_{i + 1}_{j + 1}", real=True, **assumptions))


def softmax_rows(sp, Z):
    """The softmax of each row of the matrix ``Z``, as SymPy expressions."""
    rows = []
    for i in range(Z.rows):
        total = sum(sp.exp(Z[i, j]) for j in range(Z.cols))
        rows.append([sp.exp(Z[i, j]) / total for j in range(Z.cols)])
    return sp.Matrix(rows)


def gradient(sp, f, X):
    """``∂f/∂X``: the matrix of the derivatives of the scalar ``f`` by each entry of ``X``."""
    return X.applyfunc(lambda x: sp.diff(f, x))


# -- from arrays to symbols, for the comparison with the library ----------------------------------------
def bind(symbols: Any, array: Any) -> dict:
    """``{symbol: number}`` for a matrix of symbols and an array of its shape (a vector for a row)."""
    values = np.asarray(array, dtype=np.float64).reshape(symbols.shape)
    return {s: float(v) for s, v in zip(symbols, values.ravel(), strict=True)}


def evaluate(expr: Any, values: Mapping, sp: Any) -> np.ndarray:
    """``expr`` (an expression or a matrix) at ``values``, as a float64 array."""
    values = {s: sp.Float(v, DIGITS) for s, v in values.items()}
    entries = [complex(sp.N(e.xreplace(values), DIGITS)).real for e in _entries(expr)]
    return np.array(entries, dtype=np.float64).reshape(_shape(expr))


def library_error(derivation: Derivation, sp: Any, seed: int = 0) -> float:
    """The largest relative difference ``max|a − b| / max(1e-8, |a| + |b|)`` between the derivation's
    result and chainrule's backward pass, over the cases of ``against`` (random float64 inputs)."""
    worst = 0.0
    for values, library in derivation.against(np.random.default_rng(seed)):
        ours = evaluate(derivation.result, values, sp)
        library = np.asarray(library, dtype=np.float64).reshape(ours.shape)
        worst = max(worst, float(np.max(np.abs(ours - library)) / max(1e-8, np.max(np.abs(ours) + np.abs(library)))))
    return worst
