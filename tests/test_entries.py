"""One number opened into its computation: ``chainrule explain --entry`` and the expansions of the HTML page.

The seed's exercise (``relu_mse.toml``) is checked against arithmetic done by hand; every kind's declared
formula, read as an expression and evaluated entry by entry, is checked against what the library
computed (the JSON), so that a formula shown to learners cannot drift from the code."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from chainrule.explain import load_problem, parse_problem, run_problem, to_json
from chainrule.explain.entries import EntryError, expand, formula, paths
from chainrule.explain.render import fmt

from helpers import every_kind_problems, json_at

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
PROBLEMS = sorted(p for p in EXAMPLES.glob("*.toml") if "answers" not in p.name)


@pytest.fixture(scope="module")
def relu_mse():
    return run_problem(load_problem(EXAMPLES / "relu_mse.toml"))


# X = [[1, 2], [-1, 2]], W1 = [[1, -1], [0.5, 0]], W2 = [[0.5], [1]], y = [[2], [1]], MSE 1/(2n), lr 1.
# By hand: Z0 = [[2, -1], [0, 1]], A1 = [[2, 0], [0, 1]], Z2 = [[1], [1]], L = ((1-2)² + 0²)/4 = 0.25,
# ∂L/∂Z2 = (Z2 - y)/n = [[-0.5], [0]], ∂L/∂A1 = δ·W2ᵀ = [[-0.25, -0.5], [0, 0]], δ0 = that ⊙ [Z0 > 0]
# = [[-0.25, 0], [0, 0]], ∂L/∂W1 = Xᵀ·δ0 = [[-0.25, 0], [-0.5, 0]], W2 after = 0.5 - (2·(-0.5)) = 1.5.
BY_HAND = {
    "layers[0].grads.W[1][0]": ("∂L/∂W₀[1][0] = Σᵢ X[i][1]·δ[i][0] = 2·(−0.25) + 2·0", -0.5),
    "layers[0].output[0][1]": ("Z₀[0][1] = Σₖ X[0][k]·W₀[k][1] = 1·(−1) + 2·0", -1.0),
    "layers[1].output[0][0]": ("A₁[0][0] = max(0, Z₀[0][0]) = max(0, 2)", 2.0),
    "layers[1].grad_input[0][0]": ("∂L/∂Z₀[0][0] = δ[0][0]·f′(Z₀)[0][0] = (−0.25)·1", -0.25),
    "layers[2].grad_input[0][1]": ("∂L/∂A₁[0][1] = δ[0][0]·W₂[1][0] = (−0.5)·1", -0.5),
    "loss_grad[0][0]": ("∂L/∂Z₂[0][0] = 2·k·(Z₂[0][0] − y[0][0]) = 2·0.25·(1 − 2)", -0.5),
    "loss": ("L = k·Σᵢⱼ (Z₂[i][0] − y[i][0])² = 0.25·((1 − 2)² + (1 − 1)²)", 0.25),
    "layers[2].params_after.W[0][0]": ("W₂[0][0] ← W₂[0][0] − lr·∂L/∂W₂[0][0] = 0.5 − 1·(−1)", 1.5),
    "layers[1].local_derivative[0][1]": ("f′(Z₀)[0][1] = [Z₀[0][1] > 0] = [(−1) > 0]", 0.0),
}


@pytest.mark.parametrize("path", BY_HAND)
def test_the_seed_exercise_entries_by_hand(relu_mse, path):
    text, value = BY_HAND[path]
    expansion = expand(relu_mse, path)
    assert expansion.value == value and expansion.computed == pytest.approx(value, abs=1e-12)
    assert expansion.text(fmt) == f"{text} = {fmt(value).replace('-', '−')}"


def test_an_entry_names_the_entries_it_comes_from(relu_mse):
    assert expand(relu_mse, "layers[0].grads.W[1][0]").sources == [
        "layers[0].grad_output[0][0]",
        "layers[0].grad_output[1][0]",
        "layers[0].input[0][1]",
        "layers[0].input[1][1]",
    ]
    given = expand(relu_mse, "layers[0].params.W[0][1]")
    assert given.text(fmt) == "W₀[0][1] = −1 (given in the problem file)" and given.sources == []
    passed = expand(relu_mse, "layers[1].grad_output[0][1]")
    assert passed.sources == ["layers[2].grad_input[0][1]"] and passed.value == -0.5


def problems():
    return [pytest.param(load_problem(path), id=path.stem) for path in PROBLEMS] + [
        pytest.param(parse_problem(doc), id=doc["title"]) for doc in every_kind_problems()
    ]


@pytest.mark.parametrize("problem", problems())
def test_every_declared_formula_gives_the_librarys_number(problem):
    explanation = run_problem(problem)
    data = to_json(explanation)
    opened = 0
    for path in paths(explanation):
        expansion = expand(explanation, path)
        assert expansion.value == pytest.approx(json_at(data, path), rel=1e-12, abs=1e-15), path
        if expansion.computed is not None:
            opened += 1
            assert expansion.computed == pytest.approx(expansion.value, rel=1e-9, abs=1e-12), expansion.text(fmt)
    assert opened > 0


def test_formulas_shown_by_check_and_sheets_come_from_the_same_lookup(relu_mse):
    assert formula(relu_mse, "layers[2].grads.W") == "∂L/∂W₂ = A₁ᵀ·δ"
    assert formula(relu_mse, "data_loss") == "L = k·Σ(Z₂ − y)²"
    assert formula(relu_mse, "layers[0].input") is None


@pytest.mark.parametrize(
    "path, message",
    [
        ("layers[0].grads.W[5][0]", "index out of range for layers[0].grads.W of shape (2, 2)"),
        ("layers[0].grads.W[1]", "expected 2 indices, got 1"),
        ("layers[9].output[0][0]", "layers 0 to 2"),
        ("weights", "no array 'weights'"),
        ("layers[0].grads.W[1][0", "expected a path such as"),
    ],
)
def test_a_bad_entry_is_one_clear_message(relu_mse, path, message):
    with pytest.raises(EntryError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        expand(relu_mse, path)
    result = subprocess.run(
        [sys.executable, "-m", "chainrule.cli", "explain", str(EXAMPLES / "relu_mse.toml"), "--entry", path],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0 and "Traceback" not in result.stderr and message in result.stderr


def test_entry_on_the_command_line():
    command = [sys.executable, "-m", "chainrule.cli", "explain", str(EXAMPLES / "relu_mse.toml")]
    result = subprocess.run(
        [*command, "--entry", "layers[0].grads.W[1][0]"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout == "∂L/∂W₀[1][0] = Σᵢ X[i][1]·δ[i][0] = 2·(−0.25) + 2·0 = −0.5\n"


def test_a_long_sum_is_elided_in_the_middle():
    rng = np.random.default_rng(0)
    doc = {
        "data": {"X": rng.normal(size=(12, 2)).round(2).tolist(), "y": rng.normal(size=(12, 1)).round(2).tolist()},
        "layers": [{"type": "linear", "W": [[1.0], [0.5]]}],
        "loss": {"type": "mse"},
        "train": {"optimizer": "sgd", "lr": 0.1},
    }
    expansion = expand(run_problem(parse_problem(doc)), "layers[0].grads.W[0][0]")
    assert "… (7 more terms)" in expansion.numbers and expansion.numbers.count(" + ") == 5
    assert len(expansion.sources) == 24  # every entry it comes from is still highlighted
