"""No input exhausts memory or time, and no file that is not a regular file is read.

Each bomb is run in a subprocess whose address space is limited to 1 GiB (``resource.setrlimit``): a
reader that allocated what a small file declares would end in a MemoryError there; chainrule must refuse
it first, with one line that names the file.
"""

import contextlib
import gzip
import json
import os
import resource
import struct
import subprocess
import sys
import threading
import zipfile

import numpy as np
import pytest

LIMIT = 1 << 30  # bytes of address space for a bomb's subprocess


def chainrule_limited(*args, timeout=120, cwd=None):
    """``chainrule ARGS`` in a subprocess limited to :data:`LIMIT` bytes of memory."""

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (LIMIT, LIMIT))

    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "chainrule.cli", *map(str, args)],
        preexec_fn=limit,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=cwd,
    )


def assert_refused(result, *words):
    assert result.returncode == 1, result.stderr
    assert "MemoryError" not in result.stderr and "internal error" not in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    for word in words:
        assert word in result.stderr, result.stderr


def idx_bytes(array):
    array = np.asarray(array, np.uint8)
    return bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def small_idx_folder(folder):
    """A valid MNIST-style folder of 20 train and 10 test images of 4×4."""
    rng = np.random.default_rng(0)
    folder.mkdir(exist_ok=True)
    for name, array in (
        ("train-images-idx3-ubyte", rng.integers(0, 256, (20, 4, 4))),
        ("train-labels-idx1-ubyte", np.arange(20) % 3),
        ("t10k-images-idx3-ubyte", rng.integers(0, 256, (10, 4, 4))),
        ("t10k-labels-idx1-ubyte", np.arange(10) % 3),
    ):
        (folder / name).write_bytes(idx_bytes(array))
    return folder


def test_a_gzip_idx_that_expands_beyond_memory_is_refused_before_it_is_expanded(tmp_path):
    """1.2 GB of zeros in about 1 MB of gzip (members of 64 MB each, concatenated)."""
    folder = small_idx_folder(tmp_path / "bomb")
    (folder / "train-images-idx3-ubyte").unlink()
    shape = (30_000, 200, 200)
    header = bytes([0, 0, 8, 3]) + struct.pack(">3I", *shape)
    zeros = gzip.compress(bytes(64 << 20), 9)
    with open(folder / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(gzip.compress(header))
        for _ in range(18):  # 18 × 64 MiB = 1.2 GB, as the header declares (and some more)
            f.write(zeros)
    assert (folder / "train-images-idx3-ubyte.gz").stat().st_size < 3 << 20
    result = chainrule_limited("train", "--dataset", folder, "--out", tmp_path / "run", "--quiet")
    assert_refused(result, "train-images-idx3-ubyte.gz", "refusing")
    assert not (tmp_path / "run").exists()


def test_a_gzip_idx_that_declares_more_than_it_can_hold_is_refused(tmp_path):
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(bytes([0, 0, 8, 1]) + struct.pack(">I", 2**31) + bytes(1000)))
    from chainrule.errors import DataError
    from chainrule.training.data import read_idx

    with pytest.raises(DataError, match=r"more than a \.gz of"):
        read_idx(path)


def npz_bomb(path, key="X_train", shape=(30_000, 10_000), others=True):
    """An .npz whose ``key`` is a float32 array of ``shape`` of zeros, deflated (1.2 GB in about 1 MB)."""
    header = np.lib.format.header_data_from_array_1_0(np.zeros((1, 1), np.float32))
    header["shape"] = shape
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        with archive.open(f"{key}.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array_header_1_0(member, header)
            chunk = bytes(64 << 20)
            left = int(np.prod(shape)) * 4
            while left:
                member.write(chunk[: min(left, len(chunk))])
                left -= min(left, len(chunk))
        if others:
            rng = np.random.default_rng(0)
            for name, array in (
                ("y_train", np.arange(30_000) % 3),
                ("X_test", rng.normal(size=(5, 10_000))),
                ("y_test", np.arange(5) % 3),
            ):
                with archive.open(f"{name}.npy", "w") as member:
                    np.lib.format.write_array(member, array)


@pytest.mark.slow
def test_an_npz_zip_bomb_is_refused_before_it_is_expanded(tmp_path):
    npz_bomb(tmp_path / "bomb.npz")
    assert (tmp_path / "bomb.npz").stat().st_size < 5 << 20
    result = chainrule_limited("train", "--dataset", tmp_path / "bomb.npz", "--out", tmp_path / "run", "--quiet")
    assert_refused(result, "bomb.npz", "refusing")


def test_an_npy_header_that_declares_more_than_its_bytes_is_refused(tmp_path):
    """A few bytes whose header declares 8 GB: NumPy would allocate the array first."""
    path = tmp_path / "d.npz"
    with zipfile.ZipFile(path, "w") as archive, archive.open("X_train.npy", "w") as member:
        header = np.lib.format.header_data_from_array_1_0(np.zeros(1))
        header["shape"] = (10**9,)
        np.lib.format.write_array_header_1_0(member, header)
        member.write(bytes(80))
    result = chainrule_limited("train", "--dataset", path, "--out", tmp_path / "run", "--quiet")
    assert_refused(result, "X_train", "declares shape (1000000000,)")


@pytest.mark.parametrize("fmt", ["csv", "npz", "idx"])
def test_a_huge_label_is_refused_not_made_a_huge_one_hot(tmp_path, fmt):
    """One label of 10⁹ in otherwise small data: a one-hot of 10⁹ columns (MSE) would not fit anywhere."""
    rng = np.random.default_rng(0)
    y = np.arange(40) % 3
    y[7] = 10**9
    X = rng.normal(size=(40, 4))
    if fmt == "csv":
        data = tmp_path / "d.csv"
        data.write_text("\n".join(",".join(map(str, [label, *row])) for label, row in zip(y, X, strict=True)))
    elif fmt == "npz":
        data = tmp_path / "d.npz"
        np.savez(data, X_train=X, y_train=y, X_test=X[:5], y_test=y[:5] % 3)
    else:
        data = small_idx_folder(tmp_path / "idx")
        labels = np.arange(20) % 3
        labels[7] = 10**9
        labels = labels.astype(">i4")
        (data / "train-labels-idx1-ubyte").write_bytes(
            bytes([0, 0, 0x0C, 1]) + struct.pack(">I", 20) + labels.tobytes()
        )
    result = chainrule_limited("train", "--dataset", data, "--loss", "mse", "--out", tmp_path / "run", "--quiet")
    assert_refused(result, "labels must be integers from 0 to 9999", "1000000000")


@pytest.mark.parametrize(
    "labels, dtype, code",
    [([0, 1, -1, 2], ">i1", 0x09), ([0, 2, 1.5, 2], ">f4", 0x0D)],
    ids=["negative int8", "fractional float"],
)
def test_idx_labels_are_checked_like_any_other(tmp_path, labels, dtype, code):
    folder = small_idx_folder(tmp_path / "idx")
    values = np.resize(np.array(labels), 20).astype(dtype)
    (folder / "train-labels-idx1-ubyte").write_bytes(bytes([0, 0, code, 1]) + struct.pack(">I", 20) + values.tobytes())
    from chainrule.errors import DataError
    from chainrule.training.data import load_dataset

    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte: labels must be integers .* row 2"):
        load_dataset(str(folder))


def test_a_model_file_with_too_many_classes_is_refused(tmp_path):
    """40,000 class names (a 64 → 40,000 layer of zeros is a few KB deflated): evaluate's confusion matrix
    alone would take 12.8 GB."""
    from chainrule import Linear, Sequential
    from chainrule.training.classifier import Classifier
    from chainrule.training.modelfile import save_model

    model = Classifier.of(Sequential(Linear(64, 40_000, init="zeros")))
    with pytest.raises(Exception, match="10000 classes at most"):
        save_model(model, tmp_path / "m.npz")
    # written by hand, as a crafted file would be
    from chainrule import archive
    from chainrule.training.modelfile import FORMAT, VERSION

    doc = {
        "format": FORMAT,
        "version": VERSION,
        "layers": [{"type": "linear", "in_features": 64, "out_features": 40_000, "bias": True}],
        "dtype": "float32",
        "scale": 16.0,
        "classes": [str(i) for i in range(40_000)],
        "image_shape": [8, 8],
        "frame_fill": 1.0,
        "model": {k: v.astype(np.float32) for k, v in model.network.state_dict().items()},
        "input": {"mean": np.zeros(64, np.float32), "std": np.ones(64, np.float32)},
    }
    archive.save(tmp_path / "m.npz", doc)
    result = chainrule_limited("evaluate", tmp_path / "m.npz", "--dataset", "digits")
    assert_refused(result, "m.npz", "40000 class names")


def test_a_model_file_with_huge_images_is_refused(tmp_path):
    from chainrule.errors import DataError
    from chainrule.training.modelfile import _size

    for side in (40_000, 16_777_215):
        with pytest.raises(ValueError, match="below 4097"):
            _size(side)
    assert issubclass(DataError, ValueError)


# -- files that are not regular files -------------------------------------------------------------------
@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    from chainrule import Linear, ReLU, Sequential
    from chainrule.training.classifier import Classifier

    path = tmp_path_factory.mktemp("model") / "model.npz"
    network = Sequential(Linear(64, 8, seed=0), ReLU(), Linear(8, 10, seed=1))
    Classifier.of(network).save(path)
    return path


@pytest.mark.parametrize(
    "command",
    [
        ["evaluate", "{fifo}"],
        ["predict", "{model}", "{fifo}"],
        ["explain", "{fifo}"],
        ["check", "{fifo}", "{fifo}"],
        ["train", "--dataset", "{fifo}", "--out", "{out}"],
    ],
    ids=lambda c: c[0],
)
@pytest.mark.parametrize("special", ["fifo", "/dev/zero"])
def test_fifos_and_devices_are_refused_at_once(tmp_path, model_path, command, special):
    target = tmp_path / ("pipe.npy" if command[0] == "predict" else "pipe.npz")
    if special == "fifo":
        os.mkfifo(target)
    else:
        target = "/dev/zero"
    args = [a.replace("{fifo}", str(target)).replace("{model}", str(model_path)) for a in command]
    args = [a.replace("{out}", str(tmp_path / "run")) for a in args]
    result = subprocess.run([sys.executable, "-m", "chainrule.cli", *args], capture_output=True, text=True, timeout=60)
    assert result.returncode in (1, 2), result.stderr
    assert "a regular file" in result.stderr or "unknown dataset" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


# -- no unbounded work -----------------------------------------------------------------------------------
def test_explain_refuses_unbounded_steps_and_precision(tmp_path):
    from chainrule.explain.problem import MAX_STEPS

    problem = tmp_path / "p.toml"
    problem.write_text(
        '[data]\nX = [[1.0]]\ny = [[1.0]]\n[[layers]]\ntype = "linear"\nW = [[1.0]]\n'
        '[loss]\ntype = "mse"\n[train]\nlr = 0.1\nsteps = 1000000000\n'
    )
    for args, place in (
        ([], "train.steps"),
        (["--steps", "1000000000"], "--steps"),
        (["--precision", "1000000000"], "--precision"),
    ):
        if args:
            problem.write_text(problem.read_text().replace("steps = 1000000000", "steps = 1"))
        result = subprocess.run(
            [sys.executable, "-m", "chainrule.cli", "explain", problem, *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 2 and place in result.stderr, result.stderr
        assert str(MAX_STEPS) in result.stderr or "17" in result.stderr


def test_toml_nested_too_deep_is_one_clear_error(tmp_path):
    problem = tmp_path / "deep.toml"
    problem.write_text("x = " + "[" * 10_000 + "]" * 10_000 + "\n")
    result = subprocess.run(
        [sys.executable, "-m", "chainrule.cli", "explain", problem], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2 and "deep.toml" in result.stderr and "nested" in result.stderr, result.stderr


# -- the run folder: one run at a time, --force only after the inputs are checked -----------------------
def test_force_with_a_bad_dataset_leaves_the_earlier_run(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    for name in ("model.npz", "metrics.json", "checkpoint.npz"):
        (out / name).write_bytes(b"earlier run")
    result = subprocess.run(
        [sys.executable, "-m", "chainrule.cli", "train", "--dataset", tmp_path / "typo.npz", "--out", out, "--force"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1 and "typo.npz" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.npz", "metrics.json", "model.npz"]
    assert all((out / name).read_bytes() == b"earlier run" for name in ("model.npz", "metrics.json"))


def test_a_second_run_into_a_locked_folder_is_refused_and_a_stale_lock_is_taken_over(tmp_path):
    from chainrule.errors import ConfigError
    from chainrule.training.config import TrainConfig
    from chainrule.training.runfolder import LOCK, RunFolder

    first = RunFolder.open(TrainConfig(out=str(tmp_path / "run")))
    try:
        result = subprocess.run(
            [sys.executable, "-m", "chainrule.cli", "train", "--out", tmp_path / "run", "--force"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 1 and f"process {os.getpid()}" in result.stderr, result.stderr
        with pytest.raises(ConfigError, match="another chainrule train"):
            RunFolder.open(TrainConfig(out=str(tmp_path / "run"), force=True))
    finally:
        first.release()
    # a lock file left by a process that was killed (the system released its lock) is taken over
    (tmp_path / "run" / LOCK).write_text("999999999")
    folder = RunFolder.open(TrainConfig(out=str(tmp_path / "run")))
    assert (tmp_path / "run" / LOCK).read_text() == str(os.getpid())
    folder.release()
    assert list((tmp_path / "run").iterdir()) == []


def test_a_temporary_file_of_a_killed_write_does_not_make_the_folder_not_empty(tmp_path):
    from chainrule.training.config import TrainConfig
    from chainrule.training.runfolder import RunFolder

    out = tmp_path / "run"
    out.mkdir()
    (out / ".checkpoint.npz.0a1b2c3d.tmp").write_bytes(b"half")
    folder = RunFolder.open(TrainConfig(out=str(out)))
    folder.release()
    assert list(out.iterdir()) == []


def test_two_threads_cannot_both_hold_a_folder(tmp_path):
    """The lock is the system's: of many tries at once, exactly one gets it."""
    from chainrule.errors import ConfigError
    from chainrule.training.config import TrainConfig
    from chainrule.training.runfolder import RunFolder

    got, barrier = [], threading.Barrier(8)

    def attempt():
        barrier.wait()
        with contextlib.suppress(ConfigError):
            got.append(RunFolder.open(TrainConfig(out=str(tmp_path / "run"), force=True)))

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 1
    got[0].release()
    assert json.dumps([p.name for p in (tmp_path / "run").iterdir()]) == "[]"
