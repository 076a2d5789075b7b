"""How many threads the matrix products of training use: chosen at run time by measuring, with numbers
that do not depend on the choice.

Measured on 2 cores (``benchmarks/bench_threads.py``, docs/benchmarks.md): with OpenBLAS's own two
threads an epoch of the 784-256-10 network takes 0.42 s on an idle machine and 1.42 s (3.4×) beside one
busy process, because BLAS's threads wait for each other at the end of every product and the busy process
keeps one of them off its core; on one thread it takes 0.54 s idle and 0.56 s busy. OpenBLAS on two
threads also sums a product with a long inner dimension (the 784 inputs of a first layer) in another order
than on one, so its count would change the numbers.

So training runs BLAS on one thread and cuts every large float32 product into blocks of rows, columns or
of the inner dimension fixed by the shapes alone (:func:`chainrule.kernels.matmul`); the blocks are
computed on this thread, or shared with one helper thread that takes the next block left, whichever the
products measure faster (a comparison every few hundred products, and sooner when they slow down or speed
up; on one thread, only when a processor was left idle). The optimizer's update is shared the same way, in
blocks of elements. The numbers of a training run depend on the seed alone: not on the load of the
machine, its number of cores, or what was chosen.

``CHAINRULE_BLAS_THREADS`` changes that: ``1`` keeps the products on one thread (the same numbers);
``N`` ≥ 2 gives BLAS ``N`` threads of its own and ``0`` BLAS's own default (all cores), the way
training ran before, with the rounding of that count.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from chainrule import kernels
from chainrule.errors import ConfigError
from chainrule.i18n import _

ENVIRONMENT = "CHAINRULE_BLAS_THREADS"
# For benchmarks and tests: None, products on one thread or two as measured; False, always one; True, always
# shared with the helper thread (when two are allowed).
forced_sharing: bool | None = None

_controller = None  # threadpoolctl's view of the loaded BLAS libraries, made on first use


def training_threads() -> int | None:
    """The BLAS threads of training: ``CHAINRULE_BLAS_THREADS`` (0: BLAS's default, returned as None), or 1
    (then products are shared out by :func:`while_training`)."""
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
    controller = _threadpool_controller() if count is not None else None
    if controller is None:
        yield
        return
    with controller.limit(limits=count, user_api="blas"):
        yield


def product_threads() -> int:
    """The threads that may share training's products: 1 when ``CHAINRULE_BLAS_THREADS`` is set or this
    process may run on one core only, else 2."""
    if os.environ.get(ENVIRONMENT, "").strip():
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return 2 if cores > 1 else 1


@contextlib.contextmanager
def while_training() -> Iterator[None]:
    """The threads of training within the block (:func:`training_threads`; with BLAS on one thread,
    float32 products in blocks on :func:`product_threads` threads); restored after."""
    count = training_threads()
    sgemm = _blas_sgemm() if count == 1 and kernels.compiled is not None else None
    if sgemm is None:
        with blas_threads(count):
            yield
        return
    saved = kernels._sgemm
    previous = kernels.compiled.set_threads(product_threads(), -1 if forced_sharing is None else int(forced_sharing))
    kernels._sgemm = sgemm
    try:
        with blas_threads(1):
            yield
    finally:
        kernels._sgemm = saved
        kernels.compiled.set_threads(previous)


_sgemm_found: list = []  # [(address, 64-bit integers) or None], once found


def _blas_sgemm() -> tuple[int, bool] | None:
    """NumPy's OpenBLAS ``cblas_sgemm`` (address, whether it takes 64-bit integers), checked once against
    NumPy's product; None where it is not found or not understood (products then stay NumPy's)."""
    if _sgemm_found:
        return _sgemm_found[0]
    _sgemm_found.append(None)
    controller = _threadpool_controller()
    if controller is None:
        return None
    import ctypes

    import numpy as np

    libraries = [lib for lib in controller.lib_controllers if lib.prefix == "libscipy_openblas"]
    if len(libraries) != 1:  # NumPy's wheels bring this one; another BLAS is not assumed
        return None
    library = libraries[0]
    ilp64 = library.filepath.find("openblas64_") >= 0
    try:
        function = getattr(ctypes.CDLL(library.filepath), "scipy_cblas_sgemm64_" if ilp64 else "scipy_cblas_sgemm")
    except (OSError, AttributeError):
        return None
    found = (ctypes.cast(function, ctypes.c_void_p).value, ilp64)
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 70, 90), dtype=np.float32)
    out = np.empty((70, 70), dtype=np.float32)
    kernels.compiled.matmul(a, b, out, False, True, *found)
    if np.allclose(out, a @ b.T, rtol=1e-4, atol=1e-4):
        _sgemm_found[0] = found
    return _sgemm_found[0]


def _threadpool_controller():
    """threadpoolctl's view of the loaded BLAS libraries, made on first use; None without threadpoolctl."""
    global _controller
    if _controller is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            return None
        _controller = ThreadpoolController()
    return _controller
