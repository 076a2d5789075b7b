"""A class's answer sheets graded at once with ``chainrule check``'s diagnosis, and what the class got wrong.

Each sheet (an answers file, ``<student>.toml``) names its variant (``variant = "relu_mse-7-03"``, as the
answer template does); it is checked against that variant's problem file. A sheet that cannot be graded
(no variant, a variant that is not in the problems folder or not the one the roster gives the student,
garbled numbers) gets one clear message of its own, and the rest of the class is graded all the same. A
value the sheet leaves out counts as unanswered, so every sheet of a variant is marked out of the same total.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chainrule.archive import atomic_write
from chainrule.errors import ChainruleError, ConfigError, MissingPackage, UsageError, need
from chainrule.exercise.friendly import asked
from chainrule.explain.check import CheckReport, check_answers, load_answers, report, verdicts_to_json
from chainrule.explain.explanation import Explanation, run_problem
from chainrule.explain.problem import load_problem, read_toml
from chainrule.explain.slips import SLIPS
from chainrule.i18n import _, current, language, ngettext

#: The slip of a root that no slip of the catalogue explains, in the summary.
UNEXPLAINED = "unexplained"
CSV_COLUMNS = ("student", "sheet", "variant", "mark", "out_of", "right", "carried_forward", "wrong", "unanswered")


@dataclass
class Graded:
    """One student's sheet: its diagnosis, or the message that says why it could not be graded."""

    student: str
    sheet: str
    variant: str | None = None
    result: CheckReport | None = None
    error: str | None = None
    unknown: list[str] = field(default_factory=list)  # keys of the sheet that name no value: not checked

    @property
    def slips(self) -> list[str]:
        """The slips at the roots of this sheet's errors, once each (:data:`UNEXPLAINED` for a root that
        no slip of the catalogue explains)."""
        if self.result is None:
            return []
        return list(dict.fromkeys(root.slip or UNEXPLAINED for root in self.result.roots))


@dataclass
class ClassResult:
    """Every sheet of the class, graded or not, and the files written."""

    graded: list[Graded]
    written: list[Path] = field(default_factory=list)

    @property
    def failed(self) -> list[Graded]:
        return [g for g in self.graded if g.error is not None]

    def slip_counts(self) -> list[tuple[str, int]]:
        """Each slip with the number of students whose sheet has it at a root, most common first."""
        counts = Counter(slip for g in self.graded for slip in g.slips)
        return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


def grade_class(
    answers_dir: str | Path,
    problems_dir: str | Path,
    out: str | Path,
    credit: float = 1.0,
    roster: str | Path | None = None,
    lang: str | None = None,
) -> ClassResult:
    """Grade every ``*.toml`` sheet in ``answers_dir`` against the problem file of its variant in
    ``problems_dir``; write ``results.csv``, ``results.json``, ``summary.md``, ``slips.png`` (with
    matplotlib) and one text report per student (``students/``) under ``out``. ``roster``: a CSV file of
    ``student,variant`` rows, the variant each student was given. ``lang``: the language of the messages
    and the summary (default: the language in effect)."""
    with language(lang):
        return _grade_class(answers_dir, problems_dir, out, credit, roster)


def _grade_class(
    answers_dir: str | Path, problems_dir: str | Path, out: str | Path, credit: float, roster: str | Path | None
) -> ClassResult:
    answers_dir, problems_dir, out = Path(answers_dir), Path(problems_dir), Path(out)
    for folder, what in ((answers_dir, "ANSWERS_DIR"), (problems_dir, "--problems")):
        if not folder.is_dir():
            raise UsageError(_("{option} {folder}: no such folder").format(option=what, folder=folder))
    sheets = sorted(answers_dir.glob("*.toml"))
    if not sheets:
        raise ConfigError(_("{folder}: no answer sheets (*.toml) in it").format(folder=answers_dir))
    assigned = _read_roster(Path(roster)) if roster else {}
    clear_results(out)  # before any sheet is graded: a folder that is not grade's is refused at once
    explanations: dict[str, Explanation] = {}
    graded = [_grade_one(path, problems_dir, explanations, credit, assigned) for path in sheets]
    result = ClassResult(graded)
    result.written = write_results(result, out)
    return result


#: A variant id as ``exercise new`` writes them: a plain file name, never a path.
_VARIANT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,100}")


def _grade_one(
    path: Path, problems_dir: Path, explanations: dict[str, Explanation], credit: float, assigned: dict[str, str]
) -> Graded:
    graded = Graded(path.stem, path.name)
    try:
        variant = read_toml(path).get("variant")
        if not isinstance(variant, str) or not variant:
            raise ConfigError(
                _('{sheet}: no variant id; expected a line variant = "..." as in the answer template').format(
                    sheet=path.name
                )
            )
        if not _VARIANT.fullmatch(variant):
            raise ConfigError(
                _("{sheet}: {variant!r} is not a variant id (letters, digits, - and _)").format(
                    sheet=path.name, variant=variant[:60]
                )
            )
        graded.variant = variant
        if path.stem in assigned and assigned[path.stem] != variant:
            raise ConfigError(
                _("{sheet}: the sheet is for variant {variant}, but the roster gives {student} variant {given}").format(
                    sheet=path.name, variant=variant, student=path.stem, given=assigned[path.stem]
                )
            )
        problem_path = problems_dir / f"{variant}.toml"
        if not problem_path.is_file():
            raise ConfigError(
                _("{sheet}: the sheet is for variant {variant}, which is not among the problems in {folder}").format(
                    sheet=path.name, variant=variant, folder=problems_dir
                )
            )
        if variant not in explanations:
            explanations[variant] = run_problem(load_problem(problem_path))
        explanation = explanations[variant]
        answers = load_answers(str(path))
        graded.unknown = list(answers.unknown)
        for value in asked(explanation.problem):  # a value the sheet leaves out is unanswered, not wrong
            answers.values.setdefault(value.path, "")
        graded.result = check_answers(explanation, answers, path.name, credit)
    except (ChainruleError, OSError) as err:  # this sheet only: the rest of the class is still graded
        graded.error = str(err) if isinstance(err, ChainruleError) else f"{path.name}: {err.strerror or err}"
    return graded


def _read_roster(path: Path) -> dict[str, str]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(_("--roster {path}: cannot read it ({error})").format(path=path, error=err)) from None
    if rows and [c.strip().lower() for c in rows[0][:2]] == ["student", "variant"]:
        rows = rows[1:]
    bad = [k + 1 for k, row in enumerate(rows) if len(row) != 2 or not all(c.strip() for c in row)]
    if bad:
        raise ConfigError(_("--roster {path}: line {line}: expected student,variant").format(path=path, line=bad[0]))
    return {student.strip(): variant.strip() for student, variant in rows}


# -- results -------------------------------------------------------------------------------------------
def student_json(g: Graded) -> dict[str, Any]:
    """One student in ``results.json``: the score and roots of ``chainrule check --format json`` (and its
    answers), or the error that kept the sheet from being graded."""
    entry: dict[str, Any] = {
        "student": g.student,
        "sheet": g.sheet,
        "variant": g.variant,
        "error": g.error,
        "unknown": g.unknown,
    }
    if g.result is not None:
        checked = verdicts_to_json(g.result)
        entry.update(score=checked["score"], slips=g.slips, roots=checked["roots"], answers=checked["answers"])
    return entry


#: The files grade writes under ``--out`` (and ``students/*.txt``): removed before a new grading.
RESULT_FILES = ("results.csv", "results.json", "summary.md", "slips.png")


def clear_results(out: Path) -> None:
    """Make ``out`` ready for a fresh grading: a new or empty folder is; one that a grading wrote (it holds
    ``results.json``) loses grade's own files, so that no student or chart of an earlier grading stays;
    any other folder is refused, since its files are not grade's to remove."""
    if not out.exists():
        return
    if not out.is_dir() or (any(out.iterdir()) and not (out / "results.json").is_file()):
        raise UsageError(
            _(
                "--out {out}: not an empty folder nor one that exercise grade wrote; results go to a new folder, or "
                "to the --out of an earlier grading, whose files are replaced"
            ).format(out=out)
        )
    for name in RESULT_FILES:
        (out / name).unlink(missing_ok=True)
    students = out / "students"
    if students.is_dir():
        for report_file in students.glob("*.txt"):
            report_file.unlink()


def write_results(result: ClassResult, out: Path) -> list[Path]:
    """The class's files under ``out`` (made ready by :func:`clear_results`); returns their paths."""
    (out / "students").mkdir(parents=True, exist_ok=True)
    texts: dict[Path, str] = {}
    rows = io.StringIO()
    writer = csv.writer(rows, lineterminator="\n")
    writer.writerow([*CSV_COLUMNS, "slips", "unknown", "error"])
    for g in result.graded:
        score = g.result.score if g.result is not None else {}
        writer.writerow(
            [
                g.student,
                g.sheet,
                g.variant or "",
                *(_mark(score.get(c, "")) for c in CSV_COLUMNS[3:]),
                ";".join(g.slips),
                ";".join(g.unknown),
                g.error or "",
            ]
        )
        if g.result is not None:
            texts[out / "students" / f"{g.student}.txt"] = (
                _("{sheet} (variant {variant})").format(sheet=g.sheet, variant=g.variant) + "\n\n" + report(g.result)
            )
    texts[out / "results.csv"] = rows.getvalue()
    summary = class_summary(result)
    texts[out / "results.json"] = (
        json.dumps({"summary": summary, "students": [student_json(g) for g in result.graded]}, indent=2) + "\n"
    )
    texts[out / "summary.md"] = summary_markdown(result, summary)
    for path, text in texts.items():
        atomic_write(path, lambda f, text=text: f.write(text.encode()))
    written = list(texts)
    chart = slip_chart(result, out / "slips.png")
    return [*written, chart] if chart else written


def _mark(value: Any) -> Any:
    return f"{value:g}" if isinstance(value, float) else value


def class_summary(result: ClassResult) -> dict[str, Any]:
    """What the class got wrong: sheets graded and not, the mean mark, and each slip with the number of
    students who made it (most common first)."""
    graded = [g for g in result.graded if g.result is not None]
    marks = [g.result.score["mark"] / g.result.score["out_of"] for g in graded if g.result.score["out_of"]]
    words = {slip.id: _(slip.words) for slip in SLIPS}  # as the catalogs have them
    return {
        "sheets": len(result.graded),
        "graded": len(graded),
        "not_graded": [{"sheet": g.sheet, "error": g.error} for g in result.failed],
        "all_right": sum(g.result.score["right"] == g.result.score["out_of"] for g in graded),
        "mean_mark": sum(marks) / len(marks) if marks else None,
        "slips": [
            {
                "slip": slip,
                "students": count,
                "share": count / len(graded),
                "words": words.get(slip, _("a wrong number that no slip of the catalogue explains")),
            }
            for slip, count in result.slip_counts()
        ],
    }


def summary_markdown(result: ClassResult, summary: dict[str, Any]) -> str:
    """The class summary as Markdown: the counts, the table of slips, the sheets not graded."""
    lines = ["# " + _("Class summary"), ""]
    mean = f"{100 * summary['mean_mark']:.0f}%" if summary["mean_mark"] is not None else "—"
    lines.append(
        ngettext(
            "{graded} of {n} sheet graded; {right} all right; mean mark {mean}.",
            "{graded} of {n} sheets graded; {right} all right; mean mark {mean}.",
            summary["sheets"],
        ).format(graded=summary["graded"], n=summary["sheets"], right=summary["all_right"], mean=mean)
    )
    lines += ["", "## " + _("The most common slips"), ""]
    if summary["slips"]:
        header = (_("slip"), _("what"), _("students"), _("share"))
        lines += ["| " + " | ".join(header) + " |", "| --- | --- | ---: | ---: |"]
        lines += [
            f"| `{s['slip']}` | {s['words']} | {s['students']} | {100 * s['share']:.0f}% |" for s in summary["slips"]
        ]
    else:
        lines.append(_("No slips: every answer given was right."))
    if summary["not_graded"]:
        lines += ["", "## " + _("Sheets not graded"), ""]
        lines += [f"- {entry['error']}" for entry in summary["not_graded"]]  # each names its sheet
    return "\n".join(lines) + "\n"


def slip_chart(result: ClassResult, path: Path) -> Path | None:
    """A bar chart of the slips by the number of students who made them; ``None`` when no sheet has one
    or matplotlib (``chainrule[train]``) is not installed."""
    counts = result.slip_counts()
    if not counts:
        return None
    try:
        need("matplotlib", "train", "the class summary's chart")
    except MissingPackage:  # the table says it all; the chart is a picture of it
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [slip for slip, _count in counts][::-1]
    with plt.rc_context({"font.family": ["DejaVu Sans", *_cjk_fonts()]}):
        return _draw(plt, names, counts, path)


def _cjk_fonts() -> list[str]:
    """The Chinese fonts matplotlib can find here, after DejaVu Sans (which has Latin and Cyrillic but no
    Chinese): the chart's title and label in Chinese need one (Debian: fonts-noto-cjk)."""
    if current() != "zh":
        return []
    from matplotlib import font_manager

    wanted = ("Noto Sans CJK SC", "Noto Sans CJK JP", "Noto Serif CJK SC", "Noto Serif CJK JP")
    found = {font.name for font in font_manager.fontManager.ttflist}
    if not found.intersection(wanted):  # matplotlib's font cache may predate the fonts: add their files
        for file in font_manager.findSystemFonts():
            if "NotoSansCJK" in Path(file).name or "NotoSerifCJK" in Path(file).name:
                font_manager.fontManager.addfont(file)
        found = {font.name for font in font_manager.fontManager.ttflist}
    return [name for name in wanted if name in found][:1]


def _draw(plt, names: list[str], counts: list, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(counts) + 1.2))
    ax.barh(names, [count for _, count in counts][::-1], color="#4c72b0")
    ax.set_xlabel(_("students"))
    ax.set_title(_("Slips at the root of the class's errors"))
    ax.xaxis.get_major_locator().set_params(integer=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
