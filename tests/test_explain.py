"""chainrule explain: the JSON of every example against hand-worked numbers and PyTorch's autograd,
random problem files against PyTorch, and every output format."""

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import chainrule as cr
from chainrule.explain import load_problem, parse_problem, run_problem, to_json
from chainrule.explain.render import render
from chainrule.step import train_step
from chainrule.trace import Trace

from helpers import assert_close, compile_latex, every_kind_problems
from torch_mirror import to_torch, torch_arrays, torch_loss, torch_optimizer

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
PROBLEMS = sorted(p for p in EXAMPLES.glob("*.toml") if "answers" not in p.name)


def explain_json(path, *args):
    result = subprocess.run(
        [sys.executable, "-m", "chainrule.cli", "explain", str(path), "--format", "json", *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout)


# -- the examples, by hand ------------------------------------------------------------------------
def test_relu_mse_json_by_hand():
    out = explain_json(EXAMPLES / "relu_mse.toml")
    assert out["loss"] == 0.25 and out["history"] == [0.25]
    layers = out["layers"]
    assert [entry["type"] for entry in layers] == ["linear", "relu", "linear"]
    assert layers[0]["output"] == [[2, -1], [0, 1]]
    assert layers[1]["output"] == [[2, 0], [0, 1]]
    assert layers[2]["output"] == [[1], [1]]
    assert layers[2]["grad_output"] == [[-0.5], [0]]
    assert layers[2]["grads"] == {"W": [[-1], [0]]}
    assert layers[1]["grad_input"] == [[-0.25, 0], [0, 0]]
    assert layers[0]["grads"] == {"W": [[-0.25, 0], [-0.5, 0]]}
    assert layers[0]["params_after"] == {"W": [[1.25, -1], [1, 0]]}
    assert layers[2]["params_after"] == {"W": [[1.5], [1]]}
    # after the step: H = X·W1 = [[3.25, −1], [0.75, 1]], ŷ = [[4.875], [2.125]], MSE = (2.875² + 1.125²)/4
    assert out["final_loss"] == pytest.approx((2.875**2 + 1.125**2) / 4, rel=1e-15)


def test_sigmoid_logloss_json_by_hand():
    out = explain_json(EXAMPLES / "sigmoid_logloss.toml")
    p = 1 / (1 + np.exp(-1.0))
    sig = out["layers"][3]
    assert_close(sig["output"], [[p], [p]], 1e-15)
    assert_close(sig["local_derivative"], [[p * (1 - p)]] * 2, 1e-15)
    assert_close(sig["grad_output"], [[1 / (1 - p)], [-1 / p]], 1e-14)  # ∂/∂p of −[y ln p + (1−y) ln(1−p)]
    assert_close(sig["grad_input"], [[p - 0], [p - 1]], 1e-14)  # (p − y), scale "sum"
    assert out["loss"] == pytest.approx(-np.log(1 - p) - np.log(p), rel=1e-14)


def test_softmax_cross_entropy_json_by_hand():
    out = explain_json(EXAMPLES / "softmax_cross_entropy.toml")
    np.testing.assert_allclose(out["layers"][0]["output"], [[0.0900306, 0.2447285, 0.6652410]], atol=5e-8)
    assert out["loss"] == pytest.approx(1.4076060, abs=5e-8)
    np.testing.assert_allclose(out["layers"][0]["grad_input"], [[0.0900306, -0.7552715, 0.6652410]], atol=5e-8)
    assert "grads" not in out["layers"][0]


def test_softmax_regression_json_by_its_formula():
    problem = tomllib.loads((EXAMPLES / "softmax_regression_l2.toml").read_text())
    X, labels = np.array(problem["data"]["X"]), np.array(problem["data"]["y"])
    W, b = np.array(problem["layers"][0]["W"]), np.array(problem["layers"][0]["b"])
    lam, lr, M = problem["loss"]["l2"], problem["train"]["lr"], len(X)
    Y = np.eye(3)[labels]
    history = []
    for step in range(problem["train"]["steps"]):
        f = X @ W + b
        f = f - f.max(axis=1, keepdims=True)
        S = np.exp(f) / np.exp(f).sum(axis=1, keepdims=True)
        history.append(-np.sum(Y * np.log(S)) / M + lam / 2 * np.sum(W**2))
        grad_W, grad_b = X.T @ (S - Y) / M + lam * W, (S - Y).sum(axis=0) / M
        if step == 0:
            first = grad_W, grad_b
        W, b = W - lr * grad_W, b - lr * grad_b
    out = explain_json(EXAMPLES / "softmax_regression_l2.toml")
    assert_close(out["history"], history)
    assert_close(out["layers"][0]["grads"]["W"], first[0])
    assert_close(out["layers"][0]["grads"]["b"], first[1])
    assert_close(out["layers"][0]["params_after"]["W"], W)
    assert_close(out["layers"][0]["params_after"]["b"], b)


# -- PyTorch on the same problems ----------------------------------------------------------------------
def torch_reference(torch, problem, steps):
    """Loss, per-layer outputs and gradients of step 1, then ``steps`` updates with torch.optim."""
    model = problem.model.astype(np.float64)
    mirror = to_torch(model)
    params = list(mirror.parameters())
    if params:
        settings = problem.make_optimizer(model).config()  # every setting, the file's and the defaults
        opt = torch_optimizer(torch, problem.optimizer_name, settings, params)
    X = torch.tensor(problem.X)
    y = torch.tensor(problem.loss.target)  # the loss's reading of y (indices → one-hot rows)
    history, first = [], None

    def total_loss():
        outputs, h = [], X
        for child in mirror:
            h = child(h)
            if h.requires_grad:
                h.retain_grad()
            outputs.append(h)
        value = torch_loss(torch, problem.loss.kind, problem.loss.scale, h, y, len(problem.X))
        weights = [c.weight for c in mirror if isinstance(c, torch.nn.Linear)]
        return value + problem.l2 / 2 * sum((w**2).sum() for w in weights), outputs

    for step in range(steps):
        if params:
            opt.zero_grad()
        X.requires_grad_(True)
        X.grad = None
        value, outputs = total_loss()
        value.backward()
        history.append(value.item())
        if step == 0:
            first = {
                "loss": value.item(),
                "outputs": [o.detach().numpy().copy() for o in outputs],
                "grad_outputs": [o.grad.numpy().copy() for o in outputs],
                "grad_x": X.grad.numpy().copy(),
                "grads": torch_arrays(mirror, model),
            }
            first["grads"] = {k: v.copy() for k, v in first["grads"].items()}
        if params:
            opt.step()
    with torch.no_grad():
        final = total_loss()[0].item()
    return first, history, final, torch_arrays(mirror, model, of=lambda t: t.detach())


def compare_with_torch(torch, problem, steps=None):
    steps = problem.steps if steps is None else steps
    out = to_json(run_problem(problem, steps))
    first, history, final, params_after = torch_reference(torch, problem, steps)
    assert_close(out["loss"], first["loss"], what="loss")
    for i, entry in enumerate(out["layers"]):
        assert_close(entry["output"], first["outputs"][i], what=f"layers[{i}].output")
        assert_close(entry["grad_output"], first["grad_outputs"][i], what=f"layers[{i}].grad_output")
        grad_input = first["grad_outputs"][i - 1] if i else first["grad_x"]
        assert_close(entry["grad_input"], grad_input, what=f"layers[{i}].grad_input")
        for name, value in entry.get("grads", {}).items():
            # β of a BatchNorm before another BatchNorm has a gradient that is 0 in exact arithmetic: a
            # sum of ~1-sized terms that cancel, leaving ~1e-14 of float64 noise on both sides
            assert_close(value, first["grads"][f"{i}.{name}"], what=f"layers[{i}].grads.{name}", floor=1e-3)
            assert_close(
                entry["params_after"][name], params_after[f"{i}.{name}"], what=f"layers[{i}].params_after.{name}"
            )
    assert_close(out["history"], history, what="history")
    assert_close(out["final_loss"], final, what="final_loss")


@pytest.mark.parametrize("path", PROBLEMS, ids=lambda p: p.stem)
def test_every_example_against_torch(torch, path):
    compare_with_torch(torch, load_problem(path))
    compare_with_torch(torch, load_problem(path), steps=3)


LAYERS = ["linear", "relu", "sigmoid", "tanh", "leaky_relu", "gelu", "identity", "batchnorm", "layernorm"]


@st.composite
def problem_files(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    n, features = draw(st.integers(3, 6)), draw(st.integers(1, 4))
    doc = {"data": {"X": rng.normal(size=(n, features)).round(3).tolist()}, "layers": []}
    for kind in draw(st.lists(st.sampled_from(LAYERS), min_size=0, max_size=4)):
        if kind in ("batchnorm", "layernorm") and (
            not doc["layers"] or doc["layers"][-1]["type"] != "linear" or (kind == "layernorm" and features < 3)
        ):
            # as in practice, right after a linear layer: BatchNorm after BatchNorm (or an identity
            # between) makes the first β's gradient 0 in exact arithmetic, and Adam turns its 1e-16
            # rounding noise into full-size steps that no two implementations share
            continue
        if kind == "batchnorm":  # a bias before BatchNorm (through affine layers) has a zero gradient too
            for earlier in reversed(doc["layers"]):
                if earlier["type"] not in ("linear", "identity"):
                    break
                earlier.pop("b", None)
        layer = {"type": kind}
        if kind == "linear":
            out = int(rng.integers(1, 5))
            layer["W"] = rng.normal(size=(features, out)).round(3).tolist()
            if rng.random() < 0.5:
                layer["b"] = rng.normal(size=out).round(3).tolist()
            features = out
        elif kind in ("batchnorm", "layernorm"):
            layer["gamma"], layer["beta"] = rng.normal(size=features).tolist(), rng.normal(size=features).tolist()
        elif kind == "leaky_relu":
            layer["alpha"] = float(rng.uniform(0, 0.5))
        doc["layers"].append(layer)
    loss = draw(st.sampled_from(["mse", "bce", "bce_with_logits", "cross_entropy", "softmax_cross_entropy"]))
    classes = int(rng.integers(2, 4)) if "cross_entropy" in loss else 1 if loss.startswith("bce") else features
    # the last layer's weights small enough that a sigmoid stays away from saturation: at p = 1 − 1e-6
    # the BCE gradient (p − y)/(p(1 − p)) turns one ulp of p into a 1e-10 relative difference, which
    # would test floating-point rounding against PyTorch's, not the maths
    doc["layers"].append(
        {
            "type": "linear",
            "W": (0.5 * rng.normal(size=(features, classes))).round(3).tolist(),
            "b": rng.normal(size=classes).round(3).tolist(),
        }
    )
    if loss in ("bce", "cross_entropy"):
        doc["layers"].append({"type": "sigmoid" if loss == "bce" else "softmax"})
    if loss == "mse":
        doc["data"]["y"] = rng.normal(size=(n, classes)).round(3).tolist()
    elif loss.startswith("bce"):
        doc["data"]["y"] = rng.integers(0, 2, (n, 1)).tolist()
    else:
        doc["data"]["y"] = rng.integers(0, classes, n).tolist()
    doc["loss"] = {
        "type": loss,
        "scale": draw(st.sampled_from(["mean", "sum", "half_mean", "half_sum"])),
        "l2": draw(st.sampled_from([0.0, 0.05])),
    }
    optimizer = draw(st.sampled_from(cr.OPTIMIZERS.names()))
    doc["train"] = {
        "optimizer": optimizer,
        "lr": 0.01 if optimizer.startswith(("adam", "rms")) else 0.05,
        "steps": draw(st.integers(1, 4)),
    }
    if optimizer == "momentum":
        doc["train"].update(momentum=0.8, nesterov=draw(st.booleans()))
    if optimizer == "rmsprop":
        doc["train"].update(alpha=0.9, momentum=draw(st.sampled_from([0.0, 0.5])))
    return doc


@settings(max_examples=40, deadline=None)
@given(problem_files())
def test_random_problem_files_agree_with_torch(torch, doc):
    problem = parse_problem(doc, "random.toml")
    if problem.loss.kind == "bce":
        # BCE on probabilities is ill-conditioned at saturation (the reason bce_with_logits exists):
        # at p = 1 − 1e-9 one ulp of p moves (p − y)/(p(1 − p)) by 1e-7, so a comparison at 1e-10
        # would test rounding, not the maths
        p = problem.model.astype(np.float64).forward(problem.X)
        assume(np.min(np.minimum(p, 1 - p)) > 1e-6)
    compare_with_torch(torch, problem)


# -- the renderers ------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", PROBLEMS, ids=lambda p: p.stem)
@pytest.mark.parametrize("format", ["text", "markdown", "latex"])
def test_every_format_renders_every_example(path, format):
    explanation = run_problem(load_problem(path), steps=3)
    out = render(explanation, format)
    assert "Forward pass" in out and "Backward pass" in out
    if format == "text":
        assert "⎡" in out or "[" in out
    else:
        assert r"\begin{pmatrix}" in out
        assert len(re.findall(r"\\left(?![a-z])", out)) == len(re.findall(r"\\right(?![a-z])", out))
        assert out.count("{") == out.count("}")
    if format == "latex":
        assert out.startswith(r"\documentclass") and out.rstrip().endswith(r"\end{document}")


def test_latex_compiles(tmp_path):
    documents = {path.stem: render(run_problem(load_problem(path), steps=2), "latex") for path in PROBLEMS}
    # and every kind of layer, loss and optimizer, their formulas in one document
    docs = every_kind_problems()
    docs[0]["title"] = "Réseau — Übung 3: 50% & $5 #1 ~ ^ _ {x} \\ x̂ σ² Δ Ω ∝ √"  # text, specials and maths
    bodies = [render(run_problem(parse_problem(doc)), "latex") for doc in docs]
    start, end = r"\begin{document}", r"\end{document}"
    documents["every_kind"] = (
        bodies[0].split(start)[0]
        + start
        + "".join(body.split(start)[1].split(end)[0] + "\\clearpage\n" for body in bodies)
        + end
        + "\n"
    )
    compile_latex(documents, tmp_path)


def test_precision_rounds_text_but_not_json():
    explanation = run_problem(load_problem(EXAMPLES / "softmax_cross_entropy.toml"))
    assert "0.2447" in render(explanation, "text") and "0.24473" not in render(explanation, "text")
    assert "0.24472847" in render(explanation, "text", precision=8)
    assert json.loads(render(explanation, "json"))["layers"][0]["output"][0][1] == pytest.approx(
        0.24472847105479764, rel=1e-15
    )


def test_fused_simplification_is_shown_with_the_numbers_of_the_backward_pass():
    text = render(run_problem(load_problem(EXAMPLES / "softmax_cross_entropy.toml")), "text")
    # softmax([1, 2, 3]) = [0.0900, 0.2447, 0.6652], y = [0, 1, 0], k = 1 (mean over one object)
    line = next(line for line in text.splitlines() if "= k·(A₀ − y) =" in line)
    assert line.endswith("= [0.09  -0.7553  0.6652]₁ₓ₃"), line
    assert "(Ŷ − Y)/n" in text


def test_both_spellings_give_the_same_numbers():
    separate = parse_problem(
        {
            "data": {"X": [[1.0, 2.0, 3.0], [0.5, -1.0, 2.0]], "y": [1, 2]},
            "layers": [{"type": "softmax"}],
            "loss": {"type": "cross_entropy"},
        }
    )
    fused = parse_problem(
        {
            "data": {"X": [[1.0, 2.0, 3.0], [0.5, -1.0, 2.0]], "y": [1, 2]},
            "layers": [{"type": "identity"}],
            "loss": {"type": "softmax_cross_entropy"},
        }
    )
    a, b = to_json(run_problem(separate)), to_json(run_problem(fused))
    assert a["loss"] == pytest.approx(b["loss"], rel=1e-14)
    assert_close(a["layers"][0]["grad_input"], b["layers"][0]["grad_input"], 1e-14)


def test_many_steps_report_the_history_without_rendering_every_step():
    explanation = run_problem(load_problem(EXAMPLES / "softmax_regression_l2.toml"), steps=10_000)
    assert len(explanation.history) == 10_000 and len(explanation.steps) <= 20
    assert explanation.history[-1] < explanation.history[0]
    text = render(explanation, "text")
    assert "step  10000" in text and len(text.splitlines()) < 200


def test_trace_of_any_sequential_from_python():
    model = cr.mlp([3, 4, 2], "tanh", batchnorm=True, seed=0, dtype=np.float64)
    X, y = np.random.default_rng(0).normal(size=(5, 3)), np.array([0, 1, 1, 0, 1])
    reference = model.astype(np.float64)
    trace = Trace()
    with trace.recording(model):
        train_step(model, cr.SoftmaxCrossEntropyLoss(), cr.SGD(model.parameters(), lr=0.1), X, y, input_grad=True)
    assert model.observer is None and sorted(trace.layers) == [0, 1, 2, 3]
    h = X
    for i, layer in enumerate(reference.layers):  # the trace holds what the layers returned
        h = layer.forward(h)
        assert_close(trace.layers[i].output, h, 1e-15)
    record = trace.layers[0]  # ∂L/∂W = Xᵀ·δ holds between the recorded arrays (the linear layer's backward rule)
    assert_close(record.grads["W"], record.input.T @ record.grad_output, 1e-14)
    assert_close(record.grads["W"], model[0].params["W"].grad, 0)  # the gradient the step used
    tanh = trace.layers[2]
    assert_close(tanh.local_derivative, 1 - tanh.output**2, 1e-15)
    assert_close(tanh.grad_input, tanh.grad_output * tanh.local_derivative, 1e-15)
