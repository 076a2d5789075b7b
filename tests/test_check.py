"""chainrule check on a worked solution with slips (the numbers of the published solution of the exercise
in the original notes) finds them, accepts a correct solution, and bad problem or answers files get one
line naming the file and the place (exit code 2)."""

import subprocess
import sys
from pathlib import Path

import pytest

from chainrule.explain import load_problem, run_problem
from chainrule.explain.check import check_answers, load_answers

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def verdicts(problem, answers):
    answers_path = str(EXAMPLES / answers)
    result = check_answers(run_problem(load_problem(EXAMPLES / problem)), load_answers(answers_path), answers_path)
    return {v.path: v for v in result}


def cli(*args):
    return subprocess.run([sys.executable, "-m", "chainrule.cli", *map(str, args)], capture_output=True, text=True)


def test_the_slips_of_a_worked_solution_are_found():
    v = verdicts("relu_mse.toml", "relu_mse_answers_with_slips.toml")
    assert [k for k, x in v.items() if x.right] == ["layers[1].output", "layers[2].output", "loss"]
    assert v["layers[0].output"].causes == ["[0][1]: -0.5, right -1"]
    assert "the 1/n of the loss scale 1/(2n) is missing" in v["layers[2].grad_output"].causes[0]
    assert "1/n" in v["layers[0].grads.W"].causes[0]
    assert v["layers[0].params_after.W"].causes[0].startswith("the update used the transposed gradient")
    assert "transposed" not in v["layers[2].params_after.W"].causes[0]


def test_logloss_derivative_has_the_wrong_sign_for_y_1():
    v = verdicts("sigmoid_logloss.toml", "sigmoid_logloss_answers_with_slips.toml")
    assert v["layers[3].output"].right and v["layers[3].local_derivative"].right  # 0.73 and 0.2, rounded
    assert v["layers[3].grad_output"].causes == ["[1][0]: wrong sign (1.4, right -1.36788)"]
    causes = v["layers[3].grad_input"].causes
    assert "rounded intermediate values" in causes[0] and causes[1].startswith("[1][0]: wrong sign")


def test_correct_solution_is_accepted():
    result = cli("check", EXAMPLES / "relu_mse.toml", EXAMPLES / "relu_mse_answers.toml")
    assert result.returncode == 0, result.stdout
    assert result.stdout.startswith("11 of 11 answers right")


def test_published_solution_exits_1_and_json_lists_causes():
    result = cli("check", EXAMPLES / "relu_mse.toml", EXAMPLES / "relu_mse_answers_with_slips.toml", "--format", "json")
    assert result.returncode == 1
    import json

    out = json.loads(result.stdout)
    assert out["right"] == 3 and out["total"] == 11


@pytest.mark.parametrize(
    "text, right",
    [
        ("loss = 0.25", True),
        ("loss = 0.3", True),  # 0.3 means 0.25 to 0.35
        ("loss = 0.19", False),
        ("loss = 0.250", True),
        ("loss = 0.251", False),
        ("loss = 1", False),
        ('"layers[2].output" = [[1], [1]]', True),
        ('"layers[2].output" = [1, 1]', True),
        ('"layers[2].output" = [[1, 1]]', False),
    ],
)
def test_precision_and_shape_rules(tmp_path, text, right):
    answers = tmp_path / "a.toml"
    answers.write_text(text + "\n")
    result = check_answers(run_problem(load_problem(EXAMPLES / "relu_mse.toml")), load_answers(str(answers)))
    assert result[0].right is right, result[0].causes


def test_a_value_from_the_wrong_step(tmp_path):
    problem = load_problem(EXAMPLES / "softmax_regression_l2.toml")
    explanation = run_problem(problem)
    second = explanation.steps[1].layers[0].output.round(6).tolist()
    answers = tmp_path / "a.toml"
    answers.write_text(f'"layers[0].output" = {second}\n')
    [verdict] = check_answers(explanation, load_answers(str(answers)))
    assert not verdict.right and verdict.causes == ["the value at step 2, not step 1"]


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
