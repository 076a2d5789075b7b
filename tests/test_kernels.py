"""The compiled loops (chainrule/_kernels.c) against the NumPy code they replace.

CI builds the extension and sets CHAINRULE_REQUIRE_KERNELS=1, so these tests fail there rather than skip.
"""

import math
import os

import numpy as np
import pytest

import chainrule as cr
from chainrule import kernels


@pytest.fixture
def compiled():
    if kernels.compiled is None:
        if os.environ.get("CHAINRULE_REQUIRE_KERNELS") == "1":
            pytest.fail("CHAINRULE_REQUIRE_KERNELS=1 but chainrule._kernels is not built")
        pytest.skip("chainrule._kernels is not built")
    return kernels.compiled


OPTIMIZERS = {
    "adam": lambda params: cr.Adam(params, lr=0.01, betas=(0.8, 0.99), weight_decay=0.1),
    "adamw": lambda params: cr.AdamW(params, lr=0.01, weight_decay=0.1),
    "sgd": lambda params: cr.SGD(params, lr=0.05, weight_decay=0.1),
    "nesterov": lambda params: cr.SGD(params, lr=0.05, momentum=0.9, nesterov=True),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_fused_updates_give_the_bits_of_the_numpy_updates(compiled, name, dtype, monkeypatch):
    """Every operation is rounded as in the NumPy code, so 20 steps give identical arrays — for sizes that
    end in a partial vector of every instruction set (AVX-512 holds 16 floats)."""

    def twenty_steps(with_kernels):
        monkeypatch.setattr(kernels, "compiled", with_kernels)
        rng = np.random.default_rng(0)
        params = [cr.Parameter(rng.standard_normal(shape).astype(dtype)) for shape in [(30, 7), (1031,), (3,)]]
        opt = OPTIMIZERS[name](params)
        for _ in range(20):
            for p in params:
                p.grad[...] = rng.standard_normal(p.shape)
            opt.step()
        return [p.data for p in params]

    for fused, plain in zip(twenty_steps(compiled), twenty_steps(None), strict=True):
        np.testing.assert_array_equal(fused, plain)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_adam_stores_a_subnormal_moment_as_zero_and_nothing_else_differs(compiled, dtype, monkeypatch):
    """Weights whose gradient stays 0 (a dead ReLU unit) have moments that decay into the subnormal range,
    where each operation is 3.5x slower: the compiled update stores those moments as zeros of their sign.
    Against the plain NumPy update, step by step: moments equal wherever NumPy's is a normal number, and
    where it is subnormal the compiled one is 0 (a difference below the smallest normal number); the
    weights identical."""
    tiny = np.finfo(dtype).tiny
    steps = 200 if dtype == np.float32 else 1200  # 0.5ᵗ falls below 2⁻¹²⁶ (float32), 2⁻¹⁰²² (float64)
    rng = np.random.default_rng(0)
    start = [rng.standard_normal(1031).astype(dtype) for _ in range(2)]  # weights, first gradient
    arrays = {name: [start[0].copy(), np.zeros(1031, dtype), np.zeros(1031, dtype)] for name in ("fused", "plain")}
    dead = np.arange(1031) % 2 == 0  # these get a gradient at the first step only
    subnormal_seen = False
    for t in range(1, steps + 1):
        g = start[1] * rng.uniform(0.5, 2, 1031).astype(dtype)
        if t > 1:
            g[dead] = 0
        g[:3] = [0.0, -0.0, 1e-30]
        constants = (0.5, 0.5, 0.01 / (1 - 0.5**t), 1 / math.sqrt(1 - 0.5**t), 1e-8)
        for name, with_kernels in (("fused", compiled), ("plain", None)):
            monkeypatch.setattr(kernels, "compiled", with_kernels)
            kernels.adam_step(arrays[name][0], g, *arrays[name][1:], *constants)
        for fused, plain in zip(arrays["fused"], arrays["plain"], strict=True):
            normal = ~((plain != 0) & (np.abs(plain) < tiny))
            np.testing.assert_array_equal(fused[normal], plain[normal])
            assert np.all(fused[~normal] == 0)  # |difference| < tiny (the sign of a zero may differ later)
            subnormal_seen |= not normal.all()
    assert subnormal_seen  # the reference did go subnormal, so the flush was exercised


def test_updates_fall_back_to_numpy_for_arrays_the_kernels_do_not_take(compiled):
    """A non-contiguous gradient (or mixed dtypes) goes the NumPy way and still gives the SGD step."""
    p = cr.Parameter(np.ones((4, 6), dtype=np.float32))
    p.grad = np.full((6, 4), 2.0, dtype=np.float32).T  # Fortran order
    assert not kernels.fusable(p.data, p.grad)
    cr.SGD([p], lr=0.25).step()
    np.testing.assert_array_equal(p.data, np.full((4, 6), 0.5, dtype=np.float32))


@pytest.mark.parametrize("shape, dtype", [((1000, 784), np.float32), ((50, 3, 5), np.float64), ((40,), np.uint8)])
def test_take_rows_equals_numpy_take(compiled, shape, dtype):
    rng = np.random.default_rng(1)
    X = (rng.random(shape) * 200).astype(dtype)
    for rows in (rng.permutation(shape[0])[:37], np.array([0, shape[0] - 1, 0, 5]), np.array([], dtype=np.intp)):
        out = np.empty((len(rows), *shape[1:]), dtype=dtype)
        assert kernels.take_rows(X, rows.astype(np.intp), out) is out
        np.testing.assert_array_equal(out, X[rows])


def test_take_rows_refuses_rows_out_of_range_and_mismatched_outputs(compiled):
    X = np.arange(12, dtype=np.float32).reshape(4, 3)
    out = np.zeros((2, 3), dtype=np.float32)
    for bad in ([0, 4], [-1, 0]):
        with pytest.raises(IndexError, match="out of range"):
            compiled.take_rows(X, np.array(bad, dtype=np.intp), out)
    np.testing.assert_array_equal(out, 0)  # nothing was copied before the check
    with pytest.raises(ValueError, match="rows need"):
        compiled.take_rows(X, np.array([0, 1, 2], dtype=np.intp), out)
    with pytest.raises(TypeError):
        compiled.take_rows(X, np.array([0, 1], dtype=np.int32), out)


def test_take_rows_falls_back_to_numpy_for_other_index_types_and_layouts(compiled):
    X = np.asfortranarray(np.arange(20, dtype=np.float32).reshape(5, 4))
    out = np.empty((2, 4), dtype=np.float32)
    np.testing.assert_array_equal(kernels.take_rows(X, np.array([4, 1], dtype=np.int32), out), X[[4, 1]])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_kernels_give_numpys_results_bit_for_bit(compiled, dtype):
    """Forward max(z, 0) and backward grad·[a > 0] equal NumPy's, signs of zeros, NaN and inf included,
    on a size that ends in a partial vector."""
    rng = np.random.default_rng(2)
    z = rng.standard_normal((37, 29)).astype(dtype)
    z[0, :6] = [np.nan, -np.inf, np.inf, -0.0, 0.0, -1e-30]
    grad = rng.standard_normal(z.shape).astype(dtype)
    grad[1, :3] = [np.inf, -np.inf, np.nan]
    a = kernels.relu(z)
    expected = np.maximum(z, 0)
    np.testing.assert_array_equal(a, expected)
    np.testing.assert_array_equal(np.signbit(a), np.signbit(expected))
    a[1, :3] = [0.0, 1.0, 0.0]  # an infinite gradient where the ReLU was off gives NaN, as inf·0 does
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(kernels.relu_grad(grad, a), grad * (a > 0))


def test_relu_kernels_read_read_only_inputs_and_fall_back_for_other_layouts(compiled):
    z = np.linspace(-1, 1, 12).reshape(3, 4)
    z.flags.writeable = False
    np.testing.assert_array_equal(kernels.relu(z), np.maximum(z, 0))
    np.testing.assert_array_equal(kernels.relu(z.T), np.maximum(z.T, 0))  # not C-contiguous: NumPy's path
    np.testing.assert_array_equal(kernels.relu(np.arange(-2, 3)), [0, 0, 0, 1, 2])  # integers: NumPy's path


def test_compiled_loops_refuse_arrays_they_cannot_take(compiled):
    """Called directly with the wrong arrays, the loops raise; they never read past an array."""
    a32, b32 = np.zeros(5, dtype=np.float32), np.zeros(5, dtype=np.float32)
    with pytest.raises(ValueError, match="same size and dtype"):
        compiled.sgd_step(a32, np.zeros(4, dtype=np.float32), 0.1)
    with pytest.raises(ValueError, match="same size and dtype"):
        compiled.relu(a32, np.zeros(5, dtype=np.float64))
    with pytest.raises(TypeError, match="float32 or float64"):
        compiled.relu(np.zeros(5, dtype=np.int32), np.zeros(5, dtype=np.int32))
    with pytest.raises(TypeError, match="takes 4 arrays and 5 numbers"):
        compiled.adam_step(a32, b32, a32, b32, 0.9)
    with pytest.raises(TypeError):
        compiled.sgd_step(a32, b32, "fast")
    read_only = np.zeros(5, dtype=np.float32)
    read_only.flags.writeable = False
    with pytest.raises((ValueError, BufferError)):
        compiled.sgd_step(read_only, b32, 0.1)  # the parameter is written


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_erf_kernel_is_the_c_librarys_and_its_fallback_pythons(compiled, dtype, monkeypatch):
    """The error function of GELU: compiled (the C library's erf/erff) and NumPy-side (math.erf per entry)
    against math.erf, which is the C library's for one number; tails, zero, infinities and NaN included."""
    import math

    x = np.concatenate([np.linspace(-8, 8, 1001), [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-300]]).astype(dtype)
    exact = np.array([math.erf(v) for v in x.astype(np.float64)])
    fast = kernels.erf(x)
    assert fast.dtype == dtype
    tolerance = 0 if dtype == np.float64 else 2e-7  # float32: erff against the rounded double
    np.testing.assert_allclose(fast, exact.astype(dtype), rtol=tolerance, atol=tolerance)
    monkeypatch.setattr(kernels, "compiled", None)
    np.testing.assert_array_equal(kernels.erf(x), exact.astype(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(64, 512), (2, 3), (257, 1031), (64, 1), (1, 4)])
def test_batch_norm_kernels_give_the_bits_of_the_numpy_code(compiled, dtype, shape, monkeypatch):
    """BatchNorm's training passes, compiled and in NumPy, on columns of very different scales and shifts
    (where the order of a sum shows), one column of -0.0 (whose sum is +0.0): every array the same, bit for
    bit. One feature (NumPy sums a column pairwise) stays with NumPy."""
    rng = np.random.default_rng(0)
    d = shape[1]
    x = (rng.standard_normal(shape) * rng.uniform(0.01, 100, d) + rng.uniform(-50, 50, d)).astype(dtype)
    x[:, -1] = -0.0
    gamma, beta = rng.standard_normal(d).astype(dtype), rng.standard_normal(d).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)

    def both_passes():
        forward = kernels.batch_norm(x, gamma, beta, 1e-5)
        return forward, kernels.batch_norm_backward(g, forward[1], gamma, forward[4])

    fused = both_passes()
    monkeypatch.setattr(kernels, "compiled", None)
    plain = both_passes()
    bits = np.uint32 if dtype == np.float32 else np.uint64  # -0.0 and +0.0 are equal numbers, not bits
    for fused_arrays, plain_arrays in zip(fused, plain, strict=True):
        for a, b in zip(fused_arrays, plain_arrays, strict=True):
            assert a.dtype == b.dtype == dtype
            np.testing.assert_array_equal(a.view(bits), b.view(bits))
