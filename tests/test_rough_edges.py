"""Bad data that used to train silently, bad input that used to end as an internal error, and the rough
edges a new user met: each is one clear line (or works), never a traceback or a silent wrong answer."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def cli(*args, cwd=None, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "chainrule.cli", *map(str, args)], capture_output=True, text=True, cwd=cwd, **kwargs
    )


def one_error(result, code, *words):
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("chainrule: error: "), result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def small_npz(path, **changes):
    rng = np.random.default_rng(0)
    arrays = {
        "X_train": rng.normal(size=(30, 4)),
        "y_train": np.arange(30) % 3,
        "X_test": rng.normal(size=(6, 4)),
        "y_test": np.arange(6) % 3,
    }
    np.savez(path, **{**arrays, **changes})
    return path


# -- bad data is refused, not trained on ------------------------------------------------------------------
def test_complex_features_are_refused(tmp_path):
    data = small_npz(tmp_path / "d.npz", X_train=np.ones((30, 4), complex))
    one_error(cli("train", "--dataset", data, "--out", tmp_path / "run"), 1, "X_train: expected real numbers")


def test_inf_in_the_test_images_is_refused_by_evaluate(tmp_path):
    from chainrule import Linear, Sequential
    from chainrule.training.classifier import Classifier

    Classifier.of(Sequential(Linear(4, 3, seed=0))).save(tmp_path / "m.npz")
    X_test = np.ones((6, 4))
    X_test[2, 1] = np.inf
    data = small_npz(tmp_path / "d.npz", X_test=X_test)
    one_error(cli("evaluate", tmp_path / "m.npz", "--dataset", data), 1, "X_test contains NaN or inf (rows [2])")


def test_a_csv_with_a_byte_order_mark_keeps_its_first_row(tmp_path):
    from chainrule.training.data import load_csv

    rows = [f"{k % 2},{k},{k * 2}" for k in range(10)]
    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbf" + "\n".join(rows).encode())
    data = load_csv(tmp_path / "bom.csv")
    assert len(data.X_train) + len(data.X_test) == 10
    assert sorted(np.concatenate([data.X_train[:, 0], data.X_test[:, 0]]).tolist()) == list(range(10))


def test_a_test_set_of_another_width_and_a_label_the_model_lacks(tmp_path):
    from chainrule import Linear, Sequential
    from chainrule.training.classifier import Classifier

    one_error(
        cli("train", "--dataset", small_npz(tmp_path / "w.npz", X_test=np.ones((6, 5))), "--out", tmp_path / "r"),
        1,
        "test rows of 5 features, but train rows of 4",
    )
    Classifier.of(Sequential(Linear(4, 2, seed=0))).save(tmp_path / "m.npz")
    one_error(
        cli("evaluate", tmp_path / "m.npz", "--dataset", small_npz(tmp_path / "d.npz")),
        1,
        "the test set has label 2, but the model knows 2 classes",
    )


def test_empty_and_string_arrays_in_an_npz(tmp_path):
    one_error(
        cli("train", "--dataset", small_npz(tmp_path / "e.npz", X_train=np.zeros((0, 4)), y_train=np.zeros(0, int))),
        1,
        "X_train must be a non-empty table",
    )
    one_error(
        cli("train", "--dataset", small_npz(tmp_path / "s.npz", y_train=np.array(["a"] * 30))),
        1,
        "expected a vector of integer class labels",
    )


def test_a_tampered_checkpoint_with_a_negative_learning_rate_is_refused(tmp_path):
    from chainrule import archive

    out = tmp_path / "run"
    assert cli("train", "--epochs", "1", "--hidden", "8", "--no-plots", "--out", out).returncode == 0
    doc = archive.load(out / "checkpoint.npz", "chainrule-checkpoint", "checkpoint")
    doc["optimizer"]["param_groups"][0]["lr"] = -0.1
    archive.save(out / "checkpoint.npz", doc)
    one_error(cli("train", "--resume", out), 1, "learning rate", "-0.1")


# -- bad input that ended as an internal error ----------------------------------------------------------
def test_option_errors_exit_2_like_argparse(tmp_path):
    for option in (["--lr", "0"], ["--dropout", "1.5"], ["--batchnorm", "--layernorm"]):
        one_error(cli("train", *option, "--out", tmp_path / "run"), 2)
    assert not (tmp_path / "run").exists()


def test_a_huge_hidden_layer_and_a_name_too_long(tmp_path):
    one_error(cli("train", "--hidden", "100000000000", "--out", tmp_path / "run"), 1, "memory")
    one_error(cli("train", "--out", tmp_path / ("x" * 300)), 1, "File name too long")
    assert cli("explain", tmp_path / ("y" * 300 + ".toml")).returncode == 2


def test_a_huge_png_is_refused_before_it_is_decoded(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    from chainrule import Linear, Sequential
    from chainrule.training.classifier import Classifier

    model = Classifier.of(Sequential(Linear(64, 10, seed=0)))
    model.image_shape = (8, 8)
    model.save(tmp_path / "m.npz")
    Image.new("1", (20_000, 20_000)).save(tmp_path / "huge.png")  # 1 bit a pixel: small to write
    result = cli("predict", tmp_path / "m.npz", tmp_path / "huge.png")
    assert result.returncode == 1 and "an image of 20000×20000 pixels" in result.stderr, result.stderr
    assert "Warning" not in result.stderr and "Traceback" not in result.stderr


def test_resume_into_a_folder_that_cannot_be_written_is_refused_before_training(tmp_path):
    out = tmp_path / "run"
    assert cli("train", "--epochs", "1", "--hidden", "8", "--no-plots", "--out", out).returncode == 0
    os.chmod(out, 0o500)
    immutable = False
    try:
        if os.access(out, os.W_OK):  # root: permissions do not stop it, the immutable attribute does
            immutable = subprocess.run(["chattr", "+i", str(out)], capture_output=True).returncode == 0
            if not immutable:
                pytest.skip("running as a user whom permissions do not stop, without chattr")
        result = cli("train", "--resume", out)
        one_error(result, 1, "cannot write to the output folder")
        assert "epoch" not in result.stdout
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(out)], check=True)
        os.chmod(out, 0o700)


# -- the command line: pipes, signals, warnings -----------------------------------------------------------
@pytest.mark.parametrize(
    "args",
    [
        ["gradcheck", "--list"],
        ["check", EXAMPLES / "relu_mse.toml", EXAMPLES / "relu_mse_answers.toml", "--format", "json"],
        ["explain", EXAMPLES / "relu_mse.toml"],
    ],
    ids=lambda a: a[0],
)
def test_a_reader_that_went_away_stops_the_command_quietly(args):
    read, write = os.pipe()
    os.close(read)
    result = subprocess.run(
        [sys.executable, "-m", "chainrule.cli", *map(str, args)], stdout=write, stderr=subprocess.PIPE, text=True
    )
    os.close(write)
    assert result.returncode == 141 and result.stderr == "", result.stderr


def test_warnings_are_one_line(tmp_path):
    (tmp_path / "empty.csv").write_text("label,x\n")
    result = cli("train", "--dataset", tmp_path / "empty.csv", "--out", tmp_path / "run")
    one_error(result, 1, "expected rows of a label and at least one feature")


def test_a_second_interrupt_during_shutdown_prints_no_traceback(tmp_path):
    """Ctrl-C, then Ctrl-C and SIGTERM again at once while the first is handled."""
    for attempt in range(3):
        process = subprocess.Popen(
            [sys.executable, "-m", "chainrule.cli", "train", "--out", tmp_path / f"run{attempt}", "--epochs", "5000"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(2.5 + attempt * 0.3)
        for sig in (signal.SIGINT, signal.SIGINT, signal.SIGTERM, signal.SIGINT):
            process.send_signal(sig)
            time.sleep(0.005)
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 130, stderr
        assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr


# -- a new user's path ------------------------------------------------------------------------------------
def test_explain_given_an_answers_file_names_the_right_command():
    for args in (
        ["explain", EXAMPLES / "relu_mse_answers.toml"],
        ["check", EXAMPLES / "relu_mse_answers.toml", EXAMPLES / "relu_mse.toml"],  # swapped
    ):
        one_error(cli(*args), 2, "this is an answers file", "chainrule check PROBLEM.toml ANSWERS.toml")


def test_evaluate_needs_only_the_test_files(tmp_path):
    from chainrule import Linear, Sequential
    from chainrule.training.classifier import Classifier
    from chainrule.training.data import write_idx

    rng = np.random.default_rng(0)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (12, 4, 4)))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.arange(12) % 3)
    model = Classifier.of(Sequential(Linear(16, 3, seed=0)))
    model.image_shape, model.scale = (4, 4), 255.0
    model.save(tmp_path / "m.npz")
    result = cli("evaluate", tmp_path / "m.npz", "--dataset", tmp_path)
    assert result.returncode == 0, result.stderr
    assert "(12 examples)" in result.stdout
    one_error(cli("train", "--dataset", tmp_path, "--out", tmp_path / "run"), 1, "missing train-images-idx3-ubyte")
    (tmp_path / "mnist").mkdir()
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (tmp_path / name).rename(tmp_path / "mnist" / name)
    listed = cli("datasets", "--data-dir", tmp_path).stdout
    assert f"mnist          {tmp_path / 'mnist'} (the test set only" in listed, listed
    result = cli("evaluate", tmp_path / "m.npz", "--dataset", "mnist", "--data-dir", tmp_path)
    assert result.returncode == 0 and "(12 examples)" in result.stdout, result.stderr


def test_the_not_found_message_offers_only_what_exists(tmp_path, monkeypatch):
    from chainrule.errors import DataError
    from chainrule.training.data import load_dataset

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    with pytest.raises(DataError) as err:
        load_dataset("mnist", tmp_path, download=False)
    assert "allow the download" not in str(err.value) and "--data-dir" in str(err.value)


def test_predict_goes_on_past_a_bad_file_and_warns_of_inputs_in_0_1(tmp_path):
    from chainrule import Linear, Sequential
    from chainrule.training.classifier import Classifier

    model = Classifier.of(Sequential(Linear(4, 3, seed=0)))
    model.scale = 255.0
    model.save(tmp_path / "m.npz")
    np.save(tmp_path / "good.npy", np.full(4, 200.0))
    np.save(tmp_path / "scaled.npy", np.full(4, 0.8))
    (tmp_path / "bad.npy").write_bytes(b"not an array")
    result = cli("predict", tmp_path / "m.npz", tmp_path / "bad.npy", tmp_path / "good.npy", tmp_path / "scaled.npy")
    assert result.returncode == 1
    assert "good.npy: " in result.stdout and "scaled.npy: " in result.stdout
    assert "bad.npy: not a readable" in result.stderr and "1 of 3 files could not be read" in result.stderr
    assert "scaled.npy: all values are within [0, 1]" in result.stderr


def test_a_transparent_background_is_not_read_as_black(tmp_path):
    """A dark stroke on a transparent background must read as the same stroke on white."""
    Image = pytest.importorskip("PIL.Image")
    from chainrule.training.classifier import Classifier
    from chainrule.training.images import image_to_input

    model = Classifier(None, np.zeros(64), np.ones(64), 16.0, tuple("0123456789"), (8, 8))
    stroke = np.zeros((32, 32), bool)
    stroke[4:28, 14:18] = True  # a vertical bar
    rgba = np.zeros((32, 32, 4), np.uint8)  # transparent black everywhere ...
    rgba[stroke] = (0, 0, 0, 255)  # ... but the opaque black bar
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    white = np.where(stroke, 0, 255).astype(np.uint8)
    Image.fromarray(white, "L").save(tmp_path / "white.png")
    np.testing.assert_allclose(
        image_to_input(tmp_path / "rgba.png", model), image_to_input(tmp_path / "white.png", model)
    )


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "nesterov"])
def test_mse_trains_at_its_default_learning_rate(tmp_path, optimizer):
    result = cli(
        "train", "--loss", "mse", "--optimizer", optimizer, "--epochs", "3", "--no-plots", "--out", tmp_path / "r"
    )
    assert result.returncode == 0, result.stderr
    assert "lr 0.01" in result.stdout


def test_sigterm_during_a_download_leaves_no_partial_file(tmp_path):
    """The server sends half of a file, then nothing: SIGTERM then stops evaluate, as Ctrl-C would."""
    import http.server
    import threading

    from chainrule import Linear, Sequential
    from chainrule.training.classifier import Classifier

    class Stalling(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(1 << 20))
            self.end_headers()
            self.wfile.write(bytes(1 << 16))
            self.wfile.flush()
            time.sleep(20)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Stalling)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Classifier.of(Sequential(Linear(784, 10, seed=0))).save(tmp_path / "m.npz")
    env = {
        **os.environ,
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "CHAINRULE_MIRRORS": f"http://127.0.0.1:{server.server_port}/",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "chainrule.cli", "evaluate", tmp_path / "m.npz", "--dataset", "mnist", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    cache = tmp_path / "cache" / "chainrule" / "mnist"
    deadline = time.time() + 30
    while not (cache.is_dir() and any(p.name.endswith(".part") for p in cache.iterdir())) and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    server.shutdown()
    assert process.returncode == 130, stderr
    assert [p.name for p in cache.iterdir()] == []


def test_the_readme_names_run_folders_that_stay_one_folder():
    """`runs/digits-*/model.npz` matches two files as soon as there are two runs, and evaluate then fails."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "runs/" in readme and "-*/" not in readme


def test_the_first_layer_plot_says_how_many_units_it_shows_and_has_a_colour_bar():
    pytest.importorskip("matplotlib")
    from chainrule.training.plots import _pyplot, _weights

    plt = _pyplot()
    W = np.random.default_rng(0).normal(size=(64, 256))
    figure = _weights(plt, W, (8, 8), None)
    assert "the first 64 of 256 units" in figure._suptitle.get_text()
    assert any(axis.get_label() == "<colorbar>" for axis in figure.axes)
    plt.close(figure)


def test_a_confident_error_is_not_labelled_1_00():
    from chainrule.training.plots import probability_label

    assert probability_label(0.99996) == "1 − 4e-05" and probability_label(0.5) == "0.500"


def test_fit_offers_progress_and_save_is_one_call(tmp_path, capsys):
    import chainrule as cr

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 4)), np.arange(40) % 3
    network = cr.mlp([4, 8, 3], "relu", seed=0)
    history = cr.fit(
        network, cr.SoftmaxCrossEntropyLoss(), cr.SGD(network.parameters(), lr=0.1), X, y, epochs=2, verbose=True
    )
    lines = capsys.readouterr().err.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == ["epoch 1/2", "epoch 2/2"]
    assert f"loss {history.epochs[1].loss:.4f}" in lines[1]
    cr.save(network, tmp_path / "m.npz", classes=["a", "b", "c"])
    model = cr.load(tmp_path / "m.npz")
    assert model.classes == ("a", "b", "c")
    np.testing.assert_array_equal(model.predict(X), network.eval().forward(X).argmax(axis=1))


def test_csv_labels_may_be_names_in_any_column(tmp_path):
    """The iris layout: four measurements, then the species by name."""
    rng = np.random.default_rng(0)
    species = ["setosa", "versicolor", "virginica"]
    lines = ["sepal_length,sepal_width,petal_length,petal_width,species"]
    for k in range(60):
        lines.append(",".join(f"{v:.2f}" for v in rng.normal(k % 3, 0.3, size=4)) + f",{species[k % 3]}")
    (tmp_path / "iris.csv").write_text("\n".join(lines))
    result = cli(
        "train",
        "--dataset",
        tmp_path / "iris.csv",
        "--label",
        "species",
        "--epochs",
        "5",
        "--no-plots",
        "--out",
        tmp_path / "run",
    )
    assert result.returncode == 0, result.stderr
    from chainrule.training.modelfile import load_model

    assert load_model(tmp_path / "run" / "model.npz").classes == tuple(species)
    evaluated = cli("evaluate", tmp_path / "run" / "model.npz", "--dataset", tmp_path / "iris.csv", "--label", "4")
    assert evaluated.returncode == 0 and "setosa" in evaluated.stdout, evaluated.stderr
    one_error(
        cli("train", "--dataset", tmp_path / "iris.csv", "--label", "kind", "--out", tmp_path / "r2"),
        1,
        "no label column 'kind'; the columns are sepal_length",
    )


def test_an_interrupted_run_in_python_leaves_ctrl_c_as_it_was(tmp_path, monkeypatch):
    import chainrule.training.loop as loop
    from chainrule.training.run import RunInterrupted, TrainConfig, train

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "run_epoch", interrupted)
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with pytest.raises(RunInterrupted):
        train(TrainConfig(hidden=(8,), out=str(tmp_path / "run"), quiet=True, plots=False))
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_many_layers_and_many_classes_stay_quick():
    """Found by an adversarial review: a duplicate check of O(n²) over the layers, and a confusion plot with
    a text in each of 300 × 300 cells (a minute of drawing)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from chainrule.activations import ReLU
    from chainrule.network import Sequential
    from chainrule.training.plots import _confusion

    start = time.perf_counter()
    Sequential(*[ReLU() for _ in range(50000)])  # the quadratic check took minutes here; one pass, < 1 s
    assert time.perf_counter() - start < 30
    figure = _confusion(plt, np.eye(300, dtype=int), [str(k) for k in range(300)])
    assert not figure.axes[0].texts and len(figure.axes[0].get_xticklabels()) < 30  # axis numbers, not 300 names
    plt.close(figure)
