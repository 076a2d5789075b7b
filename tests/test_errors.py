"""Bad input gets one clear message naming what was expected and what came, not a NumPy traceback."""

import numpy as np
import pytest

import chainrule as cr
from chainrule.errors import ChainruleError, ConfigError, ShapeError


def test_shape_error_names_the_layer_its_place_and_both_shapes():
    net = cr.mlp([4, 8, 3], seed=0)
    with pytest.raises(ShapeError) as err:
        net.forward(np.zeros((2, 5)))
    assert str(err.value) == "layer 0: Linear(4, 8): expected input of shape (n, 4), got (2, 5)"
    with pytest.raises(ShapeError, match=r"expected input of shape \(n, 4\), got \(4,\)"):
        net.forward(np.zeros(4))


def test_wrong_upstream_gradient_shape():
    layer = cr.Linear(3, 2)
    layer.forward(np.zeros((5, 3)))
    with pytest.raises(
        ShapeError, match=r"Linear\(3, 2\): expected an upstream gradient of shape \(5, 2\), got \(5, 3\)"
    ):
        layer.backward(np.zeros((5, 3)))


def test_backward_before_forward():
    with pytest.raises(ConfigError, match="backward called before forward"):
        cr.ReLU().backward(np.zeros((2, 2)))
    with pytest.raises(ConfigError, match="backward called before forward"):
        cr.MSELoss().backward()


def test_non_numeric_input():
    with pytest.raises(ShapeError, match="numeric"):
        cr.Linear(2, 2).forward([["a", "b"]])


@pytest.mark.parametrize(
    "make, message",
    [
        (
            lambda: cr.SGD(cr.Linear(2, 2).parameters(), lr=0),
            r"learning rate \(lr\): expected a finite number > 0, got 0",
        ),
        (lambda: cr.Adam(cr.Linear(2, 2).parameters(), lr=-1e-3), "expected a finite number > 0, got -0.001"),
        (lambda: cr.SGD(cr.Linear(2, 2).parameters(), lr=float("nan")), "got nan"),
        (lambda: cr.SGD(cr.Linear(2, 2).parameters(), lr=0.1, momentum=-1), "momentum"),
        (lambda: cr.SGD(cr.Linear(2, 2).parameters(), lr=0.1, nesterov=True), "Nesterov momentum needs momentum > 0"),
        (lambda: cr.Adam(cr.Linear(2, 2).parameters(), betas=(0.9, 1.0)), r"betas must be in \[0, 1\)"),
        (lambda: cr.SGD([], lr=0.1), "empty parameter list"),
        (lambda: cr.SGD([np.zeros(2)], lr=0.1), "expected Parameters"),
        (lambda: cr.Dropout(1.0), r"drop probability and must be in \[0, 1\), got 1.0"),
        (lambda: cr.Dropout(-0.1), r"must be in \[0, 1\)"),
        (lambda: cr.Dropout("half"), "must be a number"),
        (lambda: cr.Linear(0, 3), "in_features must be a positive integer, got 0"),
        (lambda: cr.Linear(2, 3, init="glorot"), "unknown initialisation 'glorot'; expected one of 'he_normal'"),
        (
            lambda: cr.MSELoss("average"),
            "unknown loss scale 'average'; expected one of 'mean', 'sum', 'half_mean', 'half_sum'",
        ),
        (lambda: cr.make_loss("hinge"), "unknown loss 'hinge'"),
        (lambda: cr.mlp([4, 3], "swish"), "unknown activation 'swish'"),
        (lambda: cr.mlp([4]), "at least an input and an output size"),
        (lambda: cr.BatchNorm1d(3, eps=0), "eps"),
        (lambda: cr.LeakyReLU(2), r"alpha must be in \[0, 1\)"),
        (lambda: cr.StepLR(cr.SGD(cr.Linear(2, 2).parameters(), lr=0.1), 0), "step_size must be a positive integer"),
        (lambda: cr.l2_penalty(cr.Linear(2, 2).parameters(), -1), "invalid l2"),
    ],
)
def test_invalid_hyper_parameters(make, message):
    with pytest.raises(ConfigError, match=message):
        make()


@pytest.mark.parametrize(
    "loss, pred, target, message",
    [
        (cr.SoftmaxCrossEntropyLoss(), np.zeros((3, 4)), [0, 1, 4], r"class indices must be integers in \[0, 3\]"),
        (cr.SoftmaxCrossEntropyLoss(), np.zeros((3, 4)), [0.5, 1, 2], r"class indices must be integers"),
        (
            cr.SoftmaxCrossEntropyLoss(),
            np.zeros((3, 4)),
            np.zeros((3, 3)),
            r"expected targets of shape \(3, 4\) or class indices of shape \(3,\), got \(3, 3\)",
        ),
        (cr.CrossEntropyLoss(), np.full((2, 2), 0.5), np.ones((2, 2)), "one-hot or a probability distribution"),
        (cr.CrossEntropyLoss(), np.full((2, 2), 2.0), [0, 1], r"expects probabilities in \[0, 1\]"),
        (cr.BCELoss(), np.full((2, 1), 0.5), [0, 2], r"targets must be in \[0, 1\]"),
        (cr.MSELoss(), np.zeros((2, 3)), np.zeros((3, 2)), r"expected targets of shape \(2, 3\), got \(3, 2\)"),
        (cr.MSELoss(), np.zeros((2, 1)), [np.nan, 1], "NaN or inf"),
        (cr.MSELoss(), np.zeros(3), np.zeros(3), r"expected numeric predictions of shape \(n, outputs\), got \(3,\)"),
    ],
)
def test_targets_that_do_not_fit_the_loss(loss, pred, target, message):
    with pytest.raises(ShapeError, match=message):
        loss.forward(pred, target)


def test_one_value_per_row_for_a_single_output_is_accepted():
    assert cr.MSELoss().forward(np.array([[1.0], [3.0]]), [1.0, 1.0]) == 2.0


def test_batchnorm_needs_two_rows_in_training_mode():
    with pytest.raises(ConfigError, match="at least 2 rows"):
        cr.BatchNorm1d(3).forward(np.zeros((1, 3)))
    assert cr.BatchNorm1d(3).eval().forward(np.zeros((1, 3))).shape == (1, 3)


def test_the_same_layer_object_twice_is_refused():
    layer = cr.Linear(2, 2)
    with pytest.raises(ConfigError, match="layer 2 is the same object as layer 0"):
        cr.Sequential(layer, cr.ReLU(), layer)


def test_errors_are_value_errors_and_chainrule_errors():
    with pytest.raises(ValueError):
        cr.Dropout(2)
    assert issubclass(ShapeError, ChainruleError) and issubclass(ConfigError, ValueError)
