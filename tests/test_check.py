"""chainrule check on a worked solution with slips (the numbers of the published solution of the exercise
in the original notes) finds them, accepts a correct solution, and bad problem or answers files get one
line naming the file and the place (exit code 2)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from chainrule.explain import load_problem, run_problem
from chainrule.explain.check import _Sheet, check_answers, load_answers

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def checked(problem, answers, credit=1.0):
    answers_path = str(EXAMPLES / answers)
    return check_answers(run_problem(load_problem(EXAMPLES / problem)), load_answers(answers_path), credit=credit)


def verdicts(problem, answers):
    return {v.path: v for v in checked(problem, answers)}


def cli(*args):
    return subprocess.run([sys.executable, "-m", "chainrule.cli", *map(str, args)], capture_output=True, text=True)


def test_the_worked_solution_with_slips_three_roots_and_error_carried_forward():
    """Worked by hand (examples/relu_mse.toml): Z₀ = X·W₀ = [[2, −1], [0, 1]], ŷ = [[1], [1]], y = [[2], [1]],
    δ = (ŷ − y)/n = [[−0.5], [0]]. The sheet writes Z₀[0][1] = −0.5 (an arithmetic slip ReLU hides), δ = ŷ − y
    (the 1/n forgotten), then works on correctly from there: ∂L/∂W₂ = A₁ᵀ·δ = [[−2], [0]], δ·W₂ᵀ =
    [[−0.5, −1], [0, 0]], the ReLU mask gives [[−0.5, 0], [0, 0]], Xᵀ·δ = [[−0.5, 0], [−1, 0]], W₂ − (−2, 0)ᵀ =
    [[2.5], [1]]; but W₀ − gᵀ = [[1.5, 0], [0.5, 0]] (the gradient transposed in the update)."""
    result = checked("relu_mse.toml", "relu_mse_answers_with_slips.toml")
    v = {x.path: x for x in result}
    assert [r.path for r in result.roots] == ["layers[0].output", "layers[2].grad_output", "layers[0].params_after.W"]
    first, scale, update = result.roots
    assert first.slip is None and "no known slip explains this ([0][1] is -0.5, not -1)" in first.description
    assert "computed as Z₀ = X·W₀" in first.description
    assert scale.slip in ("loss.mean_forgotten", "loss.half_forgotten")  # with n = 2 the two are the same numbers
    assert {scale.slip, *scale.alternatives} == {"loss.mean_forgotten", "loss.half_forgotten"}
    carried = ["layers[2].grads.W", "layers[1].grad_output", "layers[1].grad_input", "layers[0].grads.W",
               "layers[2].params_after.W"]  # fmt: skip
    assert scale.explains == carried
    assert update.slip == "update.gradient_transposed" and update.explains == []
    assert [p for p, x in v.items() if x.verdict == "carried_forward"] == sorted(carried, key=list(v).index)
    assert v["layers[2].params_after.W"].expected_given_yours == [[2.5], [1.0]]
    assert v["layers[1].grad_input"].expected_given_yours == [[-0.5, 0.0], [0.0, 0.0]]
    assert [p for p, x in v.items() if x.verdict == "right"] == ["layers[1].output", "layers[2].output", "loss"]
    assert result.score == {"right": 3, "carried_forward": 5, "wrong": 3, "unanswered": 0, "mark": 8.0, "out_of": 11}
    half = checked("relu_mse.toml", "relu_mse_answers_with_slips.toml", credit=0.5)
    assert half.score["mark"] == 3 + 0.5 * 5


def test_logloss_derivative_with_the_wrong_sign_for_y_1_and_what_follows():
    """p = σ(0.5·2 + 1·0) = σ(1) ≈ 0.73 for both rows; ∂logloss/∂p = −y/p + (1 − y)/(1 − p) = (3.72, −1.37).
    The sheet writes +1.4 for y = 1 (the term's sign lost), then (3.7, 1.4) ⊙ (0.2, 0.2) = (0.74, 0.28)."""
    result = checked("sigmoid_logloss.toml", "sigmoid_logloss_answers_with_slips.toml")
    v = {x.path: x for x in result}
    assert v["layers[3].output"].verdict == v["layers[3].local_derivative"].verdict == "right"  # 0.73, 0.2 rounded
    [root] = result.roots
    assert (root.path, root.slip, root.explains) == (
        "layers[3].grad_output",
        "bce.y_term_sign",
        ["layers[3].grad_input"],
    )
    assert v["layers[3].grad_input"].verdict == "carried_forward"
    assert np.allclose(v["layers[3].grad_input"].expected_given_yours, [[0.74], [0.28]])


def test_correct_solution_is_accepted():
    result = cli("check", EXAMPLES / "relu_mse.toml", EXAMPLES / "relu_mse_answers.toml")
    assert result.returncode == 0, result.stdout
    assert result.stdout.startswith("11 of 11 answers right, 0 carried forward, 0 wrong, 0 unanswered: mark 11 of 11")


def test_published_solution_exits_1_and_json_has_roots_verdicts_and_score():
    result = cli("check", EXAMPLES / "relu_mse.toml", EXAMPLES / "relu_mse_answers_with_slips.toml", "--format", "json")
    assert result.returncode == 1
    out = json.loads(result.stdout)
    assert out["right"] == 3 and out["total"] == 11  # the first contract's keys stay
    assert out["score"] == {"right": 3, "carried_forward": 5, "wrong": 3, "unanswered": 0, "mark": 8.0, "out_of": 11}
    assert [r["path"] for r in out["roots"]] == [
        "layers[0].output",
        "layers[2].grad_output",
        "layers[0].params_after.W",
    ]
    assert set(out["roots"][1]) >= {"path", "slip", "description", "explains"}
    answer = next(a for a in out["answers"] if a["path"] == "layers[2].grads.W")
    assert answer["verdict"] == "carried_forward" and answer["expected_given_yours"] == [[-2.0], [0.0]]
    assert answer["root"] == "layers[2].grad_output" and answer["right"] is False
    assert set(answer) >= {"path", "right", "written", "expected", "causes", "verdict", "expected_given_yours"}


def test_the_text_report_opens_with_the_roots():
    result = cli("check", EXAMPLES / "relu_mse.toml", EXAMPLES / "relu_mse_answers_with_slips.toml")
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Root 1 — layers[0].output: no known slip explains this")
    assert lines[1].startswith("Root 2 — layers[2].grad_output: the 1/n of the mean over the objects was forgotten")
    assert "↪ layers[2].grads.W" in lines


@pytest.mark.parametrize(
    "text, right",
    [
        ("loss = 0.25", True),
        ("loss = 0.3", True),  # 0.3 means 0.25 to 0.35
        ("loss = 0.19", False),
        ("loss = 0.250", True),
        ("loss = 0.251", False),
        ("loss = 1", False),  # an integer is read as rounded to units where the right value is not one: 0.5 to 1.5
        ("loss = 0", True),  # ... so 0 is 0.25 rounded to units
        ('"layers[2].grad_output" = [[-1], [0]]', False),  # −1 is not a rounded −0.5
        ('"layers[2].output" = [[1], [1]]', True),
        ('"layers[2].output" = [1, 1]', True),
        ('"layers[2].output" = [[1.0], [1.0]]', True),
        ('"layers[2].output" = [[1], [2]]', False),  # an integer where the right value is one is exact
    ],
)
def test_precision_and_shape_rules(tmp_path, text, right):
    answers = tmp_path / "a.toml"
    answers.write_text(text + "\n")
    result = check_answers(run_problem(load_problem(EXAMPLES / "relu_mse.toml")), load_answers(str(answers)))
    assert (result.verdicts[0].verdict == "right") is right, result.verdicts[0].causes


def test_a_written_zero_is_right_for_a_value_that_is_zero_up_to_rounding():
    sheet = _Sheet({"x": np.array([0.0, -1.0])}, {"x": np.array([-1.0, -1.0])})  # two integers, as written
    assert sheet.fits("x", np.array([-1.8e-8, -1.0]))
    assert not sheet.fits("x", np.array([-1.8e-8, -0.5]))


def test_unanswered_answers_and_entries_are_not_wrong(tmp_path):
    answers = tmp_path / "a.toml"
    answers.write_text(
        'loss = ""\n"layers[0].output" = [[2, "?"], ["", 1]]\n"layers[2].grads.W" = [["?"], [""]]\n'
        '"layers[2].output" = [[1], [""]]\n'
    )
    result = check_answers(run_problem(load_problem(EXAMPLES / "relu_mse.toml")), load_answers(str(answers)))
    v = {x.path: x.verdict for x in result}
    assert v == {
        "layers[0].output": "right",
        "layers[2].output": "right",
        "loss": "unanswered",
        "layers[2].grads.W": "unanswered",
    }
    assert result.score["unanswered"] == 2 and result.score["mark"] == 2 and result.all_right


# -- bad files ------------------------------------------------------------------------------------------
GOOD = """
[data]
X = [[1, 2], [-1, 2]]
y = [[2], [1]]
[[layers]]
type = "linear"
W = [[1, -1], [0.5, 0]]
[[layers]]
type = "relu"
[[layers]]
type = "linear"
W = [[0.5], [1]]
[loss]
type = "mse"
[train]
lr = 1.0
"""


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda s: s.replace('type = "relu"', 'type = "relu'), "not valid TOML: "),
        (
            lambda s: s.replace('type = "relu"', 'type = "swish"'),
            "layers[1].type: unknown value 'swish'; expected one of batchnorm, gelu, identity, layernorm, leaky_relu",
        ),
        (
            lambda s: s.replace("W = [[0.5], [1]]", "W = [[0.5], [1], [2]]"),
            "layers[2].W: expected 2 rows (the layer's input has 2 features), got shape (3, 1)",
        ),
        (lambda s: s.replace("W = [[0.5], [1]]", ""), "layers[2]: missing key 'W'"),
        (lambda s: s.replace('[loss]\ntype = "mse"', '[loss]\nscale = "mean"'), "loss: missing key 'type'"),
        (
            lambda s: s.replace("y = [[2], [1]]", "y = [[2], [1], [3]]"),
            r"data.y: MSELoss: expected targets of shape (2, 1), got (3, 1)",
        ),
        (
            lambda s: s.replace('type = "mse"', 'type = "cross_entropy"').replace("y = [[2], [1]]", "y = [0, 0]"),
            "loss.type: cross_entropy expects probabilities, so the last layer must be softmax, got linear "
            "(or use softmax_cross_entropy on logits)",
        ),
        (lambda s: s.replace("lr = 1.0", "lr = -1"), "train.lr: expected a number > 0, got -1"),
        (lambda s: s.replace("lr = 1.0", "lr = 1.0\nmomentum = 0.9"), "train: unknown key 'momentum'"),
        (lambda s: s.replace("X = [[1, 2], [-1, 2]]", "X = [[1, 2], [-1]]"), "data.X: expected numbers in a list"),
        (lambda s: s.replace("X = [[1, 2], [-1, 2]]", "X = [1, 2]"), "data.X: expected a matrix"),
        (lambda s: s.replace("X = [[1, 2], [-1, 2]]", 'X = [[1, 2], [-1, "a"]]'), "data.X: expected numbers"),
        (lambda s: s.replace("X = [[1, 2], [-1, 2]]", "X = [[1, 2], [-1, nan]]"), "data.X: expected finite numbers"),
        (
            lambda s: s.replace("[train]", "[train]\nsteps = 0"),
            "train.steps: expected an integer from 1 to 10000, got 0",
        ),
        (lambda s: s + "\nextra = 1\n", None),  # a key after [train] belongs to it
        (lambda s: s.replace("W = [[0.5], [1]]", "W = 5"), "layers[2].W: expected a matrix (a list of rows"),
        (
            lambda s: s.replace("W = [[1, -1], [0.5, 0]]", "W = [[1, -1], [0.5, 0]]\nb = 5"),
            "layers[0].b: expected numbers in a list",
        ),
        (
            lambda s: s.replace('type = "relu"', 'type = "leaky_relu"\nalpha = 2'),
            "layers[1].alpha: LeakyReLU: alpha must be in [0, 1), got 2",
        ),
        (
            lambda s: s.replace('type = "relu"', 'type = "layernorm"\neps = 0'),
            "layers[1].eps: invalid LayerNorm eps: expected a finite number > 0, got 0",
        ),
        (
            lambda s: s.replace("lr = 1.0", 'optimizer = "adam"\nlr = 1.0\nbeta1 = 1.5'),
            "train.beta1: Adam: beta1 must be in [0, 1), got 1.5",
        ),
        (lambda s: s.replace("lr = 1.0", "lr = 1" + "0" * 400), "train.lr: expected a finite number, got 1000"),
        (
            lambda s: s.replace("W = [[0.5], [1]]", "W = [[0.5], [1" + "0" * 400 + "]]"),
            "layers[2].W: expected finite numbers",
        ),
    ],
)
def test_bad_problem_files(tmp_path, edit, message):
    path = tmp_path / "bad.toml"
    path.write_text(edit(GOOD))
    result = cli("explain", path)
    if message is None:
        assert result.returncode == 2 and "train: unknown key 'extra'" in result.stderr
        return
    assert result.returncode == 2, result.stdout
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"chainrule: error: {path}: "), result.stderr
    assert message in lines[0], lines[0]


@pytest.mark.parametrize("number", ["1e400", "9" * 400])
def test_an_answer_beyond_any_float_is_one_clear_error(tmp_path, number):
    (tmp_path / "a.toml").write_text(f'"layers[0].output" = {number}\n')
    result = cli("check", EXAMPLES / "relu_mse.toml", tmp_path / "a.toml")
    assert result.returncode == 2 and "layers[0].output: expected finite numbers" in result.stderr


def test_missing_problem_file_and_bad_answers(tmp_path):
    result = cli("explain", tmp_path / "nope.toml")
    assert result.returncode == 2 and "nope.toml: no such file" in result.stderr
    (tmp_path / "a.toml").write_text('"layers[9].output" = [1]\n')
    result = cli("check", EXAMPLES / "relu_mse.toml", tmp_path / "a.toml")
    assert result.returncode == 2 and "layers[9].output: the problem has no such value" in result.stderr
    (tmp_path / "a.toml").write_text('"weights" = [1]\n')
    result = cli("check", EXAMPLES / "relu_mse.toml", tmp_path / "a.toml")
    assert result.returncode == 2 and "weights: not a place in the output of chainrule explain" in result.stderr
    (tmp_path / "a.toml").write_text("")
    result = cli("check", EXAMPLES / "relu_mse.toml", tmp_path / "a.toml")
    assert result.returncode == 2 and "no answers found" in result.stderr
