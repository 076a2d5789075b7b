"""The topics of ``chainrule derive``, each declared once, beside the kinds of the registry it explains.

A topic is a function of the ``sympy`` module that returns a :class:`~chainrule.derive.core.Derivation`,
registered with the kinds whose formulas it derives (``"layer:sigmoid"``, ``"loss:mse"``,
``"optimizer:adam"``)::

    @topic("sigmoid", "σ′(z) = σ(z)(1 − σ(z))", kinds=("layer:sigmoid",))
    def sigmoid(sp): ...

``explain`` names the topic behind each layer, loss and optimizer from these declarations
(:func:`topic_of`), and a test fails for a registered kind that no topic covers. Declaring topics
imports neither SymPy nor NumPy's registry of kinds.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from chainrule.errors import ConfigError
from chainrule.i18n import _

_MODULES = ("activations", "softmax", "losses", "layers", "optim")


@dataclass(frozen=True)
class Topic:
    """A registered topic: its name, a one-line summary (in English, marked for the catalogs: shown through
    :meth:`described`), the kinds it derives, and its builder."""

    name: str
    summary: str
    kinds: tuple[str, ...]
    build: Callable

    def described(self) -> str:
        """The summary in the language in effect."""
        return _(self.summary)


_TOPICS: dict[str, Topic] = {}
_FORWARDS: dict[str, Callable] = {}


def topic(name: str, summary: str, kinds: tuple[str, ...] = ()) -> Callable[[Callable], Callable]:
    """Register the decorated builder ``build(sympy) -> Derivation`` as topic ``name``."""

    def decorate(build: Callable) -> Callable:
        if name in _TOPICS:
            raise ConfigError(_("a derivation topic named {name!r} is already registered").format(name=name))
        _TOPICS[name] = Topic(name, summary, tuple(kinds), build)
        return build

    return decorate


def forward(*kinds: str) -> Callable[[Callable], Callable]:
    """Register the decorated function as the forward pass of ``kinds`` in SymPy, which ``derive --problem``
    differentiates to check each step of its walk: for a layer ``f(sympy, layer, x, params) -> matrix``
    (``params``: its parameters as matrices, by name), for a loss ``f(sympy, loss, pred, target, k) -> L``."""

    def decorate(function: Callable) -> Callable:
        for kind in kinds:
            _FORWARDS[kind] = function
        return function

    return decorate


def forward_of(family: str, kind: str) -> Callable | None:
    """The SymPy forward pass of ``kind`` in ``family`` (``layer``, ``loss``), or ``None``."""
    all_topics()
    return _FORWARDS.get(f"{family}:{kind}")


def all_topics() -> dict[str, Topic]:
    """Every topic by name, in the order they are declared (activations, softmax, losses, layers, optimizers)."""
    for module in _MODULES:
        importlib.import_module(f"{__name__}.{module}")
    return dict(_TOPICS)


def get(name: str) -> Topic:
    """The topic ``name``, or a :class:`ConfigError` that lists them."""
    every = all_topics()
    if name not in every:
        raise ConfigError(
            _("unknown derivation topic {name!r}; expected one of {expected}").format(
                name=name, expected=", ".join(every)
            )
        )
    return every[name]


def topic_of(family: str, kind: str) -> str | None:
    """The first topic that derives the formulas of ``kind`` in ``family`` (``layer``, ``loss``,
    ``optimizer``), or ``None``."""
    key = f"{family}:{kind}"
    return next((t.name for t in all_topics().values() if key in t.kinds), None)
