"""PyTorch twins of our networks, losses and optimizers, for the parity tests (float64).

A layer's twin is the one its kind declares (``torch_name``, ``torch_settings``, ``torch_arrays``); a
test fails on a kind without one, so a new kind cannot go unchecked against PyTorch.
"""

import chainrule as cr


def to_torch(layer):
    """The PyTorch module that computes what ``layer`` (a network, or one layer) computes, with the same
    parameters and buffers and each layer's mode: chainrule's own export (:func:`chainrule.to_torch`), from
    the twin each kind declares. The parity tests compare what the two compute, so a twin that does not
    compute the same (a setting lost on the way) fails them."""
    net = layer if isinstance(layer, cr.Sequential) else cr.Sequential(layer)
    return cr.to_torch(net)


def torch_arrays(mirror, ours, of=lambda t: t.grad):
    """``of(tensor)`` for each of ``mirror``'s parameters, named and laid out as ours: the gradients by
    default, ``of=lambda t: t.detach()`` for the values."""
    arrays = {}
    for i, (layer, child) in enumerate(zip(ours.layers, mirror, strict=True)):
        for name, theirs in layer.torch_arrays.items():
            if name in layer.params:
                array = of(getattr(child, theirs)).numpy()
                arrays[f"{i}.{name}"] = array.T if name in layer.torch_transposed else array
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
