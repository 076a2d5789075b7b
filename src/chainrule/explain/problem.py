"""The problem file of ``chainrule explain``: one small network, one batch and its training step(s).

The format is a public contract, documented key by key in ``docs/problem-files.md``. Its layers, loss and
optimizer are the registered kinds (:mod:`chainrule.registry`): a layer's keys are its settings (``eps``,
``alpha``) and its parameters (``W``, ``gamma``), the optimizer's keys its settings. Every error names the
file, the place in it and what was expected, as one line (:class:`ProblemFileError`, exit code 2).
"""

from __future__ import annotations

import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from chainrule.archive import MAX_NESTING, atomic_write, nesting, open_regular
from chainrule.errors import ChainruleError, ConfigError, SettingError, need
from chainrule.losses import SCALES, Loss
from chainrule.module import Module, Parameter
from chainrule.network import Sequential
from chainrule.optim import Optimizer, make_optimizer, optimizer_settings
from chainrule.registry import LAYERS, LOSSES, OPTIMIZERS, constructor_defaults

#: The most training steps a problem file or ``--steps`` may ask for: a hand-worked exercise has a few;
#: each step is kept, so the bound also bounds the memory and time of ``explain`` and ``check``.
MAX_STEPS = 10_000
#: The largest problem or answers file read (a hand-written exercise is a few KB).
MAX_FILE_BYTES = 16 * 2**20


class ProblemFileError(ChainruleError):
    """A problem (or answers) file that cannot be used: the message names the file and the place."""

    exit_code = 2


def layer_kinds() -> tuple[str, ...]:
    """The layer kinds a problem file can hold: every registered one whose output is given by its numbers
    (not dropout, whose output depends on random numbers)."""
    return LAYERS.names(lambda kind: kind.cls.deterministic)


@dataclass
class Problem:
    """A parsed problem file: everything needed to run and explain its steps, in float64."""

    path: str
    title: str
    X: NDArray
    y: NDArray
    model: Sequential
    loss: Loss
    l2: float
    optimizer_name: str
    optimizer_settings: dict[str, Any] = field(default_factory=dict)  # as written in [train]
    steps: int = 1

    def make_optimizer(self, model: Sequential | None = None) -> Optimizer | None:
        """The optimizer of ``[train]`` over ``model``'s parameters (default: the problem's network);
        ``None`` for a network without parameters (a softmax of given logits)."""
        params = (model or self.model).parameters()
        return make_optimizer(self.optimizer_name, params, **self.optimizer_settings) if params else None


def load_problem(path: str | Path) -> Problem:
    """Read and validate a problem file; raise :class:`ProblemFileError` on anything wrong."""
    return parse_problem(read_toml(path), str(path))


def read_toml(path: str | Path, **options) -> dict:
    """A TOML file as a dict (``options`` go to :func:`tomllib.load`), or one clear error; only a regular
    file of at most :data:`MAX_FILE_BYTES` is read."""
    with open_regular(path, "a .toml file", ProblemFileError, MAX_FILE_BYTES) as f:
        try:
            text = f.read().decode()
            if nesting(text) > MAX_NESTING:  # before the parser, which takes the square of a dotted key's parts
                raise RecursionError
            return tomllib.loads(text, **options)
        except (OSError, UnicodeDecodeError) as err:
            raise ProblemFileError(f"{path}: cannot read the file ({err})") from None
        except tomllib.TOMLDecodeError as err:
            raise ProblemFileError(f"{path}: not valid TOML: {err}") from None
        except RecursionError:
            raise ProblemFileError(
                f"{path}: arrays, tables or dotted keys nested more than {MAX_NESTING} deep; too deep to be a "
                "problem or answers file"
            ) from None


def check_steps(steps: Any, place: str) -> int:
    """``steps`` if it is an integer from 1 to :data:`MAX_STEPS`; else a :class:`ProblemFileError` naming
    ``place`` (``train.steps``, ``--steps``)."""
    if not isinstance(steps, int) or isinstance(steps, bool) or not 1 <= steps <= MAX_STEPS:
        raise ProblemFileError(f"{place}: expected an integer from 1 to {MAX_STEPS}, got {steps!r}")
    return steps


def parse_problem(doc: dict, path: str = "<problem>") -> Problem:
    where = _Where(path)
    places = [key for key in doc if key != "title"]
    if "data" not in doc and "layers" not in doc and places and all(_is_place(key) for key in places):
        raise where.error(
            "",
            'this is an answers file (values by their place, e.g. "layers[0].output"), not a problem file; '
            "check it against its problem with: chainrule check PROBLEM.toml ANSWERS.toml",
        )
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
    layers, features = [], X.shape[1]
    for i, spec in enumerate(layer_specs):
        layer = _build_layer(spec, f"layers[{i}]", features, where)
        layers.append(layer)
        features = layer.output_features(features)
    model = Sequential(*layers)

    loss_spec = where.table(doc, "loss")
    where.keys(loss_spec, "loss", {"type", "scale", "l2"}, required={"type"})
    loss_kind = where.choice(loss_spec["type"], "loss.type", LOSSES.names())
    scale = where.choice(loss_spec.get("scale", "mean"), "loss.scale", tuple(SCALES))
    l2 = where.number(loss_spec.get("l2", 0.0), "loss.l2", minimum=0.0)
    loss = LOSSES[loss_kind].cls(scale=scale)
    if loss.after and layers[-1].kind != loss.after:
        raise where.error(
            "loss.type",
            f"{loss_kind} expects probabilities, so the last layer must be "
            f"{loss.after}, got {layers[-1].kind} (or use {loss.fused} on logits)",
        )

    name, settings, steps = _train(doc, where)
    problem = Problem(path, title, X, y, model, loss, l2, name, settings, steps)
    _check_targets(problem, where)
    return problem


def _is_place(key: str) -> bool:
    """Whether ``key`` reads as a place in the output of explain (``loss``, ``layers[0].grads.W``), as
    the keys of an answers file do."""
    return key in ("loss", "final_loss", "history") or key.startswith(("layers[", "steps["))


def problem_document(
    model: Sequential,
    X: NDArray,
    y: NDArray,
    *,
    loss: str,
    optimizer: str = "sgd",
    title: str = "",
    scale: str = "mean",
    l2: float = 0.0,
    steps: int = 1,
    **settings: Any,
) -> dict[str, Any]:
    """The problem file (as the dict that :func:`parse_problem` reads) of ``model``'s training step(s) on the
    batch ``X``, ``y``: each layer's kind, its settings that are not defaults and cannot be read from its
    arrays, and its parameters; the loss; the optimizer and its ``settings`` (``lr=0.1``).

    A layer whose output depends on random numbers (dropout) has no place in a problem file: a
    :class:`ConfigError` names it."""
    random = [f"layer {i} ({type(layer).__name__})" for i, layer in enumerate(model.layers) if not layer.deterministic]
    if random:
        raise ConfigError(
            f"{', '.join(random)}: a problem file holds every number of a step, and this layer's depend on "
            "random numbers; leave it out"
        )
    owners: dict[int, int] = {}
    for i, layer in enumerate(model.layers):
        for p in layer.params.values():
            if owners.setdefault(id(p), i) != i:
                raise ConfigError(
                    f"layers {owners[id(p)]} and {i} share a parameter, which a problem file (one array per "
                    "layer) cannot say"
                )
    if np.ndim(X) != 2:
        raise ConfigError(f"X must be a matrix of rows (n, features), got shape {np.shape(X)}")
    layers, features = [], np.shape(X)[1]
    for layer in model.layers:
        params = {name: _numbers(p.data) for name, p in layer.params.items()}
        inferred = type(layer).inferred_config(features, {name: p.data for name, p in layer.params.items()})
        defaults = constructor_defaults(type(layer))
        table = {k: v for k, v in layer.config().items() if k not in inferred and v != defaults.get(k)}
        layers.append({"type": layer.kind, **table, **params})
        features = layer.output_features(features)
    return {
        "title": title or f"{len(layers)} layers, {loss}, {optimizer}",
        "data": {"X": _numbers(X), "y": _numbers(y)},
        "layers": layers,
        "loss": {"type": loss, **({"scale": scale} if scale != "mean" else {}), **({"l2": l2} if l2 else {})},
        "train": {"optimizer": optimizer, **settings, **({"steps": steps} if steps != 1 else {})},
    }


def write_problem(path: str | Path, document: dict[str, Any], comment: str = "") -> None:
    """Write a problem file (the dict of :func:`problem_document`) at ``path``, a matrix one row per line,
    after ``comment`` (lines of text, each written as a TOML comment)."""
    tomlkit = need("tomlkit", "torch", "writing a problem file")

    def value(v: Any) -> Any:
        if isinstance(v, list) and v and isinstance(v[0], list):
            rows = tomlkit.array()
            rows.extend(v)
            return rows.multiline(True)
        return v

    doc = tomlkit.document()
    for line in comment.splitlines():
        doc.add(tomlkit.comment(line))
    for key, item in document.items():
        if key == "layers":
            tables = tomlkit.aot()
            for layer in item:
                table = tomlkit.table()
                for k, v in layer.items():
                    table[k] = value(v)
                tables.append(table)
            doc[key] = tables
        elif isinstance(item, dict):
            doc[key] = {k: value(v) for k, v in item.items()}
        else:
            doc[key] = item
    text = tomlkit.dumps(doc)
    atomic_write(path, lambda f: f.write(text.encode()))


def _numbers(array: NDArray) -> list:
    """An array as nested lists of Python numbers: integers as integers, float32 values by their shortest
    decimal form (``0.1``, not ``0.10000000149011612``), others exactly."""
    array = np.asarray(array)
    if array.dtype.kind in "iub":
        return array.astype(np.int64).tolist()
    if array.dtype == np.float32:
        return np.array([float(str(v)) for v in array.ravel()]).reshape(array.shape).tolist()
    return array.astype(np.float64).tolist()


def _train(doc: dict, where: _Where) -> tuple[str, dict[str, Any], int]:
    """The optimizer's name and the settings written for it, and the number of steps, from ``[train]``."""
    train = doc.get("train", {"optimizer": "sgd", "lr": 1.0})
    if not isinstance(train, dict):
        raise where.error("train", "expected a [train] table")
    name = where.choice(train.get("optimizer", "sgd"), "train.optimizer", OPTIMIZERS.names())
    allowed = optimizer_settings(name)
    where.keys(train, "train", {"optimizer", "steps", *allowed}, required={"lr"})
    settings = {}
    for key, default in allowed.items():
        if key not in train:
            continue
        value = train[key]
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise where.error(f"train.{key}", f"expected true or false, got {value!r}")
            settings[key] = value
        else:
            settings[key] = where.number(value, f"train.{key}", minimum=0.0, positive=key == "lr")
    try:  # the optimizer's own checks (betas below 1, Nesterov with momentum), on a stand-in parameter
        make_optimizer(name, [Parameter(np.zeros(1))], **settings)
    except SettingError as err:
        raise where.error(f"train.{err.key}", str(err)) from None
    except ConfigError as err:
        raise where.error("train", str(err)) from None
    try:
        steps = check_steps(train.get("steps", 1), "train.steps")
    except ProblemFileError as err:
        raise where.error("", str(err)) from None
    return name, settings, steps


def _build_layer(spec: dict, place: str, features: int, where: _Where) -> Module:
    """A layer from its table: numbers are its settings, lists its parameters; the settings that the
    parameters and the incoming features already say (``Linear``'s sizes) are taken from them."""
    if "type" not in spec:
        raise where.error(place, "missing key 'type'")
    kind = where.choice(spec["type"], f"{place}.type", layer_kinds())
    cls = LAYERS[kind].cls
    arrays = {k: where.array(v, f"{place}.{k}") for k, v in spec.items() if isinstance(v, list)}
    settings = {k: v for k, v in spec.items() if k != "type" and not isinstance(v, list)}
    try:
        inferred = cls.inferred_config(features, {**settings, **arrays})
    except KeyError as err:
        raise where.error(place, f"missing key '{err.args[0]}'") from None
    except SettingError as err:
        raise where.error(f"{place}.{err.key}", str(err)) from None
    layer = cls.from_config(inferred, dtype=np.float64)
    defaults = {k: v for k, v in layer.config().items() if k not in inferred}
    where.keys(spec, place, {"type", *defaults, *layer.params})
    for key in spec:
        if key in layer.params and key not in arrays:
            raise where.error(f"{place}.{key}", "expected numbers in a list")
        if key in defaults and key in arrays:
            raise where.error(f"{place}.{key}", "expected a single value, got a list")
    for key, value in settings.items():
        if isinstance(defaults[key], bool) and not isinstance(value, bool):
            raise where.error(f"{place}.{key}", f"expected true or false, got {value!r}")
        if not isinstance(defaults[key], bool):
            where.number(value, f"{place}.{key}")
    try:
        layer = cls.from_config({**inferred, **settings}, dtype=np.float64)
    except SettingError as err:
        raise where.error(f"{place}.{err.key}", str(err)) from None
    except ConfigError as err:
        raise where.error(place, str(err)) from None
    for key, value in arrays.items():
        target = layer.params[key].data
        if target.ndim == 1:
            value = arrays[key] = value.reshape(-1)
        if value.shape != target.shape:
            expected = f"{target.size} values" if target.ndim == 1 else f"shape {target.shape}"
            raise where.error(
                f"{place}.{key}", f"expected {expected}, got {value.size if target.ndim == 1 else value.shape}"
            )
    layer.load_state_dict(arrays, strict=False)
    return layer


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
        for key in sorted(required):
            if key not in table:
                raise self.error(place or "top level", f"missing key '{key}'")
        unknown = sorted(set(table) - allowed)
        if unknown:
            raise self.error(
                place or "top level", f"unknown key '{unknown[0]}'; expected one of {', '.join(sorted(allowed))}"
            )

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
        largest = sys.float_info.max  # Python compares an integer beyond it exactly, without converting
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not -largest <= value <= largest:
            raise self.error(place, f"expected a finite number, got {value!r:.40}")
        if positive and value <= 0:
            raise self.error(place, f"expected a number > 0, got {value!r}")
        if minimum is not None and value < minimum:
            raise self.error(place, f"expected a number >= {minimum:g}, got {value!r}")
        return float(value)

    def array(self, value, place: str) -> NDArray:
        try:
            array = np.array(value, dtype=np.float64)
        except OverflowError:  # an integer beyond any float
            raise self.error(place, "expected finite numbers (no NaN, inf or empty list)") from None
        except (TypeError, ValueError):
            raise self.error(place, "expected numbers in a list or a list of equal-length rows") from None
        if array.size == 0 or not np.all(np.isfinite(array)):
            raise self.error(place, "expected finite numbers (no NaN, inf or empty list)")
        return array

    def matrix(self, value, place: str) -> NDArray:
        array = self.array(value, place)
        if array.ndim != 2:
            raise self.error(
                place, f"expected a matrix (a list of rows, e.g. [[1, 2], [3, 4]]), got {array.ndim} dimension(s)"
            )
        return array
