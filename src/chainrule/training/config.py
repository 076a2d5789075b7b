"""The configuration of a training run: one dataclass whose fields are also ``chainrule train``'s options.

Each field carries its help text (and, where the value is not a plain string or number, how to read it
from the command line); :mod:`chainrule.cli` makes one option of each field and passes on only the
options given, so every default lives here and only here. Settings that belong to a kind keep that
kind's own defaults: ``lr=None`` is the chosen optimizer's learning rate (0.1 for SGD, 1e-3 for Adam).

Nothing here imports NumPy until a configuration is checked, so that the command line starts fast.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

from chainrule.i18n import N_, _

#: The losses a classifier can be trained with (targets are class labels).
TRAINING_LOSSES = ("softmax_cross_entropy", "cross_entropy", "mse")
SCHEDULES = ("none", "cosine", "step")
#: The largest default learning rate with --loss mse: its gradient on one-hot targets does not saturate as
#: cross-entropy's does, and SGD's 0.1 diverges on the 8×8 digits.
MSE_DEFAULT_LR = 0.01


def at_least(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer >= ``minimum`` (and <= ``maximum``), or a message saying what was
    expected."""
    if maximum is not None:
        expected = _("expected an integer from {minimum} to {maximum}, got {got!r}")
    elif minimum == 1:
        expected = _("expected a positive integer, got {got!r}")
    else:
        expected = _("expected an integer >= {minimum}, got {got!r}")

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(expected.format(minimum=minimum, maximum=maximum, got=text))
        return value

    return parse


positive_int, non_negative_int = at_least(1), at_least(0)


def finite_float(text: str) -> float:
    """An argparse type: a finite number (``nan`` and ``inf`` are refused here, not later)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(_("expected a finite number, got {got!r}").format(got=text))
    return value


def sizes(text: str) -> tuple[int, ...]:
    """Comma-separated layer sizes (``256,128``); ``0``, ``none`` or nothing for none."""
    text = text.strip()
    if text in ("", "0", "none"):
        return ()
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            _("expected comma-separated sizes like 256,128, got {got!r}").format(got=text)
        ) from None
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(_("expected positive sizes, got {got!r}").format(got=text))
    return values


def option(
    default: Any,
    help: str | Callable[[], str],
    *,
    parse: Callable[[str], Any] | None = None,
    choices: Callable[[], tuple[str, ...]] | tuple[str, ...] | None = None,
    metavar: str | None = None,
    flag: str | None = None,
) -> Any:
    """A field that is also a command-line option: its default, its help (English marked with ``N_``,
    translated where the option is made; a function for one that lists registered kinds), how to read it
    (``parse``), its ``choices`` (a function: looked up when the option is made), ``metavar`` and ``flag``
    (by default ``--`` and the name with dashes)."""
    return field(
        default=default, metadata={"help": help, "parse": parse, "choices": choices, "metavar": metavar, "flag": flag}
    )


def _hidden_activations() -> tuple[str, ...]:
    from chainrule import activations

    return activations.names(hidden=True)


def _optimizers() -> tuple[str, ...]:
    from chainrule.registry import OPTIMIZERS

    return OPTIMIZERS.names()


def _default_of(setting: str) -> str:
    """Help text: each optimizer's default of ``setting``, grouped (``0.1 for sgd, momentum; ...``)."""
    from chainrule.optim import optimizer_settings

    groups: dict[str, list[str]] = {}
    for name in _optimizers():
        value = optimizer_settings(name).get(setting)
        if value is not None:
            groups.setdefault(f"{value:g}", []).append(name)
    return "; ".join(
        _("{value} for {optimizers}").format(value=value, optimizers=", ".join(names))
        for value, names in groups.items()
    )


@dataclass
class TrainConfig:
    """Everything that defines a run; ``chainrule train``'s options map one to one onto these fields."""

    dataset: str = option(
        "digits", N_("digits (embedded), mnist, fashion-mnist, a folder of IDX files, an .npz or a .csv")
    )
    data_dir: str | None = option(
        None, N_("where to look first for mnist / fashion-mnist (also: $CHAINRULE_DATA_DIR)"), metavar="DIR"
    )
    label: str | None = option(
        None,
        N_("the label column of a .csv, by its header or its number from 0 (default: the first)"),
        metavar="COLUMN",
    )
    hidden: tuple[int, ...] = option(
        (256, 128),
        N_("hidden layer sizes, comma-separated, e.g. 256,128; 0 or '' for softmax regression"),
        parse=sizes,
        metavar="SIZES",
    )
    activation: str = option("relu", N_("the activation of the hidden layers"), choices=_hidden_activations)
    batchnorm: bool = option(False, N_("BatchNorm after every hidden linear layer"))
    layernorm: bool = option(False, N_("LayerNorm after every hidden linear layer"))
    dropout: float = option(0.0, N_("drop probability after every hidden activation"), parse=finite_float, metavar="P")
    loss: str = option(
        "softmax_cross_entropy",
        N_(
            "softmax_cross_entropy on logits (fused), cross_entropy after a "
            "softmax layer, or mse (1/(2n)) on one-hot targets"
        ),
        choices=TRAINING_LOSSES,
    )
    optimizer: str = option("adam", N_("the optimizer"), choices=_optimizers)
    lr: float | None = option(
        None,
        lambda: _("learning rate (default: the optimizer's own: {defaults}; with --loss mse at most {mse_lr})").format(
            defaults=_default_of("lr"), mse_lr=MSE_DEFAULT_LR
        ),
        parse=finite_float,
    )
    momentum: float | None = option(
        None,
        lambda: _("momentum, for the optimizers that have it (default: {defaults})").format(
            defaults=_default_of("momentum")
        ),
        parse=finite_float,
    )
    weight_decay: float | None = option(
        None,
        lambda: _("weight decay added to every gradient (AdamW: decoupled) (default: {defaults})").format(
            defaults=_default_of("weight_decay")
        ),
        parse=finite_float,
    )
    schedule: str = option(
        "cosine",
        N_("learning-rate schedule over the epochs: cosine decay to 0, ×0.1 every half of the epochs (step), or none"),
        choices=SCHEDULES,
    )
    batch_size: int = option(64, N_("rows per training step"), parse=positive_int)
    epochs: int = option(10, N_("passes over the training set"), parse=positive_int)
    val_split: float = option(0.1, N_("share of the training set held out for validation"), parse=finite_float)
    early_stopping: int | None = option(
        None,
        N_("stop when the validation loss has not improved for PATIENCE epochs; keep the best"),
        parse=positive_int,
        metavar="PATIENCE",
    )
    seed: int = option(
        0, N_("seed of the split, the initial weights, the batch order and dropout"), parse=non_negative_int
    )
    dtype: str = option("float32", N_("floating-point type of the weights and data"), choices=("float32", "float64"))
    out: str | None = option(None, N_("output folder (default: a new folder under runs/)"), metavar="DIR")
    force: bool = option(False, N_("write into an existing, non-empty --out (the files of a run there are replaced)"))
    quiet: bool = option(False, N_("print only the final summary"))
    plots: bool = option(True, N_("skip the PNG plots"), flag="--no-plots")

    def __post_init__(self) -> None:
        """Values that mean what a field holds become its plain form: a path for a folder or file, a list
        of sizes, a NumPy number (``TrainConfig(out=Path("run"), hidden=[256])``)."""
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, os.PathLike):
                value = os.fspath(value)
            elif isinstance(value, list) and str(f.type).startswith("tuple"):
                value = tuple(value)
            if isinstance(value, tuple):
                value = tuple(v.item() if hasattr(v, "item") and hasattr(v, "dtype") else v for v in value)
            elif hasattr(value, "item") and hasattr(value, "dtype"):  # a NumPy scalar
                value = value.item()
            setattr(self, f.name, value)

    def validate(self) -> TrainConfig:
        """Check every field (a :class:`~chainrule.errors.ConfigError` names the option); returns self."""
        from chainrule.errors import ConfigError, check_choice, check_positive
        from chainrule.optim import optimizer_settings

        self._check_types(ConfigError)
        check_choice("optimizer", self.optimizer, _optimizers())
        check_choice("schedule", self.schedule, SCHEDULES)
        check_choice("loss", self.loss, TRAINING_LOSSES)
        check_choice("dtype", self.dtype, ("float32", "float64"))
        check_choice("activation", self.activation, _hidden_activations())
        takes = optimizer_settings(self.optimizer)
        for name in ("lr", "momentum", "weight_decay"):
            value = getattr(self, name)
            if value is None:
                continue
            flag = f"--{name.replace('_', '-')}"
            check_positive(flag if name != "lr" else _("learning rate (--lr)"), value, allow_zero=name != "lr")
            if name not in takes:
                raise ConfigError(
                    _("{flag}: the {optimizer} optimizer has no {name}; it takes {takes}").format(
                        flag=flag, optimizer=self.optimizer, name=name, takes=", ".join(takes)
                    )
                )
        if self.batchnorm and self.layernorm:
            raise ConfigError(_("--batchnorm and --layernorm: choose one normalisation"))
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(
                _("--dropout is the drop probability and must be in [0, 1), got {got}").format(got=self.dropout)
            )
        if not 0.0 <= self.val_split < 1.0:
            raise ConfigError(_("--val-split must be in [0, 1), got {got}").format(got=self.val_split))
        if self.early_stopping is not None and (self.early_stopping < 1 or self.val_split == 0):
            raise ConfigError(_("--early-stopping needs a patience >= 1 and a validation split (--val-split > 0)"))
        if self.seed < 0:
            raise ConfigError(_("--seed must be an integer >= 0, got {got}").format(got=self.seed))
        for name in ("batch_size", "epochs"):
            if getattr(self, name) < 1:
                raise ConfigError(
                    _("{flag} must be a positive integer, got {got}").format(
                        flag=f"--{name.replace('_', '-')}", got=getattr(self, name)
                    )
                )
        if any(h < 1 for h in self.hidden):
            raise ConfigError(
                _("--hidden sizes must be positive integers, got {got}").format(got=",".join(map(str, self.hidden)))
            )
        return self

    def _check_types(self, error: type[Exception]) -> None:
        """Each field holds a value of its annotated type (a configuration read back from a checkpoint
        file, or built from Python, may hold anything)."""
        kinds = {"str": str, "int": int, "float": (int, float), "bool": bool}
        for f in fields(self):
            value, annotation = getattr(self, f.name), str(f.type)
            if value is None and annotation.endswith("| None"):
                continue
            base = annotation.split(" | ")[0]
            if base.startswith("tuple"):
                ok = isinstance(value, tuple) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
            else:
                ok = isinstance(value, kinds[base]) and (base == "bool" or not isinstance(value, bool))
            if not ok:
                flag = f.metadata["flag"] or "--" + f.name.replace("_", "-")
                raise error(
                    _("{flag}: expected {kind}, got {got}").format(
                        flag=flag, kind="sizes" if base.startswith("tuple") else base, got=f"{value!r:.60}"
                    )
                )

    def optimizer_settings(self) -> dict[str, float]:
        """The optimizer settings given (``lr``, ``momentum``, ``weight_decay``); the others keep the
        optimizer's defaults, except that MSE's default learning rate is at most :data:`MSE_DEFAULT_LR`."""
        settings = {
            name: getattr(self, name) for name in ("lr", "momentum", "weight_decay") if getattr(self, name) is not None
        }
        if self.lr is None and self.loss == "mse":
            from chainrule.optim import optimizer_settings

            settings["lr"] = min(optimizer_settings(self.optimizer)["lr"], MSE_DEFAULT_LR)
        return settings

    def to_dict(self) -> dict[str, Any]:
        """The configuration as JSON values (``hidden`` as a list), as metrics.json and checkpoints keep it."""
        return {
            f.name: list(value) if isinstance(value := getattr(self, f.name), tuple) else value for f in fields(self)
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """The inverse of :meth:`to_dict` (``hidden`` a list again becomes a tuple); an unknown key is a
        ``TypeError``."""
        return cls(**values)
