"""The explain/check application: problem files, every number of a training step, rendered, and a
hand-worked answer sheet checked against them.

* :mod:`~chainrule.explain.problem` reads a problem file (TOML) into a network, a batch, a loss and an
  optimizer, all registered kinds, and writes one for a network (``problem_document``, ``write_problem``);
* :mod:`~chainrule.explain.explanation` runs its steps with a trace (``run_problem``) and gives the JSON
  of ``chainrule explain --format json`` (``to_json``);
* :mod:`~chainrule.explain.render` lays the steps out as text, Markdown or LaTeX from the formulas each
  kind declares;
* :mod:`~chainrule.explain.check` compares an answers file with the right numbers (``chainrule check``).
"""

from chainrule.explain.explanation import Explanation, StepRecord, run_problem, to_json
from chainrule.explain.problem import (
    Problem,
    ProblemFileError,
    load_problem,
    parse_problem,
    problem_document,
    write_problem,
)

__all__ = [
    "Explanation",
    "Problem",
    "ProblemFileError",
    "StepRecord",
    "load_problem",
    "parse_problem",
    "problem_document",
    "run_problem",
    "to_json",
    "write_problem",
]
