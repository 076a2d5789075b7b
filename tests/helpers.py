"""One-line checks used across the tests (float64 throughout)."""

import os
import re
import shutil
import subprocess

import numpy as np
import pytest

from chainrule.gradcheck import gradcheck


def assert_close(ours, reference, tol=1e-10, what="value", floor=1e-4):
    """Relative error ``max|a − b| / max(floor, max(|a| + |b|))`` at most ``tol``; on failure both arrays
    are printed side by side. The floor keeps a gradient that is zero in exact arithmetic (β of a
    BatchNorm followed by another) from failing on float64 rounding noise of 1e-16."""
    ours = np.array(ours, dtype=np.float64)  # null (None) reads as NaN
    reference = np.array(reference, dtype=np.float64)
    assert ours.shape == reference.shape, f"{what}: shape {ours.shape}, reference {reference.shape}"
    finite = np.isfinite(reference)
    # a run that diverges does so in both: non-finite in the same places (JSON writes them as null,
    # read here as NaN), the finite rest compared
    np.testing.assert_array_equal(np.isfinite(ours), finite, err_msg=f"{what}: non-finite in other places")
    ours, reference = ours[finite], reference[finite]
    scale = max(floor, float(np.max(np.abs(ours) + np.abs(reference), initial=0.0)))
    error = float(np.max(np.abs(ours - reference), initial=0.0)) / scale
    assert error <= tol, f"{what}: relative error {error:.3e} > {tol:g}\nours:\n{ours}\nreference:\n{reference}"


def check_gradients(subject, x, target=None, *, loss=None, seed=0, tolerance=1e-7):
    """Finite-difference check of every gradient of ``subject``; fails with the whole report."""
    report = gradcheck(subject, x, target, loss=loss, seed=seed, tolerance=tolerance)
    assert report.passed, str(report)
    return report


def problem_with(layer=None, loss="softmax_cross_entropy", optimizer="rmsprop"):
    """A problem file (as a dict) with a given layer kind between two linear layers (3 → 4 → 3), a loss
    (with the activation it expects appended) and an optimizer: every kind can be put through explain."""
    rng = np.random.default_rng(0)
    layers = [{"type": "linear", "W": rng.normal(size=(3, 4)).round(2).tolist(), "b": [0.1, 0.0, -0.1, 0.2]}]
    if layer is not None:
        middle = {"type": layer}
        if layer == "linear":
            middle["W"] = rng.normal(size=(4, 4)).round(2).tolist()
        if layer in ("batchnorm", "layernorm"):
            middle.update(gamma=[1.5, 0.5, 1.0, 2.0], beta=[0.1, -0.2, 0.0, 0.3], eps=1e-3)
        if layer == "leaky_relu":
            middle["alpha"] = 0.2
        layers.append(middle)
    outputs = 1 if loss.startswith("bce") else 3
    layers.append({"type": "linear", "W": (0.5 * rng.normal(size=(4, outputs))).round(2).tolist()})
    after = {"bce": "sigmoid", "cross_entropy": "softmax"}.get(loss)
    if after:
        layers.append({"type": after})
    y = {
        "mse": rng.normal(size=(3, 3)).round(2).tolist(),
        "bce": [[0], [1], [1]],
        "bce_with_logits": [[1], [0], [1]],
    }.get(loss, [0, 2, 1])
    train = {"optimizer": optimizer, "lr": 0.05, "steps": 2}
    return {
        "title": f"{layer or 'no extra layer'}, {loss}, {optimizer}",
        "data": {"X": [[1.0, 2.0, -1.0], [0.5, -1.0, 2.0], [-1.5, 0.5, 1.0]], "y": y},
        "layers": layers,
        "loss": {"type": loss, "l2": 0.01},
        "train": train,
    }


def every_kind_problems():
    """One problem per registered layer kind a problem file can hold, per loss, per optimizer name."""
    import chainrule as cr
    from chainrule.explain.problem import layer_kinds

    return (
        [problem_with(layer=kind) for kind in layer_kinds()]
        + [problem_with(loss=kind) for kind in cr.LOSSES.names()]
        + [problem_with(optimizer=name) for name in cr.OPTIMIZERS.names()]
    )


def compile_latex(documents: dict, folder) -> None:
    """Compile each LaTeX document (name → text) in ``folder`` with the engine its first line names
    (``% !TEX program = xelatex``), else pdflatex; fails with the log's end, or on a character the fonts
    lack. Skips without the engine, unless CHAINRULE_REQUIRE_LATEX=1 (as in CI), where that is a failure."""
    for name, text in documents.items():
        magic = re.match(r"% !TEX program = (\w+)", text)
        program = magic.group(1) if magic else "pdflatex"
        engine = shutil.which(program)
        if engine is None:
            if os.environ.get("CHAINRULE_REQUIRE_LATEX") == "1":
                pytest.fail(f"CHAINRULE_REQUIRE_LATEX=1 but {program} is not installed")
            pytest.skip(f"no {program} (Debian: see the TeX packages that .ci/run installs)")
        (folder / f"{name}.tex").write_text(text)
        command = [engine, "-interaction=nonstopmode", "-halt-on-error", f"{name}.tex"]
        result = subprocess.run(command, cwd=folder, capture_output=True, text=True)
        assert result.returncode == 0, f"{name}:\n{result.stdout[-3000:]}"
        log = (folder / f"{name}.log").read_text(errors="replace")
        missing = re.findall(r"Missing character: There is no .*", log)
        assert not missing, f"{name}: {missing[:5]}"


def json_at(data, path):
    """The number at ``path`` (``layers[0].grads.W[1][0]``) of explain's JSON, found by walking the JSON (not
    by the code under test)."""
    node = data
    for name, indices in re.findall(r"(\w+)((?:\[\d+\])*)", path):
        node = node[name]
        for k in re.findall(r"\d+", indices):
            node = node[int(k)]
    return node
