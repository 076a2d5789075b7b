"""Training time per epoch on the full Fashion-MNIST: chainrule against JAX (CPU, the whole step one
jit-compiled function), PyTorch (CPU, eager), scikit-learn's MLPClassifier and the matrix-multiply floor,
measured in one run.

    python benchmarks/bench_train.py [--data-dir ../shared/datasets] [--repeats 5] [--configs a,b,c,d]
        [--contenders chainrule,jax,pytorch,sklearn,floor] [--shared] [--no-startup]

For each configuration every contender trains on the same float32 data, in the same batches and the same
order (one shuffled permutation per epoch, shared), with the same architecture, optimizer, batch size
and thread count; JAX and PyTorch start from chainrule's initial weights. Runs are interleaved
(chainrule, jax, torch, sklearn, floor, chainrule, ...) after one warm-up epoch each; the table gives the
median seconds per epoch with min–max, the ratios, and the test accuracy after the same number of epochs.
With ``--shared`` every contender's epoch is timed twice in each turn, idle and with one busy process
beside it (``while 1: pass``, started and stopped here): the machine a laptop or a shared server is.
chainrule runs through `chainrule.training.loop.run_epoch`, the loop of `chainrule train`. Also measured:
peak RSS of a `chainrule train` run on Fashion-MNIST, and the start-up time of `chainrule --help` against
a bare `python -c pass`. See docs/benchmarks.md. JAX comes with ``pip install -e '.[bench]'``.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

import chainrule as cr  # noqa: E402
from chainrule.training.data import load_dataset  # noqa: E402
from chainrule.training.loop import evaluate, run_epoch  # noqa: E402


@dataclass
class Config:
    key: str
    title: str
    hidden: tuple[int, ...]
    optimizer: str  # sgd | adam
    lr: float
    batch: int
    batchnorm: bool = False


CONFIGS = {
    "a": Config("a", "784-256-10 ReLU, SGD lr 0.1, batch 128", (256,), "sgd", 0.1, 128),
    "b": Config("b", "784-512-256-10 ReLU, Adam lr 1e-3, batch 64", (512, 256), "adam", 1e-3, 64),
    "c": Config("c", "softmax regression 784-10, SGD lr 0.1, batch 128", (), "sgd", 0.1, 128),
    "d": Config("d", "784-512-256-10 ReLU + BatchNorm, Adam lr 1e-3, batch 64", (512, 256), "adam", 1e-3, 64, True),
}


# -- contenders: each has epoch(order) and accuracy() ------------------------------------------------------
class Chainrule:
    name = "chainrule"

    def __init__(self, cfg: Config, data, seed: int, initial=None) -> None:
        X, y, self.X_test, self.y_test = data
        self.X, self.y = X, y
        sizes = [X.shape[1], *cfg.hidden, 10]
        self.model = (
            cr.mlp(sizes, "relu", batchnorm=cfg.batchnorm, seed=seed)
            if cfg.hidden
            else cr.softmax_regression(X.shape[1], 10, init="xavier_uniform", seed=seed)
        )
        params = self.model.parameters()
        self.opt = cr.SGD(params, lr=cfg.lr) if cfg.optimizer == "sgd" else cr.Adam(params, lr=cfg.lr)
        self.loss = cr.SoftmaxCrossEntropyLoss()
        self.batch = cfg.batch
        # For the profile line of the table: the seconds of each epoch spent in the optimizer's update,
        # the one part of a step that the floor leaves out entirely and that no fusion removes.
        self.update_seconds = 0.0
        step = self.opt.step

        def timed_step():
            started = time.perf_counter()
            step()
            self.update_seconds += time.perf_counter() - started

        timed_step.__wrapped__ = step
        self.opt.step = timed_step

    def epoch(self, rng: np.random.Generator) -> None:
        self.update_seconds = 0.0
        run_epoch(self.model, self.loss, self.opt, self.X, self.y, self.batch, rng)

    def accuracy(self) -> float:
        return evaluate(self.model, self.loss, self.X_test, self.y_test)[1]

    def initial_weights(self) -> list[tuple[np.ndarray, np.ndarray | None]]:
        """(W, b) of every linear layer, (in, out) and (out,), as they are before training."""
        return [
            (layer.params["W"].data.copy(), layer.params["b"].data.copy() if "b" in layer.params else None)
            for layer in self.model.layers
            if isinstance(layer, cr.Linear)
        ]


class Torch:
    name = "pytorch"

    def __init__(self, cfg: Config, data, seed: int, initial=None) -> None:
        import torch

        torch.set_num_threads(os.cpu_count() or 1)
        torch.manual_seed(seed)
        self.torch = torch
        X, y, X_test, y_test = data
        self.X, self.y = torch.from_numpy(X), torch.from_numpy(y)
        self.X_test, self.y_test = torch.from_numpy(X_test), torch.from_numpy(y_test)
        layers, fan_in = [], X.shape[1]
        for width in cfg.hidden:
            layers.append(torch.nn.Linear(fan_in, width, bias=not cfg.batchnorm))
            if cfg.batchnorm:
                layers.append(torch.nn.BatchNorm1d(width))
            layers.append(torch.nn.ReLU())
            fan_in = width
        layers.append(torch.nn.Linear(fan_in, 10))
        self.model = torch.nn.Sequential(*layers)
        # The same starting point as chainrule's (torch keeps W as (out, in)): both then train the same
        # network on the same batches, so their accuracies differ only by rounding, not by initialisation.
        linears = [m for m in self.model if isinstance(m, torch.nn.Linear)]
        with torch.no_grad():
            for module, (W, b) in zip(linears, initial, strict=True):
                module.weight.copy_(torch.from_numpy(W.T))
                if b is not None:
                    module.bias.copy_(torch.from_numpy(b))
        params = self.model.parameters()
        self.opt = torch.optim.SGD(params, lr=cfg.lr) if cfg.optimizer == "sgd" else torch.optim.Adam(params, lr=cfg.lr)
        self.loss = torch.nn.CrossEntropyLoss()
        self.batch = cfg.batch

    def epoch(self, rng: np.random.Generator) -> None:
        order = self.torch.from_numpy(rng.permutation(len(self.X)))
        X, y = self.X[order], self.y[order]  # the same one shuffled copy per epoch as chainrule
        self.model.train()
        for start in range(0, len(X), self.batch):
            xb, yb = X[start : start + self.batch], y[start : start + self.batch]
            self.opt.zero_grad()
            self.loss(self.model(xb), yb).backward()
            self.opt.step()

    def accuracy(self) -> float:
        self.model.eval()
        with self.torch.no_grad():
            return float((self.model(self.X_test).argmax(1) == self.y_test).float().mean())


class Jax:
    """JAX on the CPU, the whole training step (gather, forward, loss, backward, update) one jit-compiled
    function, from chainrule's initial weights, with the optimizers and BatchNorm written as PyTorch's."""

    name = "jax"

    def __init__(self, cfg: Config, data, seed: int, initial=None) -> None:
        import jax
        import jax.numpy as jnp

        self.jax = jax
        X, y, X_test, y_test = data
        self.X, self.y = jax.device_put(X), jax.device_put(y.astype(np.int32))
        self.X_test, self.y_test = jax.device_put(X_test), y_test
        self.n, self.batch = len(X), cfg.batch
        hidden = len(cfg.hidden)
        self.params = [{"W": jnp.asarray(W), **({} if b is None else {"b": jnp.asarray(b)})} for W, b in initial]
        self.running = []  # BatchNorm's running mean and variance, one pair per hidden layer
        if cfg.batchnorm:
            for layer, width in zip(self.params, cfg.hidden, strict=False):
                layer["gamma"], layer["beta"] = jnp.ones(width, jnp.float32), jnp.zeros(width, jnp.float32)
                self.running.append((jnp.zeros(width, jnp.float32), jnp.ones(width, jnp.float32)))
        zeros = lambda tree: jax.tree_util.tree_map(jnp.zeros_like, tree)  # noqa: E731
        self.moments = (zeros(self.params), zeros(self.params), jnp.zeros((), jnp.float32))

        def forward(params, running, x, training):
            h, updated = x, []
            for i, layer in enumerate(params):
                h = h @ layer["W"]
                if "b" in layer:
                    h = h + layer["b"]
                if i == hidden:
                    break
                if "gamma" in layer:
                    mean, var = running[i]
                    if training:
                        n = h.shape[0]
                        batch_mean, batch_var = h.mean(0), h.var(0)
                        updated.append((0.9 * mean + 0.1 * batch_mean, 0.9 * var + 0.1 * batch_var * n / (n - 1)))
                        mean, var = batch_mean, batch_var
                    h = layer["gamma"] * (h - mean) / jnp.sqrt(var + 1e-5) + layer["beta"]
                h = jnp.maximum(h, 0)
            return h, updated

        def loss(params, running, x, target):
            logits, updated = forward(params, running, x, True)
            log_p = jax.nn.log_softmax(logits)
            return -jnp.mean(jnp.take_along_axis(log_p, target[:, None], axis=1)), updated

        lr, b1, b2, eps = cfg.lr, 0.9, 0.999, 1e-8

        def step(params, moments, running, X, y, rows):
            grads, updated = jax.grad(loss, has_aux=True)(params, running, X[rows], y[rows])
            if cfg.optimizer == "sgd":
                return jax.tree_util.tree_map(lambda p, g: p - lr * g, params, grads), moments, updated
            m, v, t = moments
            t = t + 1
            m = jax.tree_util.tree_map(lambda m, g: b1 * m + (1 - b1) * g, m, grads)
            v = jax.tree_util.tree_map(lambda v, g: b2 * v + (1 - b2) * g * g, v, grads)
            step_size, bc2 = lr / (1 - b1**t), jnp.sqrt(1 - b2**t)
            params = jax.tree_util.tree_map(lambda p, m, v: p - step_size * m / (jnp.sqrt(v) / bc2 + eps), params, m, v)
            return params, (m, v, t), updated

        self.step = jax.jit(step, donate_argnums=(0, 1, 2))
        self.predict = jax.jit(lambda params, running, x: forward(params, running, x, False)[0].argmax(1))

    def epoch(self, rng: np.random.Generator) -> None:
        order = rng.permutation(self.n).astype(np.int32)
        params, moments, running = self.params, self.moments, self.running
        for start in range(0, self.n, self.batch):
            params, moments, running = self.step(
                params, moments, running, self.X, self.y, order[start : start + self.batch]
            )
        self.params, self.moments, self.running = self.jax.block_until_ready((params, moments, running))

    def accuracy(self) -> float:
        return float(np.mean(np.asarray(self.predict(self.params, self.running, self.X_test)) == self.y_test))


class Sklearn:
    name = "sklearn"

    def __init__(self, cfg: Config, data, seed: int, initial=None) -> None:  # draws its own (Glorot) weights
        from sklearn.neural_network import MLPClassifier

        X, y, self.X_test, self.y_test = data
        self.X, self.y = X, y
        self.model = MLPClassifier(
            cfg.hidden,
            activation="relu",
            solver=cfg.optimizer,
            learning_rate_init=cfg.lr,
            batch_size=cfg.batch,
            shuffle=False,
            random_state=seed,
            alpha=0.0,
            momentum=0.0,
        )
        self.classes = np.arange(10)

    def epoch(self, rng: np.random.Generator) -> None:
        order = rng.permutation(len(self.X))
        self.model.partial_fit(self.X[order], self.y[order], classes=self.classes)  # one pass, our batches

    def accuracy(self) -> float:
        return float(np.mean(self.model.predict(self.X_test) == self.y_test))


class Floor:
    """Only the matrix products of one epoch (forward X·W, backward Xᵀ·δ and δ·Wᵀ), same shapes."""

    name = "floor"

    def __init__(self, cfg: Config, data, seed: int, initial=None) -> None:
        X = data[0]
        self.n, self.batch = len(X), cfg.batch
        sizes = [X.shape[1], *cfg.hidden, 10]
        rng = np.random.default_rng(seed)
        self.W = [rng.standard_normal((a, b), dtype=np.float32) for a, b in itertools.pairwise(sizes)]
        self.X = X

    def epoch(self, rng: np.random.Generator) -> None:
        rng.permutation(self.n)  # keep the stream in step with the others
        for start in range(0, self.n, self.batch):
            h = self.X[start : start + self.batch]
            inputs = []
            for W in self.W:
                inputs.append(h)
                h = h @ W
            delta = h
            for i in range(len(self.W) - 1, -1, -1):
                inputs[i].T @ delta
                if i:
                    delta = delta @ self.W[i].T

    def accuracy(self) -> float:
        return float("nan")


CONTENDERS = {c.name: c for c in (Chainrule, Torch, Jax, Sklearn, Floor)}  # chainrule first: the others
# start from its initial weights


@contextlib.contextmanager
def busy_process(busy: bool):
    """While the block runs, one other process keeps a core busy (``while 1: pass``), as on a shared machine
    or a laptop that is never idle; started before the clock and stopped after it by the benchmark itself."""
    if not busy:
        yield
        return
    process = subprocess.Popen([sys.executable, "-c", "while 1: pass"])
    try:
        time.sleep(0.3)  # running, not starting, when the epoch begins
        yield
    finally:
        process.kill()
        process.wait()


# Seconds between one epoch and the next, off the clock: the threads that a library leaves spinning after
# its work (OpenBLAS's for about 0.1 s, waiting for more) would otherwise take a core from the next
# contender. Measured: the floor's OpenBLAS threads made chainrule's following epoch of (a) 16 % slower
# (0.427 s instead of 0.369 s, medians of 3).
SETTLE = 0.5


def measure(cfg: Config, data, repeats: int, seed: int, names=tuple(CONTENDERS), loads=("idle",)) -> dict:
    """``{load: {contender: {"median", "min", "max", ...}}}``, ``load`` "idle" or "busy" (one busy process
    beside every epoch); every contender's idle and busy epochs are interleaved with everyone else's."""
    contenders, initial = [], None
    for name, cls in CONTENDERS.items():
        if name not in names or (cls is Sklearn and (not cfg.hidden or cfg.batchnorm)):
            continue  # scikit-learn has no BatchNorm and no MLP without a hidden layer
        contenders.append(cls(cfg, data, seed, initial))
        if cls is Chainrule:
            initial = contenders[-1].initial_weights()
    streams = {c.name: np.random.default_rng(seed) for c in contenders}  # the same orders for everyone
    for c in contenders:  # warm-up epoch (and JAX's compilation)
        c.epoch(streams[c.name])
    times = {(load, c.name): [] for load in loads for c in contenders}
    updates: dict[str, list[float]] = {load: [] for load in loads}
    for _ in range(repeats):
        for c in contenders:
            for load in loads:
                time.sleep(SETTLE)
                with busy_process(load == "busy"):
                    started = time.perf_counter()
                    c.epoch(streams[c.name])
                    times[load, c.name].append(time.perf_counter() - started)
                if isinstance(c, Chainrule):
                    updates[load].append(c.update_seconds)
    accuracies = {c.name: c.accuracy() for c in contenders}
    results = {
        load: {
            c.name: {
                "median": statistics.median(times[load, c.name]),
                "min": min(times[load, c.name]),
                "max": max(times[load, c.name]),
                "accuracy": accuracies[c.name],
            }
            for c in contenders
        }
        for load in loads
    }
    for load in loads:
        if "chainrule" in results[load]:
            results[load]["chainrule"]["update"] = statistics.median(updates[load])
    return results


def fashion_mnist(data_dir: str):
    """(X_train, y_train, X_test, y_test), float32 inputs standardised with Fashion-MNIST's mean and std."""
    dataset = load_dataset("fashion-mnist", data_dir, download=False, progress=False)
    prepare = lambda X: ((X.astype(np.float32) / 255.0) - 0.2860) / 0.3530  # noqa: E731
    return prepare(dataset.X_train), dataset.y_train, prepare(dataset.X_test), dataset.y_test


def peak_rss_of_train(data_dir: str) -> float:
    """Peak resident memory (MB) of `chainrule train` on Fashion-MNIST (1 epoch, the default MLP, plots
    included)."""
    out = Path("/tmp") / f"chainrule-bench-{os.getpid()}"
    command = [
        sys.executable,
        "-m",
        "chainrule.cli",
        "train",
        "--dataset",
        "fashion-mnist",
        "--data-dir",
        data_dir,
        "--epochs",
        "1",
        "--quiet",
        "--force",
        "--out",
        str(out),
    ]
    subprocess.run(command, check=True, capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    shutil.rmtree(out, ignore_errors=True)
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # Linux reports kilobytes


def startup(repeats: int = 7) -> tuple[float, float]:
    """Median seconds of `chainrule --help` and of `python -c pass`."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}

    def median(command):
        samples = []
        for _ in range(repeats):
            started = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True, env=env)
            samples.append(time.perf_counter() - started)
        return statistics.median(samples)

    return median([sys.executable, "-m", "chainrule.cli", "--help"]), median([sys.executable, "-c", "pass"])


def products_shared() -> tuple[int, int] | None:
    """How many of chainrule's large products ran on one thread and how many with the helper thread so far
    (chainrule.training.threads); None without the compiled kernels."""
    from chainrule import kernels

    if kernels.compiled is None:
        return None
    report = kernels.compiled.threads_report()
    return report["serial_products"], report["parallel_products"]


def versions(names) -> str:
    import numpy

    found = [f"numpy {numpy.__version__}"]
    for name, module in (("pytorch", "torch"), ("jax", "jax"), ("sklearn", "sklearn")):
        if name in names:
            found.append(f"{module} {__import__(module).__version__}")
    return ", ".join(found)


RATIOS = ("jax", "pytorch", "sklearn", "floor")


def print_table(key: str, cfg: Config, results: dict, load: str) -> None:
    ours = results["chainrule"]["median"] if "chainrule" in results else float("nan")

    def ratio(name):
        return f"{ours / results[name]['median']:.2f}" if name in results else "n/a"

    for name, r in results.items():
        ratios = " ".join(f"{ratio(other):>10}" for other in RATIOS) if name == "chainrule" else ""
        accuracy = "" if np.isnan(r["accuracy"]) else f"{r['accuracy']:.4f}"
        print(
            f"({key}) {load:<5}{name:<11}{r['median']:7.3f} ({r['min']:.3f}–{r['max']:.3f})"
            f"{'':<8}{accuracy:>9}   {ratios}"
        )
    if "update" in results.get("chainrule", {}) and "floor" in results:
        update = results["chainrule"]["update"]
        print(
            f"           {cfg.title}; chainrule's optimizer update {update:.3f} s/epoch "
            f"({update / results['floor']['median']:.2f} of the floor)"
        )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "datasets"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--configs", default="a,b,c,d")
    parser.add_argument("--contenders", default=",".join(CONTENDERS), help="of " + ", ".join(CONTENDERS))
    parser.add_argument(
        "--shared",
        action="store_true",
        help="also time every epoch with one busy process beside it (started and stopped here)",
    )
    parser.add_argument("--no-startup", action="store_true", help="skip the peak RSS and start-up measurements")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    names = ["chainrule", *(n for n in args.contenders.split(",") if n != "chainrule")]
    unknown = sorted(set(names) - set(CONTENDERS))
    if unknown:
        parser.error(f"unknown contender {unknown[0]!r}; expected some of {', '.join(CONTENDERS)}")
    loads = ("idle", "busy") if args.shared else ("idle",)

    if not args.no_startup:
        # Measured first, while this process is small: a child forked from a process that already holds the
        # data and PyTorch would count the parent's pages in its peak RSS.
        rss = peak_rss_of_train(args.data_dir)
        help_s, bare_s = startup()
    data = fashion_mnist(args.data_dir)
    print(
        f"Fashion-MNIST {len(data[0])} train / {len(data[2])} test, float32; {os.cpu_count()} cores; "
        f"{versions(names)}; {args.repeats} interleaved epochs after a warm-up"
        + ("; 'busy': with one busy process beside the epoch" if args.shared else "")
        + "\n"
    )
    header = f"{'config':<12}{'contender':<11}{'s/epoch median (min–max)':<28}{'test acc':>9}   " + " ".join(
        f"{'cr/' + other:>10}" for other in RATIOS
    )
    print(header)
    print("-" * len(header))
    for key in args.configs.split(","):
        cfg = CONFIGS[key]
        shared_before = products_shared()
        results = measure(cfg, data, args.repeats, args.seed, names, loads)
        for load in loads:
            print_table(key, cfg, results[load], load)
        if shared_before is not None:
            serial, parallel = (after - before for after, before in zip(products_shared(), shared_before, strict=True))
            print(
                f"           chainrule's large products: {parallel / max(serial + parallel, 1):.0%} "
                "shared with a helper thread"
            )
        if args.shared:
            slowdown = ", ".join(
                f"{name} {results['busy'][name]['median'] / results['idle'][name]['median']:.2f}"
                for name in results["idle"]
            )
            print(f"           busy/idle: {slowdown}")
    if not args.no_startup:
        print(f"\npeak RSS of `chainrule train --dataset fashion-mnist --epochs 1`: {rss:.0f} MB")
        print(
            f"start-up: `chainrule --help` {help_s:.3f} s, `python -c pass` {bare_s:.3f} s, "
            f"difference {help_s - bare_s:.3f} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
