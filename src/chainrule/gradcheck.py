"""Numerical gradient check: central differences in float64 against the analytic backward pass.

For a layer or network ``f`` and a random upstream gradient ``G`` the checked scalar is
``φ = Σ G ⊙ f(x)``, so that ``∂φ/∂x`` is exactly what ``backward(G)`` returns; for a loss it is
``g · L(pred, target)`` with a random scalar ``g``. Each entry ``θ`` of the input and of every parameter is
moved by ``±eps`` and ``(φ(θ + eps) − φ(θ − eps)) / (2·eps)`` is compared with the analytic gradient
(taken at ``eps`` and ``eps/2`` and extrapolated, see :func:`_central_difference`).

The error of an array is ``max|a − n| / max(1e-8, max(|a| + |n|))`` (analytic ``a``, numeric ``n``): the
largest difference relative to the array's scale, which does not blow up on entries that are zero. An
array passes when that error is at most ``tolerance``, or when its largest absolute difference is at most
``atol``: a gradient that is exactly zero (a bias before BatchNorm) has only rounding noise, of order
``1e-16·|φ|/eps``, as its numeric estimate.
Stochastic layers (Dropout) replay the same random numbers on every evaluation.
"""

from __future__ import annotations

import functools
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from chainrule.errors import ConfigError
from chainrule.i18n import _
from chainrule.losses import Loss
from chainrule.module import Module


@dataclass
class ArrayCheck:
    """The result for one array: its worst relative error and where it is."""

    name: str
    shape: tuple[int, ...]
    error: float
    index: tuple[int, ...]
    analytic: float
    numeric: float
    abs_error: float
    tolerance: float
    atol: float

    @property
    def passed(self) -> bool:
        return self.error <= self.tolerance or self.abs_error <= self.atol


@dataclass
class GradcheckReport:
    """One :class:`ArrayCheck` per array (the input, then every parameter)."""

    subject: str
    checks: list[ArrayCheck] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def worst(self) -> ArrayCheck:
        return max(self.checks, key=lambda c: c.error)

    def __str__(self) -> str:
        ok, failed = _("ok"), _("FAILED")
        rows = [f"{self.subject}: {ok if self.passed else failed}"]
        row = _("rel. error {error} at {index} analytic {analytic}  numeric {numeric}")
        for c in self.checks:
            numbers = row.format(
                error=f"{c.error:9.2e}",
                index=f"{c.index!s:<9}",
                analytic=f"{c.analytic: .10g}",
                numeric=f"{c.numeric: .10g}",
            )
            rows.append(f"  {c.name:<12} {c.shape!s:<10} {numbers}  {ok if c.passed else failed}")
        return "\n".join(rows)


def relative_error(analytic: NDArray, numeric: NDArray) -> float:
    """``max|a − n| / max(1e-8, max(|a| + |n|))``."""
    scale = max(1e-8, float(np.max(np.abs(analytic) + np.abs(numeric), initial=0.0)))
    return float(np.max(np.abs(analytic - numeric), initial=0.0)) / scale


def gradcheck(
    subject: Module | Loss,
    x: NDArray,
    target: NDArray | None = None,
    *,
    loss: Loss | None = None,
    eps: float = 1e-5,
    tolerance: float = 1e-7,
    atol: float = 1e-8,
    seed: int = 0,
    max_entries: int | None = None,
) -> GradcheckReport:
    """Check the analytic gradients of ``subject`` against central differences, in float64.

    ``subject`` is a layer or network (then ``x`` is its input; with ``loss`` and ``target`` the loss of
    its output is checked, otherwise ``Σ G ⊙ output`` with a random ``G``), or a loss (then ``x`` is the
    prediction and ``target`` the target). The subject itself is not changed: a float64 copy is checked.
    ``max_entries`` checks that many randomly chosen entries of each array instead of all of them.
    """
    # A stream of its own: the upstream gradient must not repeat the numbers of an input drawn with
    # the same seed (that would put G in the span of x and hide BatchNorm errors).
    rng = np.random.default_rng([seed, 0x67726164])
    x = np.array(x, dtype=np.float64)
    if isinstance(subject, Loss):
        if target is None:
            raise ConfigError(_("gradcheck: a loss needs a target"))
        upstream = float(rng.normal())
        subject.forward(x, target)
        analytic = {"input": subject.backward(upstream)}
        arrays = {"input": x}

        def phi() -> float:
            return upstream * subject.forward(x, target)

    elif isinstance(subject, Module):
        model = subject.astype(np.float64)
        replay = _randomness_replay(model)
        replay()
        model.zero_grad()
        out = model.forward(x)
        if loss is not None:
            if target is None:
                raise ConfigError(_("gradcheck: a loss needs a target"))
            upstream = float(rng.normal())
            loss.forward(out, target)
            grad_input = model.backward(loss.backward(upstream))

            def phi() -> float:
                replay()
                return upstream * loss.forward(model.forward(x), target)

        else:
            G = rng.standard_normal(out.shape)
            grad_input = model.backward(G)

            def phi() -> float:
                replay()
                return float(np.sum(model.forward(x) * G))

        analytic = {"input": grad_input, **{n: p.grad.copy() for n, p in model.named_parameters()}}
        arrays = {"input": x, **{n: p.data for n, p in model.named_parameters()}}
    else:
        raise ConfigError(_("gradcheck: expected a Module or a Loss, got {got}").format(got=type(subject).__name__))

    report = GradcheckReport(repr(subject))
    for name, array in arrays.items():
        full = np.asarray(analytic[name], dtype=np.float64)
        if full.shape != array.shape:
            raise ConfigError(
                _("gradcheck: the gradient of {name} has shape {shape}, expected {expected}").format(
                    name=name, shape=full.shape, expected=array.shape
                )
            )
        numeric, compared = np.zeros_like(array), np.zeros_like(array)
        for index in _entries(array.shape, max_entries, rng):
            numeric[index] = _central_difference(phi, array, index, eps)
            compared[index] = full[index]
        diff = np.abs(compared - numeric)
        worst = np.unravel_index(int(np.argmax(diff)), diff.shape) if diff.size else ()
        report.checks.append(
            ArrayCheck(
                name,
                array.shape,
                relative_error(compared, numeric),
                tuple(int(i) for i in worst),
                float(compared[worst]) if diff.size else 0.0,
                float(numeric[worst]) if diff.size else 0.0,
                float(diff.max(initial=0.0)),
                tolerance,
                atol,
            )
        )
    return report


def _central_difference(phi, array: NDArray, index: tuple, eps: float) -> float:
    """``∂φ/∂array[index]`` by central differences at ``eps`` and ``eps/2``, combined (Richardson) as
    ``(4·D(eps/2) − D(eps))/3`` so that the truncation error is ``O(eps⁴)`` instead of ``O(eps²)``:
    steep functions (``−y/p`` of cross-entropy at small ``p``) would otherwise fail a 1e-7 check."""
    saved = array[index]

    def difference(h: float) -> float:
        array[index] = saved + h
        plus = phi()
        array[index] = saved - h
        minus = phi()
        array[index] = saved
        return (plus - minus) / (2 * h)

    return (4 * difference(eps / 2) - difference(eps)) / 3


def _entries(shape: tuple[int, ...], max_entries: int | None, rng: np.random.Generator):
    size = int(np.prod(shape))
    flat = range(size) if max_entries is None or max_entries >= size else rng.choice(size, max_entries, replace=False)
    return [np.unravel_index(int(i), shape) for i in flat]


def _randomness_replay(model: Module):
    """A function that resets every random generator inside ``model`` to its present state."""
    states = [
        (m, m.rng.bit_generator.state)
        for m in model.modules()
        if isinstance(getattr(m, "rng", None), np.random.Generator)
    ]

    def replay() -> None:
        for m, state in states:
            m.rng.bit_generator.state = state

    return replay


def builtin_checks(seed: int = 0, batch: int = 5, **options) -> dict[str, Callable[[], GradcheckReport]]:
    """Every registered layer and loss kind, with the cases each declares (``gradcheck_cases``) on random
    inputs, and two deep networks, as ``name -> function returning a GradcheckReport``: what
    ``chainrule gradcheck`` runs. ``options`` (``tolerance``, ``atol``, ``eps``) go to :func:`gradcheck`."""
    from chainrule import network
    from chainrule.losses import SoftmaxCrossEntropyLoss
    from chainrule.registry import LAYERS, LOSSES

    check = functools.partial(gradcheck, seed=seed, **options)
    rng = np.random.default_rng(seed)
    features, classes = 4, 3
    x = rng.standard_normal((batch, features))
    checks: dict[str, Callable[[], GradcheckReport]] = {}
    for kind in LAYERS.kinds():
        for name, module in kind.cls.gradcheck_cases(features, rng).items():
            checks[name] = functools.partial(check, module, x)
    for kind in LOSSES.kinds():
        for name, (loss, pred, target) in kind.cls.gradcheck_cases(batch, rng).items():
            checks[name] = functools.partial(check, loss, pred, target)
    labels = rng.integers(0, classes, batch)
    for name, options in {
        "mlp": {"activation": "tanh", "batchnorm": True, "dropout": 0.2},
        "mlp_layernorm_gelu": {"activation": "gelu", "layernorm": True},
    }.items():
        net = network.mlp([features, 6, 5, classes], seed=seed, dtype=np.float64, **options)
        checks[name] = functools.partial(check, net, x, labels, loss=SoftmaxCrossEntropyLoss())
    return checks


class _CallableModule(types.ModuleType):
    """This module, callable as its function. Importing ``chainrule.gradcheck`` makes the package's
    attribute ``gradcheck`` this module (Python's import system sets it), and ``chainrule.gradcheck(...)``
    must still run the check whichever was imported first."""

    def __call__(self, *args, **kwargs) -> GradcheckReport:
        return gradcheck(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
