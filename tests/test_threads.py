"""Training runs NumPy's BLAS on one thread (chainrule.training.threads): its numbers do not depend on the
BLAS threads set around it, and CHAINRULE_BLAS_THREADS chooses another count or says what is wrong."""

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
