"""chainrule derive: every step of every topic verified by SymPy, a wrong step caught, each result equal to
chainrule's own backward pass on random float64 inputs, every registered kind derived, every format."""

import dataclasses
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from chainrule.cli import DERIVE_FORMATS, main
from chainrule.derive import derive, derive_problem, library_error, render, verify
from chainrule.derive.output import FORMATS
from chainrule.derive.topics import all_topics, forward_of, topic_of
from chainrule.derive.walk import walk
from chainrule.explain import load_problem, parse_problem, run_problem, to_json
from chainrule.explain.problem import layer_kinds
from chainrule.registry import LAYERS, LOSSES, OPTIMIZERS

from conftest import optional
from helpers import compile_latex

sympy = optional("sympy")  # the whole module skips without it, except under CHAINRULE_REQUIRE_EXTRAS=1

EXAMPLES = Path(__file__).parents[1] / "examples"
PROBLEMS = sorted(p for p in EXAMPLES.glob("*.toml") if "answers" not in p.stem)
TOPICS = list(all_topics())
_derived: dict = {}


def derived(name):
    """Each topic derived once per test session (a few seconds for all of them)."""
    if name not in _derived:
        _derived[name] = derive(name)
    return _derived[name]


# -- every step verified, and how ---------------------------------------------------------------------
@pytest.mark.parametrize("name", TOPICS)
def test_every_step_of_every_topic_is_verified(name):
    derivation = derived(name)
    assert derivation.steps, name
    failed = [(s.shown, c.detail) for s, c in zip(derivation.steps, derivation.checks, strict=True) if not c.verified]
    assert not failed, failed
    assert {c.how for c in derivation.checks} <= {"simplify", "numeric"}
    assert all(s.reason and len(s.reason.splitlines()) == 1 for s in derivation.steps)


@pytest.mark.parametrize("name", TOPICS)
def test_the_result_is_what_chainrule_computes(name):
    """The final formula, as SymPy has it, evaluated on random float64 inputs equals chainrule's backward pass
    (or its optimizer's update) on the same inputs."""
    derivation = derived(name)
    assert derivation.against is not None, f"{name} has no comparison with the library"
    for seed in (0, 1):
        assert library_error(derivation, sympy, seed) < 1e-12, name


# -- a wrong step is caught -------------------------------------------------------------------------
def _with_step(derivation, index, **changes):
    steps = list(derivation.steps)
    steps[index] = dataclasses.replace(steps[index], **changes)
    return verify(dataclasses.replace(derivation, steps=steps, checks=[]), sympy)


def test_a_wrong_step_is_caught_by_simplification_and_by_numbers():
    sigmoid = derive("sigmoid")
    z = sympy.Symbol("z", real=True)
    s = 1 / (1 + sympy.exp(-z))
    wrong = _with_step(sigmoid, 3, rhs=s * (1 + s))  # σ′ = σ(1 + σ): a sign slip
    assert not wrong.verified and wrong.verified is False
    check = wrong.checks[3]
    assert not check.verified and check.how == "numeric" and "simplify did not reach 0" in check.detail
    assert all(c.verified for k, c in enumerate(wrong.checks) if k != 3)
    assert "✗ NOT VERIFIED" in render(wrong, "text")
    assert json.loads(render(wrong, "json"))["steps"][3]["verified"] is False


def test_the_transposed_weight_gradient_is_caught():
    """The slip the shape argument is about: (Xᵀ·δ)ᵀ in place of Xᵀ·δ, for a square W where shapes cannot tell."""
    linear = derive("linear")
    step = linear.steps[3]
    assert step.shown == "∂L/∂W = Xᵀ·δ"
    wrong = _with_step(linear, 3, rhs=step.rhs.T)
    assert not wrong.checks[3].verified


def test_a_wrong_numeric_step_is_caught():
    """BatchNorm's collected backward with 1/(N − 1) in place of 1/N: only numbers can check this step."""
    batchnorm = derive("batchnorm")
    index = next(k for k, s in enumerate(batchnorm.steps) if s.shown.startswith("∂L/∂xₖ = (N·ĝₖ"))
    step = batchnorm.steps[index]
    wrong = _with_step(batchnorm, index, rhs=step.rhs * 3 / 2)
    assert not wrong.checks[index].verified and wrong.checks[index].how == "numeric"


def test_sides_of_different_shapes_are_not_verified():
    linear = derive("linear")
    wrong = _with_step(linear, 3, rhs=linear.steps[3].rhs[:, :1])
    assert not wrong.checks[3].verified and wrong.checks[3].how == "shape"


# -- every kind has its derivation ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "family, registry", [("layer", LAYERS), ("loss", LOSSES), ("optimizer", OPTIMIZERS)], ids=["layer", "loss", "opt"]
)
def test_every_registered_kind_has_a_derivation(family, registry):
    missing = [name for name in registry.names() if topic_of(family, name) is None]
    assert not missing, f"no chainrule derive topic declares kinds={[f'{family}:{n}' for n in missing]}"


def test_every_kind_of_a_problem_file_has_a_sympy_forward_pass():
    """derive --problem differentiates each layer and loss of a file in SymPy."""
    assert [k for k in layer_kinds() if forward_of("layer", k) is None] == []
    assert [k for k in LOSSES.names() if forward_of("loss", k) is None] == []


def test_topics_name_only_registered_kinds():
    registries = {"layer": LAYERS, "loss": LOSSES, "optimizer": OPTIMIZERS}
    for topic in all_topics().values():
        for key in topic.kinds:
            family, kind = key.split(":")
            assert kind in registries[family], (topic.name, key)


# -- what the topics say --------------------------------------------------------------------------------
def test_the_worked_example_of_the_notes():
    """z = [1, 2, 3], y = [0, 1, 0]: softmax ≈ [0.090, 0.245, 0.665], L ≈ 1.407, ∂L/∂z ≈ [0.090, −0.755, 0.665]."""
    steps = derived("softmax_cross_entropy").steps
    first = next(k for k, s in enumerate(steps) if s.shown.startswith("ŷ = (e, e², e³)"))
    text = steps[first].shown + steps[first + 1].shown
    total = math.e + math.e**2 + math.e**3
    probs = [math.e / total, math.e**2 / total, math.e**3 / total]
    assert [round(p, 3) for p in probs] == [0.090, 0.245, 0.665]  # the notes' numbers, by hand
    shown = [float(v.replace("−", "-")) for v in re.findall(r"−?\d+\.\d+", text)]
    expected = [*probs, -math.log(probs[1]), probs[0], probs[1] - 1, probs[2]]
    assert shown == pytest.approx(expected, abs=5e-5)


def test_the_problem_walk_of_the_notes_exercise():
    """y = ReLU(X·W₀)·W₂, MSE 1/(2n): the gradients worked by hand (X = [[1, 2], [−1, 2]], W₀ = [[1, −1],
    [0.5, 0]], W₂ = [[0.5], [1]], y = [[2], [1]]: Z₀ = [[2, −1], [0, 1]], A₁ = [[2, 0], [0, 1]], Z₂ = [[1], [1]])."""
    derivation = derive_problem(EXAMPLES / "relu_mse.toml")
    assert derivation.verified
    shown = [s.shown for s in derivation.steps]
    assert shown == [
        "∂L/∂Z₂ = 2·k·(Z₂ − Y) = [[−0.5], [0]]",
        "∂L/∂W₂ = A₁ᵀ·δ₂ = [[−1], [0]]",
        "∂L/∂A₁ = δ₂·W₂ᵀ = [[−0.25, −0.5], [0, 0]]",
        "f′(Z₀) = [Z₀ > 0],  ∂L/∂Z₀ = δ₁ ⊙ f′(Z₀) = [[−0.25, 0], [0, 0]]",
        "∂L/∂W₀ = Xᵀ·δ₀ = [[−0.25, 0], [−0.5, 0]]",
    ]


@pytest.mark.parametrize("path", PROBLEMS, ids=[p.stem for p in PROBLEMS])
def test_the_walk_of_every_example_is_verified(path):
    problem = load_problem(path)
    derivation = verify(walk(problem, sympy), sympy)
    assert derivation.verified, [(s.shown, c.detail) for s, c in zip(derivation.steps, derivation.checks, strict=True)]
    if problem.model.parameters():  # the walk ends at the first weight
        assert any(s.shown.startswith("∂L/∂W₀ = Xᵀ·δ₀") for s in derivation.steps[-2:])


def test_a_wrong_number_in_the_walk_is_caught():
    derivation = walk(load_problem(EXAMPLES / "relu_mse.toml"), sympy)
    last = derivation.steps[-1]
    wrong = _with_step(verify(derivation, sympy), len(derivation.steps) - 1, rhs=last.rhs * (1 + 1e-6))
    assert not wrong.checks[-1].verified


# -- formats ------------------------------------------------------------------------------------------------
def test_the_cli_offers_every_format():
    assert DERIVE_FORMATS == FORMATS


@pytest.mark.parametrize("name", TOPICS)
def test_every_topic_in_every_format(name):
    derivation = derived(name)
    text = render(derivation, "text", verbose=True)
    assert text.count("✓") == len(derivation.steps) and "check: " in text and "largest relative difference" in text
    markdown = render(derivation, "markdown")
    assert markdown.count("$$") == 2 * (len(derivation.given) + len(derivation.steps))
    document = render(derivation, "latex")
    assert document.startswith(r"\documentclass") and document.count(r"\[") == document.count(r"\]")
    entry = json.loads(render(derivation, "json", verbose=True))
    assert entry["topic"] == name and entry["verified"] is True and entry["library_error"] < 1e-12
    assert [s["how"] for s in entry["steps"]] == [c.how for c in derivation.checks]
    assert all(s["verified"] is True and s["equation"] and s["latex"] and s["reason"] for s in entry["steps"])


def test_latex_compiles(tmp_path):
    walks = [verify(walk(load_problem(path), sympy), sympy) for path in PROBLEMS]
    compile_latex({"derive": render([derived(n) for n in TOPICS] + walks, "latex", verbose=True)}, tmp_path)


# -- explain names the derivations ----------------------------------------------------------------------
def test_explain_names_the_derivation_of_each_formula():
    explanation = run_problem(load_problem(EXAMPLES / "softmax_regression_l2.toml"))
    data = to_json(explanation)
    assert [layer["derivation"] for layer in data["layers"]] == ["linear"]
    assert data["derivations"] == {"loss": "softmax_cross_entropy", "optimizer": "gradient_descent", "l2": "l2"}
    from chainrule.explain.render import render as render_explanation

    assert "Why: chainrule derive softmax_cross_entropy" in render_explanation(explanation, "text")
    doc = {
        "data": {"X": [[1.0, 2.0]], "y": [[0.5]]},
        "layers": [{"type": "linear", "W": [[1.0], [2.0]]}, {"type": "tanh"}],
        "loss": {"type": "mse"},
        "train": {"optimizer": "adam", "lr": 0.1},
    }
    data = to_json(run_problem(parse_problem(doc)))
    assert [layer["derivation"] for layer in data["layers"]] == ["linear", "tanh"]
    assert data["derivations"] == {"loss": "mse_identity", "optimizer": "adam"}
    for name in [*data["derivations"].values(), *(layer["derivation"] for layer in data["layers"])]:
        assert name in TOPICS


# -- the command line -------------------------------------------------------------------------------------
def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_list_and_one_topic(capsys):
    code, out, _ = run(capsys, "derive", "--list")
    assert code == 0 and [line.split()[0] for line in out.splitlines()] == TOPICS
    code, out, _ = run(capsys, "derive", "tanh", "--verify")
    assert code == 0 and "tanh′(z) = 1 − a²" in out and "check: simplify(lhs − rhs) = 0" in out
    code, out, _ = run(capsys, "derive", "relu", "--format", "json")
    assert code == 0 and json.loads(out)["kinds"] == ["layer:relu"]
    code, out, _ = run(capsys, "derive", "relu", "tanh", "--format", "json")
    assert code == 0 and [d["topic"] for d in json.loads(out)] == ["relu", "tanh"]


def test_cli_problem(capsys, tmp_path):
    code, out, _ = run(capsys, "derive", "--problem", EXAMPLES / "sigmoid_logloss.toml", "--format", "json")
    assert code == 0 and json.loads(out)["verified"] is True
    (tmp_path / "bad.toml").write_text("[data]\nX = 1\n")
    code, out, err = run(capsys, "derive", "--problem", tmp_path / "bad.toml")
    assert code == 2 and out == "" and err.startswith("chainrule: error: ") and err.count("\n") == 1


def test_cli_bad_calls_are_one_line(capsys):
    code, _, err = run(capsys, "derive", "no_such_topic")
    assert code == 2 and "unknown derivation topic(s) no_such_topic; expected some of: sigmoid" in err
    code, _, err = run(capsys, "derive")
    assert code == 2 and "name a TOPIC" in err and err.count("\n") == 1


def test_without_sympy_derive_says_how_to_install_it(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "sympy", None)  # import sympy raises ImportError
    code, _, err = run(capsys, "derive", "sigmoid")
    assert code == 1
    assert err == "chainrule: error: chainrule derive needs the sympy package: pip install 'chainrule[derive]'\n"
    code, out, _ = run(capsys, "derive", "--list")  # listing needs no SymPy
    assert code == 0 and "sigmoid" in out


def test_help_list_and_explain_import_no_sympy():
    code = f"""
import sys
from chainrule.cli import main
from chainrule.explain import load_problem, run_problem, to_json
to_json(run_problem(load_problem({str(EXAMPLES / "relu_mse.toml")!r})))
main(["derive", "--list"])
print("sympy" in sys.modules)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "False"
