"""The training application: real data in, a trained model and its report out (``chainrule train``).

* :mod:`~chainrule.training.config`: :class:`TrainConfig`, whose fields are ``chainrule train``'s options;
* :mod:`~chainrule.training.run`: a whole run (:func:`train`): data, model, loop, output folder, signals;
* :mod:`~chainrule.training.loop`: the epoch loop (:func:`fit`, ``evaluate``), early stopping;
* :mod:`~chainrule.training.checkpoint`: a checkpoint after every epoch, and ``--resume``;
* :mod:`~chainrule.training.classifier` and :mod:`~chainrule.training.modelfile`: the trained model with
  its input normalisation, and its file;
* :mod:`~chainrule.training.data` (datasets), :mod:`~chainrule.training.images` (pictures for
  ``predict``), :mod:`~chainrule.training.plots`, :mod:`~chainrule.training.progress`.

The names below are imported when first used, so that the command line can read :class:`TrainConfig`
without loading NumPy.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "TrainConfig": "config",
    "train": "run",
    "RunResult": "run",
    "RunInterrupted": "run",
    "fit": "loop",
    "evaluate": "loop",
    "History": "loop",
    "EpochResult": "loop",
    "TrainingError": "loop",
    "Classifier": "classifier",
    "load_model": "modelfile",
    "save_model": "modelfile",
    "load_dataset": "data",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"chainrule.training.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'chainrule.training' has no attribute {name!r}")
