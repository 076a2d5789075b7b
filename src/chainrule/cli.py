"""The ``chainrule`` command line.

Every command's work is imported when the command runs, not before, so that ``chainrule --help``
starts fast. Errors that chainrule raises on purpose become one line on standard error
(``chainrule: error: ...``) and a non-zero exit code; ``--debug`` shows the traceback instead.

Exit codes: 0 success; 1 an error in the work (a dataset or model file that cannot be used, a failed
check, a loss that became NaN) or a wrong answer in ``chainrule check``; 2 a bad command line or a bad
problem or answers file; 3 an internal error (a bug); 130 interrupted by Ctrl-C or SIGTERM (a training
run saves a checkpoint and says how to resume); 141 the reader of the output went away (``| head``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import sys
import threading
import warnings
from collections.abc import Sequence
from dataclasses import fields
from functools import cache
from typing import NoReturn

from chainrule._version import __version__
from chainrule.i18n import LANGUAGES, N_, _, language, language_from_environment, ngettext


def config_options(parser: argparse.ArgumentParser, names: Sequence[str] | None = None) -> None:
    """One option for each field of :class:`~chainrule.training.config.TrainConfig` (or those in
    ``names``), with its help, type and choices from the field; an option not given is left out of the
    parsed arguments, so that the field's own default applies."""
    from chainrule.training.config import TrainConfig

    for f in fields(TrainConfig):
        if names is not None and f.name not in names:
            continue
        meta = f.metadata
        help = meta["help"]
        help = help() if callable(help) else _(help)
        options: dict = {"dest": f.name, "default": argparse.SUPPRESS}
        if isinstance(f.default, bool):
            options["action"] = "store_false" if f.default else "store_true"
        else:
            choices = meta["choices"]() if callable(meta["choices"]) else meta["choices"]
            options.update(type=meta["parse"] or str, metavar=meta["metavar"], choices=choices)
            if f.default is not None:
                shown = ",".join(map(str, f.default)) if isinstance(f.default, tuple) else f.default
                help = _("{help} (default: {default})").format(help=help, default=shown)
        parser.add_argument(meta["flag"] or "--" + f.name.replace("_", "-"), help=help, **options)


#: The most decimals explain shows: float64 holds 17 significant digits, more would show only noise.
MAX_PRECISION = 17


def steps_option(text: str) -> int:
    """An argparse type: training steps of explain and check, from 1 to the problem files' bound."""
    from chainrule.explain.problem import MAX_STEPS
    from chainrule.training.config import at_least

    return at_least(1, MAX_STEPS)(text)


#: The most classes whose confusion matrix ``chainrule evaluate`` prints whole; above, a summary.
MAX_TEXT_CLASSES = 30
#: The formats of ``chainrule explain`` (those of chainrule.explain.render.FORMATS, checked by a test).
EXPLAIN_FORMATS = ("text", "markdown", "latex", "json", "html")
#: The formats of ``chainrule derive`` (those of chainrule.derive.output.FORMATS, checked by a test).
DERIVE_FORMATS = ("text", "markdown", "latex", "json")
#: The formats of ``chainrule export`` (those of chainrule.interchange.FORMATS, checked by a test).
EXPORT_FORMATS = ("onnx", "safetensors", "torch")


class HelpFormatter(argparse.HelpFormatter):
    """argparse's help, with its own word "usage:" in the language in effect."""

    def add_usage(self, usage, actions, groups, prefix=None) -> None:
        super().add_usage(usage, actions, groups, _("usage: ") if prefix is None else prefix)


class Parser(argparse.ArgumentParser):
    """An argparse parser whose own words (the headings of the help, ``-h``'s help, "error:") are in the
    language in effect when it is built, as the help texts given to it are; its subcommands' parsers too."""

    def __init__(self, *args, add_help: bool = True, formatter_class=HelpFormatter, **kwargs) -> None:
        super().__init__(*args, add_help=False, formatter_class=formatter_class, **kwargs)
        self._positionals.title = _("positional arguments")
        self._optionals.title = _("options")
        if add_help:
            self.add_argument("-h", "--help", action="help", help=_("show this help message and exit"))

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, _("{prog}: error: {message}").format(prog=self.prog, message=argparse_message(message)) + "\n")


#: The messages of argparse's errors that a command line of chainrule can meet, as argparse writes them in
#: English (its placeholders named here): :func:`argparse_message` shows them in the language in effect.
ARGPARSE_MESSAGES = (
    N_("argument {argument}: {message}"),
    N_("invalid choice: {value} (choose from {choices})"),
    N_("invalid {type} value: {value}"),
    N_("the following arguments are required: {arguments}"),
    N_("unrecognized arguments: {arguments}"),
    N_("ambiguous option: {option} could match {matches}"),
    N_("expected one argument"),
    N_("expected at least one argument"),
    N_("expected at most one argument"),
    N_("ignored explicit argument {argument}"),
)


@cache
def _argparse_patterns() -> tuple[tuple[re.Pattern, str], ...]:
    """Each of :data:`ARGPARSE_MESSAGES` as a regular expression that matches what argparse writes, each
    placeholder a named group."""
    patterns = []
    for message in ARGPARSE_MESSAGES:
        pieces = re.split(r"\{(\w+)\}", message)  # text, name, text, name, ..., text
        regex = "".join(re.escape(piece) if i % 2 == 0 else f"(?P<{piece}>.*?)" for i, piece in enumerate(pieces))
        patterns.append((re.compile(regex + "$", re.DOTALL), message))
    return tuple(patterns)


def argparse_message(message: str) -> str:
    """argparse's English ``message`` in the language in effect: matched against :data:`ARGPARSE_MESSAGES`
    (the part after "argument X: " too); one that matches none (another version's wording) stays English."""
    for pattern, english in _argparse_patterns():
        match = pattern.match(message)
        if match:
            parts = {
                name: argparse_message(value) if name == "message" else value
                for name, value in match.groupdict().items()
            }
            return _(english).format(**parts)
    return message


def build_parser(train_options: bool = True) -> argparse.ArgumentParser:
    """The parser of every command. ``train_options=False`` leaves out ``chainrule train``'s options,
    whose choices list the registered kinds and so load the library: what ``chainrule --help`` and the
    other commands do without."""
    from chainrule.training.config import at_least, finite_float

    def fraction(text: str) -> float:
        value = finite_float(text)
        if not 0 <= value <= 1:
            raise argparse.ArgumentTypeError(_("expected a number from 0 to 1, got {got!r}").format(got=text))
        return value

    def non_negative_float(text: str) -> float:
        value = finite_float(text)
        if value < 0:
            raise argparse.ArgumentTypeError(_("expected a number >= 0, got {got!r}").format(got=text))
        return value

    parser = Parser(
        prog="chainrule",
        description=_("Neural networks in NumPy whose every gradient is the hand-derived formula."),
    )
    parser.add_argument(
        "--version", action="version", version=f"chainrule {__version__}", help=_("show the version and exit")
    )
    parser.add_argument("--debug", action="store_true", help=_("show the full traceback of an error"))
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    check = commands.add_parser(
        "gradcheck",
        help=_("check every built-in gradient against central differences"),
        description=_(
            "Check the analytic gradient of every built-in layer and loss, and of a deep network, "
            "against central differences in float64 with a random upstream gradient. Prints the worst "
            "relative error of each array and where it is; exits 1 if any check fails."
        ),
    )
    check.add_argument("names", nargs="*", metavar="NAME", help=_("check only these (default: all; see --list)"))
    check.add_argument("--list", action="store_true", help=_("list the names that can be checked"))
    check.add_argument("--seed", type=at_least(0), default=0, help=_("seed of the random inputs (default: 0)"))
    check.add_argument("--batch", type=at_least(1), default=5, help=_("rows of the random batch (default: 5)"))
    check.add_argument(
        "--tolerance", type=non_negative_float, default=1e-7, help=_("largest relative error (default: 1e-7)")
    )
    check.add_argument(
        "--atol",
        type=non_negative_float,
        default=1e-8,
        help=_(
            "an array whose largest absolute difference is at most this passes too; "
            "for gradients that are exactly zero (default: 1e-8)"
        ),
    )
    check.set_defaults(run=_run_gradcheck)

    explain = commands.add_parser(
        "explain",
        help=_("every number of a training step, forward and backward, for a problem file"),
        description=_(
            "Run the training step(s) of a problem file (TOML: a small network, one batch, the "
            "loss and the optimizer; see docs/problem-files.md) and show every number: each layer's "
            "forward formula with its numbers, the loss, the backward pass layer by layer, the update."
        ),
    )
    explain.add_argument("file", metavar="FILE", help=_("the problem file (.toml)"))
    explain.add_argument(
        "--format",
        choices=EXPLAIN_FORMATS,
        default="text",
        help=_(
            "text (terminal), markdown (with LaTeX maths), latex (a standalone "
            "document), json (every number in full precision) or html (one self-contained page where every "
            "number opens into its computation); default: text"
        ),
    )
    explain.add_argument(
        "--entry",
        metavar="PATH",
        default=None,
        help=_(
            "show how one number is computed, with the numbers put in: its place in the JSON, e.g. "
            "'layers[0].grads.W[1][0]' or 'loss'"
        ),
    )
    explain.add_argument(
        "--steps",
        type=steps_option,
        default=None,
        help=_("training steps on the same batch (default: the file's train.steps)"),
    )
    explain.add_argument(
        "--precision",
        type=at_least(0, MAX_PRECISION),
        default=4,
        help=_("decimals shown in text, markdown and latex (default: 4)"),
    )
    explain.set_defaults(run=_run_explain)

    derive = commands.add_parser(
        "derive",
        help=_("the derivation behind a formula, step by step, each step checked by SymPy"),
        description=_(
            "Show why a formula holds: the steps from the definitions to the formula chainrule computes, "
            "each with its reason, each checked by SymPy (both sides simplify to the same expression, or agree at "
            "random points where an identity of indices is beyond simplification). With --problem, the chain rule "
            "walked from the loss back to the first weight in the layers, symbols and numbers of a problem file. "
            "Needs chainrule[derive] (SymPy); exits 1 if a step is not verified."
        ),
    )
    derive.add_argument("topics", nargs="*", metavar="TOPIC", help=_("the topics to derive (see --list)"))
    derive.add_argument("--list", action="store_true", help=_("list the topics and the kinds each one derives"))
    derive.add_argument("--all", action="store_true", help=_("every topic, in one document"))
    derive.add_argument(
        "--problem",
        default=None,
        metavar="FILE",
        help=_("the walk from the loss to the first weight of a problem file"),
    )
    derive.add_argument("--format", choices=DERIVE_FORMATS, default="text", help=_("default: text"))
    derive.add_argument(
        "--verify",
        action="store_true",
        help=_("print every check (what SymPy compared), and the result against chainrule's backward pass"),
    )
    derive.set_defaults(run=_run_derive)

    check_cmd = commands.add_parser(
        "check",
        help=_("check a hand-worked solution against a problem file: the root slips, error carried forward, a mark"),
        description=_(
            "Read the answers of ANSWERS (TOML: values named by their place in the JSON of "
            'chainrule explain, e.g. "layers[0].output" = [[2, -1], [0, 1]]; "" leaves an entry blank) as an '
            "examiner would, against the problem FILE. Each answer is right at the precision it was written with, "
            "carried forward (wrong only because an earlier wrong number was used correctly), wrong or "
            "unanswered; the slip behind the wrong ones is looked for in a catalogue (--slips) by replaying the "
            "whole computation with it. Exits 0 when every answer is right, 1 otherwise."
        ),
    )
    check_cmd.add_argument("file", metavar="FILE", nargs="?", help=_("the problem file (.toml)"))
    check_cmd.add_argument("answers", metavar="ANSWERS", nargs="?", help=_("the answers file (.toml)"))
    check_cmd.add_argument(
        "--format",
        choices=("text", "json", "html"),
        default="text",
        help=_("text, json, or html (one self-contained page: the sheet coloured by verdict); default: text"),
    )
    check_cmd.add_argument(
        "--steps", type=steps_option, default=None, help=_("training steps (default: the problem file's train.steps)")
    )
    check_cmd.add_argument(
        "--carried-forward-credit",
        type=fraction,
        default=1.0,
        metavar="C",
        help=_("the credit of a carried-forward answer, from 0 to 1 (default: 1, full credit; 0.5: half)"),
    )
    check_cmd.add_argument("--slips", action="store_true", help=_("list the slips that check recognises, and exit"))
    check_cmd.set_defaults(run=_run_check)

    exercise = commands.add_parser(
        "exercise",
        help=_("variants of an exercise with hand-friendly numbers, sheets and keys; a class's sheets graded"),
        description=_(
            "Make variants of the exercises the notes pose (exercise new), or grade a folder of "
            "answer sheets with check's diagnosis and summarise the class's slips (exercise grade). See "
            "docs/exercises.md."
        ),
    )
    exercise_commands = exercise.add_subparsers(dest="exercise_command", metavar="SUBCOMMAND", required=True)
    new = exercise_commands.add_parser(
        "new", help=_("variants: problem files, question sheets, answer templates, keys")
    )
    new.add_argument("--template", default=None, help=_("the kind of exercise (default: relu_mse; see --list)"))
    new.add_argument("--problem", default=None, metavar="FILE", help=_("new numbers for this problem file's network"))
    new.add_argument("--list", action="store_true", help=_("list the templates and exit"))
    new.add_argument("--variants", type=at_least(1), default=1, help=_("how many variants (default: 1)"))
    new.add_argument(
        "--seed", type=at_least(0), default=0, help=_("the same seed gives the same variants (default: 0)")
    )
    new.add_argument("--out", default="exercises", metavar="DIR", help=_("where to write (default: exercises)"))
    new.add_argument("--rows", type=at_least(1), default=None, help=_("rows (objects) of the batch"))
    new.add_argument(
        "--sizes",
        type=lambda text: tuple(at_least(1)(part) for part in text.split(",")),
        default=None,
        help=_("layer sizes, comma-separated: inputs,hidden,outputs or features,classes"),
    )
    new.add_argument("--bias", action=argparse.BooleanOptionalAction, default=None, help=_("biases in linear layers"))
    new.add_argument("--steps", type=at_least(1), default=None, help=_("steps of gradient descent (default: 1)"))
    new.add_argument("--no-pdf", action="store_true", help=_("do not compile the LaTeX sheets with pdflatex"))
    new.set_defaults(run=_run_exercise)
    grade = exercise_commands.add_parser("grade", help=_("grade every answer sheet (*.toml) in a folder"))
    grade.add_argument("answers", metavar="ANSWERS_DIR", help=_("the students' answer sheets, one .toml each"))
    grade.add_argument("--problems", default=None, metavar="DIR", help=_("the problem files (default: ../problems)"))
    grade.add_argument("--out", default=None, metavar="DIR", help=_("where to write results (default: ../graded)"))
    grade.add_argument("--roster", default=None, metavar="CSV", help=_("student,variant rows: who was given what"))
    grade.add_argument(
        "--carried-forward-credit", type=fraction, default=1.0, metavar="C", help=_("as for check (default: 1)")
    )
    grade.set_defaults(run=_run_exercise)

    train = commands.add_parser(
        "train",
        help=_("train an MLP or softmax regression on a dataset (default: the embedded digits)"),
        description=_(
            "Train a network and write the model, metrics.json and plots to --out. With no "
            "options: an MLP 64-256-128-10 on the 8×8 digits that ship with chainrule, in seconds."
        ),
    )
    if train_options:
        config_options(train)
    train.add_argument(
        "--resume",
        default=None,
        metavar="DIR",
        help=_(
            "continue the interrupted run in DIR from its last checkpoint, with its own "
            "configuration (the other options are ignored, except --quiet, and --epochs, which extends the run)"
        ),
    )
    train.set_defaults(run=_run_train)

    evaluate = commands.add_parser(
        "evaluate",
        help=_("accuracy, per-class accuracy and confusion matrix of a model"),
        description=_("Evaluate a model file on the test set of a dataset."),
    )
    evaluate.add_argument("model", metavar="MODEL", help=_("a model file written by chainrule train (model.npz)"))
    config_options(evaluate, ("dataset", "data_dir", "label"))
    evaluate.add_argument("--json", action="store_true", help=_("print the results as JSON"))
    evaluate.add_argument(
        "--confusion",
        default=None,
        metavar="FILE",
        help=_(
            "write the whole confusion matrix to FILE as CSV (the text output shows a summary of it above "
            "{count} classes)"
        ).format(count=MAX_TEXT_CLASSES),
    )
    evaluate.set_defaults(run=_run_evaluate)

    predict = commands.add_parser(
        "predict",
        help=_("classify images (PNG/JPEG) or .npy arrays with a model"),
        description=_(
            "Print the predicted class and its probability for each input. Images are converted "
            "to grey, resized to the model's input size and scaled to its input range; a light background "
            "is inverted to the dark background of MNIST-style data. A .npy file holds one input or a batch."
        ),
    )
    predict.add_argument("model", metavar="MODEL")
    predict.add_argument("files", nargs="+", metavar="FILE")
    predict.add_argument("--top", type=at_least(1), default=1, help=_("show the K most likely classes"))
    predict.set_defaults(run=_run_predict)

    export = commands.add_parser(
        "export",
        help=_("write a model as ONNX, safetensors or PyTorch"),
        description=_(
            "Write a model file (model.npz) in another format: onnx (the whole classifier, input "
            "normalisation included, for ONNX Runtime; needs chainrule[onnx]), safetensors (the same model file "
            "in the safetensors format, read by chainrule.load too; needs chainrule[safetensors]) or torch (a "
            "PyTorch state dict in safetensors and a Python file whose nn.Sequential loads it; needs "
            "chainrule[torch])."
        ),
    )
    export.add_argument("model", metavar="MODEL", help=_("a model file written by chainrule train (model.npz)"))
    export.add_argument("--format", choices=EXPORT_FORMATS, default="onnx", help=_("default: onnx"))
    export.add_argument(
        "--out",
        default=None,
        metavar="FILE",
        help=_(
            "where to write (default: beside MODEL, model.onnx, model.safetensors or model_torch.py; the "
            "torch format writes its weights beside the Python file, as .safetensors)"
        ),
    )
    export.add_argument(
        "--probabilities",
        action="store_true",
        help=_("onnx: output the class probabilities (a softmax at the end) instead of the network's outputs"),
    )
    export.set_defaults(run=_run_export)

    import_cmd = commands.add_parser(
        "import",
        help=_("a PyTorch model as a chainrule model file, or as a problem file for explain"),
        description=_(
            "Read a PyTorch nn.Sequential of the layers chainrule has (Linear, the activations, "
            "BatchNorm1d, LayerNorm, Dropout, Softmax) from a TorchScript file (torch.jit.script(model).save(...)) "
            "or from the weights of `chainrule export --format torch`, and write it as a model file (.npz, "
            ".safetensors: for predict, evaluate, export) or as a problem file (.toml) of one training step, for "
            "explain and check. Needs chainrule[torch]."
        ),
    )
    import_cmd.add_argument("file", metavar="FILE", help=_("a TorchScript file (.pt) or a --format torch .safetensors"))
    import_cmd.add_argument("--out", required=True, metavar="OUT", help=_("model.npz, model.safetensors or step.toml"))
    import_cmd.add_argument("--classes", default=None, help=_("model file: comma-separated class names"))
    import_cmd.add_argument(
        "--data",
        default=None,
        metavar="NPZ",
        help=_(
            "problem file: the batch, an .npz with arrays X (rows as the network reads them, after any input "
            "normalisation) and y (default: random rows)"
        ),
    )
    import_cmd.add_argument("--rows", type=at_least(1), default=4, help=_("problem file: random rows (default: 4)"))
    import_cmd.add_argument("--seed", type=at_least(0), default=0, help=_("problem file: seed of the random rows"))
    import_cmd.add_argument(
        "--loss", default=None, help=_("problem file: the loss (default: the one the last layer calls for)")
    )
    import_cmd.add_argument("--optimizer", default="sgd", help=_("problem file: the optimizer (default: sgd)"))
    import_cmd.add_argument(
        "--lr", type=finite_float, default=0.1, help=_("problem file: learning rate (default: 0.1)")
    )
    import_cmd.add_argument("--steps", type=at_least(1), default=1, help=_("problem file: training steps (default: 1)"))
    import_cmd.set_defaults(run=_run_import)

    datasets = commands.add_parser(
        "datasets",
        help=_("list the datasets and where each was found"),
        description=_("List the named datasets and where each one is (or would be downloaded to)."),
    )
    datasets.add_argument("--data-dir", default=None)
    datasets.set_defaults(run=_run_datasets)

    _add_language_option(parser)
    return parser


def _add_language_option(parser: argparse.ArgumentParser) -> None:
    """``--lang`` on every command that runs (a leaf of the tree of subcommands): the language of what it
    prints, its messages included."""
    subcommands = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for action in subcommands:
        for sub in dict.fromkeys(action.choices.values()):  # aliases name one parser twice
            _add_language_option(sub)
    if not subcommands and parser.prog != "chainrule":
        parser.add_argument(
            "--lang",
            choices=LANGUAGES,
            default=None,
            help=_(
                "language of the output and messages: en, ru or zh (default: from the locale, LC_ALL, "
                "LC_MESSAGES or LANG; English when it names none of them)"
            ),
        )


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    with language(requested_language(argv)):  # the help and argparse's errors are in it too
        parser = build_parser(train_options=command == "train")
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 0
        warnings.showwarning = _warning  # NumPy's and Pillow's warnings, one line each like chainrule's
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _interrupt)  # as Ctrl-C: what a command cleans up on the way out runs
        with language(getattr(args, "lang", None)):  # argparse also reads an abbreviation, --la ru
            return _run(args)


def requested_language(argv: Sequence[str]) -> str:
    """The language ``argv`` asks for with ``--lang X`` or ``--lang=X``, else the locale's: looked up before
    the parser is built, so that its help is in that language. A value that is not a language is left for
    argparse to refuse (in the locale's language)."""
    for i, arg in enumerate(argv):
        if arg == "--":  # what follows is not an option
            break
        if arg == "--lang":
            value = argv[i + 1] if i + 1 < len(argv) else None
        elif arg.startswith("--lang="):
            value = arg.partition("=")[2]
        else:
            continue
        if value in LANGUAGES:
            return value
    return language_from_environment()


def _run(args: argparse.Namespace) -> int:
    """Run the command of ``args``; every failure ends here, as one line through :func:`error`."""
    from chainrule.errors import ChainruleError
    from chainrule.signals import ignore_interrupts

    try:
        code = args.run(args)
        sys.stdout.flush()  # a reader gone by now is found here, not in Python's exit
        return code
    except ChainruleError as err:
        if err.exit_code == 130:
            ignore_interrupts()
        if args.debug:
            raise
        return error(str(err), err.exit_code)
    except KeyboardInterrupt:
        ignore_interrupts()
        return error(_("interrupted"), 130, prefix="chainrule")
    except BrokenPipeError:  # the reader of the output is gone (`chainrule explain FILE | head`): stop quietly
        with contextlib.suppress(OSError, ValueError):  # Python flushes standard output at exit: into nothing
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # as a program that SIGPIPE stops
    except MemoryError:
        if args.debug:
            raise
        return error(_("not enough memory for this (MemoryError): a smaller model, dataset or batch would fit"), 1)
    except OSError as err:  # the system refused: a name too long, a full disk, no permission
        if args.debug:
            raise
        where = f"{err.filename}: " if err.filename else ""
        return error(f"{where}{err.strerror or err}", 1)
    except Exception as err:  # a bug, not bad input: still one line, and the way to see more
        if args.debug:
            raise
        return error(
            _(
                "{kind}: {error} (this is a bug in chainrule; run again with --debug for the traceback and report it)"
            ).format(kind=type(err).__name__, error=err),
            3,
            prefix=_("chainrule: internal error"),
        )


#: The longest message printed whole: a message quoting a huge input (a label of megabytes, a line of a
#: file) keeps its beginning and its end.
MAX_MESSAGE = 2000


def error(message: str, exit_code: int, prefix: str | None = None) -> int:
    """The one way a failure reaches the user: one line on standard error; returns ``exit_code``."""
    prefix = _("chainrule: error") if prefix is None else prefix
    print(f"{prefix}: {_shortened(message)}", file=sys.stderr)
    return exit_code


def warn(message: str) -> None:
    """A warning, one line on standard error."""
    print(_("chainrule: warning: {message}").format(message=_shortened(message)), file=sys.stderr)


def _shortened(message: str) -> str:
    if len(message) <= MAX_MESSAGE:
        return message
    left = len(message) - MAX_MESSAGE
    return message[: MAX_MESSAGE - 500] + _(" … ({count} characters left out) … ").format(count=left) + message[-500:]


def _warning(message, category, filename, lineno, file=None, line=None) -> None:
    warn(str(message).strip().splitlines()[0] if str(message).strip() else category.__name__)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _run_gradcheck(args: argparse.Namespace) -> int:
    from chainrule.errors import UsageError
    from chainrule.gradcheck import builtin_checks
    from chainrule.i18n import _

    checks = builtin_checks(seed=args.seed, batch=args.batch, tolerance=args.tolerance, atol=args.atol)
    if args.list:
        print("\n".join(checks))
        return 0
    unknown = [n for n in args.names if n not in checks]
    if unknown:
        raise UsageError(
            _("unknown gradcheck name(s) {names}; expected some of: {expected}").format(
                names=", ".join(unknown), expected=", ".join(checks)
            )
        )
    failed = 0
    for name in args.names or checks:
        report = checks[name]()
        failed += not report.passed
        print(f"[{name}] {report}")
    total = len(args.names or checks)
    print(_("{passed} passed, {failed} failed").format(passed=total - failed, failed=failed))
    return 1 if failed else 0


def _run_explain(args: argparse.Namespace) -> int:
    from chainrule.explain import load_problem, run_problem
    from chainrule.explain.render import render

    explanation = run_problem(load_problem(args.file), steps=args.steps)
    if args.entry is not None:
        from chainrule.explain.entries import expand
        from chainrule.explain.render import decimals, fmt

        with decimals(args.precision):
            print(expand(explanation, args.entry).text(fmt))
        return 0
    sys.stdout.write(render(explanation, args.format, args.precision))
    return 0


def _run_derive(args: argparse.Namespace) -> int:
    from chainrule.derive.topics import all_topics
    from chainrule.errors import UsageError
    from chainrule.i18n import _

    topics = all_topics()
    if args.list:
        width = max(len(name) for name in topics)
        for name, topic in topics.items():
            kinds = f"  [{', '.join(topic.kinds)}]" if topic.kinds else ""
            print(f"{name:<{width}}  {topic.described()}{kinds}")
        return 0
    names = list(topics) if args.all else args.topics
    unknown = [n for n in names if n not in topics]
    if unknown:
        raise UsageError(
            _("unknown derivation topic(s) {names}; expected some of: {expected}").format(
                names=", ".join(unknown), expected=", ".join(topics)
            )
        )
    if not names and args.problem is None:
        raise UsageError(_("derive: name a TOPIC (see chainrule derive --list), --all, or --problem FILE"))
    from chainrule.derive import derive, derive_problem, render

    derivations = [derive(name) for name in names]
    if args.problem is not None:
        derivations.append(derive_problem(args.problem))
    sys.stdout.write(render(derivations, args.format, verbose=args.verify))
    return 0 if all(d.verified for d in derivations) else 1


def _run_check(args: argparse.Namespace) -> int:
    import json

    from chainrule.errors import UsageError
    from chainrule.explain.check import check_answers, load_answers, report, verdicts_to_json
    from chainrule.i18n import _

    if args.slips:
        from chainrule.explain.slips import SLIPS

        width = max(len(slip.id) for slip in SLIPS)
        print("\n".join(f"{slip.id:<{width}}  {_(slip.words)}" for slip in SLIPS))
        return 0
    if args.file is None or args.answers is None:
        raise UsageError(_("check needs a problem FILE and an ANSWERS file (or --slips)"))
    from chainrule.explain import load_problem, run_problem

    explanation = run_problem(load_problem(args.file), steps=args.steps)
    result = check_answers(explanation, load_answers(args.answers), args.answers, args.carried_forward_credit)
    if args.format == "json":
        print(json.dumps(verdicts_to_json(result), indent=2, ensure_ascii=False))
    elif args.format == "html":
        from chainrule.explain.check import report_html
        from chainrule.html import escape, page

        title = _("{answers}, checked against {problem}").format(
            answers=args.answers, problem=explanation.problem.title
        )
        sys.stdout.write(page(title, f"<h1>{escape(title)}</h1>\n{report_html(result)}"))
    else:
        sys.stdout.write(report(result))
    return 0 if result.all_right else 1


def _run_exercise(args: argparse.Namespace) -> int:
    from chainrule.exercise import command

    return command.run_new(args) if args.exercise_command == "new" else command.run_grade(args)


def _run_train(args: argparse.Namespace) -> int:
    from chainrule.errors import ConfigError, UsageError
    from chainrule.training.config import TrainConfig
    from chainrule.training.run import config_from_checkpoint, train

    given = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if hasattr(args, f.name)}
    if args.resume is not None:
        config = config_from_checkpoint(args.resume)
        config.quiet = given.pop("quiet", False)
        epochs = given.pop("epochs", config.epochs)
        if epochs < config.epochs:
            raise UsageError(
                _(
                    "--epochs {epochs} with --resume: the run in {out} has {planned} epochs planned; give more to "
                    "extend it"
                ).format(epochs=epochs, out=args.resume, planned=config.epochs)
            )
        if epochs > config.epochs:
            warn(
                _("extending the run from {planned} to {epochs} epochs (a schedule is planned over {epochs})").format(
                    planned=config.epochs, epochs=epochs
                )
            )
            config.epochs = epochs
        if given:
            flags = {f.name: f.metadata["flag"] or "--" + f.name.replace("_", "-") for f in fields(TrainConfig)}
            ignored = ", ".join(flags[name] for name in given)
            warn(_("a resumed run keeps its own configuration; ignoring {options}").format(options=ignored))
        train(config, resume=True)
        return 0
    try:
        config = TrainConfig(**given).validate()
    except ConfigError as err:  # an option of the command line: exit 2, as argparse's own checks
        raise UsageError(str(err)) from None
    train(config)
    return 0


def _run_evaluate(args: argparse.Namespace) -> int:
    import json

    import numpy as np

    from chainrule.training.config import TrainConfig
    from chainrule.training.data import check_memory, labels_for, load_dataset
    from chainrule.training.modelfile import load_model
    from chainrule.training.plots import confusion_matrix

    model = load_model(args.model)
    dataset = load_dataset(
        getattr(args, "dataset", TrainConfig.dataset),
        getattr(args, "data_dir", None),
        progress=not args.json,
        splits=("test",),
        label=getattr(args, "label", None),
    )
    y_test = labels_for(dataset, model.classes)
    check_memory(dataset, model.mean.dtype, splits=("test",))
    predicted = model.predict(dataset.X_test)
    matrix = confusion_matrix(y_test, predicted, len(model.classes))
    per_class = matrix.diagonal() / np.maximum(matrix.sum(axis=1), 1)
    accuracy = float(np.mean(predicted == y_test))
    if args.json:
        print(
            json.dumps(
                {
                    "model": args.model,
                    "dataset": dataset.name,
                    "examples": len(predicted),
                    "accuracy": accuracy,
                    "per_class_accuracy": dict(zip(model.classes, per_class.tolist(), strict=True)),
                    "confusion_matrix": matrix.tolist(),
                },
                indent=2,
            )
        )
        return 0
    if args.confusion is not None:
        write_confusion(args.confusion, matrix, model.classes)
    print(
        _("{model} on {dataset} test set ({examples} examples): accuracy {accuracy:.4f}").format(
            model=args.model, dataset=dataset.name, examples=len(predicted), accuracy=accuracy
        )
    )
    totals = matrix.sum(axis=1)
    if len(model.classes) > MAX_TEXT_CLASSES:
        _print_confusion_summary(matrix, per_class, model.classes, args.confusion)
        return 0
    width = max(len(c) for c in model.classes)
    for name, value, total in zip(model.classes, per_class, totals, strict=True):
        print(f"  {name:>{width}}  {value:.4f}  " + _("({examples} examples)").format(examples=total))
    print(_("confusion matrix (rows: true class, columns: predicted, numbered as the rows):"))
    cell = max(5, len(str(matrix.max())) + 1)
    print(f"  {'':>{width}}  {'':>4}" + "".join(f"{k:>{cell}d}" for k in range(len(model.classes))))
    for k, (name, row) in enumerate(zip(model.classes, matrix, strict=True)):
        print(f"  {name:>{width}}  {k:>4}" + "".join(f"{v:>{cell}d}" for v in row))
    return 0


def _print_confusion_summary(matrix, per_class, classes, written: str | None, shown: int = 10) -> None:
    """For many classes: the worst classes and the most confused pairs, and where the whole matrix is."""
    import numpy as np

    totals = matrix.sum(axis=1)
    tested = np.flatnonzero(totals)
    worst = tested[np.argsort(per_class[tested], kind="stable")[:shown]]
    print(
        _("the {shown} classes of lowest accuracy (of {tested} in the test set):").format(
            shown=len(worst), tested=len(tested)
        )
    )
    width = max(len(classes[k]) for k in worst) if len(worst) else 0
    for k in worst:
        print(f"  {classes[k]:>{width}}  {per_class[k]:.4f}  " + _("({examples} examples)").format(examples=totals[k]))
    errors = matrix.copy()
    np.fill_diagonal(errors, 0)
    pairs = np.argsort(errors, axis=None, kind="stable")[::-1][:shown]
    pairs = [divmod(int(p), len(classes)) for p in pairs if errors.flat[p] > 0]
    print(_("the most confused pairs (true → predicted: examples):") if pairs else _("no example was misclassified"))
    for true, guess in pairs:
        print(f"  {classes[true]} → {classes[guess]}: {errors[true, guess]}")
    if written:
        where = _("the whole {n}×{n} confusion matrix: in {path}").format(n=len(classes), path=written)
    else:
        where = _("the whole {n}×{n} confusion matrix: with --confusion FILE (CSV) or --json").format(n=len(classes))
    print(where)


def write_confusion(path: str, matrix, classes: tuple[str, ...]) -> None:
    """The confusion matrix as CSV at ``path``: a header of the predicted classes, a row per true class."""
    import csv
    import io

    from chainrule.archive import atomic_write

    text = io.StringIO()
    table = csv.writer(text, lineterminator="\n")
    table.writerow(["true \\ predicted", *classes])
    for name, row in zip(classes, matrix.tolist(), strict=True):
        table.writerow([name, *row])
    atomic_write(path, lambda f: f.write(text.getvalue().encode()))


def _run_predict(args: argparse.Namespace) -> int:
    from pathlib import Path

    from chainrule.errors import ChainruleError
    from chainrule.training.images import range_warning, read_input
    from chainrule.training.modelfile import load_model

    model = load_model(args.model)
    failed = 0
    for name in args.files:
        try:  # a file that cannot be read is reported, and the others are still classified
            raw = read_input(Path(name), model)
        except ChainruleError as err:
            failed += 1
            error(str(err), err.exit_code)
            continue
        if (warning := range_warning(Path(name), raw, model)) is not None:
            warn(warning)
        try:
            probs = model.predict_proba(raw)
        except ChainruleError as err:
            failed += 1
            error(f"{name}: {err}", err.exit_code)
            continue
        for row, p in enumerate(probs):
            label = name if len(probs) == 1 else f"{name}[{row}]"
            best = p.argsort()[::-1][: args.top]
            print(f"{label}: " + ", ".join(f"{model.classes[k]} ({p[k]:.3f})" for k in best))
    if failed and len(args.files) > 1:
        return error(
            ngettext(
                "{failed} of {total} file could not be read",
                "{failed} of {total} files could not be read",
                len(args.files),
            ).format(failed=failed, total=len(args.files)),
            1,
        )
    return 1 if failed else 0


def _run_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from chainrule.errors import ConfigError
    from chainrule.interchange import FORMATS, export
    from chainrule.training.modelfile import load_model

    model_path = Path(args.model)
    model = load_model(model_path)
    default = model_path.with_name(f"{model_path.stem}{'_torch' if args.format == 'torch' else ''}")
    out = Path(args.out) if args.out else default.with_suffix(FORMATS[args.format])
    written = [out, out.with_suffix(".safetensors")] if args.format == "torch" else [out]
    if any(path.resolve() == model_path.resolve() for path in written):
        raise ConfigError(_("--out {out} would overwrite the model being exported").format(out=out))
    for path in export(model, out, args.format, probabilities=args.probabilities):
        print(_("wrote {path}").format(path=path))
    return 0


def _run_import(args: argparse.Namespace) -> int:
    from chainrule.interchange import import_torch

    classes = [c.strip() for c in args.classes.split(",")] if args.classes else None
    print(
        import_torch(
            args.file,
            args.out,
            classes=classes,
            data=args.data,
            loss=args.loss,
            optimizer=args.optimizer,
            lr=args.lr,
            steps=args.steps,
            rows=args.rows,
            seed=args.seed,
        )
    )
    return 0


def _run_datasets(args: argparse.Namespace) -> int:
    from chainrule.training.data import describe

    for name, where in describe(args.data_dir):
        print(f"{name:<14} {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
