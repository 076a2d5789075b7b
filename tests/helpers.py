"""One-line checks used across the tests (float64 throughout)."""

import numpy as np

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
