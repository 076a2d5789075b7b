"""The project's own exceptions.

Every error that chainrule raises on purpose is a :class:`ChainruleError`, so that a caller (and the
command line) can tell "you gave me something I cannot use" from a bug. The subclasses also derive from
the built-in exception a Python user would expect (``ValueError``), so ``except ValueError`` keeps working.
"""

from __future__ import annotations

import importlib
import math
import numbers
from types import ModuleType

from chainrule.i18n import _


class ChainruleError(Exception):
    """Base class of every error chainrule raises on purpose; its message is meant for the user."""

    exit_code = 1


class ShapeError(ChainruleError, ValueError):
    """An array whose shape does not fit: the message names who expected what and what came."""


class ConfigError(ChainruleError, ValueError):
    """An invalid hyper-parameter, an unknown name, or a value outside its allowed range."""


class SettingError(ConfigError):
    """A bad value of one named setting or array; ``key`` names it, so that a problem file's error can
    point at its place."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


class DataError(ChainruleError, ValueError):
    """A dataset or model file that cannot be found or read: the message says where it looked or what
    is wrong with it."""


class WriteError(ChainruleError, OSError):
    """A file that cannot be written (no such folder, a folder in its place, no permission, a full disk):
    the message names the file and the reason. Also an ``OSError``, as the failure it reports."""


class MissingPackage(ChainruleError):
    """An optional package that a feature needs is not installed; the message says how to install it."""


def need(module: str, extra: str, purpose: str) -> ModuleType:
    """``import module``, or a :class:`MissingPackage` that reads ``PURPOSE needs the X package: pip install
    'chainrule[EXTRA]'``: the core of chainrule needs NumPy alone, each extra adds what one feature uses."""
    try:
        return importlib.import_module(module)
    except ImportError:
        package = module.split(".")[0]
        raise MissingPackage(
            _("{purpose} needs the {package} package: pip install 'chainrule[{extra}]'").format(
                purpose=purpose, package=package, extra=extra
            )
        ) from None


class UsageError(ChainruleError):
    """A wrong command-line call; exits with code 2 like argparse."""

    exit_code = 2


def check_choice(what: str, value: str, choices) -> str:
    """Return ``value`` if it is one of ``choices``, else raise a :class:`ConfigError` listing them."""
    if value not in choices:
        allowed = ", ".join(repr(c) for c in choices)
        raise ConfigError(
            _("unknown {what} {value!r}; expected one of {expected}").format(what=what, value=value, expected=allowed)
        )
    return value


def check_positive(what: str, value: float, *, allow_zero: bool = False, key: str | None = None) -> float:
    """Return ``value`` as a float if it is a finite number > 0 (or >= 0), else raise a
    :class:`ConfigError` (a :class:`SettingError` naming ``key``, if given)."""
    error = ConfigError if key is None else lambda message: SettingError(key, message)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise error(_("invalid {what}: expected a number, got {got!r}").format(what=what, got=value))
    number = float(value)
    ok = number >= 0 if allow_zero else number > 0
    if not ok or not math.isfinite(number):
        bound = ">= 0" if allow_zero else "> 0"
        raise error(
            _("invalid {what}: expected a finite number {bound}, got {got!r}").format(what=what, bound=bound, got=value)
        )
    return number


def check_fraction(what: str, value: float, key: str, *, closed: bool = False) -> float:
    """Return ``value`` as a float if it is a number in [0, 1) (``closed``: [0, 1]), else raise a
    :class:`SettingError` naming ``key``."""
    interval = "[0, 1]" if closed else "[0, 1)"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise SettingError(
            key, _("{what} must be a number in {interval}, got {got!r}").format(what=what, interval=interval, got=value)
        )
    number = float(value)
    if not (0.0 <= number <= 1.0 if closed else 0.0 <= number < 1.0):
        raise SettingError(
            key, _("{what} must be in {interval}, got {got!r}").format(what=what, interval=interval, got=value)
        )
    return number
