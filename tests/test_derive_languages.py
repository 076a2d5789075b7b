"""chainrule derive in Russian and Chinese: every topic and every example's walk holds no English sentence in
any format, the language is chosen by --lang, the locale or lang=, and the LaTeX compiles (pdflatex with
Cyrillic fonts, XeLaTeX with the CJK fonts)."""

import json
import re
from pathlib import Path

import pytest

from chainrule.cli import main
from chainrule.derive import derive, derive_problem, render
from chainrule.derive.topics import all_topics
from chainrule.explain import load_problem
from chainrule.i18n import current
from chainrule.registry import LAYERS, LOSSES, OPTIMIZERS

from conftest import optional
from helpers import compile_latex

sympy = optional("sympy")

EXAMPLES = Path(__file__).parents[1] / "examples"
PROBLEMS = sorted(p for p in EXAMPLES.glob("*.toml") if "answers" not in p.stem)
TOPICS = list(all_topics())
TRANSLATED = ("ru", "zh")

#: Words that stay as they are in every language: names of topics, kinds and tools, and the two ways a step
#: is checked. Anything else in Latin letters, three or more words in a row, is an English sentence left over.
NAMES = {
    *TOPICS,
    *LAYERS.names(),
    *LOSSES.names(),
    *OPTIMIZERS.names(),
    *[
        "chainrule",
        "derive",
        "sympy",
        "pytorch",
        "simplify",
        "numeric",
        "float64",
        "relu",
        "gelu",
        "silu",
        "leakyrelu",
        "batchnorm",
        "layernorm",
    ],
    *["mean", "sum", "half_mean", "half_sum", "max", "ln", "erf", "tanh", "softmax", "mse", "lhs", "rhs", "lr"],
}
_WORD = r"[A-Za-z][A-Za-z_'’-]*"
_RUN = re.compile(rf"(?<![\w^]){_WORD}(?: {_WORD}){{2,}}")


def english(text: str) -> list[str]:
    """The runs of three or more words of Latin letters, separated by single spaces, that are not all names:
    prose in English. Formulas (∂L/∂z = g ⊙ a(1 − a)), numbers and symbols never form one."""
    return [run for run in _RUN.findall(text) if any(w.lower() not in NAMES for w in run.split())]


def test_the_check_finds_english_prose():
    """The check can fail: each topic's English output is flagged, and a Russian sentence with formulas is not."""
    for name in TOPICS:
        assert english(render(derive(name), "text")), name
    assert english("цепное правило: the upstream gradient") == ["the upstream gradient"]
    assert english("σ′(z) = σ(z)(1 − σ(z)), chainrule derive sigmoid, simplify(lhs − rhs) = 0") == []


def prose_of_json(entry: dict) -> str:
    """The values of derive's JSON that are words (the keys, and the maths, are the same in every language)."""
    steps = [f"{s['label']} {s['reason']} {s['check']}" for s in entry["steps"]]
    return "\n".join([entry["title"], *entry["about"], *entry["notes"], *steps])


@pytest.mark.parametrize("lang", TRANSLATED)
@pytest.mark.parametrize("name", TOPICS)
def test_every_topic_is_in_the_language(name, lang):
    derivation = derive(name, lang=lang)
    assert derivation.verified, name
    for format in ("text", "markdown"):
        shown = render(derivation, format, verbose=True, lang=lang)
        assert not english(shown), (format, english(shown))
    entry = json.loads(render(derivation, "json", verbose=True, lang=lang))
    assert set(entry) == set(json.loads(render(derive(name), "json", verbose=True)))  # keys never change
    assert not english(prose_of_json(entry)), english(prose_of_json(entry))
    assert current() == "en"  # lang= holds for the call only
    assert render(derivation, "text") == render(derivation, "text", lang=lang)  # written in its own language


@pytest.mark.parametrize("lang", TRANSLATED)
@pytest.mark.parametrize("path", PROBLEMS, ids=lambda p: p.stem)
def test_every_walk_is_in_the_language(path, lang):
    """The walk of each example, its problem's own title aside (the file's words, not chainrule's)."""
    title = load_problem(path).title
    derivation = derive_problem(path, lang=lang)
    assert derivation.verified
    shown = render(derivation, "text", verbose=True, lang=lang).replace(title, "")
    assert not english(shown), english(shown)


def test_the_words_are_the_catalogs(capsys):
    """Sentences of the catalogs, as a reader of each language sees them, with the counts' plural forms."""
    assert main(["derive", "sigmoid", "--lang", "ru"]) == 0
    out = capsys.readouterr().out
    assert "sigmoid: Производная сигмоиды" in out
    assert "разбить квадрат на два множителя" in out
    assert "5 шагов, проверены SymPy (simplify 5)." in out
    assert main(["derive", "relu", "--lang", "zh"]) == 0
    out = capsys.readouterr().out
    assert "relu: ReLU 的导数\n=================\n已知：" in out  # underlined to the heading's display width
    assert "3 步，均已由 SymPy 验证" in out


def test_the_language_comes_from_the_locale(monkeypatch, capsys):
    monkeypatch.delenv("LC_ALL", raising=False)
    monkeypatch.delenv("LC_MESSAGES", raising=False)
    monkeypatch.setenv("LANG", "zh_CN.UTF-8")
    assert main(["derive", "--list"]) == 0
    listing = capsys.readouterr().out
    assert "σ′(z) = σ(z)(1 − σ(z))：反向传播只需要输出" in listing
    assert main(["derive", "--list", "--lang", "en"]) == 0  # --lang wins over the locale
    assert "the backward pass needs only the output" in capsys.readouterr().out


def test_a_usage_error_is_translated(capsys):
    assert main(["derive", "no_such_topic", "--lang", "ru"]) == 2
    assert "неизвестные темы вывода no_such_topic; ожидались темы из: sigmoid," in capsys.readouterr().err


@pytest.mark.parametrize("lang", TRANSLATED)
def test_the_latex_compiles(lang, tmp_path):
    """Every topic and one walk in one document: pdflatex with T2A fonts for Russian, XeLaTeX for Chinese."""
    derivations = [derive(name, lang=lang) for name in TOPICS]
    derivations.append(derive_problem(EXAMPLES / "relu_mse.toml", lang=lang))
    document = render(derivations, "latex", verbose=True, lang=lang)
    assert document.startswith("% !TEX program = xelatex\n") == (lang == "zh")
    compile_latex({f"derive-{lang}": document}, tmp_path)
