"""How many threads NumPy's BLAS uses while chainrule trains: one, unless ``CHAINRULE_BLAS_THREADS`` says.

Measured on 2 cores (``benchmarks/bench_threads.py``, docs/benchmarks.md): with BLAS on both cores an
epoch of the 784-256-10 network takes 0.42 s on an idle machine and 1.42 s (3.4×) beside one busy process,
because BLAS's helper threads wait for each other at every product and the busy process keeps one of them
off its core; on one thread it takes 0.54 s idle and 0.56 s busy. The 784-512-256-10 network with Adam
takes the same time either way. A machine that someone else uses too (a laptop, a shared server) is the
common case, so training runs BLAS on one thread; ``CHAINRULE_BLAS_THREADS=2`` (or ``0``, BLAS's own
default, all cores) gives the idle-machine speed on a machine that is really idle.

The count changes rounding: OpenBLAS on several threads sums a product with a long inner dimension (the
784 inputs of a first layer) in another order than on one. On one thread the numbers of a training run
depend on the seed alone, not on the load of the machine, its number of cores or a ``threadpool_limits``
set around the call.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from chainrule.errors import ConfigError
from chainrule.i18n import _

ENVIRONMENT = "CHAINRULE_BLAS_THREADS"

_controller = None  # threadpoolctl's view of the loaded BLAS libraries, made on first use


def training_threads() -> int | None:
    """The BLAS threads of training: ``CHAINRULE_BLAS_THREADS`` (0: BLAS's default, returned as None), or 1."""
    value = os.environ.get(ENVIRONMENT, "").strip()
    if not value:
        return 1
    try:
        count = int(value)
    except ValueError:
        count = -1
    if count < 0:
        raise ConfigError(
            _("{variable} must be a whole number of threads (0: BLAS's default), got {value!r}").format(
                variable=ENVIRONMENT, value=value
            )
        )
    return count or None


@contextlib.contextmanager
def blas_threads(count: int | None) -> Iterator[None]:
    """Within the block NumPy's BLAS uses ``count`` threads (None: as it was); restored after. Without
    threadpoolctl the block changes nothing."""
    global _controller
    if count is None:
        yield
        return
    if _controller is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            yield
            return
        _controller = ThreadpoolController()
    with _controller.limit(limits=count, user_api="blas"):
        yield
