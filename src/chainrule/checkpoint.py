"""Checkpoints of a training run: written after every epoch, atomically, and read back without pickle.

A checkpoint (``checkpoint.npz`` in the run's folder) holds the model's parameters and buffers, the
optimizer's state (momentum buffers, Adam's moments and step count, the learning rate), the scheduler's
epoch, the random streams (batch order and dropout masks), the early-stopping bookkeeping, the history of
the finished epochs and the run's configuration. Restoring all of it makes ``chainrule train --resume``
reach the same weights, bit for bit, as a run that was never stopped.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from chainrule.errors import DataError
from chainrule.io import _read_archive, atomic_write
from chainrule.module import Module
from chainrule.optim import SGD, Adam, Optimizer
from chainrule.train import EpochResult, FitState, History, model_arrays

FORMAT = "chainrule-checkpoint"
VERSION = 1
NAME = "checkpoint.npz"


def _generators(model: Module) -> list[np.random.Generator]:
    """The distinct random generators inside ``model`` (Dropout's), in a fixed order."""
    seen: dict[int, np.random.Generator] = {}
    for m in model.modules():
        rng = getattr(m, "rng", None)
        if isinstance(rng, np.random.Generator):
            seen.setdefault(id(rng), rng)
    return list(seen.values())


def save_checkpoint(folder: Path, model: Module, optimizer: Optimizer, scheduler, state: FitState,
                    config: dict[str, Any]) -> Path:
    arrays: dict[str, np.ndarray] = {f"model.{i}": a for i, a in enumerate(model_arrays(model))}
    for k in range(len(optimizer.params)):
        for name, value in optimizer.param_state(k).items():
            arrays[f"optimizer.{k}.{name}"] = value
    for i, a in enumerate(state.best_state or []):
        arrays[f"best.{i}"] = a
    meta = {
        "format": FORMAT, "version": VERSION, "config": config, "epoch": state.epoch,
        "history": [asdict(e) for e in state.history.epochs], "best_epoch": state.history.best_epoch,
        "stopped_early": state.history.stopped_early,
        "best_loss": state.best_loss if np.isfinite(state.best_loss) else None, "waited": state.waited,
        "optimizer": {"steps": optimizer.steps, "lr": optimizer.lr},
        "scheduler": {"epoch": scheduler.epoch} if scheduler is not None else None,
        "rng": {"batches": state.rng.bit_generator.state,
                "model": [g.bit_generator.state for g in _generators(model)]},
    }
    arrays["meta"] = np.array(json.dumps(meta))
    path = folder / NAME
    atomic_write(path, lambda f: np.savez(f, **arrays))
    return path


def read_checkpoint_config(folder: Path) -> dict[str, Any]:
    """The configuration stored in the checkpoint of ``folder`` (to rebuild the run before restoring)."""
    return _meta(folder / NAME, _read_archive(folder / NAME))["config"]


def restore_checkpoint(folder: Path, model: Module, optimizer: Optimizer, scheduler) -> FitState:
    """Put the checkpoint of ``folder`` into a freshly built ``model``, ``optimizer`` and ``scheduler``
    (built from the same configuration), and return the :class:`FitState` to continue from."""
    path = folder / NAME
    arrays = _read_archive(path)
    meta = _meta(path, arrays)
    targets = model_arrays(model)
    expected = {f"model.{i}": a for i, a in enumerate(targets)}
    names = ("m", "v") if isinstance(optimizer, Adam) else ("v",) if isinstance(optimizer, SGD) and optimizer.momentum else ()
    for k, p in enumerate(optimizer.params):
        for name in names:
            expected[f"optimizer.{k}.{name}"] = p.data
    has_best = any(k.startswith("best.") for k in arrays)
    best = [f"best.{i}" for i in range(len(targets))] if has_best else []
    expected.update({key: targets[i] for i, key in enumerate(best)})
    problems = sorted(set(arrays) ^ set(expected))
    if problems:
        raise DataError(f"{path}: the checkpoint does not match the run's model and optimizer ({', '.join(problems[:4])})")
    for key, like in expected.items():
        value = arrays[key]
        if value.shape != like.shape or value.dtype.kind != "f" or not np.all(np.isfinite(value)):
            raise DataError(f"{path}: {key} has shape {value.shape} and dtype {value.dtype}; expected finite "
                            f"floats of shape {like.shape}")
    for i, target in enumerate(targets):
        target[...] = arrays[f"model.{i}"]
    try:
        for k in range(len(optimizer.params)):
            if isinstance(optimizer, Adam):
                optimizer.m[k][...] = arrays[f"optimizer.{k}.m"]
                optimizer.v[k][...] = arrays[f"optimizer.{k}.v"]
            elif names:
                optimizer.buffers[k] = arrays[f"optimizer.{k}.v"].astype(optimizer.params[k].data.dtype)
        optimizer.steps = int(meta["optimizer"]["steps"])
        optimizer.lr = float(meta["optimizer"]["lr"])
        if scheduler is not None:
            scheduler.epoch = int(meta["scheduler"]["epoch"])
        generators = _generators(model)
        if len(generators) != len(meta["rng"]["model"]):
            raise ValueError("a different number of random streams")
        for g, saved in zip(generators, meta["rng"]["model"], strict=True):
            g.bit_generator.state = saved
        rng = np.random.default_rng()
        rng.bit_generator.state = meta["rng"]["batches"]
        history = History([EpochResult(**e) for e in meta["history"]], meta["best_epoch"], bool(meta["stopped_early"]))
        state = FitState(rng, int(meta["epoch"]), history,
                         float(meta["best_loss"]) if meta["best_loss"] is not None else float("inf"),
                         [arrays[k].astype(targets[i].dtype) for i, k in enumerate(best)] or None, int(meta["waited"]))
    except (KeyError, TypeError, ValueError) as err:
        raise DataError(f"{path}: an incomplete or inconsistent checkpoint ({err})") from None
    if state.epoch != len(history.epochs):
        raise DataError(f"{path}: the checkpoint says epoch {state.epoch} but holds {len(history.epochs)} epochs")
    return state


def _meta(path: Path, arrays: dict) -> dict[str, Any]:
    try:
        meta = json.loads(str(arrays.pop("meta")[()]))
    except (KeyError, ValueError, TypeError, IndexError):
        raise DataError(f"{path}: not a chainrule checkpoint (no readable 'meta' record)") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise DataError(f"{path}: not a chainrule checkpoint of version {VERSION}")
    if not isinstance(meta.get("config"), dict):
        raise DataError(f"{path}: the checkpoint has no run configuration")
    return meta
