"""A derivation as text, Markdown (LaTeX maths), a LaTeX document, or JSON.

The equations are written once, in the Unicode maths of :mod:`chainrule.notation`, which turns them into
LaTeX; each step shows its reason and whether SymPy verified it, and how. ``verbose`` (``chainrule derive
--verify``) adds what each check compared and the comparison of the result with chainrule's own backward
pass on random float64 inputs.
"""

from __future__ import annotations

import json
from typing import Any

from chainrule.derive.core import Derivation, library_error
from chainrule.i18n import _, display_width, language, ngettext
from chainrule.latex import document_head
from chainrule.notation import text_to_latex, to_latex

FORMATS = ("text", "markdown", "latex", "json")


def _mark(check) -> str:
    return f"✓ {check.how}" if check.verified else _("✗ NOT VERIFIED ({how})").format(how=check.how)


def _library(derivation: Derivation) -> float | None:
    if derivation.against is None:
        return None
    from chainrule.derive import sympy

    return library_error(derivation, sympy())


def _summary(derivation: Derivation) -> str:
    hows = [c.how for c in derivation.checks]
    counts = ", ".join(f"{how} {hows.count(how)}" for how in dict.fromkeys(hows))
    steps = len(derivation.steps)
    if derivation.verified:
        text = ngettext("{n} step, verified by SymPy ({counts}).", "{n} steps, verified by SymPy ({counts}).", steps)
    else:
        text = ngettext("{n} step, NOT all verified ({counts}).", "{n} steps, NOT all verified ({counts}).", steps)
    return text.format(n=steps, counts=counts)


def _library_line(error: float) -> str:
    return _(
        "Result against chainrule's backward on random float64 inputs: largest relative difference {error}."
    ).format(error=f"{error:.1e}")


def to_text(derivations: list[Derivation], verbose: bool) -> str:
    out: list[str] = []
    for d in derivations:
        heading = f"{d.topic}: {d.title}"
        out += ["" if out else None, heading, "=" * display_width(heading), _("Given:")]
        out += [f"  {g}" for g in d.given] + [f"  ({about})" for about in d.about]
        for k, (step, check) in enumerate(zip(d.steps, d.checks, strict=True), 1):
            label = f"{step.label}:  " if step.label else ""
            out += ["", f"{k:>2}. {label}{step.shown}", f"    {step.reason}   [{_mark(check)}]"]
            if verbose:
                out.append("    " + _("check: {detail}").format(detail=check.detail))
        out += ["", _summary(d)]
        if verbose and (error := _library(d)) is not None:
            out.append(_library_line(error))
        out += [_("Note: {note}").format(note=note) for note in d.notes]
    return "\n".join(line for line in out if line is not None) + "\n"


def to_markdown(derivations: list[Derivation], verbose: bool) -> str:
    out: list[str] = []
    for d in derivations:
        out += [f"## `{d.topic}`: {d.title}", "", _("Given:"), ""]
        out += [f"$$\n{to_latex(g)}\n$$\n" for g in d.given] + [f"({about})\n" for about in d.about]
        for k, (step, check) in enumerate(zip(d.steps, d.checks, strict=True), 1):
            label = f"{step.label}: " if step.label else ""
            out += [f"{k}. {label}{step.reason} ({_mark(check)})", "", f"$$\n{to_latex(step.shown)}\n$$", ""]
            if verbose:
                out += ["   " + _("check: {detail}").format(detail=f"`{check.detail}`"), ""]
        out += [_summary(d), ""]
        if verbose and (error := _library(d)) is not None:
            out += [_library_line(error), ""]
        out += [_("*Note:* {note}").format(note=note) + "\n" for note in d.notes]
    return "\n".join(out)


def _display(maths: str) -> str:
    """An equation as LaTeX display maths; several joined by ",  " (a comma and two spaces) are set one
    per line, so that a long step fits the page."""
    parts = maths.split(",  ")
    if len(parts) == 1:
        return rf"\[{to_latex(maths)}\]"
    lines = r",\\ ".join(to_latex(part) for part in parts)
    return rf"\begin{{gather*}}{lines}\end{{gather*}}"


def to_latex_document(derivations: list[Derivation], verbose: bool) -> str:
    # landscape, as explain's: room for matrices of numbers
    out = document_head(r"\usepackage[margin=2cm,landscape]{geometry}", r"\allowdisplaybreaks")
    for d in derivations:
        out.append(rf"\section*{{{text_to_latex(d.topic)}: {text_to_latex(d.title)}}}")
        out += [text_to_latex(_("Given:")), *(_display(g) for g in d.given)]
        out += [text_to_latex(f"({about})") + "\n" for about in d.about] + [r"\begin{enumerate}"]
        for step, check in zip(d.steps, d.checks, strict=True):
            if check.verified:
                mark = text_to_latex(_("verified"))
            else:
                mark = r"\textbf{" + text_to_latex(_("not verified")) + "}"
            label = rf"\emph{{{text_to_latex(step.label)}}}: " if step.label else ""
            out.append(rf"\item {label}{text_to_latex(step.reason)} ({mark}: {check.how})")
            out.append(_display(step.shown))
            if verbose:
                out.append(text_to_latex(_("Check: {detail}").format(detail=check.detail)))
        out += [r"\end{enumerate}", text_to_latex(_summary(d)) + "\n"]
        if verbose and (error := _library(d)) is not None:
            out.append(text_to_latex(_library_line(error)) + "\n")
        out += [text_to_latex(_("Note: {note}").format(note=note)) + "\n" for note in d.notes]
    out.append(r"\end{document}")
    return "\n".join(out) + "\n"


def to_json(derivation: Derivation, verbose: bool = False) -> dict[str, Any]:
    """One derivation as JSON: ``topic``, ``title``, ``kinds``, ``given``, ``about``, ``steps`` (each with
    ``label``, ``equation``, ``latex``, ``reason``, ``verified``, ``how``, ``check``), ``verified``, ``notes``; with
    ``verbose`` also ``library_error``."""
    entry = {
        "topic": derivation.topic,
        "title": derivation.title,
        "kinds": list(derivation.kinds),
        "given": derivation.given,
        "about": derivation.about,
        "steps": [
            {
                "label": step.label,
                "equation": step.shown,
                "latex": to_latex(step.shown),
                "reason": step.reason,
                "verified": check.verified,
                "how": check.how,
                "check": check.detail,
            }
            for step, check in zip(derivation.steps, derivation.checks, strict=True)
        ],
        "verified": derivation.verified,
        "notes": derivation.notes,
    }
    if verbose:
        entry["library_error"] = _library(derivation)
    return entry


def render(
    derivations: Derivation | list[Derivation], format: str = "text", verbose: bool = False, lang: str | None = None
) -> str:
    """One derivation, or several in one document, in ``format`` (one of :data:`FORMATS`). The words that
    frame the steps are in ``lang``, by default the language the first derivation was built in (its steps'
    own words are always in that one: ``derive(..., lang=...)``)."""
    if isinstance(derivations, Derivation):
        derivations = [derivations]
    with language(lang or derivations[0].lang):
        if format == "json":
            entries = [to_json(d, verbose) for d in derivations]
            return json.dumps(entries[0] if len(entries) == 1 else entries, indent=2, ensure_ascii=False) + "\n"
        writers = {"text": to_text, "markdown": to_markdown, "latex": to_latex_document}
        return writers[format](derivations, verbose)
