"""Export and import: ONNX (run by ONNX Runtime), safetensors, PyTorch (run by torch), both ways.

The references are the other engines themselves: ONNX Runtime computes the exported graph, torch the
exported module and, for an imported PyTorch model, the gradients of its training step (autograd).
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import chainrule as cr
from chainrule.cli import EXPORT_FORMATS, main
from chainrule.errors import ConfigError, DataError, MissingPackage
from chainrule.explain import load_problem, problem_document, run_problem, to_json, write_problem
from chainrule.interchange import FORMATS
from chainrule.training.classifier import Classifier

from helpers import assert_close
from torch_mirror import torch_loss

# PyTorch 2.13 deprecates TorchScript, which stays the one format of a whole model without pickle here
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.*` is deprecated:DeprecationWarning")


def classifier(network, features, dtype=np.float32, seed=0):
    """``network`` with moved BatchNorm statistics and non-trivial γ, β, in evaluation mode, behind an
    input normalisation of raw values from 0 to 255; three classes (two for a single output)."""
    rng = np.random.default_rng(seed)
    for layer in network.layers:
        for name, array in layer.state_dict().items():
            if name != "W":
                array[...] = (
                    rng.uniform(0.5, 1.5, array.shape)
                    if name in ("gamma", "running_var")
                    else rng.normal(0, 0.3, array.shape)
                )
    network.eval()
    mean = rng.uniform(0.3, 0.7, features).astype(dtype)
    std = rng.uniform(0.2, 0.5, features).astype(dtype)
    outputs = network.outputs(np.zeros((1, features), dtype)).shape[1]
    return Classifier(network, mean, std, 255.0, tuple("abc"[: max(outputs, 2)]))


def networks(dtype=np.float32):
    """Networks that hold every registered layer kind between them, by name."""
    nets = {
        f"{activation}{'+' + norm if norm else ''}": cr.mlp(
            [6, 8, 5, 3], activation, dropout=0.3, seed=1, dtype=dtype, **({norm: True} if norm else {})
        )
        for activation in cr.activations.names(hidden=True)
        for norm in ("", "batchnorm", "layernorm")
    }
    nets["softmax"] = cr.mlp([6, 5, 3], "tanh", output="softmax", seed=2, dtype=dtype)
    nets["sigmoid_single_output"] = cr.mlp([6, 5, 1], "relu", output="sigmoid", seed=3, dtype=dtype)
    nets["logit_single_output"] = cr.mlp([6, 1], seed=4, dtype=dtype)
    return nets


def raw_inputs(n=40, features=6, seed=5, dtype=np.float32):
    return np.random.default_rng(seed).uniform(0, 255, (n, features)).astype(dtype)


def test_the_test_networks_hold_every_kind():
    kinds = {layer.kind for net in networks().values() for layer in net.layers}
    assert kinds == set(cr.LAYERS.names())
    assert set(EXPORT_FORMATS) == set(FORMATS)


# -- ONNX ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(networks()))
@pytest.mark.parametrize("probabilities", [False, True])
def test_onnx_runtime_computes_what_chainrule_computes(onnxruntime, name, probabilities, tmp_path):
    model = classifier(networks()[name], 6)
    X = raw_inputs()
    path = tmp_path / "model.onnx"
    assert cr.export(model, path, probabilities=probabilities) == [path]
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (output,) = session.get_outputs()
    got = session.run(None, {"input": X})[0]
    expected = model.predict_proba(X) if probabilities else model.outputs(X)
    assert got.dtype == np.float32 and got.shape == expected.shape
    assert float(np.max(np.abs(got - expected))) <= 1e-5
    assert output.name == ("probabilities" if probabilities or model.network.gives_probabilities else "logits")
    assert np.array_equal(got.argmax(axis=1), model.predict(X)) or got.shape[1] == 1


@pytest.mark.parametrize("name", ["silu+layernorm", "leaky_relu+batchnorm"])
def test_onnx_in_float64_and_its_description(onnxruntime, name):
    import onnx

    # (a float64 GELU is valid ONNX, but ONNX Runtime's CPU Erf has float32 only)
    model = classifier(networks(np.float64)[name], 6, np.float64)
    for layer in model.network.layers:
        if layer.kind == "leaky_relu":
            layer.alpha = 0.1  # not a float32 number: ONNX's LeakyRelu attribute would round it
    proto = cr.to_onnx(model)
    assert [o.version for o in proto.opset_import] == [17]
    assert proto.producer_name == "chainrule"
    (output,) = proto.graph.output
    assert [d.dim_param or d.dim_value for d in output.type.tensor_type.shape.dim] == ["batch", 3]
    props = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(props["classes"]) == ["a", "b", "c"]
    names = {t.name for t in proto.graph.initializer}
    assert {"input.mean", "input.std", "0.W", "1.gamma", "1.beta"} <= names
    onnx.checker.check_model(proto, full_check=True)
    session = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    X = raw_inputs(dtype=np.float64)
    got = session.run(None, {"input": X})[0]
    assert got.dtype == np.float64
    assert float(np.max(np.abs(got - model.outputs(X)))) <= 1e-10


def test_a_bare_network_exports_without_normalisation(onnxruntime, tmp_path):
    net = cr.mlp([4, 3, 2], "silu", seed=0)
    cr.export(net, tmp_path / "net.onnx")
    session = onnxruntime.InferenceSession(str(tmp_path / "net.onnx"), providers=["CPUExecutionProvider"])
    X = np.random.default_rng(0).normal(size=(7, 4)).astype(np.float32)
    assert float(np.max(np.abs(session.run(None, {"input": X})[0] - net.outputs(X)))) <= 1e-6


# -- safetensors --------------------------------------------------------------------------------------
def test_safetensors_model_file_round_trip(safetensors, tmp_path):
    from safetensors.numpy import load_file

    model = classifier(networks()["relu+batchnorm"], 6)
    model.save(tmp_path / "model.npz")
    cr.export(model, tmp_path / "model.safetensors")
    arrays = load_file(tmp_path / "model.safetensors")  # readable by the safetensors package itself
    with np.load(tmp_path / "model.npz") as npz:
        assert set(arrays) == set(npz.files) - {"meta"}
        for name in arrays:
            assert np.array_equal(arrays[name], npz[name])
    back = cr.load(tmp_path / "model.safetensors")
    X = raw_inputs()
    assert np.array_equal(back.outputs(X), model.outputs(X))
    assert back.classes == model.classes


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda b: b[: len(b) // 2], "not a readable chainrule model file"),
        (lambda b: b"\xff" * 8 + b[8:], "not a readable chainrule model file"),
        (lambda b: b"", "not a readable chainrule model file"),
    ],
)
def test_damaged_safetensors_files_are_refused(safetensors, tmp_path, damage, message):
    model = classifier(networks()["tanh"], 6)
    path = tmp_path / "model.safetensors"
    model.save(path)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(DataError, match=message):
        cr.load(path)


def test_safetensors_without_chainrule_description(safetensors, tmp_path):
    from safetensors.numpy import save_file

    save_file({"w": np.zeros(3, np.float32)}, tmp_path / "other.safetensors")
    with pytest.raises(DataError, match="no readable 'meta' record"):
        cr.load(tmp_path / "other.safetensors")


# -- PyTorch: out ---------------------------------------------------------------------------------------
def import_file(path):
    """The Python module at ``path``, imported under its own name."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["relu+batchnorm", "gelu+layernorm", "leaky_relu", "softmax", "sigmoid_single_output"])
def test_torch_export_predicts_what_chainrule_predicts(torch, name, tmp_path):
    model = classifier(networks()[name], 6)
    written = cr.export(model, tmp_path / "model_torch.py")
    assert written == [tmp_path / "model_torch.py", tmp_path / "model_torch.safetensors"]
    twin = import_file(written[0]).load()
    X = raw_inputs()
    with torch.no_grad():
        got = twin(torch.from_numpy(X)).numpy()
    assert got.dtype == np.float32
    assert float(np.max(np.abs(got - model.outputs(X)))) <= 1e-5
    if got.shape[1] > 1:
        assert np.array_equal(got.argmax(axis=1), model.predict(X))
    # and back: the weights file, read by chainrule import's reader, gives the same arrays
    from chainrule.interchange.pytorch import from_torch, read_torch

    back = from_torch(read_torch(written[1]))
    for ours, theirs in zip(model.network.state_dict().values(), back.network.state_dict().values(), strict=True):
        assert np.array_equal(ours, theirs)
    assert np.array_equal(back.mean, model.mean) and back.scale == model.scale and back.classes == model.classes


def test_to_torch_keeps_each_layers_mode(torch):
    net = cr.mlp([4, 5, 2], batchnorm=True, dropout=0.5, seed=0)
    net.layers[1].eval()
    twin = cr.to_torch(net)
    assert [child.training for child in twin] == [layer.training for layer in net.layers]


# -- PyTorch: in -----------------------------------------------------------------------------------------
def torch_models(torch):
    """PyTorch models of every kind chainrule imports, with the loss their last layer calls for."""
    nn = torch.nn
    torch.manual_seed(0)
    models = [
        (nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4, eps=1e-3, momentum=0.2), nn.ReLU(), nn.Linear(4, 3)), None),
        (
            nn.Sequential(
                nn.Linear(3, 4), nn.LayerNorm(4), nn.GELU(), nn.Linear(4, 4, bias=False), nn.SiLU(), nn.Linear(4, 3)
            ),
            "softmax_cross_entropy",
        ),
        (nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3), nn.Softmax(dim=1)), "cross_entropy"),
        (
            nn.Sequential(
                nn.Flatten(), nn.Sequential(nn.Linear(3, 4), nn.LeakyReLU(0.2)), nn.Linear(4, 1), nn.Sigmoid()
            ),
            "bce",
        ),
        (nn.Sequential(nn.Linear(3, 4), nn.Sigmoid(), nn.Identity(), nn.Linear(4, 2)), "mse"),
        (nn.Sequential(nn.Linear(3, 2)), "bce_with_logits"),
    ]
    for model, _ in models:
        for p in model.parameters():  # γ and β away from 1 and 0, so that their gradients matter
            with torch.no_grad():
                p.copy_(torch.randn_like(p))
    return models


def targets(torch, loss, rng, n, outputs):
    kind = cr.LOSSES[loss].cls.target_kind
    if kind == "classes":
        return rng.integers(0, outputs, n)
    if kind == "binary":
        return rng.integers(0, 2, (n, outputs)).astype(np.float64)
    return rng.normal(size=(n, outputs))


@pytest.mark.parametrize("case", range(6))
def test_imported_models_step_explained_equals_autograd(torch, case, tmp_path):
    model, loss = torch_models(torch)[case]
    network = cr.from_torch(model)
    loss = loss or "softmax_cross_entropy"
    rng = np.random.default_rng(case)
    X = rng.normal(size=(5, 3))
    outputs = model(torch.from_numpy(X)).shape[1]
    y = targets(torch, loss, rng, 5, outputs)
    write_problem(tmp_path / "step.toml", problem_document(network, X, y, loss=loss, lr=0.1))
    explained = to_json(run_problem(load_problem(tmp_path / "step.toml")))

    tx = torch.tensor(X, requires_grad=True)
    value = torch_loss(torch, loss, "mean", model(tx), torch.tensor(y), len(X))
    value.backward()
    assert_close(explained["loss"], value.item(), what="loss")
    assert_close(explained["layers"][0]["grad_input"], tx.grad.numpy(), what="∂L/∂X")
    torch_layers = [m for m in model.modules() if not isinstance(m, (torch.nn.Sequential, torch.nn.Flatten))]
    for i, (ours, theirs) in enumerate(zip(network.layers, torch_layers, strict=True)):
        for name, torch_name in ours.torch_arrays.items():
            if name in ours.params:
                grad = getattr(theirs, torch_name).grad.numpy()
                expected = grad.T if name in ours.torch_transposed else grad
                assert_close(explained["layers"][i]["grads"][name], expected, what=f"layer {i} ∂L/∂{name}")


def test_unsupported_layers_are_named_in_one_message(torch):
    nn = torch.nn

    class Block(nn.Module):
        def forward(self, x):
            return x

    model = nn.Sequential(
        nn.Linear(3, 4),
        nn.Conv1d(1, 1, 1),
        nn.GELU(approximate="tanh"),
        nn.LayerNorm(4, elementwise_affine=False),
        nn.BatchNorm1d(4, affine=False),
        nn.Softmax(dim=0),
        Block(),
    )
    with pytest.raises(ConfigError) as caught:
        cr.from_torch(model)
    message = str(caught.value)
    for place in ("layer 1 Conv1d", "layer 2 GELU(approximate='tanh')", "layer 3 LayerNorm", "layer 4 BatchNorm1d"):
        assert place in message
    assert "layer 5 Softmax(dim=0)" in message and "Block" in message and "chainrule has BatchNorm1d" in message
    with pytest.raises(ConfigError, match=r"reads an nn\.Sequential, got Block"):
        cr.from_torch(Block())


# -- the command line -----------------------------------------------------------------------------------
def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_export_command_writes_every_format(onnxruntime, torch, capsys, tmp_path):
    classifier(networks()["relu"], 6).save(tmp_path / "model.npz")
    for form, names in {
        "onnx": ["model.onnx"],
        "safetensors": ["model.safetensors"],
        "torch": ["model_torch.py", "model_torch.safetensors"],
    }.items():
        code, out, err = run(capsys, "export", tmp_path / "model.npz", "--format", form)
        assert code == 0, err
        assert out.split() == [w for name in names for w in ("wrote", str(tmp_path / name))]
    code, out, _ = run(capsys, "export", tmp_path / "model.npz", "--probabilities", "--out", tmp_path / "p.onnx")
    assert code == 0 and (tmp_path / "p.onnx").is_file()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--format", "safetensors", "--out", "{dir}/model.npz"], "would overwrite the model"),
        (["--format", "torch", "--probabilities"], "probabilities=True is for the ONNX format"),
        (["--format", "torch", "--out", "{dir}/my-model.py"], "expected a name like model_torch.py"),
        (["--format", "safetensors", "--out", "{dir}/model.bin"], "is named *.safetensors"),
    ],
)
def test_export_command_refusals(capsys, tmp_path, args, message):
    classifier(networks()["relu"], 6).save(tmp_path / "model.npz")
    code, _, err = run(capsys, "export", tmp_path / "model.npz", *(a.format(dir=tmp_path) for a in args))
    assert code == 1 and message in err and err.count("\n") == 1


def test_import_torchscript_as_model_file_and_as_problem_file(torch, capsys, tmp_path):
    model, _ = torch_models(torch)[0]
    model.eval()
    torch.jit.script(model).save(str(tmp_path / "model.pt"))
    code, out, err = run(capsys, "import", tmp_path / "model.pt", "--out", tmp_path / "model.npz", "--classes", "x,y,z")
    assert code == 0, err
    imported = cr.load(tmp_path / "model.npz")
    X = np.random.default_rng(0).normal(size=(9, 3))
    with torch.no_grad():
        expected = model(torch.from_numpy(X)).numpy()
    assert imported.classes == ("x", "y", "z")
    assert_close(imported.outputs(X), expected, tol=1e-6)  # float32 weights from float64 ones
    np.savez(tmp_path / "batch.npz", X=X[:4], y=np.array([0, 2, 1, 0]))
    code, out, err = run(
        capsys, "import", tmp_path / "model.pt", "--out", tmp_path / "step.toml", "--data", tmp_path / "batch.npz"
    )
    assert code == 0, err
    problem = load_problem(tmp_path / "step.toml")
    assert np.array_equal(problem.X, X[:4]) and problem.loss.kind == "softmax_cross_entropy"
    code, out, err = run(capsys, "explain", tmp_path / "step.toml")
    assert code == 0 and "Layer 1: batchnorm" in out


@pytest.mark.parametrize(
    "make, args, message",
    [
        (lambda torch, p: torch.save(torch.nn.Sequential(torch.nn.Linear(2, 2)), p), [], "is a pickle"),
        (lambda torch, p: p.write_bytes(b"not a model"), [], "not a readable PyTorch export"),
        (None, [], "no such file"),
        (
            lambda torch, p: torch.jit.script(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout())).save(p),
            ["--out", "{dir}/step.toml"],
            "depend on random numbers",
        ),
        (
            lambda torch, p: torch.jit.script(torch.nn.Sequential(torch.nn.Linear(2, 2))).save(p),
            ["--out", "{dir}/model.txt"],
            "expected a model file (.npz, .safetensors) or a problem file (.toml)",
        ),
        (
            lambda torch, p: torch.jit.script(torch.nn.Sequential(torch.nn.Linear(2, 2))).save(p),
            ["--out", "{dir}/step.toml", "--loss", "hinge"],
            "unknown loss 'hinge'",
        ),
    ],
)
def test_import_command_refusals(torch, capsys, tmp_path, make, args, message):
    path = tmp_path / "model.pt"
    if make is not None:
        make(torch, path)
    args = [a.format(dir=tmp_path) for a in args] or ["--out", str(tmp_path / "m.npz")]
    code, _, err = run(capsys, "import", path, *args)
    assert code in (1, 2) and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "step.toml").exists() and not (tmp_path / "m.npz").exists()


# -- problem files written --------------------------------------------------------------------------------
def test_problem_document_round_trip_keeps_every_number(tmp_path):
    for dtype in (np.float32, np.float64):
        net = cr.mlp([3, 4, 2], "leaky_relu", layernorm=True, seed=0, dtype=dtype)
        X = np.random.default_rng(1).normal(size=(4, 3))
        write_problem(
            tmp_path / "p.toml", problem_document(net, X, np.array([0, 1, 1, 0]), loss="softmax_cross_entropy", lr=0.5)
        )
        back = load_problem(tmp_path / "p.toml")
        for ours, theirs in zip(net.state_dict().values(), back.model.state_dict().values(), strict=True):
            assert np.array_equal(ours, theirs.astype(dtype))
        assert np.array_equal(back.X, X) and back.optimizer_settings == {"lr": 0.5}
        first = net.layers[0].params["W"].data[0, 0]  # written as its shortest decimal form, in its own type
        assert f"    [{first!s}, " in (tmp_path / "p.toml").read_text()  # float32: 0.10265829, not 0.10265829414129257


# -- what the core imports ------------------------------------------------------------------------------------
def test_the_core_imports_no_optional_package(tmp_path):
    classifier(networks()["relu"], 6).save(tmp_path / "model.npz")
    code = f"""
import sys, numpy as np, chainrule as cr
from chainrule.explain import load_problem, run_problem
model = cr.load({str(tmp_path / "model.npz")!r})
model.predict(np.zeros((2, 6)))
run_problem(load_problem({str(Path(__file__).parents[1] / "examples" / "batchnorm_adam.toml")!r}))
optional = {{"torch", "onnx", "onnxruntime", "safetensors", "yaml"}}
print(sorted(name for name in sys.modules if name.split(".")[0] in optional))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_a_missing_package_says_which_extra_to_install(monkeypatch, capsys, tmp_path):
    classifier(networks()["relu"], 6).save(tmp_path / "model.npz")
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx raises ImportError
    monkeypatch.delitem(sys.modules, "chainrule.interchange.onnx", raising=False)
    code, _, err = run(capsys, "export", tmp_path / "model.npz")
    assert code == 1
    assert err == "chainrule: error: ONNX export needs the onnx package: pip install 'chainrule[onnx]'\n"
    with pytest.raises(MissingPackage):
        cr.export(cr.mlp([2, 2]), tmp_path / "net.onnx")


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d["layers"][0].update(in_features=2**40), "size mismatch"),
        (lambda d: d["layers"][0].update(type="Conv2d"), "unknown layers ['Conv2d']"),
        (lambda d: d["layers"][1].update(momentum=7.0), "momentum must be in [0, 1]"),
        (lambda d: d.update(scale=0.0), "TorchClassifier scale"),
        (lambda d: d.update(classes=5), "not a PyTorch export of chainrule"),
    ],
)
def test_crafted_torch_exports_are_refused_before_anything_large_is_made(torch, tmp_path, edit, message):
    from safetensors.numpy import save

    from chainrule.archive import read_safetensors
    from chainrule.interchange.pytorch import from_torch, read_torch

    cr.export(classifier(networks()["relu+batchnorm"], 6), tmp_path / "model_torch.py")
    arrays, metadata = read_safetensors(tmp_path / "model_torch.safetensors", "export")
    description = json.loads(metadata["chainrule"])
    edit(description)
    (tmp_path / "crafted.safetensors").write_bytes(save(arrays, {**metadata, "chainrule": json.dumps(description)}))
    with pytest.raises((DataError, ConfigError)) as caught:
        from_torch(read_torch(tmp_path / "crafted.safetensors"))
    assert message in str(caught.value)


# -- found by an adversarial review -----------------------------------------------------------------------
def test_a_module_used_twice_is_two_layers_on_the_same_arrays(torch):
    nn = torch.nn
    relu, shared = nn.ReLU(), nn.Linear(4, 4)
    model = nn.Sequential(nn.Linear(5, 4), relu, shared, relu, shared, nn.Linear(4, 2))
    network = cr.from_torch(model)
    assert [layer.kind for layer in network.layers] == ["linear", "relu", "linear", "relu", "linear", "linear"]
    assert network.layers[2].params["W"] is network.layers[4].params["W"]  # tied, as in PyTorch
    X = np.random.default_rng(0).normal(size=(6, 5))
    with torch.no_grad():
        assert_close(network.forward(X), model(torch.from_numpy(X)).numpy())
    with pytest.raises(ConfigError, match="layers 2 and 4 share a parameter"):
        problem_document(network, X, np.zeros(6, int), loss="softmax_cross_entropy", lr=0.1)


def test_hooks_and_traced_models_are_refused_not_misread(torch):
    nn = torch.nn
    model = nn.Sequential(nn.Linear(3, 2), nn.ReLU())
    model[1].register_forward_hook(lambda module, inputs, output: output * 0)
    with pytest.raises(ConfigError, match="layer 1 has hooks, which chainrule would not run"):
        cr.from_torch(model)
    traced = torch.jit.trace(nn.Sequential(nn.Linear(3, 2), nn.ReLU()).eval(), torch.randn(2, 3))
    with pytest.raises(ConfigError, match=r"torch\.jit\.trace keeps none; save the model with torch\.jit\.script"):
        cr.from_torch(traced)


def test_models_that_a_model_file_would_refuse_are_not_imported(torch, capsys, tmp_path):
    nn = torch.nn
    nan = nn.Sequential(nn.Linear(3, 2))
    with torch.no_grad():
        nan[0].weight[0, 0] = float("nan")
    torch.jit.script(nan).save(str(tmp_path / "nan.pt"))
    code, _, err = run(capsys, "import", tmp_path / "nan.pt", "--out", tmp_path / "nan.npz")
    assert code == 1 and "0.W contains NaN or inf" in err and not (tmp_path / "nan.npz").exists()
    bn = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    bn[1].running_var.fill_(-1.0)
    with pytest.raises(ConfigError, match=r"layer 1 BatchNorm1d\(2\): running_var holds negative numbers"):
        cr.from_torch(bn)


@pytest.mark.parametrize(
    "batch, message",
    [
        ({"X": np.zeros(3), "y": np.zeros(1)}, "X has shape (3,); the network reads rows of 3 features"),
        ({"X": np.zeros((2, 5)), "y": np.zeros(2)}, "X has shape (2, 5); the network reads rows of 3 features"),
    ],
)
def test_import_data_that_does_not_fit_is_named(torch, capsys, tmp_path, batch, message):
    torch.jit.script(torch.nn.Sequential(torch.nn.Linear(3, 2))).save(str(tmp_path / "m.pt"))
    np.savez(tmp_path / "batch.npz", **batch)
    code, _, err = run(
        capsys, "import", tmp_path / "m.pt", "--out", tmp_path / "s.toml", "--data", tmp_path / "batch.npz"
    )
    assert code == 1 and message in err


@pytest.mark.parametrize(
    "args, message",
    [
        (["export", "{dir}/model.npz", "--out", "{dir}/nodir/x.onnx"], "cannot write {dir}/nodir/x.onnx: no folder"),
        (["export", "{dir}/model.npz", "--out", "{dir}"], "cannot write {dir}: a folder is there"),
        (["export", "{dir}/model.npz", "--format", "torch", "--out", "{dir}/folder.py"], "a folder is there"),
        (["import", "{dir}", "--out", "{dir}/x.npz"], "a folder; expected a TorchScript file"),
        (["import", "{dir}/model.npz", "--out", "{dir}/x.npz"], "an .npz archive, not a PyTorch model"),
        (["import", "{dir}/model_torch.safetensors", "--out", "{dir}/x.npz", "--classes", "a,a,b"], "--classes"),
    ],
)
def test_outputs_that_cannot_be_written_and_inputs_that_are_not_models(torch, capsys, tmp_path, args, message):
    classifier(networks()["relu"], 6).save(tmp_path / "model.npz")
    cr.export(cr.load(tmp_path / "model.npz"), tmp_path / "model_torch.py")
    (tmp_path / "folder.py").mkdir()
    before = sorted(p.name for p in tmp_path.iterdir())
    code, _, err = run(capsys, *(a.format(dir=tmp_path) for a in args))
    assert code == 1 and message.format(dir=tmp_path) in err and err.count("\n") == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing half-written


@pytest.mark.parametrize("name", ["relu", "softmax", "sigmoid_single_output", "logit_single_output"])
def test_the_generated_modules_recipe_gives_predict_proba(torch, name, tmp_path):
    model = classifier(networks()[name], 6)
    (path, _) = cr.export(model, tmp_path / "model_torch.py")
    module = import_file(path)
    recipe = next(line.strip() for line in module.__doc__.splitlines() if "model(raw)" in line)
    X = raw_inputs()
    scope = {"model": module.load(), "raw": torch.from_numpy(X), "torch": torch}
    with torch.no_grad():
        exec(recipe, scope)
    probabilities = model.predict_proba(X)
    got = scope["probabilities"].numpy() if "probabilities" in scope else scope["p"].numpy()[:, 0]
    expected = probabilities if "probabilities" in scope else probabilities[:, 1]
    assert float(np.max(np.abs(got - expected))) <= 1e-6, recipe


# -- found by a second review ------------------------------------------------------------------------------
def tied_model(torch):
    """A BatchNorm and a Linear each used twice, and two Linear layers with one weight."""
    nn = torch.nn
    torch.manual_seed(3)
    norm, shared, a, b = nn.BatchNorm1d(6), nn.Linear(6, 6), nn.Linear(6, 6), nn.Linear(6, 6)
    b.weight = a.weight
    layers = (nn.Linear(4, 6), norm, a, nn.ReLU(), norm, b, shared, nn.Tanh(), shared, nn.Sequential(nn.Linear(6, 3)))
    return nn.Sequential(*layers)


@pytest.mark.parametrize("scripted", [False, True])
def test_arrays_pytorch_shares_are_shared_and_a_step_matches_pytorchs(torch, scripted):
    model = tied_model(torch)
    network = cr.from_torch(torch.jit.script(model) if scripted else model)
    assert len(network.parameters()) == len(list(model.parameters())) == 11
    assert network.layers[5].params["W"] is network.layers[2].params["W"]
    assert network.layers[1].buffers["running_mean"] is network.layers[4].buffers["running_mean"]
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(7, 4)), rng.integers(0, 3, 7)
    cr.train_step(network, cr.SoftmaxCrossEntropyLoss(), cr.SGD(network.parameters(), lr=0.5), X, y)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    optimizer.zero_grad()
    torch.nn.functional.cross_entropy(model(torch.from_numpy(X)), torch.from_numpy(y)).backward()
    optimizer.step()
    for i, name in ((2, "weight"), (6, "weight"), (6, "bias")):
        theirs = getattr(model[i], name).detach().numpy()
        ours = network.layers[i].params["W" if name == "weight" else "b"].data
        assert_close(ours, theirs.T if name == "weight" else theirs, what=f"layer {i} {name} after a step")
    assert_close(network.layers[1].buffers["running_mean"], model[1].running_mean.numpy(), what="running mean")


def test_a_hook_kept_by_torchscript_is_refused(torch, tmp_path):
    (tmp_path / "hooked.py").write_text(
        "import torch\nfrom typing import Tuple\n\n\n"
        "def double(module, inputs: Tuple[torch.Tensor], output: torch.Tensor) -> torch.Tensor:\n"
        "    return output * 2\n"
    )
    hooked = import_file(tmp_path / "hooked.py")
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.ReLU())
    model[0].register_forward_hook(hooked.double)
    with pytest.raises(ConfigError, match="layer 0 has hooks"):
        cr.from_torch(torch.jit.script(model))


def test_the_generated_save_keeps_new_class_names_and_refuses_other_layers(torch, capsys, tmp_path):
    model = classifier(networks()["relu"], 6)
    (path, _) = cr.export(model, tmp_path / "model_torch.py")
    module = import_file(path)
    twin = module.load()
    twin.classes = ["x", "y", "z"]
    module.save(twin, tmp_path / "renamed.safetensors")
    code, _, err = run(capsys, "import", tmp_path / "renamed.safetensors", "--out", tmp_path / "renamed.npz")
    assert code == 0, err
    assert cr.load(tmp_path / "renamed.npz").classes == ("x", "y", "z")
    twin.network[-1] = torch.nn.Linear(5, 4)
    with pytest.raises(ValueError, match="this model has other layers"):
        module.save(twin, tmp_path / "other.safetensors")


def test_the_torch_export_does_not_replace_a_file_it_did_not_write(safetensors, torch, tmp_path):
    model = classifier(networks()["relu"], 6)
    model.save(tmp_path / "model.safetensors")  # a chainrule model file, where the weights would go
    before = (tmp_path / "model.safetensors").read_bytes()
    with pytest.raises(ConfigError, match="is not the weights of a --format torch export"):
        cr.export(model, tmp_path / "model.py")
    assert (tmp_path / "model.safetensors").read_bytes() == before and not (tmp_path / "model.py").exists()
    cr.export(model, tmp_path / "again.py")
    cr.export(model, tmp_path / "again.py")  # its own weights, written again


def test_import_says_when_an_evaluation_mode_model_becomes_a_training_step(torch, capsys, tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2)).eval()
    torch.jit.script(model).save(str(tmp_path / "m.pt"))
    code, out, _ = run(capsys, "import", tmp_path / "m.pt", "--out", tmp_path / "step.toml")
    assert code == 0 and "the model was in evaluation mode, the step here is in training mode" in out
    assert "evaluation mode" in (tmp_path / "step.toml").read_text().splitlines()[0]


def test_no_rows_in_no_rows_out_and_long_file_names(tmp_path):
    model = classifier(networks()["gelu+batchnorm"], 6)
    assert model.outputs(np.zeros((0, 6))).shape == (0, 3) and model.predict_proba(np.zeros((0, 6))).shape == (0, 3)
    assert model.predict(np.zeros((0, 6))).shape == (0,)
    long = tmp_path / ("m" * 240 + ".npz")  # 244 bytes: room for no longer temporary name beside it
    model.save(long)
    assert np.array_equal(cr.load(long).outputs(raw_inputs()), model.outputs(raw_inputs()))
