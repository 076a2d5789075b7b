"""The building block: a :class:`Module` with a forward pass, a backward pass and its :class:`Parameter` s.

Convention: batches are rows, ``X`` has shape ``(n, features)``.

* ``forward(x)`` computes the output and keeps in the module what ``backward`` will need (the cache);
* ``backward(grad_output, input_grad=True)`` takes ``∂L/∂output`` (same shape as the output), **adds**
  the gradients of the parameters into ``param.grad`` and returns ``∂L/∂input``. It reads the cache,
  never recomputes the forward pass. Gradients are reset by :meth:`Module.zero_grad`, so two backward
  passes accumulate. With ``input_grad=False`` a module may skip ``∂L/∂input`` and return ``None``: the
  first layer of a network in training, whose input is the data, saves a whole matrix product.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import numpy as np
from numpy.typing import DTypeLike, NDArray

from chainrule import kernels, registry
from chainrule.errors import ConfigError, ShapeError
from chainrule.i18n import _
from chainrule.notation import Formulas


class Parameter:
    """A trainable array ``data`` with its gradient ``grad`` (same shape and dtype).

    ``decay`` says whether L2 regularisation applies to it: true for weights, false for biases and
    the shift and scale of a normalisation (``λ/2·‖W‖²`` is over weights only).

    :meth:`zero_grad` does not write the zeros at once: the first gradient added after it (a layer's
    ``Xᵀ·δ`` at every training step) is written straight into ``grad``, which saves a pass over the
    array to zero it and one to add to it. Reading ``grad`` before that writes the zeros, so ``grad``
    always reads as the sum of what was added since :meth:`zero_grad`.
    """

    __slots__ = ("_grad", "_zero_pending", "data", "decay")

    def __init__(self, data: NDArray, *, decay: bool = False) -> None:
        self.data = data
        self._grad = np.zeros_like(data)
        self.decay = decay
        self._zero_pending = False

    @property
    def grad(self) -> NDArray:
        if self._zero_pending:
            self._grad.fill(0)
            self._zero_pending = False
        return self._grad

    @grad.setter
    def grad(self, value: NDArray) -> None:
        self._grad = value
        self._zero_pending = False

    def zero_grad(self) -> None:
        self._zero_pending = True

    def add_matmul(self, a: NDArray, b: NDArray) -> None:
        """``grad += a @ b``; right after :meth:`zero_grad` the product is written straight into
        ``grad``, saving a temporary array and two passes over it (the weight gradient of every step)."""
        if self._zero_pending and self._grad.flags.c_contiguous:
            kernels.matmul(a, b, out=self._grad)
            self._zero_pending = False
        else:
            kernels.matmul(a, b, out=self.grad, accumulate=True)

    def add(self, value: NDArray) -> None:
        """``grad += value`` (right after :meth:`zero_grad`: ``grad = value``, without the zeros)."""
        if self._zero_pending:
            np.copyto(self._grad, value)
            self._zero_pending = False
        else:
            self._grad += value

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    def __repr__(self) -> str:
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype})"


class Module:
    """Base class of layers and networks.

    Subclasses set ``self.params`` (name → :class:`Parameter`) and ``self.buffers`` (name → array of
    state that is not trained, e.g. BatchNorm's running statistics) and implement ``forward`` and
    ``backward``. A kind of layer registered in :data:`chainrule.registry.LAYERS` also gives:

    * :meth:`config`: its constructor's arguments as plain values, so that ``from_config`` builds it again
      (model files, problem files);
    * :meth:`formulas`: its forward and backward formulas, for ``chainrule explain``;
    * :meth:`details`: values its forward pass computed on the way, for the trace (BatchNorm's ``μ``, ``σ²``);
    * :meth:`gradcheck_cases`: instances to check against finite differences (``chainrule gradcheck``).
    """

    #: The name of this kind in problem and model files (set by :meth:`Registry.register`).
    kind: ClassVar[str] = ""
    #: False for a kind whose output depends on random numbers (dropout): not available in problem files.
    deterministic: ClassVar[bool] = True
    #: The letter of this layer's output in ``explain`` (``Z₀ = X·W₀``, ``A₁ = max(0, Z₀)``).
    symbol: ClassVar[str] = "A"
    #: The settings that are sizes of its arrays (``in_features``): a model file's arrays bound them.
    sizes: ClassVar[tuple[str, ...]] = ()
    #: Whether this module's outputs are probabilities (a sigmoid, a softmax, a network ending in one):
    #: classes are then predicted by thresholding at 0.5 instead of 0.
    gives_probabilities: bool = False
    training: bool = True

    def __init__(self) -> None:
        self.params: dict[str, Parameter] = {}
        self.buffers: dict[str, NDArray] = {}
        self.training = True

    # -- the two passes -------------------------------------------------------------------------
    def forward(self, x: NDArray) -> NDArray:
        raise NotImplementedError

    def backward(self, grad_output: NDArray, input_grad: bool = True) -> NDArray | None:
        raise NotImplementedError

    def __call__(self, x: NDArray) -> NDArray:
        return self.forward(x)

    # -- structure --------------------------------------------------------------------------------
    def modules(self) -> Iterator[Module]:
        """This module and every module inside it, depth first."""
        yield self

    def named_parameters(self) -> Iterator[tuple[str, Parameter]]:
        yield from self.params.items()

    def parameters(self) -> list[Parameter]:
        return [p for _, p in self.named_parameters()]

    def zero_grad(self) -> None:
        for m in self.modules():  # a parameter shared by two layers is reset twice, which is harmless
            for p in m.params.values():
                p.zero_grad()

    def train(self, mode: bool = True) -> Module:
        """Training mode (batch statistics, dropout on) or, with ``mode=False``, evaluation mode."""
        for m in self.modules():
            m.training = mode
        return self

    def eval(self) -> Module:
        return self.train(False)

    def output_features(self, in_features: int) -> int:
        """The number of features this module outputs for ``in_features`` input features."""
        return in_features

    # -- configuration and state ------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """The constructor's arguments that define this module, as plain values (``Linear(784, 10)`` →
        ``{"in_features": 784, "out_features": 10, "bias": True}``); ``from_config`` builds it again."""
        return {}

    @classmethod
    def from_config(cls, config: Mapping[str, Any], *, dtype: DTypeLike = np.float32, **options: Any) -> Module:
        """A new module of this kind from :meth:`config`'s dict (``dtype``, and ``options`` such as
        ``init="zeros"``, for the kinds whose constructor takes them); an unknown or missing setting is a
        :class:`ConfigError`."""
        return registry.build(cls, config, dtype=dtype, **options)

    @classmethod
    def inferred_config(cls, in_features: int, given: Mapping[str, Any]) -> dict[str, Any]:
        """The settings that a problem file does not write, because the number of features entering the
        layer and the values it gives (lists as arrays, by parameter name) already say them: ``Linear``
        takes its sizes from ``W`` and has a bias if ``b`` is given. A missing array raises ``KeyError``;
        a value that does not fit, a :class:`~chainrule.errors.SettingError`."""
        return {}

    def state_dict(self) -> dict[str, NDArray]:
        """Every parameter and buffer by name (``W``, ``running_mean``; ``0.W`` inside a
        :class:`~chainrule.network.Sequential`), as in PyTorch: the arrays themselves, not copies (copy
        them to keep a snapshot)."""
        return {**{name: p.data for name, p in self.params.items()}, **self.buffers}

    def load_state_dict(self, state: Mapping[str, NDArray], strict: bool = True) -> None:
        """Copy ``state`` (what :meth:`state_dict` returns) into this module's arrays, cast to their
        dtype. Every array must have its key's shape and hold numbers; with ``strict`` no key may be
        missing or unexpected. Raises a :class:`ShapeError` that names the keys."""
        if not isinstance(state, Mapping):
            raise ShapeError(
                _("{owner}: expected a state dict, got {got}").format(
                    owner=type(self).__name__, got=type(state).__name__
                )
            )
        own = self.state_dict()
        missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        if strict and (missing or unexpected):
            if missing and unexpected:
                message = _("{owner}: the state does not fit; missing {missing}; unexpected {unexpected}")
            elif missing:
                message = _("{owner}: the state does not fit; missing {missing}")
            else:
                message = _("{owner}: the state does not fit; unexpected {unexpected}")
            raise ShapeError(
                message.format(
                    owner=type(self).__name__, missing=", ".join(missing[:5]), unexpected=", ".join(unexpected[:5])
                )
            )
        for key, value in state.items():
            if key not in own:
                continue
            value = np.asarray(value)
            if value.shape != own[key].shape or value.dtype.kind not in "fiu":
                raise ShapeError(
                    _("{key} has shape {shape} and dtype {dtype}; expected numbers of shape {expected}").format(
                        key=key, shape=value.shape, dtype=value.dtype, expected=own[key].shape
                    )
                )
        for key, target in own.items():
            if key in state:
                target[...] = state[key]

    # -- what explain and the trace show ----------------------------------------------------------
    def formulas(self) -> Formulas:
        """The forward and backward formulas of this module, with placeholders for its arrays (see
        :mod:`chainrule.notation`)."""
        return Formulas()

    def details(self) -> dict[str, NDArray]:
        """Values the last forward pass computed on the way (BatchNorm: ``mean``, ``var``, ``x_hat``),
        by the names its formulas use: recorded by the trace after the forward pass."""
        return {}

    def backward_details(self) -> dict[str, NDArray]:
        """Values of the last backward pass that its formulas name (an element-wise activation: the
        local derivative ``f'``): recorded by the trace after the backward pass."""
        return {}

    # -- the same layer elsewhere: PyTorch and ONNX (see chainrule.interchange) ---------------------
    #: The ``torch.nn`` module that computes the same (``"Linear"``): export to PyTorch, import from it.
    torch_name: ClassVar[str | None] = None
    #: Settings (:meth:`config` keys) by the names of the PyTorch module's arguments and attributes.
    torch_settings: ClassVar[dict[str, str]] = {}
    #: Arrays (:meth:`state_dict` keys) by their PyTorch names; those PyTorch keeps transposed (a linear
    #: layer's ``W``, which it stores as ``(out, in)``) are listed in ``torch_transposed`` too.
    torch_arrays: ClassVar[dict[str, str]] = {}
    torch_transposed: ClassVar[tuple[str, ...]] = ()

    def torch_config(self) -> dict[str, Any]:
        """The arguments of ``torch.nn.<torch_name>`` that build this layer's twin."""
        config = self.config()
        return {theirs: config[ours] for ours, theirs in self.torch_settings.items()}

    @classmethod
    def config_from_torch(cls, module: Any) -> dict[str, Any]:
        """This kind's :meth:`config` read from a ``torch.nn.<torch_name>`` module (eager or TorchScript);
        a :class:`ConfigError` that names the setting chainrule does not have (``LayerNorm`` without
        ``γ``, ``GELU`` with the tanh approximation)."""
        return {ours: getattr(module, theirs) for ours, theirs in cls.torch_settings.items()}

    def to_onnx(self, graph: Any, x: str) -> str:
        """Add to ``graph`` (a :class:`chainrule.interchange.onnx.Graph`) the nodes that compute this
        layer in evaluation mode on the value named ``x``, and return the name of their output."""
        raise ConfigError(_("{owner} has no ONNX form").format(owner=type(self).__name__))

    @classmethod
    def gradcheck_cases(cls, features: int, rng: np.random.Generator) -> dict[str, Module]:
        """Instances of this kind to check against finite differences on inputs with ``features``
        columns, by name (``chainrule gradcheck NAME``)."""
        return {cls.kind: cls()}

    # -- helpers ------------------------------------------------------------------------------------
    def astype(self, dtype: DTypeLike) -> Module:
        """A deep copy whose parameters and buffers have ``dtype`` (e.g. float64 for gradient checks)."""
        dtype = np.dtype(dtype)
        clone = copy.deepcopy(self)
        for m in clone.modules():
            for p in m.params.values():
                p.data = p.data.astype(dtype)
                p.grad = np.zeros_like(p.data)
            for name, buf in m.buffers.items():
                m.buffers[name] = buf.astype(dtype)
            if "dtype" in vars(m):  # a layer's own (a Sequential's is its parameters')
                m.dtype = dtype
        return clone

    def _cached(self, name: str):
        """The value that ``forward`` kept for ``backward``, or a clear error if forward was not run."""
        value = getattr(self, name, None)
        if value is None:
            raise ConfigError(_("{owner!r}: backward called before forward").format(owner=self))
        return value

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({settings})"


def as_batch(x, owner: object, features: int | None = None, dtype: DTypeLike | None = None) -> NDArray:
    """``x`` as a 2-D array of rows (cast to ``dtype`` if given), or a :class:`ShapeError` naming ``owner``.

    ``features`` is the number of columns expected; ``None`` accepts any.
    """
    try:
        arr = np.asarray(x, dtype=dtype) if dtype is not None else np.asarray(x)
    except (TypeError, ValueError) as err:
        raise ShapeError(
            _("{owner!r}: expected a numeric array, got {got} ({error})").format(
                owner=owner, got=type(x).__name__, error=err
            )
        ) from None
    if arr.dtype.kind not in "fiub":
        raise ShapeError(
            _("{owner!r}: expected a numeric array, got dtype {dtype}").format(owner=owner, dtype=arr.dtype)
        )
    if arr.ndim != 2 or (features is not None and arr.shape[1] != features):
        want = f"(n, {features})" if features is not None else _("(n, features)")
        raise ShapeError(
            _("{owner!r}: expected input of shape {expected}, got {got}").format(
                owner=owner, expected=want, got=arr.shape
            )
        )
    return arr


def check_grad_shape(owner: object, grad: NDArray, expected: tuple[int, ...]) -> NDArray:
    if type(grad) is not np.ndarray:
        grad = np.asarray(grad)
    if grad.shape != expected:
        raise ShapeError(
            _("{owner!r}: expected an upstream gradient of shape {expected}, got {got}").format(
                owner=owner, expected=expected, got=grad.shape
            )
        )
    return grad
