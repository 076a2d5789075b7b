"""The command line's help and argparse's own words (usage, headings, errors) in the language that --lang or
the locale asks for: a Russian or Chinese help holds no English sentence, an English one stays English."""

import re

import pytest

from chainrule.cli import argparse_message, main, requested_language

#: The names of the commands and subcommands: they stay English, as option names do.
COMMANDS = (
    "gradcheck",
    "explain",
    "derive",
    "check",
    "exercise",
    "new",
    "grade",
    "train",
    "evaluate",
    "predict",
    "export",
    "import",
    "datasets",
)


def without_locale(monkeypatch):
    for name in ("LC_ALL", "LC_MESSAGES", "LANG"):
        monkeypatch.delenv(name, raising=False)


def english_runs(text: str) -> list[str]:
    """The runs of three or more English words in ``text``, once what stays English in every language is
    left out: the program's name (chainrule exercise new), option names (--format, -h), metavars (FILE, PATH),
    choices ({text,markdown})."""
    text = re.sub(rf"\bchainrule(?:\s+(?:{'|'.join(COMMANDS)})\b)*", " ", text)
    text = re.sub(r"\{[^}]*\}", " ", text)  # choices
    text = re.sub(r"(?<![\w/])--?[A-Za-z][\w-]*", " ", text)  # options
    text = re.sub(r"\b[A-Z][A-Z_]+\b", " ", text)  # metavars
    return re.findall(r"\b[A-Za-z]+(?:\s+[A-Za-z]+){2,}\b", text)


def help_of(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit:
        main(argv)
    assert exit.value.code == 0
    return capsys.readouterr().out


def test_the_check_finds_the_sentences_of_the_english_help(monkeypatch, capsys):
    without_locale(monkeypatch)
    runs = english_runs(help_of(["explain", "--help"], capsys))
    assert "the problem file" in runs
    assert any("show this help message and exit" in run for run in runs)
    assert english_runs("--format {text,json} FILE PATH: файл задачи (.toml)") == []


@pytest.mark.parametrize(
    ("argv", "environ", "heading"),
    [
        (["explain", "--help", "--lang", "ru"], {}, "позиционные аргументы:"),
        (["explain", "--lang=zh", "--help"], {}, "位置参数:"),
        (["explain", "--help"], {"LANG": "ru_RU.UTF-8"}, "позиционные аргументы:"),
        (["explain", "--help"], {"LC_ALL": "zh_CN.UTF-8", "LANG": "ru_RU.UTF-8"}, "位置参数:"),
        (["explain", "--help", "--lang", "zh"], {"LANG": "ru_RU.UTF-8"}, "位置参数:"),  # --lang before the locale
    ],
)
def test_the_help_is_in_the_language_asked_for(argv, environ, heading, monkeypatch, capsys):
    without_locale(monkeypatch)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    text = help_of(argv, capsys)
    assert english_runs(text) == []
    assert heading in text
    assert "--format {text,markdown,latex,json,html}" in text  # options, metavars and choices as they are
    assert "[--entry PATH]" in text


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["check", "--help"], ["exercise", "new", "-h"]])
@pytest.mark.parametrize("lang", ["ru", "zh"])
def test_every_command_help_is_translated(argv, lang, monkeypatch, capsys):
    without_locale(monkeypatch)
    monkeypatch.setenv("LANG", {"ru": "ru_RU.UTF-8", "zh": "zh_CN.UTF-8"}[lang])
    assert english_runs(help_of(argv, capsys)) == []


def test_lang_en_keeps_the_help_english(monkeypatch, capsys):
    without_locale(monkeypatch)
    monkeypatch.setenv("LANG", "ru_RU.UTF-8")
    text = help_of(["explain", "--help", "--lang", "en"], capsys)
    assert text.startswith("usage: chainrule explain")
    assert "positional arguments:" in text
    assert "  FILE                  the problem file (.toml)\n" in text


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["explain", "x.toml", "--format", "pdf", "--lang", "ru"],
            "chainrule explain: ошибка: аргумент --format: недопустимое значение: 'pdf' (выберите из 'text', "
            "'markdown', 'latex', 'json', 'html')",
        ),
        (["explain", "--lang", "zh"], "chainrule explain: 错误: 缺少必需的参数：FILE"),
        (["explain", "x.toml", "--lang", "en"], None),
        (["explain", "x.toml", "--what", "--lang", "ru"], "chainrule: ошибка: нераспознанные аргументы: --what"),
        (
            ["explain", "x.toml", "--precision", "--lang", "zh"],
            "chainrule explain: 错误: 参数 --precision：应有一个参数",
        ),
    ],
)
def test_argparse_errors_in_the_language(argv, expected, monkeypatch, capsys, tmp_path):
    without_locale(monkeypatch)
    monkeypatch.chdir(tmp_path)
    if expected is None:  # a file that is not there: chainrule's own error, not argparse's
        assert main(argv) == 2
        return
    with pytest.raises(SystemExit) as exit:
        main(argv)
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == expected, err
    assert err.startswith({"ru": "использование: ", "zh": "用法："}[argv[-1]])


def test_a_message_argparse_words_otherwise_stays_english():
    assert argparse_message("a message of another Python version") == "a message of another Python version"


@pytest.mark.parametrize(
    ("argv", "environ", "expected"),
    [
        (["explain", "--lang", "ru"], {}, "ru"),
        (["explain", "--lang=zh", "f.toml"], {"LANG": "ru_RU.UTF-8"}, "zh"),
        (["explain", "--lang", "de"], {"LANG": "ru_RU.UTF-8"}, "ru"),  # argparse refuses it, in Russian
        (["explain", "--lang"], {}, "en"),
        (["explain", "--", "--lang", "ru"], {}, "en"),  # after --, a file named --lang
        (["explain"], {"LANG": "zh_TW.UTF-8"}, "zh"),
    ],
)
def test_the_language_is_read_before_the_parser_is_built(argv, environ, expected, monkeypatch):
    without_locale(monkeypatch)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    assert requested_language(argv) == expected
