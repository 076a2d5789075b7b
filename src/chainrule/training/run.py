"""A whole ``chainrule train`` run: data, model, :func:`~chainrule.training.loop.fit`, and what it leaves.

A run writes into its output folder: ``model.npz`` (see :mod:`~chainrule.training.modelfile`) and its
model card ``README.md`` (:mod:`~chainrule.training.card`), ``report.html`` (:mod:`~chainrule.training.report`),
``metrics.json`` (the configuration, every epoch's numbers, the test accuracy), ``checkpoint.npz`` after
every epoch (see :mod:`~chainrule.training.checkpoint`; ``--resume`` continues from it) and PNG plots
(learning curves, confusion matrix, first-layer weights as images, the most confidently wrong test
examples). The same seed gives the same numbers.
"""

from __future__ import annotations

import json
import shutil
import signal
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from chainrule import archive
from chainrule.archive import atomic_write
from chainrule.errors import ChainruleError, ConfigError, DataError, MissingPackage, WriteError
from chainrule.i18n import _
from chainrule.losses import Loss
from chainrule.network import Sequential, mlp, softmax_regression
from chainrule.optim import CosineAnnealingLR, Optimizer, StepLR, make_optimizer
from chainrule.registry import LOSSES
from chainrule.signals import ignore_interrupts
from chainrule.training import card
from chainrule.training.checkpoint import NAME, read_checkpoint, restore_checkpoint, save_checkpoint
from chainrule.training.classifier import Classifier, as_dtype, normalisation
from chainrule.training.config import TrainConfig
from chainrule.training.data import Dataset, check_dataset, check_memory, load_dataset
from chainrule.training.images import frame_fill
from chainrule.training.loop import EpochResult, FitState, evaluate, fit
from chainrule.training.modelfile import save_model
from chainrule.training.progress import Progress
from chainrule.training.runfolder import RunFolder


@dataclass
class RunResult:
    out: Path
    model: Classifier
    history: list[EpochResult]
    test_loss: float
    test_accuracy: float
    metrics: dict[str, Any] = field(default_factory=dict)


# -- what a configuration builds ------------------------------------------------------------------------
def build_loss(config: TrainConfig) -> Loss:
    """The loss, at the scale where its gradient is ``(Ŷ − Y)/n`` (``1/(2n)`` for MSE)."""
    cls = LOSSES[config.loss].cls
    return cls(scale=cls.delta_scale or "mean")


def build_model(config: TrainConfig, features: int, classes: int, rng: np.random.Generator) -> Sequential:
    """An MLP (softmax regression without hidden layers) ending in what the loss expects: logits, or the
    activation of a loss on probabilities (a softmax before cross-entropy)."""
    dtype = np.dtype(config.dtype)
    output = LOSSES[config.loss].cls.after or "identity"
    if not config.hidden:
        return softmax_regression(features, classes, probabilities=output == "softmax", dtype=dtype)
    return mlp(
        [features, *config.hidden, classes],
        config.activation,
        output=output,
        batchnorm=config.batchnorm,
        layernorm=config.layernorm,
        dropout=config.dropout,
        seed=rng,
        dtype=dtype,
    )


def build_optimizer(config: TrainConfig, model: Sequential) -> Optimizer:
    return make_optimizer(config.optimizer, model.parameters(), **config.optimizer_settings())


def build_scheduler(config: TrainConfig, optimizer: Optimizer):
    if config.schedule == "cosine":
        return CosineAnnealingLR(optimizer, config.epochs)
    if config.schedule == "step":
        return StepLR(optimizer, max(1, config.epochs // 2), 0.1)
    return None


# -- the run ------------------------------------------------------------------------------------------------
def train(config: TrainConfig, dataset: Dataset | None = None, resume: bool = False) -> RunResult:
    """Run ``config`` end to end and write its outputs (progress bars go to standard error).

    A checkpoint is written after every epoch; ``resume=True`` continues the run in ``config.out`` from
    its checkpoint. Ctrl-C (SIGINT) or SIGTERM stops the run with a :class:`RunInterrupted` that says how
    to resume. The output folder is locked for the run (a second run into it is refused); with ``--force``
    the files of an earlier run there are removed only once the data are loaded and checked. A run that
    fails before its first checkpoint removes the output folder it created, so no partial output is left
    behind; after that, the last good checkpoint stays.
    """
    config.validate()
    folder = RunFolder.open(config, resume)
    previous = (
        (signal.getsignal(signal.SIGINT), signal.signal(signal.SIGTERM, _raise_terminated)) if _main_thread() else None
    )
    try:
        return _train(config, dataset, folder, resume)
    except (KeyboardInterrupt, _Terminated) as stop:
        ignore_interrupts()  # a second Ctrl-C while this one is handled would interrupt the handling
        how = "SIGTERM" if isinstance(stop, _Terminated) else "Ctrl-C"
        out = folder.path
        if not (out / NAME).exists():
            if folder.discard():
                message = _(
                    "interrupted ({how}) before the first epoch ended; nothing was saved, and the earlier run in "
                    "{out} is as it was"
                )
            else:
                message = _("interrupted ({how}) before the first epoch ended; nothing was saved")
            raise RunInterrupted(message.format(how=how, out=out)) from None
        if config.force and not resume and not folder.cleared:
            raise RunInterrupted(
                _("interrupted ({how}) before the run started; the files in {out} are as they were").format(
                    how=how, out=out
                )
            ) from None
        raise RunInterrupted(
            _(
                "interrupted ({how}); the run is saved up to its last finished epoch in {out}: continue it with "
                "`chainrule train --resume {out}`"
            ).format(how=how, out=out)
        ) from None
    except WriteError as err:  # a full disk mid-run: the last checkpoint is whole (written atomically)
        if not (folder.path / NAME).exists():
            folder.discard()
            raise
        raise WriteError(
            _(
                "{error}; the run is saved up to its last finished epoch in {out}: make room and continue it with "
                "`chainrule train --resume {out}`"
            ).format(error=err, out=folder.path)
        ) from None
    except BaseException:
        if not (folder.path / NAME).exists():
            folder.discard()
        raise
    finally:
        folder.release()
        if previous is not None:  # as they were: a caller in Python (a notebook) keeps its Ctrl-C
            signal.signal(signal.SIGINT, previous[0])
            signal.signal(signal.SIGTERM, previous[1])


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
        raise ConfigError(
            _("--resume {folder}: no {name} there; a run writes one after every epoch").format(folder=folder, name=NAME)
        )
    doc = read_checkpoint(folder)
    path = folder / NAME
    try:
        config = TrainConfig.from_dict({**doc["config"], "out": str(folder), "force": True})
    except TypeError as err:
        raise DataError(
            _("{path}: a configuration this chainrule does not know ({error})").format(path=path, error=err)
        ) from None
    config.validate()
    # The model is built from the configuration before the arrays are put in: what the configuration
    # declares must fit the arrays first (a hand-edited hidden size of 10¹¹ would be built, then refused).
    arrays = doc.get("model")
    if not isinstance(arrays, dict) or not arrays:
        raise DataError(_("{path}: the checkpoint holds no model arrays").format(path=path))
    archive.require_finite(path, arrays, "model.")
    largest = max(max(a.shape, default=1) for a in arrays.values())
    if any(size > largest for size in config.hidden):
        raise DataError(
            _(
                "{path}: its configuration declares hidden layers of {hidden}, but its arrays are at most {largest} "
                "long"
            ).format(path=path, hidden=",".join(map(str, config.hidden)), largest=largest)
        )
    return config


def _train(config: TrainConfig, dataset: Dataset | None, folder: RunFolder, resume: bool) -> RunResult:
    out = folder.path
    if dataset is None:
        dataset = load_dataset(config.dataset, config.data_dir, progress=not config.quiet, label=config.label)
    else:  # one given in Python: the checks load_dataset makes
        check_dataset(dataset)
    seeds = np.random.SeedSequence(config.seed).spawn(3)
    split_rng, model_rng, shuffle_rng = (np.random.default_rng(s) for s in seeds)
    dtype = np.dtype(config.dtype)
    scale, mean, std = normalisation(dataset.X_train, dataset.image_shape is not None, dtype)

    def prepare(raw: NDArray) -> NDArray:  # in place after one cast: no full-size temporaries
        X = as_dtype(raw, dtype, _("{dataset}: the features").format(dataset=dataset.name))
        X /= dtype.type(scale)
        X -= mean
        X /= std
        return X

    loss = build_loss(config)
    one_hot = loss.target_kind == "values"  # a regression loss (MSE) on class labels: one-hot rows
    classes = len(dataset.classes)
    check_memory(dataset, dtype, classes if one_hot else 0)
    order = split_rng.permutation(len(dataset.X_train))
    n_val = round(len(order) * config.val_split)
    val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
    X_train, y_train = prepare(dataset.X_train[train_idx]), dataset.y_train[train_idx]
    validation = (prepare(dataset.X_train[val_idx]), dataset.y_train[val_idx]) if n_val else None
    X_test, y_test = prepare(dataset.X_test), dataset.y_test

    def targets(y: NDArray) -> NDArray:
        if not one_hot:
            return y
        rows = np.zeros((len(y), classes), dtype)
        rows[np.arange(len(y)), y] = 1
        return rows

    try:
        model = build_model(config, dataset.features, classes, model_rng)
    except MemoryError:
        raise ConfigError(
            _("a network of {sizes} does not fit in this machine's memory (--hidden)").format(
                sizes="-".join(map(str, (dataset.features, *config.hidden, classes)))
            )
        ) from None
    optimizer = build_optimizer(config, model)
    settings = optimizer.config()  # as built: the schedule changes lr as it goes
    scheduler = build_scheduler(config, optimizer)

    _check_free_space(out, model, freed=sum(p.stat().st_size for p in folder.earlier_run() if p.is_file()))
    if not resume:
        folder.clear_earlier_run()
    stored_config = {**config.to_dict(), "out": None, "force": False}
    state = (
        restore_checkpoint(read_checkpoint(out), out, model, optimizer, scheduler) if resume else FitState(shuffle_rng)
    )
    if resume and scheduler is not None:  # the rate of the schedule as planned now: a run extended by
        optimizer.lr = scheduler.rate(scheduler.last_epoch)  # --epochs does not keep a finished run's 0

    def checkpoint(state: FitState) -> None:
        save_checkpoint(out, model, optimizer, scheduler, state, stored_config)
        folder.keep_new_run()
        so_far = {"config": stored_config, "status": "running", "epochs": _epochs_json(state.history.epochs)}
        _write_json(out / "metrics.json", so_far)

    log = Progress(config, len(X_train), first_epoch=state.epoch + 1)
    log.start(dataset, model, optimizer, out, resumed_after=state.epoch if resume else None)
    # Overflow on the way to a NaN loss would print NumPy warnings; the loss check says it better.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        history = fit(
            model,
            loss,
            optimizer,
            X_train,
            targets(y_train),
            epochs=config.epochs,
            batch_size=config.batch_size,
            state=state,
            validation=(validation[0], targets(validation[1])) if validation else None,
            early_stopping=config.early_stopping,
            scheduler=scheduler,
            on_batch=log.batch,
            on_epoch=log.epoch,
            on_checkpoint=checkpoint,
            classify=True,
        )
    test_loss, test_accuracy = evaluate(model, loss, X_test, targets(y_test), classify=True)
    fill = 1.0
    if dataset.image_shape is not None:
        fill = frame_fill(dataset.X_train[:1000].reshape(-1, *dataset.image_shape))
    classifier = Classifier(model.eval(), mean, std, scale, dataset.classes, dataset.image_shape, fill)
    save_model(classifier, out / "model.npz")
    metrics = {
        "config": stored_config,
        "status": "finished",
        "dataset": {
            "name": dataset.name,
            "source": dataset.source,
            "train": len(X_train),
            "validation": n_val,
            "test": len(X_test),
            "features": dataset.features,
            "classes": list(dataset.classes),
        },
        "model": repr(model),
        "optimizer": {"name": config.optimizer, **settings},
        "epochs": _epochs_json(history.epochs),
        "best_epoch": history.best_epoch,
        "stopped_early": history.stopped_early,
        "test_loss": test_loss,
        "test_accuracy": test_accuracy,
    }
    _write_json(out / "metrics.json", metrics)
    result = RunResult(out, classifier, history.epochs, test_loss, test_accuracy, metrics)
    _write_card(result, config, dataset)
    plots = []
    if config.plots:
        from chainrule.training.plots import plot_run

        plots = plot_run(result, dataset.X_test, y_test)
    from chainrule.training.report import write_report

    write_report(result, plots)
    log.finish(result)
    return result


def _write_card(result: RunResult, config: TrainConfig, dataset: Dataset) -> None:
    """The model card, or a note on standard error saying why there is none (the run itself succeeded)."""
    try:
        written = card.write_card(result, config, dataset)
    except MissingPackage as err:
        written, why = None, str(err)
    else:
        why = _("{path} is not a card chainrule wrote; it is left as it is").format(path=result.out / card.NAME)
    if written is None:
        print(_("chainrule: note: no model card: {why}").format(why=why), file=sys.stderr)


def _write_json(path: Path, value: dict[str, Any]) -> None:
    atomic_write(path, lambda f: f.write(json.dumps(value, indent=2).encode()))


def _epochs_json(epochs: list[EpochResult]) -> list[dict[str, Any]]:
    """The epochs as metrics.json lists them: ``epoch``, ``train_loss``, ``train_accuracy``, ``val_loss``,
    ``val_accuracy``, ``seconds``."""
    return [
        {
            "epoch": e.epoch,
            "train_loss": e.loss,
            "train_accuracy": e.accuracy,
            "val_loss": e.val_loss,
            "val_accuracy": e.val_accuracy,
            "seconds": e.seconds,
        }
        for e in epochs
    ]


def _check_free_space(out: Path, model: Sequential, freed: int = 0) -> None:
    """Refuse to start when the output folder cannot hold what the run will write: the model, a
    checkpoint (weights, optimizer moments, best weights: about five copies) and the plots; ``freed``
    bytes of an earlier run's files are about to be removed."""
    weights = sum(a.nbytes for a in model.state_dict().values())
    needed = 6 * weights + 5 * 2**20
    free = shutil.disk_usage(out).free + freed
    if free < needed:
        raise ConfigError(
            _(
                "the output folder {out} has {free:.1f} MB free; this run needs about {needed:.1f} MB for its "
                "model, checkpoints and plots"
            ).format(out=out, free=free / 2**20, needed=needed / 2**20)
        )
