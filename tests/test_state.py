"""State dicts of modules, optimizers and schedules; the optimizers' plain NumPy updates against what they
run; model files (old and new) and checkpoints of the new kinds; predictions that know logits from
probabilities; files created with the process's umask."""

import copy
import json
import os
import stat

import numpy as np
import pytest

import chainrule as cr
from chainrule import kernels
from chainrule.archive import atomic_write
from chainrule.errors import ConfigError, ShapeError
from chainrule.optim import adam_update, rmsprop_update, sgd_update
from chainrule.training.loop import accuracy
from chainrule.training.modelfile import load_model


def test_module_state_dict_names_every_parameter_and_buffer_and_is_live():
    net = cr.mlp([3, 4, 2], batchnorm=True, seed=0)
    state = net.state_dict()
    assert list(state) == ["0.W", "1.gamma", "1.beta", "1.running_mean", "1.running_var", "3.W", "3.b"]
    state["3.b"][...] = 7.0  # the arrays themselves, as in PyTorch
    assert np.all(net[3].params["b"].data == 7.0)


def test_load_state_dict_copies_in_and_refuses_what_does_not_fit():
    source, target = cr.mlp([3, 4, 2], layernorm=True, seed=0), cr.mlp([3, 4, 2], layernorm=True, seed=1)
    snapshot = {k: v.copy() for k, v in source.state_dict().items()}
    target.load_state_dict(snapshot)
    X = np.random.default_rng(0).normal(size=(5, 3))
    np.testing.assert_array_equal(target.forward(X), source.forward(X))
    snapshot["0.W"][...] = 0  # a copy: the model keeps its own arrays
    assert np.any(target[0].params["W"].data != 0)
    with pytest.raises(ShapeError, match=r"missing 3\.b; unexpected 9\.b"):
        target.load_state_dict({**{k: v for k, v in snapshot.items() if k != "3.b"}, "9.b": np.zeros(2)})
    with pytest.raises(
        ShapeError, match=r"0.W has shape \(4, 3\) and dtype float64; expected numbers of shape \(3, 4\)"
    ):
        target.load_state_dict({**snapshot, "0.W": np.zeros((4, 3))})
    target.load_state_dict({"1.gamma": np.full(4, 2.0)}, strict=False)
    assert np.all(target[1].params["gamma"].data == 2)


def _steps(optimizer, params, rng, count):
    for _ in range(count):
        for p in params:
            p.grad = rng.standard_normal(p.shape)
        optimizer.step()


CASES = {
    "sgd": {},
    "momentum": {"dampening": 0.2},
    "nesterov": {"weight_decay": 0.01},
    "adam": {"weight_decay": 0.05},
    "adamw": {},
    "rmsprop": {"momentum": 0.7, "weight_decay": 0.01},
}


@pytest.mark.parametrize("name", list(CASES))
def test_an_optimizer_restored_from_its_state_dict_goes_on_bit_for_bit(name):
    def fresh():
        params = [cr.Parameter(np.random.default_rng(1).standard_normal(s)) for s in [(4, 3), (3,)]]
        return params, cr.make_optimizer(name, params, lr=0.01, **CASES[name])

    params, optimizer = fresh()
    rng = np.random.default_rng(2)
    _steps(optimizer, params, rng, 5)
    saved = json.loads(json.dumps(optimizer.state_dict(), default=lambda a: a.tolist()))  # as a file would hold it
    saved_params = [p.data.copy() for p in params]
    after = copy.deepcopy(rng)
    _steps(optimizer, params, rng, 5)

    params2, optimizer2 = fresh()
    for p, data in zip(params2, saved_params, strict=True):
        p.data[...] = data
    saved["state"] = {
        k: {n: np.array(v) if isinstance(v, list) else v for n, v in s.items()} for k, s in saved["state"].items()
    }
    optimizer2.load_state_dict(saved)
    assert optimizer2.steps == 5 or not optimizer2.counts_steps
    _steps(optimizer2, params2, after, 5)
    for a, b in zip(params, params2, strict=True):
        np.testing.assert_array_equal(a.data, b.data)


def test_optimizer_load_state_dict_refuses_another_optimizer_or_a_bad_state():
    params = cr.mlp([3, 2], seed=0).parameters()
    adam = cr.Adam(params, lr=0.01)
    _steps(adam, params, np.random.default_rng(0), 2)
    state = adam.state_dict()
    with pytest.raises(ConfigError, match=r"beta1 0.9 \(this optimizer: 0.5\)"):
        cr.Adam(params, lr=0.01, betas=(0.5, 0.9)).load_state_dict(state)
    with pytest.raises(ConfigError, match="unknown state 'momentum_buffer'"):
        broken = copy.deepcopy(state)
        broken["state"][0]["momentum_buffer"] = broken["state"][0]["exp_avg"]
        cr.Adam(params, lr=0.01).load_state_dict(broken)
    with pytest.raises(ConfigError, match=r"state 'exp_avg' of parameter 0 has shape \(2, 3\)"):
        broken = copy.deepcopy(state)
        broken["state"][0]["exp_avg"] = np.zeros((2, 3))
        cr.Adam(params, lr=0.01).load_state_dict(broken)
    with pytest.raises(ConfigError, match="learning rate"):
        broken = copy.deepcopy(state)
        broken["param_groups"][0]["lr"] = -1.0
        cr.Adam(params, lr=0.01).load_state_dict(broken)


def test_schedule_state_dict():
    optimizer = cr.SGD(cr.mlp([2, 2]).parameters(), lr=0.5)
    schedule = cr.CosineAnnealingLR(optimizer, 10)
    for _ in range(3):
        schedule.step()
    other = cr.CosineAnnealingLR(cr.SGD(cr.mlp([2, 2]).parameters(), lr=0.5), 10)
    other.load_state_dict(schedule.state_dict())
    schedule.step(), other.step()
    assert other.optimizer.lr == optimizer.lr and schedule.state_dict() == {"last_epoch": 4, "base_lr": 0.5}
    with pytest.raises(ConfigError, match="last_epoch must be an integer"):
        other.load_state_dict({"last_epoch": -1, "base_lr": 0.5})


# -- the plain NumPy update beside each optimizer against what the optimizer runs -----------------------
REFERENCES = {
    "sgd": ({"lr": 0.1}, lambda p, g, s, t: sgd_update(p, g, s, lr=0.1)),
    "momentum": (
        {"lr": 0.1, "momentum": 0.8, "dampening": 0.1},
        lambda p, g, s, t: sgd_update(p, g, s, lr=0.1, momentum=0.8, dampening=0.1),
    ),
    "nesterov": (
        {"lr": 0.1, "momentum": 0.9},
        lambda p, g, s, t: sgd_update(p, g, s, lr=0.1, momentum=0.9, nesterov=True),
    ),
    "adam": (
        {"lr": 0.01, "beta1": 0.8, "beta2": 0.99, "eps": 1e-6},
        lambda p, g, s, t: adam_update(p, g, s, lr=0.01, beta1=0.8, beta2=0.99, eps=1e-6, step=t),
    ),
    "adamw": (
        {"lr": 0.01, "weight_decay": 0.1},
        lambda p, g, s, t: adam_update(p, g, s, lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8, step=t, decoupled_decay=0.1),
    ),
    "rmsprop": (
        {"lr": 0.01, "alpha": 0.9, "momentum": 0.5},
        lambda p, g, s, t: rmsprop_update(p, g, s, lr=0.01, alpha=0.9, eps=1e-8, momentum=0.5),
    ),
}


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "numpy"])
@pytest.mark.parametrize("name", list(REFERENCES))
def test_each_optimizer_computes_its_plain_numpy_update(name, compiled, monkeypatch):
    if compiled and kernels.compiled is None:
        pytest.skip("chainrule._kernels is not built (test_kernels.py says whether it must be)")
    if not compiled:
        monkeypatch.setattr(kernels, "compiled", None)
    settings, reference = REFERENCES[name]
    rng = np.random.default_rng(3)
    param = cr.Parameter(rng.standard_normal((6, 5)))
    optimizer = cr.make_optimizer(name, [param], **settings)
    theta, state = param.data.copy(), {}
    for t in range(1, 21):
        param.grad = rng.standard_normal((6, 5))
        optimizer.step()
        reference(theta, param.grad, state, t)
    np.testing.assert_allclose(param.data, theta, rtol=1e-12, atol=1e-14)


# -- predictions: probabilities or logits, from the last layer's kind --------------------------------------
def test_predict_proba_gives_probabilities_for_a_network_that_ends_in_logits():
    net = cr.mlp([3, 5, 4], seed=0, dtype=np.float64)  # identity output: logits
    X = np.random.default_rng(0).normal(size=(6, 3))
    logits = net.forward(X)
    by_hand = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(net.predict_proba(X), by_hand, rtol=1e-12)
    np.testing.assert_array_equal(net.predict(X), logits.argmax(axis=1))


def test_one_sigmoid_output_is_thresholded_at_one_half_and_one_logit_at_zero():
    # z = x − 1: x = 0.5 gives z = −0.5 and σ(z) = 0.38, x = 1.5 gives z = 0.5 and σ(z) = 0.62
    logit_net = cr.Sequential(cr.Linear.from_arrays([[1.0]], [-1.0]))
    prob_net = cr.Sequential(cr.Linear.from_arrays([[1.0]], [-1.0]), cr.Sigmoid())
    X = np.array([[0.5], [1.5]])
    assert prob_net.predict(X).tolist() == [0, 1]  # 0.38 and 0.62: below and above one half
    assert logit_net.predict(X).tolist() == [0, 1]
    np.testing.assert_allclose(prob_net.predict_proba(X)[:, 1], 1 / (1 + np.exp([0.5, -0.5])), rtol=1e-12)
    np.testing.assert_allclose(logit_net.predict_proba(X), prob_net.predict_proba(X), rtol=1e-12)


def test_accuracy_of_logits_that_happen_to_lie_in_zero_one():
    """Logits 0.3 and 0.7 both mean class 1; guessing 'probabilities' from their range said 0 and 1."""
    assert accuracy(np.array([[0.3], [0.7]]), np.array([1, 1]), probabilities=False) == 1.0
    assert accuracy(np.array([[0.3], [0.7]]), np.array([0, 1]), probabilities=True) == 1.0


# -- files ------------------------------------------------------------------------------------------------
def test_files_get_the_umask_of_the_moment_they_are_written(tmp_path):
    """The permissions of a new file are 0666 less the umask in force when it is written (not the one
    read when chainrule was imported)."""
    previous = os.umask(0o027)
    try:
        atomic_write(tmp_path / "a.bin", lambda f: f.write(b"x"))
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "a.bin").stat().st_mode) == 0o640
    assert (tmp_path / "a.bin").read_bytes() == b"x" and len(list(tmp_path.iterdir())) == 1


def test_a_version_1_model_file_is_still_read(tmp_path):
    """The layout of version 1, written here by hand: arrays layers.{i}.{name}, sizes "in"/"out"."""
    rng = np.random.default_rng(0)
    W0, b0, W2, b2 = rng.normal(size=(3, 4)), rng.normal(size=4), rng.normal(size=(4, 2)), rng.normal(size=2)
    mean, std = rng.normal(size=3), rng.uniform(0.5, 2, 3)
    meta = {
        "format": "chainrule-model",
        "version": 1,
        "dtype": "float64",
        "scale": 2.0,
        "classes": ["no", "yes"],
        "image_shape": None,
        "frame_fill": 1.0,
        "layers": [
            {"type": "linear", "in": 3, "out": 4, "bias": True},
            {"type": "leaky_relu", "alpha": 0.1},
            {"type": "linear", "in": 4, "out": 2, "bias": True},
        ],
    }
    np.savez(
        tmp_path / "v1.npz",
        meta=np.array(json.dumps(meta)),
        **{
            "layers.0.W": W0,
            "layers.0.b": b0,
            "layers.2.W": W2,
            "layers.2.b": b2,
            "input.mean": mean,
            "input.std": std,
        },
    )
    model = load_model(tmp_path / "v1.npz")
    raw = rng.normal(size=(5, 3))
    h = (raw / 2.0 - mean) / std @ W0 + b0
    logits = np.where(h > 0, h, 0.1 * h) @ W2 + b2
    np.testing.assert_allclose(model.outputs(raw), logits, rtol=1e-12)
    assert model.classes == ("no", "yes") and model.network[1].alpha == 0.1


@pytest.mark.slow
def test_a_run_with_the_new_kinds_resumes_to_bit_identical_weights(tmp_path, monkeypatch):
    """GELU, LayerNorm, dropout and RMSprop with momentum: stopped after epoch 2 of 4, resumed from the
    checkpoint, the same weights as a run never stopped."""
    import chainrule.training.loop as loop
    from chainrule.errors import ChainruleError
    from chainrule.training.run import TrainConfig, config_from_checkpoint, train

    def config(out):
        return TrainConfig(
            hidden=(32,),
            activation="gelu",
            layernorm=True,
            dropout=0.1,
            optimizer="rmsprop",
            momentum=0.5,
            epochs=4,
            early_stopping=3,
            out=str(out),
            quiet=True,
            plots=False,
        )

    train(config(tmp_path / "whole"))
    original, calls = loop.run_epoch, {"n": 0}

    def stop_in_epoch_3(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise loop.TrainingError("simulated")
        return original(*args, **kwargs)

    monkeypatch.setattr(loop, "run_epoch", stop_in_epoch_3)
    with pytest.raises(ChainruleError):
        train(config(tmp_path / "cut"))
    monkeypatch.setattr(loop, "run_epoch", original)
    resumed = config_from_checkpoint(tmp_path / "cut")
    resumed.quiet = True
    train(resumed, resume=True)
    with np.load(tmp_path / "whole" / "model.npz") as a, np.load(tmp_path / "cut" / "model.npz") as b:
        assert sorted(a.files) == sorted(b.files) and "model.1.gamma" in a.files
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_a_model_that_load_would_refuse_is_not_saved(tmp_path):
    from chainrule.errors import ConfigError
    from chainrule.training.classifier import Classifier

    network = cr.mlp([4, 3], seed=0).eval()
    mean, std = np.zeros(4, np.float32), np.ones(4, np.float32)
    with pytest.raises(ConfigError, match="cannot save this model: 2 class names for a network with 3 outputs"):
        Classifier(network, mean, std, 1.0, ("a", "b")).save(tmp_path / "m.npz")
    with pytest.raises(ConfigError, match="images of 3×3 for 4 input features"):
        Classifier(network, mean, std, 1.0, ("a", "b", "c"), (3, 3)).save(tmp_path / "m.npz")
    assert not list(tmp_path.iterdir())
