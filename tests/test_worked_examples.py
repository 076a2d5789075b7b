"""The maths of the notes chainrule grew from (docs/background.md), with the numbers worked by hand, and
the slips of their worked solutions corrected."""

import numpy as np
import pytest

import chainrule as cr


def relu_network():
    """y = ReLU(X·W₀)·W₂, no biases: the hand exercise."""
    return cr.Sequential(cr.Linear.from_arrays([[1, -1], [0.5, 0]]), cr.ReLU(), cr.Linear.from_arrays([[0.5], [1]]))


X_EXERCISE = np.array([[1.0, 2.0], [-1.0, 2.0]])


def test_softmax_cross_entropy_of_1_2_3():
    z, y = np.array([[1.0, 2.0, 3.0]]), np.array([1])
    softmax = cr.Softmax()
    probs = softmax.forward(z)
    np.testing.assert_allclose(probs[0], [0.0900306, 0.2447285, 0.6652410], atol=5e-8)
    for spelling in ("fused", "separate"):
        if spelling == "fused":
            loss = cr.SoftmaxCrossEntropyLoss()
            value = loss.forward(z, y)
            grad = loss.backward()
        else:
            loss = cr.CrossEntropyLoss()
            value = loss.forward(probs, y)
            grad = softmax.backward(loss.backward())
        assert value == pytest.approx(1.4076060, abs=5e-8), spelling
        np.testing.assert_allclose(grad[0], [0.0900306, -0.7552715, 0.6652410], atol=5e-8, err_msg=spelling)


def test_softmax_example_intermediate_derivative():
    """∂L/∂σ₂ = −1/σ₂ ≈ −4.086 (the notes round σ₂ to 0.245 first and get −4.082)."""
    loss = cr.CrossEntropyLoss()
    loss.forward(cr.activations.softmax(np.array([[1.0, 2.0, 3.0]])), [1])
    np.testing.assert_allclose(loss.backward()[0], [0, -1 / 0.2447284710547976, 0], rtol=1e-12)


def test_relu_exercise_forward_backward_and_step_with_correct_arithmetic():
    net = relu_network()
    loss = cr.MSELoss("half_mean")
    H1 = net[0].forward(X_EXERCISE)
    np.testing.assert_array_equal(H1, [[2, -1], [0, 1]])  # the published H1[0][1] = -0.5 is a slip
    O1 = net[1].forward(H1)
    y_hat = net[2].forward(O1)
    np.testing.assert_array_equal(y_hat, [[1], [1]])
    assert loss.forward(y_hat, [2, 1]) == 0.25
    d = loss.backward()
    np.testing.assert_array_equal(d, [[-0.5], [0]])  # (ŷ − y)/n: the published d = (−1, 0) lacks the 1/n
    d = net[2].backward(d)
    d = net[1].backward(d)
    net[0].backward(d)
    np.testing.assert_array_equal(net[2].params["W"].grad, [[-1], [0]])
    np.testing.assert_array_equal(net[0].params["W"].grad, [[-0.25, 0], [-0.5, 0]])
    cr.SGD(net.parameters(), lr=1.0).step()
    np.testing.assert_array_equal(net[0].params["W"].data, [[1.25, -1], [1, 0]])
    np.testing.assert_array_equal(net[2].params["W"].data, [[1.5], [1]])


def test_relu_exercise_sigmoid_logloss_variant():
    """σ(ŷ) = σ(1) ≈ 0.731 for both rows; with y = (0, 1) the gradient entering the sigmoid is
    (p − y)/n: positive for y = 0, negative for y = 1 (the published 1.4 for y = 1 has the wrong sign)."""
    p = 1 / (1 + np.exp(-1.0))
    y = np.array([[0.0], [1.0]])
    net = cr.Sequential(*relu_network().layers, cr.Sigmoid())
    bce = cr.BCELoss()
    probs = net.forward(X_EXERCISE)
    np.testing.assert_allclose(probs, [[p], [p]], rtol=1e-15)
    assert bce.forward(probs, y) == pytest.approx(-(np.log(1 - p) + np.log(p)) / 2, rel=1e-14)
    d_probs = bce.backward()
    np.testing.assert_allclose(d_probs, [[1 / (1 - p) / 2], [-1 / p / 2]], rtol=1e-12)
    delta = net[3].backward(d_probs)
    np.testing.assert_allclose(delta, [[p / 2], [(p - 1) / 2]], rtol=1e-12)


@pytest.mark.parametrize("pair", ["mse+identity", "cross_entropy+softmax", "bce+sigmoid"])
def test_three_output_pairs_give_a_minus_y_over_m(pair):
    rng = np.random.default_rng(1)
    m, k = 6, 4
    z = rng.normal(size=(m, k))
    if pair == "mse+identity":
        activation, loss, y = cr.Identity(), cr.MSELoss("half_mean"), rng.normal(size=(m, k))
    elif pair == "cross_entropy+softmax":
        activation, loss, y = cr.Softmax(), cr.CrossEntropyLoss(), np.eye(k)[rng.integers(0, k, m)]
    else:
        activation, loss, y = cr.Sigmoid(), cr.BCELoss(), rng.integers(0, 2, (m, k)).astype(float)
    a = activation.forward(z)
    loss.forward(a, y)
    delta = activation.backward(loss.backward())
    np.testing.assert_allclose(delta, (a - y) / m, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("fused,separate", [("softmax_cross_entropy", "cross_entropy"), ("bce_with_logits", "bce")])
def test_fused_and_separate_spellings_give_the_same_gradients(fused, separate):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(8, 5))
    outputs = 3 if fused.startswith("softmax") else 1
    y = rng.integers(0, 3, 8) if outputs == 3 else rng.integers(0, 2, (8, 1)).astype(float)
    body = cr.mlp([5, 7, outputs], "tanh", seed=3, dtype=np.float64)
    head = cr.Softmax() if outputs == 3 else cr.Sigmoid()
    twin = cr.Sequential(*body.astype(np.float64).layers, head)
    results = []
    for net, loss in ((body, cr.make_loss(fused)), (twin, cr.make_loss(separate))):
        net.zero_grad()
        value = loss.forward(net.forward(x), y)
        net.backward(loss.backward())
        results.append((value, [p.grad.copy() for p in net.parameters()]))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-12)
    for g_fused, g_separate in zip(results[0][1], results[1][1], strict=True):
        np.testing.assert_allclose(g_fused, g_separate, rtol=1e-9, atol=1e-14)


def test_softmax_regression_gradient_with_l2():
    """∂loss/∂W = Xᵀ(S − Y)/M + λW, ∂loss/∂b = Σ(S − Y)/M: the bias is not regularised."""
    rng = np.random.default_rng(3)
    M, N, L, lam = 16, 20, 10, 0.1
    X, labels = rng.uniform(size=(M, N)), rng.integers(0, L, M)
    model = cr.softmax_regression(N, L, init="xavier_normal", seed=4, dtype=np.float64)
    model[0].params["b"].data[:] = rng.normal(size=L)
    loss = cr.SoftmaxCrossEntropyLoss()
    params = model.parameters()
    value = loss.forward(model.forward(X), labels) + cr.l2_penalty(params, lam)
    model.backward(loss.backward())
    cr.add_l2_grad(params, lam)
    W, b = model[0].params["W"].data, model[0].params["b"].data
    f = X @ W + b
    f -= f.max(axis=1, keepdims=True)  # the max-subtraction of the notes
    S = np.exp(f) / np.exp(f).sum(axis=1, keepdims=True)
    Y = np.eye(L)[labels]
    assert value == pytest.approx(-np.sum(Y * np.log(S)) / M + lam / 2 * np.sum(W**2), rel=1e-12)
    np.testing.assert_allclose(model[0].params["W"].grad, X.T @ (S - Y) / M + lam * W, rtol=1e-10)
    np.testing.assert_allclose(model[0].params["b"].grad, (S - Y).sum(axis=0) / M, rtol=1e-10)
