"""Parity with PyTorch's autograd (float64): outputs and every gradient to 1e-10, optimizers step by step.

PyTorch is the independent reference here: its layers and autograd compute what our hand-written
backward passes compute. These tests skip without torch, except in CI (CHAINRULE_REQUIRE_EXTRAS=1).
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import chainrule as cr

from helpers import assert_close
from torch_mirror import to_torch, torch_arrays, torch_loss, torch_optimizer


def compare_module(torch, layer, x, seed=0):
    """Forward, backward with a random upstream gradient, and every gradient, against PyTorch."""
    net = layer if isinstance(layer, cr.Sequential) else cr.Sequential(layer)
    mirror = to_torch(net)
    net.zero_grad()
    out = net.forward(x)
    G = np.random.default_rng([seed, 99]).standard_normal(out.shape)
    grad_x = net.backward(G)
    tx = torch.tensor(x, requires_grad=True)
    t_out = mirror(tx)
    t_out.backward(torch.from_numpy(G))
    assert_close(out, t_out.detach().numpy(), what="output")
    assert_close(grad_x, tx.grad.numpy(), what="grad input")
    reference = torch_arrays(mirror, net)
    ours = {name: p.grad for name, p in net.named_parameters()}
    assert ours.keys() == reference.keys()
    for name in ours:
        assert_close(ours[name], reference[name], what=f"grad {name}")
    return net, mirror


shapes = st.tuples(st.integers(2, 9), st.integers(1, 7), st.integers(0, 2**31 - 1))
CASES = settings(max_examples=15, deadline=None)


def test_every_registered_kind_has_a_torch_twin(torch):
    for kind in cr.LAYERS.kinds():
        assert isinstance(getattr(torch.nn, kind.cls.torch_name or "", None), type), kind.name
    assert {name for name, _ in OPTIMIZERS.values()} == set(cr.OPTIMIZERS.names())


@CASES
@given(shapes, st.sampled_from(["linear", "linear_nobias", *cr.activations.names()]))
def test_layers(torch, shape, name):
    n, d, seed = shape
    x = np.random.default_rng(seed).normal(0, 2, (n, d))
    if name.startswith("linear"):
        layer = cr.Linear(d, 3, bias=name == "linear", seed=seed, dtype=np.float64)
        layer.params["W"].data[...] = np.random.default_rng(seed + 1).normal(size=(d, 3))
    else:
        layer = cr.LAYERS[name].cls(*([0.2] if name == "leaky_relu" else []))
    compare_module(torch, layer, x, seed)


@CASES
@given(shapes, st.floats(1e-6, 1e-1))
def test_layernorm(torch, shape, eps):
    n, d, seed = shape
    rng = np.random.default_rng(seed)
    ln = cr.LayerNorm(d + 1, eps=eps, dtype=np.float64)
    ln.params["gamma"].data[:] = rng.normal(size=d + 1)
    ln.params["beta"].data[:] = rng.normal(size=d + 1)
    for training in (True, False):  # the same maths in both modes: each row's own statistics
        compare_module(torch, ln.train(training), rng.normal(1, 3, (n, d + 1)), seed)


@CASES
@given(shapes, st.booleans())
def test_batchnorm(torch, shape, training):
    n, d, seed = shape
    rng = np.random.default_rng(seed)
    bn = cr.BatchNorm1d(d, eps=1e-3, momentum=0.3, dtype=np.float64)
    bn.params["gamma"].data[:] = rng.normal(size=d)
    bn.params["beta"].data[:] = rng.normal(size=d)
    bn.buffers["running_mean"][:] = rng.normal(size=d)
    bn.buffers["running_var"][:] = rng.uniform(0.5, 2, size=d)
    bn.train(training)
    _net, mirror = compare_module(torch, bn, rng.normal(1, 3, (n + 1, d)), seed)
    assert_close(bn.buffers["running_mean"], mirror[0].running_mean.numpy(), what="running mean")
    assert_close(bn.buffers["running_var"], mirror[0].running_var.numpy(), what="running var")


@settings(max_examples=12, deadline=None)
@given(
    st.lists(st.integers(1, 8), min_size=1, max_size=4),
    st.integers(0, 2**31 - 1),
    # not the identity: a normalisation after an affine map of a normalisation is invariant to the first's
    # scale, whose gradient is then 0 in exact arithmetic and rounding noise in both implementations
    st.sampled_from([a for a in cr.activations.names(hidden=True) if a != "identity"]),
    st.sampled_from(["", "batchnorm", "layernorm"]),
    st.sampled_from(["identity", "softmax", "sigmoid"]),
)
def test_random_deep_networks(torch, hidden, seed, activation, norm, output):
    if norm == "layernorm":  # one or two features normalise to constants: gradients of rounding noise only
        hidden = [h + 2 for h in hidden]
    sizes = [5, *hidden, 3]
    net = cr.mlp(
        sizes,
        activation,
        output=output,
        batchnorm=norm == "batchnorm",
        layernorm=norm == "layernorm",
        seed=seed,
        dtype=np.float64,
    )
    x = np.random.default_rng(seed).normal(0, 1, (7, 5))
    compare_module(torch, net, x, seed)


# -- losses ----------------------------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(shapes, st.sampled_from(cr.LOSSES.names()), st.sampled_from(list(cr.losses.SCALES)), st.booleans())
def test_losses(torch, shape, name, scale, indices):
    n, d, seed = shape
    rng = np.random.default_rng(seed)
    d += 1
    logits = rng.normal(0, 3, (n, d))
    if name in ("mse",):
        pred, target = logits, rng.normal(size=(n, d))
    elif name in ("bce", "bce_with_logits"):
        target = rng.uniform(size=(n, d)).round()
        pred = 1 / (1 + np.exp(-logits)) if name == "bce" else logits
    else:
        labels = rng.integers(0, d, n)
        soft = cr.activations.softmax(rng.normal(size=(n, d)))
        target = labels if indices else soft
        pred = cr.activations.softmax(logits) if name == "cross_entropy" else logits
    loss = cr.make_loss(name, scale)
    value = loss.forward(pred, target)
    g = float(rng.normal())
    grad = loss.backward(g)
    t_pred = torch.tensor(pred, requires_grad=True)
    t_value = torch_loss(torch, name, scale, t_pred, torch.tensor(target), n)
    (g * t_value).backward()
    assert_close(value, t_value.item(), what=f"{name} value")
    assert_close(grad, t_pred.grad.numpy(), what=f"{name} gradient")


def test_extreme_inputs_stay_finite_and_match_torch(torch):
    F = torch.nn.functional
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4]])
    loss = cr.SoftmaxCrossEntropyLoss()
    value = loss.forward(logits, [1, 2])
    assert np.isfinite(value) and np.all(np.isfinite(loss.backward()))
    assert_close(value, F.cross_entropy(torch.tensor(logits), torch.tensor([1, 2])).item())
    probs = np.array([[0.0], [1.0], [1.0], [0.0]])
    bits = np.array([[0.0], [1.0], [0.0], [1.0]])
    bce = cr.BCELoss()
    value = bce.forward(probs, bits)
    assert np.isfinite(value) and np.all(np.isfinite(bce.backward()))
    assert_close(value, F.binary_cross_entropy(torch.tensor(probs), torch.tensor(bits)).item())


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 6), st.integers(2, 5), st.floats(0, 354), st.integers(0, 2**31 - 1))
def test_softmax_then_cross_entropy_agrees_with_the_fused_loss_and_torch(torch, n, classes, spread, seed):
    """Both spellings, to 1e-12, for logits up to 708 apart: probabilities down to e^-708 ≈ 3e-308, the
    smallest whose reciprocal is finite (beyond, the softmax itself rounds the probability to 0)."""
    rng = np.random.default_rng(seed)
    logits = rng.uniform(-spread, spread, (n, classes))
    labels = rng.integers(0, classes, n)
    fused = cr.SoftmaxCrossEntropyLoss()
    value_fused = fused.forward(logits, labels)
    grad_fused = fused.backward()
    softmax, separate = cr.Softmax(), cr.CrossEntropyLoss()
    value_separate = separate.forward(softmax.forward(logits), labels)
    grad_separate = softmax.backward(separate.backward())
    t_logits = torch.tensor(logits, requires_grad=True)
    t_value = torch.nn.functional.cross_entropy(t_logits, torch.tensor(labels))
    t_value.backward()
    # The value of the separate spelling is ln of a probability: near p = 1 it cannot be closer than the
    # rounding of p itself (1e-16 absolute), so it is compared relative to max(1, |L|)
    for value, grad, what, floor in (
        (value_fused, grad_fused, "fused", 1e-300),
        (value_separate, grad_separate, "separate", 1.0),
    ):
        assert_close(value, t_value.item(), 1e-12, what=f"{what} value", floor=floor)
        assert_close(grad, t_logits.grad.numpy(), 1e-12, what=f"{what} gradient")


def test_the_probability_floor_no_longer_bends_the_gradient(torch):
    """Logits [15, −13]: the second class has probability 6.9e-13. The old floor of 1e-12 made the
    separate spelling's gradient 30 % off there."""
    logits = np.array([[15.0, -13.0]])
    softmax, loss = cr.Softmax(), cr.CrossEntropyLoss()
    loss.forward(softmax.forward(logits), [1])
    grad = softmax.backward(loss.backward())
    t_logits = torch.tensor(logits, requires_grad=True)
    torch.nn.functional.cross_entropy(t_logits, torch.tensor([1])).backward()
    assert_close(grad, t_logits.grad.numpy(), 1e-12)


# -- optimizers ------------------------------------------------------------------------------------
#: A case -> (registered name, settings): every registered name at least once, with its settings varied.
OPTIMIZERS = {
    "sgd": ("sgd", {"lr": 0.1}),
    "sgd_wd": ("sgd", {"lr": 0.05, "weight_decay": 0.01}),
    "momentum": ("momentum", {"lr": 0.05, "momentum": 0.9, "dampening": 0.1}),
    "nesterov": ("nesterov", {"lr": 0.05, "momentum": 0.9, "weight_decay": 1e-3}),
    "adam": ("adam", {"lr": 0.01}),
    "adam_wd": ("adam", {"lr": 0.01, "beta1": 0.8, "beta2": 0.99, "eps": 1e-6, "weight_decay": 0.1}),
    "adamw": ("adamw", {"lr": 0.01, "weight_decay": 0.1}),
    "rmsprop": ("rmsprop", {"lr": 0.01}),
    "rmsprop_all": ("rmsprop", {"lr": 0.005, "alpha": 0.9, "eps": 1e-6, "momentum": 0.8, "weight_decay": 0.01}),
}


@pytest.mark.parametrize("case", list(OPTIMIZERS))
def test_twenty_optimizer_steps_match_torch_optim(torch, case):
    name, settings = OPTIMIZERS[case]
    rng = np.random.default_rng(7)
    net = cr.mlp([4, 6, 3], "tanh", batchnorm=True, seed=1, dtype=np.float64)
    mirror = to_torch(net)
    x, labels = rng.normal(size=(20, 4)), rng.integers(0, 3, 20)
    opt = cr.make_optimizer(name, net.parameters(), **settings)
    t_opt = torch_optimizer(torch, name, opt.config(), mirror.parameters())
    loss = cr.SoftmaxCrossEntropyLoss()
    for step in range(20):
        xb, yb = x[step % 4 * 5 :][:5], labels[step % 4 * 5 :][:5]
        opt.zero_grad()
        loss.forward(net.forward(xb), yb)
        net.backward(loss.backward())
        opt.step()
        t_opt.zero_grad()
        torch.nn.functional.cross_entropy(mirror(torch.tensor(xb)), torch.tensor(yb)).backward()
        t_opt.step()
    reference = torch_arrays(mirror, net, of=lambda t: t.detach())
    for pname, p in net.named_parameters():
        assert_close(p.data, reference[pname], what=f"{case}: {pname} after 20 steps")


@pytest.mark.parametrize("schedule", ["step", "cosine"])
def test_learning_rate_schedules_match_torch(torch, schedule):
    p = cr.Parameter(np.zeros(1))
    opt = cr.SGD([p], lr=0.5)
    t_opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5)
    if schedule == "step":
        ours, theirs = cr.StepLR(opt, 3, 0.5), torch.optim.lr_scheduler.StepLR(t_opt, 3, 0.5)
    else:
        ours, theirs = cr.CosineAnnealingLR(opt, 10, 0.01), torch.optim.lr_scheduler.CosineAnnealingLR(t_opt, 10, 0.01)
    for _ in range(10):
        t_opt.step()
        ours.step()
        theirs.step()
        assert opt.lr == pytest.approx(t_opt.param_groups[0]["lr"], rel=1e-12)
