"""Optimizers and learning-rate schedules, with PyTorch's update rules where the meaning is the same.

An optimizer keeps a list of :class:`~chainrule.module.Parameter` and a state per parameter (named as in
``torch.optim``: ``momentum_buffer``, ``exp_avg``, ``exp_avg_sq``, ``square_avg``); ``step()`` updates
``param.data`` in place from ``param.grad``: plain gradient descent is ``θ ← θ − lr·∂L/∂θ``.
``weight_decay`` adds ``wd·θ`` to the gradient of every parameter it is given (as ``torch.optim`` does);
for an L2 penalty that spares biases, use :func:`chainrule.losses.add_l2_grad`.

Each update rule is written twice on purpose: as a plain NumPy function beside its class
(:func:`sgd_update`, :func:`adam_update`, :func:`rmsprop_update`: the maths, for reading and for the tests)
and as what the class runs, which may hand the work to a compiled loop of :mod:`chainrule.kernels`. The
tests hold the two to each other and to PyTorch.

Every optimizer is registered under one or more names (:data:`~chainrule.registry.OPTIMIZERS`), which
problem files and ``chainrule train --optimizer`` use; :func:`make_optimizer` builds one by name.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from chainrule import kernels, registry
from chainrule.errors import ConfigError, SettingError, check_fraction, check_positive
from chainrule.i18n import _
from chainrule.module import Parameter
from chainrule.notation import Eq
from chainrule.registry import OPTIMIZERS


class Optimizer:
    """Base class: the parameters, the learning rate, weight decay, and a state per parameter.

    Subclasses implement :meth:`update` for one parameter and declare the state they keep
    (``state_symbols``: its names, and the symbol of each in the formulas) and their formulas.
    """

    #: The state kept for each parameter, by name, with the symbol ``explain`` shows for it.
    state_symbols: ClassVar[dict[str, str]] = {}
    #: Whether the update depends on the number of steps taken (Adam's bias correction).
    counts_steps: ClassVar[bool] = False

    def __init__(self, params: Iterable[Parameter], lr: float, weight_decay: float = 0.0) -> None:
        self.params = list(params)
        if not self.params:
            raise ConfigError(_("{optimizer}: got an empty parameter list").format(optimizer=type(self).__name__))
        for p in self.params:
            if not isinstance(p, Parameter):
                raise ConfigError(
                    _("{optimizer}: expected Parameters (model.parameters()), got {got}").format(
                        optimizer=type(self).__name__, got=type(p).__name__
                    )
                )
        self.lr = check_positive(
            _("{optimizer} learning rate (lr)").format(optimizer=type(self).__name__), lr, key="lr"
        )
        self.weight_decay = check_positive("weight_decay", weight_decay, allow_zero=True, key="weight_decay")
        self.state: list[dict[str, NDArray]] = [{} for _ in self.params]
        self.steps = 0

    def zero_grad(self) -> None:
        for p in self.params:
            p.zero_grad()

    def step(self) -> None:
        """Update every parameter from its gradient (plus ``wd·θ`` with weight decay)."""
        self.steps += 1
        constants = self.step_constants()
        for p, state in zip(self.params, self.state, strict=True):
            grad = p.grad
            if self.weight_decay:
                grad = grad + self.weight_decay * p.data
            self.update(p.data, grad, state, constants)

    def step_constants(self) -> dict[str, float]:
        """Numbers that are the same for every parameter in this step (Adam's bias corrections)."""
        return {}

    def update(self, param: NDArray, grad: NDArray, state: dict[str, NDArray], constants: dict[str, float]) -> None:
        """Update ``param`` in place from ``grad``, reading and writing its ``state`` (``constants``: what
        :meth:`step_constants` gave for this step)."""
        raise NotImplementedError

    # -- configuration and state ----------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """The settings as plain values (``lr``, ``momentum``, ...): ``from_config`` builds it again."""
        return {"lr": self.lr, "weight_decay": self.weight_decay}

    @classmethod
    def from_config(cls, params: Iterable[Parameter], config: Mapping[str, Any]) -> Optimizer:
        return registry.build(cls, config, params)

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        """The settings of an optimizer built with the defaults (over one placeholder parameter)."""
        return cls.from_config([Parameter(np.zeros(1))], {}).config()

    def state_dict(self) -> dict[str, Any]:
        """As ``torch.optim``: ``{"state": {index: {name: array}}, "param_groups": [{settings, "params":
        [indices]}]}``, where each parameter's state also holds its ``step`` for optimizers that count
        steps. The arrays are the optimizer's own (copy them to keep a snapshot)."""
        step = {"step": self.steps} if self.counts_steps else {}
        return {
            "state": {k: {**state, **step} for k, state in enumerate(self.state) if state or step},
            "param_groups": [{**self.config(), "params": list(range(len(self.params)))}],
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Put back what :meth:`state_dict` returned: each parameter's state, the step count and the
        learning rate (which schedules change; a cosine schedule ends at 0). The other settings are this
        optimizer's own and must equal the saved ones. Raises a :class:`ConfigError` that says what does
        not fit."""
        if not isinstance(state_dict, Mapping):
            raise ConfigError(
                _("{optimizer}: expected a state dict, got {got}").format(
                    optimizer=type(self).__name__, got=type(state_dict).__name__
                )
            )
        try:
            (group,) = state_dict["param_groups"]
            saved_state = {int(k): v for k, v in state_dict["state"].items()}
            lr = group["lr"]
        except (KeyError, TypeError, ValueError) as err:
            raise ConfigError(
                _("{optimizer}: not an optimizer state ({key} missing or wrong)").format(
                    optimizer=type(self).__name__, key=repr(err)
                )
            ) from None
        own = self.config()
        different = [k for k, v in own.items() if k != "lr" and group.get(k) != v]
        if different or list(group.get("params", ())) != list(range(len(self.params))):
            this = _("{key} {saved!r} (this optimizer: {own!r})")
            what = ", ".join(this.format(key=k, saved=group.get(k), own=own[k]) for k in different)
            raise ConfigError(
                _("{optimizer}: the saved state is of another optimizer or other parameters ({what})").format(
                    optimizer=type(self).__name__, what=what or _("another number of parameters")
                )
            )
        new_state, steps = [], set()
        for k, p in enumerate(self.params):
            entry = dict(saved_state.get(k, {}))
            if self.counts_steps and entry:
                steps.add(entry.pop("step", None))
            unknown = sorted(set(entry) - set(self.state_symbols))
            if unknown:
                raise ConfigError(
                    _("{optimizer}: unknown state {name!r} of parameter {index}").format(
                        optimizer=type(self).__name__, name=unknown[0], index=k
                    )
                )
            for name, value in entry.items():
                value = np.asarray(value)
                if value.shape != p.data.shape or value.dtype.kind != "f":
                    raise ConfigError(
                        _(
                            "{optimizer}: state {name!r} of parameter {index} has shape {shape} and dtype {dtype}; "
                            "expected floats of shape {expected}"
                        ).format(
                            optimizer=type(self).__name__,
                            name=name,
                            index=k,
                            shape=value.shape,
                            dtype=value.dtype,
                            expected=p.data.shape,
                        )
                    )
                entry[name] = value.astype(p.data.dtype, copy=True)
            new_state.append(entry)
        if len(steps) > 1 or any(not isinstance(s, int) or isinstance(s, bool) or s < 0 for s in steps):
            raise ConfigError(
                _("{optimizer}: the saved step counts are not one number >= 0: {steps}").format(
                    optimizer=type(self).__name__, steps=steps
                )
            )
        self.lr = check_positive(
            _("{optimizer} learning rate (lr)").format(optimizer=type(self).__name__), lr, allow_zero=True
        )
        self.state = new_state
        self.steps = steps.pop() if steps else 0

    # -- what explain shows -------------------------------------------------------------------------------
    def formulas(self) -> tuple[Eq, ...]:
        """The update of one parameter ``θ`` with gradient ``g``, step by step (see :mod:`chainrule.notation`)."""
        return ()

    def _decay(self) -> tuple[Eq, ...]:
        return (Eq("{g} = ∂L/∂{θ} + {weight_decay}·{θ}", result=None),) if self.weight_decay else ()

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({settings})"


def make_optimizer(name: str, params: Iterable[Parameter], **settings: Any) -> Optimizer:
    """The optimizer registered as ``name`` (``sgd``, ``momentum``, ``nesterov``, ``adam``, ``adamw``,
    ``rmsprop``) over ``params``, with ``settings`` in place of its defaults; a setting that the name does
    not take (``momentum`` for ``adam``) is a :class:`ConfigError`."""
    kind = OPTIMIZERS[name]
    allowed = optimizer_settings(name)
    unknown = sorted(set(settings) - set(allowed))
    if unknown:
        raise ConfigError(
            _("the {name} optimizer has no setting {setting!r}; it takes {allowed}").format(
                name=name, setting=unknown[0], allowed=", ".join(allowed)
            )
        )
    return kind.cls.from_config(params, {**kind.defaults, **settings, **kind.fixed})


def optimizer_settings(name: str) -> dict[str, Any]:
    """The settings that optimizer ``name`` takes, with their defaults."""
    kind = OPTIMIZERS[name]
    defaults = {**kind.cls.default_config(), **kind.defaults}
    return {k: v for k, v in defaults.items() if k not in kind.fixed}


# -- SGD --------------------------------------------------------------------------------------------------
def momentum_direction(
    grad: NDArray, state: dict[str, NDArray], momentum: float, dampening: float = 0.0, nesterov: bool = False
) -> NDArray:
    """The direction of an SGD step: ``g`` without momentum; else the momentum buffer
    ``b ← μ·b + (1 − τ)·g`` (``b = g`` at the first step), or ``g + μ·b`` for Nesterov."""
    if not momentum:
        return grad
    buf = state.get("momentum_buffer")
    if buf is None:
        buf = state["momentum_buffer"] = grad.copy()
    else:
        buf *= momentum
        buf += (1.0 - dampening) * grad
    return grad + momentum * buf if nesterov else buf


def sgd_update(
    param: NDArray,
    grad: NDArray,
    state: dict[str, NDArray],
    *,
    lr: float,
    momentum: float = 0.0,
    dampening: float = 0.0,
    nesterov: bool = False,
) -> None:
    """SGD's update in plain NumPy: ``θ ← θ − lr·d`` with ``d`` the :func:`momentum_direction`."""
    param -= lr * momentum_direction(grad, state, momentum, dampening, nesterov)


@OPTIMIZERS.register("sgd", fixed={"momentum": 0.0, "dampening": 0.0, "nesterov": False})
@OPTIMIZERS.register("momentum", defaults={"momentum": 0.9})
@OPTIMIZERS.register("nesterov", defaults={"momentum": 0.9}, fixed={"nesterov": True, "dampening": 0.0})
class SGD(Optimizer):
    r"""Stochastic gradient descent, optionally with momentum (heavy ball or Nesterov), as
    ``torch.optim.SGD`` (see :func:`sgd_update`). The default learning rate is 0.1, which suits the
    standardised inputs that ``chainrule train`` feeds it (PyTorch's is 1e-3).

    .. math:: b_1 = g,\quad b_t = \mu b_{t-1} + (1-\tau)\,g,\qquad
              \theta \mathrel{-}= \text{lr}\cdot\begin{cases} g + \mu b_t & \text{nesterov}\\ b_t & \text{momentum}
              \\ g & \text{else}\end{cases}
    """

    state_symbols: ClassVar[dict[str, str]] = {"momentum_buffer": "b"}

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 0.1,
        momentum: float = 0.0,
        dampening: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, lr, weight_decay)
        self.momentum = check_positive("momentum", momentum, allow_zero=True, key="momentum")
        self.dampening = check_positive("dampening", dampening, allow_zero=True, key="dampening")
        if not isinstance(nesterov, (bool, np.bool_)):
            raise SettingError("nesterov", _("SGD: nesterov must be true or false, got {got!r}").format(got=nesterov))
        self.nesterov = bool(nesterov)
        if self.nesterov and (self.momentum == 0 or self.dampening != 0):
            raise SettingError("momentum", _("SGD: Nesterov momentum needs momentum > 0 and dampening = 0"))

    def update(self, param, grad, state, constants):
        if self.momentum:
            grad = momentum_direction(grad, state, self.momentum, self.dampening, self.nesterov)
        kernels.sgd_step(param, grad, self.lr)  # θ −= lr·d

    def config(self) -> dict[str, Any]:
        return {
            "lr": self.lr,
            "momentum": self.momentum,
            "dampening": self.dampening,
            "nesterov": self.nesterov,
            "weight_decay": self.weight_decay,
        }

    def formulas(self) -> tuple[Eq, ...]:
        if not self.momentum:
            return (*self._decay(), Eq("{θ} ← {θ} − {lr}·{g}", result="θ"))
        buffer = Eq(
            "{b} ← {momentum}·{b} + " + ("(1 − {dampening})·" if self.dampening else "") + "{g}  (t = 1: {b} = {g})",
            result="b",
        )
        step = "{θ} ← {θ} − {lr}·({g} + {momentum}·{b})" if self.nesterov else "{θ} ← {θ} − {lr}·{b}"
        return (*self._decay(), buffer, Eq(step, result="θ"))


# -- Adam -------------------------------------------------------------------------------------------------
def adam_update(
    param: NDArray,
    grad: NDArray,
    state: dict[str, NDArray],
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    step: int,
    decoupled_decay: float = 0.0,
) -> None:
    """Adam's update in plain NumPy, as the paper writes it (``step`` counts from 1)::

        m ← β₁·m + (1 − β₁)·g            v ← β₂·v + (1 − β₂)·g²
        m̂ = m/(1 − β₁ᵗ)                  v̂ = v/(1 − β₂ᵗ)
        θ ← θ − lr·m̂/(√v̂ + ε)

    AdamW first shrinks the weights: ``θ ← θ − lr·wd·θ`` (``decoupled_decay`` = wd)."""
    if decoupled_decay:
        param -= lr * decoupled_decay * param
    m = state["exp_avg"] = beta1 * state.get("exp_avg", 0.0) + (1 - beta1) * grad
    v = state["exp_avg_sq"] = beta2 * state.get("exp_avg_sq", 0.0) + (1 - beta2) * grad**2
    m_hat = m / (1 - beta1**step)
    v_hat = v / (1 - beta2**step)
    param -= lr * m_hat / (np.sqrt(v_hat) + eps)


@OPTIMIZERS.register("adam")
class Adam(Optimizer):
    r"""Adam with bias correction (Kingma & Ba), as ``torch.optim.Adam`` (see :func:`adam_update`):

    .. math:: m_t = \beta_1 m_{t-1} + (1-\beta_1)g,\quad v_t = \beta_2 v_{t-1} + (1-\beta_2)g^2,\quad
              \theta \mathrel{-}= \text{lr}\cdot\frac{m_t/(1-\beta_1^t)}{\sqrt{v_t/(1-\beta_2^t)} + \epsilon}

    ``decoupled=True`` gives AdamW (:class:`AdamW`): the decay ``θ −= lr·wd·θ`` is applied to the weights
    directly instead of being added to the gradient. The update runs as one compiled loop where
    :mod:`chainrule.kernels` is built (the same maths, rearranged: ``lr/(1 − β₁ᵗ)`` and ``1/√(1 − β₂ᵗ)``
    once per step).
    """

    state_symbols: ClassVar[dict[str, str]] = {"exp_avg": "m", "exp_avg_sq": "v"}
    counts_steps = True

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
        self.decoupled = bool(decoupled)
        self.decoupled_decay = check_positive("weight_decay", weight_decay, allow_zero=True) if decoupled else 0.0
        try:
            self.beta1, self.beta2 = (float(b) for b in betas)
        except (TypeError, ValueError):
            raise ConfigError(_("Adam: betas must be two numbers in [0, 1), got {got!r}").format(got=betas)) from None
        for b in (self.beta1, self.beta2):
            if not 0.0 <= b < 1.0:
                raise ConfigError(_("Adam: betas must be in [0, 1), got {got}").format(got=tuple(betas)))
        self.eps = check_positive("Adam eps", eps, key="eps")

    def step_constants(self) -> dict[str, float]:
        t = self.steps
        return {"step_size": self.lr / (1.0 - self.beta1**t), "inv_sqrt_bc2": 1.0 / math.sqrt(1.0 - self.beta2**t)}

    def update(self, param, grad, state, constants):
        if self.decoupled_decay:
            param *= 1.0 - self.lr * self.decoupled_decay
        if "exp_avg" not in state:
            state["exp_avg"], state["exp_avg_sq"] = np.zeros_like(param), np.zeros_like(param)
        kernels.adam_step(
            param,
            grad,
            state["exp_avg"],
            state["exp_avg_sq"],
            self.beta1,
            self.beta2,
            constants["step_size"],
            constants["inv_sqrt_bc2"],
            self.eps,
        )

    def config(self) -> dict[str, Any]:
        config = {
            "lr": self.lr,
            "beta1": self.beta1,
            "beta2": self.beta2,
            "eps": self.eps,
            "weight_decay": self.decoupled_decay if self.decoupled else self.weight_decay,
        }
        return {**config, "decoupled": True} if self.decoupled and type(self) is Adam else config

    @classmethod
    def from_config(cls, params, config):
        config = dict(registry.as_config(cls, config))
        known = {"lr", "beta1", "beta2", "eps", "weight_decay", *(("decoupled",) if cls is Adam else ())}
        unknown = sorted(set(config) - known)
        if unknown:
            raise ConfigError(
                _("{owner}: unknown setting {name!r}; expected one of {expected}").format(
                    owner=cls.__name__, name=unknown[0], expected=", ".join(sorted(known))
                )
            )
        betas = tuple(
            check_fraction(f"{cls.__name__}: {name}", config.pop(name, default), name)
            for name, default in (("beta1", 0.9), ("beta2", 0.999))
        )
        return registry.build(cls, config, params, betas=betas)

    def formulas(self) -> tuple[Eq, ...]:
        decay = (Eq("{θ} ← {θ} − {lr}·{weight_decay}·{θ}", result=None),) if self.decoupled else self._decay()
        return (
            *decay,
            Eq("{m} ← {beta1}·{m} + (1 − {beta1})·{g}", result="m"),
            Eq("{v} ← {beta2}·{v} + (1 − {beta2})·{g}²", result="v"),
            Eq("m̂ = {m}/(1 − {beta1}ᵗ),  v̂ = {v}/(1 − {beta2}ᵗ)", result=None),
            Eq("{θ} ← {θ} − {lr}·m̂/(√v̂ + {eps})", result="θ"),
        )


@OPTIMIZERS.register("adamw")
class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter), as ``torch.optim.AdamW``."""

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, decoupled=True)


# -- RMSprop ----------------------------------------------------------------------------------------------
def rmsprop_update(
    param: NDArray,
    grad: NDArray,
    state: dict[str, NDArray],
    *,
    lr: float,
    alpha: float,
    eps: float,
    momentum: float = 0.0,
) -> None:
    """RMSprop's update in plain NumPy, as ``torch.optim.RMSprop`` (not centered)::

    v ← α·v + (1 − α)·g²              (v = 0 before the first step)
    θ ← θ − lr·g/(√v + ε)              without momentum
    b ← μ·b + g/(√v + ε),  θ ← θ − lr·b   with momentum μ (b = 0 before the first step)
    """
    v = state.get("square_avg")
    if v is None:
        v = state["square_avg"] = np.zeros_like(param)
    v *= alpha
    v += (1 - alpha) * grad * grad
    scaled = grad / (np.sqrt(v) + eps)
    if momentum:
        buf = state.get("momentum_buffer")
        if buf is None:
            buf = state["momentum_buffer"] = np.zeros_like(param)
        buf *= momentum
        buf += scaled
        scaled = buf
    param -= lr * scaled


@OPTIMIZERS.register("rmsprop")
class RMSprop(Optimizer):
    r"""RMSprop (Hinton's lecture 6e), as ``torch.optim.RMSprop`` without ``centered`` (see
    :func:`rmsprop_update`): each weight's step is divided by the root of a running mean of its squared
    gradients.

    .. math:: v_t = \alpha v_{t-1} + (1-\alpha)g^2,\qquad \theta \mathrel{-}= \text{lr}\cdot g/(\sqrt{v_t}+\epsilon)
    """

    state_symbols: ClassVar[dict[str, str]] = {"square_avg": "v", "momentum_buffer": "b"}
    counts_steps = True

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
    ) -> None:
        super().__init__(params, lr, weight_decay)
        self.alpha = check_fraction("RMSprop: alpha", alpha, "alpha")
        self.eps = check_positive("RMSprop eps", eps, key="eps")
        self.momentum = check_positive("momentum", momentum, allow_zero=True, key="momentum")

    def update(self, param, grad, state, constants):
        rmsprop_update(param, grad, state, lr=self.lr, alpha=self.alpha, eps=self.eps, momentum=self.momentum)

    def config(self) -> dict[str, Any]:
        return {
            "lr": self.lr,
            "alpha": self.alpha,
            "eps": self.eps,
            "weight_decay": self.weight_decay,
            "momentum": self.momentum,
        }

    def formulas(self) -> tuple[Eq, ...]:
        average = Eq("{v} ← {alpha}·{v} + (1 − {alpha})·{g}²  (t = 1: {v} = (1 − {alpha})·{g}²)", result="v")
        if not self.momentum:
            return (*self._decay(), average, Eq("{θ} ← {θ} − {lr}·{g}/(√{v} + {eps})", result="θ"))
        return (
            *self._decay(),
            average,
            Eq("{b} ← {momentum}·{b} + {g}/(√{v} + {eps})", result="b"),
            Eq("{θ} ← {θ} − {lr}·{b}", result="θ"),
        )


# -- learning-rate schedules ----------------------------------------------------------------------
class _Schedule:
    """A learning-rate schedule: :meth:`step` after every epoch sets the optimizer's rate."""

    def __init__(self, optimizer: Optimizer) -> None:
        self.optimizer = optimizer
        self.base_lr, self.last_epoch = optimizer.lr, 0

    def step(self) -> None:
        self.last_epoch += 1
        self.optimizer.lr = self.rate(self.last_epoch)

    def rate(self, epoch: int) -> float:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """``last_epoch`` (the epochs stepped so far) and ``base_lr``, as PyTorch's schedulers keep them."""
        return {"last_epoch": self.last_epoch, "base_lr": self.base_lr}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        try:
            last_epoch, base_lr = state["last_epoch"], state["base_lr"]
        except (KeyError, TypeError) as err:
            raise ConfigError(
                _("{schedule}: not a schedule's state ({error})").format(schedule=type(self).__name__, error=repr(err))
            ) from None
        if not isinstance(last_epoch, int) or isinstance(last_epoch, bool) or last_epoch < 0:
            raise ConfigError(
                _("{schedule}: last_epoch must be an integer >= 0, got {got!r}").format(
                    schedule=type(self).__name__, got=last_epoch
                )
            )
        self.last_epoch, self.base_lr = last_epoch, check_positive("base_lr", base_lr)


class StepLR(_Schedule):
    """Multiply the learning rate by ``gamma`` every ``step_size`` calls of :meth:`step` (epochs)."""

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1) -> None:
        if not isinstance(step_size, int) or step_size < 1:
            raise ConfigError(
                _("{owner}: {what} must be a positive integer, got {got!r}").format(
                    owner="StepLR", what="step_size", got=step_size
                )
            )
        super().__init__(optimizer)
        self.step_size = step_size
        self.gamma = check_positive("StepLR gamma", gamma)

    def rate(self, epoch: int) -> float:
        return self.base_lr * self.gamma ** (epoch // self.step_size)


class CosineAnnealingLR(_Schedule):
    r"""Cosine decay from the initial rate to ``eta_min`` over ``T_max`` epochs:
    :math:`\eta_t = \eta_{min} + \tfrac12(\eta_0 - \eta_{min})(1 + \cos(\pi t/T_{max}))`."""

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0) -> None:
        if not isinstance(T_max, int) or T_max < 1:
            raise ConfigError(
                _("{owner}: {what} must be a positive integer, got {got!r}").format(
                    owner="CosineAnnealingLR", what="T_max", got=T_max
                )
            )
        super().__init__(optimizer)
        self.T_max = T_max
        self.eta_min = check_positive("eta_min", eta_min, allow_zero=True)

    def rate(self, epoch: int) -> float:
        t = min(epoch, self.T_max)
        cosine = 0.5 * (1.0 + math.cos(math.pi * t / self.T_max))
        return self.eta_min + (self.base_lr - self.eta_min) * cosine
