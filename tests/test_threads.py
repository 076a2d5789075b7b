"""Training runs NumPy's BLAS on one thread (chainrule.training.threads): its numbers do not depend on the
BLAS threads set around it, and CHAINRULE_BLAS_THREADS chooses another count or says what is wrong."""

import os
import signal
import threading
import time

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

import chainrule as cr
from chainrule.errors import ConfigError
from chainrule.training.loop import fit, run_epoch
from chainrule.training.threads import ENVIRONMENT


def blas_threads_now() -> set[int]:
    """The thread counts of the BLAS libraries loaded in this process, as threadpoolctl reports them."""
    return {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}


def first_layer_problem(seed=0):
    """784 inputs: OpenBLAS sums an inner dimension this long in another order on two threads than on one."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((256, 784), dtype=np.float32), rng.integers(0, 10, 256)


def one_epoch(X, y):
    model = cr.mlp([784, 64, 10], "relu", seed=0)
    optimizer = cr.Adam(model.parameters(), lr=1e-3)
    run_epoch(model, cr.SoftmaxCrossEntropyLoss(), optimizer, X, y, 64, np.random.default_rng(0))
    return [p.data for p in model.parameters()]


def threads_seen_while_training(batch_size: int) -> list[set[int]]:
    """The BLAS thread counts in force at the end of each batch of one epoch of ``fit``."""
    X, y = first_layer_problem()
    seen = []
    model = cr.mlp([784, 16, 10], "relu", seed=0)
    fit(
        model,
        cr.SoftmaxCrossEntropyLoss(),
        cr.SGD(model.parameters()),
        X,
        y,
        epochs=1,
        batch_size=batch_size,
        on_batch=lambda *_: seen.append(blas_threads_now()),
    )
    return seen


def test_training_uses_one_blas_thread_and_restores_the_count_after(monkeypatch):
    monkeypatch.delenv(ENVIRONMENT, raising=False)
    with threadpool_limits(2, user_api="blas"):
        assert threads_seen_while_training(batch_size=128) == [{1}, {1}]
        assert blas_threads_now() == {2}


def test_the_numbers_of_training_do_not_depend_on_the_blas_threads_around_it(monkeypatch):
    monkeypatch.delenv(ENVIRONMENT, raising=False)
    X, y = first_layer_problem()
    with threadpool_limits(1, user_api="blas"):
        one_thread = one_epoch(X, y)
    with threadpool_limits(2, user_api="blas"):
        two_threads = one_epoch(X, y)
    for a, b in zip(one_thread, two_threads, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(("value", "expected"), [("2", {2}), ("0", {3})])
def test_the_environment_sets_another_count(monkeypatch, value, expected):
    monkeypatch.setenv(ENVIRONMENT, value)
    with threadpool_limits(3, user_api="blas"):  # "0": BLAS keeps the count it had
        assert threads_seen_while_training(batch_size=256) == [expected]


@pytest.mark.parametrize("value", ["two", "-1", "1.5"])
def test_a_bad_thread_count_is_named(monkeypatch, value):
    monkeypatch.setenv(ENVIRONMENT, value)
    X, y = first_layer_problem()
    model = cr.mlp([784, 16, 10], "relu", seed=0)
    with pytest.raises(ConfigError, match=f"CHAINRULE_BLAS_THREADS must be a whole number of threads.*got '{value}'"):
        fit(model, cr.SoftmaxCrossEntropyLoss(), cr.SGD(model.parameters()), X, y, epochs=1)


@pytest.fixture
def blocked(monkeypatch):
    """The products of training in blocks (chainrule.training.threads.while_training); skipped where
    NumPy's BLAS is not the OpenBLAS whose sgemm chainrule calls, or the kernels are not built."""
    from chainrule import kernels
    from chainrule.training.threads import _blas_sgemm, while_training

    monkeypatch.delenv(ENVIRONMENT, raising=False)
    if kernels.compiled is None or _blas_sgemm() is None:
        pytest.skip("no compiled kernels, or NumPy's BLAS is not its OpenBLAS")
    with while_training():
        yield kernels
    kernels.compiled.set_threads(1)


def training_products(rng):
    """The products of a training step of 784-512-256-10 on a batch of 64, stored as training has them:
    ``X·W``, ``Xᵀ·δ`` (X transposed in place) and ``δ·Wᵀ`` (W transposed in place)."""
    X = rng.standard_normal((64, 784), dtype=np.float32)
    W1, W2, W3 = (rng.standard_normal(shape, dtype=np.float32) for shape in [(784, 512), (512, 256), (256, 10)])
    deltas = [rng.standard_normal((64, n), dtype=np.float32) for n in (512, 256, 10)]
    H = rng.standard_normal((64, 512), dtype=np.float32)
    return [
        (X, W1),
        (H, W2),
        (np.ascontiguousarray(H[:, :256]), W3),  # as training has it
        (H[:, :256], W3),  # a strided view: NumPy's product
        (X.T, deltas[0]),
        (H.T, deltas[1]),
        (deltas[1], W2.T),
        (deltas[2], W3.T),
    ]


@pytest.mark.parametrize("forced", [0, 1])
def test_a_product_in_blocks_has_the_bits_of_numpys_on_one_thread(blocked, forced):
    """Whether the caller computes every block (0) or shares them with the helper thread (1), each product
    of a training step is NumPy's on one BLAS thread, bit for bit, and so is one added into an array."""
    blocked.compiled.set_threads(2, forced)
    rng = np.random.default_rng(0)
    for a, b in training_products(rng):
        with threadpool_limits(1, user_api="blas"):
            expected = a @ b
            start = rng.standard_normal(expected.shape, dtype=np.float32)
            expected_sum = start + expected
        np.testing.assert_array_equal(blocked.matmul(a, b), expected)
        total = start.copy()
        blocked.matmul(a, b, out=total, accumulate=True)
        np.testing.assert_array_equal(total, expected_sum)


def test_an_epoch_has_the_same_numbers_on_one_thread_and_on_two(blocked):
    """The products of a training epoch shared with the helper (forced) or all on one thread: the same
    weights, bit for bit, as with CHAINRULE_BLAS_THREADS=1; the helper did take blocks."""
    X, y = first_layer_problem()
    results = []
    for forced in (0, 1):
        blocked.compiled.set_threads(2, forced)
        results.append(one_epoch(X, y))
    assert blocked.compiled.threads_report()["helper_blocks"] > 0
    for serial, parallel in zip(*results, strict=True):
        np.testing.assert_array_equal(serial, parallel)


@pytest.mark.parametrize("name", ["adam", "sgd"])
def test_an_update_shared_with_the_helper_has_the_bits_of_numpys(blocked, name):
    """Large optimizer updates are cut into blocks of elements shared with the helper (forced here): twenty
    steps give the arrays of the plain NumPy updates, bit for bit, and the updates were offered to the helper
    (which takes a block when it is first to it)."""
    blocked.compiled.set_threads(2, 1)
    compiled = blocked.compiled
    make = {"adam": lambda params: cr.Adam(params, lr=0.01), "sgd": lambda params: cr.SGD(params, lr=0.05)}[name]

    def twenty_steps(with_kernels):
        blocked.compiled = with_kernels
        try:
            rng = np.random.default_rng(0)
            # sizes that are no multiple of 16, above the size that is shared (2**15 elements)
            shapes = [(301, 171), (40001,)]
            params = [cr.Parameter(rng.standard_normal(shape, dtype=np.float32)) for shape in shapes]
            opt = make(params)
            for _ in range(20):
                for p in params:
                    p.grad[...] = rng.standard_normal(p.shape)
                opt.step()
            return [p.data for p in params]
        finally:
            blocked.compiled = compiled

    before = compiled.threads_report()["shared_ranges"]
    shared = twenty_steps(compiled)
    assert compiled.threads_report()["shared_ranges"] - before == 20 * 2
    for fused, plain in zip(shared, twenty_steps(None), strict=True):
        np.testing.assert_array_equal(fused, plain)


def test_a_product_cut_along_its_inner_dimension_has_the_same_bits_on_one_thread_and_two(blocked):
    """A product whose inner dimension is its longest (X·W of a first layer) is cut there: two partial
    products added in a fixed order, so one thread and two give the same bits; the sum is X·W to float32's
    rounding (against float64)."""
    rng = np.random.default_rng(1)
    a = rng.standard_normal((48, 3001), dtype=np.float32)
    b = rng.standard_normal((3001, 40), dtype=np.float32)
    results = []
    for forced in (0, 1):
        blocked.compiled.set_threads(2, forced)
        results.append(blocked.matmul(a, b))
    np.testing.assert_array_equal(results[0], results[1])
    exact = a.astype(np.float64) @ b.astype(np.float64)
    np.testing.assert_allclose(results[1], exact, rtol=0, atol=1e-4 * np.abs(exact).max())


def test_a_batch_gathered_with_the_helper_is_numpys(blocked):
    """The rows of a large batch are gathered in two halves shared with the helper (forced here): the batch
    is NumPy's X[rows]."""
    blocked.compiled.set_threads(2, 1)
    rng = np.random.default_rng(2)
    X = rng.standard_normal((5000, 301), dtype=np.float32)
    rows = rng.permutation(5000)[:257]  # 257 rows of 1,204 bytes: 309 KB
    before = blocked.compiled.threads_report()["shared_ranges"]
    batch = blocked.take_rows(X, rows, np.empty((257, 301), dtype=np.float32))
    assert blocked.compiled.threads_report()["shared_ranges"] == before + 1
    np.testing.assert_array_equal(batch, X[rows])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_process_forked_while_the_helper_sleeps_can_share_its_own_work(blocked):
    """fork() after the helper went to sleep: the child has no helper and the parent's locks and condition
    variable as new, so its first shared update starts its own helper instead of hanging on a signal to the
    parent's (which it did)."""
    blocked.compiled.set_threads(2, 1)
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((64, 784), dtype=np.float32), rng.standard_normal((784, 512), dtype=np.float32)
    blocked.matmul(a, b)  # starts the helper
    time.sleep(0.05)  # it spins 1 ms, then sleeps
    param, grad = np.ones(1 << 16, dtype=np.float32), np.ones(1 << 16, dtype=np.float32)
    pid = os.fork()
    if pid == 0:  # the child: exit 0 if its shared work finishes within 10 s
        signal.alarm(10)
        try:
            for _ in range(3):
                blocked.sgd_step(param, grad, 0.5)
                blocked.matmul(a, b)
            os._exit(0 if param[0] == -0.5 else 1)
        finally:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"the child ended with status {status}"


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads the resident memory from /proc")
def test_the_buffer_of_a_threads_partial_products_is_freed_when_the_thread_ends(blocked):
    """A product cut along its inner dimension keeps its partial (here 400 x 400 floats, 640 KB) in a buffer
    of the calling thread for the next products: 100 threads that each compute one and end leave no
    buffer behind (64 MB if they did)."""
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal((400, 1024), dtype=np.float32), rng.standard_normal((1024, 400), dtype=np.float32)

    def product_in_a_new_thread():
        thread = threading.Thread(target=blocked.matmul, args=(a, b))
        thread.start()
        thread.join()

    def resident_bytes():
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    for _ in range(10):  # the allocator's arenas for threads, made once
        product_in_a_new_thread()
    before = resident_bytes()
    for _ in range(100):
        product_in_a_new_thread()
    assert resident_bytes() - before < 16 << 20


@pytest.mark.parametrize("forced", [False, True])
def test_training_can_be_held_on_one_thread_or_two_for_benchmarks(blocked, monkeypatch, forced):
    """threads.forced_sharing (bench_threads.py's ``pair``, the helper always on): every large product of
    an epoch runs in the mode forced."""
    from chainrule.training import threads

    if threads.product_threads() < 2:
        pytest.skip("one core: training's products never share")
    monkeypatch.setattr(threads, "forced_sharing", forced)
    before = blocked.compiled.threads_report()
    one_epoch(*first_layer_problem())
    after = blocked.compiled.threads_report()
    ran = {mode: after[f"{mode}_products"] - before[f"{mode}_products"] for mode in ("serial", "parallel")}
    assert ran["parallel" if forced else "serial"] > 0
    assert ran["serial" if forced else "parallel"] == 0
