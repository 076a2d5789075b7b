"""Training lowers the loss; initialisation and dtypes behave as documented; the command line works."""

import subprocess
import sys

import numpy as np
import pytest

import chainrule as cr
from chainrule.cli import main
from chainrule.init import init_weight
from chainrule.training.loop import fit


def spirals(per_class, classes=3, seed=0):
    """``classes`` interleaved noisy spirals in 2-D: a small problem that a linear model cannot solve."""
    rng = np.random.default_rng(seed)
    radius = np.tile(np.linspace(0.0, 1.0, per_class), classes)
    label = np.repeat(np.arange(classes), per_class)
    angle = label * (2 * np.pi / classes) + radius * 4 + rng.normal(0, 0.2, radius.size)
    return np.stack([radius * np.sin(angle), radius * np.cos(angle)], axis=1).astype(np.float32), label


def blobs(n=300, classes=3, features=5, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 3, (classes, features))
    labels = rng.integers(0, classes, n)
    return (centers[labels] + rng.normal(size=(n, features))).astype(np.float32), labels


def test_softmax_regression_learns_blobs():
    X, y = blobs()
    model = cr.softmax_regression(5, 3)
    history = fit(
        model, cr.SoftmaxCrossEntropyLoss(), cr.SGD(model.parameters(), lr=0.1), X, y, epochs=10, batch_size=32, l2=1e-3
    )
    assert history.losses[-1] < 0.5 * history.losses[0]
    assert np.mean(model.predict(X) == y) > 0.95


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_mlp_learns_spirals_that_a_linear_model_cannot(optimizer):
    X, y = spirals(100, seed=1)
    model = cr.mlp([2, 32, 32, 3], "relu", batchnorm=optimizer == "adam", seed=1)
    opt = (
        cr.SGD(model.parameters(), lr=0.1, momentum=0.9) if optimizer == "sgd" else cr.Adam(model.parameters(), lr=0.01)
    )
    history = fit(model, cr.SoftmaxCrossEntropyLoss(), opt, X, y, epochs=40, batch_size=32, seed=1)
    assert history.losses[-1] < 0.3 * history.losses[0]
    assert np.mean(model.predict(X) == y) > 0.9
    linear = cr.softmax_regression(2, 3)
    fit(linear, cr.SoftmaxCrossEntropyLoss(), cr.SGD(linear.parameters(), lr=0.1), X, y, epochs=40, seed=1)
    assert np.mean(linear.predict(X) == y) < 0.7


def test_float32_end_to_end():
    X, y = blobs(64)
    model = cr.mlp([5, 8, 3], batchnorm=True, dropout=0.1, seed=0)
    opt = cr.Adam(model.parameters())
    loss = cr.SoftmaxCrossEntropyLoss()
    out = model.forward(X.astype(np.float64))  # inputs are cast to the model's dtype
    assert out.dtype == np.float32
    loss.forward(out, y)
    grad = loss.backward()
    assert grad.dtype == np.float32
    assert model.backward(grad).dtype == np.float32
    opt.step()
    for p in model.parameters():
        assert p.data.dtype == p.grad.dtype == np.float32
    assert all(b.dtype == np.float32 for m in model.modules() for b in m.buffers.values())
    model64 = cr.mlp([5, 8, 3], seed=0, dtype=np.float64)
    assert model64.forward(X).dtype == np.float64


def test_same_seed_same_training():
    X, y = blobs(100)
    results = []
    for _ in range(2):
        model = cr.mlp([5, 16, 3], dropout=0.2, seed=42)
        fit(model, cr.SoftmaxCrossEntropyLoss(), cr.Adam(model.parameters()), X, y, epochs=3, seed=7)
        results.append([p.data.copy() for p in model.parameters()])
    for a, b in zip(*results, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "scheme, variance",
    [
        ("he_normal", lambda i, o: 2 / i),
        ("he_uniform", lambda i, o: 2 / i),
        ("xavier_normal", lambda i, o: 2 / (i + o)),
        ("xavier_uniform", lambda i, o: 2 / (i + o)),
    ],
)
def test_initialisation_variance(scheme, variance):
    fan_in, fan_out = 400, 300
    W = init_weight(scheme, fan_in, fan_out, rng=0)
    assert W.dtype == np.float32 and W.shape == (fan_in, fan_out)
    assert W.var() == pytest.approx(variance(fan_in, fan_out), rel=0.02)
    assert abs(W.mean()) < 0.01
    if scheme.endswith("uniform"):
        assert np.abs(W).max() <= np.sqrt(3 * variance(fan_in, fan_out))
    np.testing.assert_array_equal(W, init_weight(scheme, fan_in, fan_out, rng=0))


def test_dropout_drops_with_probability_p_and_keeps_the_mean():
    x = np.ones((200, 500))
    drop = cr.Dropout(0.3, seed=0)
    out = drop.forward(x)
    assert np.mean(out == 0) == pytest.approx(0.3, abs=0.01)
    assert out.mean() == pytest.approx(1.0, abs=0.02)
    np.testing.assert_allclose(np.unique(out), [0.0, 1 / 0.7])
    np.testing.assert_array_equal(drop.eval().forward(x), x)


def test_batchnorm_uses_running_statistics_in_eval_mode():
    rng = np.random.default_rng(0)
    bn = cr.BatchNorm1d(3, momentum=1.0, dtype=np.float64)
    x = rng.normal(2, 3, (50, 3))
    train_out = bn.forward(x)
    np.testing.assert_allclose(train_out.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(bn.buffers["running_mean"], x.mean(axis=0))
    np.testing.assert_allclose(bn.buffers["running_var"], x.var(axis=0, ddof=1))
    eval_out = bn.eval().forward(x)
    np.testing.assert_allclose(eval_out, (x - x.mean(0)) / np.sqrt(x.var(0, ddof=1) + bn.eps))


# -- command line ----------------------------------------------------------------------------------
def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "chainrule.cli", *args], capture_output=True, text=True)


def test_cli_help_and_version():
    result = run_cli("--help")
    assert result.returncode == 0 and "gradcheck" in result.stdout
    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"chainrule {cr.__version__}"


def test_cli_gradcheck_passes_and_lists(capsys):
    assert main(["gradcheck", "linear", "batchnorm", "softmax_cross_entropy"]) == 0
    out = capsys.readouterr().out
    assert "3 passed, 0 failed" in out and "rel. error" in out
    assert main(["gradcheck", "--list"]) == 0
    assert "dropout" in capsys.readouterr().out.split()


def test_cli_gradcheck_fails_on_an_impossible_tolerance(capsys):
    assert main(["gradcheck", "tanh", "--tolerance", "0", "--atol", "0"]) == 1
    assert "0 passed, 1 failed" in capsys.readouterr().out


def test_cli_errors_are_one_line_and_non_zero():
    result = run_cli("gradcheck", "nonsense")
    assert result.returncode == 2
    assert result.stderr.strip().startswith("chainrule: error: unknown gradcheck name(s) nonsense")
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    result = run_cli("gradcheck", "--batch", "0")
    assert result.returncode == 2 and "expected a positive integer, got '0'" in result.stderr
    assert "Traceback" not in result.stderr
    result = run_cli("frobnicate")
    assert result.returncode == 2 and "invalid choice" in result.stderr


def test_the_card_repeats_the_run_with_a_command_a_shell_reads_back():
    import shlex

    from chainrule.training.card import command
    from chainrule.training.config import TrainConfig

    config = TrainConfig(dataset='w:eird "dir"/a: b.npz', hidden=(8,), epochs=1, batchnorm=True, out="x", quiet=True)
    assert shlex.split(command(config)) == [
        *("chainrule", "train", "--dataset", 'w:eird "dir"/a: b.npz'),
        *("--hidden", "8", "--batchnorm", "--epochs", "1"),
    ]
    assert command(TrainConfig(hidden=())) == "chainrule train --hidden 0"


def test_only_a_card_chainrule_wrote_counts_as_one(tmp_path):
    from chainrule.training.card import MARK, is_ours

    card = f"---\nlibrary_name: chainrule\ntags:\n- x\n---\n\n# run: a classifier\n\n{MARK} (chainrule 0) -->\n"
    mentions = f"# My project\n\nmy cards start with {MARK} ...\n\nIMPORTANT NOTES\n"
    other_library = card.replace("library_name: chainrule", "library_name: transformers")
    for text, ours in ((card, True), (mentions, False), (other_library, False), ("", False)):
        (tmp_path / "README.md").write_text(text)
        assert is_ours(tmp_path / "README.md") is ours, text


def test_force_says_which_file_of_the_earlier_run_it_cannot_remove(tmp_path):
    from chainrule.training.config import TrainConfig
    from chainrule.training.runfolder import RunFolder

    (tmp_path / "metrics.json" / "x").mkdir(parents=True)  # a folder where the run's file would be
    folder = RunFolder.open(TrainConfig(out=str(tmp_path), force=True))
    with pytest.raises(cr.ConfigError, match=r"--force: cannot remove .*metrics\.json of the earlier run"):
        folder.clear_earlier_run()
    folder.release()
