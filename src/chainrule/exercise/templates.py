"""The kinds of exercise the notes pose, as templates that draw a problem file's numbers.

A template knows the shape of its network (the notes' ``y = ReLU(X·W₁)·W₂`` with MSE ``1/(2n)``, its
sigmoid + logloss variant, softmax + cross-entropy on one example, softmax regression with L2) and draws
small integers and halves for it; whether the numbers then work out by hand is decided by
:mod:`chainrule.exercise.friendly`, which rejects a draw until one does. The knobs (``Knobs``) are the
difficulty: the sizes, a bias or not, the number of steps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from chainrule.errors import ConfigError
from chainrule.exercise.friendly import is_short
from chainrule.i18n import N_, _

#: Halves from −2 to 2 without 0: a weight of 0 makes a column of the sheet trivial.
HALVES = (-2.0, -1.5, -1.0, -0.5, 0.5, 1.0, 1.5, 2.0)
INTEGERS = (-2, -1, 0, 1, 2, 3)
#: Inputs of a softmax regression: small, so that the logits stay readable as probabilities.
SMALL = (-1, 0, 1, 2)


#: The most training steps an exercise asks to work by hand.
MAX_STEPS = 3


@dataclass(frozen=True)
class Knobs:
    """The difficulty of a template: rows of the batch, the sizes of the layers (inputs, hidden units,
    outputs or classes), a bias in the linear layers or not, and training steps."""

    rows: int
    sizes: tuple[int, ...]
    bias: bool = False
    steps: int = 1

    def __post_init__(self) -> None:
        if self.rows < 1 or self.steps < 1 or any(s < 1 for s in self.sizes):
            raise ConfigError(_("rows, sizes and steps must be at least 1, got {knobs}").format(knobs=self))
        if self.steps > MAX_STEPS:
            raise ConfigError(
                _("steps {steps}: a hand-worked exercise takes at most {most} steps").format(
                    steps=self.steps, most=MAX_STEPS
                )
            )
        if self.rows * max(self.sizes) > 16:
            raise ConfigError(
                _(
                    "rows {rows} × size {size}: a hand-worked exercise keeps every matrix within 16 numbers; "
                    "choose fewer rows or smaller layers"
                ).format(rows=self.rows, size=max(self.sizes))
            )


@dataclass(frozen=True)
class Template:
    """A kind of exercise: its name in ``--template``, a title for its sheets, its default knobs, and
    the function that draws one problem file (the dict :func:`~chainrule.explain.parse_problem` reads)."""

    name: str
    title: str
    knobs: Knobs
    draw: Callable[[np.random.Generator, Knobs], dict[str, Any]] = field(repr=False)
    relu_must_cut: bool = True  # some ReLU input negative, so that the ReLU does something
    sizes_words: str = N_("inputs, hidden, outputs")  # what --sizes gives, in order

    def with_knobs(self, **changes: Any) -> Template:
        """The template with some knobs changed (``None`` keeps a knob as it is)."""
        given = {k: v for k, v in changes.items() if v is not None}
        if "sizes" in given and len(given["sizes"]) != len(self.knobs.sizes):
            raise ConfigError(
                _("template {name} has {count} sizes ({words}), got {got}: {sizes}").format(
                    name=self.name,
                    count=len(self.knobs.sizes),
                    words=_(self.sizes_words),
                    got=len(given["sizes"]),
                    sizes=",".join(map(str, given["sizes"])),
                )
            )
        return replace(self, knobs=replace(self.knobs, **given))


def _pick(rng: np.random.Generator, choices: tuple, shape: tuple[int, ...]) -> list:
    return np.array(choices, dtype=np.float64)[rng.integers(0, len(choices), shape)].tolist()


def _linear(rng: np.random.Generator, n_in: int, n_out: int, bias: bool) -> dict[str, Any]:
    layer: dict[str, Any] = {"type": "linear", "W": _pick(rng, HALVES, (n_in, n_out))}
    if bias:
        layer["b"] = _pick(rng, HALVES, (n_out,))
    return layer


def _relu_network(rng: np.random.Generator, knobs: Knobs) -> tuple[list, list]:
    n_in, hidden, n_out = knobs.sizes
    X = _pick(rng, INTEGERS, (knobs.rows, n_in))
    layers = [_linear(rng, n_in, hidden, knobs.bias), {"type": "relu"}, _linear(rng, hidden, n_out, knobs.bias)]
    return X, layers


def _relu_mse(rng: np.random.Generator, knobs: Knobs) -> dict[str, Any]:
    X, layers = _relu_network(rng, knobs)
    y = _pick(rng, INTEGERS, (knobs.rows, knobs.sizes[2]))
    return {"data": {"X": X, "y": y}, "layers": layers, "loss": {"type": "mse", "scale": "half_mean"}, **_sgd(knobs)}


def _sigmoid_logloss(rng: np.random.Generator, knobs: Knobs) -> dict[str, Any]:
    X, layers = _relu_network(rng, knobs)
    y = rng.integers(0, 2, (knobs.rows, knobs.sizes[2])).astype(float).tolist()
    return {"data": {"X": X, "y": y}, "layers": [*layers, {"type": "sigmoid"}], "loss": {"type": "bce"}, **_sgd(knobs)}


def _softmax_ce(rng: np.random.Generator, knobs: Knobs) -> dict[str, Any]:
    features, classes = knobs.sizes
    X = _pick(rng, SMALL, (knobs.rows, features))
    y = rng.integers(0, classes, knobs.rows).tolist()
    layers = [_linear(rng, features, classes, knobs.bias), {"type": "softmax"}]
    return {"data": {"X": X, "y": y}, "layers": layers, "loss": {"type": "cross_entropy"}, **_sgd(knobs)}


def _softmax_l2(rng: np.random.Generator, knobs: Knobs) -> dict[str, Any]:
    features, classes = knobs.sizes
    X = _pick(rng, SMALL, (knobs.rows, features))
    y = rng.integers(0, classes, knobs.rows).tolist()
    # The softmax is a layer of its own, so that the sheet asks for the probabilities (its output): a
    # student who goes on with them rounded is then carried forward, not marked wrong downstream.
    layers = [_linear(rng, features, classes, knobs.bias), {"type": "softmax"}]
    return {"data": {"X": X, "y": y}, "layers": layers, "loss": {"type": "cross_entropy", "l2": 0.5}, **_sgd(knobs)}


def _batchnorm(rng: np.random.Generator, knobs: Knobs) -> dict[str, Any]:
    features, outputs = knobs.sizes
    X = np.column_stack([_normal_column(rng, knobs.rows) for _column in range(features)]).tolist()
    y = _pick(rng, INTEGERS, (knobs.rows, outputs))
    norm = {"type": "batchnorm", "gamma": _pick(rng, HALVES, (features,)), "beta": _pick(rng, HALVES, (features,))}
    layers = [norm, _linear(rng, features, outputs, knobs.bias)]
    return {"data": {"X": X, "y": y}, "layers": layers, "loss": {"type": "mse", "scale": "half_mean"}, **_sgd(knobs)}


#: Draws of one column tried for one whose standard deviation and normalised values are short.
COLUMN_TRIES = 2000


def _normal_column(rng: np.random.Generator, rows: int) -> list:
    """A column of small integers whose batch statistics work out by hand: the standard deviation σ (of
    the biased variance, as BatchNorm takes it) is not 0 and, like every x̂ = (x − μ)/σ, has at most two
    decimals; (the last draw where none does in :data:`COLUMN_TRIES`: the search then rejects it)."""
    column = np.zeros(rows)
    for _attempt in range(COLUMN_TRIES):
        column = np.array(_pick(rng, (-3, *INTEGERS, 4, 5), (rows,)))
        sigma = float(np.sqrt(np.mean((column - column.mean()) ** 2)))
        if sigma > 0 and is_short(np.array([sigma, *((column - column.mean()) / sigma)])):
            break
    return column.tolist()


def _adam(rng: np.random.Generator, knobs: Knobs) -> dict[str, Any]:
    features, outputs = knobs.sizes
    X = _pick(rng, INTEGERS, (knobs.rows, features))
    y = _pick(rng, INTEGERS, (knobs.rows, outputs))
    train = {"optimizer": "adam", "lr": 0.1, "beta1": 0.9, "beta2": 0.99}
    return {
        "data": {"X": X, "y": y},
        "layers": [_linear(rng, features, outputs, knobs.bias)],
        "loss": {"type": "mse", "scale": "half_mean"},
        "train": {**train, **({"steps": knobs.steps} if knobs.steps > 1 else {})},
    }


def _sgd(knobs: Knobs) -> dict[str, Any]:
    """One step (or ``knobs.steps``) of gradient descent with γ = 1, as the notes take it."""
    return {"train": {"optimizer": "sgd", "lr": 1.0, **({"steps": knobs.steps} if knobs.steps > 1 else {})}}


TEMPLATES: dict[str, Template] = {
    t.name: t
    for t in (
        Template(
            "relu_mse",
            N_("y = ReLU(X·W₀)·W₂, MSE 1/(2n), one step of gradient descent"),
            Knobs(2, (2, 2, 1)),
            _relu_mse,
        ),
        Template(
            "sigmoid_logloss",
            N_("y = σ(ReLU(X·W₀)·W₂), logloss, one step of gradient descent"),
            Knobs(2, (2, 2, 1)),
            _sigmoid_logloss,
        ),
        Template(
            "softmax_ce",
            N_("softmax and cross-entropy on one example, one step of gradient descent"),
            Knobs(1, (2, 3)),
            _softmax_ce,
            sizes_words=N_("features, classes"),
        ),
        Template(
            "softmax_l2",
            N_("softmax regression with L2 (λ/2·‖W‖²), one step of gradient descent"),
            Knobs(2, (2, 3), bias=True),
            _softmax_l2,
            sizes_words=N_("features, classes"),
        ),
        Template(
            "batchnorm",
            N_("batch normalisation (training mode), forward and backward, then y = N·W₁, MSE 1/(2n)"),
            Knobs(4, (2, 1)),
            _batchnorm,
            sizes_words=N_("features, outputs"),
        ),
        Template(
            "adam",
            N_("one step of Adam (β₁ = 0.9, β₂ = 0.99) on y = X·W₀, MSE 1/(2n)"),
            Knobs(2, (2, 1)),
            _adam,
            sizes_words=N_("features, outputs"),
        ),
    )
}


def template(name: str) -> Template:
    """The template called ``name``, or a :class:`ConfigError` listing them."""
    if name not in TEMPLATES:
        raise ConfigError(
            _("unknown template {name!r}; expected one of {expected}").format(name=name, expected=", ".join(TEMPLATES))
        )
    return TEMPLATES[name]
