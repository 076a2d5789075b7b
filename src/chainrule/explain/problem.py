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
from chainrule.errors import ChainruleError, ConfigError, SettingError
from chainrule.i18n import N_, _, ngettext
from chainrule.losses import SCALES, Loss, ProbabilitiesExpected
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
    with open_regular(path, N_("a .toml file"), ProblemFileError, MAX_FILE_BYTES) as f:
        try:
            text = f.read().decode()
            if nesting(text) > MAX_NESTING:  # before the parser, which takes the square of a dotted key's parts
                raise RecursionError
            return tomllib.loads(text, **options)
        except (OSError, UnicodeDecodeError) as err:
            raise ProblemFileError(_("{path}: cannot read the file ({error})").format(path=path, error=err)) from None
        except tomllib.TOMLDecodeError as err:
            raise ProblemFileError(_("{path}: not valid TOML: {error}").format(path=path, error=err)) from None
        except RecursionError:
            raise ProblemFileError(
                _(
                    "{path}: arrays, tables or dotted keys nested more than {depth} deep; too deep to be a problem "
                    "or answers file"
                ).format(path=path, depth=MAX_NESTING)
            ) from None


def check_steps(steps: Any, place: str) -> int:
    """``steps`` if it is an integer from 1 to :data:`MAX_STEPS`; else a :class:`ProblemFileError` naming
    ``place`` (``train.steps``, ``--steps``)."""
    if not isinstance(steps, int) or isinstance(steps, bool) or not 1 <= steps <= MAX_STEPS:
        raise ProblemFileError(
            _("{place}: expected an integer from 1 to {most}, got {got!r}").format(
                place=place, most=MAX_STEPS, got=steps
            )
        )
    return steps


def parse_problem(doc: dict, path: str = "<problem>") -> Problem:
    where = _Where(path)
    places = [key for key in doc if key != "title"]
    if "data" not in doc and "layers" not in doc and places and all(_is_place(key) for key in places):
        raise where.error(
            "",
            _(
                'this is an answers file (values by their place, e.g. "layers[0].output"), not a problem file; '
                "check it against its problem with: chainrule check PROBLEM.toml ANSWERS.toml"
            ),
        )
    where.keys(doc, "", {"title", "data", "layers", "loss", "train"}, required={"data", "layers", "loss"})
    title = doc.get("title", Path(path).stem)
    if not isinstance(title, str):
        raise where.error("title", _("expected a string, got {got!r}").format(got=title))

    data = where.table(doc, "data")
    where.keys(data, "data", {"X", "y"}, required={"X", "y"})
    X = where.matrix(data["X"], "data.X")
    y = where.array(data["y"], "data.y")

    layer_specs = doc["layers"]
    if not isinstance(layer_specs, list) or not layer_specs or not all(isinstance(s, dict) for s in layer_specs):
        raise where.error("layers", _("expected one or more [[layers]] tables"))
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
            _(
                "{loss} expects probabilities, so the last layer must be {layer}, got {got} (or use {fused} on logits)"
            ).format(loss=loss_kind, layer=loss.after, got=layers[-1].kind, fused=loss.fused),
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
    random = [
        _("layer {index} ({kind})").format(index=i, kind=type(layer).__name__)
        for i, layer in enumerate(model.layers)
        if not layer.deterministic
    ]
    if random:
        raise ConfigError(
            _(
                "{layers}: a problem file holds every number of a step, and this layer's depend on "
                "random numbers; leave it out"
            ).format(layers=", ".join(random))
        )
    owners: dict[int, int] = {}
    for i, layer in enumerate(model.layers):
        for p in layer.params.values():
            if owners.setdefault(id(p), i) != i:
                raise ConfigError(
                    _(
                        "layers {first} and {second} share a parameter, which a problem file (one array per "
                        "layer) cannot say"
                    ).format(first=owners[id(p)], second=i)
                )
    if np.ndim(X) != 2:
        raise ConfigError(_("X must be a matrix of rows (n, features), got shape {shape}").format(shape=np.shape(X)))
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
    after ``comment`` (lines of text, each written as a TOML comment).

    A problem file holds only strings, numbers, booleans, arrays of numbers, tables of them and the array
    of tables ``[[layers]]``, so it is written here without a TOML library; what is written is read back
    with the standard library's :mod:`tomllib` and must give ``document`` again, else nothing is written."""
    lines = [f"# {line}".rstrip() for line in comment.splitlines()]
    tables = []
    for key, item in document.items():
        if isinstance(item, dict):
            tables += ["", f"[{_toml_key(key)}]", *_toml_pairs(item)]
        elif isinstance(item, list) and item and all(isinstance(t, dict) for t in item):
            for table in item:
                tables += ["", f"[[{_toml_key(key)}]]", *_toml_pairs(table)]
        else:
            lines += _toml_pairs({key: item})
    text = "\n".join(lines + tables) + "\n"
    if tomllib.loads(text) != _plain(document):
        raise ConfigError(f"{path}: the problem cannot be written as TOML as it is (a value of another kind)")
    atomic_write(path, lambda f: f.write(text.encode()))


def _toml_pairs(table: dict[str, Any]) -> list[str]:
    return [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in table.items()]


def _toml_key(key: str) -> str:
    return key if key.replace("_", "a").replace("-", "a").isalnum() and key.isascii() else _toml_string(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, list) and value and all(isinstance(row, list) for row in value):  # a row per line
        return "[\n" + "".join(f"    {_toml_value(row)},\n" for row in value) + "]"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return repr(float(value))  # finite ones; inf and nan are caught by the reading back
    if isinstance(value, str):
        return _toml_string(value)
    raise ConfigError(f"a problem file holds numbers, strings and arrays of them, not {type(value).__name__}")


def _toml_string(text: str) -> str:
    """A TOML basic string: backslash, quote and control characters escaped."""
    escaped = []
    for c in text:
        if c in '"\\':
            escaped.append("\\" + c)
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            escaped.append(f"\\u{ord(c):04X}")
        else:
            escaped.append(c)
    return '"' + "".join(escaped) + '"'


def _plain(value: Any) -> Any:
    """``value`` with NumPy numbers as Python's, as :mod:`tomllib` reads them back."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


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
        raise where.error("train", _("expected a [{table}] table").format(table="train"))
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
                raise where.error(f"train.{key}", _("expected true or false, got {got!r}").format(got=value))
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
        raise where.error(place, _("missing key '{key}'").format(key="type"))
    kind = where.choice(spec["type"], f"{place}.type", layer_kinds())
    cls = LAYERS[kind].cls
    arrays = {k: where.array(v, f"{place}.{k}") for k, v in spec.items() if isinstance(v, list)}
    settings = {k: v for k, v in spec.items() if k != "type" and not isinstance(v, list)}
    try:
        inferred = cls.inferred_config(features, {**settings, **arrays})
    except KeyError as err:
        raise where.error(place, _("missing key '{key}'").format(key=err.args[0])) from None
    except SettingError as err:
        raise where.error(f"{place}.{err.key}", str(err)) from None
    layer = cls.from_config(inferred, dtype=np.float64)
    defaults = {k: v for k, v in layer.config().items() if k not in inferred}
    where.keys(spec, place, {"type", *defaults, *layer.params})
    for key in spec:
        if key in layer.params and key not in arrays:
            raise where.error(f"{place}.{key}", _("expected numbers in a list"))
        if key in defaults and key in arrays:
            raise where.error(f"{place}.{key}", _("expected a single value, got a list"))
    for key, value in settings.items():
        if isinstance(defaults[key], bool) and not isinstance(value, bool):
            raise where.error(f"{place}.{key}", _("expected true or false, got {got!r}").format(got=value))
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
            if target.ndim == 1:
                message = ngettext("expected {n} value, got {got}", "expected {n} values, got {got}", target.size)
                message = message.format(n=target.size, got=value.size)
            else:
                message = _("expected shape {shape}, got {got}").format(shape=target.shape, got=value.shape)
            raise where.error(f"{place}.{key}", message)
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
        place = "loss.type" if isinstance(err, ProbabilitiesExpected) else "data.y"
        raise where.error(place, str(err)) from None


class _Where:
    """Validation helpers whose errors all read ``FILE: PLACE: what was expected, what came``."""

    def __init__(self, path: str) -> None:
        self.path = path

    def error(self, place: str, message: str) -> ProblemFileError:
        return ProblemFileError(f"{self.path}: {place}: {message}" if place else f"{self.path}: {message}")

    def keys(self, table: dict, place: str, allowed: set, required: set = frozenset()) -> None:
        for key in sorted(required):
            if key not in table:
                raise self.error(place or _("top level"), _("missing key '{key}'").format(key=key))
        unknown = sorted(set(table) - allowed)
        if unknown:
            raise self.error(
                place or _("top level"),
                _("unknown key '{key}'; expected one of {expected}").format(
                    key=unknown[0], expected=", ".join(sorted(allowed))
                ),
            )

    def table(self, doc: dict, key: str) -> dict:
        value = doc[key]
        if not isinstance(value, dict):
            raise self.error(key, _("expected a [{table}] table").format(table=key))
        return value

    def choice(self, value, place: str, choices: tuple) -> str:
        if value not in choices:
            raise self.error(
                place,
                _("unknown value {got!r}; expected one of {expected}").format(got=value, expected=", ".join(choices)),
            )
        return value

    def number(self, value, place: str, minimum: float | None = None, positive: bool = False) -> float:
        largest = sys.float_info.max  # Python compares an integer beyond it exactly, without converting
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not -largest <= value <= largest:
            raise self.error(place, _("expected a finite number, got {got}").format(got=f"{value!r:.40}"))
        if positive and value <= 0:
            raise self.error(place, _("expected a number > 0, got {got!r}").format(got=value))
        if minimum is not None and value < minimum:
            raise self.error(
                place, _("expected a number >= {minimum}, got {got!r}").format(minimum=f"{minimum:g}", got=value)
            )
        return float(value)

    def array(self, value, place: str) -> NDArray:
        try:
            array = np.array(value, dtype=np.float64)
        except OverflowError:  # an integer beyond any float
            raise self.error(place, _("expected finite numbers (no NaN, inf or empty list)")) from None
        except (TypeError, ValueError):
            raise self.error(place, _("expected numbers in a list or a list of equal-length rows")) from None
        if array.size == 0 or not np.all(np.isfinite(array)):
            raise self.error(place, _("expected finite numbers (no NaN, inf or empty list)"))
        return array

    def matrix(self, value, place: str) -> NDArray:
        array = self.array(value, place)
        if array.ndim != 2:
            message = ngettext(
                "expected a matrix (a list of rows, e.g. [[1, 2], [3, 4]]), got {n} dimension",
                "expected a matrix (a list of rows, e.g. [[1, 2], [3, 4]]), got {n} dimensions",
                array.ndim,
            )
            raise self.error(place, message.format(n=array.ndim))
        return array
