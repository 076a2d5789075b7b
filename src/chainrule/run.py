"""A whole ``chainrule train`` run: data, model, :func:`~chainrule.train.fit`, and what it leaves behind.

A run writes into its output folder: ``model.npz`` (see :mod:`chainrule.io`), ``metrics.json`` (the
configuration, every epoch's numbers, the test accuracy), ``checkpoint.npz`` after every epoch (see
:mod:`chainrule.checkpoint`; ``--resume`` continues from it) and PNG plots (learning curves, confusion
matrix, first-layer weights as images, the most confidently wrong test examples). The same seed gives
the same numbers.
"""

from __future__ import annotations

import json
import shutil
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from chainrule.checkpoint import NAME, read_checkpoint_config, restore_checkpoint, save_checkpoint
from chainrule.data import Dataset, load_dataset
from chainrule.errors import ChainruleError, ConfigError, DataError, check_choice, check_positive
from chainrule.io import Classifier, atomic_write, save_model
from chainrule.losses import make_loss
from chainrule.network import Sequential, mlp, softmax_regression
from chainrule.optim import SGD, Adam, AdamW, CosineAnnealingLR, Optimizer, StepLR
from chainrule.predict import frame_fill
from chainrule.train import EpochResult, FitState, evaluate, fit, model_arrays

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "adamw")
#: The files a run writes into its folder (and the only ones --force removes).
RUN_FILES = ("model.npz", "metrics.json", NAME, "learning_curves.png", "confusion_matrix.png",
             "first_layer_weights.png", "most_confident_errors.png")
LOSSES = ("softmax_cross_entropy", "cross_entropy", "mse")


@dataclass
class TrainConfig:
    """Everything that defines a run; the command line's options map one to one onto these fields."""

    dataset: str = "digits"
    data_dir: str | None = None
    hidden: tuple[int, ...] = (256, 128)  # empty: softmax regression
    activation: str = "relu"
    batchnorm: bool = False
    dropout: float = 0.0
    loss: str = "softmax_cross_entropy"
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "cosine"  # none | cosine (to 0 over the epochs) | step (×0.1 every half of the epochs)
    batch_size: int = 64
    epochs: int = 10
    val_split: float = 0.1
    early_stopping: int | None = None
    seed: int = 0
    dtype: str = "float32"
    out: str | None = None
    force: bool = False
    quiet: bool = False
    plots: bool = True

    def validate(self) -> TrainConfig:
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("schedule", self.schedule, ("none", "cosine", "step"))
        check_choice("loss", self.loss, LOSSES)
        check_choice("dtype", self.dtype, ("float32", "float64"))
        check_choice("activation", self.activation, ("relu", "leaky_relu", "tanh", "sigmoid"))
        check_positive("learning rate (--lr)", self.lr)
        check_positive("--weight-decay", self.weight_decay, allow_zero=True)
        check_positive("--momentum", self.momentum, allow_zero=True)
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"--dropout is the drop probability and must be in [0, 1), got {self.dropout}")
        if not 0.0 <= self.val_split < 1.0:
            raise ConfigError(f"--val-split must be in [0, 1), got {self.val_split}")
        if self.early_stopping is not None and (self.early_stopping < 1 or self.val_split == 0):
            raise ConfigError("--early-stopping needs a patience >= 1 and a validation split (--val-split > 0)")
        for name in ("batch_size", "epochs"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(self, name)}")
        if any(h < 1 for h in self.hidden):
            raise ConfigError(f"--hidden sizes must be positive integers, got {','.join(map(str, self.hidden))}")
        return self


@dataclass
class RunResult:
    out: Path
    model: Classifier
    history: list[EpochResult]
    test_loss: float
    test_accuracy: float
    metrics: dict[str, Any] = field(default_factory=dict)


def prepare_output(config: TrainConfig) -> Path:
    """The output folder, created now so that an unwritable place fails before training starts."""
    if config.out is None:
        stem = Path("runs") / f"{Path(config.dataset).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
        out, k = stem, 1
        while out.exists():
            k += 1
            out = Path(f"{stem}-{k}")
    else:
        out = Path(config.out)
        if out.exists() and not out.is_dir():
            raise ConfigError(f"--out {out} exists and is not a folder")
        if out.is_dir() and any(out.iterdir()) and not config.force:
            raise ConfigError(f"--out {out} exists and is not empty; choose another folder or pass --force "
                              "to overwrite the files of a run there")
        if out.is_dir():  # --force: the files of an earlier run go first, so that none is mixed with
            for name in RUN_FILES:  # this one's (a stale checkpoint would resume the old run)
                (out / name).unlink(missing_ok=True)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise ConfigError(f"cannot write to the output folder {out} ({err.strerror or err})") from None
    return out


def normalisation(X_train: NDArray, image: bool, dtype) -> tuple[float, NDArray, NDArray]:
    """``scale`` (the raw maximum, e.g. 255 or 16), then mean and std of ``X/scale``: one value for all
    pixels of images, one per feature otherwise (constant features keep std 1)."""
    scale = float(X_train.max()) if X_train.max() > 1 else 1.0
    # sums in float64 over blocks of rows: no float64 copy of the whole set (it would double the memory)
    total = np.zeros(X_train.shape[1])
    squares = np.zeros(X_train.shape[1])
    for start in range(0, len(X_train), 4096):
        block = X_train[start : start + 4096].astype(np.float64) / scale
        total += block.sum(axis=0)
        squares += np.einsum("ij,ij->j", block, block)
    n = len(X_train)
    if image:
        mean = total.sum() / (n * X_train.shape[1])
        var = squares.sum() / (n * X_train.shape[1]) - mean**2
        mean, std = np.full(X_train.shape[1], mean), np.full(X_train.shape[1], np.sqrt(max(var, 0.0)) or 1.0)
    else:
        mean = total / n
        std = np.sqrt(np.maximum(squares / n - mean**2, 0.0))
        std[std < 1e-8] = 1.0
    return scale, mean.astype(dtype), std.astype(dtype)


def build_model(config: TrainConfig, features: int, classes: int, rng: np.random.Generator) -> Sequential:
    dtype = np.dtype(config.dtype)
    output = "softmax" if config.loss == "cross_entropy" else "identity"
    if not config.hidden:
        return softmax_regression(features, classes, probabilities=output == "softmax", dtype=dtype)
    return mlp([features, *config.hidden, classes], config.activation, output=output, batchnorm=config.batchnorm,
               dropout=config.dropout, seed=rng, dtype=dtype)


def make_optimizer(config: TrainConfig, model: Sequential) -> Optimizer:
    params = model.parameters()
    wd = config.weight_decay
    if config.optimizer == "adam":
        return Adam(params, lr=config.lr, weight_decay=wd)
    if config.optimizer == "adamw":
        return AdamW(params, lr=config.lr, weight_decay=wd)
    momentum = config.momentum if config.optimizer in ("momentum", "nesterov") else 0.0
    return SGD(params, lr=config.lr, momentum=momentum, nesterov=config.optimizer == "nesterov", weight_decay=wd)


def make_scheduler(config: TrainConfig, optimizer: Optimizer):
    if config.schedule == "cosine":
        return CosineAnnealingLR(optimizer, config.epochs)
    if config.schedule == "step":
        return StepLR(optimizer, max(1, config.epochs // 2), 0.1)
    return None


def train(config: TrainConfig, dataset: Dataset | None = None, resume: bool = False) -> RunResult:
    """Run ``config`` end to end and write its outputs (progress bars go to standard error).

    A checkpoint is written after every epoch; ``resume=True`` continues the run in ``config.out`` from
    its checkpoint. Ctrl-C (SIGINT) or SIGTERM stops the run with a :class:`RunInterrupted` that says how
    to resume. A run that fails before its first checkpoint removes the output folder it created, so no
    partial output is left behind; after that, the last good checkpoint stays.
    """
    config.validate()
    existed = config.out is not None and Path(config.out).exists()
    out = Path(config.out) if resume else prepare_output(config)
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if _main_thread() else None
    try:
        return _train(config, dataset, out, resume)
    except (KeyboardInterrupt, _Terminated) as stop:
        how = "SIGTERM" if isinstance(stop, _Terminated) else "Ctrl-C"
        checkpoint = out / NAME
        if not checkpoint.exists():
            if not existed:
                shutil.rmtree(out, ignore_errors=True)
            raise RunInterrupted(f"interrupted ({how}) before the first epoch ended; nothing was saved") from None
        raise RunInterrupted(f"interrupted ({how}); the run is saved up to its last finished epoch in {out}: "
                             f"continue it with `chainrule train --resume {out}`") from None
    except BaseException:
        if not existed and not (out / NAME).exists():
            shutil.rmtree(out, ignore_errors=True)
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


class RunInterrupted(ChainruleError):
    """A run stopped by Ctrl-C or SIGTERM; exit code 130 like a shell's for SIGINT."""

    exit_code = 130


class _Terminated(Exception):
    pass


def _raise_terminated(signum, frame) -> None:
    raise _Terminated()


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()  # signal handlers only go there


def config_from_checkpoint(folder: str | Path) -> TrainConfig:
    """The configuration of the run saved in ``folder`` (for ``chainrule train --resume``)."""
    folder = Path(folder)
    if not (folder / NAME).is_file():
        raise ConfigError(f"--resume {folder}: no {NAME} there; a run writes one after every epoch")
    stored = read_checkpoint_config(folder)
    try:
        config = TrainConfig(**{**stored, "hidden": tuple(stored["hidden"]), "out": str(folder), "force": True})
    except TypeError as err:
        raise DataError(f"{folder / NAME}: a configuration this chainrule does not know ({err})") from None
    return config.validate()


def _train(config: TrainConfig, dataset: Dataset | None, out: Path, resume: bool) -> RunResult:
    if dataset is None:
        dataset = load_dataset(config.dataset, config.data_dir, progress=not config.quiet)
    _check_finite(dataset)
    seeds = np.random.SeedSequence(config.seed).spawn(3)
    split_rng, model_rng, shuffle_rng = (np.random.default_rng(s) for s in seeds)
    dtype = np.dtype(config.dtype)
    scale, mean, std = normalisation(dataset.X_train, dataset.image_shape is not None, dtype)

    def prepare(raw: NDArray) -> NDArray:  # in place after one cast: no full-size temporaries
        X = raw.astype(dtype)
        X /= dtype.type(scale)
        X -= mean
        X /= std
        return X

    order = split_rng.permutation(len(dataset.X_train))
    n_val = int(round(len(order) * config.val_split))
    val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
    X_train, y_train = prepare(dataset.X_train[train_idx]), dataset.y_train[train_idx]
    validation = (prepare(dataset.X_train[val_idx]), dataset.y_train[val_idx]) if n_val else None
    X_test, y_test = prepare(dataset.X_test), dataset.y_test
    classes = len(dataset.classes)
    targets = (lambda y: np.eye(classes, dtype=dtype)[y]) if config.loss == "mse" else (lambda y: y)  # noqa: E731
    model = build_model(config, dataset.features, classes, model_rng)
    loss = make_loss(config.loss, "half_mean" if config.loss == "mse" else "mean")
    optimizer = make_optimizer(config, model)
    scheduler = make_scheduler(config, optimizer)

    _check_free_space(out, model)
    stored_config = {**asdict(config), "hidden": list(config.hidden), "out": None, "force": False}
    state = restore_checkpoint(out, model, optimizer, scheduler) if resume else FitState(shuffle_rng)

    def checkpoint(state: FitState) -> None:
        save_checkpoint(out, model, optimizer, scheduler, state, stored_config)
        so_far = {"config": stored_config, "status": "running", "epochs": _epochs_json(state.history.epochs)}
        atomic_write(out / "metrics.json", lambda f: f.write(json.dumps(so_far, indent=2).encode()))

    log = _Progress(config, len(X_train), first_epoch=state.epoch + 1)
    log.start(dataset, model, out, resumed_after=state.epoch if resume else None)
    # Overflow on the way to a NaN loss would print NumPy warnings; the loss check says it better.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        history = fit(model, loss, optimizer, X_train, targets(y_train), epochs=config.epochs,
                      batch_size=config.batch_size, state=state,
                      validation=(validation[0], targets(validation[1])) if validation else None,
                      early_stopping=config.early_stopping, scheduler=scheduler, on_batch=log.batch,
                      on_epoch=log.epoch, on_checkpoint=checkpoint, classify=True)
    test_loss, test_accuracy = evaluate(model, loss, X_test, targets(y_test), classify=True)
    fill = 1.0
    if dataset.image_shape is not None:
        fill = frame_fill(dataset.X_train[:1000].reshape(-1, *dataset.image_shape))
    classifier = Classifier(model.eval(), mean, std, scale, dataset.classes, dataset.image_shape, fill)
    save_model(classifier, out / "model.npz")
    metrics = {
        "config": stored_config,
        "status": "finished",
        "dataset": {"name": dataset.name, "source": dataset.source, "train": len(X_train),
                    "validation": n_val, "test": len(X_test), "features": dataset.features,
                    "classes": list(dataset.classes)},
        "model": repr(model),
        "epochs": _epochs_json(history.epochs),
        "best_epoch": history.best_epoch,
        "stopped_early": history.stopped_early,
        "test_loss": test_loss,
        "test_accuracy": test_accuracy,
    }
    atomic_write(out / "metrics.json", lambda f: f.write(json.dumps(metrics, indent=2).encode()))
    result = RunResult(out, classifier, history.epochs, test_loss, test_accuracy, metrics)
    if config.plots:
        from chainrule.plots import plot_run

        plot_run(result, dataset.X_test, y_test)
    log.finish(result)
    return result


def _epochs_json(epochs: list[EpochResult]) -> list[dict[str, Any]]:
    """The epochs as metrics.json lists them: ``epoch``, ``train_loss``, ``train_accuracy``, ``val_loss``,
    ``val_accuracy``, ``seconds``."""
    return [{"epoch": e.epoch, "train_loss": e.loss, "train_accuracy": e.accuracy, "val_loss": e.val_loss,
             "val_accuracy": e.val_accuracy, "seconds": e.seconds} for e in epochs]


def _check_free_space(out: Path, model: Sequential) -> None:
    """Refuse to start when the output folder cannot hold what the run will write: the model, a
    checkpoint (weights, optimizer moments, best weights: about five copies) and the plots."""
    weights = sum(a.nbytes for a in model_arrays(model))
    needed = 6 * weights + 5 * 2**20
    free = shutil.disk_usage(out).free
    if free < needed:
        raise ConfigError(f"the output folder {out} has {free / 2**20:.1f} MB free; this run needs about "
                          f"{needed / 2**20:.1f} MB for its model, checkpoints and plots")


def _check_finite(dataset: Dataset) -> None:
    for name in ("X_train", "X_test"):
        X = getattr(dataset, name)
        if X.dtype.kind == "f" and not np.all(np.isfinite(X)):
            rows = np.unique(np.argwhere(~np.isfinite(X))[:, 0])
            raise DataError(f"{dataset.name}: {name} contains NaN or inf (rows {rows[:5].tolist()}"
                            f"{'…' if len(rows) > 5 else ''}); refusing to train on it")


class _Progress:
    """A progress bar per epoch (tqdm, on standard error) and a one-line summary per epoch; only the
    final summary under ``--quiet``."""

    def __init__(self, config: TrainConfig, rows: int, first_epoch: int = 1) -> None:
        self.config, self.rows, self.bar = config, rows, None
        self.current, self.last = first_epoch, 0  # the epoch under way, rows done in it

    def start(self, dataset: Dataset, model: Sequential, out: Path, resumed_after: int | None = None) -> None:
        if self.config.quiet:
            return
        if resumed_after is not None:
            print(f"resuming the run in {out} after epoch {resumed_after} of {self.config.epochs}")
        print(f"dataset {dataset.name}: {len(dataset.X_train)} train / {len(dataset.X_test)} test examples, "
              f"{dataset.features} features, {len(dataset.classes)} classes ({dataset.source})")
        layers = " → ".join(repr(layer).replace("()", "") for layer in model.layers)
        print(f"model: {layers}; {self.config.optimizer} lr {self.config.lr:g}, batch {self.config.batch_size}, "
              f"{self.config.epochs} epochs; writing to {out}")

    def batch(self, done: int, loss: float, accuracy: float | None) -> None:
        if self.config.quiet:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=self.rows, desc=f"epoch {self.current}/{self.config.epochs}", unit="ex",
                            leave=False, file=sys.stderr, dynamic_ncols=True, mininterval=0.2,
                            disable=None)  # no bar when standard error is not a terminal
            self.last = 0
        self.bar.update(done - self.last)
        self.last = done
        if done == self.rows or self.bar.n % (self.config.batch_size * 20) < self.config.batch_size:
            self.bar.set_postfix(loss=f"{loss:.4f}", acc=f"{accuracy:.3f}" if accuracy is not None else "-",
                                 refresh=False)

    def epoch(self, result: EpochResult) -> None:
        self.current += 1
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.config.quiet:
            return
        val = (f"  val loss {result.val_loss:.4f} acc {result.val_accuracy:.4f}"
               if result.val_loss is not None else "")
        print(f"epoch {result.epoch:>3}/{self.config.epochs}  train loss {result.loss:.4f} acc "
              f"{result.accuracy:.4f}{val}  {result.seconds:.1f}s", flush=True)

    def finish(self, result: RunResult) -> None:
        epochs = len(result.history)
        seconds = sum(e.seconds for e in result.history)
        early = f" (stopped early, best epoch {result.metrics['best_epoch']})" if result.metrics["stopped_early"] else ""
        written = "model, metrics and plots" if self.config.plots else "model and metrics"
        print(f"test accuracy {result.test_accuracy:.4f} after {epochs} epochs{early} in {seconds:.1f}s; "
              f"{written} in {result.out}")

