"""Faults and interruptions: checkpoints and bit-identical resume (after SIGKILL, SIGINT, SIGTERM), a loss
that becomes NaN, corrupted checkpoints, and fuzzed files that may raise only chainrule's own errors."""

import io
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import chainrule as cr
from chainrule.errors import ChainruleError
from chainrule.explain import load_problem
from chainrule.explain.check import load_answers
from chainrule.training.classifier import Classifier
from chainrule.training.data import read_idx, write_idx
from chainrule.training.modelfile import load_model
from chainrule.training.runfolder import LOCK

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def chainrule(*args, **kwargs):
    return [sys.executable, "-m", "chainrule.cli", *map(str, args)]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Enough data that an epoch lasts a few tenths of a second, so a signal lands inside one."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30000, 200)).astype(np.float32)
    y = (X[:, :10].sum(1) > 0).astype(int) + 2 * (X[:, 10:20].sum(1) > 0)
    path = tmp_path_factory.mktemp("data") / "big.npz"
    np.savez(path, X_train=X, y_train=y, X_test=X[:2000], y_test=y[:2000])
    return path


def options(dataset, out):
    return [
        "train",
        "--dataset",
        dataset,
        "--epochs",
        "5",
        "--dropout",
        "0.2",
        "--batchnorm",
        "--optimizer",
        "momentum",
        "--lr",
        "0.05",
        "--early-stopping",
        "3",
        "--no-plots",
        "--quiet",
        "--out",
        out,
    ]


@pytest.fixture(scope="module")
def uninterrupted(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "whole"
    subprocess.run(chainrule(*options(dataset, out)), check=True, capture_output=True)
    return out


def interrupt(dataset, out, how):
    """Start a run, wait for its first checkpoint, then stop it with ``how`` in the middle of an epoch."""
    process = subprocess.Popen(
        chainrule(*options(dataset, out)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.time() + 60
    while not (out / "checkpoint.npz").exists() and time.time() < deadline:
        time.sleep(0.01)
    time.sleep(0.15)
    process.send_signal(how)
    stdout, stderr = process.communicate(timeout=60)
    return process.returncode, stdout, stderr


def same_weights(a, b):
    with np.load(a / "model.npz") as x, np.load(b / "model.npz") as y:
        assert x.files == y.files
        for key in x.files:
            if key != "meta":
                np.testing.assert_array_equal(x[key], y[key], err_msg=key)
    history = [json.loads((d / "metrics.json").read_text())["epochs"] for d in (a, b)]
    assert [(e["train_loss"], e["val_loss"]) for e in history[0]] == [
        (e["train_loss"], e["val_loss"]) for e in history[1]
    ]


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM], ids=["SIGKILL", "SIGINT", "SIGTERM"])
@pytest.mark.slow
def test_interrupted_run_resumes_to_bit_identical_weights(dataset, uninterrupted, tmp_path, how):
    out = tmp_path / "run"
    code, _stdout, stderr = interrupt(dataset, out, how)
    if how == signal.SIGKILL:
        assert code == -signal.SIGKILL
    else:
        assert code == 130, stderr
        line = stderr.strip().splitlines()[-1]
        assert line.startswith("chainrule: error: interrupted") and f"chainrule train --resume {out}" in line
        assert "Traceback" not in stderr
    metrics = json.loads((out / "metrics.json").read_text())  # never truncated: written atomically
    assert metrics["status"] == "running" and len(metrics["epochs"]) >= 1
    # no temporary file left (a killed run leaves its lock file, which the system has unlocked)
    assert not any(p.name.startswith(".") and p.name != LOCK for p in out.iterdir())
    result = subprocess.run(chainrule("train", "--resume", out), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    same_weights(uninterrupted, out)
    assert not any(p.name.startswith(".") for p in out.iterdir())


@pytest.mark.slow
def test_a_finished_run_can_be_resumed(tmp_path):
    """Its checkpoint holds the cosine schedule's last learning rate, 0: resuming (after a crash between
    the last checkpoint and model.npz, say) finishes the run instead of refusing the rate."""
    from chainrule.training.run import TrainConfig, config_from_checkpoint, train

    train(TrainConfig(hidden=(16,), epochs=2, optimizer="rmsprop", out=str(tmp_path / "run"), quiet=True, plots=False))
    before = (tmp_path / "run" / "model.npz").read_bytes()
    (tmp_path / "run" / "model.npz").unlink()
    result = subprocess.run(
        chainrule("train", "--resume", tmp_path / "run", "--batch-size", "5"), capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "ignoring --batch-size" in result.stderr  # a resumed run keeps its own configuration
    assert config_from_checkpoint(tmp_path / "run").epochs == 2
    with np.load(io.BytesIO(before)) as a, np.load(tmp_path / "run" / "model.npz") as b:
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.mark.slow
def test_resume_with_more_epochs_extends_a_finished_run(tmp_path):
    """A finished 2-epoch cosine run, resumed with --epochs 4: two more epochs, at the rates of a cosine
    planned over 4 (epoch 3 at half the initial rate), not the finished run's rate of 0."""
    from chainrule.training.run import TrainConfig, config_from_checkpoint, train

    config = TrainConfig(hidden=(16,), epochs=2, optimizer="sgd", lr=0.1, out=str(tmp_path / "run"), plots=False)
    train(TrainConfig(**{**config.to_dict(), "hidden": (16,), "quiet": True}))
    weights = np.load(tmp_path / "run" / "model.npz")["model.0.W"]
    result = subprocess.run(
        chainrule("train", "--resume", tmp_path / "run", "--epochs", "4"), capture_output=True, text=True
    )
    assert result.returncode == 0 and "extending the run from 2 to 4 epochs" in result.stderr, result.stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2, 3, 4] and config_from_checkpoint(
        tmp_path / "run"
    ).epochs == 4
    assert not np.array_equal(np.load(tmp_path / "run" / "model.npz")["model.0.W"], weights)  # it trained on
    fewer = subprocess.run(
        chainrule("train", "--resume", tmp_path / "run", "--epochs", "3"), capture_output=True, text=True
    )
    assert fewer.returncode == 2 and "has 4 epochs planned" in fewer.stderr


@pytest.mark.slow
def test_corrupted_checkpoint_is_refused(dataset, uninterrupted, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    for name in ("checkpoint.npz", "metrics.json"):
        (out / name).write_bytes((uninterrupted / name).read_bytes())
    data = (out / "checkpoint.npz").read_bytes()
    (out / "checkpoint.npz").write_bytes(data[: len(data) // 3])
    result = subprocess.run(chainrule("train", "--resume", out), capture_output=True, text=True)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "checkpoint.npz: not a readable chainrule checkpoint" in result.stderr.strip()
    result = subprocess.run(chainrule("train", "--resume", tmp_path / "nothing"), capture_output=True, text=True)
    assert result.returncode == 1 and "no checkpoint.npz there" in result.stderr


@pytest.mark.slow
def test_checkpoint_of_another_model_is_refused(dataset, uninterrupted, tmp_path):
    import chainrule.training.checkpoint as checkpoint

    with np.load(uninterrupted / "checkpoint.npz") as archive:
        arrays = {k: archive[k] for k in archive.files}
    arrays["model.0.W"] = np.zeros((3, 3), np.float32)
    out = tmp_path / "run"
    out.mkdir()
    np.savez(out / "checkpoint.npz", **arrays)
    result = subprocess.run(chainrule("train", "--resume", out), capture_output=True, text=True)
    assert result.returncode == 1 and "0.W has shape (3, 3)" in result.stderr
    assert checkpoint.NAME == "checkpoint.npz"


@pytest.mark.slow
def test_loss_that_becomes_nan_stops_the_run_with_epoch_and_batch(tmp_path):
    result = subprocess.run(
        chainrule("train", "--optimizer", "sgd", "--lr", "1e30", "--epochs", "3", "--out", tmp_path / "run", "--quiet"),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    line = result.stderr.strip()
    assert line.startswith("chainrule: error: epoch 1, batch ") and "learning rate is probably too high" in line
    assert not (tmp_path / "run").exists()  # nothing of value was made: no partial output


@pytest.mark.slow
def test_a_failure_after_a_checkpoint_keeps_it(tmp_path, monkeypatch):
    """A run that breaks in epoch 3 keeps the checkpoint of epoch 2 (and says where it is)."""
    import chainrule.training.loop as train_module
    from chainrule.training.run import TrainConfig, train

    calls = {"n": 0}
    original = train_module.run_epoch

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise train_module.TrainingError("batch 7: the loss became nan; simulated")
        return original(*args, **kwargs)

    monkeypatch.setattr(train_module, "run_epoch", failing)
    with pytest.raises(ChainruleError, match="epoch 3, batch 7"):
        train(TrainConfig(epochs=5, out=str(tmp_path / "run"), quiet=True, plots=False))
    assert (tmp_path / "run" / "checkpoint.npz").exists()
    assert len(json.loads((tmp_path / "run" / "metrics.json").read_text())["epochs"]) == 2


def test_a_full_disk_mid_run_keeps_the_checkpoint_and_says_how_to_resume(tmp_path, monkeypatch):
    """The disk fills while epoch 3's checkpoint is written: epoch 2's stays whole, and the message says so."""
    import chainrule.training.checkpoint as checkpoint_module
    from chainrule.errors import WriteError
    from chainrule.training.run import TrainConfig, train

    calls = {"n": 0}
    original = checkpoint_module.archive.save

    def filling(path, document):
        calls["n"] += 1
        if calls["n"] == 3:
            raise WriteError(f"cannot write {path}: No space left on device")
        return original(path, document)

    monkeypatch.setattr(checkpoint_module.archive, "save", filling)
    out = tmp_path / "run"
    with pytest.raises(WriteError, match=rf"No space left on device; the run is saved .* --resume {out}"):
        train(TrainConfig(epochs=5, hidden=(16,), out=str(out), quiet=True, plots=False))
    monkeypatch.undo()
    assert len(json.loads((out / "metrics.json").read_text())["epochs"]) == 2
    assert subprocess.run(chainrule("train", "--resume", out), capture_output=True).returncode == 0


def test_unwritable_output_is_reported_before_training(tmp_path):
    (tmp_path / "a-file").write_text("")
    result = subprocess.run(chainrule("train", "--out", tmp_path / "a-file" / "run"), capture_output=True, text=True)
    assert result.returncode == 1 and "cannot write to the output folder" in result.stderr
    assert "Traceback" not in result.stderr and "epoch" not in result.stdout  # before any training


def test_existing_output_is_not_overwritten_without_force(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "model.npz").write_bytes(b"precious")
    result = subprocess.run(chainrule("train", "--out", out), capture_output=True, text=True)
    assert result.returncode == 1 and "--force" in result.stderr
    assert (out / "model.npz").read_bytes() == b"precious"


@pytest.mark.slow
def test_force_removes_the_files_of_the_earlier_run_first(uninterrupted, tmp_path):
    """A new run over an old one with --force, interrupted at once, must not offer to resume the old one."""
    from chainrule.training.run import RunInterrupted, TrainConfig
    from chainrule.training.runfolder import RunFolder

    out = tmp_path / "run"
    out.mkdir()
    for name in ("checkpoint.npz", "metrics.json", "model.npz"):
        (out / name).write_bytes((uninterrupted / name).read_bytes())
    (out / "notes.txt").write_text("mine")
    folder = RunFolder.open(TrainConfig(out=str(out), force=True))
    folder.clear_earlier_run()
    folder.release()
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["notes.txt"]  # only a run's own
    assert issubclass(RunInterrupted, ChainruleError)


# -- fuzzing: random and mutated bytes never escape as anything but chainrule's own errors ---------------
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def mutations(seed_bytes: bytes):
    """Random bytes, and the given bytes truncated, extended or with some bytes changed."""
    return st.one_of(
        st.binary(max_size=300),
        st.integers(0, len(seed_bytes)).map(lambda n: seed_bytes[:n]),
        st.binary(min_size=1, max_size=50).map(lambda extra: seed_bytes + extra),
        st.lists(
            st.tuples(st.integers(0, max(0, len(seed_bytes) - 1)), st.integers(0, 255)), min_size=1, max_size=8
        ).map(lambda changes: _mutate(seed_bytes, changes)),
    )


def _mutate(data: bytes, changes) -> bytes:
    out = bytearray(data)
    for i, value in changes:
        if out:
            out[i % len(out)] = value
    return bytes(out)


def only_our_errors(read, path, content):
    path.write_bytes(content)
    try:
        read(path)
    except ChainruleError as err:
        assert str(err), "an error without a message"


def _idx_seed(tmp_path_factory):
    path = tmp_path_factory.mktemp("seed") / "x.idx"
    write_idx(path, np.arange(24).reshape(2, 3, 4))
    return path.read_bytes()


@FUZZ
@given(data=st.data())
def test_fuzz_idx_reader(tmp_path, data):
    import gzip

    raw = bytes([0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4]) + bytes(range(24))
    content = data.draw(st.one_of(mutations(raw), mutations(gzip.compress(raw))))
    only_our_errors(read_idx, tmp_path / "fuzz.idx", content)


@FUZZ
@given(data=st.data())
def test_fuzz_problem_loader(tmp_path, data):
    seed = (EXAMPLES / "relu_mse.toml").read_bytes()
    only_our_errors(load_problem, tmp_path / "fuzz.toml", data.draw(mutations(seed)))


@FUZZ
@given(data=st.data())
def test_fuzz_answers_loader(tmp_path, data):
    seed = (EXAMPLES / "relu_mse_answers_with_slips.toml").read_bytes()
    only_our_errors(lambda p: load_answers(str(p)), tmp_path / "fuzz.toml", data.draw(mutations(seed)))


@pytest.fixture(scope="module")
def model_bytes(tmp_path_factory):
    out = tmp_path_factory.mktemp("model") / "run"
    subprocess.run(
        chainrule("train", "--hidden", "8", "--epochs", "1", "--no-plots", "--quiet", "--out", out), check=True
    )
    return (out / "model.npz").read_bytes()


@FUZZ
@given(data=st.data())
@pytest.mark.slow
def test_fuzz_model_loader(tmp_path, model_bytes, data):
    only_our_errors(load_model, tmp_path / "fuzz.npz", data.draw(mutations(model_bytes)))


def test_full_disk_is_reported_before_training(tmp_path, monkeypatch):
    import shutil as shutil_module

    from chainrule.errors import ConfigError
    from chainrule.training.run import TrainConfig, train

    monkeypatch.setattr(
        shutil_module, "disk_usage", lambda path: shutil_module._ntuple_diskusage(10**9, 10**9 - 1000, 1000)
    )
    with pytest.raises(ConfigError, match=r"has 0\.0 MB free; this run needs about"):
        train(TrainConfig(epochs=1, out=str(tmp_path / "run"), quiet=True))
    assert not (tmp_path / "run").exists()


def test_internal_errors_are_one_line_and_debug_shows_the_traceback(tmp_path):
    code = (
        "import sys, chainrule.cli as c, chainrule.training.data as d\n"
        "def broken(*a, **k):\n    raise RuntimeError('boom')\n"
        "d.describe = broken\nsys.exit(c.main(sys.argv[1:]))\n"
    )
    result = subprocess.run([sys.executable, "-c", code, "datasets"], capture_output=True, text=True)
    assert result.returncode == 3 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        "chainrule: internal error: RuntimeError: boom (this is a bug in chainrule; "
        "run again with --debug for the traceback and report it)"
    )
    result = subprocess.run([sys.executable, "-c", code, "--debug", "datasets"], capture_output=True, text=True)
    assert result.returncode != 0 and "Traceback" in result.stderr and "RuntimeError: boom" in result.stderr


@pytest.fixture(scope="module")
def exported(tmp_path_factory, torch, safetensors):
    """A small model as a safetensors model file and as --format torch weights (bytes of each)."""
    folder = tmp_path_factory.mktemp("exported")
    model = Classifier.of(cr.mlp([4, 6, 3], "gelu", batchnorm=True, seed=0))
    cr.export(model, folder / "model.safetensors")
    cr.export(model, folder / "model_torch.py")
    return (folder / "model.safetensors").read_bytes(), (folder / "model_torch.safetensors").read_bytes()


@FUZZ
@given(data=st.data())
def test_fuzz_safetensors_model_loader(tmp_path, exported, data):
    only_our_errors(load_model, tmp_path / "fuzz.safetensors", data.draw(mutations(exported[0])))


@FUZZ
@given(data=st.data())
def test_fuzz_torch_export_reader(tmp_path, exported, data):
    from chainrule.interchange.pytorch import from_torch, read_torch

    only_our_errors(
        lambda p: from_torch(read_torch(p)), tmp_path / "fuzz.safetensors", data.draw(mutations(exported[1]))
    )


def _places(value, path=()):
    """Every place in a JSON value, as a path of keys and indices."""
    yield path
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _places(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _places(v, (*path, i))


def _replaced(value, path, new):
    if not path:
        return new
    head, rest = path[0], path[1:]
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[head] = _replaced(value[head], rest, new)
    return copy


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)


def described_mutations(content: bytes, key: str):
    """The safetensors file ``content`` with one place of the JSON in its metadata entry ``key`` replaced
    by any JSON value: the description says what it likes, the arrays stay."""
    from safetensors.numpy import load, save

    from chainrule.archive import read_safetensors

    path = Path(__import__("tempfile").mkdtemp()) / "seed.safetensors"
    path.write_bytes(content)
    arrays, metadata = read_safetensors(path, "seed")
    document = json.loads(metadata[key])
    places = list(_places(document))
    assert load(content).keys() == arrays.keys()
    return st.tuples(st.sampled_from(places), JSON_VALUES).map(
        lambda change: save(arrays, {**metadata, key: json.dumps(_replaced(document, *change))})
    )


@FUZZ
@given(data=st.data())
def test_fuzz_described_safetensors_model(tmp_path, exported, data):
    only_our_errors(load_model, tmp_path / "fuzz.safetensors", data.draw(described_mutations(exported[0], "meta")))


@FUZZ
@given(data=st.data())
def test_fuzz_described_torch_export(tmp_path, exported, data):
    from chainrule.interchange.pytorch import from_torch, read_torch

    content = data.draw(described_mutations(exported[1], "chainrule"))
    only_our_errors(lambda p: from_torch(read_torch(p)), tmp_path / "fuzz.safetensors", content)
