"""The registry: every kind is declared in one place and then works everywhere — configuration round trips,
problem files, model files, explain in every format, gradcheck — and the optimizer factory and
TrainConfig keep each default in one place."""

import argparse
import json
import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest

import chainrule as cr
from chainrule.errors import ConfigError
from chainrule.explain import parse_problem, run_problem, to_json
from chainrule.explain.problem import layer_kinds
from chainrule.explain.render import render
from chainrule.optim import optimizer_settings
from chainrule.registry import Registry
from chainrule.training.classifier import Classifier
from chainrule.training.config import TrainConfig
from chainrule.training.modelfile import load_model

from helpers import problem_with

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def example_layer(kind: str, features: int = 4):
    """An instance of every layer kind with settings away from their defaults."""
    cls = cr.LAYERS[kind].cls
    built = {
        "linear": lambda: cls(features, features, seed=1),
        "batchnorm": lambda: cls(features, eps=1e-3, momentum=0.2),
        "layernorm": lambda: cls(features, eps=1e-4),
        "dropout": lambda: cls(0.25),
        "leaky_relu": lambda: cls(0.2),
    }
    return built.get(kind, cls)()


@pytest.mark.parametrize("kind", cr.LAYERS.names())
def test_every_layer_kind_round_trips_through_its_configuration(kind):
    layer = example_layer(kind)
    config = json.loads(json.dumps(layer.config()))  # plain values only
    again = type(layer).from_config(config, dtype=np.float64)
    assert again.config() == layer.config() and again.kind == kind
    assert {k: v.shape for k, v in again.state_dict().items()} == {k: v.shape for k, v in layer.state_dict().items()}


@pytest.mark.parametrize("kind", cr.LOSSES.names())
def test_every_loss_kind_round_trips_through_its_configuration(kind):
    loss = cr.LOSSES[kind].cls("half_sum")
    assert type(loss).from_config(json.loads(json.dumps(loss.config()))).scale == "half_sum"


@pytest.mark.parametrize("name", cr.OPTIMIZERS.names())
def test_every_optimizer_name_round_trips_through_its_configuration(name):
    params = cr.mlp([3, 2], seed=0).parameters()
    optimizer = cr.make_optimizer(name, params, lr=0.02)
    config = json.loads(json.dumps(optimizer.config()))
    assert type(optimizer).from_config(params, config).config() == optimizer.config()
    assert optimizer.config()["lr"] == 0.02


def test_unknown_settings_and_names_are_one_clear_error():
    with pytest.raises(ConfigError, match="Linear: unknown setting 'width'; expected one of in_features"):
        cr.Linear.from_config({"in_features": 2, "out_features": 2, "width": 3})
    with pytest.raises(ConfigError, match="unknown layer 'swish'; expected one of batchnorm, dropout, gelu"):
        cr.LAYERS["swish"]
    with pytest.raises(ConfigError, match="the adam optimizer has no setting 'momentum'; it takes lr, beta1"):
        cr.make_optimizer("adam", cr.mlp([2, 2]).parameters(), momentum=0.9)
    with pytest.raises(ConfigError, match="already registered"):
        cr.LAYERS.register("relu")(type("Other", (cr.Module,), {}))


def test_a_new_kind_is_one_registration_away():
    """A kind registered in a registry of its own is found, built from its dict and listed."""
    registry = Registry("layer")

    @registry.register("square")
    class Square(cr.activations.ElementWise):
        """x²."""

        function, derivative = "{in}²", "2·{in}"

        def apply(self, z):
            self.x = z
            return z * z

        def times_derivative(self, grad):
            return grad * 2 * self.x

    assert registry.names() == ("square",) and Square.kind == "square"
    assert registry["square"].cls.from_config({}).forward(np.array([[3.0]]))[0, 0] == 9.0
    assert cr.gradcheck(Square(), np.random.default_rng(0).normal(size=(3, 2))).passed
    assert r"z^{2}" in Square.__doc__  # the docstring's formulas come from the declaration


def test_optimizer_presets_and_defaults_live_in_one_place():
    assert optimizer_settings("sgd") == {"lr": 0.1, "weight_decay": 0.0}
    assert optimizer_settings("momentum")["momentum"] == 0.9
    assert set(optimizer_settings("nesterov")) == {"lr", "momentum", "weight_decay"}
    assert optimizer_settings("adamw")["weight_decay"] == 0.01
    assert optimizer_settings("rmsprop") == {
        "lr": 0.01,
        "alpha": 0.99,
        "eps": 1e-8,
        "weight_decay": 0.0,
        "momentum": 0.0,
    }
    params = cr.mlp([3, 2], seed=0).parameters()
    assert cr.make_optimizer("nesterov", params).nesterov
    assert isinstance(cr.make_optimizer("adamw", params), cr.AdamW)


def test_trainconfig_builds_the_optimizer_with_its_own_defaults():
    """``TrainConfig(optimizer="sgd")`` from Python used to train at Adam's 1e-3: the 0.1 lived only in
    the command line."""
    from chainrule.training.run import build_optimizer

    model = cr.mlp([3, 2], seed=0)
    assert build_optimizer(TrainConfig(optimizer="sgd"), model).lr == 0.1
    assert build_optimizer(TrainConfig(), model).lr == 1e-3
    assert build_optimizer(TrainConfig(optimizer="adamw"), model).decoupled_decay == 0.01
    assert build_optimizer(TrainConfig(optimizer="rmsprop", momentum=0.5, lr=0.003), model).config()["momentum"] == 0.5
    with pytest.raises(ConfigError, match="--momentum: the adam optimizer has no momentum"):
        TrainConfig(momentum=0.9).validate()


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"epochs": "3"}, "--epochs: expected int, got '3'"),
        ({"hidden": ("a",)}, "--hidden: expected sizes"),
        ({"lr": "0.1"}, "--lr: expected float"),
        ({"plots": 1}, "--no-plots: expected bool, got 1"),
        ({"seed": -1}, "--seed must be an integer >= 0"),
    ],
)
def test_a_configuration_of_the_wrong_types_is_refused(settings, message):
    """As a hand-edited checkpoint's configuration (or Python code) may hold: one clear error, not a crash."""
    with pytest.raises(ConfigError, match=re.escape(message)):
        TrainConfig(**settings).validate()


def test_a_configuration_takes_paths_lists_and_numpy_numbers(tmp_path):
    config = TrainConfig(
        out=tmp_path / "run",
        data_dir=tmp_path,
        hidden=[np.int64(8)],
        lr=np.float32(0.01),
        epochs=np.int64(2),
        plots=np.bool_(False),
    ).validate()
    assert (config.out, config.hidden, config.epochs, config.plots) == (str(tmp_path / "run"), (8,), 2, False)
    json.dumps(config.to_dict())  # what metrics.json and checkpoints keep: plain values
    assert cr.Linear.from_config({"in_features": np.int64(3), "out_features": 2, "bias": np.True_}).config() == {
        "in_features": 3,
        "out_features": 2,
        "bias": True,
    }
    assert cr.SGD(cr.mlp([2, 2]).parameters(), lr=np.float32(0.1), momentum=0.9, nesterov=np.True_).nesterov


def test_a_network_too_large_for_memory_is_one_clear_error(tmp_path):
    from chainrule.training.run import train

    with pytest.raises(ConfigError, match="does not fit in this machine's memory"):
        train(TrainConfig(hidden=(10**11,), epochs=1, out=str(tmp_path / "run"), quiet=True, plots=False))
    assert not (tmp_path / "run").exists()


def test_every_trainconfig_field_is_an_option_with_no_default_of_its_own():
    from chainrule.cli import EXPLAIN_FORMATS, build_parser
    from chainrule.explain.render import FORMATS

    parser = build_parser()
    train = next(a for a in parser._subparsers._group_actions[0].choices.items() if a[0] == "train")[1]
    options = {a.dest: a for a in train._actions if a.dest not in ("help", "resume", "lang")}
    assert set(options) == {f.name for f in fields(TrainConfig)}
    assert all(a.default is argparse.SUPPRESS for a in options.values())  # the field's default applies
    args = parser.parse_args(["train", "--activation", "gelu", "--layernorm", "--optimizer", "rmsprop", "--no-plots"])
    config = TrainConfig(**{k: getattr(args, k) for k in options if hasattr(args, k)})
    assert (config.activation, config.layernorm, config.optimizer, config.plots, config.epochs) == (
        "gelu",
        True,
        "rmsprop",
        False,
        TrainConfig.epochs,
    )
    assert set(options["activation"].choices) == set(cr.activations.names(hidden=True))
    assert set(options["optimizer"].choices) == set(cr.OPTIMIZERS.names())
    assert EXPLAIN_FORMATS == FORMATS


# -- every kind everywhere ------------------------------------------------------------------------
@pytest.mark.parametrize("kind", layer_kinds())
def test_every_problem_file_kind_is_explained_in_every_format(kind, tmp_path):
    problem = parse_problem(problem_with(layer=kind), "every.toml")
    explanation = run_problem(problem)
    out = to_json(explanation)
    assert [layer["type"] for layer in out["layers"]] == ["linear", kind, "linear"]
    for format in ("text", "markdown", "latex"):
        text = render(explanation, format)
        shown = kind.replace("_", r"\_") if format == "latex" else kind
        assert f"Layer 1: {shown}" in text and "Update: rmsprop" in text
    text = render(explanation, "text")
    for formula in SHOWN[kind]:
        assert formula in text, f"{kind}: {formula!r} not shown"


#: Each kind's formulas as they must read between Z₀ = X·W₀ + b₀ and Z₂ = ·W₂ (written by hand).
SHOWN = {
    "linear": ["Z₁ = Z₀·W₁", "∂L/∂W₁ = Z₀ᵀ·δ", "∂L/∂Z₀ = δ·W₁ᵀ", "∂L/∂W₁ + λ·W₁"],
    "batchnorm": [
        "Layer 1: batchnorm (ε = 0.001)",
        "μ = (1/n)·Σ_rows Z₀",
        "σ² = (1/n)·Σ_rows (Z₀ − μ)²",
        "x̂ = (Z₀ − μ)/√(σ² + ε)",
        "N₁ = γ₁ ⊙ x̂ + β₁",
        "∂L/∂γ₁ = Σ_rows δ ⊙ x̂",
        "∂L/∂β₁ = Σ_rows δ",
        "∂L/∂Z₀ = γ₁/(n·√(σ² + ε)) ⊙ (n·δ − ∂L/∂β₁ − x̂ ⊙ ∂L/∂γ₁)",
    ],
    "layernorm": [
        "Layer 1: layernorm (ε = 0.001)",
        "μ = (1/d)·Σ_cols Z₀",
        "N₁ = γ₁ ⊙ x̂ + β₁",
        "ĝ = δ ⊙ γ₁\n",
        "∂L/∂Z₀ = (ĝ − (1/d)·Σ_cols ĝ − x̂ ⊙ (1/d)·Σ_cols(ĝ ⊙ x̂))/√(σ² + ε) = ",
    ],
    "identity": ["A₁ = Z₀", "f′(Z₀) = 1"],
    "sigmoid": ["A₁ = σ(Z₀)", "f′(Z₀) = σ(Z₀)(1 − σ(Z₀)) = A₁(1 − A₁)"],
    "tanh": ["A₁ = tanh(Z₀)", "f′(Z₀) = 1 − tanh²(Z₀) = 1 − A₁²"],
    "relu": ["A₁ = max(0, Z₀)", "f′(Z₀) = [Z₀ > 0]", "∂L/∂Z₀ = δ ⊙ f′(Z₀)"],
    "leaky_relu": ["Layer 1: leaky_relu (α = 0.2)", "A₁ = max(α·Z₀, Z₀)", "f′(Z₀) = [Z₀ > 0] + α·[Z₀ ≤ 0]"],
    "gelu": ["A₁ = Z₀·Φ(Z₀)", "Φ(z) = ½·(1 + erf(z/√2)),  φ(z) = e^(−z²/2)/√(2π)", "f′(Z₀) = Φ(Z₀) + Z₀·φ(Z₀)"],
    "softmax": ["A₁ = softmax(Z₀)", "∂L/∂Z₀ = A₁ ⊙ (δ − Σ_cols(δ ⊙ A₁))"],
    "silu": ["A₁ = Z₀·σ(Z₀)", "f′(Z₀) = σ(Z₀)·(1 + Z₀·(1 − σ(Z₀)))"],
}


#: What the update of W₀ must show for each optimizer name (written by hand).
UPDATES = {
    "sgd": ["W₀ ← W₀ − lr·∂L/∂W₀ = "],
    "momentum": ["b ← μ·b + g", "b(W₀) = "],
    "nesterov": ["θ ← θ − lr·(g + μ·b)", "b(W₀) = "],
    "adam": ["m(W₀) = ", "v(W₀) = "],
    "adamw": ["θ ← θ − lr·wd·θ", "m(W₀) = "],
    "rmsprop": ["v ← α·v + (1 − α)·g²", "v(W₀) = "],
}


@pytest.mark.parametrize("loss", cr.LOSSES.names())
def test_every_loss_is_explained(loss):
    text = render(run_problem(parse_problem(problem_with(loss=loss))), "text")
    output = "A₂" if cr.LOSSES[loss].cls.after else "Z₁"  # after its activation, or the last linear layer
    assert f"Loss: {loss}, scale mean" in text and f"∂L/∂{output} = " in text and "k = 1/n = 0.3333" in text


@pytest.mark.parametrize("name", cr.OPTIMIZERS.names())
def test_every_optimizer_is_explained(name):
    text = render(run_problem(parse_problem(problem_with(optimizer=name))), "text")
    assert f"Update: {name}, lr = 0.05" in text
    for shown in UPDATES[name]:
        assert shown in text, f"{name}: {shown!r} not shown"


@pytest.mark.parametrize("kind", cr.LAYERS.names())
def test_an_equation_with_numbers_after_it_computes_one_thing(kind):
    """explain shows an equation's result after its last part: an equation that also defines a helper
    (``…,  ĝ = δ ⊙ γ``) would show the result as the helper's value. Helpers are equations of their own."""
    layer = example_layer(kind)
    layer.forward(np.random.default_rng(0).normal(size=(5, 4)))
    formulas = layer.formulas()
    for eq in (*formulas.forward, *formulas.backward):
        if eq.computes() is not None:
            assert ",  " not in eq.text, f"{kind}: {eq.text!r}"


def test_dropout_is_not_in_problem_files():
    with pytest.raises(cr.explain.ProblemFileError, match="unknown value 'dropout'"):
        parse_problem(problem_with(layer="dropout"))


@pytest.mark.parametrize("kind", cr.LAYERS.names())
def test_every_layer_kind_survives_a_model_file(kind, tmp_path):
    rng = np.random.default_rng(1)
    network = cr.Sequential(cr.Linear(3, 4, seed=0), example_layer(kind), cr.Linear(4, 3, seed=1))
    for array in network.state_dict().values():  # every array away from its initial value
        array[...] = rng.normal(size=array.shape)
    if kind == "batchnorm":
        network[1].buffers["running_var"][...] = rng.uniform(0.5, 2, 4)
    model = Classifier(network.eval(), np.zeros(3, np.float32), np.ones(3, np.float32), 1.0, ("a", "b", "c"))
    model.save(tmp_path / "m.npz")
    loaded = load_model(tmp_path / "m.npz")
    assert [layer.kind for layer in loaded.network.layers] == ["linear", kind, "linear"]
    assert loaded.network[1].config() == network[1].config()
    X = rng.normal(size=(5, 3))
    np.testing.assert_array_equal(loaded.outputs(X), model.outputs(X))


def test_gradcheck_list_names_every_kind():
    result = subprocess.run(
        [sys.executable, "-m", "chainrule.cli", "gradcheck", "--list"], capture_output=True, text=True, check=True
    )
    names = result.stdout.split()
    assert {"gelu", "layernorm", "batchnorm_eval", "linear_no_bias", "mlp_layernorm_gelu"} <= set(names)
    result = subprocess.run(
        [sys.executable, "-m", "chainrule.cli", "gradcheck", "gelu", "layernorm"], capture_output=True, text=True
    )
    assert result.returncode == 0 and result.stdout.strip().endswith("2 passed, 0 failed"), result.stdout
