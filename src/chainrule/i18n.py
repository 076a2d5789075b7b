"""The learners' languages: English, Russian and Chinese, through gettext catalogs.

Every sentence chainrule shows is written in English in the code, marked for translation with :func:`_`
(or :func:`ngettext` where it counts something, :func:`N_` where it is defined before the language is
known), and looked up at the moment it is shown in the catalog of the language in effect. The catalogs
are the ecosystem's: ``locale/<lang>/LC_MESSAGES/chainrule.po``, extracted from the code and compiled to
``.mo`` with Babel (``python -m chainrule.i18n``; see docs/translating.md), read by the standard library's
:mod:`gettext`. Their terms follow docs/glossary.md.

The language in effect is a context variable: the command line sets it from ``--lang`` or the locale
(:func:`language_from_environment`), Python callers pass ``lang=`` to the functions that produce output,
which run under :func:`language`. Without either, the language is English.

Placeholders are named (``_("expected {expected}, got {got}").format(...)``): a translation may put them
in another order, and a test checks that every translation has the same ones as its English.
"""

from __future__ import annotations

import gettext
import os
import unicodedata
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from functools import cache
from pathlib import Path

LANGUAGES = ("en", "ru", "zh")
LANGUAGE_NAMES = {"en": "English", "ru": "русский", "zh": "中文"}
DOMAIN = "chainrule"
LOCALE_DIR = Path(__file__).with_name("locale")

_current: ContextVar[str] = ContextVar("chainrule_language", default="en")


def language_from_environment(environ: Mapping[str, str] | None = None) -> str:
    """The language the locale asks for: the first of ``LC_ALL``, ``LC_MESSAGES`` and ``LANG`` that is set
    (as the C library reads them), reduced to one of :data:`LANGUAGES` (``ru_RU.UTF-8`` → ``ru``,
    ``zh_CN.UTF-8`` or ``zh_TW`` → ``zh``); English when it names none of them (``C``, ``POSIX``, ``de_DE``)."""
    environ = os.environ if environ is None else environ
    for name in ("LC_ALL", "LC_MESSAGES", "LANG"):
        value = environ.get(name, "")
        if value:
            code = value.split(".")[0].split("@")[0].split("_")[0].split("-")[0].lower()
            return code if code in LANGUAGES else "en"
    return "en"


def check_language(lang: str) -> str:
    """``lang`` if it is one of :data:`LANGUAGES`, else a ConfigError that lists them."""
    if lang not in LANGUAGES:
        from chainrule.errors import ConfigError

        raise ConfigError(
            _("unknown language {got!r}: expected one of {expected}").format(got=lang, expected=", ".join(LANGUAGES))
        )
    return lang


@contextmanager
def language(lang: str | None) -> Iterator[str]:
    """Show what is produced inside the block in ``lang`` (``None``: keep the language in effect)."""
    if lang is None:
        yield _current.get()
        return
    token = _current.set(check_language(lang))
    try:
        yield lang
    finally:
        _current.reset(token)


def current() -> str:
    """The language in effect."""
    return _current.get()


@cache
def translations(lang: str) -> gettext.NullTranslations:
    """The compiled catalog of ``lang`` (English: none, the messages are the code's own)."""
    if lang == "en":
        return gettext.NullTranslations()
    return gettext.translation(DOMAIN, localedir=LOCALE_DIR, languages=[lang], fallback=True)


def _(message: str) -> str:
    """``message`` in the language in effect."""
    return translations(_current.get()).gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    """The form of ``singular``/``plural`` that the language in effect uses for ``n`` (Russian has three)."""
    return translations(_current.get()).ngettext(singular, plural, n)


def pgettext(context: str, message: str) -> str:
    """``message`` in the language in effect, where ``context`` tells apart two uses of one English word."""
    return translations(_current.get()).pgettext(context, message)


def N_(message: str) -> str:
    """Mark ``message`` for the catalogs without translating it now (it is translated where it is shown)."""
    return message


def display_width(text: str) -> int:
    """The columns ``text`` takes in a terminal: two for an East Asian wide character (中), none for a
    combining mark, one for the others; for aligning text beside Chinese."""
    return sum(0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)
