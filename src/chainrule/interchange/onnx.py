"""A trained model as an ONNX graph, for ONNX Runtime and the other engines that read ONNX.

The graph computes what :meth:`Classifier.outputs` computes, in evaluation mode: the input normalisation
``x = (raw/scale − mean)/std``, then each layer as its class writes it (:meth:`Module.to_onnx`:
``Gemm`` for a linear layer, ``BatchNormalization`` with the running statistics, ``LayerNormalization``,
``Relu``, ...; dropout is the identity). With ``probabilities`` it ends in the class probabilities of
:meth:`Classifier.predict_proba` (a softmax, or for a single output the two columns ``1 − σ(z)`` and
``σ(z)``).

The input is named ``input``: raw features, shape ``(batch, features)``, in the model's float type; the
output ``logits``, or ``probabilities`` when they are. Constants are named as in the state dict
(``0.W``, ``1.running_mean``; ``input.mean``), the class names are in the model's metadata (``classes``,
JSON). Every graph is checked with :func:`onnx.checker.check_model` before it is written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from chainrule._version import __version__
from chainrule.archive import atomic_write
from chainrule.errors import ChainruleError, ConfigError, need
from chainrule.i18n import _
from chainrule.network import Sequential
from chainrule.training.classifier import Classifier

onnx = need("onnx", "onnx", "ONNX export")
from onnx import helper, numpy_helper  # noqa: E402  (after the check that onnx is there)

#: The operator set: 17 has LayerNormalization, and every ONNX Runtime since 1.14 runs it.
OPSET = 17


class Graph:
    """An ONNX graph being built: constants (initializers) and nodes, each value named once.

    Names are those of the layer being written (``scope``, e.g. ``"2."``) followed by the constant's
    name or the operator's (``2.W``, ``2.Gemm``), numbered when taken twice.
    """

    def __init__(self, dtype: DTypeLike) -> None:
        self.dtype = np.dtype(dtype)
        self.scope = ""
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._taken: set[str] = set()

    def name(self, base: str) -> str:
        """``scope + base``, or with ``_2``, ``_3``, ... after it if that is taken."""
        name, k = self.scope + base, 1
        while name in self._taken:
            k += 1
            name = f"{self.scope}{base}_{k}"
        self._taken.add(name)
        return name

    def constant(self, value: Any, name: str) -> str:
        """A constant array (or number) in the graph's float type; returns its name."""
        array = np.asarray(value, dtype=self.dtype)
        self.initializers.append(numpy_helper.from_array(array, self.name(name)))
        return self.initializers[-1].name

    def node(self, op: str, inputs: list[str], **attributes: Any) -> str:
        """A node of operator ``op`` on the values ``inputs``; returns the name of its one output."""
        output = self.name(op)
        self.nodes.append(helper.make_node(op, inputs, [output], name=output, **attributes))
        return output


def to_onnx(model: Classifier | Sequential, *, probabilities: bool = False) -> Any:
    """``model`` as a checked ``onnx.ModelProto`` (see the module's description); a network without the
    input normalisation of a :class:`Classifier` reads its inputs as they are."""
    classifier = model if isinstance(model, Classifier) else Classifier.of(model)
    network = classifier.network
    graph = Graph(classifier.mean.dtype)
    x = "input"
    graph.scope = "input."
    x = graph.node("Div", [x, graph.constant(classifier.scale, "scale")])
    x = graph.node("Sub", [x, graph.constant(classifier.mean, "mean")])
    x = graph.node("Div", [x, graph.constant(classifier.std, "std")])
    for i, layer in enumerate(network.layers):
        graph.scope = f"{i}."
        try:
            x = layer.to_onnx(graph, x)
        except ChainruleError as err:
            raise ConfigError(_("layer {index}: {error}").format(index=i, error=err)) from None
    graph.scope = ""
    outputs = network.output_features(classifier.features)
    gives = network.gives_probabilities
    if probabilities and outputs == 1:  # predict_proba's two columns, [1 − p, p]
        p = x if gives else graph.node("Sigmoid", [x])
        x = graph.node("Concat", [graph.node("Sub", [graph.constant(1.0, "one"), p]), p], axis=1)
        outputs = 2
    elif probabilities and not gives:
        x = graph.node("Softmax", [x], axis=1)
    name = "probabilities" if probabilities or gives else "logits"
    graph.nodes.append(helper.make_node("Identity", [x], [name], name=name))

    element = helper.np_dtype_to_tensor_dtype(graph.dtype)
    proto = helper.make_model(
        helper.make_graph(
            graph.nodes,
            "chainrule",
            [helper.make_tensor_value_info("input", element, ["batch", classifier.features])],
            [helper.make_tensor_value_info(name, element, ["batch", outputs])],
            graph.initializers,
            doc_string=f"{classifier!r}. Input: raw features (batch, {classifier.features}); output: {name}.",
        ),
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="chainrule",
        producer_version=__version__,
    )
    proto.ir_version = 8  # the IR of opset 17, which every runtime reading opset 17 reads
    helper.set_model_props(
        proto,
        {
            "classes": json.dumps(list(classifier.classes)),
            "image_shape": json.dumps(list(classifier.image_shape) if classifier.image_shape else None),
        },
    )
    onnx.checker.check_model(proto, full_check=True)
    return proto


def save_onnx(model: Classifier | Sequential, path: str | Path, *, probabilities: bool = False) -> None:
    """Write :func:`to_onnx`'s graph of ``model`` to ``path``, atomically."""
    blob = to_onnx(model, probabilities=probabilities).SerializeToString()
    atomic_write(path, lambda f: f.write(blob))
