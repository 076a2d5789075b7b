"""The derivatives of the element-wise activations, each ending in the backward pass ``∂L/∂z = g ⊙ f′(z)``."""

from __future__ import annotations

import numpy as np

from chainrule.derive.core import Derivation, Step
from chainrule.derive.topics import forward, topic
from chainrule.i18n import N_, _

#: Each element-wise activation as a SymPy function of one entry ``z`` (and its layer, for its settings).
ELEMENT_WISE = {
    "identity": lambda sp, z, layer: z,
    "sigmoid": lambda sp, z, layer: 1 / (1 + sp.exp(-z)),
    "tanh": lambda sp, z, layer: sp.tanh(z),
    "relu": lambda sp, z, layer: sp.Piecewise((z, z > 0), (0, True)),
    "leaky_relu": lambda sp, z, layer: sp.Piecewise((z, z > 0), (layer.alpha * z, True)),
    "gelu": lambda sp, z, layer: z * (1 + sp.erf(z / sp.sqrt(2))) / 2,
    "silu": lambda sp, z, layer: z / (1 + sp.exp(-z)),
}


@forward(*(f"layer:{kind}" for kind in ELEMENT_WISE))
def element_wise_forward(sp, layer, x, params):
    return x.applyfunc(lambda z: ELEMENT_WISE[layer.kind](sp, z, layer))


def chain_rule(sp, f, local, local_shown: str, g, z) -> Step:
    """The last step of every element-wise activation: ``∂L/∂z = g ⊙ f′(z)``, with ``g = ∂L/∂a``."""
    return Step(
        f"∂L/∂z = g ⊙ {local_shown}",
        _("chain rule, element by element: each a depends on its own z only (g = ∂L/∂a, the upstream gradient)"),
        sp.diff(g * f, z),
        g * local,
    )


def element_wise_derivation(kind: str, title: str, given, steps, result, z, g, settings=None, **more) -> Derivation:
    """The derivation of an element-wise activation, whose result ``g·f′(z)`` is compared with chainrule's
    backward pass of ``kind`` (built with ``settings``) at random ``z`` and ``g``."""

    def cases(rng: np.random.Generator):
        from chainrule.registry import LAYERS

        layer = LAYERS[kind].cls(**(settings or {}))
        zs, gs = 2 * rng.standard_normal((1, 12)), rng.standard_normal((1, 12))
        layer.forward(zs)
        grads = layer.backward(gs)
        return [({z: zv, g: gv}, lib) for zv, gv, lib in zip(zs[0], gs[0], grads[0], strict=True)]

    return Derivation(kind, title, given, steps, result, cases, **more)


def _symbols(sp):
    return sp.Symbol("z", real=True), sp.Symbol("g", real=True)


@topic("sigmoid", N_("σ′(z) = σ(z)(1 − σ(z)): the backward pass needs only the output"), kinds=("layer:sigmoid",))
def sigmoid(sp) -> Derivation:
    z, g = _symbols(sp)
    s = 1 / (1 + sp.exp(-z))
    local = s * (1 - s)
    steps = [
        Step(
            "σ′(z) = e^(−z)/(1 + e^(−z))²",
            _("chain rule on (1 + e^(−z))⁻¹: −(1 + e^(−z))⁻² times the inner derivative −e^(−z)"),
            sp.diff(s, z),
            sp.exp(-z) / (1 + sp.exp(-z)) ** 2,
        ),
        Step(
            "σ′(z) = 1/(1 + e^(−z)) · e^(−z)/(1 + e^(−z))",
            _("split the square into two factors"),
            sp.exp(-z) / (1 + sp.exp(-z)) ** 2,
            1 / (1 + sp.exp(-z)) * (sp.exp(-z) / (1 + sp.exp(-z))),
        ),
        Step(
            "e^(−z)/(1 + e^(−z)) = (1 + e^(−z) − 1)/(1 + e^(−z)) = 1 − σ(z)",
            _("add and take away 1 in the numerator"),
            sp.exp(-z) / (1 + sp.exp(-z)),
            1 - s,
        ),
        Step(
            "σ′(z) = σ(z)(1 − σ(z)) = a(1 − a)",
            _("the first factor is σ(z), the second 1 − σ(z); with a = σ(z) the forward output is all it needs"),
            sp.diff(s, z),
            local,
        ),
        chain_rule(sp, s, local, "a(1 − a)", g, z),
    ]
    return element_wise_derivation(
        "sigmoid",
        _("The derivative of the sigmoid"),
        ["σ(z) = 1/(1 + e^(−z)),  a = σ(z)"],
        steps,
        g * local,
        z,
        g,
    )


@topic("tanh", N_("tanh′(z) = 1 − tanh²(z)"), kinds=("layer:tanh",))
def tanh(sp) -> Derivation:
    z, g = _symbols(sp)
    up, down = sp.exp(z) - sp.exp(-z), sp.exp(z) + sp.exp(-z)
    t = up / down
    local = 1 - t**2
    steps = [
        Step(
            "tanh′(z) = ((e^z + e^(−z))² − (e^z − e^(−z))²)/(e^z + e^(−z))²",
            _("quotient rule: the numerator's derivative is e^z + e^(−z), the denominator's e^z − e^(−z)"),
            sp.diff(t, z),
            (down**2 - up**2) / down**2,
        ),
        Step(
            "tanh′(z) = 1 − (e^z − e^(−z))²/(e^z + e^(−z))² = 1 − tanh²(z)",
            _("divide each term of the numerator by the denominator"),
            (down**2 - up**2) / down**2,
            local,
        ),
        Step(
            "tanh(z) = 2σ(2z) − 1,  tanh′(z) = 2·σ′(2z)·2 = 4σ(2z)(1 − σ(2z)) = 1 − tanh²(z)",
            _("the same result by another road: the sigmoid's derivative (topic sigmoid) and the chain rule"),
            sp.Matrix([2 / (1 + sp.exp(-2 * z)) - 1, sp.diff(2 / (1 + sp.exp(-2 * z)) - 1, z)]),
            sp.Matrix([t, 4 / (1 + sp.exp(-2 * z)) * (1 - 1 / (1 + sp.exp(-2 * z)))]),
        ),
        Step(
            "tanh′(z) = 1 − a²",
            _("with a = tanh(z), the forward output"),
            sp.diff(sp.tanh(z), z),
            1 - sp.tanh(z) ** 2,
        ),
        chain_rule(sp, t, local, "(1 − a²)", g, z),
    ]
    return element_wise_derivation(
        "tanh",
        _("The derivative of tanh"),
        ["tanh(z) = (e^z − e^(−z))/(e^z + e^(−z)),  a = tanh(z)"],
        steps,
        g * (1 - sp.tanh(z) ** 2),
        z,
        g,
    )


@topic("relu", N_("ReLU′(z) = [z > 0], and 0 at z = 0"), kinds=("layer:relu",))
def relu(sp) -> Derivation:
    z, g, h = (*_symbols(sp), sp.Symbol("h", real=True))
    step = sp.Piecewise((1, z > 0), (0, True))
    steps = [
        Step(
            "ReLU′(z) = 1 (z > 0),  ReLU′(z) = 0 (z < 0)",
            _("for z > 0, max(0, z) = z; for z < 0 it is the constant 0"),
            sp.diff(sp.Max(0, z), z),
            step,
        ),
        Step(
            "max(0, h)/h → 0 (h → 0, h < 0),  max(0, h)/h → 1 (h → 0, h > 0)",
            _("the one-sided slopes at 0 differ: ReLU has no derivative there; chainrule, like PyTorch, uses 0"),
            sp.Matrix([sp.limit(sp.Max(0, h) / h, h, 0, "-"), sp.limit(sp.Max(0, h) / h, h, 0, "+")]),
            sp.Matrix([0, 1]),
            label=_("the one-sided slopes at 0"),
        ),
        Step(
            "∂L/∂z = g ⊙ [z > 0]",
            _("chain rule, element by element; [z > 0] is 1 where z > 0 and 0 elsewhere (z = 0 included)"),
            sp.diff(g * sp.Max(0, z), z),
            g * step,
        ),
    ]
    return element_wise_derivation(
        "relu",
        _("The derivative of ReLU"),
        ["ReLU(z) = max(0, z)"],
        steps,
        g * step,
        z,
        g,
    )


@topic("leaky_relu", N_("LeakyReLU′(z) = [z > 0] + α·[z ≤ 0]"), kinds=("layer:leaky_relu",))
def leaky_relu(sp) -> Derivation:
    z, g = _symbols(sp)
    alpha = sp.Symbol("α", positive=True)
    f = sp.Piecewise((z, z > 0), (alpha * z, True))
    local = sp.Piecewise((1, z > 0), (alpha, True))
    steps = [
        Step(
            "max(αz, z) = z (z > 0),  max(αz, z) = αz (z ≤ 0)",
            _("for 0 ≤ α < 1, αz < z exactly where z > 0"),
            sp.Max(alpha * z, z),
            f,
            how="numeric",
        ),
        Step(
            "LeakyReLU′(z) = [z > 0] + α·[z ≤ 0]",
            _("differentiate each piece; at z = 0 (no derivative) chainrule, like PyTorch, takes α"),
            sp.diff(f, z),
            local,
        ),
        chain_rule(sp, f, local, "([z > 0] + α·[z ≤ 0])", g, z),
    ]
    alpha_value = 0.2
    return element_wise_derivation(
        "leaky_relu",
        _("The derivative of LeakyReLU"),
        ["LeakyReLU(z) = max(αz, z),  0 ≤ α < 1"],
        steps,
        (g * local).subs(alpha, alpha_value),
        z,
        g,
        settings={"alpha": alpha_value},
        domain={alpha: (0.01, 0.9)},
        notes=[_("The notes define the function with z ≥ 0 and leave f′(0) undefined; chainrule takes α at 0.")],
    )


@topic("gelu", N_("GELU′(z) = Φ(z) + z·φ(z)"), kinds=("layer:gelu",))
def gelu(sp) -> Derivation:
    z, g = _symbols(sp)
    cdf = (1 + sp.erf(z / sp.sqrt(2))) / 2
    pdf = sp.exp(-(z**2) / 2) / sp.sqrt(2 * sp.pi)
    local = cdf + z * pdf
    steps = [
        Step(
            "Φ′(z) = ½·(2/√π)·e^(−z²/2)·(1/√2) = φ(z)",
            _("erf′(u) = (2/√π)·e^(−u²), times the inner derivative 1/√2 (chain rule)"),
            sp.diff(cdf, z),
            pdf,
        ),
        Step("GELU′(z) = Φ(z) + z·φ(z)", _("product rule on z·Φ(z)"), sp.diff(z * cdf, z), local),
        chain_rule(sp, z * cdf, local, "(Φ(z) + z·φ(z))", g, z),
    ]
    return element_wise_derivation(
        "gelu",
        _("The derivative of GELU (exact)"),
        ["GELU(z) = z·Φ(z)", "Φ(z) = ½·(1 + erf(z/√2)),  φ(z) = e^(−z²/2)/√(2π)"],
        steps,
        g * local,
        z,
        g,
    )


@topic("silu", N_("SiLU′(z) = σ(z)(1 + z(1 − σ(z)))"), kinds=("layer:silu",))
def silu(sp) -> Derivation:
    z, g = _symbols(sp)
    s = 1 / (1 + sp.exp(-z))
    local = s * (1 + z * (1 - s))
    steps = [
        Step("SiLU′(z) = σ(z) + z·σ′(z)", _("product rule on z·σ(z)"), sp.diff(z * s, z), s + z * sp.diff(s, z)),
        Step(
            "SiLU′(z) = σ(z) + z·σ(z)(1 − σ(z)) = σ(z)(1 + z(1 − σ(z)))",
            _("σ′ = σ(1 − σ) (topic sigmoid), then take σ(z) out"),
            s + z * sp.diff(s, z),
            local,
        ),
        chain_rule(sp, z * s, local, "σ(z)(1 + z(1 − σ(z)))", g, z),
    ]
    return element_wise_derivation(
        "silu",
        _("The derivative of SiLU"),
        ["SiLU(z) = z·σ(z),  σ(z) = 1/(1 + e^(−z))"],
        steps,
        g * local,
        z,
        g,
    )
