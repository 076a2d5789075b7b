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
            raise ConfigError(f"rows, sizes and steps must be at least 1, got {self}")
        if self.steps > MAX_STEPS:
            raise ConfigError(f"steps {self.steps}: a hand-worked exercise takes at most {MAX_STEPS} steps")
        if self.rows * max(self.sizes) > 16:
            raise ConfigError(
                f"rows {self.rows} × size {max(self.sizes)}: a hand-worked exercise keeps every matrix within "
                "16 numbers; choose fewer rows or smaller layers"
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

    def with_knobs(self, **changes: Any) -> Template:
        """The template with some knobs changed (``None`` keeps a knob as it is)."""
        given = {k: v for k, v in changes.items() if v is not None}
        if "sizes" in given and len(given["sizes"]) != len(self.knobs.sizes):
            raise ConfigError(
                f"template {self.name} has {len(self.knobs.sizes)} sizes ({_sizes_words(self)}), "
                f"got {len(given['sizes'])}: {','.join(map(str, given['sizes']))}"
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
    layers = [_linear(rng, features, classes, knobs.bias)]
    return {
        "data": {"X": X, "y": y},
        "layers": layers,
        "loss": {"type": "softmax_cross_entropy", "l2": 0.5},
        **_sgd(knobs),
    }


def _sgd(knobs: Knobs) -> dict[str, Any]:
    """One step (or ``knobs.steps``) of gradient descent with γ = 1, as the notes take it."""
    return {"train": {"optimizer": "sgd", "lr": 1.0, **({"steps": knobs.steps} if knobs.steps > 1 else {})}}


TEMPLATES: dict[str, Template] = {
    t.name: t
    for t in (
        Template(
            "relu_mse", "y = ReLU(X·W₀)·W₂, MSE 1/(2n), one step of gradient descent", Knobs(2, (2, 2, 1)), _relu_mse
        ),
        Template(
            "sigmoid_logloss",
            "y = σ(ReLU(X·W₀)·W₂), logloss, one step of gradient descent",
            Knobs(2, (2, 2, 1)),
            _sigmoid_logloss,
        ),
        Template(
            "softmax_ce",
            "softmax and cross-entropy on one example, one step of gradient descent",
            Knobs(1, (2, 3)),
            _softmax_ce,
        ),
        Template(
            "softmax_l2",
            "softmax regression with L2 (λ/2·‖W‖²), one step of gradient descent",
            Knobs(2, (2, 3), bias=True),
            _softmax_l2,
        ),
    )
}


def template(name: str) -> Template:
    """The template called ``name``, or a :class:`ConfigError` listing them."""
    if name not in TEMPLATES:
        raise ConfigError(f"unknown template {name!r}; expected one of {', '.join(TEMPLATES)}")
    return TEMPLATES[name]


def _sizes_words(t: Template) -> str:
    return "inputs, hidden, outputs" if len(t.knobs.sizes) == 3 else "features, classes"
