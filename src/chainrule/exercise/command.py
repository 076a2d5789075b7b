"""The work of ``chainrule exercise new`` and ``chainrule exercise grade`` (their options are in
:mod:`chainrule.cli`)."""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from chainrule.errors import ConfigError, UsageError
from chainrule.exercise.grade import grade_class
from chainrule.exercise.templates import TEMPLATES, template
from chainrule.exercise.variants import make_variants, template_of_problem, write_manifest, write_variant


def run_new(args: argparse.Namespace) -> int:
    if args.list:
        width = max(map(len, TEMPLATES))
        for t in TEMPLATES.values():
            knobs = t.knobs
            sizes = ",".join(map(str, knobs.sizes))
            print(f"{t.name:<{width}}  {t.title} (rows {knobs.rows}, sizes {sizes}, bias {str(knobs.bias).lower()})")
        return 0
    if args.template and args.problem:
        raise UsageError("exercise new takes --template NAME or --problem FILE, not both")
    if args.problem:
        options = {"rows": "--rows", "sizes": "--sizes", "bias": "--bias/--no-bias"}
        knobs = [option for name, option in options.items() if getattr(args, name) is not None]
        if knobs:
            raise UsageError(
                f"exercise new --problem FILE keeps the file's shapes: {', '.join(knobs)} apply to --template only "
                "(--steps applies to both)"
            )
    base = template_of_problem(args.problem) if args.problem else None
    try:  # a template or knob that does not exist is a bad command line (exit 2)
        base = base or template(args.template or "relu_mse")
        chosen = base.with_knobs(rows=args.rows, sizes=args.sizes, bias=args.bias, steps=args.steps)
    except ConfigError as err:
        raise UsageError(str(err)) from None
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"--out {out}: not an empty folder; a set of exercises goes to a new one, never over another")
    variants = make_variants(chosen, args.variants, args.seed)
    pdf = not args.no_pdf and shutil.which("pdflatex") is not None
    for variant in variants:
        write_variant(variant, out, pdf=pdf)
    write_manifest(out, chosen, args.seed, variants)
    print(f"{len(variants)} variants of {chosen.name} (seed {args.seed}) in {out}:")
    print("  problems/  the problem files, for chainrule explain and check")
    print(f"  sheets/    the question sheets: .md, .html, .tex{', .pdf' if pdf else ''}")
    print("  answers/   the answer templates to hand out, one per variant")
    print("  keys/      the keys: the worked step (.md) and the right answers (.toml)")
    if not args.no_pdf and not pdf:
        print("no PDFs: pdflatex is not installed (Debian: apt-get install texlive-latex-base)", file=sys.stderr)
    return 0


def run_grade(args: argparse.Namespace) -> int:
    answers = Path(args.answers)
    problems = Path(args.problems) if args.problems else answers.parent / "problems"
    out = Path(args.out) if args.out else answers.parent / "graded"
    result = grade_class(answers, problems, out, args.carried_forward_credit, args.roster)
    counts = result.slip_counts()
    graded = len(result.graded) - len(result.failed)
    print(f"{graded} of {len(result.graded)} sheets graded; results in {out}")
    if counts:
        width = max(len(slip) for slip, _ in counts)
        print("the most common slips (students):")
        for slip, count in counts:
            print(f"  {slip:<{width}}  {count}")
    for g in result.failed:
        print(f"chainrule: not graded: {g.error}", file=sys.stderr)
    return 1 if result.failed else 0
