"""The findings of the adversarial review of issue 17's fixes: one test each, most severe first.

The bombs run in a subprocess whose address space is limited (``resource.setrlimit``), as in
``test_limits.py``.
"""

import os
import subprocess
import sys
import time

import numpy as np
from test_limits import assert_refused, chainrule_limited
from test_rough_edges import cli, one_error


def choosing_network():
    """A network of one input x that picks class x for x in {0, 1, 2}: logits (0, x − ½, 2x − 2), worked by
    hand (x = 0: class 0; x = 1: (0, ½, 0), class 1; x = 2: (0, 1½, 2), class 2)."""
    from chainrule import Linear, Sequential

    layer = Linear(1, 3, seed=0)
    layer.params["W"].data[...] = [[0.0, 1.0, 2.0]]
    layer.params["b"].data[...] = [0.0, -0.5, -2.0]
    return Sequential(layer)


def test_evaluate_maps_named_csv_labels_by_the_models_class_names(tmp_path):
    """A test file holding only two of the three species: its own sorted names would number virginica 1."""
    from chainrule.training.classifier import Classifier

    Classifier.of(choosing_network(), ["setosa", "versicolor", "virginica"]).save(tmp_path / "m.npz")
    rows = ["x,species"] + [f"{k},{name}" for k, name in ((1, "versicolor"), (2, "virginica")) for _ in range(5)]
    (tmp_path / "test.csv").write_text("\n".join(rows))
    result = cli("evaluate", tmp_path / "m.npz", "--dataset", tmp_path / "test.csv", "--label", "species", "--json")
    assert result.returncode == 0, result.stderr
    import json

    assert json.loads(result.stdout)["accuracy"] == 1.0
    (tmp_path / "other.csv").write_text("x,species\n1,versicolor\n" + "2,daisy\n" * 9)  # its test rows: daisies
    one_error(
        cli("evaluate", tmp_path / "m.npz", "--dataset", tmp_path / "other.csv", "--label", "species"),
        1,
        "the test set has label 'daisy', but the model knows 3 classes (setosa, versicolor, virginica)",
    )


def test_toml_with_a_dotted_key_thousands_deep_is_refused_before_parsing(tmp_path):
    """80 KB of ``a.a.a…`` took Python's TOML reader 35 s and 9.4 GB."""
    (tmp_path / "deep.toml").write_text(".".join(["a"] * 40_000) + " = 1\n")
    (tmp_path / "inline.toml").write_text("x = " + "{a = " * 5_000 + "1" + "}" * 5_000 + "\n")
    for name in ("deep.toml", "inline.toml"):
        start = time.perf_counter()
        result = chainrule_limited("explain", tmp_path / name, timeout=60)
        assert time.perf_counter() - start < 10
        one_error(result, 2, name, "nested more than 64 deep")
    one_error(chainrule_limited("check", tmp_path / "deep.toml", tmp_path / "deep.toml"), 2, "nested more than 64")


def test_nesting_counts_structure_not_strings():
    from chainrule.archive import nesting

    assert nesting('a = [[1.5, 2.5], [3, 4]]\nb.c.d = "x.y.z.w.v [[[[["  # [[[\n') == 3
    assert nesting("'''\n[[[[\n''' = 1\n[t]\nx.'q.r'.y = 2") == 3
    assert nesting('{"a": {"b": [1, "]]]{{{"]}}') == 3


def crafted_model(path, change=lambda meta: meta, text=lambda json_text: json_text):
    """A valid model file with its JSON description changed by ``change(meta)``, then its text by ``text``."""
    import json

    from chainrule.training.classifier import Classifier

    Classifier.of(choosing_network(), ["a", "b", "c"]).save(path)
    arrays = dict(np.load(path))
    meta = json.loads(str(arrays.pop("meta")))
    np.savez(path, meta=np.array(text(json.dumps(change(meta)))), **arrays)
    return path


def test_a_model_file_nested_deep_or_of_too_many_layers_is_refused(tmp_path):
    deep = crafted_model(tmp_path / "deep.npz", text=lambda t: t[:-1] + ', "extra": ' + "[" * 990 + "]" * 990 + "}")
    one_error(cli("predict", deep, tmp_path / "x.npy"), 1, "deep.npz: its 'meta' record nests more than 64 deep")
    many = crafted_model(tmp_path / "many.npz", lambda m: {**m, "layers": m["layers"] + [{"type": "relu"}] * 5000})
    one_error(cli("predict", many, tmp_path / "x.npy"), 1, "many.npz: declares 5001 layers; a model file holds 1000")


def python_limited(code, timeout=120):
    """``python -c code`` in a subprocess limited as the bombs of ``test_limits.py`` are."""
    import os
    import resource

    from test_limits import LIMIT

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (LIMIT, LIMIT))

    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-c", code], preexec_fn=limit, capture_output=True, text=True, timeout=timeout, env=env
    )


def test_a_csv_takes_memory_bounded_by_its_size(tmp_path):
    """One label of 100 KB padded every label to it (108 KB → 2.4 GB); rows of 4 bytes took 28 times their
    size. Under 1 GiB the first is read now (the long name is one class), the second (100 MB of rows ``0,1``)
    refused by its size, before it is read."""
    long_name = "x" * 100_000
    (tmp_path / "long.csv").write_text("label,v\n" + f"{long_name},1\n" + "a,2\n" * 2000)
    code = (
        "from chainrule.training.data import load_csv\n"
        f"d = load_csv({str(tmp_path / 'long.csv')!r}, label='label')\n"
        "print(len(d.X_train) + len(d.X_test), [len(c) for c in d.classes])"
    )
    result = python_limited(code)
    assert result.returncode == 0 and result.stdout.split() == ["2001", "[1,", "100000]"], result.stderr[-500:]
    (tmp_path / "tiny.csv").write_text("0,1\n1,0\n" * 12_500_000)
    assert_refused(
        chainrule_limited("train", "--dataset", tmp_path / "tiny.csv"),
        "tiny.csv: 95.4 MB; a .csv file of at most 32.0 MB is read",
    )


def test_import_reads_within_the_bounds_of_every_reader(tmp_path):
    """A TorchScript file is a zip that torch expands whole: 1.2 GB of zeros in 1.2 MB; and a link to a
    device was called "no such file"."""
    import zipfile

    bomb = tmp_path / "bomb.pt"
    with (
        zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive,
        archive.open("bomb/data/0", "w", force_zip64=True) as f,
    ):
        zeros = bytes(64 << 20)
        for _ in range(18):
            f.write(zeros)
    assert bomb.stat().st_size < 2 << 20
    assert_refused(chainrule_limited("import", bomb, "--out", tmp_path / "m.npz"), "bomb.pt: declares 1152.0 MB")
    (tmp_path / "zero.pt").symlink_to("/dev/zero")
    one_error(cli("import", tmp_path / "zero.pt", "--out", tmp_path / "m.npz"), 1, "zero.pt: a device; expected a")


def test_force_keeps_the_earlier_run_until_the_new_one_has_a_checkpoint(tmp_path):
    """A --force run whose first epoch fails (a NaN loss), or that is killed before its first checkpoint,
    leaves the earlier run's files as they were."""
    from test_rough_edges import small_npz

    from chainrule.training.config import TrainConfig
    from chainrule.training.runfolder import RunFolder

    data, out = small_npz(tmp_path / "d.npz"), tmp_path / "run"
    common = ("train", "--dataset", data, "--out", out, "--epochs", "1", "--hidden", "4", "--no-plots", "--quiet")
    assert cli(*common).returncode == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and not p.name.startswith(".")}
    assert {"model.npz", "checkpoint.npz", "metrics.json"} <= set(before)
    one_error(cli(*common, "--force", "--lr", "1e30", "--optimizer", "sgd", "--batch-size", "4"), 1, "the loss became")
    assert {p.name: p.read_bytes() for p in out.iterdir() if not p.name.startswith(".")} == before
    folder = RunFolder.open(TrainConfig(out=str(out), force=True))
    folder.clear_earlier_run()
    os.close(folder._lock)  # killed here: the system drops the lock; the next run finds the files aside
    RunFolder.open(TrainConfig(out=str(out), force=True)).release()
    assert {p.name: p.read_bytes() for p in out.iterdir() if not p.name.startswith(".")} == before


def test_release_removes_only_its_own_lock(tmp_path):
    from chainrule.training.config import TrainConfig
    from chainrule.training.runfolder import LOCK, RunFolder

    folder = RunFolder.open(TrainConfig(out=str(tmp_path / "run")))
    (tmp_path / "run" / LOCK).unlink()
    (tmp_path / "run" / LOCK).write_text("4242")  # the lock of a later run, made after ours was removed
    folder.release()
    assert (tmp_path / "run" / LOCK).read_text() == "4242"


def test_evaluate_summarises_a_confusion_matrix_of_many_classes(tmp_path):
    """40 classes: class k wins for input x = k (logits k·x − k²/2); three examples of class 7 are given
    x = 5, so class 7 is right 2 times of 5 (0.4000) and 7 → 5 is the one confused pair, 3 times."""
    import csv

    from chainrule import Linear, Sequential
    from chainrule.training.classifier import Classifier

    k = np.arange(40.0)
    layer = Linear(1, 40, seed=0)
    layer.params["W"].data[...] = k[None, :]
    layer.params["b"].data[...] = -(k**2) / 2
    Classifier.of(Sequential(layer)).save(tmp_path / "m.npz")
    X = np.concatenate([k, k, [5, 5, 5]])[:, None]
    y = np.concatenate([k, k, [7, 7, 7]]).astype(int)
    np.savez(tmp_path / "d.npz", X_train=X, y_train=y, X_test=X, y_test=y)
    result = cli("evaluate", tmp_path / "m.npz", "--dataset", tmp_path / "d.npz", "--confusion", tmp_path / "c.csv")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) < 30
    assert "  7  0.4000  (5 examples)" in lines and "  7 → 5: 3" in lines
    assert lines[-1].endswith(f"40×40 confusion matrix: in {tmp_path / 'c.csv'}")
    rows = list(csv.reader((tmp_path / "c.csv").open()))
    assert len(rows) == 41 and rows[0][1:] == [str(c) for c in range(40)] and rows[8][0] == "7" and rows[8][6] == "3"


def test_a_crafted_checkpoint_is_checked_before_its_model_is_built(tmp_path):
    import json

    from test_rough_edges import small_npz

    out = tmp_path / "run"
    args = ("--dataset", small_npz(tmp_path / "d.npz"), "--out", out, "--epochs", "1", "--hidden", "4", "--quiet")
    assert cli("train", *args, "--no-plots").returncode == 0
    arrays = dict(np.load(out / "checkpoint.npz"))
    meta = json.loads(str(arrays.pop("meta")))
    meta["config"]["hidden"] = [100_000_000_000]
    np.savez(out / "checkpoint.npz", meta=np.array(json.dumps(meta)), **arrays)
    result = chainrule_limited("train", "--resume", out, "--epochs", "2")
    assert_refused(result, "checkpoint.npz: its configuration declares hidden layers of 100000000000, but its arrays")
    assert "--hidden" not in result.stderr


def test_the_memory_a_run_will_take_is_counted_before_training(tmp_path):
    """20,000 rows of 4 features (640 KB) with a label of 9,999 and --loss mse: one-hot targets of
    20,000 × 10,000 float32 (800 MB) and np.eye(10,000) (400 MB) passed the readers' bound."""
    y = np.arange(20_000) % 10
    y[0] = 9_999
    data = tmp_path / "d.npz"
    np.savez(data, X_train=np.ones((20_000, 4)), y_train=y, X_test=np.ones((10, 4)), y_test=y[:10])
    result = chainrule_limited("train", "--dataset", data, "--loss", "mse", "--out", tmp_path / "r", "--epochs", "1")
    assert_refused(result, "d: training on it takes about 764 MB (20010 rows of 4 features as float32 and one-hot")


def test_images_too_wide_for_a_model_are_refused_before_training(tmp_path):
    from test_limits import idx_bytes

    folder = tmp_path / "wide"
    folder.mkdir()
    for name, array in (
        ("train-images-idx3-ubyte", np.zeros((4, 1, 5000))),
        ("train-labels-idx1-ubyte", np.arange(4) % 2),
        ("t10k-images-idx3-ubyte", np.zeros((2, 1, 5000))),
        ("t10k-labels-idx1-ubyte", np.arange(2) % 2),
    ):
        (folder / name).write_bytes(idx_bytes(array))
    result = cli("train", "--dataset", folder, "--out", tmp_path / "r", "--epochs", "1", "--no-plots")
    one_error(result, 1, "wide: images of 1×5000 pixels; a model takes images of at most 4096 on a side")
    assert "epoch" not in result.stderr


def test_zero_width_features_and_a_label_column_in_other_digits(tmp_path):
    from test_rough_edges import small_npz

    data = small_npz(tmp_path / "z.npz", X_train=np.zeros((30, 0)), X_test=np.zeros((6, 0)))
    one_error(cli("train", "--dataset", data, "--out", tmp_path / "r"), 1, "rows of at least one feature")
    (tmp_path / "d.csv").write_text("a,b\n" + "1,2\n" * 5)
    one_error(cli("train", "--dataset", tmp_path / "d.csv", "--label", "²"), 1, "no label column '²'; the columns")


def test_inputs_that_overflow_the_network_are_an_error_not_nan(tmp_path):
    """1e308 is beyond float32 (at most 3.40e38); 3e38 fits, but its logit 2 · 3e38 does not. For x = 2 the
    logits are (0, 1.5, 2): class 2, e² / (1 + e^1.5 + e²) = 0.574."""
    from chainrule.training.classifier import Classifier

    Classifier.of(choosing_network()).save(tmp_path / "m.npz")
    np.save(tmp_path / "huge.npy", np.array([1e308]))
    np.save(tmp_path / "big.npy", np.array([[3e38], [1.0]], np.float32))
    np.save(tmp_path / "fine.npy", np.array([2.0]))
    result = cli("predict", tmp_path / "m.npz", tmp_path / "huge.npy", tmp_path / "big.npy", tmp_path / "fine.npy")
    assert result.returncode == 1 and "nan" not in result.stdout.lower(), result.stdout
    assert result.stdout.splitlines() == [f"{tmp_path / 'fine.npy'}: 2 (0.574)"], result.stdout
    lines = result.stderr.splitlines()
    assert "huge.npy: the inputs: values up to 1e+308 overflow float32 (at most 3.4e+38)" in lines[0]
    assert "big.npy: the network's outputs overflow for inputs [0]" in lines[1]
    assert lines[2] == "chainrule: error: 2 of 3 files could not be read"
    from test_rough_edges import small_npz

    data = small_npz(tmp_path / "d.npz", X_train=np.full((30, 4), 1e300))
    one_error(
        cli("train", "--dataset", data, "--out", tmp_path / "r"), 1, "d: the features: values up to 1e+300 overflow"
    )


def test_messages_are_short_and_grammatical(tmp_path):
    from chainrule.training.classifier import Classifier

    (tmp_path / "wide.csv").write_text(",".join("c" * 1000 + str(k) for k in range(2600)) + "\n" + "1," * 2599 + "1\n")
    result = cli("train", "--dataset", tmp_path / "wide.csv", "--label", "kind")
    one_error(result, 1, "wide.csv: no label column 'kind'; the columns are c", "characters left out")
    assert len(result.stderr) < 2100
    Classifier.of(choosing_network()).save(tmp_path / "m.npz")
    (tmp_path / "bad.npy").write_bytes(b"\x93NUMPY\x01\x00")
    one_error(cli("predict", tmp_path / "m.npz", tmp_path / "bad.npy"), 1, "bad.npy: not a readable .npy array (")


def test_the_embedded_digits_are_scikit_learns_and_need_it_not(tmp_path):
    import pytest

    from chainrule.training.data import load_digits

    data = load_digits()
    X = np.concatenate([data.X_train, data.X_test])
    y = np.concatenate([data.y_train, data.y_test])
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("sklearn")  # its file, not the package: importing it loads SciPy's BLAS
    if spec is None:
        pytest.skip("scikit-learn is not installed")
    reference = np.loadtxt(Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz", delimiter=",")
    order = np.random.default_rng(0).permutation(1797)
    test, train = order[:359], order[359:]
    assert np.array_equal(X, reference[np.concatenate([train, test]), :-1])
    assert np.array_equal(y, reference[np.concatenate([train, test]), -1])
    blocked = "import sys; sys.modules['sklearn'] = sys.modules['scipy'] = None; from chainrule.cli import main; "
    args = ["train", "--epochs", "1", "--out", str(tmp_path / "run"), "--no-plots", "--quiet"]
    result = subprocess.run(
        [sys.executable, "-c", blocked + f"sys.exit(main({args!r}))"], capture_output=True, text=True
    )
    assert result.returncode == 0 and (tmp_path / "run" / "model.npz").is_file(), result.stderr


def test_a_training_error_is_printed_in_russian_and_chinese(tmp_path):
    import os

    from test_rough_edges import small_npz

    from chainrule import Linear, Sequential
    from chainrule.training.classifier import Classifier

    Classifier.of(Sequential(Linear(4, 2, seed=0))).save(tmp_path / "m.npz")
    args = ("evaluate", tmp_path / "m.npz", "--dataset", small_npz(tmp_path / "d.npz"))
    russian = "chainrule: ошибка: d: в тестовой выборке есть метка 2, но модель знает классов: 2 (0, 1)\n"
    chinese = "chainrule: 错误: d：测试集中有标签 2，但模型只知道 2 个类别（0, 1）\n"
    result = cli(*args, "--lang", "ru")
    assert (result.returncode, result.stderr) == (1, russian)
    result = cli(*args, "--lang", "zh")
    assert (result.returncode, result.stderr) == (1, chinese)
    environment = {k: v for k, v in os.environ.items() if k not in ("LC_ALL", "LC_MESSAGES")}
    result = cli(*args, env={**environment, "LANG": "zh_CN.UTF-8"})
    assert (result.returncode, result.stderr) == (1, chinese)
    result = cli("train", "--dataset", tmp_path / "nothing.csv", "--out", tmp_path / "r", "--lang", "ru")
    assert result.stderr.startswith("chainrule: ошибка: неизвестный набор данных"), result.stderr


def test_evaluate_counts_the_memory_of_the_test_set_as_the_model_reads_it(tmp_path):
    """200,000 test images of 28×28 bytes (150 MB, within the readers' 512 MB) are 598 MB as float32."""
    import gzip

    from test_limits import idx_bytes

    from chainrule import Linear, Sequential
    from chainrule.training.classifier import Classifier

    Classifier.of(Sequential(Linear(784, 2, seed=0))).save(tmp_path / "m.npz")
    folder = tmp_path / "test-only"
    folder.mkdir()
    header = bytes([0, 0, 8, 3]) + (200_000).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(header + bytes(200_000 * 784), 1))
    (folder / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(200_000)))
    result = chainrule_limited("evaluate", tmp_path / "m.npz", "--dataset", folder)
    assert_refused(result, "test-only: evaluating on it takes about 598 MB (200000 rows of 784 features as float32)")
