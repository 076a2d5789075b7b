"""Networks: :class:`Sequential`, and the two usual models built in one line (:func:`mlp`,
:func:`softmax_regression`).

Backpropagation through a chain ``a⁽ˡ⁾ = f⁽ˡ⁾(a⁽ˡ⁻¹⁾)`` is each layer's backward in reverse order: the
gradient one layer returns is the upstream gradient of the layer before it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence

import numpy as np
from numpy.typing import DTypeLike, NDArray

from chainrule import activations
from chainrule.activations import Softmax
from chainrule.errors import ChainruleError, ConfigError, check_choice
from chainrule.i18n import _
from chainrule.init import make_rng
from chainrule.layers import BatchNorm1d, Dropout, LayerNorm, Linear
from chainrule.module import Module, Parameter
from chainrule.registry import LAYERS


class Sequential(Module):
    """Layers applied one after the other; backward runs them in reverse.

    An error inside a layer is re-raised with the layer's place in the network, so that a shape error
    reads ``layer 2: Linear(256, 10): expected input of shape (n, 256), got (32, 128)``.

    ``observer``, when set (see :mod:`chainrule.trace`), is told of every layer call: this is the one
    place where a trace of the computation is recorded, so the trace shows what the layers computed.
    """

    observer = None

    def __init__(self, *layers: Module) -> None:
        super().__init__()
        seen: dict[int, int] = {}  # id of a layer -> its first index (one pass, for any number of layers)
        for i, layer in enumerate(layers):
            if not isinstance(layer, Module):
                raise ConfigError(
                    _("Sequential: layer {index} must be a Module, got {got}").format(index=i, got=type(layer).__name__)
                )
            first = seen.setdefault(id(layer), i)
            if first != i:
                raise ConfigError(
                    _(
                        "Sequential: layer {index} is the same object as layer {first}; a layer caches one call "
                        "for its backward pass, so to tie weights give two layers the same Parameter"
                    ).format(index=i, first=first)
                )
        self.layers = list(layers)

    def forward(self, x: NDArray) -> NDArray:
        for i, layer in enumerate(self.layers):
            try:
                out = layer.forward(x)
            except ChainruleError as err:
                _locate(err, i)
                raise
            if self.observer is not None:
                self.observer.on_forward(i, layer, x, out)
            x = out
        return x

    def backward(self, grad_output: NDArray, input_grad: bool = True) -> NDArray | None:
        for i in range(len(self.layers) - 1, -1, -1):
            layer = self.layers[i]
            try:
                grad_input = layer.backward(grad_output, input_grad=input_grad or i > 0)
            except ChainruleError as err:
                _locate(err, i)
                raise
            if self.observer is not None:
                self.observer.on_backward(i, layer, grad_output, grad_input)
            grad_output = grad_input
        return grad_output

    def modules(self) -> Iterator[Module]:
        yield self
        for layer in self.layers:
            yield from layer.modules()

    def named_parameters(self) -> Iterator[tuple[str, Parameter]]:
        """``("i.name", parameter)`` for every parameter; a parameter shared by two layers (tied
        weights) is listed once, under its first name, so that an optimizer updates it once."""
        seen: set[int] = set()
        for i, layer in enumerate(self.layers):
            for name, p in layer.named_parameters():
                if id(p) not in seen:
                    seen.add(id(p))
                    yield f"{i}.{name}", p

    def state_dict(self) -> dict[str, NDArray]:
        """Every layer's parameters and buffers, named ``"i.name"`` (``0.W``, ``1.running_mean``); a
        parameter shared by two layers appears under both names, as in PyTorch."""
        return {
            f"{i}.{name}": array for i, layer in enumerate(self.layers) for name, array in layer.state_dict().items()
        }

    def output_features(self, in_features: int) -> int:
        """The number of outputs for ``in_features`` inputs: each layer's, one after the other."""
        for layer in self.layers:
            in_features = layer.output_features(in_features)
        return in_features

    @property
    def dtype(self) -> np.dtype:
        """The float type of the parameters (float32 for a network without any)."""
        return next((p.data.dtype for p in self.parameters()), np.dtype(np.float32))

    @property
    def in_features(self) -> int | None:
        """The number of input features, as the first layer with sizes declares it (``Linear(784, 256)``:
        784); ``None`` for a network of layers that take any number (activations alone)."""
        for layer in self.layers:
            inner = layer.in_features if isinstance(layer, Sequential) else None
            if inner is not None or layer.sizes:
                return inner or int(layer.config()[layer.sizes[0]])
        return None

    @property
    def gives_probabilities(self) -> bool:
        """Whether the network's outputs are probabilities (it ends in a softmax or a sigmoid) rather than
        logits or other scores."""
        return bool(self.layers) and self.layers[-1].gives_probabilities

    def outputs(self, x: NDArray, batch_size: int = 4096) -> NDArray:
        """The network's outputs in evaluation mode (logits or probabilities, as its last layer gives
        them), computed in batches; the mode of every layer is restored after."""
        was_training = [m.training for m in self.modules()]
        self.eval()
        try:
            # at least one batch, so that no rows give (0, outputs)
            outs = [self.forward(x[i : i + batch_size]) for i in range(0, max(len(x), 1), batch_size)]
        finally:
            for m, mode in zip(self.modules(), was_training, strict=True):
                m.training = mode
        return np.concatenate(outs)

    def predict_proba(self, x: NDArray, batch_size: int = 4096) -> NDArray:
        """The probability of each class, shape ``(n, classes)`` (two columns for a single output)."""
        return class_probabilities(self.outputs(x, batch_size), self.gives_probabilities)

    def predict(self, x: NDArray, batch_size: int = 4096) -> NDArray:
        """The class of each row (see :func:`predicted_classes`)."""
        return predicted_classes(self.outputs(x, batch_size), self.gives_probabilities)

    def __getitem__(self, i: int) -> Module:
        return self.layers[i]

    def __len__(self) -> int:
        return len(self.layers)

    def __repr__(self) -> str:
        inner = "".join(f"\n  ({i}) {layer!r}" for i, layer in enumerate(self.layers))
        return f"Sequential({inner}\n)"

    def summary_rows(self) -> list[tuple[int, str, str, int]]:
        """``(index, layer, output shape, parameters)`` for each layer; ``n`` is the batch's rows."""
        rows, features = [], self.in_features
        for i, layer in enumerate(self.layers):
            features = None if features is None else layer.output_features(features)
            count = sum(p.data.size for p in layer.params.values())
            rows.append((i, repr(layer), f"(n, {'?' if features is None else features})", count))
        return rows

    def summary(self) -> str:
        """The layers as a table (layer, output shape, parameters) and the parameter count, as text."""
        rows = [
            ("#", "layer", "output", "parameters"),
            *((str(i), n, s, f"{c:,}") for i, n, s, c in self.summary_rows()),
        ]
        widths = [max(len(row[k]) for row in rows) for k in range(4)]
        lines = [
            "  ".join(
                c.rjust(w) if k in (0, 3) else c.ljust(w) for k, (c, w) in enumerate(zip(row, widths, strict=True))
            ).rstrip()
            for row in rows
        ]
        lines.insert(1, "-" * len(lines[0]))
        total = sum(p.data.size for p in self.parameters())
        return "\n".join([*lines, f"{total:,} parameters ({self.dtype})"])

    def _repr_html_(self) -> str:
        """Jupyter's display: the summary as a table."""
        from chainrule.html import escape, table

        total = sum(p.data.size for p in self.parameters())
        rows = [(i, n, s, f"{c:,}") for i, n, s, c in self.summary_rows()]
        caption = f"<p>Sequential: {len(self.layers)} layers, {total:,} parameters ({escape(str(self.dtype))})</p>"
        return caption + table(("#", "layer", "output", "parameters"), rows, (True, False, False, True))


def predicted_classes(outputs: NDArray, probabilities: bool) -> NDArray:
    """The class of each row of a network's ``outputs``: the arg-max of the row, or for a single output
    (two classes) 1 where it is above 0.5 for ``probabilities`` and above 0 for logits."""
    if outputs.shape[1] == 1:
        return (outputs[:, 0] > (0.5 if probabilities else 0.0)).astype(np.int64)
    return outputs.argmax(axis=1)


def class_probabilities(outputs: NDArray, probabilities: bool) -> NDArray:
    """The probability of each class from a network's ``outputs``, float64: the outputs themselves if
    they are ``probabilities``, else their softmax (a sigmoid for a single output); a single output gives
    two columns, ``[1 − p, p]``."""
    outputs = np.asarray(outputs, dtype=np.float64)
    if outputs.shape[1] == 1:
        p = outputs[:, 0] if probabilities else 1.0 / (1.0 + np.exp(-np.clip(outputs[:, 0], -700, 700)))
        return np.stack([1.0 - p, p], axis=1)
    return outputs.copy() if probabilities else activations.softmax(outputs)


def _locate(err: ChainruleError, i: int) -> None:
    """Put the place of layer ``i``, where ``err`` was raised, in front of its message (once)."""
    if not getattr(err, "located", False):
        err.args = (f"layer {i}: {err.args[0]}" if err.args else f"layer {i}",)
        err.located = True


def mlp(
    sizes: Sequence[int],
    activation: str = "relu",
    *,
    output: str = "identity",
    batchnorm: bool = False,
    layernorm: bool = False,
    dropout: float = 0.0,
    init: str | None = None,
    seed: int | np.random.Generator | None = None,
    dtype: DTypeLike = np.float32,
) -> Sequential:
    """A multi-layer perceptron in one line: ``mlp([784, 256, 10])``.

    ``sizes`` lists the widths from input to output. Each hidden layer is ``Linear`` → (``BatchNorm1d``
    or ``LayerNorm``) → activation → (``Dropout``); the last ``Linear`` is followed by ``output``
    (``identity`` gives logits, for :class:`~chainrule.losses.SoftmaxCrossEntropyLoss`; ``softmax`` or
    ``sigmoid`` give probabilities). ``activation`` is any element-wise activation (``relu``,
    ``leaky_relu``, ``gelu``, ``tanh``, ``sigmoid``, ...). ``init`` defaults to He for the ReLU family,
    Xavier otherwise.
    """
    sizes = list(sizes)
    if len(sizes) < 2:
        raise ConfigError(_("mlp: expected at least an input and an output size, got {got}").format(got=sizes))
    check_choice(_("activation"), activation, activations.names(hidden=True))
    check_choice(_("output activation"), output, activations.names())
    if batchnorm and layernorm:
        raise ConfigError(_("mlp: choose one normalisation, batchnorm or layernorm"))
    if init is None:
        init = LAYERS[activation].cls.init
    rng = make_rng(seed)
    layers: list[Module] = []
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        last = i == len(sizes) - 2
        # BatchNorm's β replaces the bias of the layer before it (a bias there has zero gradient)
        bias = last or not batchnorm
        layers.append(Linear(fan_in, fan_out, bias, init="xavier_uniform" if last else init, seed=rng, dtype=dtype))
        if last:
            break
        if batchnorm:
            layers.append(BatchNorm1d(fan_out, dtype=dtype))
        if layernorm:
            layers.append(LayerNorm(fan_out, dtype=dtype))
        layers.append(LAYERS[activation].cls())
        if dropout:
            layers.append(Dropout(dropout, seed=rng))
    if output != "identity":
        layers.append(LAYERS[output].cls())
    return Sequential(*layers)


def softmax_regression(
    in_features: int,
    classes: int,
    *,
    probabilities: bool = False,
    init: str = "zeros",
    seed: int | np.random.Generator | None = None,
    dtype: DTypeLike = np.float32,
) -> Sequential:
    """Softmax regression: one ``Linear`` from features to class scores.

    By default it outputs logits, to be trained with :class:`~chainrule.losses.SoftmaxCrossEntropyLoss`
    (the fused ``(Ŷ − Y)/m``); ``probabilities=True`` appends a :class:`Softmax` layer. The loss is
    convex in ``W``, so zero weights are a fine, deterministic start.
    """
    layers: list[Module] = [Linear(in_features, classes, init=init, seed=seed, dtype=dtype)]
    if probabilities:
        layers.append(Softmax())
    return Sequential(*layers)
