"""The ``chainrule`` command line.

Every command's work is imported when the command runs, not before, so that ``chainrule --help``
starts fast. Errors that chainrule raises on purpose become one line on standard error
(``chainrule: error: ...``) and a non-zero exit code; ``--debug`` shows the traceback instead.

Exit codes: 0 success, 1 a failed check or an error in the work, 2 a bad command line or bad input file.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from chainrule._version import __version__


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chainrule",
        description="Neural networks in NumPy whose every gradient is the hand-derived formula.",
    )
    parser.add_argument("--version", action="version", version=f"chainrule {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    check = commands.add_parser(
        "gradcheck",
        help="check every built-in gradient against central differences",
        description="Check the analytic gradient of every built-in layer and loss, and of a deep network, "
        "against central differences in float64 with a random upstream gradient. Prints the worst "
        "relative error of each array and where it is; exits 1 if any check fails.",
    )
    check.add_argument("names", nargs="*", metavar="NAME", help="check only these (default: all; see --list)")
    check.add_argument("--list", action="store_true", help="list the names that can be checked")
    check.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default: 0)")
    check.add_argument("--batch", type=_positive_int, default=5, help="rows of the random batch (default: 5)")
    check.add_argument("--tolerance", type=float, default=1e-7, help="largest relative error (default: 1e-7)")
    check.add_argument("--atol", type=float, default=1e-8,
                       help="an array whose largest absolute difference is at most this passes too; "
                       "for gradients that are exactly zero (default: 1e-8)")
    check.set_defaults(run=_run_gradcheck)

    explain = commands.add_parser(
        "explain",
        help="every number of a training step, forward and backward, for a problem file",
        description="Run the training step(s) of a problem file (TOML: a small network, one batch, the "
        "loss and the optimizer; see docs/problem-files.md) and show every number: each layer's "
        "forward formula with its numbers, the loss, the backward pass layer by layer, the update.",
    )
    explain.add_argument("file", metavar="FILE", help="the problem file (.toml)")
    explain.add_argument("--format", choices=("text", "markdown", "latex", "json"), default="text",
                         help="text (terminal), markdown (with LaTeX maths), latex (a standalone "
                         "document) or json (every number in full precision); default: text")
    explain.add_argument("--steps", type=_positive_int, default=None,
                         help="training steps on the same batch (default: the file's train.steps)")
    explain.add_argument("--precision", type=_non_negative_int, default=4,
                         help="decimals shown in text, markdown and latex (default: 4)")
    explain.set_defaults(run=_run_explain)

    check_cmd = commands.add_parser(
        "check",
        help="check the numbers of a hand-worked solution against a problem file",
        description="Compare the answers of ANSWERS (TOML: values named by their place in the JSON of "
        "chainrule explain, e.g. \"layers[0].output\" = [[2, -1], [0, 1]]) with the right numbers of "
        "the problem FILE. Each answer is right at the precision it was written with; for a wrong one "
        "the likely slip is named. Exits 0 when all answers are right, 1 otherwise.",
    )
    check_cmd.add_argument("file", metavar="FILE", help="the problem file (.toml)")
    check_cmd.add_argument("answers", metavar="ANSWERS", help="the answers file (.toml)")
    check_cmd.add_argument("--format", choices=("text", "json"), default="text")
    check_cmd.add_argument("--steps", type=_positive_int, default=None,
                       help="training steps (default: the problem file's train.steps)")
    check_cmd.set_defaults(run=_run_check)

    demo = commands.add_parser(
        "demo",
        help="train a small network on generated data, in seconds",
        description="Train a small MLP on three generated spirals and print the loss of each epoch.",
    )
    demo.add_argument("--epochs", type=_positive_int, default=30)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(run=_run_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    from chainrule.errors import ChainruleError

    try:
        return args.run(args)
    except ChainruleError as err:
        if args.debug:
            raise
        print(f"chainrule: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("chainrule: interrupted", file=sys.stderr)
        return 130


def _run_gradcheck(args: argparse.Namespace) -> int:
    from chainrule.errors import UsageError
    from chainrule.gradcheck import builtin_checks

    checks = builtin_checks(seed=args.seed, batch=args.batch, tolerance=args.tolerance, atol=args.atol)
    if args.list:
        print("\n".join(checks))
        return 0
    unknown = [n for n in args.names if n not in checks]
    if unknown:
        raise UsageError(f"unknown gradcheck name(s) {', '.join(unknown)}; expected some of: {', '.join(checks)}")
    failed = 0
    for name in args.names or checks:
        report = checks[name]()
        failed += not report.passed
        print(f"[{name}] {report}")
    total = len(args.names or checks)
    print(f"{total - failed} passed, {failed} failed")
    return 1 if failed else 0


def _run_explain(args: argparse.Namespace) -> int:
    from chainrule.explain import run_problem
    from chainrule.problem import load_problem
    from chainrule.render import render

    explanation = run_problem(load_problem(args.file), steps=args.steps)
    sys.stdout.write(render(explanation, args.format, args.precision))
    return 0


def _run_check(args: argparse.Namespace) -> int:
    import json

    from chainrule.check import check_answers, load_answers, report, verdicts_to_json
    from chainrule.explain import run_problem
    from chainrule.problem import load_problem

    explanation = run_problem(load_problem(args.file), steps=args.steps)
    verdicts = check_answers(explanation, load_answers(args.answers), args.answers)
    if args.format == "json":
        print(json.dumps(verdicts_to_json(verdicts), indent=2))
    else:
        sys.stdout.write(report(verdicts))
    return 0 if all(v.right for v in verdicts) else 1


def _run_demo(args: argparse.Namespace) -> int:
    import numpy as np

    from chainrule import SGD, SoftmaxCrossEntropyLoss, mlp
    from chainrule.train import fit

    X, y = spirals(300, seed=args.seed)
    model = mlp([2, 32, 32, 3], "relu", seed=args.seed)
    optimizer = SGD(model.parameters(), lr=0.1, momentum=0.9)
    print(f"Training {model!r}\non {len(X)} points of 3 spirals with SGD (lr 0.1, momentum 0.9)")
    history = fit(model, SoftmaxCrossEntropyLoss(), optimizer, X, y, epochs=args.epochs, batch_size=32,
                  seed=args.seed, on_epoch=lambda r: print(f"epoch {r.epoch:3d}  loss {r.loss:.4f}  "
                                                           f"accuracy {r.accuracy:.3f}"))
    final = float(np.mean(model.predict(X) == y))
    print(f"loss {history.losses[0]:.3f} -> {history.losses[-1]:.3f}; training accuracy {final:.3f}")
    return 0


def spirals(per_class: int, classes: int = 3, seed: int = 0):
    """``classes`` interleaved noisy spirals in 2-D: a small problem that a linear model cannot solve."""
    import numpy as np

    rng = np.random.default_rng(seed)
    radius = np.tile(np.linspace(0.0, 1.0, per_class), classes)
    label = np.repeat(np.arange(classes), per_class)
    angle = label * (2 * np.pi / classes) + radius * 4 + rng.normal(0, 0.2, radius.size)
    X = np.stack([radius * np.sin(angle), radius * np.cos(angle)], axis=1).astype(np.float32)
    return X, label


if __name__ == "__main__":
    sys.exit(main())
