"""``chainrule derive``: the derivation behind each formula, step by step, each step checked by SymPy.

    >>> from chainrule.derive import derive, render
    >>> derivation = derive("sigmoid")
    >>> derivation.verified
    True
    >>> print(render(derivation, "text"))

* :mod:`~chainrule.derive.topics` declares the topics, keyed to the registered kinds they explain;
* :mod:`~chainrule.derive.core` holds the steps and checks each one (simplification, or random points);
* :mod:`~chainrule.derive.walk` specialises the chain rule to the layers of a problem file
  (:func:`derive_problem`);
* :mod:`~chainrule.derive.output` writes a derivation as text, Markdown, LaTeX or JSON.

SymPy is an extra (``pip install 'chainrule[derive]'``), imported when a derivation is built; listing the
topics, and ``explain`` naming them, need none.
"""

from __future__ import annotations

from typing import Any

from chainrule.derive.core import Check, Derivation, Step, library_error, verify
from chainrule.derive.topics import Topic, all_topics, topic_of
from chainrule.i18n import language


def sympy() -> Any:
    """The ``sympy`` module, or a one-line :class:`~chainrule.errors.MissingPackage` saying how to install it."""
    from chainrule.errors import need

    return need("sympy", "derive", "chainrule derive")


def derive(name: str, seed: int = 0, lang: str | None = None) -> Derivation:
    """The derivation of topic ``name`` (see :func:`all_topics`), every step checked by SymPy, its words in
    ``lang`` (``en``, ``ru``, ``zh``; default: the language in effect, see :mod:`chainrule.i18n`)."""
    from chainrule.derive.topics import get

    with language(lang):
        sp, topic = sympy(), get(name)
        derivation = topic.build(sp)
        derivation.kinds = topic.kinds
        return verify(derivation, sp, seed)


def derive_problem(path: Any, seed: int = 0, lang: str | None = None) -> Derivation:
    """The chain rule walked from the loss back to the first weight of the problem file at ``path`` (or
    of a :class:`~chainrule.explain.Problem`), every step checked by SymPy at the file's numbers; its words
    in ``lang`` (default: the language in effect)."""
    from chainrule.derive.walk import walk
    from chainrule.explain import Problem, load_problem

    with language(lang):
        sp = sympy()
        problem = path if isinstance(path, Problem) else load_problem(path)
        return verify(walk(problem, sp), sp, seed)


def render(
    derivation: Derivation | list[Derivation], format: str = "text", verbose: bool = False, lang: str | None = None
) -> str:
    """``derivation`` (or several, in one document) as ``text``, ``markdown``, ``latex`` or ``json``;
    ``verbose`` adds what each check compared (``chainrule derive --verify``). The words around the steps
    are in ``lang``, by default the language the derivation was built in (``derive(..., lang=...)``), as
    its steps' own words are."""
    from chainrule.derive.output import render as write

    return write(derivation, format, verbose, lang)


__all__ = [
    "Check",
    "Derivation",
    "Step",
    "Topic",
    "all_topics",
    "derive",
    "derive_problem",
    "library_error",
    "render",
    "sympy",
    "topic_of",
]
