"""explain and check in Russian and Chinese: no English sentence left in what they print, the glossary's
terms, the box-drawn matrices aligned beside wide characters, LaTeX that compiles, HTML that says its
language, and the rendered examples in docs/examples kept current."""

from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path

import numpy as np
import pytest

import chainrule.i18n
from chainrule.cli import main
from chainrule.explain import load_problem, run_problem
from chainrule.explain.check import check_answers, load_answers, report, report_html, verdicts_to_json
from chainrule.explain.render import Equation, Heading, example_pages, render, to_text
from chainrule.explain.slips import SLIPS

from helpers import compile_latex

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
PROBLEMS = sorted(p for p in EXAMPLES.glob("*.toml") if "answers" not in p.name)
ANSWERS = {  # each answers file of examples/, with its problem
    "relu_mse_answers.toml": "relu_mse.toml",
    "relu_mse_answers_with_slips.toml": "relu_mse.toml",
    "sigmoid_logloss_answers_with_slips.toml": "sigmoid_logloss.toml",
}
TRANSLATED = ("ru", "zh")


# -- English prose, found without the code under test --------------------------------------------------
def _names() -> set[str]:
    """Words that stay English in every language: the names of kinds, scales, topics and commands, as the
    registries and the problem files spell them."""
    import chainrule as cr
    from chainrule.derive.topics import all_topics
    from chainrule.explain.problem import layer_kinds

    words = {*layer_kinds(), *cr.LOSSES.names(), *cr.OPTIMIZERS.names(), *all_topics()}
    words |= {"chainrule", "derive", "explain", "check", "mean", "sum", "half_mean", "identity", "lr"}
    return {part.lower() for word in words for part in re.split(r"[^A-Za-z]+", word) if part}


NAMES = _names()
WORD = re.compile(r"[A-Za-z][A-Za-z']*")


def english_sentences(text: str, markdown: bool = False) -> list[str]:
    """Runs of two or more English words (ASCII words that are not names of kinds, topics or commands)
    in the prose of ``text``: its title (the problem file's own words), equations, formulas in brackets,
    paths and slip ids are left out first."""
    lines = text.splitlines()
    lines = lines[2:] if not markdown else lines[1:]  # the title, and (text) its underline
    if markdown:
        text = re.sub(r"\$\$.*?\$\$", " ", "\n".join(lines), flags=re.S)
    else:
        text = "\n".join(line for line in lines if not line.startswith("  ") or line.startswith("    "))
    text = re.sub(r"\[[\w.]+\]|\S*[\[\]{}_./=·∂]\S*", " ", text)  # ids, paths and formulas
    found = []
    for line in text.splitlines():
        run: list[str] = []
        for token in [*re.split(r"(\s+)", line), ""]:
            if token.isspace():
                continue
            word = token.strip("(),.;:!?«»\"'")
            if WORD.fullmatch(word) and len(word) > 1 and word.lower() not in NAMES and word == token:
                run.append(word)
                continue
            if len(run) >= 2:
                found.append(" ".join(run))
            run = []
    return found


def test_the_detector_finds_english_and_passes_other_languages():
    assert english_sentences("title\n=====\nthe bias was left out of the layer's output") == [
        "the bias was left out of the layer's output"
    ]
    assert english_sentences("title\n=====\nСлой 1: relu\n  Z₀ = X·W₀\nПочему: chainrule derive linear") == []
    assert english_sentences("title\n=====\n第 0 层：linear；优化器 sgd，学习率 lr = 1。") == []


def outputs(lang: str) -> dict[str, tuple[str, bool]]:
    """Every example explained in text and Markdown, and every answers file checked, in ``lang``."""
    out = {}
    for path in PROBLEMS:
        explanation = run_problem(load_problem(path))
        out[f"{path.stem}.txt"] = (render(explanation, "text", lang=lang), False)
        out[f"{path.stem}.md"] = (render(explanation, "markdown", lang=lang), True)
    for answers, problem in ANSWERS.items():
        explanation = run_problem(load_problem(EXAMPLES / problem))
        result = check_answers(explanation, load_answers(str(EXAMPLES / answers)), lang=lang)
        out[answers] = ("title\n=====\n" + report(result, lang=lang), False)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("lang", TRANSLATED)
def test_no_english_sentence_in_the_examples(lang):
    found = {name: english_sentences(text, md) for name, (text, md) in outputs(lang).items()}
    assert not {name: runs for name, runs in found.items() if runs}
    assert {name: english_sentences(text, md) for name, (text, md) in outputs("en").items()}["relu_mse.txt"]


def test_an_untranslated_sentence_is_found(monkeypatch):
    """A catalog that lacks one sentence: its English shows, and the test above would fail on it."""
    real = chainrule.i18n.translations("ru")

    class Lacking:
        def gettext(self, message):
            return message if message.startswith("One batch") else real.gettext(message)

        def ngettext(self, singular, plural, n):
            return real.ngettext(singular, plural, n)

    monkeypatch.setattr(chainrule.i18n, "translations", lambda lang: Lacking())
    text = render(run_problem(load_problem(EXAMPLES / "relu_mse.toml")), "text", lang="ru")
    assert "Прямой проход" in text
    assert any(run.startswith("One batch") for run in english_sentences(text))


# -- the glossary's terms --------------------------------------------------------------------------------
def glossary() -> dict[str, tuple[str, str]]:
    rows = re.findall(r"^\| ([^|]+) \| ([^|]+) \| ([^|]+) \|$", (ROOT / "docs" / "glossary.md").read_text(), re.M)
    return {en.strip(): (ru.strip(), zh.strip()) for en, ru, zh in rows}


@pytest.mark.parametrize(("lang", "column"), [("ru", 0), ("zh", 1)])
def test_headings_use_the_glossary(lang, column):
    terms = glossary()
    text = render(run_problem(load_problem(EXAMPLES / "relu_mse.toml")), "markdown", lang=lang)
    headings = [line.lstrip("# ") for line in text.splitlines() if line.startswith("#")]
    for english in ("forward pass", "backward pass"):
        term = terms[english][column]
        assert term[0].upper() + term[1:] in headings
    loss = terms["loss, loss function"][column]
    assert any(h.lower().startswith(loss.lower()) for h in headings)
    for english in ("learning rate", "batch", "example, object (one row of the batch)"):
        term = terms[english][column].split("（")[0]  # 批（batch）: the word, not its gloss
        # a Russian word takes the case the sentence needs: its stem is found (скорость → со скоростью)
        assert re.search(r"\w*\s+".join(re.escape(w[: max(4, len(w) - 2)]) for w in term.split()), text), term


# -- matrices beside wide characters -------------------------------------------------------------------------
def columns(text: str) -> int:
    """Display columns, as a terminal draws them (East Asian wide and fullwidth: two; combining: none)."""
    return sum(
        0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in ("W", "F") else 1 for c in text
    )


def test_matrices_stay_aligned_beside_wide_characters():
    matrix = np.array([[1.0, -22.5], [333.0, 4.0]])
    text = to_text([Heading(1, "梯度：第一层"), Equation(["损失 = ", matrix, " + ", matrix])])
    lines = text.splitlines()
    assert columns(lines[1]) == columns(lines[0])  # the title's underline as wide as the title
    top, bottom = lines[2], lines[3]
    for left, right in (("⎡", "⎣"), ("⎤", "⎦")):  # each bracket at the same column on both lines
        starts = [columns(top[: m.start()]) for m in re.finditer(left, top)]
        assert starts == [columns(bottom[: m.start()]) for m in re.finditer(right, bottom)] and len(starts) == 2
    wide = [columns(line) for line in to_text([Equation(["损失 = ", np.array([[1.0], [2.0]])])]).splitlines()]
    narrow = [columns(line) for line in to_text([Equation(["Ls = ", np.array([[1.0], [2.0]])])]).splitlines()]
    assert [w - n for w, n in zip(wide, narrow, strict=True)] == [2, 2]  # 损失 takes 4 columns, "Ls" 2: the matrix
    # starts two columns further on both lines


# -- every format ------------------------------------------------------------------------------------------
def test_latex_compiles_in_russian_and_chinese(tmp_path):
    documents = {}
    for path in PROBLEMS:
        explanation = run_problem(load_problem(path), steps=2)
        for lang in TRANSLATED:
            documents[f"{path.stem}_{lang}"] = render(explanation, "latex", lang=lang)
    assert all(r"\usepackage[russian]{babel}" in text for name, text in documents.items() if name.endswith("_ru"))
    assert all(text.startswith("% !TEX program = xelatex") for name, text in documents.items() if name.endswith("zh"))
    compile_latex(documents, tmp_path)


def test_html_says_its_language():
    explanation = run_problem(load_problem(EXAMPLES / "relu_mse.toml"))
    for lang, word in (("en", "Forward pass"), ("ru", "Прямой проход"), ("zh", "前向传播")):
        page = render(explanation, "html", lang=lang)
        assert f'<html lang="{lang}">' in page and word in page
    assert '<html lang="en">' in explanation.to_html()  # the language in effect: English by default
    with chainrule.i18n.language("zh"):
        assert '<html lang="zh">' in explanation.to_html() and "前向传播" in explanation._repr_markdown_()


def test_check_in_three_languages_keeps_the_machine_values():
    explanation = run_problem(load_problem(EXAMPLES / "relu_mse.toml"))
    answers = load_answers(str(EXAMPLES / "relu_mse_answers_with_slips.toml"))
    results = {lang: check_answers(explanation, answers, lang=lang) for lang in ("en", "ru", "zh")}
    data = {lang: verdicts_to_json(result) for lang, result in results.items()}
    machine = {
        lang: [(a["path"], a["verdict"], a["slip"], a["root"]) for a in d["answers"]] for lang, d in data.items()
    }
    assert machine["en"] == machine["ru"] == machine["zh"]
    assert [r["slip"] for r in data["en"]["roots"]] == [r["slip"] for r in data["zh"]["roots"]]
    assert data["en"]["roots"][1]["description"] != data["ru"]["roots"][1]["description"]
    slip = next(s for s in SLIPS if s.id == data["en"]["roots"][1]["slip"])
    assert data["en"]["roots"][1]["description"].startswith(slip.words)
    assert "перенесённые ошибки" in report(results["ru"], lang="ru")
    assert "错误" in report_html(results["zh"], lang="zh") and "<th>判定</th>" in report_html(results["zh"], lang="zh")


def test_the_command_line_speaks_the_language_asked(capsys):
    assert main(["explain", str(EXAMPLES / "relu_mse.toml"), "--lang", "ru"]) == 0
    assert "== Прямой проход ==" in capsys.readouterr().out
    code = main(["check", str(EXAMPLES / "relu_mse.toml"), str(EXAMPLES / "relu_mse_answers.toml"), "--lang", "zh"])
    out = capsys.readouterr().out
    assert code == 0 and "个答案中正确" in out
    main(["check", "--slips", "--lang", "zh"])
    assert "偏置" in capsys.readouterr().out
    code = main(
        [
            "check",
            str(EXAMPLES / "relu_mse.toml"),
            str(EXAMPLES / "relu_mse_answers.toml"),
            "--format",
            "json",
            "--lang",
            "ru",
        ]
    )
    assert code == 0 and json.loads(capsys.readouterr().out)["answers"][0]["verdict"] == "right"


# -- docs/examples -----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_docs_examples_are_current():
    """docs/examples holds every example in the three languages as the renderer writes it now
    (``python -m chainrule.explain.render docs/examples $(ls examples/*.toml | grep -v _answers)`` writes
    them)."""
    pages = example_pages(PROBLEMS)
    assert sorted(pages) == sorted(p.name for p in (ROOT / "docs" / "examples").glob("*.md"))
    stale = [name for name, text in pages.items() if (ROOT / "docs" / "examples" / name).read_text() != text]
    assert not stale, "run: python -m chainrule.explain.render docs/examples $(ls examples/*.toml | grep -v _answers)"
