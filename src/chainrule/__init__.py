"""chainrule: neural networks in NumPy whose every gradient is the hand-derived formula.

Every forward and backward pass can be seen (``chainrule explain``), checked (:func:`gradcheck`, PyTorch
parity tests) and used for real (``chainrule train``). The layout (docs/architecture.md): a small core
(``module``, ``layers``, ``activations``, ``losses``, ``network``, ``optim``, ``step``, ``init``,
``gradcheck``, ``trace``, with the ``registry`` of kinds and their ``notation``), and two applications
in packages: :mod:`chainrule.explain` (problem files, explain, check) and :mod:`chainrule.training`
(datasets, runs, checkpoints, model files); :mod:`chainrule.interchange` writes models as ONNX,
safetensors and PyTorch, and reads PyTorch's (``export``, ``to_onnx``, ``to_torch``, ``from_torch``).

The names below are imported when first used (PEP 562), so that ``import chainrule.cli`` — and with it
``chainrule --help`` — does not pay for NumPy and the rest.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from chainrule._version import __version__

#: Public name -> the module that defines it.
_EXPORTS = {
    **dict.fromkeys(("GELU", "Identity", "LeakyReLU", "ReLU", "Sigmoid", "SiLU", "Softmax", "Tanh"), "activations"),
    **dict.fromkeys(("ChainruleError", "ConfigError", "DataError", "ShapeError"), "errors"),
    **dict.fromkeys(("GradcheckReport", "gradcheck"), "gradcheck"),
    **dict.fromkeys(("BatchNorm1d", "Dropout", "LayerNorm", "Linear"), "layers"),
    **dict.fromkeys(
        (
            "BCELoss",
            "BCEWithLogitsLoss",
            "CrossEntropyLoss",
            "MSELoss",
            "SoftmaxCrossEntropyLoss",
            "add_l2_grad",
            "l2_penalty",
            "make_loss",
        ),
        "losses",
    ),
    **dict.fromkeys(("Module", "Parameter"), "module"),
    **dict.fromkeys(("Sequential", "mlp", "softmax_regression"), "network"),
    **dict.fromkeys(("SGD", "Adam", "AdamW", "RMSprop", "CosineAnnealingLR", "StepLR", "make_optimizer"), "optim"),
    **dict.fromkeys(("LAYERS", "LOSSES", "OPTIMIZERS"), "registry"),
    "train_step": "step",
    "export": "interchange",
    **dict.fromkeys(("from_torch", "to_torch"), "interchange.pytorch"),
    "to_onnx": "interchange.onnx",
    "Classifier": "training.classifier",
    **dict.fromkeys(("load", "save"), "training.modelfile"),
    "fit": "training.loop",
    "TrainConfig": "training.config",
    "train": "training.run",
}
_SUBMODULES = (
    "activations",
    "archive",
    "cli",
    "errors",
    "explain",
    "gradcheck",
    "init",
    "interchange",
    "kernels",
    "layers",
    "losses",
    "module",
    "network",
    "notation",
    "optim",
    "registry",
    "step",
    "trace",
    "training",
)

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
    from chainrule.activations import GELU, Identity, LeakyReLU, ReLU, Sigmoid, SiLU, Softmax, Tanh  # noqa: F401
    from chainrule.errors import ChainruleError, ConfigError, DataError, ShapeError  # noqa: F401
    from chainrule.gradcheck import GradcheckReport, gradcheck  # noqa: F401
    from chainrule.interchange import export  # noqa: F401
    from chainrule.interchange.onnx import to_onnx  # noqa: F401
    from chainrule.interchange.pytorch import from_torch, to_torch  # noqa: F401
    from chainrule.layers import BatchNorm1d, Dropout, LayerNorm, Linear  # noqa: F401
    from chainrule.losses import (  # noqa: F401
        BCELoss,
        BCEWithLogitsLoss,
        CrossEntropyLoss,
        MSELoss,
        SoftmaxCrossEntropyLoss,
        add_l2_grad,
        l2_penalty,
        make_loss,
    )
    from chainrule.module import Module, Parameter  # noqa: F401
    from chainrule.network import Sequential, mlp, softmax_regression  # noqa: F401
    from chainrule.optim import (  # noqa: F401
        SGD,
        Adam,
        AdamW,
        CosineAnnealingLR,
        RMSprop,
        StepLR,
        make_optimizer,
    )
    from chainrule.registry import LAYERS, LOSSES, OPTIMIZERS  # noqa: F401
    from chainrule.step import train_step  # noqa: F401
    from chainrule.training.classifier import Classifier  # noqa: F401
    from chainrule.training.config import TrainConfig  # noqa: F401
    from chainrule.training.loop import fit  # noqa: F401
    from chainrule.training.modelfile import load, save  # noqa: F401
    from chainrule.training.run import train  # noqa: F401
