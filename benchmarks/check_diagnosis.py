"""How well ``chainrule check`` diagnoses answer sheets with one slip: the sheets of
``tests/diagnosis_cases.py`` (five problems, every slip the hand-working student of ``tests/student.py``
can make at every place, 3 and 4 decimals, carried on rounded or in full), and the time of each diagnosis.

    python benchmarks/check_diagnosis.py [--problems relu_mse,sigmoid_biases] [--show-misses]

A sheet counts as diagnosed when the root that check reports first is at the first number the slip made
wrong, names the slip injected (alone, or among the slips that give the same numbers there), every other
answer is right or carried forward, and no answer written with the slip is called carried forward.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from diagnosis_cases import PROBLEMS, sheets
from student import sheet_toml

from chainrule.explain import parse_problem, run_problem
from chainrule.explain.check import check_answers, load_answers
from chainrule.explain.problem import read_toml


def explanation_of(problem):
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
        f.write(problem.toml())
    return run_problem(parse_problem(read_toml(f.name), f.name))


def judge(result, student) -> str | None:
    """``None`` when the diagnosis is right, else what is wrong with it."""
    verdicts = {v.path: v for v in result.verdicts}
    wrong_written = [p for p in student.slipped if verdicts[p].verdict != "right"]
    for p, v in verdicts.items():
        if p in student.slipped and v.verdict == "carried_forward":
            return f"{p}: written with the slip, called carried forward"
        if p not in student.slipped and v.verdict == "wrong":
            return f"{p}: computed right from the student's numbers, called wrong ({v.causes[0][:90]})"
    if not wrong_written:
        return None if not result.roots else "roots on a sheet whose slip changed nothing at this precision"
    named = [r for r in result.roots if r.slip == student.slip or student.slip in r.alternatives]
    if not named:
        return f"slip not named: {[(r.path, r.slip) for r in result.roots]}"
    first = min(wrong_written, key=list(verdicts).index)
    if named[0].path != first:
        return f"root at {named[0].path}, expected {first}"
    if len(result.roots) != 1:
        return f"{len(result.roots)} roots: {[(r.path, r.slip) for r in result.roots]}"
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", default=",".join(PROBLEMS))
    parser.add_argument("--show-misses", action="store_true")
    args = parser.parse_args()
    total, good, alone, times = Counter(), Counter(), Counter(), []
    misses = []
    for name in args.problems.split(","):
        problem = PROBLEMS[name]
        explanation = explanation_of(problem)
        for slip, place, d, by_hand, student in sheets(problem):
            answers = Path(tempfile.mkdtemp()) / "answers.toml"
            answers.write_text(sheet_toml(student.sheet))
            start = time.perf_counter()
            result = check_answers(explanation, load_answers(str(answers)))
            times.append(time.perf_counter() - start)
            miss = judge(result, student)
            total[name] += 1
            if miss is None:
                good[name] += 1
                root = next((r for r in result.roots if r.slip == student.slip), None)
                alone[name] += root is not None and not root.alternatives
            else:
                misses.append(
                    f"{name} {slip} at {place}, {d} decimals, {'by hand' if by_hand else 'calculator'}: {miss}"
                )
    print(f"{'problem':<22}{'sheets':>8}{'diagnosed':>11}{'%':>7}{'named alone':>13}")
    for name in total:
        print(f"{name:<22}{total[name]:>8}{good[name]:>11}{100 * good[name] / total[name]:>7.1f}{alone[name]:>13}")
    t, g = sum(total.values()), sum(good.values())
    print(f"{'all':<22}{t:>8}{g:>11}{100 * g / t:>7.1f}{sum(alone.values()):>13}")
    times.sort()
    print(f"time per sheet: median {1000 * times[len(times) // 2]:.0f} ms, max {1000 * times[-1]:.0f} ms")
    if args.show_misses:
        print("\n".join(misses))


if __name__ == "__main__":
    main()
