"""The softmax: its Jacobian (both cases), its invariance to a shift, and cross-entropy after it → Ŷ − Y."""

from __future__ import annotations

import numpy as np

from chainrule.derive.core import Derivation, Step, bind, gradient, matrix, softmax_rows
from chainrule.derive.topics import forward, topic
from chainrule.i18n import N_, _

CLASSES = 3


@forward("layer:softmax")
def softmax_forward(sp, layer, x, params):
    return softmax_rows(sp, x)


@forward("loss:cross_entropy", "loss:softmax_cross_entropy")
def cross_entropy_forward(sp, loss, pred, target, k):
    probs = softmax_rows(sp, pred) if loss.kind == "softmax_cross_entropy" else pred
    return -k * sum(t * sp.log(p) for t, p in zip(target, probs, strict=True) if t != 0)


def one_hot_rows(rng: np.random.Generator, rows: int, classes: int) -> np.ndarray:
    return np.eye(classes)[rng.integers(0, classes, rows)]


@topic(
    "softmax_jacobian",
    N_("∂ŷₖ/∂zⱼ = ŷₖ(Δₖⱼ − ŷⱼ), both cases; the backward pass ŷ ⊙ (g − Σ g ⊙ ŷ)"),
    kinds=("layer:softmax",),
)
def softmax_jacobian(sp) -> Derivation:
    z = matrix(sp, "z", 1, CLASSES)
    g = matrix(sp, "g", 1, CLASSES)
    s = softmax_rows(sp, z)
    K = range(CLASSES)
    jacobian = sp.Matrix(CLASSES, CLASSES, lambda k, j: sp.diff(s[k], z[j]))
    both = sp.Matrix(CLASSES, CLASSES, lambda k, j: s[k] * (sp.KroneckerDelta(k, j) - s[j]))
    upstream = sum(g[k] * s[k] for k in K)
    Z, G = matrix(sp, "Z", 2, CLASSES), matrix(sp, "G", 2, CLASSES)
    S = softmax_rows(sp, Z)
    batch = sp.Matrix(2, CLASSES, lambda i, j: S[i, j] * (G[i, j] - sum(G[i, k] * S[i, k] for k in K)))
    steps = [
        Step(
            "∂ŷₖ/∂zₖ = (e^(zₖ)·S − e^(zₖ)·e^(zₖ))/S² = ŷₖ(1 − ŷₖ)",
            _("case j = k: quotient rule, where ∂S/∂zₖ = e^(zₖ)"),
            sp.Matrix([jacobian[k, k] for k in K]),
            sp.Matrix([s[k] * (1 - s[k]) for k in K]),
        ),
        Step(
            "∂ŷₖ/∂zⱼ = (0·S − e^(zₖ)·e^(zⱼ))/S² = −ŷₖ·ŷⱼ   (j ≠ k)",
            _("case j ≠ k: the numerator e^(zₖ) does not hold zⱼ; only S does"),
            sp.Matrix([jacobian[k, j] for k in K for j in K if j != k]),
            sp.Matrix([-s[k] * s[j] for k in K for j in K if j != k]),
        ),
        Step(
            "∂ŷₖ/∂zⱼ = ŷₖ(Δₖⱼ − ŷⱼ)",
            _("both cases in one, with Δₖⱼ = 1 for j = k and 0 otherwise"),
            jacobian,
            both,
        ),
        Step(
            "∂L/∂zⱼ = Σₖ gₖ·ŷₖ(Δₖⱼ − ŷⱼ)",
            _("chain rule: zⱼ reaches L through every ŷₖ (g = ∂L/∂ŷ, the upstream gradient)"),
            gradient(sp, upstream, z),
            sp.Matrix(1, CLASSES, lambda _, j: sum(g[k] * both[k, j] for k in K)),
        ),
        Step(
            "∂L/∂zⱼ = ŷⱼ(gⱼ − Σₖ gₖ·ŷₖ)",
            _("Δₖⱼ keeps only k = j from the first term; ŷⱼ comes out of the second"),
            gradient(sp, upstream, z),
            sp.Matrix(1, CLASSES, lambda _, j: s[j] * (g[j] - sum(g[k] * s[k] for k in K))),
        ),
        Step(
            "∂L/∂Z = Ŷ ⊙ (G − Σ_cols(G ⊙ Ŷ))",
            _("row by row for a batch: a row's softmax depends on that row's logits only"),
            gradient(sp, sum(G[i, j] * S[i, j] for i in range(2) for j in K), Z),
            batch,
        ),
    ]

    def against(rng):
        from chainrule.activations import Softmax

        cases = []
        for _case in range(3):
            logits, upstream = 2 * rng.standard_normal((2, CLASSES)), rng.standard_normal((2, CLASSES))
            layer = Softmax()
            layer.forward(logits)
            cases.append(({**bind(Z, logits), **bind(G, upstream)}, layer.backward(upstream)))
        return cases

    return Derivation(
        "softmax_jacobian",
        _("The Jacobian of the softmax"),
        ["ŷₖ = e^(zₖ)/S,  S = Σⱼ e^(zⱼ)"],
        steps,
        batch,
        against,
    )


@topic("softmax_max_shift", N_("softmax(z − c) = softmax(z): why subtracting max z is safe"))
def softmax_max_shift(sp) -> Derivation:
    z = matrix(sp, "z", 1, CLASSES)
    c = sp.Symbol("c", real=True)
    K = range(CLASSES)
    shifted = softmax_rows(sp, z - c * sp.ones(1, CLASSES))
    total = sum(sp.exp(z[j]) for j in K)
    plain = softmax_rows(sp, z)
    big = softmax_rows(sp, sp.Matrix([[1000, 1001, 1002]]))
    small = softmax_rows(sp, sp.Matrix([[0, 1, 2]]))
    steps = [
        Step(
            "e^(zₖ − c)/Σⱼ e^(zⱼ − c) = e^(−c)·e^(zₖ)/(e^(−c)·Σⱼ e^(zⱼ))",
            _("e^(a − b) = e^a·e^(−b), in every term"),
            shifted,
            sp.Matrix(1, CLASSES, lambda _, k: sp.exp(-c) * sp.exp(z[k]) / (sp.exp(-c) * total)),
        ),
        Step(
            "softmax(z − c) = softmax(z)",
            _("e^(−c) cancels: a constant taken from every logit of a row changes nothing"),
            shifted,
            plain,
        ),
        Step(
            "ln softmax(z)ₖ = zₖ − c − ln Σⱼ e^(zⱼ − c)",
            _("the logarithm of the shifted form: what the fused loss computes"),
            plain.applyfunc(sp.log),
            sp.Matrix(1, CLASSES, lambda _, k: z[k] - c - sp.log(sum(sp.exp(z[j] - c) for j in K))),
            how="numeric",
        ),
        Step(
            "softmax([1000, 1001, 1002]) = softmax([0, 1, 2])",
            _(
                "with c = max z every exponent is ≤ 0, so each e^(zⱼ − c) is in (0, 1] and the sum in [1, K]; "
                "unshifted, e^1000 is ∞ in float64 and ∞/∞ is NaN"
            ),
            big,
            small,
        ),
    ]

    def against(rng):
        from chainrule.activations import softmax

        cases = []
        for _case in range(3):
            logits = rng.standard_normal((1, CLASSES))
            cases.append((bind(z, logits), softmax(logits + 800.0)))  # e^800 overflows without the shift
        return cases

    return Derivation(
        "softmax_max_shift",
        _("The softmax is unchanged by a shift: the max-subtraction trick"),
        ["softmax(z)ₖ = e^(zₖ)/Σⱼ e^(zⱼ)"],
        steps,
        plain,
        against,
        about=[_("c is any number; chainrule takes c = max z")],
    )


@topic(
    "softmax_cross_entropy",
    N_("cross-entropy after softmax: ∂L/∂z = ŷ − y, then (Ŷ − Y)/m, then ∂L/∂W = Xᵀ·(Ŷ − Y)/m"),
    kinds=("loss:softmax_cross_entropy", "loss:cross_entropy"),
)
def softmax_cross_entropy(sp) -> Derivation:
    K = range(CLASSES)
    z, y = matrix(sp, "z", 1, CLASSES), matrix(sp, "y", 1, CLASSES)
    p = matrix(sp, "p", 1, CLASSES, positive=True)
    s = softmax_rows(sp, z)
    loss_of_p = -sum(y[k] * sp.log(p[k]) for k in K)
    loss = -sum(y[k] * sp.log(s[k]) for k in K)
    # chained_terms[k][j]: the term of class k in ∂L/∂zⱼ (the chain rule's sum over k)
    chained_terms = [[-y[k] / s[k] * s[k] * (sp.KroneckerDelta(k, j) - s[j]) for j in K] for k in K]
    chained = sp.Matrix(1, CLASSES, lambda _, j: sum(chained_terms[k][j] for k in K))
    collapsed = sp.Matrix(1, CLASSES, lambda _, j: -y[j] + s[j] * sum(y[k] for k in K))
    sums_to_one = {y[CLASSES - 1]: 1 - sum(y[k] for k in K if k < CLASSES - 1)}
    one_hot = sp.Matrix([[0, 1, 0]])

    # the notes' example: z = [1, 2, 3], y = [0, 1, 0]
    e = sp.E
    example_s = softmax_rows(sp, sp.Matrix([[1, 2, 3]]))
    example = sp.Matrix([*example_s, -sp.log(example_s[1]), *(example_s - one_hot)])
    closed = sp.Matrix(
        [*(sp.Matrix([[e, e**2, e**3]]) / (e + e**2 + e**3)), sp.log(1 + 1 / e + e), *(example_s - one_hot)]
    )

    def shown(values) -> str:
        return "(" + ", ".join(f"{float(v):.4f}".replace("-", "−") for v in values) + ")"

    probabilities = f"ŷ = (e, e², e³)/(e + e² + e³) ≈ {shown(closed[:3])}"
    loss_and_gradient = f"L = −ln ŷ₂ = ln(1 + e⁻¹ + e) ≈ {float(closed[3]):.4f},  ∂L/∂z = ŷ − y ≈ {shown(closed[4:])}"

    m, features = 2, 2
    Z, Y = matrix(sp, "Z", m, CLASSES), matrix(sp, "Y", m, CLASSES)
    S = softmax_rows(sp, Z)
    rows_sum_to_one = {Y[i, CLASSES - 1]: 1 - Y[i, 0] - Y[i, 1] for i in range(m)}
    X, W, b = matrix(sp, "X", m, features), matrix(sp, "W", features, CLASSES), matrix(sp, "b", 1, CLASSES)

    def mean_loss(logits):
        probs = softmax_rows(sp, logits)
        return -sum(Y[i, k] * sp.log(probs[i, k]) for i in range(m) for k in K) / m

    logits = X * W + sp.ones(m, 1) * b
    S_of_W = softmax_rows(sp, logits)
    weight_gradient = X.T * (S_of_W - Y) / m
    W_notes = matrix(sp, "V", CLASSES, features)
    S_notes = softmax_rows(sp, X * W_notes.T)
    steps = [
        Step(
            "∂L/∂ŷₖ = −yₖ/ŷₖ",
            _("L = −Σₖ yₖ·ln ŷₖ, and (ln u)′ = 1/u"),
            gradient(sp, loss_of_p, p),
            sp.Matrix(1, CLASSES, lambda _, k: -y[k] / p[k]),
        ),
        Step(
            "∂L/∂zⱼ = Σₖ (−yₖ/ŷₖ)·ŷₖ(Δₖⱼ − ŷⱼ)",
            _("chain rule through every ŷₖ, with the softmax Jacobian's two cases (topic softmax_jacobian)"),
            gradient(sp, loss, z),
            chained,
        ),
        Step(
            "(k = j):  −(yⱼ/ŷⱼ)·ŷⱼ(1 − ŷⱼ) = −yⱼ(1 − ŷⱼ);   (k ≠ j):  Σₖ (yₖ/ŷₖ)·ŷₖ·ŷⱼ = ŷⱼ·(Σₖ yₖ − yⱼ)",
            _(
                "the two cases apart; neither alone is ŷⱼ − yⱼ (taking the k = j term for the answer and the others "
                "for 0 is a common slip)"
            ),
            sp.Matrix([[chained_terms[j][j] for j in K], [sum(chained_terms[k][j] for k in K if k != j) for j in K]]),
            sp.Matrix([[-y[j] * (1 - s[j]) for j in K], [s[j] * sum(y[k] for k in K) - s[j] * y[j] for j in K]]),
            label=_("the term k = j, and the terms k ≠ j summed"),
        ),
        Step(
            "∂L/∂zⱼ = −Σₖ yₖ(Δₖⱼ − ŷⱼ) = −yⱼ + ŷⱼ·Σₖ yₖ",
            _("ŷₖ cancels; Δₖⱼ keeps only k = j"),
            chained,
            collapsed,
        ),
        Step(
            "∂L/∂zⱼ = ŷⱼ − yⱼ",
            _("Σₖ yₖ = 1: the target is a distribution (a one-hot row or not)"),
            gradient(sp, loss, z),
            s - y,
            given=sums_to_one,
        ),
        Step(
            "L = −ln ŷ_c,  ∂L/∂zⱼ = −(1/ŷ_c)·ŷ_c(Δ_cj − ŷⱼ) = ŷⱼ − Δ_cj",
            _("one-hot: only k = c survives the sum (here c = 2)"),
            gradient(sp, -sp.log(s[1]), z),
            s - one_hot,
            label=_("y one-hot at class c"),
        ),
        Step(
            probabilities,
            _("the worked example z = (1, 2, 3), y = (0, 1, 0): the softmax"),
            example[:3, :],
            closed[:3, :],
        ),
        Step(loss_and_gradient, _("and its loss and gradient, exactly"), example[3:, :], closed[3:, :]),
        Step(
            "L = (1/m)·Σᵢ Lᵢ:  ∂L/∂Z = (Ŷ − Y)/m",
            _("each object's loss depends on its own row of Z only; the mean divides each by m"),
            gradient(sp, mean_loss(Z), Z),
            (S - Y) / m,
            given=rows_sum_to_one,
        ),
        Step(
            "Z = X·W + b:  ∂L/∂W = Xᵀ·(Ŷ − Y)/m,  ∂L/∂b = Σ_rows (Ŷ − Y)/m",
            _("chain rule through the linear layer (topic linear); W is (features, classes)"),
            sp.Matrix.vstack(gradient(sp, mean_loss(logits), W), gradient(sp, mean_loss(logits), b)),
            sp.Matrix.vstack(weight_gradient, sp.ones(1, m) * (S_of_W - Y) / m),
            how="numeric",
            given=rows_sum_to_one,
        ),
        Step(
            "Z = X·Vᵀ:  ∂L/∂V = (Ŷ − Y)ᵀ·X/m",
            _("the same gradient, transposed with the weight"),
            gradient(sp, mean_loss(X * W_notes.T), W_notes),
            (S_notes - Y).T * X / m,
            how="numeric",
            given=rows_sum_to_one,
            label=_("the notes' weight V = Wᵀ, of shape (classes, features)"),
        ),
    ]

    def against(rng):
        from chainrule.activations import Softmax
        from chainrule.layers import Linear
        from chainrule.losses import CrossEntropyLoss, SoftmaxCrossEntropyLoss

        cases = []
        for _case in range(3):
            inputs, weights = rng.standard_normal((m, features)), rng.standard_normal((features, CLASSES))
            bias, targets = rng.standard_normal(CLASSES), one_hot_rows(rng, m, CLASSES)
            values = {**bind(X, inputs), **bind(W, weights), **bind(b, bias), **bind(Y, targets)}
            for fused in (True, False):  # the fused loss on logits; a softmax layer, then cross-entropy
                layer, loss = (
                    Linear.from_arrays(weights, bias),
                    (SoftmaxCrossEntropyLoss() if fused else CrossEntropyLoss()),
                )
                softmax = Softmax()
                outputs = layer.forward(inputs) if fused else softmax.forward(layer.forward(inputs))
                loss.forward(outputs, targets)
                layer.backward(loss.backward() if fused else softmax.backward(loss.backward()))
                cases.append((values, layer.params["W"].grad))
        return cases

    return Derivation(
        "softmax_cross_entropy",
        _("Cross-entropy after softmax: ∂L/∂Z = (Ŷ − Y)/m"),
        ["ŷ = softmax(z),  L = −Σₖ yₖ·ln ŷₖ,  Σₖ yₖ = 1", "Z = X·W + b,  L = (1/m)·Σᵢ Lᵢ"],
        steps,
        weight_gradient,
        against,
        domain={**dict.fromkeys(p, (0.05, 1.0))},
        notes=[
            _("The notes write ∂L/∂W = (Ŷ − Y)ᵀ·X for W of shape (classes, features); chainrule's W is its transpose.")
        ],
        about=[_("a batch of m objects (rows) for the matrix form")],
    )
