"""PyTorch twins of our networks, losses and optimizers, for the parity tests (float64).

One table entry per registered kind; a test fails on a kind that has none, so a new kind cannot go
unchecked against PyTorch.
"""

import chainrule as cr

#: Layer kind -> (the torch.nn module computing the same, our parameter names as its attributes).
LAYERS = {
    "linear": (
        lambda nn, layer: nn.Linear(layer.in_features, layer.out_features, bias="b" in layer.params),
        {"W": "weight", "b": "bias"},
    ),
    "batchnorm": (
        lambda nn, layer: nn.BatchNorm1d(layer.num_features, eps=layer.eps, momentum=layer.momentum),
        {"gamma": "weight", "beta": "bias", "running_mean": "running_mean", "running_var": "running_var"},
    ),
    "layernorm": (
        lambda nn, layer: nn.LayerNorm(layer.normalized_shape, eps=layer.eps),
        {"gamma": "weight", "beta": "bias"},
    ),
    "dropout": (lambda nn, layer: nn.Dropout(layer.p), {}),
    "identity": (lambda nn, layer: nn.Identity(), {}),
    "sigmoid": (lambda nn, layer: nn.Sigmoid(), {}),
    "tanh": (lambda nn, layer: nn.Tanh(), {}),
    "relu": (lambda nn, layer: nn.ReLU(), {}),
    "leaky_relu": (lambda nn, layer: nn.LeakyReLU(layer.alpha), {}),
    "gelu": (lambda nn, layer: nn.GELU(), {}),
    "silu": (lambda nn, layer: nn.SiLU(), {}),
    "softmax": (lambda nn, layer: nn.Softmax(dim=1), {}),
}


def to_torch(torch, layer):
    """The PyTorch module that computes what ``layer`` computes, with the same parameters and buffers.
    Torch keeps a linear layer's weight as (out, in), the transpose of ours."""
    nn = torch.nn
    if isinstance(layer, cr.Sequential):
        return nn.Sequential(*(to_torch(torch, child) for child in layer.layers))
    make, names = LAYERS[layer.kind]
    mirror = make(nn, layer)
    state = layer.state_dict()
    with torch.no_grad():
        for ours, theirs in names.items():
            if ours in state:  # a linear layer without a bias has no "b"
                array = state[ours]
                getattr(mirror, theirs).copy_(torch.from_numpy((array.T if ours == "W" else array).copy()))
    return mirror.train(layer.training)


def torch_arrays(mirror, ours, of=lambda t: t.grad):
    """``of(tensor)`` for each of ``mirror``'s parameters, named and laid out as ours: the gradients by
    default, ``of=lambda t: t.detach()`` for the values."""
    arrays = {}
    for i, (layer, child) in enumerate(zip(ours.layers, mirror, strict=True)):
        for name, theirs in LAYERS[layer.kind][1].items():
            if name in layer.params:
                array = of(getattr(child, theirs)).numpy()
                arrays[f"{i}.{name}"] = array.T if name == "W" else array
    return arrays


def torch_loss(torch, name, scale, pred, target, n):
    F = torch.nn.functional
    half, per_object = cr.losses.SCALES[scale]
    k = half / n if per_object else half
    if name == "mse":
        return k * F.mse_loss(pred, target, reduction="sum")
    if name == "bce":
        return k * F.binary_cross_entropy(pred, target, reduction="sum")
    if name == "bce_with_logits":
        return k * F.binary_cross_entropy_with_logits(pred, target, reduction="sum")
    if name == "cross_entropy":  # on probabilities: the negative log-likelihood of their logarithm
        return k * (
            F.nll_loss(torch.log(pred), target, reduction="sum")
            if target.ndim == 1
            else -(target * torch.log(pred)).sum()
        )
    return k * F.cross_entropy(pred, target, reduction="sum")


def torch_optimizer(torch, name, settings, params):
    """``torch.optim``'s optimizer for our registered ``name`` with ``settings`` (our names)."""
    s = dict(settings)
    optim = torch.optim
    if name in ("adam", "adamw"):
        cls = optim.AdamW if name == "adamw" else optim.Adam
        s.pop("decoupled", None)
        return cls(params, lr=s["lr"], betas=(s["beta1"], s["beta2"]), eps=s["eps"], weight_decay=s["weight_decay"])
    if name == "rmsprop":
        return optim.RMSprop(params, **s)
    return optim.SGD(params, **s)
