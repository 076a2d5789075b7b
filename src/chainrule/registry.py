"""The registry: every kind of layer, loss and optimizer, by the name it has in problem and model files.

A kind is declared once, where its class is defined, with a decorator::

    @LAYERS.register("gelu")
    class GELU(Activation):
        ...

The class then carries everything that the rest of chainrule asks of a kind: forward and backward, its
configuration as a plain dict (:meth:`~chainrule.module.Module.config`, ``from_config``), its formulas for
display (``formulas()``) and its gradient-check cases (``gradcheck_cases``). Problem files, model files,
checkpoints, ``explain``, ``gradcheck`` and the command line look kinds up here; none of them names a
class. An optimizer may be registered under several names with different presets (``sgd``, ``momentum``
and ``nesterov`` are all :class:`~chainrule.optim.SGD`).
"""

from __future__ import annotations

import importlib
import inspect
import numbers
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from chainrule.errors import ConfigError, SettingError
from chainrule.i18n import _

#: The modules whose import registers the built-in kinds.
_BUILTIN_MODULES = ("chainrule.activations", "chainrule.layers", "chainrule.losses", "chainrule.optim")


@dataclass(frozen=True)
class Kind:
    """One registered kind: its name, its class, and (for optimizers) the settings its name implies.

    ``fixed`` settings cannot be changed under this name (``sgd`` has no momentum); ``defaults`` replace
    the class's own defaults (``momentum`` starts at 0.9).
    """

    name: str
    cls: type
    fixed: Mapping[str, Any] = field(default_factory=dict)
    defaults: Mapping[str, Any] = field(default_factory=dict)


class Registry:
    """The kinds of one family (``layer``, ``loss``, ``optimizer``) by name."""

    def __init__(self, family: str) -> None:
        self.family = family
        self._kinds: dict[str, Kind] = {}

    def register(
        self, name: str, *, fixed: Mapping[str, Any] | None = None, defaults: Mapping[str, Any] | None = None
    ) -> Callable[[type], type]:
        """A class decorator that registers the class under ``name``; the first name a class gets is also
        its ``kind`` attribute (the name written into files)."""

        def decorate(cls: type) -> type:
            if name in self._kinds:
                raise ConfigError(
                    _("a {family} kind named {name!r} is already registered").format(family=self.family, name=name)
                )
            self._kinds[name] = Kind(name, cls, dict(fixed or {}), dict(defaults or {}))
            if "kind" not in cls.__dict__:
                cls.kind = name
            return cls

        return decorate

    def _loaded(self) -> dict[str, Kind]:
        for module in _BUILTIN_MODULES:
            importlib.import_module(module)
        return self._kinds

    def __getitem__(self, name: str) -> Kind:
        kinds = self._loaded()
        if name not in kinds:
            raise ConfigError(
                _("unknown {family} {name!r}; expected one of {expected}").format(
                    family=self.family, name=name, expected=", ".join(self.names())
                )
            )
        return kinds[name]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._loaded()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._loaded())

    def names(self, where: Callable[[Kind], bool] | None = None) -> tuple[str, ...]:
        """The registered names in alphabetical order; with ``where``, those it accepts."""
        return tuple(kind.name for kind in self.kinds() if where is None or where(kind))

    def kinds(self) -> tuple[Kind, ...]:
        """The registered kinds, in the alphabetical order of their names."""
        kinds = self._loaded()
        return tuple(kinds[name] for name in sorted(kinds))


LAYERS = Registry("layer")
LOSSES = Registry("loss")
OPTIMIZERS = Registry("optimizer")


# -- configurations as plain dicts ---------------------------------------------------------------------
#: Constructor arguments that say how to make an object, not what it is; never part of a configuration.
NOT_CONFIG = frozenset({"self", "params", "dtype", "seed", "init"})


def constructor_defaults(cls: type) -> dict[str, Any]:
    """The keyword arguments of ``cls``'s constructor with their defaults (``inspect.Parameter.empty``
    for those without), leaving out :data:`NOT_CONFIG`."""
    signature = inspect.signature(cls.__init__)
    return {
        name: p.default
        for name, p in signature.parameters.items()
        if name not in NOT_CONFIG and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }


def as_config(cls: type, config: Any) -> Mapping[str, Any]:
    """``config`` if it is a dict with string keys, else a :class:`ConfigError` naming ``cls``."""
    if not isinstance(config, Mapping) or not all(isinstance(k, str) for k in config):
        raise ConfigError(
            _("{owner}: expected a configuration (a dict of settings), got {got}").format(
                owner=cls.__name__, got=f"{config!r:.80}"
            )
        )
    return config


def build(cls: type, config: Mapping[str, Any], *args: Any, **context: Any) -> Any:
    """``cls(*args, **config, **context)``, where ``context`` holds only what the constructor accepts
    (``dtype``, ``seed``, ``init``). An unknown key in ``config``, or a value of another type than the
    setting's default (a number for a number, true or false for a flag), is a :class:`ConfigError`."""
    accepted = inspect.signature(cls.__init__).parameters
    known = constructor_defaults(cls)
    unknown = sorted(set(as_config(cls, config)) - set(known))
    if unknown:
        raise ConfigError(
            _("{owner}: unknown setting {name!r}; expected one of {expected}").format(
                owner=cls.__name__, name=unknown[0], expected=", ".join(known)
            )
        )
    for key, value in config.items():
        default = known[key]
        flag = isinstance(default, bool)
        if (flag and not isinstance(value, (bool, np.bool_))) or (
            isinstance(default, float) and (isinstance(value, bool) or not isinstance(value, numbers.Real))
        ):
            message = (
                _("{owner}: {key} must be true or false, got {got!r}")
                if flag
                else _("{owner}: {key} must be a number, got {got!r}")
            )
            raise SettingError(key, message.format(owner=cls.__name__, key=key, got=value))
    try:
        return cls(*args, **config, **{k: v for k, v in context.items() if k in accepted})
    except TypeError as err:  # a required setting missing
        raise ConfigError(f"{cls.__name__}: {err}") from None
