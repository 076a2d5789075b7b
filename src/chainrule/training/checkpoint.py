"""Checkpoints of a training run: written after every epoch, atomically, and read back without pickle.

A checkpoint (``checkpoint.npz`` in the run's folder, see :mod:`chainrule.archive`) holds the state dicts
of the model, the optimizer and the schedule, the random streams (batch order and dropout masks), where
the run stands (:class:`~chainrule.training.loop.FitState`: epoch, history, early-stopping bookkeeping
and best weights) and the run's configuration. Restoring all of it makes ``chainrule train --resume``
reach the same weights, bit for bit, as a run that was never stopped.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from chainrule import archive
from chainrule.errors import DataError
from chainrule.i18n import N_, _
from chainrule.module import Module
from chainrule.optim import Optimizer
from chainrule.training.loop import EpochResult, FitState, History

FORMAT = "chainrule-checkpoint"
VERSION = 2
NAME = "checkpoint.npz"
WHAT = N_("chainrule checkpoint")


def _generators(model: Module) -> list[np.random.Generator]:
    """The distinct random generators inside ``model`` (Dropout's), in a fixed order."""
    seen: dict[int, np.random.Generator] = {}
    for m in model.modules():
        rng = getattr(m, "rng", None)
        if isinstance(rng, np.random.Generator):
            seen.setdefault(id(rng), rng)
    return list(seen.values())


def save_checkpoint(
    folder: Path, model: Module, optimizer: Optimizer, scheduler, state: FitState, config: dict[str, Any]
) -> Path:
    path = folder / NAME
    archive.save(
        path,
        {
            "format": FORMAT,
            "version": VERSION,
            "config": config,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "fit": {
                "epoch": state.epoch,
                "history": [asdict(e) for e in state.history.epochs],
                "best_epoch": state.history.best_epoch,
                "stopped_early": state.history.stopped_early,
                "best_loss": state.best_loss if np.isfinite(state.best_loss) else None,
                "waited": state.waited,
                "best_state": state.best_state,
            },
            "rng": {
                "batches": state.rng.bit_generator.state,
                "model": [g.bit_generator.state for g in _generators(model)],
            },
        },
    )
    return path


def read_checkpoint(folder: Path) -> dict[str, Any]:
    """The checkpoint of ``folder`` as a document (its ``config`` rebuilds the run before restoring)."""
    path = folder / NAME
    doc = archive.load(path, FORMAT, WHAT)
    if doc.get("version") != VERSION:
        raise DataError(
            _(
                "{path}: a checkpoint of version {version!r}, written by another chainrule; this one resumes "
                "version {expected}: start the run again"
            ).format(path=path, version=doc.get("version"), expected=VERSION)
        )
    if not isinstance(doc.get("config"), dict):
        raise DataError(_("{path}: the checkpoint has no run configuration").format(path=path))
    return doc


def restore_checkpoint(doc: dict[str, Any], folder: Path, model: Module, optimizer: Optimizer, scheduler) -> FitState:
    """Put the checkpoint ``doc`` of ``folder`` into a freshly built ``model``, ``optimizer`` and
    ``scheduler`` (built from its configuration), and return the :class:`FitState` to continue from."""
    path = folder / NAME
    try:
        fit = doc["fit"]
        best = fit["best_state"]
        archive.require_finite(path, doc["model"], "model.")
        for k, state in doc["optimizer"]["state"].items():
            archive.require_finite(path, {n: v for n, v in state.items() if n != "step"}, f"optimizer.state.{k}.")
        model.load_state_dict(doc["model"])
        optimizer.load_state_dict(doc["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(doc["scheduler"])
        if best is not None:
            archive.require_finite(path, best, "fit.best_state.")
            own = model.state_dict()
            if best.keys() != own.keys() or any(best[k].shape != own[k].shape for k in own):
                raise ValueError("the best weights are of another model")
            best = {k: v.astype(own[k].dtype) for k, v in best.items()}
        generators = _generators(model)
        if len(generators) != len(doc["rng"]["model"]):
            raise ValueError("a different number of random streams")
        for g, saved in zip(generators, doc["rng"]["model"], strict=True):
            g.bit_generator.state = saved
        rng = np.random.default_rng()
        rng.bit_generator.state = doc["rng"]["batches"]
        history = History([EpochResult(**e) for e in fit["history"]], fit["best_epoch"], bool(fit["stopped_early"]))
        best_loss = float(fit["best_loss"]) if fit["best_loss"] is not None else float("inf")
        state = FitState(rng, int(fit["epoch"]), history, best_loss, best, int(fit["waited"]))
    except DataError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as err:  # ConfigError, ShapeError are ValueErrors
        raise DataError(
            _("{path}: the checkpoint does not match the run's model and optimizer ({error})").format(
                path=path, error=err
            )
        ) from None
    if state.epoch != len(history.epochs):
        raise DataError(
            _("{path}: the checkpoint says epoch {epoch} but holds {held} epochs").format(
                path=path, epoch=state.epoch, held=len(history.epochs)
            )
        )
    return state
