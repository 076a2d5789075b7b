"""Variants of an exercise and the files of each: the problem file, the question sheet (Markdown, HTML,
LaTeX and a PDF where ``pdflatex`` is installed), the answer template and the key."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from chainrule.archive import atomic_write
from chainrule.errors import ConfigError
from chainrule.exercise.friendly import Asked, asked, search
from chainrule.exercise.sheets import answers_toml, question_sheet
from chainrule.exercise.templates import HALVES, INTEGERS, Knobs, Template
from chainrule.explain.explanation import Explanation
from chainrule.explain.page import to_html_document
from chainrule.explain.problem import parse_problem, read_toml, write_problem
from chainrule.explain.render import render, to_latex_document, to_markdown
from chainrule.i18n import _, language
from chainrule.latex import engine_of
from chainrule.registry import LOSSES

#: The folders of an exercise set, by what they hold.
FOLDERS = ("problems", "sheets", "answers", "keys")


@dataclass
class Variant:
    """One variant: its id (``relu_mse-7-03``: template, seed, number), its problem file (as a dict), the
    explanation of its step(s) and the values its sheet asks for."""

    id: str
    title: str
    document: dict[str, Any]
    explanation: Explanation
    values: list[Asked]


def make_variants(template: Template, count: int, seed: int) -> list[Variant]:
    """``count`` variants of ``template``, each found by search; the same seed gives the same variants
    (variant k draws from its own generator, seeded by ``(seed, k)``)."""
    out = []
    for k in range(1, count + 1):
        rng = np.random.default_rng([seed, k])
        vid = f"{template.name}-{seed}-{k:02d}"
        document, explanation = search(
            lambda r: template.draw(r, template.knobs), rng, f"{vid}: {template.title}", template.relu_must_cut
        )
        out.append(Variant(vid, template.title, document, explanation, asked(explanation.problem)))
    return out


def template_of_problem(path: str | Path) -> Template:
    """A template that keeps the network, loss and training of the problem file at ``path`` and draws new
    numbers of the same shapes: integers for X and regression targets, halves for the parameters, classes
    for class targets."""
    document = read_toml(path)
    problem = parse_problem(document, str(path))  # the file's own errors first
    kind = LOSSES[problem.loss.kind].cls.target_kind
    classes = problem.model.forward(problem.X).shape[1]
    name = Path(path).stem

    def draw(rng: np.random.Generator, knobs: Knobs) -> dict[str, Any]:
        def pick(choices: tuple, shape: tuple) -> list:
            return np.array(choices, dtype=np.float64)[rng.integers(0, len(choices), shape)].tolist()

        X = pick(INTEGERS, problem.X.shape)
        if kind == "classes":
            y = rng.integers(0, classes, problem.y.shape).tolist() if problem.y.ndim == 1 else _one_hot(rng, problem.y)
        elif kind == "binary":
            y = rng.integers(0, 2, problem.y.shape).astype(float).tolist()
        else:
            y = pick(INTEGERS, problem.y.shape)
        layers = [
            {k: pick(HALVES, np.shape(v)) if isinstance(v, list) else v for k, v in spec.items()}
            for spec in document["layers"]
        ]
        drawn = {k: v for k, v in document.items() if k != "title"}
        if isinstance(drawn.get("train"), dict):  # --steps is honoured; the file's shapes are kept
            drawn["train"] = {**drawn["train"], "steps": knobs.steps}
        return {**drawn, "data": {"X": X, "y": y}, "layers": layers}

    title = document.get("title", name) if isinstance(document.get("title"), str) else name
    rows, features = problem.X.shape
    return Template(name, title, Knobs(rows, (features,), steps=problem.steps), draw)


def _one_hot(rng: np.random.Generator, y: np.ndarray) -> list:
    return np.eye(y.shape[1])[rng.integers(0, y.shape[1], y.shape[0])].tolist()


def write_variant(variant: Variant, out: Path, pdf: bool = True, lang: str | None = None) -> list[Path]:
    """Write the files of ``variant`` under ``out`` (``problems/``, ``sheets/``, ``answers/``, ``keys/``)
    in ``lang`` (default: the language in effect); the PDF only with ``pdf`` and where ``pdflatex`` is
    installed (``xelatex`` for Chinese). Returns the paths written."""
    with language(lang):
        return _write_variant(variant, out, pdf)


def _write_variant(variant: Variant, out: Path, pdf: bool) -> list[Path]:
    for folder in FOLDERS:
        (out / folder).mkdir(parents=True, exist_ok=True)
    vid = variant.id
    written = [out / "problems" / f"{vid}.toml"]
    write_problem(
        written[0],
        {"title": f"{vid}: {_(variant.title)}", **{k: v for k, v in variant.document.items() if k != "title"}},
        _("Exercise {variant}, made by chainrule exercise new").format(variant=vid),
    )
    sheet = question_sheet(variant.explanation, variant.values, vid, variant.title)
    texts = {
        out / "sheets" / f"{vid}.md": to_markdown(sheet),
        out / "sheets" / f"{vid}.tex": to_latex_document(sheet),
        out / "sheets" / f"{vid}.html": to_html_document(sheet),
        out / "answers" / f"{vid}.toml": answers_toml(vid, variant.title, variant.values),
        out / "keys" / f"{vid}.md": render(variant.explanation, "markdown"),
        out / "keys" / f"{vid}.toml": answers_toml(vid, variant.title, variant.values, key=True),
    }
    for path, text in texts.items():
        atomic_write(path, lambda f, text=text: f.write(text.encode()))
        written.append(path)
    if pdf:
        made = compile_pdf(out / "sheets" / f"{vid}.tex")
        if made is not None:
            written.append(made)
    return written


def write_manifest(out: Path, template: Template, seed: int, variants: list[Variant]) -> Path:
    """``exercises.json``: the template, its knobs, the seed and the variants' ids, to make them again."""
    knobs = template.knobs
    manifest = {
        "template": template.name,
        "title": template.title,
        "seed": seed,
        "knobs": {"rows": knobs.rows, "sizes": list(knobs.sizes), "bias": knobs.bias, "steps": knobs.steps},
        "variants": [v.id for v in variants],
    }
    path = out / "exercises.json"
    atomic_write(path, lambda f: f.write((json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode()))
    return path


def compile_pdf(tex: Path) -> Path | None:
    """``tex`` compiled into a PDF beside it by the engine its first line names (pdflatex, or xelatex for
    Chinese); ``None`` when that engine is not installed. A document that does not compile is a bug of the
    sheet, reported with the end of LaTeX's log."""
    name = engine_of(tex.read_text())
    engine = shutil.which(name)
    if engine is None:
        return None
    with tempfile.TemporaryDirectory() as work:
        shutil.copy(tex, Path(work) / tex.name)
        result = subprocess.run(
            [engine, "-interaction=nonstopmode", "-halt-on-error", tex.name],
            cwd=work,
            capture_output=True,
            text=True,
            timeout=120,
        )
        made = Path(work) / tex.with_suffix(".pdf").name
        if result.returncode != 0 or not made.exists():
            raise ConfigError(f"{tex}: {name} failed: {result.stdout[-500:]}")
        target = tex.with_suffix(".pdf")
        shutil.copy(made, target)
    return target
