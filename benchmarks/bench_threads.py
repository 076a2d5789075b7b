"""chainrule's epoch with each number of BLAS threads, on an idle machine and beside one busy process.

    python benchmarks/bench_threads.py [--configs a,b] [--repeats 3] [--threads auto,1,2,pair] [--data-dir DIR]

The measurement behind chainrule.training.threads (docs/benchmarks.md): for each configuration of
bench_train.py, chainrule's epoch runs with training's own choice (``auto``: products in blocks on one or
two threads, measured), with the blocks always shared with the helper thread (``pair``), and with each BLAS
thread count (``CHAINRULE_BLAS_THREADS``; 1 is the blocks on one thread, 0 BLAS's own default), each idle
and with a busy process beside it, all in turns after a warm-up epoch. The table gives the median seconds
per epoch (min–max), the ratio busy/idle, and for ``auto`` and ``pair`` the median seconds per epoch that
the caller waited for the helper's last block with none left to take (busy: a helper held off its core).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from chainrule import kernels  # noqa: E402
from chainrule.training import threads  # noqa: E402

from bench_train import CONFIGS, SETTLE, Chainrule, busy_process, fashion_mnist  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", default="a,b")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--threads",
        default="auto,1,2",
        help="comma-separated: auto (training's own choice), pair (the helper always on), or BLAS thread "
        "counts (1: the blocks on one thread, 0: BLAS's default)",
    )
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "datasets"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    data = fashion_mnist(args.data_dir)
    counts = args.threads.split(",")
    cell = lambda t: f"{statistics.median(t):.3f} ({min(t):.3f}–{max(t):.3f})"  # noqa: E731
    print(f"{'config':<8}{'threads':<9}{'idle s/epoch':<24}{'busy s/epoch':<24}{'busy/idle':<11}waited idle, busy")
    for key in args.configs.split(","):
        contender = Chainrule(CONFIGS[key], data, args.seed)
        rng = np.random.default_rng(args.seed)
        contender.epoch(rng)  # warm-up
        times = {(count, load): [] for count in counts for load in ("idle", "busy")}
        waits = {(count, load): [] for count in counts for load in ("idle", "busy")}
        for _ in range(args.repeats):
            for count in counts:
                os.environ[threads.ENVIRONMENT] = "" if count in ("auto", "pair") else count
                threads.forced_sharing = True if count == "pair" else None
                for load in ("idle", "busy"):
                    time.sleep(SETTLE)  # BLAS's threads of the last epoch have stopped spinning
                    with busy_process(load == "busy"):
                        waited = waited_seconds()
                        started = time.perf_counter()
                        contender.epoch(rng)
                        times[count, load].append(time.perf_counter() - started)
                        waits[count, load].append(waited_seconds() - waited)
        os.environ.pop(threads.ENVIRONMENT)
        threads.forced_sharing = None
        for count in counts:
            idle, busy = times[count, "idle"], times[count, "busy"]
            ratio = statistics.median(busy) / statistics.median(idle)
            waited = (
                f"{statistics.median(waits[count, 'idle']):.3f}, {statistics.median(waits[count, 'busy']):.3f}"
                if count in ("auto", "pair") and kernels.compiled is not None
                else ""
            )
            print(f"({key}){'':<5}{count:<9}{cell(idle):<24}{cell(busy):<24}{ratio:<11.2f}{waited}")
    return 0


def waited_seconds() -> float:
    """Seconds the callers of shared products and updates have waited for the helper so far (0 without the
    compiled kernels)."""
    return kernels.compiled.threads_report()["waited_ns"] * 1e-9 if kernels.compiled is not None else 0.0


if __name__ == "__main__":
    sys.exit(main())
