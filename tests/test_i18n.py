"""The translation catalogs: complete, with the English's placeholders, compiled from their .po, and the
language chosen as the locale says."""

from __future__ import annotations

import gettext
import io
import string
from pathlib import Path

import pytest

import chainrule
from chainrule.errors import ConfigError
from chainrule.i18n import LANGUAGES, LOCALE_DIR, _, current, language, language_from_environment

babel = pytest.importorskip("babel")
from babel.messages.extract import extract_from_dir  # noqa: E402
from babel.messages.mofile import write_mo  # noqa: E402
from babel.messages.pofile import read_po  # noqa: E402

SOURCE = Path(chainrule.__file__).parent
TRANSLATED = [lang for lang in LANGUAGES if lang != "en"]


def catalog(lang: str):
    with open(LOCALE_DIR / lang / "LC_MESSAGES" / "chainrule.po", "rb") as file:
        return read_po(file, locale=lang)


def code_messages() -> set:
    """Every message the code marks, as Babel extracts it (a str, or a tuple of singular and plural)."""
    found = set()
    for _filename, _lineno, message, _comments, context in extract_from_dir(
        str(SOURCE), method_map=[("**.py", "python")]
    ):
        found.add((context, message))
    return found


def fields(text: str) -> list:
    """The placeholders of a brace-format string, with their conversion and format spec, in sorted order."""
    return sorted(
        (name, conversion, spec) for _, name, spec, conversion in string.Formatter().parse(text) if name is not None
    )


@pytest.mark.parametrize("lang", TRANSLATED)
def test_every_message_of_the_code_is_translated(lang):
    po = catalog(lang)
    missing = []
    for context, message in code_messages():
        key = message if isinstance(message, str) else message[0]
        entry = po.get(key, context=context)
        strings = (
            [entry.string] if entry is not None and isinstance(entry.string, str) else (entry.string if entry else [])
        )
        if entry is None or entry.fuzzy or not all(strings):
            missing.append(key)
    assert not missing, f"{len(missing)} messages without a {lang} translation (run tools/catalogs): {missing[:10]}"


@pytest.mark.parametrize("lang", TRANSLATED)
def test_translations_keep_the_placeholders(lang):
    wrong = []
    for entry in catalog(lang):
        if not entry.id or not entry.string:
            continue
        ids = [entry.id] if isinstance(entry.id, str) else list(entry.id)
        strings = [entry.string] if isinstance(entry.string, str) else list(entry.string)
        expected = fields(ids[-1])
        for text in strings:
            got = fields(text)
            # a plural form for exactly one may leave the count out, as English's singular may
            if got != expected and [f for f in expected if f[0] not in {"n", "count"}] != got:
                wrong.append((ids[0], text))
    assert not wrong, wrong[:5]


@pytest.mark.parametrize("lang", TRANSLATED)
def test_the_compiled_catalog_is_the_po(lang):
    """The .mo that gettext reads holds exactly what the .po says (tools/catalogs compiles it)."""
    buffer = io.BytesIO()
    write_mo(buffer, catalog(lang))
    buffer.seek(0)
    fresh = gettext.GNUTranslations(buffer)
    with open(LOCALE_DIR / lang / "LC_MESSAGES" / "chainrule.mo", "rb") as file:
        shipped = gettext.GNUTranslations(file)
    assert shipped._catalog == fresh._catalog


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"LANG": "ru_RU.UTF-8"}, "ru"),
        ({"LANG": "zh_CN.UTF-8"}, "zh"),
        ({"LANG": "zh_TW.Big5"}, "zh"),
        ({"LANG": "en_GB.UTF-8"}, "en"),
        ({"LANG": "de_DE.UTF-8"}, "en"),
        ({"LANG": "C"}, "en"),
        ({}, "en"),
        ({"LC_ALL": "zh_CN.UTF-8", "LC_MESSAGES": "ru_RU", "LANG": "en_US"}, "zh"),  # LC_ALL first
        ({"LC_MESSAGES": "ru_RU", "LANG": "zh_CN"}, "ru"),  # then LC_MESSAGES
        ({"LC_ALL": "", "LANG": "ru_RU@euro"}, "ru"),  # an empty variable counts as unset
    ],
)
def test_the_language_comes_from_the_locale(environ, expected):
    assert language_from_environment(environ) == expected


def test_language_is_scoped_and_checked():
    assert current() == "en"
    with language("ru"):
        assert current() == "ru"
        with language(None):
            assert current() == "ru"
    assert current() == "en"
    with pytest.raises(ConfigError, match="unknown language 'de': expected one of en, ru, zh"), language("de"):
        pass


def test_an_unknown_message_is_shown_in_english():
    with language("zh"):
        assert _("no such message in any catalog") == "no such message in any catalog"
