"""Parity with PyTorch's autograd (float64): outputs and every gradient to 1e-10, optimizers step by step.

PyTorch is the independent reference here: its layers and autograd compute what our hand-written
backward passes compute. These tests skip without torch, except in CI (CHAINRULE_REQUIRE_TORCH=1).
"""


import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import chainrule as cr
from helpers import assert_close
from torch_mirror import to_torch, torch_arrays, torch_loss


def compare_module(torch, layer, x, seed=0):
    """Forward, backward with a random upstream gradient, and every gradient, against PyTorch."""
    net = layer if isinstance(layer, cr.Sequential) else cr.Sequential(layer)
    mirror = to_torch(torch, net)
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


@CASES
@given(shapes, st.sampled_from(["linear", "linear_nobias", "identity", "sigmoid", "tanh", "relu",
                                "leaky_relu", "softmax"]))
def test_layers(torch, shape, name):
    n, d, seed = shape
    x = np.random.default_rng(seed).normal(0, 2, (n, d))
    if name.startswith("linear"):
        layer = cr.Linear(d, 3, bias=name == "linear", seed=seed, dtype=np.float64)
        layer.params["W"].data[...] = np.random.default_rng(seed + 1).normal(size=(d, 3))
    else:
        layer = cr.activations.ACTIVATIONS[name](*([0.2] if name == "leaky_relu" else []))
    compare_module(torch, layer, x, seed)


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
    net, mirror = compare_module(torch, bn, rng.normal(1, 3, (n + 1, d)), seed)
    assert_close(bn.buffers["running_mean"], mirror[0].running_mean.numpy(), what="running mean")
    assert_close(bn.buffers["running_var"], mirror[0].running_var.numpy(), what="running var")


@settings(max_examples=12, deadline=None)
@given(st.lists(st.integers(1, 8), min_size=1, max_size=4), st.integers(0, 2**31 - 1),
       st.sampled_from(["relu", "tanh", "sigmoid", "leaky_relu"]), st.booleans(),
       st.sampled_from(["identity", "softmax", "sigmoid"]))
def test_random_deep_networks(torch, hidden, seed, activation, batchnorm, output):
    sizes = [5, *hidden, 3]
    net = cr.mlp(sizes, activation, output=output, batchnorm=batchnorm, seed=seed, dtype=np.float64)
    x = np.random.default_rng(seed).normal(0, 1, (7, 5))
    compare_module(torch, net, x, seed)


# -- losses ----------------------------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(shapes, st.sampled_from(list(cr.losses.LOSSES)), st.sampled_from(list(cr.losses.SCALES)),
       st.booleans())
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


# -- optimizers ------------------------------------------------------------------------------------
OPTIMIZERS = {
    "sgd": (lambda p: cr.SGD(p, lr=0.1), lambda t, p: t.optim.SGD(p, lr=0.1)),
    "sgd_wd": (lambda p: cr.SGD(p, lr=0.05, weight_decay=0.01),
               lambda t, p: t.optim.SGD(p, lr=0.05, weight_decay=0.01)),
    "momentum": (lambda p: cr.SGD(p, lr=0.05, momentum=0.9, dampening=0.1),
                 lambda t, p: t.optim.SGD(p, lr=0.05, momentum=0.9, dampening=0.1)),
    "nesterov": (lambda p: cr.SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
                 lambda t, p: t.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3)),
    "adam": (lambda p: cr.Adam(p, lr=0.01), lambda t, p: t.optim.Adam(p, lr=0.01)),
    "adam_wd": (lambda p: cr.Adam(p, lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1),
                lambda t, p: t.optim.Adam(p, lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    "adamw": (lambda p: cr.AdamW(p, lr=0.01, weight_decay=0.1),
              lambda t, p: t.optim.AdamW(p, lr=0.01, weight_decay=0.1)),
}


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_twenty_optimizer_steps_match_torch_optim(torch, name):
    ours_opt, torch_opt = OPTIMIZERS[name]
    rng = np.random.default_rng(7)
    net = cr.mlp([4, 6, 3], "tanh", batchnorm=True, seed=1, dtype=np.float64)
    mirror = to_torch(torch, net)
    x, labels = rng.normal(size=(20, 4)), rng.integers(0, 3, 20)
    opt, t_opt = ours_opt(net.parameters()), torch_opt(torch, mirror.parameters())
    loss = cr.SoftmaxCrossEntropyLoss()
    for step in range(20):
        xb, yb = x[step % 4 * 5:][:5], labels[step % 4 * 5:][:5]
        opt.zero_grad()
        loss.forward(net.forward(xb), yb)
        net.backward(loss.backward())
        opt.step()
        t_opt.zero_grad()
        torch.nn.functional.cross_entropy(mirror(torch.tensor(xb)), torch.tensor(yb)).backward()
        t_opt.step()
    reference = torch_arrays(mirror, net, of=lambda t: t.detach())
    for pname, p in net.named_parameters():
        assert_close(p.data, reference[pname], what=f"{name}: {pname} after 20 steps")


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

