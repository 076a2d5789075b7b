"""The library's messages in Russian and Chinese: a problem file's error, through the command line with --lang
or the locale, is translated and still names the file and the place; Russian's three plural forms come from
the real catalog."""

import os
import subprocess
import sys

import pytest

from chainrule.cli import main
from chainrule.errors import ConfigError, check_positive
from chainrule.i18n import language
from chainrule.layers import Linear

PROBLEM = """title = "one linear layer"
[data]
X = {X}
y = [[1]]
[[layers]]
type = "linear"
W = {W}
{b}
[loss]
type = "mse"
[train]
lr = 0.1
"""

#: The prefix of an error, in each language (the translation of "chainrule: error").
ERROR = {"en": "chainrule: error", "ru": "chainrule: ошибка", "zh": "chainrule: 错误"}

FLAT_X = {
    "en": "expected a matrix (a list of rows, e.g. [[1, 2], [3, 4]]), got 1 dimension",
    "ru": "ожидалась матрица (список строк, например [[1, 2], [3, 4]]), получено 1 измерение",
    "zh": "应为矩阵（由行组成的列表，例如 [[1, 2], [3, 4]]），得到 1 维",
}


def problem(tmp_path, X="[[1]]", W="[[1]]", b=""):
    path = tmp_path / "problem.toml"
    path.write_text(PROBLEM.format(X=X, W=W, b=b))
    return path


def without_locale(monkeypatch):
    for name in ("LC_ALL", "LC_MESSAGES", "LANG"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("lang", ["en", "ru", "zh"])
def test_a_problem_file_error_with_lang(lang, tmp_path, capsys, monkeypatch):
    without_locale(monkeypatch)
    path = problem(tmp_path, X="[1, 2]")
    assert main(["explain", str(path), "--lang", lang]) == 2
    assert capsys.readouterr().err == f"{ERROR[lang]}: {path}: data.X: {FLAT_X[lang]}\n"


@pytest.mark.parametrize("lang", ["ru", "zh"])
def test_a_problem_file_error_in_the_locale(lang, tmp_path, monkeypatch, capsys):
    without_locale(monkeypatch)
    monkeypatch.setenv("LANG", {"ru": "ru_RU.UTF-8", "zh": "zh_CN.UTF-8"}[lang])
    path = problem(tmp_path, X="[1, 2]")
    assert main(["explain", str(path)]) == 2
    assert capsys.readouterr().err == f"{ERROR[lang]}: {path}: data.X: {FLAT_X[lang]}\n"


def test_the_locale_of_a_real_process(tmp_path):
    """The installed command, started with LANG=ru_RU.UTF-8 as a shell would, answers in Russian."""
    path = problem(tmp_path, X="[1, 2]")
    env = {k: v for k, v in os.environ.items() if k not in ("LC_ALL", "LC_MESSAGES", "LANGUAGE")}
    env["LANG"] = "ru_RU.UTF-8"
    command = [sys.executable, "-c", "import sys; from chainrule.cli import main; sys.exit(main())", "explain", path]
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    assert result.returncode == 2
    assert result.stderr == f"{ERROR['ru']}: {path}: data.X: {FLAT_X['ru']}\n"


#: Russian counts (worked by hand): 1 and 21 take the singular, 2 to 4 the genitive singular, 5 to 20 (11
#: among them) the genitive plural.
RUSSIAN_VALUES = {1: "1 значение", 2: "2 значения", 5: "5 значений", 11: "11 значений", 21: "21 значение"}


@pytest.mark.parametrize("n", sorted(RUSSIAN_VALUES))
def test_russian_plural_forms_of_a_count(n, tmp_path, capsys):
    """A bias of n + 1 numbers for a layer of n outputs: the place, and 'expected n values' in the right form."""
    path = problem(tmp_path, W=str([[1] * n]), b=f"b = {[0] * (n + 1)}")
    assert main(["explain", str(path), "--lang", "ru"]) == 2
    expected = f"{path}: layers[0].b: ожидалось {RUSSIAN_VALUES[n]}, получено {n + 1}"
    assert capsys.readouterr().err == f"{ERROR['ru']}: {expected}\n"


@pytest.mark.parametrize(("n", "english"), [(1, "expected 1 value, got 2"), (2, "expected 2 values, got 3")])
def test_english_plural_forms_of_a_count(n, english, tmp_path, capsys):
    path = problem(tmp_path, W=str([[1] * n]), b=f"b = {[0] * (n + 1)}")
    assert main(["explain", str(path), "--lang", "en"]) == 2
    assert capsys.readouterr().err.endswith(f"layers[0].b: {english}\n")


def test_library_errors_in_the_language_in_effect():
    """From Python, a message is in the language of the block it is raised in; its numbers and names stay."""
    with language("zh"), pytest.raises(ConfigError) as caught:
        Linear(0, 2)
    assert str(caught.value) == "Linear：in_features 必须是正整数，得到 0"
    with language("ru"), pytest.raises(ConfigError) as caught:
        check_positive("lr", -1.0)
    assert str(caught.value) == "недопустимое значение «lr»: ожидалось конечное число > 0, получено -1.0"
    with pytest.raises(ConfigError, match=r"^invalid lr: expected a finite number > 0, got -1.0$"):
        check_positive("lr", -1.0)
