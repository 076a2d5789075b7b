"""Every layer and loss against central differences (float64, random shapes, random upstream gradient)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import chainrule as cr
from chainrule.gradcheck import builtin_checks, gradcheck, relative_error

from helpers import check_gradients

shapes = st.tuples(st.integers(2, 7), st.integers(1, 6), st.integers(0, 2**31 - 1))
FAST = settings(max_examples=25, deadline=None)


def random_input(n, d, seed, scale=1.5):
    return np.random.default_rng(seed).normal(0, scale, size=(n, d))


@FAST
@given(shapes, st.integers(1, 5), st.booleans())
def test_linear(shape, out, bias):
    n, d, seed = shape
    check_gradients(cr.Linear(d, out, bias, seed=seed, dtype=np.float64), random_input(n, d, seed), seed=seed)


@FAST
@given(shapes, st.sampled_from(cr.activations.names()))
def test_activations(shape, name):
    n, d, seed = shape
    layer = cr.LAYERS[name].cls()
    report = check_gradients(layer, random_input(n, d, seed, scale=3.0), seed=seed)
    assert report.worst.error < 1e-7


def test_local_derivative_is_what_backward_multiplies_by():
    """The trace's f'(z) is the backward pass of ones; for each element-wise activation it must also be
    the derivative itself, computed here independently by central differences entry by entry."""
    z = random_input(4, 5, 0, scale=2.0)
    for name in cr.activations.names(hidden=True):
        layer = cr.LAYERS[name].cls()
        layer.forward(z)
        h = 1e-6
        numeric = (cr.LAYERS[name].cls().forward(z + h) - cr.LAYERS[name].cls().forward(z - h)) / (2 * h)
        np.testing.assert_allclose(layer.local_derivative(), numeric, rtol=1e-7, atol=1e-9, err_msg=name)


@FAST
@given(shapes, st.booleans(), st.floats(1e-6, 1e-2))
def test_layernorm(shape, affine_random, eps):
    n, d, seed = shape
    d += 2  # two features normalise to ±1 whatever they hold: a gradient of rounding noise only
    check_normalisation(cr.LayerNorm(d, eps=eps, dtype=np.float64), n, seed, affine_random)


def check_normalisation(layer, n, seed, affine_random):
    """A normalisation (random γ and β, or the initial ones) against finite differences, on inputs far
    from zero mean and unit variance."""
    d = layer.params["gamma"].shape[0]
    if affine_random:
        rng = np.random.default_rng(seed)
        layer.params["gamma"].data[:] = rng.normal(size=d)
        layer.params["beta"].data[:] = rng.normal(size=d)
    report = check_gradients(layer, random_input(n, d, seed) * 3 + 1, seed=seed)
    # tighter than gradcheck's own atol (1e-8), but a gradient near 0 (β's is the column sum of the random
    # upstream gradient: 1.7e-4 for one found case) has a relative error of finite-difference noise alone
    assert all(check.error < 1e-7 or check.abs_error <= 1e-9 for check in report.checks), str(report)


@FAST
@given(shapes, st.floats(0.0, 0.9))
def test_leaky_relu_any_alpha(shape, alpha):
    n, d, seed = shape
    check_gradients(cr.LeakyReLU(alpha), random_input(n, d, seed), seed=seed)


@FAST
@given(shapes, st.booleans())
def test_batchnorm_training_mode_full_backward(shape, affine_random):
    n, d, seed = shape
    n += 1  # two rows normalise to ±1 whatever they hold: a gradient of rounding noise only
    check_normalisation(cr.BatchNorm1d(d, dtype=np.float64), n, seed, affine_random)


@FAST
@given(shapes)
def test_batchnorm_evaluation_mode(shape):
    n, d, seed = shape
    rng = np.random.default_rng(seed)
    bn = cr.BatchNorm1d(d, dtype=np.float64)
    bn.buffers["running_mean"][:] = rng.normal(size=d)
    bn.buffers["running_var"][:] = rng.uniform(0.1, 3, size=d)
    check_gradients(bn.eval(), random_input(n, d, seed), seed=seed)


@FAST
@given(shapes, st.floats(0.0, 0.95))
def test_dropout(shape, p):
    n, d, seed = shape
    check_gradients(cr.Dropout(p, seed=seed), random_input(n, d, seed), seed=seed)


@FAST
@given(shapes, st.sampled_from(["mean", "sum", "half_mean", "half_sum"]))
def test_mse_every_scale(shape, scale):
    n, d, seed = shape
    rng = np.random.default_rng(seed)
    check_gradients(cr.MSELoss(scale), rng.normal(size=(n, d)), rng.normal(size=(n, d)), seed=seed)


@FAST
@given(shapes, st.booleans())
def test_classification_losses(shape, indices):
    n, classes, seed = shape
    classes += 1
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2, size=(n, classes))
    labels = rng.integers(0, classes, n)
    target = labels if indices else np.eye(classes)[labels]
    check_gradients(cr.SoftmaxCrossEntropyLoss(), logits, target, seed=seed)
    # −y/p is steep at small p: finite differences need p well above their step to be exact to 1e-7
    check_gradients(cr.CrossEntropyLoss(), cr.activations.softmax(logits / 2), target, seed=seed)


@FAST
@given(shapes)
def test_binary_losses(shape):
    n, d, seed = shape
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2, size=(n, d))
    target = rng.uniform(size=(n, d)).round()
    check_gradients(cr.BCEWithLogitsLoss(), logits, target, seed=seed)
    # as for cross-entropy: p far above the step of the finite differences (a p of 1.5e-4 failed at 4.7e-7)
    check_gradients(cr.BCELoss(), 1 / (1 + np.exp(-logits / 2)), target, seed=seed)


@settings(max_examples=10, deadline=None)
@given(
    st.lists(st.integers(1, 5), min_size=1, max_size=4),
    st.integers(0, 2**31 - 1),
    st.sampled_from(cr.activations.names(hidden=True)),
    st.sampled_from(["", "batchnorm", "layernorm"]),
    st.booleans(),
)
def test_deep_network_with_loss(hidden, seed, activation, norm, dropout):
    if norm == "layernorm":  # one or two features normalise to constants: gradients of rounding noise only
        hidden = [h + 2 for h in hidden]
    sizes = [3, *hidden, 4]
    net = cr.mlp(
        sizes,
        activation,
        batchnorm=norm == "batchnorm",
        layernorm=norm == "layernorm",
        dropout=0.3 if dropout else 0.0,
        seed=seed,
        dtype=np.float64,
    )
    rng = np.random.default_rng(seed)
    for p in net.parameters():  # biases off zero: a dead ReLU row then never sits on the kink at 0
        p.data += rng.normal(0, 0.3, p.shape)
    x = random_input(6, 3, seed)
    labels = rng.integers(0, 4, 6)
    check_gradients(net, x, labels, loss=cr.SoftmaxCrossEntropyLoss(), seed=seed)
    check_gradients(net, x, seed=seed)


def test_tied_weights_accumulate_the_gradients_of_both_uses():
    first = cr.Linear(3, 3, seed=1, dtype=np.float64)
    second = cr.Linear(3, 3, seed=2, dtype=np.float64)
    second.params = first.params  # the same Parameter objects: one W, one b, two call sites
    net = cr.Sequential(first, cr.Tanh(), second)
    assert len(net.parameters()) == 2
    check_gradients(net, random_input(4, 3, 2))


def test_two_backward_passes_add_up():
    layer = cr.Linear(3, 2, seed=0, dtype=np.float64)
    x1, x2 = random_input(4, 3, 1), random_input(5, 3, 2)
    g1, g2 = random_input(4, 2, 3), random_input(5, 2, 4)
    layer.forward(x1), layer.backward(g1)
    layer.forward(x2), layer.backward(g2)
    np.testing.assert_allclose(layer.params["W"].grad, x1.T @ g1 + x2.T @ g2, rtol=1e-12)
    layer.zero_grad()
    assert not layer.params["W"].grad.any()


def test_gradcheck_catches_a_wrong_gradient():
    class WrongSigmoid(cr.Sigmoid):
        def times_derivative(self, grad):  # forgets the (1 − σ) factor
            return grad * self.out

    report = gradcheck(WrongSigmoid(), random_input(4, 3, 0))
    assert not report.passed
    assert report.worst.name == "input" and report.worst.error > 1e-3
    assert "FAILED" in str(report)


def test_gradcheck_catches_a_missing_parameter_gradient():
    class NoBiasGrad(cr.Linear):
        def backward(self, grad_output):
            out = super().backward(grad_output)
            self.params["b"].grad[...] = 0
            return out

    report = gradcheck(NoBiasGrad(3, 2, seed=0), random_input(4, 3, 0))
    assert [c.name for c in report.checks if not c.passed] == ["b"]


def test_gradcheck_leaves_the_subject_unchanged():
    layer = cr.Linear(3, 2, seed=0)
    before = layer.params["W"].data.copy()
    gradcheck(layer, random_input(4, 3, 0))
    assert layer.params["W"].data.dtype == np.float32
    np.testing.assert_array_equal(layer.params["W"].data, before)
    assert not layer.params["W"].grad.any()


def test_relative_error_definition():
    assert relative_error(np.array([1.0, 2.0]), np.array([1.0, 2.0])) == 0.0
    assert relative_error(np.array([1.0, 3.0]), np.array([1.0, 2.0])) == pytest.approx(1 / 5)
    assert relative_error(np.zeros(3), np.zeros(3)) == 0.0


@pytest.mark.parametrize("name", list(builtin_checks()))
def test_builtin_catalogue(name):
    report = builtin_checks(seed=3)[name]()
    assert report.passed, str(report)


def test_builtin_catalogue_covers_every_registered_kind():
    names = set(builtin_checks())
    for kind in cr.LAYERS.kinds():
        assert kind.name in names, f"no gradient check of the layer kind {kind.name!r}"
    for kind in cr.LOSSES.kinds():
        assert any(n == kind.name or n.startswith(f"{kind.name}_") for n in names), kind.name
