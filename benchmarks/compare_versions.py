"""Seconds per epoch of chainrule's training loop for two checkouts of chainrule, measured in turns.

    git worktree add /tmp/before <commit>            # the code to compare with (build its extension:
    pip install -e /tmp/before --no-deps             # then reinstall this checkout: pip install -e .)
    python benchmarks/compare_versions.py /tmp/before . [--configs a,b,d] [--rounds 6] [--data-dir DIR]

For a change that should not change speed (a refactor), this says whether it did: each round runs both
trees once, in turn and in alternating order, each in a fresh process (the same data, model, optimizer
and batch order as configuration a, b or d of bench_train.py; a warm-up epoch, then the median of four),
and the table gives the median over the rounds of each tree and their ratio. The machines are noisy:
a ratio within a few per cent of 1 is no difference.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: Run inside each tree: prints the median seconds of four epochs after a warm-up one.
EPOCH = """
import statistics, sys, time
sys.path.insert(0, sys.argv[1] + "/src")
import numpy as np
import chainrule as cr
try:
    from chainrule.training.data import load_dataset
    from chainrule.training.loop import run_epoch
except ImportError:  # the layout before chainrule.training
    from chainrule.data import load_dataset
    from chainrule.train import run_epoch
hidden, optimizer, lr, batch, batchnorm = {config}
data = load_dataset("fashion-mnist", sys.argv[2], download=False, progress=False)
X, y = ((data.X_train.astype(np.float32) / 255.0) - 0.2860) / 0.3530, data.y_train
model = cr.mlp([784, *hidden, 10], "relu", batchnorm=batchnorm, seed=0)
opt = cr.SGD(model.parameters(), lr=lr) if optimizer == "sgd" else cr.Adam(model.parameters(), lr=lr)
loss, rng = cr.SoftmaxCrossEntropyLoss(), np.random.default_rng(0)
run_epoch(model, loss, opt, X, y, batch, rng)
times = []
for _ in range(4):
    started = time.perf_counter()
    run_epoch(model, loss, opt, X, y, batch, rng)
    times.append(time.perf_counter() - started)
print(statistics.median(times))
"""

CONFIGS = {
    "a": ((256,), "sgd", 0.1, 128, False),
    "b": ((512, 256), "adam", 1e-3, 64, False),
    "d": ((512, 256), "adam", 1e-3, 64, True),
}


def epoch_seconds(tree: str, config: str, data_dir: str) -> float:
    script = EPOCH.format(config=repr(CONFIGS[config]))
    result = subprocess.run([sys.executable, "-c", script, tree, data_dir], capture_output=True, text=True, check=True)
    return float(result.stdout.split()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", help="the checkout to compare with")
    parser.add_argument("after", help="the checkout under test")
    parser.add_argument("--configs", default="a,b", help="of bench_train.py: a, b, d (default: a,b)")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "datasets"))
    args = parser.parse_args(argv)
    trees = {"before": str(Path(args.before).resolve()), "after": str(Path(args.after).resolve())}
    print(f"{'config':<8}{'before s/epoch':>15}{'after s/epoch':>15}{'after/before':>14}   (medians of {args.rounds})")
    for config in args.configs.split(","):
        seconds: dict[str, list[float]] = {"before": [], "after": []}
        for round_ in range(args.rounds):
            order = ("before", "after") if round_ % 2 else ("after", "before")
            for name in order:
                seconds[name].append(epoch_seconds(trees[name], config, args.data_dir))
        before, after = (statistics.median(seconds[k]) for k in ("before", "after"))
        print(f"({config}){'':<5}{before:>15.4f}{after:>15.4f}{after / before:>14.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
