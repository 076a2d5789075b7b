"""The layers: the linear layer's three gradients, the δ recursion of an MLP, L2, BatchNorm and LayerNorm's
full backward passes, dropout."""

from __future__ import annotations

import numpy as np

from chainrule.derive.core import Derivation, Step, bind, gradient, matrix, softmax_rows
from chainrule.derive.topics import forward, topic
from chainrule.i18n import N_, _


@forward("layer:linear")
def linear_forward(sp, layer, x, params):
    z = x * params["W"]
    return z + sp.ones(x.rows, 1) * params["b"] if "b" in params else z


@forward("layer:batchnorm", "layer:layernorm")
def normalization_forward(sp, layer, x, params):
    """Training-mode BatchNorm normalises each column over the rows, LayerNorm each row over its columns;
    BatchNorm in evaluation mode uses its running statistics."""
    by_rows = layer.kind == "batchnorm"
    data = x if by_rows else x.T
    out = sp.zeros(*data.shape)
    for j in range(data.cols):
        column = data[:, j]
        if by_rows and not layer.batch_stats:
            mean, var = layer.buffers["running_mean"][j], layer.buffers["running_var"][j]
        else:
            mean = sum(column) / len(column)
            var = sum((v - mean) ** 2 for v in column) / len(column)
        out[:, j] = (column - mean * sp.ones(len(column), 1)) / sp.sqrt(var + layer.eps)
    x_hat = out if by_rows else out.T
    return x_hat.multiply_elementwise(sp.ones(x.rows, 1) * params["gamma"]) + sp.ones(x.rows, 1) * params["beta"]


@topic(
    "linear",
    N_("Z = X·W + b: ∂L/∂W = Xᵀ·δ, ∂L/∂b = Σ_rows δ, ∂L/∂X = δ·Wᵀ, from the index form"),
    kinds=("layer:linear",),
)
def linear(sp) -> Derivation:
    n, inputs, outputs = 3, 2, 2
    X, W, b = matrix(sp, "X", n, inputs), matrix(sp, "W", inputs, outputs), matrix(sp, "b", 1, outputs)
    D = matrix(sp, "δ", n, outputs)
    Z = sp.Matrix(n, outputs, lambda i, j: sum(X[i, k] * W[k, j] for k in range(inputs)) + b[j])
    L = sum(D[i, j] * Z[i, j] for i in range(n) for j in range(outputs))  # ∂L/∂Z = δ, to first order
    pairs = [(i, j, p, q) for i in range(n) for j in range(outputs) for p in range(inputs) for q in range(outputs)]
    index_form = sp.Matrix(inputs, outputs, lambda p, q: sum(X[i, p] * D[i, q] for i in range(n)))
    x, d = matrix(sp, "x", inputs, 1), matrix(sp, "d", outputs, 1)
    W_notes = matrix(sp, "V", outputs, inputs)
    result = sp.Matrix([*(X.T * D), *(sp.ones(1, n) * D), *(D * W.T)])
    steps = [
        Step(
            "Zᵢⱼ = Σₖ Xᵢₖ·Wₖⱼ + bⱼ,   Z = X·W + b",
            _("the matrix product, entry by entry; b is added to every row"),
            Z,
            X * W + sp.ones(n, 1) * b,
        ),
        Step(
            "∂Zᵢⱼ/∂Wₚₗ = Xᵢₚ·Δⱼₗ",
            _("Wₚₗ appears only in column l of Z, multiplied by Xᵢₚ"),
            sp.Matrix([sp.diff(Z[i, j], W[p, q]) for i, j, p, q in pairs]),
            sp.Matrix([X[i, p] * sp.KroneckerDelta(j, q) for i, j, p, q in pairs]),
        ),
        Step(
            "∂L/∂Wₚₗ = Σᵢⱼ δᵢⱼ·Xᵢₚ·Δⱼₗ = Σᵢ Xᵢₚ·δᵢₗ",
            _("chain rule over every Zᵢⱼ, with δ = ∂L/∂Z; Δⱼₗ keeps j = l"),
            gradient(sp, L, W),
            index_form,
        ),
        Step(
            "∂L/∂W = Xᵀ·δ",
            _(
                "Σᵢ Xᵢₚ·δᵢₗ is entry (p, l) of Xᵀ·δ; the shapes decide the order: (in, n)·(n, out) is W's shape, "
                "while δ·Xᵀ, (n, out)·(in, n), does not even multiply"
            ),
            index_form,
            X.T * D,
        ),
        Step(
            "Xᵀ·δ = Σᵢ xᵢᵀ·δᵢ",
            _(
                "a sum over the objects, not a mean: a loss that averages has already put its 1/m into δ, and "
                "dividing by m once more is a common slip"
            ),
            X.T * D,
            sum((X[i, :].T * D[i, :] for i in range(n)), sp.zeros(inputs, outputs)),
            label=_("xᵢ and δᵢ the rows of object i"),
        ),
        Step(
            "∂L/∂bₗ = Σᵢ δᵢₗ,   ∂L/∂b = Σ_rows δ",
            _("bₗ enters every row of column l with factor 1"),
            gradient(sp, L, b),
            sp.ones(1, n) * D,
        ),
        Step(
            "∂L/∂Xᵢₚ = Σₗ δᵢₗ·Wₚₗ,   ∂L/∂X = δ·Wᵀ",
            _("Xᵢₚ enters row i of Z through each Wₚₗ; (n, out)·(out, in) is X's shape (n, in)"),
            gradient(sp, L, X),
            D * W.T,
        ),
        Step(
            "z = V·x + b:  ∂L/∂V = δ·xᵀ",
            _("the same entries, transposed with the weight: (out, 1)·(1, in)"),
            gradient(sp, sum(d[j] * (W_notes * x)[j] for j in range(outputs)), W_notes),
            d * x.T,
            label=_("the notes' column form, one object, V = Wᵀ of shape (out, in)"),
        ),
    ]

    def against(rng):
        from chainrule.layers import Linear

        cases = []
        for _case in range(3):
            inputs_, weights, bias = rng.standard_normal((n, inputs)), rng.standard_normal((inputs, outputs)), None
            bias, delta = rng.standard_normal(outputs), rng.standard_normal((n, outputs))
            layer = Linear.from_arrays(weights, bias)
            layer.forward(inputs_)
            grad_input = layer.backward(delta)
            library = np.concatenate([layer.params["W"].grad.ravel(), layer.params["b"].grad, grad_input.ravel()])
            values = {**bind(X, inputs_), **bind(W, weights), **bind(b, bias), **bind(D, delta)}
            cases.append((values, library))
        return cases

    return Derivation(
        "linear",
        _("The linear layer's three gradients"),
        ["Z = X·W + b,  δ = ∂L/∂Z"],
        steps,
        result,
        against,
        notes=[_("The result checked against chainrule is ∂L/∂W, ∂L/∂b and ∂L/∂X, one after the other.")],
        about=[_("shapes: X (n, in), W (in, out), b (out), Z and δ (n, out); δ comes from the layers after")],
    )


@topic(
    "delta_recursion",
    N_("the δ rule of an MLP: δ₁ = (δ₂·W₂ᵀ) ⊙ f′(Z₁), and the notes' column form beside it"),
)
def delta_recursion(sp) -> Derivation:
    n, inputs, hidden, outputs = 2, 2, 2, 2
    f = sp.Function("f")
    u = sp.Symbol("u", real=True)
    X, W1, b1 = matrix(sp, "X", n, inputs), matrix(sp, "W1", inputs, hidden), matrix(sp, "b1", 1, hidden)
    W2, D2 = matrix(sp, "W2", hidden, outputs), matrix(sp, "δ2", n, outputs)
    A, Zs = matrix(sp, "A", n, hidden), matrix(sp, "Z1", n, hidden)
    Z1 = X * W1 + sp.ones(n, 1) * b1

    def loss(activation):  # ∂L/∂Z₂ = δ₂, to first order
        Z2 = activation * W2
        return sum(D2[i, j] * Z2[i, j] for i in range(n) for j in range(outputs))

    def derivative(entry):
        return sp.diff(f(u), u).subs(u, entry)

    delta1 = (D2 * W2.T).multiply_elementwise(Z1.applyfunc(derivative))
    steps = [
        Step(
            "∂L/∂A₁ = δ₂·W₂ᵀ",
            _("the input gradient of the second linear layer (topic linear)"),
            gradient(sp, loss(A), A),
            D2 * W2.T,
        ),
        Step(
            "δ₁ = ∂L/∂Z₁ = (δ₂·W₂ᵀ) ⊙ f′(Z₁)",
            _("A₁ = f(Z₁) element by element: each entry of A₁ holds only its own entry of Z₁"),
            gradient(sp, loss(Zs.applyfunc(f)), Zs),
            (D2 * W2.T).multiply_elementwise(Zs.applyfunc(derivative)),
        ),
        Step(
            "∂L/∂W₁ = Xᵀ·δ₁ = Xᵀ·((δ₂·W₂ᵀ) ⊙ f′(Z₁))",
            _("the weight gradient of the first linear layer (topic linear), with its δ"),
            gradient(sp, loss(Z1.applyfunc(f)), W1),
            X.T * delta1,
        ),
        Step(
            "δ[1] = (V[2]ᵀ·δ[2]) ⊙ f′(z[1])",
            _("the row form transposed: (δ₂·W₂ᵀ)ᵀ = W₂·δ₂ᵀ = V₂ᵀ·δ₂ᵀ, and ⊙ does not care about the orientation"),
            delta1[0, :].T,
            (W2 * D2[0, :].T).multiply_elementwise(Z1[0, :].T.applyfunc(derivative)),
            label=_("the notes' column form, one object, V = Wᵀ"),
        ),
    ]
    tanh_delta1 = (D2 * W2.T).multiply_elementwise(Z1.applyfunc(lambda v: 1 - sp.tanh(v) ** 2))
    result = X.T * tanh_delta1

    def against(rng):
        from chainrule.activations import Tanh
        from chainrule.layers import Linear
        from chainrule.network import Sequential

        cases = []
        for _case in range(3):
            arrays = {
                "X": rng.standard_normal((n, inputs)),
                "W1": rng.standard_normal((inputs, hidden)),
                "b1": rng.standard_normal(hidden),
                "W2": rng.standard_normal((hidden, outputs)),
                "δ2": rng.standard_normal((n, outputs)),
            }
            model = Sequential(Linear.from_arrays(arrays["W1"], arrays["b1"]), Tanh(), Linear.from_arrays(arrays["W2"]))
            model.forward(arrays["X"])
            model.backward(arrays["δ2"])
            symbols = {"X": X, "W1": W1, "b1": b1, "W2": W2, "δ2": D2}
            values = {s: v for name, m in symbols.items() for s, v in bind(m, arrays[name]).items()}
            cases.append((values, model.layers[0].params["W"].grad))
        return cases

    return Derivation(
        "delta_recursion",
        _("The δ recursion of an MLP"),
        ["Z₁ = X·W₁ + b₁,  A₁ = f(Z₁),  Z₂ = A₁·W₂ + b₂,  δ₂ = ∂L/∂Z₂"],
        steps,
        result,
        against,
        notes=[_("Deeper networks repeat the two steps: δₗ = (δₗ₊₁·Wₗ₊₁ᵀ) ⊙ f′(Zₗ), ∂L/∂Wₗ = Aₗ₋₁ᵀ·δₗ.")],
        about=[
            _(
                "δ₂ comes from the loss; f is any differentiable element-wise function (checked here for f "
                "symbolic, and against chainrule with tanh)"
            )
        ],
    )


@topic(
    "l2",
    N_("L2 = λ/2·Σ‖W‖² adds λW to each weight's gradient: softmax regression's Xᵀ(S − Y)/M + λW"),
)
def l2(sp) -> Derivation:
    m, inputs, classes = 2, 2, 3
    lam, lr = sp.Symbol("λ", positive=True), sp.Symbol("lr", positive=True)
    X, W, b = matrix(sp, "X", m, inputs), matrix(sp, "W", inputs, classes), matrix(sp, "b", 1, classes)
    Y, G = matrix(sp, "Y", m, classes), matrix(sp, "G", inputs, classes)
    penalty = lam / 2 * sum(w**2 for w in W)
    S = softmax_rows(sp, X * W + sp.ones(m, 1) * b)
    data_loss = -sum(Y[i, k] * sp.log(S[i, k]) for i in range(m) for k in range(classes)) / m
    rows_sum_to_one = {Y[i, classes - 1]: 1 - Y[i, 0] - Y[i, 1] for i in range(m)}
    result = X.T * (S - Y) / m + lam * W
    steps = [
        Step(
            "∂/∂Wₚₗ (λ/2·Σ W²) = λ/2·2Wₚₗ = λWₚₗ",
            _("each weight appears in one square; the ½ is there to cancel the 2"),
            gradient(sp, penalty, W),
            lam * W,
        ),
        Step(
            "∂(λ/2·Σ‖W‖²)/∂b = 0",
            _("the penalty is over the weights only, not the biases (chainrule: Parameter.decay)"),
            gradient(sp, penalty, b),
            sp.zeros(1, classes),
        ),
        Step(
            "W ← W − lr·(G + λW) = (1 − lr·λ)·W − lr·G",
            _("with gradient descent (G the data gradient) the penalty shrinks every weight by a factor: weight decay"),
            W - lr * (G + lam * W),
            (1 - lr * lam) * W - lr * G,
        ),
        Step(
            "S = softmax(X·W + b):  ∂L/∂W = Xᵀ·(S − Y)/M + λW",
            _("sum rule: the data part (topic softmax_cross_entropy) plus the penalty's λW"),
            gradient(sp, data_loss + penalty, W),
            result,
            how="numeric",
            given=rows_sum_to_one,
            label=_("softmax regression"),
        ),
    ]

    def against(rng):
        from chainrule.layers import Linear
        from chainrule.losses import SoftmaxCrossEntropyLoss, add_l2_grad

        cases = []
        for strength in (0.1, 0.5):
            inputs_, weights = rng.standard_normal((m, inputs)), rng.standard_normal((inputs, classes))
            bias, targets = rng.standard_normal(classes), np.eye(classes)[rng.integers(0, classes, m)]
            layer, loss = Linear.from_arrays(weights, bias), SoftmaxCrossEntropyLoss()
            loss.forward(layer.forward(inputs_), targets)
            layer.backward(loss.backward())
            add_l2_grad(layer.parameters(), strength)
            values = {**bind(X, inputs_), **bind(W, weights), **bind(b, bias), **bind(Y, targets), lam: strength}
            cases.append((values, layer.params["W"].grad))
        return cases

    return Derivation(
        "l2",
        _("L2 regularisation: λ/2·Σ‖W‖² → λW"),
        ["L = L_data + λ/2·Σ‖W‖²"],
        steps,
        result,
        against,
        notes=[_("Softmax regression on MNIST in the notes: gradient Xᵀ(S − Y)/M + λW, M the objects of the batch.")],
        about=[_("the penalty is over the weights W of every linear layer, not the biases")],
    )


def _normalization(sp, name: str, title: str, against_kind: str, per_feature_gamma: bool) -> Derivation:
    """BatchNorm and LayerNorm share their derivation along the axis they normalise (N entries: a column of
    the batch for BatchNorm, a row for LayerNorm); they differ in whether γ varies along it."""
    N = 3
    x, g = matrix(sp, "x", N, 1), matrix(sp, "g", N, 1)
    eps = sp.Symbol("ε", positive=True)
    gamma = matrix(sp, "γ", N, 1) if per_feature_gamma else sp.ones(N, 1) * sp.Symbol("γ", real=True)
    beta = matrix(sp, "β", N, 1) if per_feature_gamma else sp.ones(N, 1) * sp.Symbol("β", real=True)
    mu = sum(x) / N
    var = sum((v - mu) ** 2 for v in x) / N
    s = sp.sqrt(var + eps)
    x_hat = (x - mu * sp.ones(N, 1)) / s
    y = gamma.multiply_elementwise(x_hat) + beta
    L = sum(g[i] * y[i] for i in range(N))  # ∂L/∂y = g, to first order
    g_hat = g.multiply_elementwise(gamma)
    jacobian = sp.Matrix(N, N, lambda i, k: sp.diff(x_hat[i], x[k]))
    jacobian_formula = sp.Matrix(
        N, N, lambda i, k: (sp.KroneckerDelta(i, k) - sp.Rational(1, N)) / s - x_hat[i] * x_hat[k] / (N * s)
    )
    collected = (N * g_hat - sum(g_hat) * sp.ones(N, 1) - x_hat * sum(g_hat[i] * x_hat[i] for i in range(N))) / (N * s)
    shared = not per_feature_gamma
    scale, shift = (sp.Matrix([gamma[0]]), sp.Matrix([beta[0]])) if shared else (gamma, beta)
    steps = [
        Step(
            "∂μ/∂xₖ = 1/N",
            _("μ = (1/N)·Σᵢ xᵢ holds every xₖ once"),
            gradient(sp, mu, x),
            sp.ones(N, 1) / N,
        ),
        Step(
            "∂σ²/∂xₖ = (2/N)·(xₖ − μ) − (2/N)·Σᵢ (xᵢ − μ)·(1/N) = (2/N)·(xₖ − μ)",
            _("chain rule through μ too; its term vanishes because Σᵢ (xᵢ − μ) = 0"),
            gradient(sp, var, x),
            2 * (x - mu * sp.ones(N, 1)) / N,
        ),
        Step(
            "∂x̂ᵢ/∂xₖ = (Δᵢₖ − 1/N)/s − x̂ᵢ·x̂ₖ/(N·s),  s = √(σ² + ε)",
            _("quotient rule with the two steps above: ∂s/∂xₖ = (xₖ − μ)/(N·s) = x̂ₖ/N"),
            jacobian,
            jacobian_formula,
            how="numeric",
        ),
        Step(
            "∂L/∂xₖ = Σᵢ ĝᵢ·∂x̂ᵢ/∂xₖ,  ĝ = g ⊙ γ",
            _("chain rule through every x̂ᵢ: μ and σ² depend on every x, so each x̂ᵢ does"),
            gradient(sp, L, x),
            jacobian_formula.T * g_hat,
            how="numeric",
        ),
        Step(
            "∂L/∂xₖ = (N·ĝₖ − Σᵢ ĝᵢ − x̂ₖ·Σᵢ ĝᵢ·x̂ᵢ)/(N·s)",
            _("the sum over i, collected: Δᵢₖ keeps ĝₖ, the rest are sums over the axis"),
            jacobian_formula.T * g_hat,
            collected,
            how="numeric",
        ),
        Step(
            "∂L/∂γ = Σ_rows g ⊙ x̂,  ∂L/∂β = Σ_rows g" if shared else "∂L/∂γⱼ = gⱼ·x̂ⱼ,  ∂L/∂βⱼ = gⱼ",
            _("y = γ ⊙ x̂ + β; γ and β are the same for every row, so their gradients sum over the rows")
            if shared
            else _(
                "y = γ ⊙ x̂ + β for one row; γ and β are shared by the rows of a batch, so chainrule sums this over them"
            ),
            sp.Matrix([*gradient(sp, L, scale), *gradient(sp, L, shift)]),
            sp.Matrix([sum(g.multiply_elementwise(x_hat)), sum(g)] if shared else [*g.multiply_elementwise(x_hat), *g]),
            how="numeric",
        ),
    ]
    if not per_feature_gamma:
        g0 = gamma[0]
        final = g0 / (N * s) * (N * g - sum(g) * sp.ones(N, 1) - x_hat * sum(g[i] * x_hat[i] for i in range(N)))
        steps.append(
            Step(
                "∂L/∂x = γ/(n·√(σ² + ε)) ⊙ (n·g − ∂L/∂β − x̂ ⊙ ∂L/∂γ)",
                _(
                    "γ is the same in every row: Σ ĝ = γ·∂L/∂β and Σ ĝ ⊙ x̂ = γ·∂L/∂γ, the two sums chainrule has "
                    "already (N = n, the rows)"
                ),
                collected,
                final,
                how="numeric",
            )
        )
        mean_bar, var_bar = sp.Symbol("μ̄", real=True), sp.Symbol("σ̄²", positive=True)
        steps.append(
            Step(
                "∂L/∂x = g ⊙ γ/√(σ̄² + ε)",
                _("the running statistics μ̄, σ̄² are constants: only the 1/√(σ̄² + ε) scale is left"),
                gradient(sp, sum(g[i] * (g0 * (x[i] - mean_bar) / sp.sqrt(var_bar + eps)) for i in range(N)), x),
                g * g0 / sp.sqrt(var_bar + eps),
                label=_("evaluation mode"),
            )
        )
    else:
        final = (g_hat - sum(g_hat) / N * sp.ones(N, 1) - x_hat * sum(g_hat[i] * x_hat[i] for i in range(N)) / N) / s
        steps.append(
            Step(
                "∂L/∂x = (ĝ − (1/d)·Σ_cols ĝ − x̂ ⊙ (1/d)·Σ_cols(ĝ ⊙ x̂))/√(σ² + ε)",
                _("divide through by N = d, the features of the row: the form chainrule computes"),
                collected,
                final,
                how="numeric",
            )
        )

    def against(rng):
        from chainrule.registry import LAYERS

        cases = []
        rows, cols = (N, 2) if not per_feature_gamma else (2, N)
        layer = LAYERS[against_kind].cls(cols, dtype=np.float64)
        gammas, betas = rng.standard_normal(cols), rng.standard_normal(cols)
        layer.load_state_dict({"gamma": gammas, "beta": betas}, strict=False)
        inputs, upstream = rng.standard_normal((rows, cols)), rng.standard_normal((rows, cols))
        layer.forward(inputs)
        grad_input = layer.backward(upstream)
        if per_feature_gamma:  # each row normalised over its features
            for r in range(rows):
                values = {**bind(x, inputs[r]), **bind(g, upstream[r]), **bind(gamma, gammas), eps: layer.eps}
                cases.append((values, grad_input[r]))
        else:  # each column over the rows
            for c in range(cols):
                values = {**bind(x, inputs[:, c]), **bind(g, upstream[:, c]), gamma[0]: gammas[c], eps: layer.eps}
                cases.append((values, grad_input[:, c]))
        return cases

    about = (
        _("x is one feature (column) over the N = n rows of a batch; each column is normalised on its own")
        if not per_feature_gamma
        else _("x is one row (object) over its N = d features; each row is normalised on its own")
    )
    return Derivation(
        name,
        title,
        ["μ = (1/N)·Σᵢ xᵢ,  σ² = (1/N)·Σᵢ (xᵢ − μ)²,  x̂ = (x − μ)/√(σ² + ε),  y = γ ⊙ x̂ + β,  g = ∂L/∂y"],
        steps,
        final,
        against,
        domain={eps: (0.01, 0.5)},
        about=[about],
    )


@topic(
    "batchnorm",
    N_("BatchNorm's full backward: ∂L/∂x = γ/(n·√(σ² + ε))·(n·g − Σ g − x̂·Σ g ⊙ x̂)"),
    kinds=("layer:batchnorm",),
)
def batchnorm(sp) -> Derivation:
    derivation = _normalization(sp, "batchnorm", _("BatchNorm's backward (training mode)"), "batchnorm", False)
    derivation.notes.append(
        _("The notes stop at the forward pass; μ and σ² depend on every row, which the backward keeps.")
    )
    return derivation


@topic(
    "layernorm",
    N_("LayerNorm's backward: ∂L/∂x = (ĝ − mean ĝ − x̂·mean(ĝ ⊙ x̂))/√(σ² + ε), per row"),
    kinds=("layer:layernorm",),
)
def layernorm(sp) -> Derivation:
    return _normalization(sp, "layernorm", _("LayerNorm's backward"), "layernorm", True)


@topic("dropout", N_("inverted dropout: ∂L/∂x = g ⊙ m/(1 − p), and E[y] = x"), kinds=("layer:dropout",))
def dropout(sp) -> Derivation:
    x, g, mask = sp.Symbol("x", real=True), sp.Symbol("g", real=True), sp.Symbol("m", real=True)
    p = sp.Symbol("p", positive=True)
    y = x * mask / (1 - p)
    steps = [
        Step("∂y/∂x = m/(1 − p)", _("m and p are constants of the step"), sp.diff(y, x), mask / (1 - p)),
        Step("∂L/∂x = g ⊙ m/(1 − p)", _("chain rule, element by element"), sp.diff(g * y, x), g * mask / (1 - p)),
        Step(
            "E[y] = (1 − p)·x/(1 − p) + p·0 = x",
            _("m = 1 with probability 1 − p: the 1/(1 − p) keeps the expected output, so evaluation needs no scaling"),
            (1 - p) * y.subs(mask, 1) + p * y.subs(mask, 0),
            x,
        ),
    ]

    def against(rng):
        from chainrule.layers import Dropout

        layer = Dropout(0.4, seed=rng)
        inputs, upstream = rng.standard_normal((1, 12)), rng.standard_normal((1, 12))
        layer.forward(inputs)
        grads = layer.backward(upstream)
        kept = (layer.mask != 0).astype(float)[0]
        return [
            ({x: xv, g: gv, mask: mv, p: 0.4}, lib)
            for xv, gv, mv, lib in zip(inputs[0], upstream[0], kept, grads[0], strict=True)
        ]

    return Derivation(
        "dropout",
        _("Inverted dropout"),
        ["y = x ⊙ m/(1 − p)"],
        steps,
        g * mask / (1 - p),
        against,
        domain={p: (0.05, 0.9)},
        about=[_("m is 1 with probability 1 − p, else 0; p is the drop probability")],
    )
