"""The work of ``chainrule exercise new`` and ``chainrule exercise grade`` (their options are in
:mod:`chainrule.cli`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from chainrule.errors import ConfigError, UsageError
from chainrule.exercise.grade import grade_class
from chainrule.exercise.templates import TEMPLATES, template
from chainrule.exercise.variants import make_variants, template_of_problem, write_manifest, write_variant
from chainrule.i18n import _, current, ngettext
from chainrule.latex import ENGINES, missing_for


def run_new(args: argparse.Namespace) -> int:
    if args.list:
        width = max(map(len, TEMPLATES))
        for t in TEMPLATES.values():
            knobs = t.knobs
            sizes = ",".join(map(str, knobs.sizes))
            about = _("{title} (rows {rows}, sizes {sizes}, bias {bias})").format(
                title=_(t.title), rows=knobs.rows, sizes=sizes, bias=str(knobs.bias).lower()
            )
            print(f"{t.name:<{width}}  {about}")
        return 0
    if args.template and args.problem:
        raise UsageError(_("exercise new takes --template NAME or --problem FILE, not both"))
    if args.problem:
        options = {"rows": "--rows", "sizes": "--sizes", "bias": "--bias/--no-bias"}
        knobs = [option for name, option in options.items() if getattr(args, name) is not None]
        if knobs:
            raise UsageError(
                _(
                    "exercise new --problem FILE keeps the file's shapes: {options} apply to --template only "
                    "(--steps applies to both)"
                ).format(options=", ".join(knobs))
            )
    base = template_of_problem(args.problem) if args.problem else None
    try:  # a template or knob that does not exist is a bad command line (exit 2)
        base = base or template(args.template or "relu_mse")
        chosen = base.with_knobs(rows=args.rows, sizes=args.sizes, bias=args.bias, steps=args.steps)
    except ConfigError as err:
        raise UsageError(str(err)) from None
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(
            _("--out {out}: not an empty folder; a set of exercises goes to a new one, never over another").format(
                out=out
            )
        )
    variants = make_variants(chosen, args.variants, args.seed)
    missing = missing_for()
    pdf = not args.no_pdf and missing is None
    for variant in variants:
        write_variant(variant, out, pdf=pdf)
    write_manifest(out, chosen, args.seed, variants)
    n = len(variants)
    print(
        ngettext(
            "{n} variant of {template} (seed {seed}) in {out}:", "{n} variants of {template} (seed {seed}) in {out}:", n
        ).format(n=n, template=chosen.name, seed=args.seed, out=out)
    )
    print("  problems/  " + _("the problem files, for chainrule explain and check"))
    print(
        "  sheets/    "
        + _("the question sheets: {formats}").format(formats=".md, .html, .tex" + (", .pdf" if pdf else ""))
    )
    print("  answers/   " + _("the answer templates to hand out, one per variant"))
    print("  keys/      " + _("the keys: the worked step (.md) and the right answers (.toml)"))
    if not args.no_pdf and not pdf:
        print(
            _(
                "no PDFs: {engine} or what it needs for this language is not installed (Debian: apt-get install "
                "{packages})"
            ).format(engine=ENGINES[current()], packages=missing),
            file=sys.stderr,
        )
    return 0


def run_grade(args: argparse.Namespace) -> int:
    answers = Path(args.answers)
    problems = Path(args.problems) if args.problems else answers.parent / "problems"
    out = Path(args.out) if args.out else answers.parent / "graded"
    result = grade_class(answers, problems, out, args.carried_forward_credit, args.roster)
    counts = result.slip_counts()
    graded, n = len(result.graded) - len(result.failed), len(result.graded)
    print(
        ngettext(
            "{graded} of {n} sheet graded; results in {out}", "{graded} of {n} sheets graded; results in {out}", n
        ).format(graded=graded, n=n, out=out)
    )
    if counts:
        width = max(len(slip) for slip, _count in counts)
        print(_("the most common slips (students):"))
        for slip, count in counts:
            print(f"  {slip:<{width}}  {count}")
    for g in result.failed:
        print("chainrule: " + _("not graded: {error}").format(error=g.error), file=sys.stderr)
    return 1 if result.failed else 0
