"""PyTorch interchange: a chainrule network as its ``torch.nn`` twin and back, and the files of
``chainrule export --format torch``.

Each layer kind names its twin (``Linear`` → ``torch.nn.Linear``), the twin's settings and arrays
(:class:`chainrule.module.Module`: ``torch_name``, ``torch_settings``, ``torch_arrays``): the only
difference of layout is a linear layer's weight, which PyTorch keeps as ``(out, in)``, the transpose of
our ``W``. A trained :class:`~chainrule.training.classifier.Classifier` becomes a :class:`TorchClassifier`:
the ``nn.Sequential`` of its layers (indexed as in chainrule) after the input normalisation.

:func:`from_torch` reads ``nn.Sequential`` models (nested ones are flattened, ``nn.Flatten`` of rows is
left out) made of the kinds chainrule has, eager or TorchScript, so that a PyTorch model's training step
can be run by ``chainrule explain`` and checked. A model saved with ``torch.save(model)`` is a pickle,
which chainrule never loads: :func:`read_torch` reads TorchScript files (``torch.jit.save``), which
``torch.jit.load`` interprets as TorchScript, not Python, and the files of ``--format torch``.
"""

from __future__ import annotations

import inspect
import json
import os
import pprint
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from chainrule import archive
from chainrule._version import __version__
from chainrule.errors import ChainruleError, ConfigError, DataError, check_positive, need
from chainrule.i18n import N_, _
from chainrule.module import Module
from chainrule.network import Sequential
from chainrule.registry import LAYERS
from chainrule.training.classifier import Classifier

torch = need("torch", "torch", "PyTorch interchange")
nn = torch.nn

#: The metadata key of a ``--format torch`` weights file that holds what ``chainrule import`` reads back.
METADATA_KEY = "chainrule"


class TorchClassifier(nn.Module):
    """A network with the input normalisation it was trained with: ``network((raw/scale - mean)/std)``.

    ``network`` is an ``nn.Sequential``; ``classes`` names its outputs; ``mean``, ``std`` (buffers) and
    ``scale`` turn raw inputs (pixels from 0 to 255, say) into what the network reads. ``image_shape``
    (rows, columns) and ``frame_fill`` describe the training images, for chainrule's ``predict``.
    """

    def __init__(
        self,
        network: nn.Sequential,
        mean: torch.Tensor,
        std: torch.Tensor,
        scale: float,
        classes: list[str],
        image_shape: list[int] | None = None,
        frame_fill: float = 1.0,
    ):
        super().__init__()
        self.network = network
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.scale = float(scale)
        self.classes = list(classes)
        self.image_shape = list(image_shape) if image_shape else None
        self.frame_fill = float(frame_fill)

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        """The network's outputs (logits, unless it ends in a softmax) for raw inputs, one row each."""
        return self.network((raw.flatten(1).to(self.mean.dtype) / self.scale - self.mean) / self.std)


# -- out: chainrule → PyTorch -------------------------------------------------------------------------
def torch_layers(network: Sequential) -> list[tuple[str, dict[str, Any]]]:
    """Each layer's twin as ``(torch_name, arguments)``; a :class:`ConfigError` naming the layers that
    have none."""
    missing = [f"{i} ({type(layer).__name__})" for i, layer in enumerate(network.layers) if not layer.torch_name]
    if missing:
        raise ConfigError(_("no PyTorch twin for the layers {layers}").format(layers=", ".join(missing)))
    return [(layer.torch_name, layer.torch_config()) for layer in network.layers]


def torch_state_dict(network: Sequential, prefix: str = "") -> dict[str, NDArray]:
    """The state dict of ``network``'s twin, as NumPy arrays under PyTorch's names (``0.weight``, of
    shape ``(out, in)``)."""
    state = {}
    for i, layer in enumerate(network.layers):
        for ours, array in layer.state_dict().items():
            theirs = layer.torch_arrays[ours]
            state[f"{prefix}{i}.{theirs}"] = np.ascontiguousarray(array.T if ours in layer.torch_transposed else array)
    return state


def to_torch(model: Classifier | Sequential) -> Any:
    """The PyTorch twin of ``model``, with copies of its arrays and each layer's mode (training or
    evaluation): an ``nn.Sequential`` for a network, a :class:`TorchClassifier` for a classifier."""
    network = model.network if isinstance(model, Classifier) else model
    layers = nn.Sequential(*(getattr(nn, name)(**args) for name, args in torch_layers(network)))
    twin, prefix = layers.to(_torch_dtype(network.dtype)), ""
    if isinstance(model, Classifier):
        mean, std = (torch.from_numpy(a.copy()) for a in (model.mean, model.std))
        shape = list(model.image_shape) if model.image_shape else None
        twin = TorchClassifier(layers, mean, std, model.scale, list(model.classes), shape, model.frame_fill)
        prefix = "network."
    tensors = {name: torch.from_numpy(array) for name, array in torch_state_dict(network, prefix).items()}
    twin.load_state_dict(tensors, strict=False)  # BatchNorm's num_batches_tracked is PyTorch's own
    twin.train(network.training)
    for layer, child in zip(network.layers, layers, strict=True):
        child.train(layer.training)
    return twin


def save_torch(model: Classifier, path: str | Path) -> list[Path]:
    """Write ``model``'s twin as a Python file at ``path`` and its weights (a state dict in safetensors)
    beside it, named like it with ``.safetensors``; return both paths."""
    path = Path(path)
    if path.suffix != ".py" or not path.stem.isidentifier():
        raise ConfigError(
            _("the PyTorch export is a Python module: expected a name like model_torch.py, got {name}").format(
                name=path.name
            )
        )
    weights = path.with_suffix(".safetensors")
    layers = torch_layers(model.network)
    state = {
        "mean": model.mean,
        "std": model.std,
        **torch_state_dict(model.network, "network."),
    }
    description = {
        "format": "chainrule-torch",
        "version": 1,
        "layers": [{"type": name, **args} for name, args in layers],
        "dtype": str(model.mean.dtype),
        "scale": float(model.scale),
        "classes": list(model.classes),
        "image_shape": list(model.image_shape) if model.image_shape else None,
        "frame_fill": float(model.frame_fill),
    }
    source = _python_file(model, path, weights, layers, description).encode()
    existed = weights.exists()
    if existed and METADATA_KEY not in _metadata(weights):
        raise ConfigError(
            _("{path} is there and is not the weights of a --format torch export; choose another --out").format(
                path=weights
            )
        )
    archive.write_safetensors(weights, state, {"format": "pt", METADATA_KEY: json.dumps(description)})
    try:
        archive.atomic_write(path, lambda f: f.write(source))
    except BaseException:
        if not existed:  # no weights without the module that reads them
            weights.unlink(missing_ok=True)
        raise
    return [path, weights]


def _metadata(path: Path) -> dict[str, str]:
    """The metadata of a safetensors file, or nothing for a file that is not one."""
    try:
        return archive.read_safetensors(path, N_("safetensors file"))[1]
    except DataError:
        return {}


def _python_file(model: Classifier, path: Path, weights: Path, layers, description: dict[str, Any]) -> str:
    """The source of the Python module of :func:`save_torch`."""
    lines = ",\n".join(
        f"        nn.{name}({', '.join(f'{k}={v!r}' for k, v in args.items())})" for name, args in layers
    )
    dtype = f"torch.{model.mean.dtype}"
    shape = f"images of {model.image_shape[0]}×{model.image_shape[1]}, " if model.image_shape else ""
    recipe = _probabilities_recipe(model)
    title = f"A chainrule classifier in PyTorch: {len(model.classes)} classes, {shape}{model.features} input features"
    return f'''"""{title}.

Written by `chainrule export --format torch` (chainrule {__version__}). The weights are in {weights.name}
beside this file: a PyTorch state dict in safetensors (no pickle). With torch and safetensors installed:

    from {path.stem} import load
    model = load()  # a TorchClassifier, in evaluation mode
    {recipe}  # raw: a float tensor of raw inputs, (n, {model.features})

`model.network` is the nn.Sequential of the layers, indexed as in chainrule (the weight of a linear
layer is W transposed, as PyTorch keeps it); `model` puts the input normalisation x = (raw/scale - mean)/std
in front of it, as chainrule's model does. `save(model, path)` writes the weights with the description
that `chainrule import` reads to bring the model back.
"""

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

WEIGHTS = Path(__file__).with_name({json.dumps(weights.name)})
#: What `chainrule import` reads back, in the weights file's metadata: the layers, the scale, the classes.
DESCRIPTION = {pprint.pformat(description, width=110, sort_dicts=False)}
CLASSES = DESCRIPTION["classes"]


{inspect.getsource(TorchClassifier)}

def build() -> TorchClassifier:
    """The model with its initial weights (``load`` replaces them with the trained ones)."""
    network = nn.Sequential(
{lines},
    )
    mean, std = torch.zeros({model.features}), torch.ones({model.features})
    images = DESCRIPTION["image_shape"], DESCRIPTION["frame_fill"]
    return TorchClassifier(network, mean, std, DESCRIPTION["scale"], CLASSES, *images).to({dtype})


def load(path: str | Path = WEIGHTS) -> TorchClassifier:
    """The trained model, in evaluation mode."""
    model = build()
    model.load_state_dict(load_file(path))
    return model.eval()


def save(model: TorchClassifier, path: str | Path) -> None:
    """Write ``model``'s weights to ``path`` (safetensors), with what `chainrule import` reads: the layers
    (which must be those exported: a model with other layers is saved by torch's own means), the input
    normalisation and the class names of ``model``."""
    if repr(model.network) != repr(build().network):
        raise ValueError("save() writes the weights of the layers exported; this model has other layers")
    images = {{"image_shape": model.image_shape, "frame_fill": model.frame_fill}}
    description = {{**DESCRIPTION, "scale": model.scale, "classes": list(model.classes), **images}}
    metadata = {{"format": "pt", "{METADATA_KEY}": json.dumps(description)}}
    save_file({{name: t.contiguous() for name, t in model.state_dict().items()}}, path, metadata=metadata)


if __name__ == "__main__":
    print(load())
    print("classes:", CLASSES)
'''


def _probabilities_recipe(model: Classifier) -> str:
    """How to get the class probabilities from the exported module's outputs."""
    single = model.network.output_features(model.features) == 1
    if model.network.gives_probabilities:
        return "p = model(raw)  # the probability of class 1" if single else "probabilities = model(raw)"
    return "p = torch.sigmoid(model(raw))  # of class 1" if single else "probabilities = model(raw).softmax(dim=1)"


# -- in: PyTorch → chainrule --------------------------------------------------------------------------
def from_torch(module: Any) -> Sequential | Classifier:
    """The chainrule twin of a PyTorch model, with copies of its arrays and each layer's mode: a
    :class:`Sequential` for an ``nn.Sequential`` (eager or TorchScript), a :class:`Classifier` for a
    :class:`TorchClassifier` (what ``--format torch`` exports).

    Nested ``nn.Sequential`` are flattened and ``nn.Flatten`` is left out (chainrule's inputs are rows
    already); arrays that PyTorch shares (a module used twice, tied weights) are shared in chainrule too.
    A layer without a chainrule kind, with a setting chainrule does not have, or with hooks (which chainrule
    would not run) is a :class:`ConfigError` that names every such layer at once.
    """
    if _torch_type(module) == "TorchClassifier":
        return _classifier(module)
    if _torch_type(module) != "Sequential":
        got = type(module).__name__ + (f" ({module.original_name})" if hasattr(module, "original_name") else "")
        raise ConfigError(
            _(
                "from_torch reads an nn.Sequential, got {got}: write the model as nn.Sequential(...) of the layers "
                "chainrule has"
            ).format(got=got)
        )
    twins = {kind.cls.torch_name: kind.cls for kind in LAYERS.kinds() if kind.cls.torch_name}
    dtype = _dtype(module)
    layers: list[Module] = []
    problems = [
        _("{place} has hooks, which chainrule would not run").format(place=place or _("the model"))
        for place in _hooked(module)
    ]
    owners: dict[tuple, tuple[str, Module, str]] = {}  # a tensor's memory -> the first layer holding it
    unknown = False
    for place, child in _leaves(module, ""):
        name = _torch_type(child)
        if name == "Flatten":
            if (child.start_dim, child.end_dim) != (1, -1):
                problems.append(
                    _("layer {place} {layer}").format(
                        place=place, layer=f"Flatten(start_dim={child.start_dim}, end_dim={child.end_dim})"
                    )
                )
            continue
        if name not in twins:
            problems.append(_("layer {place} {layer}").format(place=place, layer=name))
            unknown = True
            continue
        tensors = dict(child.state_dict())
        try:
            layer = _layer(twins[name], child, tensors, dtype)
        except ChainruleError as err:
            problems.append(_("layer {place} {layer}").format(place=place, layer=err))
            continue
        for ours, theirs in layer.torch_arrays.items():  # arrays PyTorch shares, chainrule shares too
            if ours not in layer.state_dict():
                continue
            key = _memory(tensors[theirs])
            first_place, first, first_name = owners.setdefault(key, (place, layer, ours))
            if first is not layer and not _share(first, first_name, layer, ours):
                problems.append(
                    _("layer {place} shares {array} with layer {first} in a way chainrule cannot").format(
                        place=place, array=theirs, first=first_place
                    )
                )
        layers.append(layer)
    if problems:
        if unknown:
            message = _(
                "cannot import this PyTorch model: {problems}. chainrule has {known} (and Flatten of rows, left out)"
            )
        else:
            message = _("cannot import this PyTorch model: {problems}")
        raise ConfigError(message.format(problems="; ".join(map(str, problems)), known=", ".join(sorted(twins))))
    if not layers:
        raise ConfigError(_("cannot import an empty nn.Sequential"))
    return Sequential(*layers)


def _memory(tensor: Any) -> tuple:
    """Where a tensor's numbers are: two tensors with the same are one array (tied weights, a module used
    twice; TorchScript gives a new Python object at each access, so ``is`` cannot tell)."""
    return (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape), tuple(tensor.stride()))


def _share(first: Module, first_name: str, layer: Module, name: str) -> bool:
    """Make ``layer``'s array ``name`` the very array ``first_name`` of ``first`` (a parameter: the same
    :class:`Parameter`, whose gradient both add to; a buffer: the same NumPy array, which both update),
    if they are laid out alike; whether that could be done."""
    if (name in layer.torch_transposed) != (first_name in first.torch_transposed):
        return False
    for ours, theirs in ((layer.params, first.params), (layer.buffers, first.buffers)):
        if name in ours and first_name in theirs and ours[name].shape == theirs[first_name].shape:
            ours[name] = theirs[first_name]
            return True
    return False


def _classifier(module: Any) -> Classifier:
    """The :class:`Classifier` of a :class:`TorchClassifier`."""
    network = from_torch(module.network)
    scale = check_positive("TorchClassifier scale", float(module.scale))
    mean, std = (t.detach().cpu().numpy().astype(network.dtype) for t in (module.mean, module.std))
    shape, fill = getattr(module, "image_shape", None), float(getattr(module, "frame_fill", 1.0))
    if shape is not None and (len(shape) != 2 or not all(isinstance(n, int) and n > 0 for n in shape)):
        raise ConfigError(_("TorchClassifier image_shape: expected (rows, columns), got {got!r}").format(got=shape))
    if not 0 < fill <= 1:
        raise ConfigError(_("TorchClassifier frame_fill: expected a number in (0, 1], got {got}").format(got=fill))
    classes = tuple(str(c) for c in module.classes)
    return Classifier(network, mean, std, scale, classes, tuple(shape) if shape else None, fill)


def _layer(cls: type[Module], child: Any, theirs: dict[str, Any], dtype: np.dtype) -> Module:
    """The chainrule layer of kind ``cls`` that computes what the PyTorch module ``child`` (whose state
    dict is ``theirs``) computes."""
    try:
        config = cls.config_from_torch(child)
    except AttributeError:  # a traced TorchScript module keeps its arrays, not its settings
        raise ConfigError(
            _(
                "{layer}: its settings are not in the model (torch.jit.trace keeps none; save the model with "
                "torch.jit.script)"
            ).format(layer=cls.torch_name)
        ) from None
    layer = cls.from_config(config, dtype=dtype, init="zeros")
    state = {}
    try:
        for ours, name in cls.torch_arrays.items():
            if ours in layer.state_dict():
                array = theirs[name].detach().to(_torch_dtype(dtype)).cpu().numpy()
                state[ours] = array.T if ours in cls.torch_transposed else array
    except (RuntimeError, NotImplementedError, TypeError) as err:
        raise ConfigError(
            _("{layer}: its arrays cannot be read ({error})").format(
                layer=cls.torch_name, error=str(err).splitlines()[0]
            )
        ) from None
    layer.load_state_dict(state)
    layer.training = bool(child.training)
    return layer


def _leaves(module: Any, prefix: str):
    """``(place, module)`` for each layer of a Sequential, nested Sequentials opened (places ``4.1``); a
    module that is there twice is given twice (``named_children`` would give it once)."""
    for name, child in module._modules.items():
        if _torch_type(child) == "Sequential":
            yield from _leaves(child, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", child


def _hooked(module: Any, place: str = ""):
    """The places of the modules in ``module`` (itself included) that have hooks (TorchScript keeps the
    forward ones)."""
    if isinstance(module, torch.jit.ScriptModule):
        hooked = module._c._get_forward_hooks() or module._c._get_forward_pre_hooks()
    else:
        hooks = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
        hooked = any(getattr(module, name, None) for name in hooks)
    if hooked:
        yield place
    for name, child in getattr(module, "_modules", {}).items():
        yield from _hooked(child, f"{place}.{name}" if place else f"layer {name}")


def _torch_type(module: Any) -> str:
    """The class name of a module of ``torch.nn`` (eager or TorchScript), or of this module's
    :class:`TorchClassifier`; for any other class, its name with its module (``mymodel.Block``), which no
    kind has."""
    if isinstance(module, torch.jit.ScriptModule):
        qualified = module._c.qualified_name  # "__torch__.torch.nn.modules.linear.Linear"
        name = module.original_name
        ours = qualified.endswith(f".{TorchClassifier.__name__}")
        return name if qualified.startswith("__torch__.torch.nn.") or ours else qualified
    cls = type(module)
    if cls is TorchClassifier or (cls.__name__ == "TorchClassifier" and hasattr(module, "network")):
        return "TorchClassifier"  # ours, or the same class in an exported Python file
    return cls.__name__ if getattr(nn, cls.__name__, None) is cls else f"{cls.__module__}.{cls.__name__}"


def _dtype(module: Any) -> np.dtype:
    """float64 for a model with float64 parameters, else float32 (half precision is widened)."""
    kinds = {t.dtype for t in module.state_dict().values() if t.is_floating_point()}
    return np.dtype(np.float64 if torch.float64 in kinds else np.float32)


def _torch_dtype(dtype: np.dtype) -> Any:
    return torch.float64 if np.dtype(dtype) == np.float64 else torch.float32


def read_torch(path: str | Path) -> Any:
    """The PyTorch model in ``path``: a TorchScript file (``torch.jit.save``), or the weights of a
    ``--format torch`` export as a :class:`TorchClassifier`, rebuilt from the description in their
    metadata."""
    path = Path(path)
    with archive.open_regular(path, N_("a TorchScript file or a --format torch export")) as f:
        is_zip = zipfile.is_zipfile(f)
    if is_zip:
        return _read_torchscript(path)
    tensors, metadata = archive.read_safetensors(path, N_("PyTorch export"))
    twins = {kind.cls.torch_name for kind in LAYERS.kinds()}
    try:
        description = json.loads(metadata[METADATA_KEY])
        specs = [dict(spec) for spec in description["layers"]]
        unknown = [spec["type"] for spec in specs if spec["type"] not in twins]
        if unknown:
            raise ValueError(f"unknown layers {unknown}")
        dtype = _torch_dtype(np.dtype(description["dtype"]))
        features = tensors["mean"].shape[0]
        images = description.get("image_shape"), description.get("frame_fill", 1.0)
        # Built on the meta device, the layers take no memory for the sizes the description declares: the
        # file's arrays replace their tensors, shapes checked (a size of 0 would warn; it fails there).
        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            layers = [getattr(nn, spec.pop("type"))(**spec) for spec in specs]
            model = TorchClassifier(
                nn.Sequential(*layers), torch.zeros(features), torch.ones(features), description["scale"], [], *images
            ).to(dtype)
        model.classes = [str(c) for c in description["classes"]]
        model.load_state_dict({name: torch.from_numpy(a) for name, a in tensors.items()}, assign=True)
        for module in model.modules():  # what the file does not hold: BatchNorm's count of batches
            for name, buffer in module.named_buffers(recurse=False):
                if buffer.is_meta:
                    setattr(module, name, torch.zeros_like(buffer, device="cpu"))
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError, IndexError, RecursionError) as err:
        raise DataError(
            _(
                "{path}: not a PyTorch export of chainrule (`chainrule export --format torch`) that can be read "
                "({kind}: {error})"
            ).format(path=path, kind=type(err).__name__, error=" ".join(str(err).split())[:300])
        ) from None
    return model.eval()


def _read_torchscript(path: Path) -> Any:
    """The TorchScript model in the zip archive at ``path``; what else a zip can be is named."""
    with archive.open_regular(path, N_("a TorchScript file")) as f, zipfile.ZipFile(f) as archive_file:
        entries = archive.zip_entries(archive_file, path, os.fstat(f.fileno()).st_size)  # torch expands them all
        if any(info.filename.endswith(".npy") for info in entries):
            raise DataError(
                _(
                    "{path}: an .npz archive, not a PyTorch model; a chainrule model file needs no import "
                    "(chainrule.load, predict and export read it)"
                ).format(path=path)
            )
    try:
        return torch.jit.load(str(path), map_location="cpu")
    except (RuntimeError, ValueError, OSError):
        raise DataError(
            _(
                "{path}: not a TorchScript file. A model saved with torch.save(model) is a pickle, which chainrule "
                "never loads: save it with torch.jit.script(model).save(path), or pass the model to "
                "chainrule.from_torch in Python"
            ).format(path=path)
        ) from None
