"""chainrule: neural networks in NumPy whose every gradient is the hand-derived formula.

Layers, losses and optimizers follow the derivations in the project's seed documents; every backward
pass can be seen (``chainrule explain``), checked (:func:`gradcheck`, PyTorch parity tests) and used
for real (training MLPs and softmax regression).
"""

from chainrule._version import __version__
from chainrule.activations import Identity, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from chainrule.errors import ChainruleError, ConfigError, ShapeError
from chainrule.gradcheck import GradcheckReport, gradcheck
from chainrule.io import Classifier, load
from chainrule.layers import BatchNorm1d, Dropout, Linear
from chainrule.losses import (
    BCELoss,
    BCEWithLogitsLoss,
    CrossEntropyLoss,
    MSELoss,
    SoftmaxCrossEntropyLoss,
    add_l2_grad,
    l2_penalty,
    make_loss,
)
from chainrule.module import Module, Parameter
from chainrule.network import Sequential, mlp, softmax_regression
from chainrule.optim import SGD, Adam, AdamW, CosineAnnealingLR, StepLR

__all__ = [
    "__version__",
    "Adam", "AdamW", "Classifier", "load", "BatchNorm1d", "BCELoss", "BCEWithLogitsLoss", "ChainruleError", "ConfigError",
    "CosineAnnealingLR", "CrossEntropyLoss", "Dropout", "GradcheckReport", "Identity", "LeakyReLU",
    "Linear", "MSELoss", "Module", "Parameter", "ReLU", "SGD", "Sequential", "ShapeError", "Sigmoid",
    "Softmax", "SoftmaxCrossEntropyLoss", "StepLR", "Tanh", "add_l2_grad", "gradcheck", "l2_penalty",
    "make_loss", "mlp", "softmax_regression",
]
