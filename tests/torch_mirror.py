"""PyTorch twins of our networks and losses, for the parity tests (float64)."""

import chainrule as cr


def to_torch(torch, layer):
    """The PyTorch module that computes what ``layer`` computes, with the same parameters."""
    nn = torch.nn
    if isinstance(layer, cr.Sequential):
        return nn.Sequential(*(to_torch(torch, child) for child in layer.layers))
    if isinstance(layer, cr.Linear):
        mirror = nn.Linear(layer.in_features, layer.out_features, bias="b" in layer.params)
        with torch.no_grad():
            mirror.weight.copy_(torch.from_numpy(layer.params["W"].data.T.copy()))  # torch keeps (out, in)
            if "b" in layer.params:
                mirror.bias.copy_(torch.from_numpy(layer.params["b"].data))
        return mirror
    if isinstance(layer, cr.BatchNorm1d):
        mirror = nn.BatchNorm1d(layer.num_features, eps=layer.eps, momentum=layer.momentum)
        with torch.no_grad():
            mirror.weight.copy_(torch.from_numpy(layer.params["gamma"].data))
            mirror.bias.copy_(torch.from_numpy(layer.params["beta"].data))
            mirror.running_mean.copy_(torch.from_numpy(layer.buffers["running_mean"]))
            mirror.running_var.copy_(torch.from_numpy(layer.buffers["running_var"]))
        return mirror.train(layer.training)
    simple = {cr.Identity: nn.Identity(), cr.Sigmoid: nn.Sigmoid(), cr.Tanh: nn.Tanh(), cr.ReLU: nn.ReLU(),
              cr.Softmax: nn.Softmax(dim=1)}
    if isinstance(layer, cr.LeakyReLU):
        return nn.LeakyReLU(layer.alpha)
    return simple[type(layer)]


def torch_arrays(mirror, ours, of=lambda t: t.grad):
    """``of(tensor)`` for each of ``mirror``'s parameters, named and laid out as ours: the gradients by
    default, ``of=lambda t: t.detach()`` for the values. Torch keeps weights as (out, in)."""
    arrays = {}
    for i, (layer, child) in enumerate(zip(ours.layers, mirror, strict=True)):
        names = {cr.Linear: ("W", "b"), cr.BatchNorm1d: ("gamma", "beta")}.get(type(layer), ())
        for name, tensor in zip(names, (getattr(child, "weight", None), getattr(child, "bias", None))):
            if tensor is not None:
                array = of(tensor).numpy()
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
        return k * (F.nll_loss(torch.log(pred), target, reduction="sum") if target.ndim == 1
                    else -(target * torch.log(pred)).sum())
    return k * F.cross_entropy(pred, target, reduction="sum")
