"""What a training run prints: a progress bar per epoch (tqdm, on standard error) and a line per epoch."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from chainrule.i18n import _
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
            print(
                _("resuming the run in {out} after epoch {epoch} of {epochs}").format(
                    out=out, epoch=resumed_after, epochs=self.config.epochs
                )
            )
        print(
            _(
                "dataset {dataset}: {train} train / {test} test examples, {features} features, {classes} classes "
                "({source})"
            ).format(
                dataset=dataset.name,
                train=len(dataset.X_train),
                test=len(dataset.X_test),
                features=dataset.features,
                classes=len(dataset.classes),
                source=dataset.source,
            )
        )
        layers = " → ".join(repr(layer).replace("()", "") for layer in model.layers)
        print(
            _("model: {layers}; {optimizer} lr {lr:g}, batch {batch}, {epochs} epochs; writing to {out}").format(
                layers=layers,
                optimizer=self.config.optimizer,
                lr=optimizer.lr,
                batch=self.config.batch_size,
                epochs=self.config.epochs,
                out=out,
            )
        )

    def batch(self, done: int, loss: float, accuracy: float | None) -> None:
        if self.config.quiet:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(
                total=self.rows,
                desc=_("epoch {epoch}/{epochs}").format(epoch=self.current, epochs=self.config.epochs),
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
        if result.val_loss is not None:
            line = _(
                "epoch {epoch:>3}/{epochs}  train loss {loss:.4f} acc {accuracy:.4f}  val loss {val_loss:.4f} acc "
                "{val_accuracy:.4f}  {seconds:.1f}s"
            )
        else:
            line = _("epoch {epoch:>3}/{epochs}  train loss {loss:.4f} acc {accuracy:.4f}  {seconds:.1f}s")
        values = {"val_loss": result.val_loss, "val_accuracy": result.val_accuracy, "seconds": result.seconds}
        print(
            line.format(
                epoch=result.epoch, epochs=self.config.epochs, loss=result.loss, accuracy=result.accuracy, **values
            ),
            flush=True,
        )

    def finish(self, result: RunResult) -> None:
        epochs = len(result.history)
        seconds = sum(e.seconds for e in result.history)
        if result.metrics["stopped_early"] and self.config.plots:
            line = _(
                "test accuracy {accuracy:.4f} after {epochs} epochs (stopped early, best epoch {best}) in "
                "{seconds:.1f}s; model, metrics and plots in {out}"
            )
        elif result.metrics["stopped_early"]:
            line = _(
                "test accuracy {accuracy:.4f} after {epochs} epochs (stopped early, best epoch {best}) in "
                "{seconds:.1f}s; model and metrics in {out}"
            )
        elif self.config.plots:
            line = _(
                "test accuracy {accuracy:.4f} after {epochs} epochs in {seconds:.1f}s; model, metrics and plots in "
                "{out}"
            )
        else:
            line = _("test accuracy {accuracy:.4f} after {epochs} epochs in {seconds:.1f}s; model and metrics in {out}")
        print(
            line.format(
                accuracy=result.test_accuracy,
                epochs=epochs,
                best=result.metrics["best_epoch"],
                seconds=seconds,
                out=result.out,
            )
        )
