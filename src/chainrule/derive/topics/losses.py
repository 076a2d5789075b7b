"""MSE after the identity (each scale) and binary cross-entropy after the sigmoid: both give k·(a − y)."""

from __future__ import annotations

from chainrule.derive.core import Derivation, Step, bind, gradient, matrix
from chainrule.derive.topics import forward, topic
from chainrule.i18n import N_, _


@forward("loss:mse")
def mse_forward(sp, loss, pred, target, k):
    return k * sum((p - t) ** 2 for p, t in zip(pred, target, strict=True))


@forward("loss:bce", "loss:bce_with_logits")
def bce_forward(sp, loss, pred, target, k):
    probs = pred.applyfunc(lambda z: 1 / (1 + sp.exp(-z))) if loss.kind == "bce_with_logits" else pred
    return -k * sum(t * sp.log(p) + (1 - t) * sp.log(1 - p) for p, t in zip(probs, target, strict=True))


@topic(
    "mse_identity",
    N_("MSE after the identity: ∂L/∂z = 2k·(ŷ − y), (Ŷ − Y)/m at the scale 1/(2m)"),
    kinds=("loss:mse", "layer:identity"),
)
def mse_identity(sp) -> Derivation:
    m, outputs = 2, 2
    A, Y, Zs = matrix(sp, "a", m, outputs), matrix(sp, "y", m, outputs), matrix(sp, "z", m, outputs)
    k, n = sp.Symbol("k", positive=True), sp.Symbol("m", positive=True)
    loss = k * sum((A[i, j] - Y[i, j]) ** 2 for i in range(m) for j in range(outputs))
    d = sp.Symbol("d", real=True)  # one entry of ŷ − y
    scales = [1 / n, sp.Integer(1), 1 / (2 * n), sp.Rational(1, 2)]
    steps = [
        Step(
            "∂L/∂ŷᵢⱼ = 2k·(ŷᵢⱼ − yᵢⱼ)",
            _("L = k·Σᵢⱼ (ŷᵢⱼ − yᵢⱼ)²: each entry appears in one square; (u²)′ = 2u"),
            gradient(sp, loss, A),
            2 * k * (A - Y),
        ),
        Step(
            "ŷ = z,  ∂ŷ/∂z = 1,  ∂L/∂z = 2k·(ŷ − y)",
            _("the chain rule's local factor is 1"),
            gradient(sp, loss.subs(dict(zip(A, Zs, strict=True))), Zs),
            2 * k * (Zs - Y),
            label=_("the identity"),
        ),
        Step(
            "k = 1/m, 1, 1/(2m), ½:  ∂L/∂z = 2(ŷ − y)/m, 2(ŷ − y), (ŷ − y)/m, ŷ − y",
            _("put each scale's k into 2k: the halves cancel the 2 of the square"),
            sp.Matrix([2 * s * d for s in scales]),
            sp.Matrix([2 * d / n, 2 * d, d / n, d]),
            label=_("the scales mean, sum, half_mean, half_sum"),
        ),
    ]

    def against(rng):
        from chainrule.losses import SCALES, MSELoss

        cases = []
        for scale in SCALES:
            pred, target = rng.standard_normal((m, outputs)), rng.standard_normal((m, outputs))
            loss_ = MSELoss(scale)
            loss_.forward(pred, target)
            cases.append(({**bind(Zs, pred), **bind(Y, target), k: loss_.factor(m)}, loss_.backward()))
        return cases

    return Derivation(
        "mse_identity",
        _("Mean squared error after the identity, at each scale"),
        ["L = k·Σᵢⱼ (ŷᵢⱼ − yᵢⱼ)²,  ŷ = z"],
        steps,
        2 * k * (Zs - Y),
        against,
        notes=[_("With k = 1/(2m) this is the δ = (Ŷ − Y)/m of cross-entropy after softmax and BCE after sigmoid.")],
        about=[_("ŷ = z is the identity; m objects (rows)")],
    )


@topic(
    "bce_sigmoid",
    N_("binary cross-entropy after the sigmoid: ∂L/∂z = k·(σ(z) − y)"),
    kinds=("loss:bce", "loss:bce_with_logits"),
)
def bce_sigmoid(sp) -> Derivation:
    z, y = sp.Symbol("z", real=True), sp.Symbol("y", real=True)
    p = sp.Symbol("p", positive=True)
    s = 1 / (1 + sp.exp(-z))

    def loss(q):
        return -(y * sp.log(q) + (1 - y) * sp.log(1 - q))

    m = 3
    Z, Y = matrix(sp, "z", m, 1), matrix(sp, "y", m, 1)
    k = sp.Symbol("k", positive=True)
    batch = k * sum(
        -(Y[i] * sp.log(1 / (1 + sp.exp(-Z[i]))) + (1 - Y[i]) * sp.log(1 - 1 / (1 + sp.exp(-Z[i])))) for i in range(m)
    )
    result = k * (Z.applyfunc(lambda v: 1 / (1 + sp.exp(-v))) - Y)
    steps = [
        Step(
            "∂L/∂p = −y/p + (1 − y)/(1 − p) = (p − y)/(p(1 − p))",
            _("(ln p)′ = 1/p and (ln(1 − p))′ = −1/(1 − p); one denominator"),
            sp.diff(loss(p), p),
            (p - y) / (p * (1 - p)),
        ),
        Step(
            "∂L/∂z = (p − y)/(p(1 − p)) · p(1 − p) = σ(z) − y",
            _("chain rule with σ′(z) = p(1 − p) (topic sigmoid): the denominator cancels"),
            sp.diff(loss(s), z),
            s - y,
        ),
        Step(
            "L = max(z, 0) − z·y + ln(1 + e^(−|z|))",
            _(
                "the same loss in z, finite for any z: ln σ(z) = −ln(1 + e^(−z)), and for z < 0 "
                "ln(1 + e^(−z)) = −z + ln(1 + e^z)"
            ),
            loss(s),
            sp.Max(z, 0) - z * y + sp.log(1 + sp.exp(-sp.Abs(z))),
            how="numeric",
        ),
        Step(
            "L = k·Σᵢ Lᵢ:  ∂L/∂zᵢ = k·(σ(zᵢ) − yᵢ)",
            _("each object's loss holds its own zᵢ only"),
            gradient(sp, batch, Z),
            result,
            label=_("a batch; k = 1/m gives (a − y)/m"),
        ),
    ]

    def against(rng):
        from chainrule.activations import Sigmoid
        from chainrule.losses import BCELoss, BCEWithLogitsLoss

        cases = []
        for scale in ("mean", "sum"):
            logits, targets = 2 * rng.standard_normal((m, 1)), rng.integers(0, 2, (m, 1)).astype(float)
            fused = BCEWithLogitsLoss(scale)
            fused.forward(logits, targets)
            values = {**bind(Z, logits), **bind(Y, targets), k: fused.factor(m)}
            cases.append((values, fused.backward()))
            sigmoid, loss_ = Sigmoid(), BCELoss(scale)  # the two layers, chained
            loss_.forward(sigmoid.forward(logits), targets)
            cases.append((values, sigmoid.backward(loss_.backward())))
        return cases

    return Derivation(
        "bce_sigmoid",
        _("Binary cross-entropy after the sigmoid"),
        ["p = σ(z) = 1/(1 + e^(−z)),  L = −[y·ln p + (1 − y)·ln(1 − p)],  y ∈ [0, 1]"],
        steps,
        result,
        against,
        domain={p: (0.05, 0.95), y: (0.0, 1.0)},
    )
