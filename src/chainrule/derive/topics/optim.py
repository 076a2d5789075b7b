"""The update rules: gradient descent, momentum, Adam with its bias correction, RMSprop — what each term does.

Each result is the parameter after a few steps from given gradients, compared with chainrule's optimizer
fed the same gradients.
"""

from __future__ import annotations

import numpy as np

from chainrule.derive.core import Derivation, Step
from chainrule.derive.topics import topic
from chainrule.i18n import N_, _

STEPS = 3


def _run(name: str, theta0: float, grads: list[float], **settings) -> float:
    """The parameter after chainrule's optimizer ``name`` took one step per gradient in ``grads``."""
    from chainrule.module import Parameter
    from chainrule.optim import make_optimizer

    param = Parameter(np.array([theta0]))
    optimizer = make_optimizer(name, [param], **settings)
    for grad in grads:
        param.grad = np.array([grad])
        optimizer.step()
    return float(param.data[0])


def _gradients(sp, count: int = STEPS):
    return [sp.Symbol(f"g{t}", real=True) for t in range(1, count + 1)]


@topic(
    "gradient_descent",
    N_("θ ← θ − lr·g lowers the loss at rate ‖g‖²; converges on a quadratic for lr < 2/c"),
    kinds=("optimizer:sgd",),
)
def gradient_descent(sp) -> Derivation:
    t1, t2, lr, eta = sp.symbols("θ1 θ2 lr η", real=True)
    a, b, c, d = sp.symbols("a b c d", real=True)
    loss = a * t1**4 + b * t1 * t2 + c * t2**2 + d * t1  # any smooth loss would do: this one is generic enough
    grad = [sp.diff(loss, t) for t in (t1, t2)]
    moved = loss.subs({t1: t1 - eta * grad[0], t2: t2 - eta * grad[1]}, simultaneous=True)
    theta, target, curvature, wd = sp.symbols("θ θ* c wd", real=True)
    loss_of_theta = sp.Function("L")(theta)
    steps = [
        Step(
            "d/dη L(θ − η·g) = −g·g = −‖g‖²  (η = 0)",
            _("chain rule along the step: for a small enough step against the gradient the loss goes down"),
            sp.diff(moved, eta).subs(eta, 0),
            -(grad[0] ** 2 + grad[1] ** 2),
            label=_("a small step against the gradient"),
        ),
        Step(
            "L = c/2·(θ − θ*)²:  θ − lr·c·(θ − θ*) − θ* = (1 − lr·c)·(θ − θ*)",
            _(
                "on a quadratic each step multiplies the distance to the minimum by 1 − lr·c: it shrinks for "
                "0 < lr < 2/c, and lr = 1/c lands on θ* at once"
            ),
            theta - lr * sp.diff(curvature / 2 * (theta - target) ** 2, theta) - target,
            (1 - lr * curvature) * (theta - target),
        ),
        Step(
            "∂(L + wd/2·θ²)/∂θ = ∂L/∂θ + wd·θ",
            _("the optimizer's weight_decay adds wd·θ to the gradient: L2 with λ = wd (topic l2)"),
            sp.diff(loss_of_theta + wd / 2 * theta**2, theta),
            sp.diff(loss_of_theta, theta) + wd * theta,
            label=_("weight decay wd"),
        ),
    ]
    grads = _gradients(sp)
    result = theta - lr * sum(grads)
    steps.append(
        Step(
            "θ₃ = θ₀ − lr·(g₁ + g₂ + g₃)",
            _("three steps: the updates add up, each from the gradient at its own step"),
            theta - lr * grads[0] - lr * grads[1] - lr * grads[2],
            result,
        )
    )

    def against(rng):
        cases = []
        for _case in range(3):
            theta0, gs, rate = rng.standard_normal(), rng.standard_normal(STEPS), rng.uniform(0.01, 1)
            values = {theta: theta0, lr: rate, **dict(zip(grads, gs, strict=True))}
            cases.append((values, _run("sgd", theta0, list(gs), lr=rate)))
        return cases

    return Derivation(
        "gradient_descent",
        _("Gradient descent"),
        ["θ ← θ − lr·g,  g = ∂L/∂θ"],
        steps,
        result,
        against,
        about=[_("g is the gradient at the current θ")],
    )


@topic(
    "momentum",
    N_("momentum: b is a sum of past gradients, weighted by powers of μ; along a steady slope lr/(1 − μ)"),
    kinds=("optimizer:momentum", "optimizer:nesterov"),
)
def momentum(sp) -> Derivation:
    mu, lr, theta, g = sp.symbols("μ lr θ g", real=True)
    grads = _gradients(sp)
    buffers = [grads[0]]
    for gt in grads[1:]:
        buffers.append(mu * buffers[-1] + gt)
    steady = [g]
    for _step in range(4):
        steady.append(mu * steady[-1] + g)
    previous = sp.Symbol("b", real=True)
    heavy_ball = theta - lr * sum(buffers)
    nesterov = sp.Symbol("ν", real=True)  # 1 for Nesterov's step gₜ + μ·bₜ, 0 for bₜ
    result = theta - lr * sum(b + nesterov * (gt + mu * b - b) for gt, b in zip(grads, buffers, strict=True))
    steps = [
        Step(
            "b₃ = g₃ + μ·g₂ + μ²·g₁",
            _("unroll b₁ = g₁, bₜ = μ·bₜ₋₁ + gₜ: each older gradient is weighted by one more factor μ"),
            buffers[2],
            grads[2] + mu * grads[1] + mu**2 * grads[0],
        ),
        Step(
            "b₅ = g·(1 − μ⁵)/(1 − μ) → g/(1 − μ)",
            _(
                "a geometric series: along a steady slope the step grows to lr/(1 − μ) times the gradient "
                "(10 times for μ = 0.9)"
            ),
            steady[4],
            g * (1 - mu**5) / (1 - mu),
            label=_("a constant gradient g"),
        ),
        Step(
            "g + μ·bₜ = g + μ·(μ·b + g) = (1 + μ)·g + μ²·b",
            _("the step looks one buffer update ahead: the newest gradient counts 1 + μ times"),
            g + mu * (mu * previous + g),
            (1 + mu) * g + mu**2 * previous,
            label=_("Nesterov"),
        ),
        Step(
            "θ₃ = θ₀ − lr·(b₁ + b₂ + b₃) = θ₀ − lr·((1 + μ + μ²)·g₁ + (1 + μ)·g₂ + g₃)",
            _("three steps of θ ← θ − lr·bₜ: a gradient keeps acting in every later step"),
            heavy_ball,
            theta - lr * ((1 + mu + mu**2) * grads[0] + (1 + mu) * grads[1] + grads[2]),
        ),
    ]

    def against(rng):
        cases = []
        for name in ("momentum", "momentum", "nesterov", "nesterov"):
            theta0, gs = rng.standard_normal(), rng.standard_normal(STEPS)
            rate, beta = rng.uniform(0.01, 1), rng.uniform(0.1, 0.95)
            values = {theta: theta0, lr: rate, mu: beta, nesterov: float(name == "nesterov")}
            values.update(zip(grads, gs, strict=True))
            cases.append((values, _run(name, theta0, list(gs), lr=rate, momentum=beta)))
        return cases

    return Derivation(
        "momentum",
        _("Momentum (heavy ball, and Nesterov)"),
        ["b₁ = g₁,  bₜ = μ·bₜ₋₁ + gₜ,  θ ← θ − lr·bₜ"],
        steps,
        result,
        against,
        domain={mu: (0.1, 0.95)},
        about=[_("Nesterov's step is θ ← θ − lr·(gₜ + μ·bₜ)")],
    )


@topic(
    "adam",
    N_("Adam: m and v are running averages started at 0; the bias correction undoes that start"),
    kinds=("optimizer:adam", "optimizer:adamw"),
)
def adam(sp) -> Derivation:
    b1, b2 = sp.Symbol("β₁", positive=True), sp.Symbol("β₂", positive=True)
    lr, eps, theta, wd = sp.Symbol("lr", positive=True), sp.Symbol("ε", positive=True), *sp.symbols("θ wd", real=True)
    g = sp.Symbol("g", real=True)
    grads = _gradients(sp)

    def averages(beta, values):
        out, current = [], 0
        for value in values:
            current = beta * current + (1 - beta) * value
            out.append(current)
        return out

    m, v = averages(b1, grads), averages(b2, [gt**2 for gt in grads])
    m_steady = averages(b1, [g] * 4)[-1]
    v_steady = averages(b2, [g**2] * 4)[-1]
    result = theta  # after three steps; wd = 0 is Adam, wd > 0 AdamW's decoupled decay
    for t in range(STEPS):
        m_hat, v_hat = m[t] / (1 - b1 ** (t + 1)), v[t] / (1 - b2 ** (t + 1))
        result = (1 - lr * wd) * result - lr * m_hat / (sp.sqrt(v_hat) + eps)
    steps = [
        Step(
            "m₃ = (1 − β₁)·(g₃ + β₁·g₂ + β₁²·g₁)",
            _("unroll mₜ = β₁·mₜ₋₁ + (1 − β₁)·gₜ from m₀ = 0: an exponentially weighted sum of the gradients"),
            m[2],
            (1 - b1) * (grads[2] + b1 * grads[1] + b1**2 * grads[0]),
        ),
        Step(
            "m₄ = (1 − β₁⁴)·g",
            _(
                "the weights (1 − β₁)·β₁ᵏ of the last t gradients sum to 1 − β₁ᵗ: starting at 0 pulls m towards 0 "
                "(m₁ = 0.1·g for β₁ = 0.9)"
            ),
            m_steady,
            (1 - b1**4) * g,
            label=_("a constant gradient g"),
        ),
        Step(
            "m̂₄ = m₄/(1 − β₁⁴) = g,  v̂₄ = v₄/(1 − β₂⁴) = g²",
            _("the bias correction divides by exactly that factor, for the squares as well"),
            sp.Matrix([m_steady / (1 - b1**4), v_steady / (1 - b2**4)]),
            sp.Matrix([g, g**2]),
        ),
        Step(
            "θ − lr·m̂/(√v̂ + ε) = θ − lr·g/(|g| + ε)",
            _(
                "for a steady gradient each weight moves by about lr whatever the gradient's size: the step is "
                "normalised per weight, and ε keeps it finite where v̂ = 0"
            ),
            theta - lr * g / (sp.sqrt(g**2) + eps),
            theta - lr * g / (sp.Abs(g) + eps),
        ),
        Step(
            "θ ← θ − lr·wd·θ = (1 − lr·wd)·θ",
            _(
                "decoupled decay shrinks the weight directly; Adam's weight_decay instead adds wd·θ to g, which "
                "then goes through m and v and is divided by √v̂"
            ),
            theta - lr * wd * theta,
            (1 - lr * wd) * theta,
            label=_("AdamW, before the Adam step"),
        ),
    ]

    def against(rng):
        cases = []
        for name, decay in (("adam", 0.0), ("adam", 0.0), ("adamw", 0.01), ("adamw", 0.3)):
            theta0, gs = rng.standard_normal(), rng.standard_normal(STEPS)
            settings = {"lr": rng.uniform(0.01, 0.5), "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}
            values = {theta: theta0, lr: settings["lr"], b1: 0.9, b2: 0.999, eps: 1e-8, wd: decay}
            values.update(zip(grads, gs, strict=True))
            extra = {"weight_decay": decay} if name == "adamw" else {}
            cases.append((values, _run(name, theta0, list(gs), **settings, **extra)))
        return cases

    return Derivation(
        "adam",
        _("Adam, with bias correction"),
        [
            "mₜ = β₁·mₜ₋₁ + (1 − β₁)·gₜ,  vₜ = β₂·vₜ₋₁ + (1 − β₂)·gₜ²,  m₀ = v₀ = 0",
            "m̂ₜ = mₜ/(1 − β₁ᵗ),  v̂ₜ = vₜ/(1 − β₂ᵗ),  θ ← θ − lr·m̂ₜ/(√v̂ₜ + ε)",
        ],
        steps,
        result,
        against,
        domain={b1: (0.5, 0.95), b2: (0.9, 0.999), eps: (1e-3, 0.1), lr: (0.01, 1.0)},
    )


@topic(
    "rmsprop",
    N_("RMSprop: a running average of g² without bias correction, so the first steps are large"),
    kinds=("optimizer:rmsprop",),
)
def rmsprop(sp) -> Derivation:
    alpha, lr, eps = sp.Symbol("α", positive=True), sp.Symbol("lr", positive=True), sp.Symbol("ε", positive=True)
    theta, g = sp.symbols("θ g", real=True)
    grads = _gradients(sp)
    squares, current = [], 0
    for gt in grads:
        current = alpha * current + (1 - alpha) * gt**2
        squares.append(current)
    result = theta - lr * sum(gt / (sp.sqrt(vt) + eps) for gt, vt in zip(grads, squares, strict=True))
    steady, current = [], 0
    for _step in range(4):
        current = alpha * current + (1 - alpha) * g**2
        steady.append(current)
    steps = [
        Step(
            "v₃ = (1 − α)·(g₃² + α·g₂² + α²·g₁²)",
            _("unroll vₜ = α·vₜ₋₁ + (1 − α)·gₜ² from v₀ = 0"),
            squares[2],
            (1 - alpha) * (grads[2] ** 2 + alpha * grads[1] ** 2 + alpha**2 * grads[0] ** 2),
        ),
        Step(
            "g₁/√v₁ = g₁/(√(1 − α)·|g₁|)",
            _(
                "no bias correction: v₁ = (1 − α)·g² is small, so the first step is 1/√(1 − α) = 10 times lr "
                "for α = 0.99"
            ),
            grads[0] / sp.sqrt(squares[0]),
            grads[0] / (sp.sqrt(1 - alpha) * sp.Abs(grads[0])),
            label=_("the first step"),
        ),
        Step(
            "v₄ = (1 − α⁴)·g² → g²",
            _("later steps approach lr·g/(|g| + ε), about lr per weight, like Adam's; the early ones are larger"),
            steady[-1],
            (1 - alpha**4) * g**2,
            label=_("a constant gradient g"),
        ),
    ]

    def against(rng):
        cases = []
        for _case in range(3):
            theta0, gs, rate = rng.standard_normal(), rng.standard_normal(STEPS), rng.uniform(0.001, 0.1)
            values = {theta: theta0, lr: rate, alpha: 0.99, eps: 1e-8, **dict(zip(grads, gs, strict=True))}
            cases.append((values, _run("rmsprop", theta0, list(gs), lr=rate, alpha=0.99, eps=1e-8)))
        return cases

    return Derivation(
        "rmsprop",
        _("RMSprop"),
        ["vₜ = α·vₜ₋₁ + (1 − α)·gₜ²,  v₀ = 0,  θ ← θ − lr·gₜ/(√vₜ + ε)"],
        steps,
        result,
        against,
        domain={alpha: (0.5, 0.99), eps: (1e-3, 0.1)},
    )
