"""``chainrule check``: read a hand-worked answer sheet as an examiner would — which numbers are right,
which are wrong only because an earlier wrong number was used correctly (error carried forward), and
which slip is at the root of the wrong ones.

An answers file (TOML) names values by their place in the JSON of ``chainrule explain``::

    loss = 0.25
    "layers[0].output" = [[2, -0.5], [0, 1]]
    "layers[2].grads.W" = [[-2], [0]]

An answer is right when every number is within half a unit of the last decimal it was written with
(``0.73`` accepts 0.7311, ``0.7`` accepts 0.65 to 0.75); an integer is exact where the right value is an
integer and read as rounded to units where it is not (``0`` is right for −1.8e-8, ``-1`` is not a rounded
−0.5). An empty string
(``""`` or ``"?"``) leaves an answer, or one entry of a matrix, unanswered.

Each answer gets a verdict:

* ``right`` — at the precision written, or exactly what the formula gives for the student's own
  rounded (right) numbers;
* ``carried_forward`` — wrong, but what the formula gives for the student's own earlier numbers, one of
  which was wrong (``expected_given_yours``);
* ``wrong`` — neither; its slip is looked for in the catalogue (:mod:`chainrule.explain.slips`): every
  slip at every place is replayed through the whole computation (:mod:`chainrule.explain.replay`) and the
  one that makes the most written numbers consistent is kept, then a second and a third where one does
  not explain every wrong number. A wrong number that no slip explains is said to be so, with the right
  value and its formula: nothing is guessed.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np
from numpy.typing import NDArray

from chainrule.explain.explanation import Explanation
from chainrule.explain.problem import ProblemFileError, read_toml
from chainrule.explain.replay import Placed, canonical, placements, replay, written_by
from chainrule.explain.slips import SLIPS
from chainrule.i18n import N_, _, display_width, language, ngettext, pgettext

_PATH = re.compile(
    r"^(loss|data_loss|l2_penalty|final_loss|loss_grad|steps|history\[-?\d+\]|"
    r"layers\[-?\d+\]\.(output|input|grad_output|grad_input|local_derivative|"
    r"(grads|params|params_after|details)\.\w+|moments\.\w+\.\w+))$"
)
#: What a student writes for an answer, or an entry of one, left blank.
BLANKS = ("", "?")
#: Slips combined at most in one diagnosis.
MAX_SLIPS = 3
VERDICTS = ("right", "carried_forward", "wrong", "unanswered")
_ORDER = {slip.id: k for k, slip in enumerate(SLIPS)}


class Written(float):
    """A number as a person wrote it: its value and the half-unit of its last written decimal."""

    tolerance: float

    def __new__(cls, text: str) -> Written:
        number = super().__new__(cls, text)
        exponent = Decimal(text.replace("_", "")).as_tuple().exponent
        try:
            number.tolerance = 0.5 * 10.0**exponent if isinstance(exponent, int) else 0.0
        except OverflowError:  # 1e400: not a finite number anyway, which the answers' check reports
            number.tolerance = float("inf")
        return number


@dataclass
class Answers:
    """An answers file: the written values by path as written, and the paths that name nothing."""

    values: dict[str, Any]
    unknown: list[str] = field(default_factory=list)
    path: str = "<answers>"


@dataclass
class Verdict:
    """The verdict on one answer. ``right`` is kept for the first JSON contract (true for ``"right"``);
    ``root`` is the path of the root this answer is (or follows from); ``slip`` the id of its slip."""

    path: str
    right: bool
    written: Any
    expected: Any
    causes: list[str] = field(default_factory=list)
    verdict: str = "wrong"
    expected_given_yours: Any = None
    slip: str | None = None
    root: str | None = None


@dataclass
class Root:
    """One independent error: the first wrong answer it makes, its slip (``None``: none known explains
    it) and the answers that follow from it."""

    path: str
    slip: str | None
    description: str
    explains: list[str]
    alternatives: list[str] = field(default_factory=list)


@dataclass
class CheckReport:
    verdicts: list[Verdict]
    roots: list[Root]
    credit: float = 1.0
    unknown: list[str] = field(default_factory=list)

    def __iter__(self):
        return iter(self.verdicts)

    @property
    def score(self) -> dict[str, Any]:
        counts = {name: sum(v.verdict == name for v in self.verdicts) for name in VERDICTS}
        mark = counts["right"] + self.credit * counts["carried_forward"]
        return {**counts, "mark": mark, "out_of": len(self.verdicts)}

    def _repr_html_(self) -> str:
        """Jupyter's display: the sheet coloured by verdict, with the root slips (see :func:`report_html`)."""
        return report_html(self)

    @property
    def all_right(self) -> bool:
        """Every answer right or left blank, and at least one right."""
        verdicts = [v.verdict for v in self.verdicts]
        return "right" in verdicts and all(v in ("right", "unanswered") for v in verdicts)


# -- reading the sheet ---------------------------------------------------------------------------
def load_answers(path: str) -> Answers:
    """The answers of ``path`` by their JSON place, with each number's written precision kept; places
    that name nothing in the output of ``chainrule explain`` are listed in ``unknown``."""
    doc = read_toml(path, parse_float=Written)
    answers = doc.get("answers", doc)
    if not isinstance(answers, dict):
        raise ProblemFileError(_("{path}: answers: expected a table of values").format(path=path))
    answers = {k: v for k, v in answers.items() if k not in ("title", "problem", "variant")}
    if not answers:
        raise ProblemFileError(
            _('{path}: no answers found; write e.g. loss = 0.25 or "layers[0].output" = [[1, 2]]').format(path=path)
        )
    unknown = [key for key in answers if not _PATH.match(key)]  # listed by CheckReport.unknown
    if len(unknown) == len(answers):
        raise ProblemFileError(
            _(
                "{path}: {keys}: not a place in the output of chainrule explain; expected e.g. loss, final_loss, "
                "history[0], layers[0].output, layers[1].grad_input, layers[2].grads.W, layers[0].params_after.b"
            ).format(path=path, keys=", ".join(unknown))
        )
    known = {key: value for key, value in answers.items() if key not in unknown}
    for key, value in known.items():
        array = _numbers(value, f"{path}: {key}")
        if np.isinf(array).any():
            raise ProblemFileError(_("{where}: expected finite numbers").format(where=f"{path}: {key}"))
    return Answers(known, unknown, path)


def _numbers(value: Any, where: str) -> NDArray:
    """The written value as floats, NaN for blanks."""

    def number(v: Any) -> Any:
        if isinstance(v, list):
            return [number(x) for x in v]
        if isinstance(v, str) and v.strip() in BLANKS:
            return float("nan")
        if isinstance(v, str):  # a number written in the quotes of the answer template: "0.25"
            try:
                v = _quoted(v)
            except (ValueError, ArithmeticError):
                raise ProblemFileError(_not_a_number().format(where=where, got=v)) from None
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ProblemFileError(_not_a_number().format(where=where, got=v))
        if not math.isfinite(v):
            raise ProblemFileError(
                _('{where}: expected finite numbers, got {got}; "" or "?" leaves an answer blank').format(
                    where=where, got=v
                )
            )
        return v

    try:
        array = np.array(number(value), dtype=np.float64)
    except OverflowError:
        raise ProblemFileError(_("{where}: expected finite numbers").format(where=where)) from None
    except (TypeError, ValueError):
        raise ProblemFileError(
            _("{where}: expected a number or a matrix of numbers (rows of equal length)").format(where=where)
        ) from None
    if array.size == 0 and not (isinstance(value, list) and value == []):
        raise ProblemFileError(_("{where}: expected a number or a matrix of numbers").format(where=where))
    return array


def _not_a_number() -> str:
    return _("{where}: expected a number or a matrix of numbers, got {got!r}")


def _quoted(text: str) -> Written | int:
    """A number written inside quotes, read as TOML would read it without them (its precision kept)."""
    text = text.strip()
    return Written(text) if any(c in text for c in ".eE") else int(text)


def _tolerances(written: Any) -> Any:
    """Per entry: the half-unit of a written decimal, ``-1`` for an integer (whose tolerance depends on
    the value it is compared with), 0 for a blank."""
    if isinstance(written, list):
        return [_tolerances(w) for w in written]
    if isinstance(written, str) and written.strip() not in BLANKS:  # a number in quotes
        written = _quoted(written)
    if isinstance(written, Written):
        return written.tolerance
    return -1.0 if isinstance(written, int) else 0.0


class _Sheet:
    """The written numbers by canonical path, NaN for blanks, with the half-unit of each entry's last
    written decimal (-1 for an integer): a :class:`~chainrule.explain.replay.Sheet` for :func:`replay`,
    and the comparisons."""

    def __init__(self, values: dict[str, NDArray], half_units: dict[str, NDArray], slack=None) -> None:
        self.values, self.half_units = values, half_units
        #: Per path, how many roundings an answer may carry: a value after t steps worked by hand, of
        #: which only the first is written, may be off by the rounding of each step.
        self.slack: dict[str, int] = slack or {}

    def tol(self, path: str, against: NDArray) -> NDArray:
        """The tolerance of each written entry of ``path`` compared with ``against``: its half-unit, and
        for an integer 0 where ``against`` is an integer, ½ where it is not."""
        half = self.half_units[path]
        written = self.values[path]
        integral = np.abs(against - np.round(against)) <= 1e-9
        tol = np.where(half < 0, np.where(integral, 0.0, 0.5 * (1 - 1e-6)), half)  # −1 is not a rounded −0.5
        return tol * self.slack.get(path, 1) + 1e-9 * np.maximum(1.0, np.abs(np.nan_to_num(written)))

    def fits(self, path: str, *candidates: NDArray | None) -> bool:
        """Whether every written entry lies within its tolerance of one of the candidates, or between
        them (a student who rounded some intermediate numbers and not others)."""
        written = self.values[path]
        arrays = [np.asarray(c, dtype=np.float64) for c in candidates if c is not None]
        arrays = [a for a in arrays if a.shape == written.shape and np.all(np.isfinite(a))]
        if not arrays or np.isnan(written).all():
            return False
        tol = np.max([self.tol(path, a) for a in arrays], axis=0)
        lo, hi = np.min(arrays, axis=0) - tol, np.max(arrays, axis=0) + tol
        blank = np.isnan(written)
        return bool(np.all(blank | ((written >= lo) & (written <= hi))))


# -- checking ---------------------------------------------------------------------------------------
def check_answers(
    explanation: Explanation, answers: Answers, path: str | None = None, credit: float = 1.0, lang: str | None = None
) -> CheckReport:
    """The verdict on every answer, the root errors, and the score (carried-forward answers earn
    ``credit``: 1 for full credit, 0.5 for half). The descriptions of slips and causes are written in
    ``lang`` (by default the language in effect, see :mod:`chainrule.i18n`)."""
    with language(lang):
        return _Checker(explanation, answers, path or answers.path, credit).run()


class _Checker:
    def __init__(self, explanation: Explanation, answers: Answers, path: str, credit: float) -> None:
        self.explanation, self.answers, self.path, self.credit = explanation, answers, path, credit
        self.problem = explanation.problem
        self.layers = len(self.problem.model.layers)
        self.steps = len(explanation.history)
        self.right = replay(self.problem, steps=self.steps)
        self.order = {p: k for k, p in enumerate(self.right)}
        self.alternatives: dict[Placed, list[Placed]] = {}  # per chosen slip, those giving the same numbers

    def run(self) -> CheckReport:
        written, half_units, misfits, blanks = {}, {}, [], []
        self.paths: dict[str, str] = {}  # answered path -> canonical
        self.twice: dict[str, tuple] = {}  # a value written again under its other name, with other numbers
        for key, value in self.answers.values.items():
            c = canonical(key, self.layers, self.steps) if _valid_index(key, self.layers) else None
            if c is None or c not in self.right:
                misfits.append(_("{key}: the problem has no such value").format(key=key))
                continue
            array = _numbers(value, f"{self.path}: {key}")
            half = np.broadcast_to(np.array(_tolerances(value), dtype=np.float64), array.shape)
            expected = self.right[c]
            column = expected.ndim <= 1 or min(expected.shape) == 1
            if array.shape != expected.shape and array.ndim <= 1 and array.size == expected.size and column:
                array, half = array.reshape(expected.shape), half.reshape(expected.shape)  # a vector as a flat list
            if array.size == 0 or np.isnan(array).all():
                blanks.append(key)
                self.paths[key] = c
                continue
            if c in written and not np.array_equal(written[c], array, equal_nan=True):
                self.twice[key] = (c, array, np.array(half))  # judged on its own, against the right value
                continue
            self.paths[key] = c
            written[c], half_units[c] = array, np.array(half)
        later = {c: self.steps for c in written if self._later(c)}
        self.sheet = _Sheet(written, half_units, later)
        places = [np.round(-np.log10(2 * h[h > 0])) for h in half_units.values() if np.any(h > 0)]
        counts = np.unique(np.concatenate(places), return_counts=True) if places else None
        self.decimals = int(counts[0][np.argmax(counts[1])]) if counts else None  # the sheet's usual precision
        answered = [k for k in self.paths if k not in blanks]
        shapes = [k for k in answered if self.sheet.values[self.paths[k]].shape != self.right[self.paths[k]].shape]
        self._refuse_misfits(misfits, shapes, len(self.answers.values))
        return self._judge(answered, blanks, misfits)

    def _refuse_misfits(self, misfits: list[str], shapes: list[str], total: int) -> None:
        def described(key: str) -> str:
            c = self.paths[key]
            return _("{key}: written {written}, the problem's is {right}").format(
                key=key, written=self.sheet.values[c].shape, right=self.right[c].shape
            )

        # shapes that no transposition explains
        odd = [k for k in shapes if self.sheet.values[self.paths[k]].shape[::-1] != self.right[self.paths[k]].shape]
        wrong = misfits + [described(k) for k in odd]
        if wrong and (len(wrong) == total or (len(wrong) >= 2 and 2 * len(wrong) >= total)):
            raise ProblemFileError(
                _(
                    "{path}: these answers do not fit the problem {problem}: {misfits} (is it the answers file of "
                    "another problem?)"
                ).format(path=self.path, problem=self.problem.path, misfits="; ".join(wrong))
            )

    # -- verdicts ------------------------------------------------------------------------------------
    def _consistent(self, worlds: tuple[dict, ...]) -> set[str]:
        return {c for c in self.sheet.values if self.sheet.fits(c, *(w.get(c) for w in worlds))}

    def _worlds(self, slips: tuple[Placed, ...] = (), sheet: _Sheet | None = None) -> tuple[dict, ...]:
        """The student's numbers put in as written (a student who goes on with what they wrote), where
        they differ from the computed ones (one who carried more digits), and every number rounded as they
        write them (one who rounds what they do not write too: an intermediate value, the later steps)."""
        sheet = sheet or self.sheet
        worlds = (
            replay(self.problem, slips, sheet, snap=False, steps=self.steps),
            replay(self.problem, slips, sheet, snap=True, steps=self.steps),
        )
        if self.decimals is not None:
            worlds += (replay(self.problem, slips, sheet, steps=self.steps, round_to=self.decimals),)
        return worlds

    def _judge(self, answered: list[str], blanks: list[str], misfits: list[str]) -> CheckReport:
        sheet, right = self.sheet, self.right
        is_right = {c for c in sheet.values if sheet.fits(c, right[c])}
        rounded: set[str] = set()
        while True:  # what the formulas give for the student's right (rounded) numbers, and so on
            ok = is_right | rounded
            only = _Sheet({c: sheet.values[c] for c in ok}, {c: sheet.half_units[c] for c in ok}, sheet.slack)
            more = self._consistent(self._worlds((), only)) - ok
            if not more:
                break
            rounded |= more
        self.base = self._worlds()
        carried = self._consistent(self.base) - is_right - rounded
        wrong = set(sheet.values) - is_right - rounded - carried
        chosen, consistent = self._search(wrong) if wrong else ((), set())
        # what the slips wrote themselves, what they made wrong where the student wrote nothing before,
        # and what follows from the student's own wrong numbers (carried forward)
        sites = [site for placed in chosen for site in placed.sites]
        direct = {c for c in wrong & consistent if any(written_by(site, c) for site in sites)}
        unexplained = wrong - consistent
        # a slip the student made where they wrote nothing is not an error carried forward: the entries it
        # makes wrong are consistent only with it, not with the slips at the places they wrote
        seen = tuple(
            Placed(p.slip, frozenset(t for t in p.sites if any(written_by(t, c) for c in sheet.values)), p.where)
            for p in chosen
        )
        self.given = self._worlds(seen) if chosen else self.base
        candidates = (wrong & consistent & self._consistent(self.given)) - direct
        later = {c for c in candidates if self._later(c)}  # after the first step: from the slip's own steps
        follows = set(self._following(direct | unexplained, candidates | carried, seen)) | later
        carried |= candidates & follows
        slipped = (wrong & consistent) - carried
        roots = self._roots(chosen, consistent, slipped, unexplained, carried)

        verdicts: list[Verdict] = []
        root_of = {p: r for r in roots for p in [r.path, *r.explains]}
        for key in [*answered, *blanks]:
            c = self.paths[key]
            v = Verdict(key, False, self.answers.values[key], right[c].tolist())
            root = root_of.get(c)
            if key in blanks:
                v.verdict = "unanswered"
            elif c in is_right or c in rounded:
                v.right, v.verdict = True, "right"
                if c in rounded:
                    v.causes.append(_("right for your own rounded numbers (the exact value is shown)"))
            elif c in carried:
                v.verdict = "carried_forward"
                world = self.base[0] if sheet.fits(c, *(w.get(c) for w in self.base)) else self.given[0]
                v.expected_given_yours = world[c].tolist() if c in world else None
                v.root = _shown(root.path, self) if root else None
                v.causes.append(_carried(_shown(root.path, self) if root else None, world.get(c)))
            else:
                v.root = _shown(root.path if root else c, self)
                v.slip = root.slip if root else None
                v.causes.append(self._cause(c, root))
            verdicts.append(v)
        for key, (c, array, half) in self.twice.items():
            other = _shown(c, self)
            v = Verdict(key, False, self.answers.values[key], right[c].tolist())
            if _Sheet({c: array}, {c: half}).fits(c, right[c]):
                v.right, v.verdict = True, "right"
            else:
                v.root = key
                v.causes.append(
                    _("the value of {other}, written here with other numbers; right: {right}").format(
                        other=other, right=_show(right[c])
                    )
                )
            verdicts.append(v)
        order = {**self.paths, **{k: c for k, (c, *_) in self.twice.items()}}
        verdicts.sort(key=lambda v: self.order.get(order[v.path], len(self.order)))
        for root in roots:
            root.path = _shown(root.path, self)
            root.explains = [_shown(p, self) for p in root.explains]
        not_a_place = _("{key}: not a place in the output of chainrule explain")
        unknown = [not_a_place.format(key=key) for key in self.answers.unknown]
        return CheckReport(verdicts, roots, self.credit, unknown + misfits)

    def _later(self, c: str) -> bool:
        """Whether ``c`` is computed after the first step (its later losses, and the parameters after
        several steps)."""
        return c.startswith("history[") or c == "final_loss" or (self.steps > 1 and ".params_after." in c)

    def _cause(self, c: str, root: Root | None) -> str:
        if root is None or root.slip is None:
            return self._unexplained(c)
        if _shown(root.path, self) == _shown(c, self):
            return root.description
        return _("the same slip as in {path}: {slip}").format(path=_shown(root.path, self), slip=_slip_words(root.slip))

    def _unexplained(self, c: str) -> str:
        from chainrule.explain.entries import formula

        formula = formula(self.explanation, c)
        written, right = self.sheet.values[c], self.right[c]
        if written.shape != right.shape:
            shown = _("written with shape {shape}").format(shape=written.shape)
        else:
            given = self.base[0].get(c, right)
            entry, whole = _("{index} is {written}, not {right}"), _("the value is {written}, not {right}")
            off = [
                (entry if index else whole).format(
                    index="".join(f"[{i}]" for i in index), written=_num(written[index]), right=_num(given[index])
                )
                for index in map(
                    tuple, np.argwhere(~np.isnan(written) & ~(np.abs(written - given) <= self.sheet.tol(c, given)))
                )
            ]
            shown = "; ".join(off[:4]) + ("; …" if len(off) > 4 else "")
        if formula:
            text = _("no known slip explains this ({details}); the right value is {right}, computed as {formula}")
        else:
            text = _("no known slip explains this ({details}); the right value is {right}")
        return text.format(details=shown, right=_show(right), formula=formula)

    # -- the search for slips ----------------------------------------------------------------------------
    def _search(self, wrong: set[str]) -> tuple[tuple[Placed, ...], set[str]]:
        base = self._consistent(self.base)
        scored = []
        written = set(self.sheet.values)
        for k, placed in enumerate(placements(self.problem)):
            consistent = self._consistent(self._worlds((placed,)))
            own = {c for c in written if any(written_by(site, c) for site in placed.sites)}
            # evidence: a wrong answer it explains besides a later loss (one number, after many steps)
            evidence = {c for c in consistent & wrong if not (c.startswith("history[") or c == "final_loss")}
            if len(consistent) > len(base) and evidence and own <= consistent:
                scored.append((k, placed, consistent))  # (a slip whose own numbers the sheet contradicts is not)
        chosen: tuple[Placed, ...] = ()
        explained = base
        while scored and len(chosen) < MAX_SLIPS and wrong - explained:
            options = []
            for k, placed, alone in scored:
                if not (alone & wrong) - explained or placed in chosen:
                    continue
                together = alone if not chosen else self._consistent(self._worlds((*chosen, placed)))
                gain = len(together) - len(explained)
                if gain > 0:
                    options.append((-gain, placed.everywhere, _ORDER[placed.slip.id], k, placed, together))
            if not options:
                break
            options.sort(key=lambda o: o[:4])
            best = options[0]
            self.alternatives[best[4]] = [
                o[4] for o in options[1:] if o[0] == best[0] and o[5] == best[5] and o[4].slip.id != best[4].slip.id
            ]
            chosen, explained = (*chosen, best[4]), best[5]
        return chosen, explained

    def _roots(
        self,
        chosen: tuple[Placed, ...],
        consistent: set[str],
        slipped: set[str],
        unexplained: set[str],
        carried: set[str],
    ) -> list[Root]:
        """One root per chosen slip (``consistent``: the answers consistent with all of them) and one per
        answer no slip explains."""
        roots: list[Root] = []
        alternatives = self.alternatives
        for placed in chosen:
            others = tuple(p for p in chosen if p is not placed)
            without = self._consistent(self._worlds(others)) if others else self._consistent(self.base)
            mine = sorted((consistent - without) & slipped, key=self.order.__getitem__)
            if not mine:
                continue
            follows = self._following(set(mine), carried, chosen)
            alts = list(dict.fromkeys(p.slip.id for p in alternatives.get(placed, [])))
            roots.append(Root(mine[0], placed.slip.id, _describe(placed, alts), [*mine[1:], *follows], alts))
        for c in sorted(unexplained, key=self.order.__getitem__):
            roots.append(Root(c, None, self._unexplained(c), self._following({c}, carried, chosen)))
        roots.sort(key=lambda r: self.order[r.path])
        return roots

    def _following(self, sources: set[str], candidates: set[str], slips: tuple[Placed, ...] = ()) -> list[str]:
        """Those of ``candidates`` whose value (with ``slips``, from the student's numbers) depends on the
        written numbers of ``sources``, or on those of the candidates that depend on them, and so on."""
        sources, follows = set(sources), set()
        base = replay(self.problem, slips, self.sheet, steps=self.steps)
        while True:  # the sources' numbers made right: what changes depends on them
            values = {c: self.right[c] if c in sources else v for c, v in self.sheet.values.items()}
            sheet = _Sheet(values, self.sheet.half_units, self.sheet.slack)
            without = replay(self.problem, slips, sheet, steps=self.steps)
            new = {
                c for c in candidates - follows if c in base and (c not in without or not _same(without[c], base[c]))
            }
            if not new:
                return sorted(follows, key=self.order.__getitem__)
            follows |= new
            sources |= new


def _same(a: NDArray, b: NDArray) -> bool:
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=1e-12, atol=1e-12))


def _valid_index(key: str, layers: int) -> bool:
    match = re.match(r"layers\[(-?\d+)\]", key)
    return match is None or -layers <= int(match.group(1)) < layers


def _shown(c: str, checker: _Checker) -> str:
    """The path as the student wrote it (the first of theirs with this canonical path), else ``c``."""
    for key, canon in checker.paths.items():
        if canon == c:
            return key
    return c


def _slip_words(slip_id: str) -> str:
    return next(_(s.words) for s in SLIPS if s.id == slip_id)


def _carried(root: str | None, yours: Any) -> str:
    """Why an answer is carried forward: the earlier error it follows from, and what the formula gives for
    the student's own numbers."""
    if root is not None and yours is not None:
        text = _("follows from your earlier error in {root}: right for your numbers ({yours})")
    elif root is not None:
        text = _("follows from your earlier error in {root}")
    elif yours is not None:
        text = _("follows from your earlier error: right for your numbers ({yours})")
    else:
        text = _("follows from your earlier error")
    return text.format(root=root, yours=None if yours is None else _show(yours))


def _describe(placed: Placed, alternatives: list[str]) -> str:
    slip = placed.slip
    where = _("at every place it applies") if placed.everywhere else placed.where
    values = {"slip": _(slip.words), "where": where, "wrong": _(slip.wrong), "right": _(slip.right), "id": slip.id}
    if alternatives:
        text = _("{slip}, {where}: {wrong} instead of {right} [{id}] (or, giving the same numbers here: {others})")
        return text.format(**values, others=", ".join(alternatives))
    return _("{slip}, {where}: {wrong} instead of {right} [{id}]").format(**values)


# -- output ---------------------------------------------------------------------------------------------
def _num(x: float) -> str:
    return f"{x:.6g}"


def _show(array: Any) -> str:
    return np.array2string(
        np.asarray(array, dtype=np.float64) + 0.0, precision=6, suppress_small=True, separator=", "
    ).replace("\n", "")


_MARKS = {"right": "✓", "carried_forward": "↪", "wrong": "✗", "unanswered": "·"}


def _score_line(result: CheckReport) -> str:
    score = result.score
    values = {**score, "mark": f"{score['mark']:g}", "credit": f"{result.credit:g}", "n": score["out_of"]}
    if result.credit == 1:
        text = ngettext(
            "{right} of {out_of} answer right, {carried_forward} carried forward, {wrong} wrong, {unanswered} "
            "unanswered: mark {mark} of {out_of} (carried-forward answers earn full credit)",
            "{right} of {out_of} answers right, {carried_forward} carried forward, {wrong} wrong, {unanswered} "
            "unanswered: mark {mark} of {out_of} (carried-forward answers earn full credit)",
            score["out_of"],
        )
    else:
        text = ngettext(
            "{right} of {out_of} answer right, {carried_forward} carried forward, {wrong} wrong, {unanswered} "
            "unanswered: mark {mark} of {out_of} (carried-forward answers earn {credit} credit)",
            "{right} of {out_of} answers right, {carried_forward} carried forward, {wrong} wrong, {unanswered} "
            "unanswered: mark {mark} of {out_of} (carried-forward answers earn {credit} credit)",
            score["out_of"],
        )
    return text.format(**values)


def report(result: CheckReport, lang: str | None = None) -> str:
    """The text report: the root errors in a sentence or two each, the score, then every answer; in
    ``lang`` (by default the language in effect; the causes are in the language they were checked in)."""
    with language(lang):
        lines: list[str] = []
        for k, root in enumerate(result.roots, 1):
            lines.append(
                _("Root {k} — {path}: {description}.").format(k=k, path=root.path, description=root.description)
            )
            if root.explains:
                lines.append("    " + _("follows from it: {paths}").format(paths=", ".join(root.explains)))
        if result.roots:
            lines.append("")
        lines.append(_score_line(result))
        if result.unknown:
            lines.append(_("not checked: {reasons}").format(reasons="; ".join(result.unknown)))
        lines.append("")
        labels = {"written": _("written:"), "right": _("right:")}
        width = max(display_width(label) for label in labels.values())
        written_label, right_label = (label + " " * (width - display_width(label)) for label in labels.values())
        for v in result.verdicts:
            unanswered = "  " + _("(unanswered)") if v.verdict == "unanswered" else ""
            lines.append(f"{_MARKS[v.verdict]} {v.path}{unanswered}")
            if v.verdict in ("right", "unanswered") and not v.causes:
                continue
            if v.verdict != "right":
                lines.append(f"    {written_label} {_show(_numbers(v.written, v.path))}")
                lines.append(f"    {right_label} {_show(v.expected)}")
            lines.extend(f"    → {cause}" for cause in v.causes)
        return "\n".join(lines) + "\n"


_WORDS = {
    "right": N_("right"),
    "carried_forward": N_("carried forward"),
    "wrong": N_("wrong"),
    "unanswered": N_("unanswered"),
}


def report_html(result: CheckReport, lang: str | None = None) -> str:
    """The report as HTML (the body of ``chainrule check --format html``, and Jupyter's display): the
    root slips, the score, then the sheet with each answer coloured right, carried forward, wrong or
    unanswered, and what was written beside what is right; in ``lang`` (by default the language in
    effect)."""
    from chainrule.html import escape

    with language(lang):
        out = []
        if result.roots:
            heading = _("Root slips")
            out.append(f"<h2>{escape(heading)}</h2><ol>")
            for root in result.roots:
                follows = _("follows from it: {paths}").format(paths=", ".join(root.explains))
                small = f"<br><small>{escape(follows)}</small>" if root.explains else ""
                line = _("{path}: {description}.").format(
                    path=f"<b>{escape(root.path)}</b>", description=escape(root.description)
                )
                out.append(f"<li>{line}{small}</li>")
            out.append("</ol>")
        out.append(f'<p class="score">{escape(_score_line(result))}</p>')
        if result.unknown:
            unchecked = _("not checked: {reasons}").format(reasons="; ".join(result.unknown))
            out.append(f"<p>{escape(unchecked)}</p>")
        headers = [_("answer"), _("verdict"), _("written"), pgettext("the right value", "right"), _("why")]
        out.append('<table class="grid sheet"><thead><tr>' + "".join(f"<th>{escape(h)}</th>" for h in headers))
        out.append("</tr></thead><tbody>")
        for v in result.verdicts:
            written = "" if v.verdict == "unanswered" else _show(_numbers(v.written, v.path))
            right = "" if v.verdict == "right" else _show(v.expected)
            out.append(
                f'<tr class="{v.verdict}" data-verdict="{v.verdict}"><td>{escape(v.path)}</td>'
                f"<td>{_MARKS[v.verdict]} {escape(_(_WORDS[v.verdict]))}</td><td><code>{escape(written)}</code></td>"
                f"<td><code>{escape(right)}</code></td><td>{'<br>'.join(escape(c) for c in v.causes)}</td></tr>"
            )
        out.append("</tbody></table>")
        return "\n".join(out)


def verdicts_to_json(result: CheckReport) -> dict:
    """The JSON of ``chainrule check --format json``: the first contract's keys (``right``, ``total``,
    ``answers`` with ``path``, ``right``, ``written``, ``expected``, ``causes``) and the diagnosis's
    (``roots``, ``score``, ``unknown``; per answer ``verdict``, ``expected_given_yours``, ``slip``, ``root``)."""
    return {
        "right": sum(v.right for v in result.verdicts),
        "total": len(result.verdicts),
        "score": result.score,
        "roots": [
            {
                "path": r.path,
                "slip": r.slip,
                "description": r.description,
                "explains": r.explains,
                "alternatives": r.alternatives,
            }
            for r in result.roots
        ],
        "unknown": result.unknown,
        "answers": [
            {
                "path": v.path,
                "right": v.right,
                "verdict": v.verdict,
                "written": np.where(np.isnan(w := _numbers(v.written, v.path)), None, w).tolist(),
                "expected": v.expected,
                "expected_given_yours": v.expected_given_yours,
                "slip": v.slip,
                "root": v.root,
                "causes": v.causes,
            }
            for v in result.verdicts
        ],
    }
