"""The problems and answer sheets on which ``chainrule check``'s diagnosis is measured: six problems
(one per kind the issue names, and one for the slips of LeakyReLU, two outputs and Nesterov), and every
slip the hand-working :class:`~student.Student` can make at every place, written at 3 and 4 decimals,
carried on rounded (by hand) or in full (a calculator)."""

from __future__ import annotations

from student import KNOWN, Problem, Student

PROBLEMS = {
    "relu_mse": Problem(
        X=[[1, 2], [-1, 2]],
        y=[[2], [1]],
        loss="mse",
        scale="half_mean",
        lr=0.5,
        layers=[{"type": "linear", "W": [[1, -1], [0.5, 0]]}, {"type": "relu"}, {"type": "linear", "W": [[0.5], [1]]}],
    ),
    "sigmoid_biases": Problem(
        X=[[1, -1], [0.5, 2], [-1, 0]],
        y=[[1], [0], [1]],
        loss="bce",
        lr=0.5,
        layers=[
            {"type": "linear", "W": [[0.5, -1], [1, 0.5]], "b": [0.1, -0.2]},
            {"type": "sigmoid"},
            {"type": "linear", "W": [[1], [-0.5]], "b": [0.2]},
            {"type": "sigmoid"},
        ],
    ),
    "softmax_ce_l2": Problem(
        X=[[1, 0, 2], [0, 1, -1]],
        y=[0, 2],
        loss="cross_entropy",
        l2=0.1,
        lr=0.5,
        layers=[
            {"type": "linear", "W": [[0.5, -1, 0], [1, 0.5, -0.5], [0, 1, 0.5]], "b": [0.1, 0, -0.1]},
            {"type": "relu"},
            {"type": "linear", "W": [[1, -0.5, 0.5], [0.5, 1, -1], [-0.5, 0.5, 1]]},
            {"type": "softmax"},
        ],
    ),
    "batchnorm_tanh_adam": Problem(
        X=[[1, 2], [3, -1], [0, 0.5]],
        y=[[1], [0], [2]],
        loss="mse",
        optimizer="adam",
        lr=0.1,
        layers=[
            {"type": "linear", "W": [[0.5, -1], [1, 0.25]]},
            {"type": "batchnorm", "gamma": [1.5, 0.5], "beta": [0.1, -0.2]},
            {"type": "tanh"},
            {"type": "linear", "W": [[1], [-0.5]], "b": [0.1]},
        ],
    ),
    "gelu_layernorm": Problem(
        X=[[1, 2, 0], [0.5, -1, 2]],
        y=[0, 2],
        loss="softmax_cross_entropy",
        optimizer="momentum",
        lr=0.1,
        settings={"momentum": 0.9},
        layers=[
            {"type": "linear", "W": [[0.5, -1, 0.25], [1, 0.5, -0.5], [0, 1, 1]], "b": [0.1, 0, -0.1]},
            {"type": "layernorm", "gamma": [1.5, 0.5, 1], "beta": [0, 0.2, -0.1]},
            {"type": "gelu"},
            {"type": "linear", "W": [[1, -1, 0.5], [0.5, 1, -1], [-0.5, 0.5, 1]]},
        ],
    ),
    "leaky_nesterov": Problem(
        X=[[1, -2], [-1, 0.5], [2, 1]],
        y=[[1, 0], [0, 2], [1, 1]],
        loss="mse",
        scale="half_mean",
        optimizer="nesterov",
        lr=0.1,
        settings={"momentum": 0.9},
        layers=[
            {"type": "linear", "W": [[1, -1, 0.5], [0.5, 1, -1]], "b": [0, 0.5, -0.5]},
            {"type": "leaky_relu", "alpha": 0.1},
            {"type": "linear", "W": [[0.5, 1], [1, -1], [-1, 0.5]]},
        ],
    ),
}


def places(problem: Problem) -> list:
    layers = range(len(problem.layers))
    params = [
        (i, name) for i, layer in enumerate(problem.layers) for name in ("W", "b", "gamma", "beta") if name in layer
    ]
    return [None, *layers, *params]


def sheets(problem: Problem, decimals=(3, 4), styles=(True, False)):
    """``(slip, place, decimals, by_hand, student)`` for every slip that changes a written number."""
    for d in decimals:
        for by_hand in styles:
            right = Student(problem, decimals=d, by_hand=by_hand).solve()
            for slip in KNOWN:
                seen = []
                for place in places(problem):
                    student = Student(problem, slip, place, d, by_hand)
                    try:
                        sheet = student.solve()
                    except (ValueError, FloatingPointError):
                        continue
                    if sheet == right or not student.slipped or sheet in seen or not _finite(sheet):
                        continue  # no effect at this place, or the same sheet as at another place
                    seen.append(sheet)
                    yield slip, place, d, by_hand, student


def _finite(sheet) -> bool:
    """Whether every number can be written (a log of a negative "probability" cannot)."""
    import numpy as np

    return all(np.all(np.isfinite(np.asarray(v, dtype=float))) for v in sheet.values())
