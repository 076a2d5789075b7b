"""chainrule: neural networks in NumPy whose every gradient is the hand-derived formula.

Layers, losses and optimizers follow the derivations in the project's seed documents; every backward
pass can be seen (``chainrule explain``), checked (:func:`gradcheck`, PyTorch parity tests) and used
for real (``chainrule train``).

The names below are imported when first used (PEP 562), so that ``import chainrule.cli`` — and with it
``chainrule --help`` — does not pay for NumPy and the rest.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from chainrule._version import __version__

#: Public name -> the module that defines it.
_EXPORTS = {
    **dict.fromkeys(("Identity", "LeakyReLU", "ReLU", "Sigmoid", "Softmax", "Tanh"), "activations"),
    **dict.fromkeys(("ChainruleError", "ConfigError", "DataError", "ShapeError"), "errors"),
    **dict.fromkeys(("GradcheckReport", "gradcheck"), "gradcheck"),
    **dict.fromkeys(("Classifier", "load"), "io"),
    **dict.fromkeys(("BatchNorm1d", "Dropout", "Linear"), "layers"),
    **dict.fromkeys(("BCELoss", "BCEWithLogitsLoss", "CrossEntropyLoss", "MSELoss", "SoftmaxCrossEntropyLoss",
                     "add_l2_grad", "l2_penalty", "make_loss"), "losses"),
    **dict.fromkeys(("Module", "Parameter"), "module"),
    **dict.fromkeys(("Sequential", "mlp", "softmax_regression"), "network"),
    **dict.fromkeys(("SGD", "Adam", "AdamW", "CosineAnnealingLR", "StepLR"), "optim"),
}
_SUBMODULES = ("activations", "check", "cli", "data", "errors", "explain", "gradcheck", "init", "io", "layers",
               "losses", "module", "network", "optim", "plots", "predict", "problem", "render", "run", "trace",
               "train")

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"chainrule.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"chainrule.{name}")
    raise AttributeError(f"module 'chainrule' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS, *_SUBMODULES})


if TYPE_CHECKING:  # for type checkers and editors: the same names, imported eagerly
    from chainrule.activations import Identity, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh  # noqa: F401
    from chainrule.errors import ChainruleError, ConfigError, DataError, ShapeError  # noqa: F401
    from chainrule.gradcheck import GradcheckReport, gradcheck  # noqa: F401
    from chainrule.io import Classifier, load  # noqa: F401
    from chainrule.layers import BatchNorm1d, Dropout, Linear  # noqa: F401
    from chainrule.losses import (  # noqa: F401
        BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, MSELoss, SoftmaxCrossEntropyLoss, add_l2_grad, l2_penalty,
        make_loss,
    )
    from chainrule.module import Module, Parameter  # noqa: F401
    from chainrule.network import Sequential, mlp, softmax_regression  # noqa: F401
    from chainrule.optim import SGD, Adam, AdamW, CosineAnnealingLR, StepLR  # noqa: F401
