"""``chainrule exercise``: variants whose numbers work out by hand, with keys that PyTorch's autograd
confirms; sheets and answer templates; a simulated class graded, bad sheets included.

The references are independent of the code under test: PyTorch's autograd for every number of a key
(and for the claim that the numbers are short), the hand-working student of ``student.py`` for the
sheets and the slips on them.
"""

import csv
import html
import json
import os
import re
import shutil
import tomllib
from pathlib import Path

import numpy as np
import pytest
from student import Problem as StudentProblem
from student import Student, sheet_toml

import chainrule as cr
from chainrule.cli import main
from chainrule.exercise import TEMPLATES, make_variants, write_variant
from chainrule.exercise.grade import grade_class
from chainrule.explain import load_problem
from chainrule.explain.check import check_answers, load_answers

from torch_mirror import torch_arrays, torch_loss, torch_optimizer


def written_decimals(value) -> int:
    """The most decimals of any number in ``value`` (a number or nested lists), as TOML wrote it."""
    if isinstance(value, list):
        return max((written_decimals(v) for v in value), default=0)
    text = repr(value)
    return len(text.split(".")[1]) if "." in text and "e" not in text else 0


def autograd_values(torch, path):
    """Every value a sheet can ask for, computed by PyTorch from the problem file at ``path``."""
    problem = load_problem(path)
    net = problem.model
    mirror = cr.to_torch(net)
    x = torch.tensor(problem.X, requires_grad=True)
    outputs, a, pieces = [], x, {}
    for i, (child, layer) in enumerate(zip(mirror, net.layers, strict=True)):
        if layer.kind == "batchnorm":  # by its pieces, to read the gradient of each; the same as PyTorch's
            mean = a.mean(0)
            var = ((a - mean) ** 2).mean(0)
            x_hat = (a - mean) / torch.sqrt(var + child.eps)
            pieces[i] = {"mean": mean, "var": var, "x_hat": x_hat}
            for piece in pieces[i].values():
                piece.retain_grad()
            whole = child(a.detach())
            a = x_hat * child.weight + child.bias
            np.testing.assert_allclose(a.detach().numpy(), whole.detach().numpy(), atol=1e-12)
        else:
            a = child(a)
        a.retain_grad()
        outputs.append(a)
    target = torch.tensor(problem.y) if problem.y.ndim == 2 else torch.tensor(problem.y.astype(np.int64))
    loss = torch_loss(torch, problem.loss.kind, problem.loss.scale, outputs[-1], target, len(problem.X))
    if problem.l2:  # λ/2·‖W‖² over the weights, not the biases
        loss = loss + problem.l2 / 2 * sum((child.weight**2).sum() for child in mirror if hasattr(child, "in_features"))
    loss.backward()
    values = {"loss": loss.item(), "loss_grad": outputs[-1].grad.numpy()}
    for i, named in pieces.items():
        for name, piece in named.items():
            values[f"layers[{i}].details.{name}"] = piece.detach().numpy()
        values[f"layers[{i}].details.grad_x_hat"] = named["x_hat"].grad.numpy()
        values[f"layers[{i}].details.grad_var"] = named["var"].grad.numpy()
        values[f"layers[{i}].details.grad_mean"] = named["mean"].grad.numpy()
    inputs = [x, *outputs[:-1]]
    for i, (child, layer) in enumerate(zip(mirror, net.layers, strict=True)):
        values[f"layers[{i}].output"] = outputs[i].detach().numpy()
        values[f"layers[{i}].grad_input"] = (outputs[i - 1] if i > 0 else x).grad.numpy()
        if layer.kind in ("relu", "sigmoid"):
            z = inputs[i].detach().clone().requires_grad_(True)
            (derivative,) = torch.autograd.grad(child(z).sum(), z)
            values[f"layers[{i}].local_derivative"] = derivative.numpy()
    for name, grad in torch_arrays(mirror, net).items():
        i, param = name.split(".")
        values[f"layers[{i}].grads.{param}"] = grad
    optimizer = problem.make_optimizer(net)
    torch_step = torch_optimizer(torch, problem.optimizer_name, optimizer.config(), mirror.parameters())
    torch_step.step()
    for name, after in torch_arrays(mirror, net, of=lambda t: t.detach()).items():
        i, param = name.split(".")
        values[f"layers[{i}].params_after.{param}"] = after
    if problem.optimizer_name == "adam":  # PyTorch's moments; their bias corrections at t = 1 by hand
        settings = optimizer.config()
        moments = {
            "m": lambda t: torch_step.state[t]["exp_avg"],
            "v": lambda t: torch_step.state[t]["exp_avg_sq"],
            "m_hat": lambda t: torch_step.state[t]["exp_avg"] / (1 - settings["beta1"]),
            "v_hat": lambda t: torch_step.state[t]["exp_avg_sq"] / (1 - settings["beta2"]),
        }
        for key, of in moments.items():
            for name, array in torch_arrays(mirror, net, of=of).items():
                i, param = name.split(".")
                values[f"layers[{i}].moments.{param}.{key}"] = array
    return values


def short(array) -> bool:
    scaled = np.asarray(array, dtype=np.float64) * 100
    return bool(np.all(np.abs(scaled - np.round(scaled)) < 1e-9))


@pytest.mark.parametrize("name", list(TEMPLATES))
def test_thirty_keys_agree_with_autograd_and_work_out_by_hand(torch, tmp_path, name):
    variants = make_variants(TEMPLATES[name], 30, seed=2024)
    assert len({json.dumps(v.document["data"]) + json.dumps(v.document["layers"]) for v in variants}) == 30
    for variant in variants:
        write_variant(variant, tmp_path, pdf=False)
        with open(tmp_path / "keys" / f"{variant.id}.toml", "rb") as f:
            key = tomllib.load(f)
        assert key.pop("variant") == variant.id and key.pop("title")
        reference = autograd_values(torch, tmp_path / "problems" / f"{variant.id}.toml")
        assert set(key) <= set(reference), set(key) - set(reference)
        problem = load_problem(tmp_path / "problems" / f"{variant.id}.toml")
        for i, layer in enumerate(problem.model.layers):  # no ReLU input exactly 0; no all-zero gradient
            if layer.kind == "relu":
                assert np.all(reference[f"layers[{i - 1}].output"] != 0), variant.id
        for path, value in key.items():
            ours, theirs = np.asarray(value, dtype=np.float64), np.asarray(reference[path], dtype=np.float64)
            assert ours.shape == theirs.shape, (variant.id, path)
            if ".grads." in path:
                assert np.any(theirs != 0), (variant.id, path)
            if short(theirs):  # an integer or two decimals: written exactly
                np.testing.assert_allclose(ours, theirs, atol=1e-9, err_msg=f"{variant.id} {path}")
            else:  # exp or log: rounded to three places
                assert written_decimals(value) <= 3, (variant.id, path, value)
                np.testing.assert_allclose(ours, theirs, atol=5e-4 + 1e-12, err_msg=f"{variant.id} {path}")
        if name == "relu_mse":  # no exp or log anywhere: every number the student writes is short
            assert all(short(reference[path]) for path in key), variant.id
        elif name == "adam":  # short up to the square root of the update, which moves each weight by lr
            assert all(short(reference[path]) for path in key if "params_after" not in path), variant.id
            for path in (p for p in key if "params_after" in p):
                before = np.asarray(problem.model.layers[0].params[path.rsplit(".", 1)[1]].data)
                g = reference[path.replace("params_after", "grads")]
                np.testing.assert_allclose(reference[path], before - 0.1 * np.sign(g), atol=1e-8)
        elif name == "batchnorm":  # μ and σ² short; x̂ a short number but for ε = 10⁻⁵
            assert short(reference["layers[0].details.mean"]) and short(reference["layers[0].details.var"])
            x_hat = reference["layers[0].details.x_hat"]
            assert short(np.round(x_hat, 2)) and np.allclose(x_hat, np.round(x_hat, 2), atol=1e-4), variant.id
        else:  # the logits, before the softmax, are short too
            assert short(reference["layers[0].output"]), variant.id


def test_the_same_seed_gives_the_same_variants():
    first = make_variants(TEMPLATES["sigmoid_logloss"], 3, seed=5)
    again = make_variants(TEMPLATES["sigmoid_logloss"], 3, seed=5)
    other = make_variants(TEMPLATES["sigmoid_logloss"], 3, seed=6)
    assert [v.document for v in first] == [v.document for v in again]
    assert [v.document for v in first] != [v.document for v in other]
    assert [v.id for v in first] == ["sigmoid_logloss-5-01", "sigmoid_logloss-5-02", "sigmoid_logloss-5-03"]


@pytest.mark.parametrize("name", list(TEMPLATES))
def test_sheet_template_and_pdf(tmp_path, name):
    (variant,) = make_variants(TEMPLATES[name], 1, seed=3)
    engine = shutil.which("pdflatex")
    if engine is None and os.environ.get("CHAINRULE_REQUIRE_LATEX") == "1":
        pytest.fail("CHAINRULE_REQUIRE_LATEX=1 but pdflatex is not installed")
    written = write_variant(variant, tmp_path, pdf=engine is not None)
    if engine is not None:
        assert (tmp_path / "sheets" / f"{variant.id}.pdf").read_bytes().startswith(b"%PDF")
    sheet = (tmp_path / "sheets" / f"{variant.id}.md").read_text()
    template = tmp_path / "answers" / f"{variant.id}.toml"
    with open(template, "rb") as f:
        blank = tomllib.load(f)
    assert blank.pop("variant") == variant.id
    blank.pop("title")
    for path in blank:  # every answer asked for in the sheet, and nothing filled in
        assert f"[{path}]" in sheet
    explanation = variant.explanation
    result = check_answers(explanation, load_answers(str(template)))
    assert result.score["unanswered"] == len(blank) and result.score["out_of"] == len(blank)
    key = check_answers(explanation, load_answers(str(tmp_path / "keys" / f"{variant.id}.toml")))
    assert key.all_right and key.score["right"] == len(blank)
    assert "Backward pass" in (tmp_path / "keys" / f"{variant.id}.md").read_text()
    assert len(written) == 7 + (engine is not None)
    html_sheet_is_the_sheet(tmp_path / "sheets" / f"{variant.id}.html", sheet, list(blank))


def html_sheet_is_the_sheet(path, markdown: str, asked: list[str]) -> None:
    """The HTML sheet: one page that asks for no file, its parts and answer places those of the Markdown
    sheet, its formulas typeset by KaTeX (readable as text without it), and no number that opens (the
    key's values are not in it)."""
    from html.parser import HTMLParser

    class Page(HTMLParser):
        def __init__(self):
            super().__init__()
            self.tags, self.text, self.attributes = [], [], []

        def handle_starttag(self, tag, attrs):
            self.tags.append(tag)
            self.attributes += [name for name, _ in attrs]
            assert not any(name in ("src", "href") for name, _ in attrs), (tag, attrs)

        def handle_data(self, data):
            self.text.append(data)

    page = Page()
    html = path.read_text(encoding="utf-8")
    page.feed(html)
    text = " ".join(page.text)
    parts = [line.removeprefix("### ") for line in markdown.splitlines() if line.startswith("### ")]
    assert page.tags.count("h1") == 1 and page.tags.count("h3") == len(parts) > 0
    for part in parts:
        assert f"<h3>{part}</h3>" in html
    for place in asked:
        assert f"[{place}]" in text
    assert 'class="m" data-tex=' in html and "katex.render" in html
    assert "data-path" not in page.attributes and "title" not in page.attributes


def student_problem(document) -> StudentProblem:
    return StudentProblem(
        X=document["data"]["X"],
        y=document["data"]["y"],
        layers=document["layers"],
        loss=document["loss"]["type"],
        scale=document["loss"].get("scale", "mean"),
        l2=document["loss"].get("l2", 0.0),
        lr=document["train"]["lr"],
    )


#: (slip, place) planted on the sheets of the simulated class, each on two or three sheets.
PLANTED = [  # (the first falls on the sheets of variants with biases)
    ("linear.bias_gradient_averaged", 0),
    ("loss.mean_forgotten", None),
    ("mse.two_forgotten", None),
    ("loss.gradient_sign", None),
    ("activation.derivative_not_applied", 1),
    ("update.sign_flipped", (0, "W")),
    ("linear.weights_transposed", 0),
    ("linear.weight_gradient_transposed", 0),
]


def simulated_class(tmp_path):
    """40 sheets on four variants (two with biases): 10 right, 24 with one planted slip, 6 partial; and
    three that cannot be graded. Returns the folders and what each student planted."""
    variants = make_variants(TEMPLATES["relu_mse"], 2, seed=11)
    variants += make_variants(TEMPLATES["relu_mse"].with_knobs(bias=True), 2, seed=12)
    out = tmp_path / "set"
    for v in variants:
        write_variant(v, out, pdf=False)
    sheets = tmp_path / "submitted"
    sheets.mkdir()
    planted = {}
    for k in range(40):
        variant = variants[k % 4]
        problem = student_problem(variant.document)
        if k < 10:
            student = Student(problem, decimals=3)
        elif k < 34:
            slip, place = PLANTED[(k - 10) % len(PLANTED)]
            student = Student(problem, slip, place, decimals=3)
            planted[f"s{k:02d}"] = slip
        else:
            student = Student(problem, decimals=3)
        sheet = student.solve()
        if k >= 34:  # partial: the update not done (missing), the loss left blank
            sheet = {p: v for p, v in sheet.items() if "params_after" not in p}
        text = f'variant = "{variant.id}"\n' + sheet_toml(sheet)
        if k >= 34:
            text = text.replace('"loss" = ', '"loss" = "?"  # ')
        (sheets / f"s{k:02d}.toml").write_text(text)
    right = (out / "keys" / f"{variants[0].id}.toml").read_text()
    (sheets / "x_other_set.toml").write_text(right.replace(variants[0].id, "softmax_ce-99-01"))
    (sheets / "x_garbled.toml").write_text(right.replace('"loss" = ', '"loss" = "0,25"  # '))
    (sheets / "x_no_variant.toml").write_text("\n".join(line for line in right.splitlines() if "variant" not in line))
    return out, sheets, planted


def test_a_class_of_forty_is_graded_with_its_slips(tmp_path):
    out, sheets, planted = simulated_class(tmp_path)
    result = grade_class(sheets, out / "problems", tmp_path / "graded")
    by_student = {g.student: g for g in result.graded}
    assert len(by_student) == 43
    errors = {g.student: g.error for g in result.failed}
    assert set(errors) == {"x_other_set", "x_garbled", "x_no_variant"}
    assert "softmax_ce-99-01, which is not among the problems" in errors["x_other_set"]
    assert "loss" in errors["x_garbled"] and "expected a number" in errors["x_garbled"]
    assert "no variant id" in errors["x_no_variant"]
    for k in range(10):
        g = by_student[f"s{k:02d}"]
        assert g.result.all_right and not g.result.roots, g.student
    for student, slip in planted.items():
        roots = by_student[student].result.roots
        found = {r.slip for r in roots} | {a for r in roots for a in r.alternatives}
        assert slip in found, (student, slip, [r.description for r in roots])
    for k in range(34, 40):
        score = by_student[f"s{k:02d}"].result.score
        assert score["wrong"] == 0 and score["carried_forward"] == 0, score
        updates = 2 + 2 * (k % 4 >= 2)  # W₀, W₂ (and b₀, b₂ with biases): missing, so unanswered
        assert score["unanswered"] == updates + 1 and score["right"] == score["out_of"] - updates - 1, score

    with open(tmp_path / "graded" / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 43 and {r["student"] for r in rows if r["error"]} == set(errors)
    summary = json.loads((tmp_path / "graded" / "results.json").read_text())["summary"]
    assert summary["graded"] == 40 and summary["all_right"] == 10
    counted = {s["slip"]: s["students"] for s in summary["slips"]}
    for slip in set(planted.values()):
        assert counted.get(slip, 0) >= sum(s == slip for s in planted.values()) - 1, (slip, counted)
    table = (tmp_path / "graded" / "summary.md").read_text()
    assert "| slip | what | students | share |" in table and "x_garbled.toml" in table
    assert (tmp_path / "graded" / "slips.png").read_bytes().startswith(b"\x89PNG")
    assert (tmp_path / "graded" / "students" / "s10.txt").exists()


def test_the_command_line(tmp_path, capsys):
    out = tmp_path / "set"
    assert main(["exercise", "new", "--template", "softmax_ce", "--variants", "2", "--seed", "4", "--out", str(out),
                 "--no-pdf"]) == 0  # fmt: skip
    assert sorted(p.name for p in (out / "problems").iterdir()) == ["softmax_ce-4-01.toml", "softmax_ce-4-02.toml"]
    assert json.loads((out / "exercises.json").read_text())["variants"] == ["softmax_ce-4-01", "softmax_ce-4-02"]
    submitted = tmp_path / "submitted"
    submitted.mkdir()
    shutil.copy(out / "keys" / "softmax_ce-4-01.toml", submitted / "ann.toml")
    (submitted / "bob.toml").write_text((out / "keys" / "softmax_ce-4-02.toml").read_text())
    (tmp_path / "roster.csv").write_text("student,variant\nann,softmax_ce-4-01\nbob,softmax_ce-4-01\n")
    code = main(["exercise", "grade", str(submitted), "--problems", str(out / "problems"),
                 "--roster", str(tmp_path / "roster.csv")])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 1 and "1 of 2 sheets graded" in captured.out
    assert "bob.toml: the sheet is for variant softmax_ce-4-02, but the roster gives bob variant softmax_ce-4-01" in (
        captured.err
    )
    assert (tmp_path / "graded" / "results.csv").exists()

    assert main(["exercise", "new", "--template", "nope", "--out", str(out)]) == 2
    assert "unknown template 'nope'; expected one of relu_mse" in capsys.readouterr().err
    assert main(["exercise", "new", "--sizes", "2,3", "--out", str(out)]) == 2
    assert "template relu_mse has 3 sizes" in capsys.readouterr().err
    assert main(["exercise", "grade", str(tmp_path / "nowhere")]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_new_numbers_for_a_problem_file(tmp_path):
    from pathlib import Path

    example = Path(__file__).parent.parent / "examples" / "relu_mse.toml"
    assert (
        main(["exercise", "new", "--problem", str(example), "--variants", "2", "--out", str(tmp_path), "--no-pdf"]) == 0
    )
    for path in (tmp_path / "problems").iterdir():
        problem = load_problem(path)
        original = load_problem(example)
        assert [layer.kind for layer in problem.model.layers] == [layer.kind for layer in original.model.layers]
        assert problem.X.shape == original.X.shape and problem.loss.kind == original.loss.kind


def test_a_set_is_never_written_over_and_later_steps_still_teach(tmp_path, capsys):
    out = tmp_path / "set"
    args = ["exercise", "new", "--template", "relu_mse", "--variants", "3", "--seed", "1", "--no-pdf"]
    assert main([*args, "--steps", "2", "--out", str(out)]) == 0
    for problem in sorted((out / "problems").iterdir()):
        history = cr.explain.run_problem(load_problem(problem)).history
        assert abs(history[1] - history[0]) > 1e-9, problem.name  # the second step moves the loss
    assert main([*args, "--out", str(out)]) == 2
    assert "not an empty folder" in capsys.readouterr().err
    assert main([*args, "--steps", "4", "--out", str(tmp_path / "four")]) == 2
    assert "at most 3 steps" in capsys.readouterr().err


def test_a_variant_id_is_never_a_path_and_quoted_numbers_are_numbers(tmp_path):
    out = tmp_path / "set"
    assert main(["exercise", "new", "--variants", "1", "--seed", "2", "--no-pdf", "--out", str(out)]) == 0
    sheets = tmp_path / "sheets"
    sheets.mkdir()
    key = tomllib.loads((out / "keys" / "relu_mse-2-01.toml").read_text())

    def quoted(v) -> str:  # every number written in the quotes of the answer template
        return "[" + ", ".join(map(quoted, v)) + "]" if isinstance(v, list) else f'"{v}"'

    (sheets / "ann.toml").write_text("".join(f'"{k}" = {quoted(v)}\n' for k, v in key.items()))
    (sheets / "eve.toml").write_text('variant = "../sheets/evil"\nloss = 1\n')
    (sheets / "evil.toml").write_text((out / "problems" / "relu_mse-2-01.toml").read_text())
    result = grade_class(sheets, out / "problems", tmp_path / "graded")
    by = {g.student: g for g in result.graded}
    assert "is not a variant id" in by["eve"].error
    assert by["ann"].error is None and by["ann"].result.score["wrong"] == 0


def verdicts(variant, sheet: dict, tmp_path) -> dict[str, str]:
    """check's verdict on each answer of ``sheet`` (values by path) for ``variant``."""
    path = tmp_path / "sheet.toml"
    path.write_text(f'variant = "{variant.id}"\n' + sheet_toml({k: np.asarray(v).tolist() for k, v in sheet.items()}))
    return {v.path: v.verdict for v in check_answers(variant.explanation, load_answers(str(path)))}


def test_batchnorm_pieces_are_carried_forward(tmp_path):
    """A student who takes the unbiased variance (÷ (n − 1)) goes on with it: σ² is wrong, x̂ and the
    output, worked by hand from it, are carried forward."""
    (variant,) = make_variants(TEMPLATES["batchnorm"], 1, seed=8)
    layers = variant.document["layers"]
    X = np.array(variant.document["data"]["X"])
    n = len(X)
    mean = X.mean(axis=0)
    var = ((X - mean) ** 2).sum(axis=0) / (n - 1)  # the slip
    x_hat = np.round((X - mean) / np.sqrt(var + 1e-5), 3)
    out = np.round(x_hat * layers[0]["gamma"] + layers[0]["beta"], 3)
    sheet = {
        "layers[0].details.mean": mean,
        "layers[0].details.var": np.round(var, 3),
        "layers[0].details.x_hat": x_hat,
        "layers[0].output": out,
        "layers[1].output": np.round(out @ np.array(layers[1]["W"]), 3),
    }
    got = verdicts(variant, sheet, tmp_path)
    assert got["layers[0].details.mean"] == "right" and got["layers[0].details.var"] == "wrong", got
    assert {got[p] for p in list(sheet)[2:]} == {"carried_forward"}, got


def test_adam_without_bias_correction_is_carried_forward(tmp_path):
    """A student who forgets m's bias correction (m̂ = m) is wrong there, and their update,
    θ − lr·m/(√v̂ + ε) worked by hand, is carried forward. (Forgetting both corrections would give the
    right update here: (1 − β₁)/√(1 − β₂) = 0.1/0.1 = 1.)"""
    (variant,) = make_variants(TEMPLATES["adam"], 1, seed=8)
    W = np.array(variant.document["layers"][0]["W"])
    X, y = np.array(variant.document["data"]["X"]), np.array(variant.document["data"]["y"])
    g = X.T @ (X @ W - y) / len(X)  # MSE 1/(2n): ∂L/∂W = Xᵀ(ŷ − y)/n
    m, v = 0.1 * g, 0.01 * g**2
    sheet = {
        "layers[0].grads.W": g,
        "layers[0].moments.W.m": m,
        "layers[0].moments.W.v": v,
        "layers[0].moments.W.m_hat": m,
        "layers[0].moments.W.v_hat": g**2,
        "layers[0].params_after.W": np.round(W - 0.1 * m / (np.sqrt(g**2) + 1e-8), 3),
    }
    got = verdicts(variant, sheet, tmp_path)
    assert [got[p] for p in sheet] == ["right", "right", "right", "wrong", "right", "carried_forward"], got


def test_softmax_l2_asks_the_probabilities_and_carries_rounded_ones_forward(tmp_path):
    for variant in make_variants(TEMPLATES["softmax_l2"], 5, seed=9):
        assert "layers[1].output" in {a.path for a in variant.values}  # the probabilities, asked
        sheet = Student(student_problem(variant.document), decimals=3).solve()  # goes on with them rounded
        got = verdicts(variant, sheet, tmp_path)
        assert got["layers[1].output"] == "right" and set(got.values()) <= {"right", "carried_forward"}, got


def test_parts_past_z_are_lettered_on():
    from chainrule.exercise.sheets import part_label

    assert [part_label(k) for k in (0, 25, 26, 27, 51, 52, 701, 702)] == [
        "a", "z", "aa", "ab", "az", "ba", "zz", "aaa"
    ]  # fmt: skip


def test_problem_refuses_shape_knobs_and_honours_steps(tmp_path, capsys):
    from pathlib import Path

    example = Path(__file__).parent.parent / "examples" / "relu_mse.toml"
    args = ["exercise", "new", "--problem", str(example), "--no-pdf", "--out"]
    assert main([*args, str(tmp_path / "a"), "--sizes", "2,3,1", "--no-bias"]) == 2
    assert "--sizes, --bias/--no-bias apply to --template only" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()
    assert main([*args, str(tmp_path / "b"), "--steps", "2"]) == 0
    (problem,) = (tmp_path / "b" / "problems").iterdir()
    assert load_problem(problem).steps == 2


def test_grading_again_leaves_nothing_stale_and_lists_unknown_keys(tmp_path, capsys):
    out = tmp_path / "set"
    assert main(["exercise", "new", "--variants", "1", "--seed", "2", "--no-pdf", "--out", str(out)]) == 0
    sheets = tmp_path / "sheets"
    sheets.mkdir()
    key = (out / "keys" / "relu_mse-2-01.toml").read_text()
    (sheets / "ann.toml").write_text(key + '"layers[0].outptu" = 1\nhomework = "done"\n')
    (sheets / "bob.toml").write_text(key)
    graded = tmp_path / "graded"
    grade = ["exercise", "grade", str(sheets), "--problems", str(out / "problems"), "--out"]
    assert main([*grade, str(graded)]) == 0
    with open(graded / "results.csv", newline="") as f:
        unknown = {row["student"]: row["unknown"] for row in csv.DictReader(f)}
    assert unknown == {"ann": "layers[0].outptu;homework", "bob": ""}
    students = json.loads((graded / "results.json").read_text())["students"]
    assert [s["unknown"] for s in students] == [["layers[0].outptu", "homework"], []]
    (sheets / "bob.toml").unlink()
    assert main([*grade, str(graded)]) == 0
    assert sorted(p.name for p in (graded / "students").iterdir()) == ["ann.txt"]
    with open(graded / "results.csv", newline="") as f:
        assert [row["student"] for row in csv.DictReader(f)] == ["ann"]
    other = tmp_path / "notes"
    other.mkdir()
    (other / "mine.txt").write_text("keep me")
    capsys.readouterr()
    assert main([*grade, str(other)]) == 2
    assert "not an empty folder nor one that exercise grade wrote" in capsys.readouterr().err
    assert (other / "mine.txt").read_text() == "keep me" and sorted(p.name for p in other.iterdir()) == ["mine.txt"]


def test_a_problem_file_is_written_without_a_toml_library(tmp_path):
    """The standard library's reader gives back what was written, matrices a row per line, odd strings
    escaped; a value TOML cannot hold (NaN) is refused and nothing is written."""
    from chainrule.explain import write_problem

    document = {
        "title": 'a "quoted" \\ title é\nwith a line break\x7f',
        "data": {"X": [[1.0, -2.5], [3.0, 1e-20]], "y": [0, 1]},
        "layers": [{"type": "linear", "W": [[0.5], [1.0]], "b": [0.0]}, {"type": "relu"}],
        "loss": {"type": "mse", "scale": "half_mean"},
        "train": {"optimizer": "sgd", "lr": 1.0, "nesterov": False},
    }
    write_problem(tmp_path / "p.toml", document, "made by a test\nsecond line")
    text = (tmp_path / "p.toml").read_text()
    assert tomllib.loads(text) == document
    assert (
        text.startswith("# made by a test\n# second line\n") and "X = [\n    [1.0, -2.5],\n    [3.0, 1e-20],\n]" in text
    )
    with pytest.raises(cr.errors.ConfigError, match="cannot be written as TOML"):
        write_problem(tmp_path / "nan.toml", {**document, "data": {"X": [[float("nan")]], "y": [0]}})
    assert not (tmp_path / "nan.toml").exists()


#: Latin words a Russian or Chinese sheet keeps: names of kinds, as the glossary says, and of functions.
KIND_NAMES = {"relu", "softmax", "adam", "mse", "tanh", "gelu", "sigmoid", "sgd", "batchnorm"}
KIND_NAMES |= {"ln", "exp", "log", "max"}


def english_words(text: str) -> list[str]:
    """The English words of a sheet, once formulas (``$$ … $$``, KaTeX's ``data-tex``), the answers' places
    (``[layers[0].output]``), symbols, numbers, ids and the names of kinds are taken away."""
    text = re.sub(r"\$\$.*?\$\$|\$.*?\$", " ", text, flags=re.S)
    text = re.sub(r"<(script|style)>.*?</\1>|<[^>]*>", " ", text, flags=re.S)  # HTML: its tags and scripts
    text = re.sub(r"chainrule(?: [a-z]+)*", " ", html.unescape(text))  # commands: chainrule exercise new
    text = re.sub(r"\[[\w.\[\]]+\]|\S*[\d_]\S*", " ", text)  # places, ids, anything with a digit or _
    words = re.findall(r"[A-Za-z]{2,}", text)
    return [w for w in words if w.lower() not in KIND_NAMES]


@pytest.mark.parametrize("lang", ["ru", "zh"])
def test_a_russian_or_chinese_sheet_holds_no_english_sentence(tmp_path, lang):
    for name, template in TEMPLATES.items():
        (variant,) = make_variants(template, 1, seed=4)
        out = tmp_path / name
        write_variant(variant, out, pdf=False, lang=lang)
        (english,) = write_variant(variant, tmp_path / f"{name}-en", pdf=False, lang="en")[1:2]  # the check can fail
        assert len(english_words(english.read_text())) > 30, name
        for path in (out / "sheets" / f"{variant.id}.md", out / "sheets" / f"{variant.id}.html"):
            assert english_words(path.read_text(encoding="utf-8")) == [], (lang, path.name)
        for path in (out / "answers" / f"{variant.id}.toml", out / "keys" / f"{variant.id}.toml"):
            comment = path.read_text(encoding="utf-8").splitlines()[0]
            assert english_words(comment) == [], (lang, path.name, comment)
        assert "\\documentclass" in (out / "sheets" / f"{variant.id}.tex").read_text()  # LaTeX: English
    sheets = tmp_path / "submitted"
    sheets.mkdir()
    shutil.copy(tmp_path / "adam" / "keys" / "adam-4-01.toml", sheets / "ann.toml")
    grade_class(sheets, tmp_path / "adam" / "problems", tmp_path / "graded", lang=lang)
    summary = (tmp_path / "graded" / "summary.md").read_text(encoding="utf-8")
    assert english_words(summary) == [], summary
    assert english_words("# Class summary\n\n1 of 1 sheet graded; 1 all right; mean mark 100%.") != []


@pytest.mark.parametrize("lang", ["ru", "zh"])
def test_the_latex_sheet_in_the_learners_language_compiles(tmp_path, lang):
    """The LaTeX sheet is in the sheet's language (Cyrillic with pdflatex, Chinese with XeLaTeX) and compiles;
    the empty answer "" stays two straight quotes, not Russian babel's shorthand (which prints nothing)."""
    from chainrule.latex import missing_for

    (variant,) = make_variants(TEMPLATES["relu_mse"], 1, seed=3)
    missing = missing_for(lang)
    if missing is not None:
        if os.environ.get("CHAINRULE_REQUIRE_LATEX") == "1":
            pytest.fail(f"CHAINRULE_REQUIRE_LATEX=1 but {lang} LaTeX needs {missing}")
        pytest.skip(f"{lang} LaTeX needs {missing}")
    write_variant(variant, tmp_path, pdf=True, lang=lang)
    tex = (tmp_path / "sheets" / f"{variant.id}.tex").read_text()
    assert {"ru": "Запишите", "zh": "答题文件"}[lang] in tex
    assert r"{\ttfamily\char34}{\ttfamily\char34}" in tex
    assert (tmp_path / "sheets" / f"{variant.id}.pdf").read_bytes().startswith(b"%PDF")


def test_the_chinese_chart_has_a_font_for_its_words(tmp_path):
    """The class chart's title and label in Chinese are drawn in a CJK font, not as empty boxes (DejaVu Sans,
    matplotlib's default, has no Chinese: each glyph would be a 'missing from font' warning)."""
    import warnings

    pytest.importorskip("matplotlib")
    from chainrule.exercise.grade import _cjk_fonts
    from chainrule.i18n import language

    if not list(Path("/usr/share/fonts").rglob("NotoSansCJK*")):
        if os.environ.get("CHAINRULE_REQUIRE_LATEX") == "1":  # CI installs fonts-noto-cjk with Chinese LaTeX
            pytest.fail("CHAINRULE_REQUIRE_LATEX=1 but fonts-noto-cjk is not installed")
        pytest.skip("no Noto CJK font (Debian: fonts-noto-cjk)")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with language("zh"):
        fonts = _cjk_fonts()
    assert fonts
    with warnings.catch_warnings(record=True) as caught, plt.rc_context({"font.family": ["DejaVu Sans", *fonts]}):
        warnings.simplefilter("always")
        fig, ax = plt.subplots()
        ax.set_title("全班错误的根源")
        fig.savefig(tmp_path / "chart.png")
        plt.close(fig)
    assert not [w for w in caught if "missing from font" in str(w.message)]
