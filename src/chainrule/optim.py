"""Optimizers and learning-rate schedules, with PyTorch's update rules where the meaning is the same.

Each optimizer keeps a list of :class:`~chainrule.module.Parameter` and one state per parameter, and
``step()`` updates ``param.data`` in place from ``param.grad`` (seed 001, section 4: ``W := W − α·∂J/∂W``).
``weight_decay`` adds ``wd·θ`` to the gradient of every parameter it is given (as ``torch.optim`` does);
for the regulariser of seed 003, which spares biases, use :func:`chainrule.losses.add_l2_grad`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from chainrule import kernels
from chainrule.errors import ConfigError, check_positive
from chainrule.module import Parameter


class Optimizer:
    def __init__(self, params: Iterable[Parameter], lr: float, weight_decay: float = 0.0) -> None:
        self.params = list(params)
        if not self.params:
            raise ConfigError(f"{type(self).__name__}: got an empty parameter list")
        for p in self.params:
            if not isinstance(p, Parameter):
                raise ConfigError(f"{type(self).__name__}: expected Parameters (model.parameters()), "
                                  f"got {type(p).__name__}")
        self.lr = check_positive(f"{type(self).__name__} learning rate (lr)", lr)
        self.weight_decay = check_positive("weight_decay", weight_decay, allow_zero=True)
        self.steps = 0

    def zero_grad(self) -> None:
        for p in self.params:
            p.zero_grad()

    def step(self) -> None:
        self.steps += 1
        for i, p in enumerate(self.params):
            grad = p.grad
            if self.weight_decay:
                grad = grad + self.weight_decay * p.data
            self.update(i, p, grad)

    def update(self, i: int, p: Parameter, grad: np.ndarray) -> None:
        raise NotImplementedError

    def param_state(self, i: int) -> dict[str, np.ndarray]:
        """The state kept for parameter ``i`` (e.g. Adam's ``m`` and ``v``), by name."""
        return {}


class SGD(Optimizer):
    r"""Stochastic gradient descent, optionally with momentum (heavy ball or Nesterov).

    With :math:`g` the gradient and :math:`\mu` the momentum, as in ``torch.optim.SGD``:

    .. math:: b_1 = g,\quad b_t = \mu b_{t-1} + (1-\text{dampening})\,g,\qquad
              \theta \mathrel{-}= \text{lr}\cdot\begin{cases} g + \mu b_t & \text{nesterov}\\ b_t & \text{else}\end{cases}
    """

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 0.01,
        momentum: float = 0.0,
        dampening: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, lr, weight_decay)
        self.momentum = check_positive("momentum", momentum, allow_zero=True)
        self.dampening = float(dampening)
        self.nesterov = bool(nesterov)
        if self.nesterov and (self.momentum == 0 or self.dampening != 0):
            raise ConfigError("SGD: Nesterov momentum needs momentum > 0 and dampening = 0")
        self.buffers: list[np.ndarray | None] = [None] * len(self.params)
        self.scratch: dict[int, np.ndarray] = {}

    def update(self, i, p, grad):
        if self.momentum:
            buf = self.buffers[i]
            if buf is None:
                buf = self.buffers[i] = grad.copy()
            else:
                buf *= self.momentum
                buf += (1.0 - self.dampening) * grad
            grad = grad + self.momentum * buf if self.nesterov else buf
        if kernels.fusable(p.data, grad):
            kernels.compiled.sgd_step(p.data, grad, self.lr)
            return
        scratch = self.scratch.get(i)
        if scratch is None:
            scratch = self.scratch[i] = np.empty_like(p.data)
        np.multiply(grad, self.lr, out=scratch)  # lr·g without a new array at every step
        p.data -= scratch

    def param_state(self, i):
        return {} if self.buffers[i] is None else {"v": self.buffers[i]}


class Adam(Optimizer):
    r"""Adam with bias correction (Kingma & Ba; seed 001), as ``torch.optim.Adam``:

    .. math:: m_t = \beta_1 m_{t-1} + (1-\beta_1)g,\quad v_t = \beta_2 v_{t-1} + (1-\beta_2)g^2,\quad
              \theta \mathrel{-}= \frac{\text{lr}}{1-\beta_1^t}\cdot
              \frac{m_t}{\sqrt{v_t}/\sqrt{1-\beta_2^t} + \epsilon}

    ``decoupled=True`` gives AdamW: the decay ``θ −= lr·wd·θ`` is applied to the weights directly
    instead of being added to the gradient.
    """

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        decoupled: bool = False,
    ) -> None:
        super().__init__(params, lr, 0.0 if decoupled else weight_decay)
        self.decay = check_positive("weight_decay", weight_decay, allow_zero=True) if decoupled else 0.0
        self.beta1, self.beta2 = (float(b) for b in betas)
        for b in (self.beta1, self.beta2):
            if not 0.0 <= b < 1.0:
                raise ConfigError(f"Adam: betas must be in [0, 1), got {tuple(betas)}")
        self.eps = check_positive("Adam eps", eps)
        self.m = [np.zeros_like(p.data) for p in self.params]
        self.v = [np.zeros_like(p.data) for p in self.params]
        self.scratch: dict[int, np.ndarray] = {}  # for the NumPy path, made when first needed

    def step(self) -> None:
        t = self.steps + 1  # the bias corrections of this step, the same for every parameter
        self.step_size = self.lr / (1.0 - self.beta1**t)
        self.inv_sqrt_bc2 = 1.0 / math.sqrt(1.0 - self.beta2**t)
        super().step()

    def update(self, i, p, grad):
        if self.decay:
            p.data *= 1.0 - self.lr * self.decay
        step_size, inv_sqrt_bc2 = self.step_size, self.inv_sqrt_bc2
        m, v = self.m[i], self.v[i]
        if kernels.fusable(p.data, grad, m, v):
            kernels.compiled.adam_step(p.data, grad, m, v, self.beta1, self.beta2, step_size, inv_sqrt_bc2, self.eps)
            return
        # The same maths in NumPy, in place through one scratch array per parameter: the update is
        # element-wise work on every weight at every step, so allocations cost as much as arithmetic.
        scratch = self.scratch.get(i)
        if scratch is None:
            scratch = self.scratch[i] = np.empty_like(p.data)
        m *= self.beta1
        np.multiply(grad, 1.0 - self.beta1, out=scratch)
        m += scratch
        v *= self.beta2
        np.multiply(grad, grad, out=scratch)
        scratch *= 1.0 - self.beta2
        v += scratch
        np.sqrt(v, out=scratch)
        scratch *= inv_sqrt_bc2
        scratch += self.eps  # the denominator √v̂ + ε
        np.divide(m, scratch, out=scratch)
        scratch *= step_size
        p.data -= scratch

    def param_state(self, i):
        return {"m": self.m[i], "v": self.v[i]}


def AdamW(params: Iterable[Parameter], lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
          weight_decay: float = 1e-2) -> Adam:
    """Adam with decoupled weight decay (Loshchilov & Hutter), as ``torch.optim.AdamW``."""
    return Adam(params, lr, betas, eps, weight_decay, decoupled=True)


# -- learning-rate schedules ----------------------------------------------------------------------
class StepLR:
    """Multiply the learning rate by ``gamma`` every ``step_size`` calls of :meth:`step` (epochs)."""

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1) -> None:
        if not isinstance(step_size, int) or step_size < 1:
            raise ConfigError(f"StepLR: step_size must be a positive integer, got {step_size!r}")
        self.optimizer, self.step_size = optimizer, step_size
        self.gamma = check_positive("StepLR gamma", gamma)
        self.base_lr, self.epoch = optimizer.lr, 0

    def step(self) -> None:
        self.epoch += 1
        self.optimizer.lr = self.base_lr * self.gamma ** (self.epoch // self.step_size)


class CosineAnnealingLR:
    r"""Cosine decay from the initial rate to ``eta_min`` over ``T_max`` epochs:
    :math:`\eta_t = \eta_{min} + \tfrac12(\eta_0 - \eta_{min})(1 + \cos(\pi t/T_{max}))`."""

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0) -> None:
        if not isinstance(T_max, int) or T_max < 1:
            raise ConfigError(f"CosineAnnealingLR: T_max must be a positive integer, got {T_max!r}")
        self.optimizer, self.T_max = optimizer, T_max
        self.eta_min = check_positive("eta_min", eta_min, allow_zero=True)
        self.base_lr, self.epoch = optimizer.lr, 0

    def step(self) -> None:
        self.epoch += 1
        t = min(self.epoch, self.T_max)
        cosine = 0.5 * (1.0 + math.cos(math.pi * t / self.T_max))
        self.optimizer.lr = self.eta_min + (self.base_lr - self.eta_min) * cosine


OPTIMIZERS = {"sgd": SGD, "adam": Adam, "adamw": AdamW}
