"""A student who works a problem by hand: one training step of a small network, each formula written out
in plain NumPy (independently of the library and of its catalogue of slips), every number written on the
sheet rounded to ``decimals`` places and — by hand — carried on rounded, or — with a calculator — carried
on in full. With ``slip`` (an id of the catalogue) at ``place`` they use that wrong formula there and work
on correctly from their own numbers, as a student does.

The tests of ``chainrule check`` and ``benchmarks/check_diagnosis.py`` write sheets with it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

ERF = np.vectorize(math.erf)


def _phi(z):
    return 0.5 * (1 + ERF(z / math.sqrt(2)))


def _pdf(z):
    return np.exp(-z * z / 2) / math.sqrt(2 * math.pi)


def _softmax(z, axis=1):
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@dataclass
class Problem:
    """A problem as the test writes it: layers as dicts (``{"type": "linear", "W": …, "b": …}``)."""

    X: list
    y: list
    layers: list[dict]
    loss: str
    scale: str = "mean"
    l2: float = 0.0
    optimizer: str = "sgd"
    lr: float = 1.0
    settings: dict = field(default_factory=dict)
    title: str = "a problem"

    def toml(self) -> str:
        def value(v):
            return repr(np.asarray(v, dtype=float).tolist()) if isinstance(v, list) else repr(v)

        lines = [f'title = "{self.title}"', "[data]", f"X = {value(self.X)}", f"y = {self.y!r}"]
        for layer in self.layers:
            lines.append("[[layers]]")
            lines += [f'type = "{layer["type"]}"'] + [f"{k} = {value(v)}" for k, v in layer.items() if k != "type"]
        lines += ["[loss]", f'type = "{self.loss}"', f'scale = "{self.scale}"']
        if self.l2:
            lines.append(f"l2 = {self.l2}")
        lines += ["[train]", f'optimizer = "{self.optimizer}"', f"lr = {self.lr}", "steps = 1"]
        lines += [f"{k} = {v!r}" for k, v in self.settings.items()]
        return "\n".join(lines) + "\n"


class Student:
    def __init__(self, problem: Problem, slip: str | None = None, place=None, decimals: int = 4, by_hand=True, also=()):
        """``also``: more ``(slip, place)`` pairs, for a sheet with several independent slips."""
        self.p, self.slip, self.place, self.decimals, self.by_hand = problem, slip, place, decimals, by_hand
        self.slips = [(slip, place), *also]
        self.sheet: dict[str, object] = {}
        self.slipped: list[str] = []  # the paths written with the wrong formula

    def at(self, slip: str, place=None) -> bool:
        return any(s == slip and (p is None or place is None or p == place) for s, p in self.slips)

    def write(self, path: str, value, slipped=False):
        """Write ``value`` on the sheet, rounded; return what the student goes on with."""
        value = np.asarray(value, dtype=float)
        shown = np.round(value, self.decimals) + 0.0
        self.sheet[path] = shown.tolist()
        if slipped:
            self.slipped.append(path)
        return shown if self.by_hand else value

    def solve(self) -> dict[str, object]:
        p = self.p
        X = np.asarray(p.X, dtype=float)
        n = len(X)
        params = [
            {k: np.asarray(v, dtype=float) for k, v in L.items() if k in ("W", "b", "gamma", "beta")} for L in p.layers
        ]
        # forward
        xs, caches, a = [], [], X
        for i, L in enumerate(p.layers):
            xs.append(a)
            a, cache, slipped = self.forward(i, L, params[i], a)
            a = self.write(f"layers[{i}].output", a, slipped)
            caches.append((cache, a) if L["type"] in (*_ACTIVATIONS, "softmax") else cache)  # goes on from its own a
        # loss
        Y = np.asarray(p.y, dtype=float)
        if p.loss in ("cross_entropy", "softmax_cross_entropy") and Y.ndim == 1:
            Y = np.eye(a.shape[1])[Y.astype(int)]
        k = {"mean": 1 / n, "sum": 1.0, "half_mean": 0.5 / n, "half_sum": 0.5}[p.scale]
        loss, g = self.loss(a, Y, k, n)
        penalty = 0.5 * p.l2 * sum(float((q["W"] ** 2).sum()) for q in params if "W" in q)
        if self.at("l2.penalty_half_forgotten"):
            penalty *= 2
        self.write("loss", loss + penalty, any(self.at(s) for s in _LOSS_SLIPS))
        last = len(p.layers) - 1
        g = self.write("loss_grad", g, any(self.at(s) for s in _LOSS_GRAD_SLIPS))
        # backward
        grads = [{} for _ in p.layers]
        for i in reversed(range(len(p.layers))):
            L = p.layers[i]
            g, grads[i] = self.backward(i, L, params[i], xs, caches[i], g, k, Y, last)
        # update
        for i in range(len(p.layers)):
            for name in grads[i]:
                self.update(i, name, params[i][name], grads[i][name])
        return self.sheet

    # -- forward -------------------------------------------------------------------------------------------
    def forward(self, i, L, q, x):
        kind = L["type"]
        if kind == "linear":
            W = q["W"]
            if self.at("linear.weights_transposed", i):
                return x @ W.T + q.get("b", 0), None, True
            if self.at("linear.bias_forgotten", i) and "b" in q:
                return x @ W, None, True
            return x @ W + q.get("b", 0), None, False
        if kind in _ACTIVATIONS:
            if self.at("activation.not_applied", i):  # (the identity has no slip: not in these problems)
                return x.copy(), x, True
            if kind == "relu":
                return np.maximum(x, 0), x, False
            if kind == "leaky_relu":
                return np.where(x > 0, x, L["alpha"] * x), x, False
            if kind == "sigmoid":
                if self.at("sigmoid.exponent_sign", i):  # σ(−z) = 1 − σ(z)
                    return 1 / (1 + np.exp(x)), x, True
                return 1 / (1 + np.exp(-x)), x, False
            if kind == "tanh":
                return np.tanh(x), x, False
            if self.at("gelu.tanh_approximation", i):
                return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3))), x, True
            return x * _phi(x), x, False
        if kind == "softmax":
            if self.at("softmax.over_columns", i):
                return _softmax(x, axis=0), x, True
            return _softmax(x), x, False
        if kind in ("batchnorm", "layernorm"):
            axis = 0 if kind == "batchnorm" else 1
            m = x.shape[axis]
            mean = x.mean(axis=axis, keepdims=True)
            divisor = m - 1 if self.at("normalization.unbiased_variance", i) else m
            var = ((x - mean) ** 2).sum(axis=axis, keepdims=True) / divisor
            inv = 1 / np.sqrt(var + 1e-5)
            x_hat = (x - mean) * inv
            return q["gamma"] * x_hat + q["beta"], (x_hat, inv), divisor != m
        raise ValueError(kind)

    # -- the loss --------------------------------------------------------------------------------------------
    def loss(self, a, Y, k, n):
        kind = self.p.loss
        if self.at("loss.mean_forgotten"):
            k = k * n
        if self.at("loss.half_forgotten") and self.p.scale in ("half_mean", "half_sum"):
            k = 2 * k
        if self.at("mse.mean_over_outputs") and kind == "mse":
            k = k / a.shape[1]
        if kind == "mse":
            loss = k * ((a - Y) ** 2).sum()
            g = 2 * k * (a - Y)
            if self.at("mse.two_forgotten"):
                g = k * (a - Y)
        elif kind == "cross_entropy":
            log = np.log10 if self.at("cross_entropy.log10") else np.log
            loss = -k * (Y * log(a)).sum()
            g = -k * Y / a
        elif kind == "softmax_cross_entropy":
            s = _softmax(a)
            log = np.log10 if self.at("cross_entropy.log10") else np.log
            loss = -k * (Y * log(s)).sum()
            g = k * (s - Y)
            if self.at("fused.minus_y_forgotten"):
                g = k * s
        elif kind == "bce":
            with np.errstate(invalid="ignore", divide="ignore"):  # a "probability" out of (0, 1): not writable
                loss = -k * (Y * np.log(a) + (1 - Y) * np.log(1 - a)).sum()
            sign = 1 if self.at("bce.y_term_sign") else -1
            g = k * (sign * Y / a + (1 - Y) / (1 - a))
        else:
            raise ValueError(kind)
        if self.at("loss.gradient_sign"):
            g = -g
        if self.at("cross_entropy.minus_forgotten") and kind != "mse":
            loss = -loss
        return loss, g

    # -- backward -----------------------------------------------------------------------------------------------
    def backward(self, i, L, q, xs, cache, g, k, Y, last):
        kind, x, p = L["type"], xs[i], self.p
        grads = {}
        if kind == "linear":
            W = q["W"]
            dW = x.T @ g
            slipped_W = False
            if self.at("linear.weight_gradient_transposed", i):
                dW, slipped_W = dW.T, True
            if self.at("linear.weight_gradient_pre_activation", i) and i and p.layers[i - 1]["type"] in _ACTIVATIONS:
                dW, slipped_W = xs[i - 1].T @ g, True
            if p.l2:
                term = p.l2 * W
                if self.at("l2.gradient_two_lambda", (i, "W")):
                    term, slipped_W = 2 * term, True
                if self.at("l2.gradient_forgotten", (i, "W")):
                    term, slipped_W = 0 * term, True
                dW = dW + term
            grads["W"] = self.write(f"layers[{i}].grads.W", dW, slipped_W)
            if "b" in q:
                db, slipped_b = g.sum(axis=0), False
                if self.at("linear.bias_gradient_averaged", i):
                    db, slipped_b = g.mean(axis=0), True
                if self.at("linear.bias_gradient_not_summed", i) and len(g) > 1:
                    db, slipped_b = g.copy(), True
                if p.l2 and self.at("l2.bias_penalised", (i, "b")):
                    db, slipped_b = db + p.l2 * q["b"], True
                grads["b"] = self.write(f"layers[{i}].grads.b", db, slipped_b)
            if i == 0:
                return None, grads
            if self.at("linear.input_gradient_not_transposed", i):
                return self.write(f"layers[{i}].grad_input", g @ W, True), grads
            if self.at("linear.input_gradient_after_update", i) and p.optimizer in ("sgd", "momentum"):
                return self.write(f"layers[{i}].grad_input", g @ (W - p.lr * grads["W"]).T, True), grads
            return self.write(f"layers[{i}].grad_input", g @ W.T), grads
        if kind in _ACTIVATIONS:
            z, a = cache
            derivative = {
                "relu": lambda: (z > 0).astype(float),
                "leaky_relu": lambda: np.where(z > 0, 1.0, L["alpha"]),
                "sigmoid": lambda: a * (1 - a),
                "tanh": lambda: 1 - a * a,
                "gelu": lambda: _phi(z) + z * _pdf(z),
            }[kind]()
            slipped = True
            if self.at("activation.derivative_not_applied", i):
                derivative = np.ones_like(z)
            elif self.at("leaky_relu.negative_slope_forgotten", i) and kind == "leaky_relu":
                derivative = (z > 0).astype(float)
            elif self.at("activation.derivative_at_output", i) and kind not in ("relu", "leaky_relu"):
                derivative = {
                    "sigmoid": lambda: (1 / (1 + np.exp(-a))) * (1 - 1 / (1 + np.exp(-a))),
                    "tanh": lambda: 1 - np.tanh(a) ** 2,
                    "gelu": lambda: _phi(a) + a * _pdf(a),
                }[kind]()
            elif self.at("activation.output_form_at_input", i) and kind in ("sigmoid", "tanh"):
                derivative = z * (1 - z) if kind == "sigmoid" else 1 - z * z
            elif self.at("tanh.square_forgotten", i) and kind == "tanh":
                derivative = 1 - a
            elif self.at("sigmoid.one_minus_forgotten", i) and kind == "sigmoid":
                derivative = a
            else:
                slipped = False
            derivative = self.write(f"layers[{i}].local_derivative", derivative, slipped)
            return self.write(f"layers[{i}].grad_input", g * derivative), grads
        if kind == "softmax":
            s = cache[1]
            if i == last and p.loss == "cross_entropy" and self.at("paired.minus_y_forgotten", i):
                return self.write(f"layers[{i}].grad_input", k * s, True), grads
            if self.at("softmax.jacobian_diagonal_only", i):
                return self.write(f"layers[{i}].grad_input", g * s * (1 - s), True), grads
            return self.write(f"layers[{i}].grad_input", s * (g - (g * s).sum(axis=1, keepdims=True))), grads
        if kind in ("batchnorm", "layernorm"):
            x_hat, inv = cache
            axis = 0 if kind == "batchnorm" else 1
            gamma = q["gamma"]
            d_gamma = (g * (x if self.at("normalization.gamma_gradient_with_input", i) else x_hat)).sum(axis=0)
            grads["gamma"] = self.write(
                f"layers[{i}].grads.gamma", d_gamma, self.at("normalization.gamma_gradient_with_input", i)
            )
            grads["beta"] = self.write(f"layers[{i}].grads.beta", g.sum(axis=0))
            gh = g * gamma
            mean = gh.mean(axis=axis, keepdims=True)
            if self.at("normalization.backward_without_statistics", i):
                return self.write(f"layers[{i}].grad_input", gh * inv, True), grads
            if self.at("normalization.backward_without_variance_term", i):
                return self.write(f"layers[{i}].grad_input", (gh - mean) * inv, True), grads
            full = (gh - mean - x_hat * (gh * x_hat).mean(axis=axis, keepdims=True)) * inv
            return self.write(f"layers[{i}].grad_input", full), grads
        raise ValueError(kind)

    # -- update ------------------------------------------------------------------------------------------------
    def update(self, i, name, theta, g):
        p, lr, place = self.p, self.p.lr, (i, name)
        slipped = True
        if p.optimizer == "sgd":
            step = lr * g
        elif p.optimizer in ("momentum", "nesterov"):  # the first step: b = g (or (1 − μ)·g, dampened)
            mu = p.settings.get("momentum", 0.9)
            b = (1 - mu) * g if self.at("momentum.dampened", place) else g
            nesterov = p.optimizer == "nesterov" and not self.at("nesterov.plain_momentum", place)
            step = lr * (g + mu * b if nesterov else b)
        elif p.optimizer == "adam":
            b1, b2, eps = 0.9, 0.999, 1e-8
            m, v = (1 - b1) * g, (1 - b2) * g * g
            if self.at("adam.bias_correction_forgotten", place):
                step = lr * m / (np.sqrt(v) + eps)
            elif self.at("adam.square_root_forgotten", place):
                step = lr * (m / (1 - b1)) / (v / (1 - b2) + eps)
            else:
                step = lr * (m / (1 - b1)) / (np.sqrt(v / (1 - b2)) + eps)
        elif p.optimizer == "rmsprop":
            alpha = p.settings.get("alpha", 0.99)
            v = (1 - alpha) * g * g
            step = lr * g / ((v if self.at("rmsprop.square_root_forgotten", place) else np.sqrt(v)) + 1e-8)
        else:
            raise ValueError(p.optimizer)
        if step.shape != theta.shape:
            return  # a gradient of another shape (transposed, not summed): the student cannot update with it
        new = theta - step
        if self.at("update.not_applied", place):
            new = theta.copy()
        elif self.at("update.sign_flipped", place):
            new = theta + step
        elif self.at("update.lr_forgotten", place):
            new = theta - step / lr
        elif self.at("update.gradient_transposed", place) and new.ndim == 2 and new.shape[0] == new.shape[1]:
            new = theta - step.T
        elif not any(self.at(s, place) for s in _UPDATE_SLIPS):
            slipped = False
        self.write(f"layers[{i}].params_after.{name}", new, slipped)


_ACTIVATIONS = ("relu", "leaky_relu", "sigmoid", "tanh", "gelu")
_LOSS_SLIPS = (
    "loss.mean_forgotten",
    "cross_entropy.log10",
    "l2.penalty_half_forgotten",
    "loss.half_forgotten",
    "mse.mean_over_outputs",
    "cross_entropy.minus_forgotten",
)
_LOSS_GRAD_SLIPS = (
    "loss.mean_forgotten",
    "loss.half_forgotten",
    "mse.mean_over_outputs",
    "mse.two_forgotten",
    "loss.gradient_sign",
    "fused.minus_y_forgotten",
    "bce.y_term_sign",
)
#: The slips this student can make.
KNOWN = (
    "linear.bias_forgotten",
    "linear.weights_transposed",
    "activation.not_applied",
    "sigmoid.exponent_sign",
    "softmax.over_columns",
    "normalization.unbiased_variance",
    "gelu.tanh_approximation",
    "activation.derivative_not_applied",
    "activation.derivative_at_output",
    "activation.output_form_at_input",
    "tanh.square_forgotten",
    "sigmoid.one_minus_forgotten",
    "linear.input_gradient_not_transposed",
    "linear.input_gradient_after_update",
    "softmax.jacobian_diagonal_only",
    "paired.minus_y_forgotten",
    "normalization.backward_without_statistics",
    "normalization.backward_without_variance_term",
    "linear.weight_gradient_transposed",
    "linear.weight_gradient_pre_activation",
    "linear.bias_gradient_averaged",
    "normalization.gamma_gradient_with_input",
    *_LOSS_SLIPS,
    *_LOSS_GRAD_SLIPS[3:],
    "l2.gradient_two_lambda",
    "l2.gradient_forgotten",
    "l2.bias_penalised",
    "update.sign_flipped",
    "update.lr_forgotten",
    "update.gradient_transposed",
    "momentum.dampened",
    "adam.bias_correction_forgotten",
    "adam.square_root_forgotten",
    "rmsprop.square_root_forgotten",
    "leaky_relu.negative_slope_forgotten",
    "linear.bias_gradient_not_summed",
    "update.not_applied",
    "nesterov.plain_momentum",
)
_UPDATE_SLIPS = (
    "momentum.dampened",
    "nesterov.plain_momentum",
    "adam.bias_correction_forgotten",
    "adam.square_root_forgotten",
    "rmsprop.square_root_forgotten",
)


def sheet_toml(sheet: dict[str, object]) -> str:
    """The sheet as an answers file, each number as a student writes it (``2``, not ``2.0``)."""

    def number(v) -> str:
        if isinstance(v, list):
            return "[" + ", ".join(number(x) for x in v) + "]"
        return str(int(v)) if float(v).is_integer() else repr(float(v))

    return "".join(f'"{path}" = {number(value)}\n' for path, value in sheet.items())
