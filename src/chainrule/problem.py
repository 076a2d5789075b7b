"""The problem file of ``chainrule explain``: one small network, one batch and its training step(s).

The format is a public contract, documented key by key in ``docs/problem-files.md``. Every error names
the file, the place in it and what was expected, as one line (:class:`ProblemFileError`, exit code 2).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from chainrule.activations import LeakyReLU, Softmax
from chainrule.errors import ChainruleError
from chainrule.layers import BatchNorm1d, Linear
from chainrule.losses import LOSSES, SCALES, Loss, make_loss
from chainrule.module import Module
from chainrule.network import Sequential
from chainrule.optim import SGD, Adam, Optimizer
from chainrule import activations


class ProblemFileError(ChainruleError):
    """A problem (or answers) file that cannot be used: the message names the file and the place."""

    exit_code = 2


#: The keys each layer type accepts besides ``type``.
LAYER_KEYS = {
    "linear": {"W", "b"},
    "batchnorm": {"gamma", "beta", "eps"},
    "leaky_relu": {"alpha"},
    **{name: set() for name in ("relu", "sigmoid", "tanh", "softmax", "identity")},
}
#: The keys of ``[train]`` for each optimizer, with their defaults.
OPTIMIZER_KEYS: dict[str, dict[str, Any]] = {
    "sgd": {"lr": None, "weight_decay": 0.0},
    "momentum": {"lr": None, "momentum": 0.9, "nesterov": False, "dampening": 0.0, "weight_decay": 0.0},
    "adam": {"lr": None, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0},
}


@dataclass
class Problem:
    """A parsed problem file: everything needed to run and explain its steps, in float64."""

    path: str
    title: str
    X: NDArray
    y: NDArray
    layer_types: list[str]
    model: Sequential
    loss: Loss
    loss_type: str
    l2: float
    optimizer_name: str
    optimizer_settings: dict[str, Any]
    steps: int

    def make_optimizer(self, model: Sequential | None = None) -> Optimizer | None:
        """The optimizer of ``[train]`` over ``model``'s parameters (default: the problem's network);
        ``None`` for a network without parameters (seed 004: a softmax of given logits)."""
        s = self.optimizer_settings
        params = (model or self.model).parameters()
        if not params:
            return None
        if self.optimizer_name == "adam":
            return Adam(params, lr=s["lr"], betas=(s["beta1"], s["beta2"]), eps=s["eps"],
                        weight_decay=s["weight_decay"])
        if self.optimizer_name == "momentum":
            return SGD(params, lr=s["lr"], momentum=s["momentum"], nesterov=s["nesterov"],
                       dampening=s["dampening"], weight_decay=s["weight_decay"])
        return SGD(params, lr=s["lr"], weight_decay=s["weight_decay"])


def load_problem(path: str | Path) -> Problem:
    """Read and validate a problem file; raise :class:`ProblemFileError` on anything wrong."""
    return parse_problem(read_toml(path), str(path))


def read_toml(path: str | Path, **options) -> dict:
    """A TOML file as a dict (``options`` go to :func:`tomllib.load`), or one clear error."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f, **options)
    except FileNotFoundError:
        raise ProblemFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ProblemFileError(f"{path}: is a folder, expected a .toml file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ProblemFileError(f"{path}: cannot read the file ({err})") from None
    except tomllib.TOMLDecodeError as err:
        raise ProblemFileError(f"{path}: not valid TOML: {err}") from None


def parse_problem(doc: dict, path: str = "<problem>") -> Problem:
    where = _Where(path)
    where.keys(doc, "", {"title", "data", "layers", "loss", "train"}, required={"data", "layers", "loss"})
    title = doc.get("title", Path(path).stem)
    if not isinstance(title, str):
        raise where.error("title", f"expected a string, got {title!r}")

    data = where.table(doc, "data")
    where.keys(data, "data", {"X", "y"}, required={"X", "y"})
    X = where.matrix(data["X"], "data.X")
    y = where.array(data["y"], "data.y")

    layer_specs = doc["layers"]
    if not isinstance(layer_specs, list) or not layer_specs or not all(isinstance(s, dict) for s in layer_specs):
        raise where.error("layers", "expected one or more [[layers]] tables")
    layers, types, features = [], [], X.shape[1]
    for i, spec in enumerate(layer_specs):
        layer, features = _build_layer(spec, f"layers[{i}]", features, where)
        layers.append(layer)
        types.append(spec["type"])
    model = Sequential(*layers)

    loss_spec = where.table(doc, "loss")
    where.keys(loss_spec, "loss", {"type", "scale", "l2"}, required={"type"})
    loss_type = where.choice(loss_spec["type"], "loss.type", tuple(LOSSES))
    scale = where.choice(loss_spec.get("scale", "mean"), "loss.scale", tuple(SCALES))
    l2 = where.number(loss_spec.get("l2", 0.0), "loss.l2", minimum=0.0)
    loss = make_loss(loss_type, scale)

    train = doc.get("train", {"optimizer": "sgd", "lr": 1.0})
    if not isinstance(train, dict):
        raise where.error("train", "expected a [train] table")
    name = where.choice(train.get("optimizer", "sgd"), "train.optimizer", tuple(OPTIMIZER_KEYS))
    allowed = OPTIMIZER_KEYS[name]
    where.keys(train, "train", {"optimizer", "steps", *allowed}, required={"lr"})
    settings = {}
    for key, default in allowed.items():
        value = train.get(key, default)
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise where.error(f"train.{key}", f"expected true or false, got {value!r}")
            settings[key] = value
        else:
            settings[key] = where.number(value, f"train.{key}", minimum=0.0, positive=key in ("lr", "eps"))
    steps = train.get("steps", 1)
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise where.error("train.steps", f"expected a positive integer, got {steps!r}")

    needs = {"cross_entropy": "softmax", "bce": "sigmoid"}.get(loss_type)
    if needs and types[-1] != needs:
        fused = {"softmax": "softmax_cross_entropy", "sigmoid": "bce_with_logits"}[needs]
        raise where.error("loss.type", f"{loss_type} expects probabilities, so the last layer must be "
                                       f"{needs}, got {types[-1]} (or use {fused} on logits)")
    problem = Problem(path, title, X, y, types, model, loss, loss_type, l2, name, settings, steps)
    _check_targets(problem, where)
    return problem


def _build_layer(spec: dict, place: str, features: int, where: _Where) -> tuple[Module, int]:
    if "type" not in spec:
        raise where.error(place, "missing key 'type'")
    kind = where.choice(spec["type"], f"{place}.type", tuple(LAYER_KEYS))
    where.keys(spec, place, {"type", *LAYER_KEYS[kind]}, required={"W"} if kind == "linear" else set())
    if kind == "linear":
        W = where.matrix(spec["W"], f"{place}.W")
        if W.shape[0] != features:
            raise where.error(f"{place}.W", f"expected {features} rows (the layer's input has {features} "
                                            f"features), got shape {W.shape}")
        b = None
        if "b" in spec:
            b = where.array(spec["b"], f"{place}.b").reshape(-1)
            if b.shape != (W.shape[1],):
                raise where.error(f"{place}.b", f"expected {W.shape[1]} values (one per column of W), "
                                                f"got {b.size}")
        return Linear.from_arrays(W, b), W.shape[1]
    if kind == "batchnorm":
        eps = where.number(spec.get("eps", 1e-5), f"{place}.eps", minimum=0.0, positive=True)
        bn = BatchNorm1d(features, eps=eps, dtype=np.float64)
        for key in ("gamma", "beta"):
            if key in spec:
                value = where.array(spec[key], f"{place}.{key}").reshape(-1)
                if value.shape != (features,):
                    raise where.error(f"{place}.{key}", f"expected {features} values (one per feature), "
                                                        f"got {value.size}")
                bn.params[key].data[...] = value
        return bn, features
    if kind == "leaky_relu":
        alpha = where.number(spec.get("alpha", 0.01), f"{place}.alpha", minimum=0.0)
        if alpha >= 1:
            raise where.error(f"{place}.alpha", f"expected a number in [0, 1), got {alpha!r}")
        return LeakyReLU(alpha), features
    if kind == "softmax":
        return Softmax(), features
    return activations.ACTIVATIONS[kind](), features


def _check_targets(problem: Problem, where: _Where) -> None:
    """Run the forward pass once on a copy, so that a target that does not fit the loss is reported
    against ``data.y`` (and a prediction outside [0, 1] for a probability loss against ``loss.type``)."""
    model = problem.model.astype(np.float64)
    out = model.forward(problem.X)
    try:
        problem.loss.forward(out, problem.y)
    except ChainruleError as err:
        message = str(err)
        place = "loss.type" if "expects probabilities" in message else "data.y"
        raise where.error(place, message) from None


class _Where:
    """Validation helpers whose errors all read ``FILE: PLACE: what was expected, what came``."""

    def __init__(self, path: str) -> None:
        self.path = path

    def error(self, place: str, message: str) -> ProblemFileError:
        return ProblemFileError(f"{self.path}: {place}: {message}" if place else f"{self.path}: {message}")

    def keys(self, table: dict, place: str, allowed: set, required: set = frozenset()) -> None:
        for key in required:
            if key not in table:
                raise self.error(place or "top level", f"missing key '{key}'")
        unknown = sorted(set(table) - allowed)
        if unknown:
            raise self.error(place or "top level", f"unknown key '{unknown[0]}'; expected one of "
                                                   f"{', '.join(sorted(allowed))}")

    def table(self, doc: dict, key: str) -> dict:
        value = doc[key]
        if not isinstance(value, dict):
            raise self.error(key, f"expected a [{key}] table")
        return value

    def choice(self, value, place: str, choices: tuple) -> str:
        if value not in choices:
            raise self.error(place, f"unknown value {value!r}; expected one of {', '.join(choices)}")
        return value

    def number(self, value, place: str, minimum: float | None = None, positive: bool = False) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
            raise self.error(place, f"expected a finite number, got {value!r}")
        if positive and value <= 0:
            raise self.error(place, f"expected a number > 0, got {value!r}")
        if minimum is not None and value < minimum:
            raise self.error(place, f"expected a number >= {minimum:g}, got {value!r}")
        return float(value)

    def array(self, value, place: str) -> NDArray:
        try:
            array = np.array(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise self.error(place, "expected numbers in a list or a list of equal-length rows") from None
        if array.size == 0 or not np.all(np.isfinite(array)):
            raise self.error(place, "expected finite numbers (no NaN, inf or empty list)")
        return array

    def matrix(self, value, place: str) -> NDArray:
        array = self.array(value, place)
        if array.ndim != 2:
            raise self.error(place, f"expected a matrix (a list of rows, e.g. [[1, 2], [3, 4]]), "
                                    f"got {array.ndim} dimension(s)")
        return array
