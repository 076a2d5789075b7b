"""What a training run prints: a progress bar per epoch (tqdm, on standard error) and a line per epoch."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from chainrule.training.config import TrainConfig
from chainrule.training.data import Dataset
from chainrule.training.loop import EpochResult

if TYPE_CHECKING:
    from chainrule.network import Sequential
    from chainrule.optim import Optimizer
    from chainrule.training.run import RunResult


class Progress:
    """A progress bar per epoch (tqdm, on standard error) and a one-line summary per epoch; only the
    final summary under ``--quiet``."""

    def __init__(self, config: TrainConfig, rows: int, first_epoch: int = 1) -> None:
        self.config, self.rows, self.bar = config, rows, None
        self.current, self.last = first_epoch, 0  # the epoch under way, rows done in it

    def start(
        self, dataset: Dataset, model: Sequential, optimizer: Optimizer, out: Path, resumed_after: int | None = None
    ) -> None:
        if self.config.quiet:
            return
        if resumed_after is not None:
            print(f"resuming the run in {out} after epoch {resumed_after} of {self.config.epochs}")
        print(
            f"dataset {dataset.name}: {len(dataset.X_train)} train / {len(dataset.X_test)} test examples, "
            f"{dataset.features} features, {len(dataset.classes)} classes ({dataset.source})"
        )
        layers = " → ".join(repr(layer).replace("()", "") for layer in model.layers)
        print(
            f"model: {layers}; {self.config.optimizer} lr {optimizer.lr:g}, batch {self.config.batch_size}, "
            f"{self.config.epochs} epochs; writing to {out}"
        )

    def batch(self, done: int, loss: float, accuracy: float | None) -> None:
        if self.config.quiet:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(
                total=self.rows,
                desc=f"epoch {self.current}/{self.config.epochs}",
                unit="ex",
                leave=False,
                file=sys.stderr,
                dynamic_ncols=True,
                mininterval=0.2,
                disable=None,
            )  # no bar when standard error is not a terminal
            self.last = 0
        self.bar.update(done - self.last)
        self.last = done
        if done == self.rows or self.bar.n % (self.config.batch_size * 20) < self.config.batch_size:
            self.bar.set_postfix(
                loss=f"{loss:.4f}", acc=f"{accuracy:.3f}" if accuracy is not None else "-", refresh=False
            )

    def epoch(self, result: EpochResult) -> None:
        self.current += 1
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.config.quiet:
            return
        val = f"  val loss {result.val_loss:.4f} acc {result.val_accuracy:.4f}" if result.val_loss is not None else ""
        print(
            f"epoch {result.epoch:>3}/{self.config.epochs}  train loss {result.loss:.4f} acc "
            f"{result.accuracy:.4f}{val}  {result.seconds:.1f}s",
            flush=True,
        )

    def finish(self, result: RunResult) -> None:
        epochs = len(result.history)
        seconds = sum(e.seconds for e in result.history)
        early = (
            f" (stopped early, best epoch {result.metrics['best_epoch']})" if result.metrics["stopped_early"] else ""
        )
        written = "model, metrics and plots" if self.config.plots else "model and metrics"
        print(
            f"test accuracy {result.test_accuracy:.4f} after {epochs} epochs{early} in {seconds:.1f}s; "
            f"{written} in {result.out}"
        )
