"""Where an epoch of chainrule's training goes, part by part (the profile in docs/benchmarks.md).

    python benchmarks/profile_step.py [--config a] [--data-dir ../shared/datasets] [--epochs 3]

Runs the training step of `chainrule.step.train_step` for one configuration of bench_train.py, layer by
layer, with a clock around every part (gathering the batch, zeroing gradients, each layer's forward and
backward, the loss, the optimizer's update, the accuracy), and prints milliseconds per epoch, averaged
over `--epochs` epochs after a warm-up one. The clocks add about 1 µs per part.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from chainrule import kernels  # noqa: E402
from chainrule.training.loop import accuracy  # noqa: E402
from chainrule.training.threads import while_training  # noqa: E402

from bench_train import CONFIGS, Chainrule, fashion_mnist  # noqa: E402


def profile(contender: Chainrule, epochs: int, rng: np.random.Generator) -> tuple[dict[str, float], float]:
    model, loss, optimizer = contender.model, contender.loss, contender.opt
    X, y, batch = contender.X, contender.y, contender.batch
    spent: dict[str, float] = defaultdict(float)

    def timed(part, function, *args, **kwargs):
        started = time.perf_counter()
        result = function(*args, **kwargs)
        spent[part] += time.perf_counter() - started
        return result

    def epoch():
        order = rng.permutation(len(X))
        buffer = np.empty((batch, X.shape[1]), dtype=X.dtype)
        for start in range(0, len(X), batch):
            rows = order[start : start + batch]
            h = timed("gather batch", kernels.take_rows, X, rows, buffer[: len(rows)])
            yb = y[rows]
            timed("zero_grad", model.zero_grad)
            for i, layer in enumerate(model.layers):
                h = timed(f"forward  {i} {layer!r}", layer.forward, h)
            timed("loss forward", loss.forward, h, yb)
            grad = timed("loss backward", loss.backward)
            for i in range(len(model.layers) - 1, -1, -1):
                layer = model.layers[i]
                grad = timed(f"backward {i} {layer!r}", layer.backward, grad, input_grad=i > 0)
            timed("optimizer update", optimizer.step)
            timed("accuracy", accuracy, h, yb)

    epoch()  # warm-up
    spent.clear()
    started = time.perf_counter()
    for _ in range(epochs):
        epoch()
    total = (time.perf_counter() - started) / epochs
    return {part: seconds / epochs for part, seconds in spent.items()}, total


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="a", choices=sorted(CONFIGS))
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "datasets"))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    contender = Chainrule(CONFIGS[args.config], fashion_mnist(args.data_dir), args.seed)
    contender.opt.step = contender.opt.step.__wrapped__  # the plain update, without bench_train's clock
    with while_training():  # the threads of training
        parts, total = profile(contender, args.epochs, np.random.default_rng(args.seed))
    print(f"({args.config}) {CONFIGS[args.config].title}: {total * 1e3:.1f} ms per epoch")
    for part, seconds in parts.items():
        print(f"  {part:<32} {seconds * 1e3:8.1f} ms  {seconds / total:6.1%}")
    print(f"  {'(between the clocks)':<32} {(total - sum(parts.values())) * 1e3:8.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
