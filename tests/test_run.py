"""chainrule train / evaluate / predict end to end through the command line, model files, bad input."""

import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import chainrule as cr
from chainrule.errors import DataError
from chainrule.training.data import load_digits, read_idx, write_idx
from chainrule.training.modelfile import load_model

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
pytestmark = pytest.mark.slow  # every test here trains a model (or reads one a training run wrote)


def cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "chainrule.cli", *map(str, args)], capture_output=True, text=True, cwd=cwd
    )


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "digits"
    result = cli("train", "--epochs", "3", "--out", out)
    assert result.returncode == 0, result.stderr
    return out, result


def test_train_writes_model_metrics_and_plots(digits_run):
    out, result = digits_run
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md",
        "checkpoint.npz",
        "confusion_matrix.png",
        "first_layer_weights.png",
        "learning_curves.png",
        "metrics.json",
        "model.npz",
        "most_confident_errors.png",
        "report.html",
    ]
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["dataset"] == "digits" and len(metrics["epochs"]) == 3
    assert set(metrics["epochs"][0]) == {"epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "seconds"}
    assert metrics["test_accuracy"] > 0.9
    assert f"model, metrics and plots in {out}" in result.stdout
    assert result.stdout.count("\nepoch ") + result.stdout.startswith("epoch") == 3


def test_report_html_holds_the_plots_and_metrics(digits_run):
    import base64
    import re

    out, _ = digits_run
    html = (out / "report.html").read_text("utf-8")
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert sorted(base64.b64decode(i) for i in images) == sorted(p.read_bytes() for p in out.glob("*.png"))
    assert not re.search(r"(src|href)=\"(https?:)?//", html)  # self-contained: nothing fetched
    metrics = json.loads((out / "metrics.json").read_text())
    assert f"Test accuracy <b>{metrics['test_accuracy']:.4f}</b>" in html
    rows = re.findall(r"<tr><td class=\"num\">(\d+)</td><td class=\"num\">([\d.]+)</td>", html)
    assert [(int(e), float(loss)) for e, loss in rows] == [
        (e["epoch"], round(e["train_loss"], 4)) for e in metrics["epochs"]
    ]


def test_model_card_in_the_hugging_face_shape(digits_run):
    import yaml

    out, _ = digits_run
    text = (out / "README.md").read_text()
    assert text.startswith("---\n")
    front = yaml.safe_load(text.split("---\n")[1])
    metrics = json.loads((out / "metrics.json").read_text())
    assert front["library_name"] == "chainrule" and "image-classification" in front["tags"]
    (result,) = front["model-index"][0]["results"]
    assert result["metrics"][0] == {
        "type": "accuracy",
        "value": round(metrics["test_accuracy"], 4),
        "name": "Test accuracy",
    }
    assert result["dataset"]["split"] == "test"
    body = text.split("---\n", 2)[2]
    for expected in (
        "Linear(64, 256) → ReLU() → Linear(256, 128) → ReLU() → Linear(128, 10)",
        "8×8 grey images",
        "0, 1, 2, 3, 4, 5, 6, 7, 8, 9",
        "`chainrule train --epochs 3`",
        'chainrule.load("model.npz")',
        "chainrule export model.npz --format onnx",
    ):
        assert expected in body
    assert len(re.findall(r"^\| [123] \| ", body, re.M)) == 3  # a row per epoch


def test_force_replaces_our_card_but_not_a_readme_of_the_users(tmp_path):
    out = tmp_path / "run"
    assert cli("train", "--epochs", "1", "--no-plots", "--out", out).returncode == 0
    assert "chainrule train" in (out / "README.md").read_text()
    result = cli("train", "--epochs", "2", "--no-plots", "--out", out, "--force")
    assert result.returncode == 0 and "| 2 |" in (out / "README.md").read_text()
    (out / "README.md").write_text("my notes\n")
    result = cli("train", "--epochs", "1", "--no-plots", "--out", out, "--force")
    assert result.returncode == 0 and (out / "README.md").read_text() == "my notes\n"
    assert "note: no model card" in result.stderr and "is not a card chainrule wrote" in result.stderr


def test_a_trained_model_exported_predicts_the_same_in_onnx_runtime_and_pytorch(
    digits_run, tmp_path, onnxruntime, torch
):
    out, _ = digits_run
    for form, name in (("onnx", "m.onnx"), ("torch", "m.py")):
        assert cli("export", out / "model.npz", "--format", form, "--out", tmp_path / name).returncode == 0
    model, digits = cr.load(out / "model.npz"), load_digits()
    X = digits.X_test.astype(np.float32)
    session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    assert float(np.max(np.abs(session.run(None, {"input": X})[0] - model.outputs(X)))) <= 1e-5
    sys.path.insert(0, str(tmp_path))
    try:
        import m as exported
    finally:
        sys.path.remove(str(tmp_path))
    with torch.no_grad():
        outputs = exported.load()(torch.from_numpy(X)).float().numpy()
    assert float(np.max(np.abs(outputs - model.outputs(X)))) <= 1e-5
    assert np.array_equal(outputs.argmax(axis=1), model.predict(X))


def test_saved_model_predicts_what_the_run_measured(digits_run):
    out, _ = digits_run
    model = cr.load(out / "model.npz")
    digits = load_digits()
    accuracy = float(np.mean(model.predict(digits.X_test) == digits.y_test))
    metrics = json.loads((out / "metrics.json").read_text())
    assert accuracy == pytest.approx(metrics["test_accuracy"], abs=1e-12)
    probs = model.predict_proba(digits.X_test[:5])
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-6)


def test_save_load_identical_predictions(tmp_path):
    digits = load_digits()
    network = cr.mlp([64, 16, 10], batchnorm=True, dropout=0.1, seed=0)
    network.forward(digits.X_train[:100] / 16)  # move BatchNorm's running statistics off their start
    model = cr.Classifier(
        network.eval(), np.full(64, 0.3, np.float32), np.full(64, 0.4, np.float32), 16.0, tuple("0123456789"), (8, 8)
    )
    model.save(tmp_path / "m.npz")
    loaded = load_model(tmp_path / "m.npz")
    np.testing.assert_array_equal(loaded.outputs(digits.X_test), model.outputs(digits.X_test))
    assert loaded.classes == model.classes and loaded.image_shape == (8, 8) and loaded.scale == 16.0


def test_same_seed_same_numbers(tmp_path):
    runs = []
    for name in ("a", "b"):
        result = cli(
            "train",
            "--epochs",
            "2",
            "--dropout",
            "0.2",
            "--batchnorm",
            "--seed",
            "7",
            "--no-plots",
            "--quiet",
            "--out",
            tmp_path / name,
        )
        assert result.returncode == 0, result.stderr
        metrics = json.loads((tmp_path / name / "metrics.json").read_text())
        runs.append(
            (
                [{k: v for k, v in e.items() if k != "seconds"} for e in metrics["epochs"]],
                metrics["test_accuracy"],
                np.load(tmp_path / name / "model.npz"),
            )
        )
    assert runs[0][0] == runs[1][0] and runs[0][1] == runs[1][1]
    for key in runs[0][2].files:
        np.testing.assert_array_equal(runs[0][2][key], runs[1][2][key])


def test_quiet_prints_only_the_summary(tmp_path):
    result = cli("train", "--epochs", "1", "--quiet", "--no-plots", "--out", tmp_path / "q")
    assert result.returncode == 0 and len(result.stdout.strip().splitlines()) == 1
    assert result.stdout.startswith("test accuracy") and result.stderr == ""


def test_softmax_regression_and_other_options(tmp_path):
    result = cli(
        "train",
        "--hidden",
        "0",
        "--optimizer",
        "sgd",
        "--lr",
        "0.1",
        "--epochs",
        "3",
        "--loss",
        "cross_entropy",
        "--no-plots",
        "--out",
        tmp_path / "s",
        "--dtype",
        "float64",
    )
    assert result.returncode == 0, result.stderr
    model = load_model(tmp_path / "s" / "model.npz")
    assert [type(layer).__name__ for layer in model.network.layers] == ["Linear", "Softmax"]
    assert model.mean.dtype == np.float64
    result = cli(
        "train",
        "--hidden",
        "32",
        "--loss",
        "mse",
        "--optimizer",
        "nesterov",
        "--epochs",
        "2",
        "--schedule",
        "step",
        "--early-stopping",
        "1",
        "--weight-decay",
        "1e-4",
        "--no-plots",
        "--out",
        tmp_path / "m",
    )
    assert result.returncode == 0, result.stderr


def test_early_stopping_keeps_the_best_epoch(tmp_path):
    result = cli(
        "train",
        "--hidden",
        "64",
        "--lr",
        "0.05",
        "--epochs",
        "30",
        "--early-stopping",
        "2",
        "--no-plots",
        "--out",
        tmp_path / "e",
    )
    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert result.returncode == 0 and metrics["stopped_early"]
    best = metrics["best_epoch"]
    assert len(metrics["epochs"]) == best + 2
    assert min(e["val_loss"] for e in metrics["epochs"]) == metrics["epochs"][best - 1]["val_loss"]


def test_evaluate_and_predict(digits_run, tmp_path):
    out, _ = digits_run
    result = cli("evaluate", out / "model.npz", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    matrix = np.array(report["confusion_matrix"])
    assert matrix.sum() == 359 and report["accuracy"] == pytest.approx(np.trace(matrix) / 359)
    digits = load_digits()
    np.save(tmp_path / "x.npy", digits.X_test[:3])
    result = cli("predict", out / "model.npz", tmp_path / "x.npy")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert [line.split(": ")[0] for line in lines] == [f"{tmp_path / 'x.npy'}[{i}]" for i in range(3)]
    predicted = [int(line.split(": ")[1].split(" ")[0]) for line in lines]
    probabilities = [float(line.split("(")[1].rstrip(")")) for line in lines]
    assert predicted == digits.y_test[:3].tolist()  # a 0.97-accurate model on three test digits
    assert all(0.1 < p <= 1 for p in probabilities)


@pytest.mark.skipif(not (SHARED / "mnist").is_dir(), reason="../shared/datasets not present")
def test_model_trained_on_real_mnist_digits_predicts_real_mnist_pictures(tmp_path):
    """Train on 3,000 images of the real MNIST test set, then classify 100 others saved as pictures of
    dark ink on white paper: the picture path (invert, crop, scale, centre) must keep them readable."""
    from PIL import Image

    images = read_idx(SHARED / "mnist" / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(SHARED / "mnist" / "t10k-labels-idx1-ubyte.gz")
    np.savez(
        tmp_path / "mnist.npz", X_train=images[:3000], y_train=labels[:3000], X_test=images[9000:], y_test=labels[9000:]
    )
    result = cli(
        "train",
        "--dataset",
        tmp_path / "mnist.npz",
        "--epochs",
        "5",
        "--no-plots",
        "--quiet",
        "--out",
        tmp_path / "run",
    )
    assert result.returncode == 0, result.stderr
    paths = []
    for i in range(5000, 5100):
        Image.fromarray(255 - images[i]).save(tmp_path / f"{i}.png")
        paths.append(tmp_path / f"{i}.png")
    result = cli("predict", tmp_path / "run" / "model.npz", *paths)
    assert result.returncode == 0, result.stderr
    predicted = [int(line.split(": ")[1].split(" ")[0]) for line in result.stdout.strip().splitlines()]
    assert np.mean(np.array(predicted) == labels[5000:5100]) > 0.8


# -- bad input -----------------------------------------------------------------------------------------------
def one_line_error(result, code=1):
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("chainrule: error: ") and "Traceback" not in result.stderr
    return lines[0]


def test_dataset_not_found_lists_where_it_looked(tmp_path, monkeypatch):
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache"), "CHAINRULE_MIRRORS": "http://127.0.0.1:9/"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "chainrule.cli",
            "train",
            "--dataset",
            "mnist",
            "--data-dir",
            str(tmp_path / "none"),
            "--out",
            str(tmp_path / "o"),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, **env},
    )
    line = one_line_error(result)
    assert "dataset 'mnist' not found; looked in" in line and str(tmp_path / "none") in line
    assert not (tmp_path / "o").exists()  # no partial output


def test_corrupt_dataset_and_no_partial_output(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    rng = np.random.default_rng(0)
    write_idx(folder / "train-images-idx3-ubyte.gz", rng.integers(0, 255, (30, 4, 4)))
    write_idx(folder / "train-labels-idx1-ubyte.gz", rng.integers(0, 2, 29))
    write_idx(folder / "t10k-images-idx3-ubyte.gz", rng.integers(0, 255, (5, 4, 4)))
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", rng.integers(0, 2, 5))
    line = one_line_error(cli("train", "--dataset", folder, "--out", tmp_path / "o"))
    assert "30 train images but 29 train labels" in line and not (tmp_path / "o").exists()
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8b broken")
    line = one_line_error(cli("train", "--dataset", folder, "--out", tmp_path / "o"))
    assert "t10k-labels-idx1-ubyte.gz: cannot read it as an IDX file" in line


def test_nan_in_the_data_is_refused(tmp_path):
    X = np.random.default_rng(0).random((20, 3))
    X[4, 1] = np.nan
    np.savez(tmp_path / "d.npz", X_train=X, y_train=np.zeros(20, int), X_test=X[:5] * 0, y_test=np.zeros(5, int))
    line = one_line_error(cli("train", "--dataset", tmp_path / "d.npz", "--out", tmp_path / "o"))
    assert "X_train contains NaN or inf (rows [4])" in line


def test_a_bad_blas_thread_count_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("CHAINRULE_BLAS_THREADS", "many")
    line = one_line_error(cli("train", "--dataset", "digits", "--epochs", "1", "--quiet", "--out", tmp_path / "o"))
    assert "CHAINRULE_BLAS_THREADS must be a whole number of threads (0: BLAS's default), got 'many'" in line


def test_existing_out_needs_force(digits_run, tmp_path):
    out, _ = digits_run
    line = one_line_error(cli("train", "--epochs", "1", "--out", out))
    assert "exists and is not empty" in line and "--force" in line


@pytest.mark.parametrize(
    "args, message",
    [
        (["--lr", "0"], "learning rate (--lr): expected a finite number > 0, got 0"),
        (["--dropout", "1"], "--dropout is the drop probability and must be in [0, 1)"),
        (["--val-split", "0", "--early-stopping", "2"], "--early-stopping needs"),
    ],
)
def test_bad_training_options(tmp_path, args, message):
    assert message in one_line_error(cli("train", *args, "--out", tmp_path / "o"), code=2)


@pytest.mark.parametrize(
    "args", [["--epochs", "0"], ["--hidden", "12,x"], ["--optimizer", "adagrad"], ["--activation", "swish"]]
)
def test_bad_command_lines_exit_2(args):
    result = cli("train", *args)
    assert result.returncode == 2 and "Traceback" not in result.stderr


def test_predict_refuses_what_is_not_an_image(digits_run, tmp_path):
    out, _ = digits_run
    (tmp_path / "fake.png").write_text("not a picture")
    line = one_line_error(cli("predict", out / "model.npz", tmp_path / "fake.png"))
    assert "fake.png: not an image that can be read" in line
    np.save(tmp_path / "wrong.npy", np.zeros(10))
    assert "does not hold inputs of 64 features" in one_line_error(
        cli("predict", out / "model.npz", tmp_path / "wrong.npy")
    )


def write_zip(path, arrays):
    np.savez(path, **arrays)


@pytest.mark.parametrize(
    "tamper, message",
    [
        (lambda a: a.pop("model.0.W"), "missing array model.0.W"),
        (lambda a: a.update({"extra": np.zeros(1)}), "unexpected arrays extra"),
        (lambda a: a.update({"model.0.W": np.zeros((3, 3), np.float32)}), "0.W has shape (3, 3)"),
        (
            lambda a: a.update({"model.0.W": np.full(a["model.0.W"].shape, np.nan, np.float32)}),
            "model.0.W contains NaN",
        ),
        (lambda a: a.update({"meta": np.array("{not json")}), "no readable 'meta' record"),
        (lambda a: a.update({"meta": np.array(json.dumps({"format": "other"}))}), "format 'other'"),
        (
            lambda a: a.update({"model.0.W": np.array([object()] * 2, dtype=object)}),
            "Python objects, which are never loaded",
        ),
    ],
)
def test_crafted_model_files_are_refused(digits_run, tmp_path, tamper, message):
    out, _ = digits_run
    with np.load(out / "model.npz") as archive:
        arrays = {k: archive[k] for k in archive.files}
    tamper(arrays)
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_model(tmp_path / "bad.npz")


def test_architecture_that_does_not_match_and_truncated_archive(digits_run, tmp_path):
    out, _ = digits_run
    with np.load(out / "model.npz") as archive:
        arrays = {k: archive[k] for k in archive.files}
    meta = json.loads(str(arrays["meta"]))
    meta["layers"][2]["in_features"] = 999
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez(tmp_path / "arch.npz", **arrays)
    with pytest.raises(DataError, match=r"the weights do not match the architecture|has shape|arrays are at most"):
        load_model(tmp_path / "arch.npz")
    data = (out / "model.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    line = one_line_error(cli("evaluate", tmp_path / "cut.npz"))
    assert "cut.npz: not a readable chainrule model file" in line
    (tmp_path / "text.npz").write_text("hello")
    assert "not a readable chainrule model file" in one_line_error(
        cli("predict", tmp_path / "text.npz", tmp_path / "x.npy")
    )


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda m: m["layers"][0].update(out_features=4_000_000), "but the file's arrays are at most 256 long"),
        (lambda m: m["layers"][0].update(in_features=2**24 - 1, out_features=2**24 - 1), "arrays are at most"),
        (lambda m: m.update(classes=["a"]), "1 class names for a network with 10 outputs"),
        (lambda m: m.update(image_shape=[9, 9]), "images of 9×9 for 64 input features"),
        (lambda m: m["layers"][0].update(bias="yes"), "Linear: bias must be true or false, got 'yes'"),
        (lambda m: m["layers"].insert(1, {"type": "swish"}), "unknown layer 'swish'"),
    ],
)
def test_crafted_descriptions_are_refused_before_anything_large_is_made(digits_run, tmp_path, edit, message):
    """A model file of a few hundred KB that declares a 4,000,000-wide layer is refused at once (it took
    3 GB and 9 s), the class names and image shape must fit the network."""
    out, _ = digits_run
    with np.load(out / "model.npz") as archive:
        arrays = {k: archive[k] for k in archive.files}
    meta = json.loads(str(arrays["meta"]))
    edit(meta)
    np.savez(tmp_path / "m.npz", **{**arrays, "meta": np.array(json.dumps(meta))})
    line = one_line_error(cli("evaluate", tmp_path / "m.npz"))
    assert message in line, line


def test_huge_declared_size_is_refused(tmp_path, monkeypatch):
    import chainrule.archive as archive_module

    path = tmp_path / "big.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("meta.npy", b"\x00" * 2000)  # a small file that declares a large content
    monkeypatch.setattr(archive_module, "MAX_BYTES", 1000)
    with pytest.raises(DataError, match="declares 2000 bytes"):
        load_model(path)
