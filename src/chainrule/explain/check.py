"""``chainrule check``: compare the numbers of a hand-worked solution with the right ones, and guess
the slip behind each wrong one.

An answers file (TOML) names values by their place in the JSON of ``chainrule explain``::

    loss = 0.25
    "layers[0].output" = [[2, -0.5], [0, 1]]
    "layers[2].grads.W" = [[-2], [0]]

An answer is right when every number is within half a unit of the last decimal it was written with
(``0.73`` accepts 0.7311, ``0.7`` accepts 0.65 to 0.75); an integer (``2``, ``-1``) is read as exact.
A wrong answer is compared with the usual slips: transposed, wrong sign (all or some entries), off by the
loss scale's ``1/n`` or ``½``, an update with a transposed or mis-scaled gradient, a value of another step,
rounding of intermediate values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np
from numpy.typing import NDArray

from chainrule.explain.explanation import Explanation, StepRecord, to_json
from chainrule.explain.problem import ProblemFileError, read_toml
from chainrule.losses import SCALE_FORMULAS

_PATH = re.compile(
    r"^(loss|data_loss|l2_penalty|final_loss|loss_grad|steps|history\[-?\d+\]|"
    r"layers\[-?\d+\]\.(output|input|grad_output|grad_input|local_derivative|"
    r"(grads|params|params_after)\.\w+))$"
)
#: Relative distance under which a wrong value is called "close" (rounded intermediate values).
CLOSE = 0.05


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
class Verdict:
    path: str
    right: bool
    written: Any
    expected: Any
    causes: list[str] = field(default_factory=list)


def load_answers(path: str) -> dict[str, Any]:
    """The answers of ``path`` by their JSON place, with each number's written precision kept."""
    doc = read_toml(path, parse_float=Written)
    answers = doc.get("answers", doc)
    if not isinstance(answers, dict):
        raise ProblemFileError(f"{path}: answers: expected a table of values")
    answers = {k: v for k, v in answers.items() if k not in ("title", "problem")}
    if not answers:
        raise ProblemFileError(f'{path}: no answers found; write e.g. loss = 0.25 or "layers[0].output" = [[1, 2]]')
    for key, value in answers.items():
        if not _PATH.match(key):
            raise ProblemFileError(
                f"{path}: {key}: not a place in the output of chainrule explain; expected e.g. loss, "
                "final_loss, history[0], layers[0].output, layers[1].grad_input, layers[2].grads.W, "
                "layers[0].params_after.b"
            )
        try:
            array = np.array(value, dtype=np.float64)
        except OverflowError:
            raise ProblemFileError(f"{path}: {key}: expected finite numbers") from None
        except (TypeError, ValueError):
            raise ProblemFileError(f"{path}: {key}: expected a number or a matrix of numbers") from None
        if array.size == 0 or not np.all(np.isfinite(array)):
            raise ProblemFileError(f"{path}: {key}: expected finite numbers")
    return answers


def check_answers(explanation: Explanation, answers: dict[str, Any], path: str = "<answers>") -> list[Verdict]:
    values = to_json(explanation)
    return [_judge(key, written, explanation, values, path) for key, written in answers.items()]


def _lookup(values: dict, key: str, path: str) -> Any:
    node: Any = values
    for part in re.findall(r"\w+|\[-?\d+\]", key):
        try:
            node = node[int(part[1:-1])] if part.startswith("[") else node[part]
        except (IndexError, KeyError, TypeError):
            raise ProblemFileError(f"{path}: {key}: the problem has no such value ({part} not found)") from None
    return node


def _tolerances(written: Any) -> NDArray:
    if isinstance(written, list):
        return np.array([_tolerances(w) for w in written], dtype=np.float64)
    if isinstance(written, Written):
        return np.float64(written.tolerance)
    return np.float64(0.0)  # an integer is read as exact: −1 is not a rounded −0.5


def _judge(key: str, written: Any, explanation: Explanation, values: dict, path: str) -> Verdict:
    expected = np.array(_lookup(values, key, path), dtype=np.float64)
    answer = np.array(written, dtype=np.float64)
    tol = np.broadcast_to(_tolerances(written), answer.shape) + 1e-9 * np.abs(answer)
    verdict = Verdict(key, False, written, expected.tolist())
    answer, tol = _align(answer, tol, expected)
    if answer is None:
        if np.array(written).shape[::-1] == expected.shape and expected.ndim == 2:
            t_answer = np.array(written, dtype=np.float64).T
            t_tol = np.broadcast_to(_tolerances(written), np.array(written).shape).T
            if _matches(t_answer, t_tol, expected):
                verdict.causes.append(f"transposed: the right value has shape {expected.shape}, this is its transpose")
                return verdict
        verdict.causes.append(f"shape {np.array(written, dtype=np.float64).shape}, expected {expected.shape}")
        return verdict
    if _matches(answer, tol, expected):
        verdict.right = True
        return verdict
    verdict.causes = _diagnose(key, answer, tol, expected, explanation, values)
    return verdict


def _align(answer: NDArray, tol: NDArray, expected: NDArray):
    """The answer in the expected shape: a vector may be written as a flat list. ``(None, None)`` when
    the shapes do not fit."""
    if answer.shape == expected.shape:
        return answer, tol
    if answer.ndim <= 1 and answer.size == expected.size and (expected.ndim <= 1 or min(expected.shape) == 1):
        return answer.reshape(expected.shape), tol.reshape(expected.shape)
    return None, None


def _matches(answer: NDArray, tol: NDArray, expected: NDArray) -> bool:
    return answer.shape == expected.shape and bool(np.all(np.abs(answer - expected) <= tol))


def _close(answer: NDArray, expected: NDArray) -> bool:
    scale = np.maximum(np.abs(expected), 1e-12)
    return answer.shape == expected.shape and bool(np.all(np.abs(answer - expected) <= CLOSE * scale + 1e-9))


def _diagnose(
    key: str, answer: NDArray, tol: NDArray, expected: NDArray, explanation: Explanation, values: dict
) -> list[str]:
    """The first known slip that turns the right value into the written one; failing that, which
    entries differ and how."""
    causes: list[str] = []
    for description, candidate in _candidates(key, expected, explanation, values):
        if candidate.shape == answer.shape and _matches(answer, tol, candidate):
            causes.append(description)
    if causes:
        return causes[:1]
    return _entrywise(answer, tol, expected)


def _candidates(key: str, expected: NDArray, explanation: Explanation, values: dict):
    problem = explanation.problem
    n = problem.X.shape[0]
    scale = problem.loss.scale
    scale_text = SCALE_FORMULAS[scale]
    factors = [
        (n, f"n = {n} times the right value: the 1/n of the loss scale {scale_text} is missing"),
        (1 / n, f"1/n = 1/{n} of the right value: divided by n once too often"),
        (2, "twice the right value: a factor ½ is missing"),
        (0.5, "half the right value: an extra factor ½"),
        (2 * n, f"2n = {2 * n} times the right value: the 1/(2n) is missing"),
    ]
    yield "wrong sign", -expected
    if _square(expected):
        yield "transposed", expected.T
    for c, text in factors:
        yield text, c * expected
        yield "wrong sign, and " + text, -c * expected
        if _square(expected):
            yield "transposed, and " + text, c * expected.T
    match = re.match(r"layers\[(-?\d+)\]\.params_after\.(\w+)", key)
    if match:
        layer, name = int(match.group(1)), match.group(2)
        entry = values["layers"][layer]
        before = np.array(entry["params"][name])
        grad = np.array(entry["grads"][name])
        lr = explanation.first.lr
        # the slips of an update θ − lr·g, where that is the update (plain gradient descent, one step)
        if len(explanation.history) == 1 and np.allclose(expected, before - lr * grad, rtol=1e-12, atol=1e-12):
            yield "the parameter before the update: no step was taken", before
            yield "the gradient was added instead of subtracted", before + lr * grad
            for c, text in [(1, ""), *factors]:
                suffix = f", and the gradient is {text}" if text else ""
                if _square(grad):
                    yield "the update used the transposed gradient" + suffix, before - lr * c * grad.T
                if text:
                    yield "the update used a gradient that is " + text, before - lr * c * grad
    yield from _other_steps(key, explanation)


def _square(a: NDArray) -> bool:
    """A matrix whose transpose has its shape (so a transposition is not given away by the shape)."""
    return a.ndim == 2 and a.shape[0] == a.shape[1] > 1


def _other_steps(key: str, explanation: Explanation):
    """The same quantity at the other recorded steps (a value copied from the wrong step)."""
    match = re.match(r"layers\[(-?\d+)\]\.(output|input|grad_output|grad_input|grads\.\w+)$", key)
    if not match:
        return
    layer, what = int(match.group(1)), match.group(2)
    for step in explanation.steps[1:]:
        yield f"the value at step {step.number}, not step 1", _step_value(step, layer, what)


def _step_value(step: StepRecord, layer: int, what: str) -> NDArray:
    record = step.layers[layer]
    if what.startswith("grads."):
        return step.grads[record.index][what.split(".")[1]]
    return getattr(record, what)


def _entrywise(answer: NDArray, tol: NDArray, expected: NDArray) -> list[str]:
    """Which entries are wrong, and how: a sign, rounding, or just the right number."""
    if _close(answer, expected):
        return ["close to the right value: probably computed from rounded intermediate values"]
    causes = []
    for index in np.argwhere(~(np.abs(answer - expected) <= tol)):
        index = tuple(int(i) for i in index)
        at = "".join(f"[{i}]" for i in index) or "value"
        a, e, t = answer[index], expected[index], tol[index]
        if abs(a + e) <= t:
            causes.append(f"{at}: wrong sign ({_num(a)}, right {_num(e)})")
        elif _close(np.array(-a), np.array(e)):
            causes.append(f"{at}: wrong sign, and rounded intermediate values ({_num(a)}, right {_num(e)})")
        elif _close(np.array(a), np.array(e)):
            causes.append(
                f"{at}: close, but not at the precision written ({_num(a)}, right {_num(e)}): "
                "rounded intermediate values?"
            )
        else:
            causes.append(f"{at}: {_num(a)}, right {_num(e)}")
    return causes


def _num(x: float) -> str:
    return f"{x:.6g}"


def _show(array: NDArray) -> str:
    return np.array2string(
        np.asarray(array, dtype=np.float64) + 0.0, precision=6, suppress_small=True, separator=", "
    ).replace("\n", "")


def report(verdicts: list[Verdict]) -> str:
    right = sum(v.right for v in verdicts)
    lines = [f"{right} of {len(verdicts)} answers right", ""]
    for v in verdicts:
        if v.right:
            lines.append(f"✓ {v.path}")
            continue
        lines.append(f"✗ {v.path}")
        lines.append(f"    written: {_show(np.array(v.written, dtype=np.float64))}")
        lines.append(f"    right:   {_show(np.array(v.expected))}")
        for cause in v.causes:
            lines.append(f"    → {cause}")
    return "\n".join(lines) + "\n"


def verdicts_to_json(verdicts: list[Verdict]) -> dict:
    return {
        "right": sum(v.right for v in verdicts),
        "total": len(verdicts),
        "answers": [
            {
                "path": v.path,
                "right": v.right,
                "written": np.array(v.written, dtype=np.float64).tolist(),
                "expected": v.expected,
                "causes": v.causes,
            }
            for v in verdicts
        ],
    }
