"""Replay the steps of a problem with slips applied and a student's numbers put in: the worlds against
which ``chainrule check`` reads an answer sheet.

:func:`replay` runs the computation of ``chainrule explain`` — the registered layers' forward and
backward passes, the loss, L2, the optimizer — and records every value by its place in the JSON of
``explain`` (``layers[0].output``, ``loss_grad``, ``layers[2].grads.W``). Two things can be put in:

* **slips** (:mod:`chainrule.explain.slips`), each at a set of places: the value computed there is
  replaced by the slip's, and the rest of the computation goes on from it;
* **the student's numbers**: once a value is recorded, the number the student wrote for it (where they
  wrote one) is used from there on. What is recorded for an entry is then what its formula gives for the
  student's own earlier numbers — "expected given yours", the value an entry has under error carried
  forward. With ``snap`` a written number is used only where it differs from the computed one at the
  precision written (a student who carried more digits than they wrote).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from chainrule.activations import ElementWise
from chainrule.errors import ChainruleError
from chainrule.explain.problem import Problem
from chainrule.explain.slips import SLIPS, Slip
from chainrule.i18n import _
from chainrule.layers import BatchNorm1d
from chainrule.losses import l2_penalty
from chainrule.optim import SGD, Adam

Site = tuple[str, Any]  # (hook, place): place is a layer index, (layer, parameter), "loss" or "l2"


@dataclass(frozen=True)
class Placed:
    """A slip at some of the places where it can happen (``everywhere``: at all of them)."""

    slip: Slip
    sites: frozenset[Site]
    where: str  # in the language in effect: "in layer 1 (relu)"
    everywhere: bool = False


class Sheet(Protocol):
    """A student's numbers by canonical path (``values``: arrays, NaN where an entry was left blank), and
    the tolerance of each written entry when compared with a computed value (``tol``)."""

    values: dict[str, NDArray]

    def tol(self, path: str, against: NDArray) -> NDArray: ...


class _Target:
    """What a slip's ``when`` sees of a layer: the layer, and two facts about its neighbours."""

    def __init__(self, layer: Any, paired_last: bool, after_activation: bool) -> None:
        self.layer, self.paired_last, self.after_activation = layer, paired_last, after_activation

    def __getattr__(self, name: str) -> Any:
        return getattr(self.layer, name)


_WRITES = {
    "forward": "output",
    "derivative": "local_derivative",
    "grad_input": "grad_input",
    "param_grad": "grads.",
    "l2_grad": "grads.",
    "update": "params_after.",
}


def written_by(site: Site, path: str) -> bool:
    """Whether the value at canonical ``path`` is computed by the formula at ``site`` (where a slip
    there writes a wrong number itself, rather than passing one on)."""
    hook, place = site
    if hook in ("loss", "l2_penalty"):
        return path in ("loss", "data_loss" if hook == "loss" else "l2_penalty")
    if hook == "loss_grad":
        return path == "loss_grad"
    layer, name = place if isinstance(place, tuple) else (place, "")
    prefix = f"layers[{layer}].{_WRITES[hook]}"
    return path == prefix or (prefix.endswith(".") and path == prefix + name if name else path.startswith(prefix))


def canonical(path: str, layers: int, steps: int = 1) -> str:
    """One name for values that have two: a layer's ``input`` is the output of the layer before it, a
    layer's ``grad_output`` the ``grad_input`` of the layer after it (of the last: ``loss_grad``),
    ``history[0]`` is ``loss``; negative indices (of layers, of the history) count from the end."""
    if path.startswith("history["):
        index = int(path[len("history[") : -1])
        index = index + steps if index < 0 else index
        return "loss" if index == 0 else f"history[{index}]"
    if path.startswith("layers["):
        index_text, rest = path[len("layers[") :].split("]", 1)
        index = int(index_text)
        if index < 0:
            index += layers
        if rest == ".input" and index > 0:
            return f"layers[{index - 1}].output"
        if rest == ".grad_output":
            return "loss_grad" if index == layers - 1 else f"layers[{index + 1}].grad_input"
        return f"layers[{index}]{rest}"
    return path


def placements(problem: Problem) -> list[Placed]:
    """Every slip at every single place where it can happen in ``problem``, and (where there are several)
    at all of them at once."""
    layers = problem.model.layers
    optimizer = problem.make_optimizer(problem.model.astype(np.float64))
    out: list[Placed] = []
    for slip in SLIPS:
        sites: list[tuple[frozenset[Site], str]] = []
        hooks = set(slip.hooks)
        if hooks & {"forward", "derivative", "grad_input", "param_grad"}:
            for i, layer in enumerate(layers):
                target = _Target(
                    layer,
                    paired_last=i == len(layers) - 1 and problem.loss.after == layer.kind,
                    after_activation=i > 0
                    and isinstance(layers[i - 1], ElementWise)
                    and layers[i - 1].kind != "identity",
                )
                if slip.when(target):
                    where = _("in layer {index} ({kind})").format(index=i, kind=layer.kind)
                    sites.append((frozenset((h, i) for h in slip.hooks), where))
        if hooks & {"loss", "loss_grad"} and slip.when(problem.loss):
            words = {"loss": _("in the loss"), "loss_grad": _("in the loss's gradient")}
            sites += [(frozenset({(h, h)}), words[h]) for h in slip.hooks]
        if "l2_grad" in hooks and problem.l2:
            for i, layer in enumerate(layers):
                for name, p in layer.params.items():
                    if slip.when(p):
                        where = _("in the gradient of {symbol}").format(symbol=_symbol(name, i))
                        sites.append((frozenset({("l2_grad", (i, name))}), where))
        if "l2_penalty" in hooks and problem.l2:
            sites.append((frozenset({("l2_penalty", "l2")}), _("in the L2 penalty")))
        if "update" in hooks and optimizer is not None and slip.when(optimizer):
            for i, layer in enumerate(layers):
                for name in layer.params:
                    where = _("in the update of {symbol}").format(symbol=_symbol(name, i))
                    sites.append((frozenset({("update", (i, name))}), where))
        out += [Placed(slip, s, where) for s, where in sites]
        if len(sites) > 1:
            out.append(Placed(slip, frozenset().union(*(s for s, _ in sites)), "everywhere", everywhere=True))
    return out


def _symbol(name: str, layer: int) -> str:
    from chainrule.explain.render import indexed
    from chainrule.notation import SYMBOLS

    return indexed(SYMBOLS.get(name, name), layer).text


def replay(
    problem: Problem,
    slips: Iterable[Placed] = (),
    sheet: Sheet | None = None,
    snap: bool = False,
    steps: int = 1,
    round_to: int | None = None,
) -> dict[str, NDArray]:
    """Every value of ``steps`` steps of ``problem`` by canonical path, with ``slips`` applied and the
    ``sheet``'s numbers put in (see the module's docstring). A computation that cannot go on (a student's
    number of another shape, a probability above 1) stops there: what was recorded until then is returned.
    With ``round_to``, every number the computation goes on with is rounded to that many decimals, as by a
    student who works every step by hand (the later steps of a problem too, which they do not write)."""
    run = _Run(problem, slips, sheet, snap, round_to)
    with np.errstate(all="ignore"), contextlib.suppress(ChainruleError, ValueError, FloatingPointError, IndexError):
        run.steps(steps)
    return run.values


class _Run:
    def __init__(
        self, problem: Problem, slips: Iterable[Placed], sheet: Sheet | None, snap: bool, round_to: int | None
    ) -> None:
        self.problem, self.sheet, self.snap, self.round_to = problem, sheet, snap, round_to
        self.hooks: dict[Site, list[Slip]] = {}
        for placed in slips:
            for site in placed.sites:
                self.hooks.setdefault(site, []).append(placed.slip)
        self.model = problem.model.astype(np.float64)
        self.optimizer = problem.make_optimizer(self.model)
        self.values: dict[str, NDArray] = {}
        self.own_state: dict[tuple, dict] = {}  # what a slip's own update rule keeps between steps
        self.recording = True
        self.grads: dict[tuple[int, str], NDArray] = {}

    def slip(self, hook: str, place: Any, value: NDArray, **context: Any) -> NDArray:
        for slip in self.hooks.get((hook, place), ()):
            value = np.asarray(slip.change(value, context), dtype=np.float64)
        return value

    def put(self, path: str, value: Any) -> NDArray:
        """Record ``value`` at ``path``; return what the computation goes on with (the student's number
        where they wrote one)."""
        value = np.asarray(value, dtype=np.float64)
        if self.round_to is not None:
            value = np.round(value, self.round_to)
        if not self.recording:
            return value
        self.values[path] = value
        if self.sheet is None or path not in self.sheet.values:
            return value
        written = self.sheet.values[path]
        if written.shape != value.shape:
            return value if np.isnan(written).any() else written
        use = np.where(np.isnan(written), value, written)
        if self.snap:
            use = np.where(np.abs(written - value) <= self.sheet.tol(path, value), value, use)
        return use

    def steps(self, count: int) -> None:
        problem = self.problem
        self.values["steps"] = np.float64(count)
        for t in range(1, count + 1):
            value = self.step(t)
            if t > 1:
                self.values[f"history[{t - 1}]"] = np.float64(value)
            self.recording = False
        self.recording = True
        if self.optimizer is not None:
            for i, layer in enumerate(self.model.layers):
                for name, p in layer.params.items():
                    p.data = self.put(f"layers[{i}].params_after.{name}", p.data).copy()
        out = self.model.forward(problem.X)
        final = self.loss_value(out, record=False)
        self.put("final_loss", final)

    def loss_value(self, out: NDArray, record: bool = True) -> NDArray:
        problem = self.problem
        data = np.float64(problem.loss.forward(out, problem.y))
        n, d = out.shape
        data = self.slip("loss", "loss", data, n=n, d=d, k=problem.loss.factor(n), pred=out, target=problem.loss.target)
        penalty = np.float64(0.0)
        if problem.l2:
            penalty = self.slip("l2_penalty", "l2", np.float64(l2_penalty(self.model.parameters(), problem.l2)))
        if not record:
            return data + penalty
        data, penalty = self.put("data_loss", data), self.put("l2_penalty", penalty)
        return self.put("loss", data + penalty)

    def step(self, t: int) -> float:
        problem, model = self.problem, self.model
        model.zero_grad()
        for i, layer in enumerate(model.layers):
            for name, p in layer.params.items():
                self.put(f"layers[{i}].params.{name}", p.data.copy())
        x = self.put("layers[0].input", problem.X)
        inputs = []
        for i, layer in enumerate(model.layers):
            inputs.append(x)
            right = layer.forward(x)
            if isinstance(layer, BatchNorm1d) and layer.batch_stats:
                right = self.batchnorm_forward(i, layer, x)
            out = self.slip("forward", i, right, layer=layer, x=x, out=right)
            out = self.put(f"layers[{i}].output", out)
            if getattr(layer, "out", None) is not None:
                layer.out = out  # its backward pass works from the output the student has
            x = out
        loss = problem.loss
        value = self.loss_value(x)
        n, d = x.shape
        context = {"n": n, "d": d, "k": loss.factor(n), "pred": x, "target": loss.target}
        g = self.put("loss_grad", self.slip("loss_grad", "loss_grad", loss.backward(), **context))
        for i in reversed(range(len(model.layers))):
            g = self.backward(i, inputs, g, context, t)
        if self.optimizer is not None:
            self.update(t)
        return float(value)

    def backward(self, i: int, inputs: list[NDArray], g: NDArray, loss_context: dict, t: int) -> NDArray:
        layer, x, problem = self.model.layers[i], inputs[i], self.problem
        out = getattr(layer, "out", None)
        context = {"layer": layer, "x": x, "out": out, "g": g, "k": loss_context["k"]}
        if isinstance(layer, ElementWise):
            derivative = self.slip("derivative", i, layer.local_derivative(), **context)
            derivative = self.put(f"layers[{i}].local_derivative", derivative)
            grad_input = g * derivative
        else:
            grad_input = layer.backward(g, input_grad=True)
        if isinstance(layer, BatchNorm1d) and layer.batch_stats:  # by the route through x̂, σ² and μ

            def put(name: str, value: NDArray) -> NDArray:
                return self.put(f"layers[{i}].details.{name}", value)

            grad_input = batchnorm_backward(g, layer.params["gamma"].data, x - layer.mean, layer.var, layer.eps, put)
        raw = {name: p.grad.copy() for name, p in layer.params.items()}
        lam = problem.l2
        optimizer = self.optimizer

        def updated_W() -> NDArray | None:
            """The weights after this step's update, where it is ``W − lr·∂L/∂W`` (SGD's first step)."""
            if not isinstance(optimizer, SGD) or optimizer.weight_decay or "W" not in raw:
                return None
            if optimizer.momentum and (t > 1 or optimizer.nesterov or optimizer.dampening):
                return None
            W = layer.params["W"]
            return W.data - optimizer.lr * (raw["W"] + (lam * W.data if lam and W.decay else 0))

        prev_x = inputs[i - 1] if i > 0 else None
        grad_input = self.slip("grad_input", i, grad_input, updated_W=updated_W, **context)
        for name, p in layer.params.items():
            grad = self.slip("param_grad", i, raw[name], name=name, prev_x=prev_x, **context)
            if lam:
                term = lam * p.data if p.decay else np.zeros_like(p.data)
                term = self.slip("l2_grad", (i, name), term, lam=lam, param=p.data)
                grad = grad + (term.T if grad.shape == term.T.shape != term.shape else term)  # δᵀX + λWᵀ
            self.grads[(i, name)] = self.put(f"layers[{i}].grads.{name}", grad)
        return self.put(f"layers[{i}].grad_input", grad_input)

    def update(self, t: int) -> None:
        optimizer = self.optimizer
        optimizer.steps += 1
        constants = optimizer.step_constants()
        owners = {id(p): (i, name) for i, layer in enumerate(self.model.layers) for name, p in layer.params.items()}
        for p, state in zip(optimizer.params, optimizer.state, strict=True):
            i, name = owners[id(p)]
            grad = self.grads[(i, name)]
            before = p.data.copy()
            if grad.shape != p.data.shape:
                continue  # a gradient of another shape (δ not summed): no update to replay
            if optimizer.weight_decay:
                grad = grad + optimizer.weight_decay * p.data
            optimizer.update(p.data, grad, state, constants)
            if isinstance(optimizer, Adam) and not optimizer.decoupled_decay and self.recording:
                p.data[...] = self.adam_moments(i, name, before, state, optimizer)
            own = self.own_state.setdefault((i, name), {})
            after = self.slip(
                "update",
                (i, name),
                p.data.copy(),
                before=before,
                raw_grad=self.grads[(i, name)],
                optimizer=optimizer,
                state=own,
                t=t,
            )
            p.data[...] = after if self.round_to is None else np.round(after, self.round_to)

    def batchnorm_forward(self, i: int, layer: BatchNorm1d, x: NDArray) -> NDArray:
        """Batch normalisation in training mode by its pieces, each recorded (``layers[i].details.mean``,
        ``.var``, ``.x_hat``) and the student's own going on into the next; the layer keeps them for its
        backward pass."""

        def put(name: str, value: NDArray) -> NDArray:
            return self.put(f"layers[{i}].details.{name}", value)

        mean = put("mean", x.mean(axis=0))
        var = put("var", ((x - mean) ** 2).mean(axis=0))
        x_hat = put("x_hat", (x - mean) / np.sqrt(var + layer.eps))
        layer.mean, layer.var, layer.x_hat = mean, var, x_hat
        layer.inv_std = 1.0 / np.sqrt(var + layer.eps)
        return x_hat * layer.params["gamma"].data + layer.params["beta"].data

    def adam_moments(self, i: int, name: str, before: NDArray, state: dict, optimizer: Adam) -> NDArray:
        """Adam's moments ``m``, ``v`` and their bias corrections ``m̂``, ``v̂``, each recorded
        (``layers[i].moments.W.m``) and the student's own going on; the parameter after the step."""

        def put(key: str, value: NDArray) -> NDArray:
            return self.put(f"layers[{i}].moments.{name}.{key}", value)

        m, v = put("m", state["exp_avg"].copy()), put("v", state["exp_avg_sq"].copy())  # the state moves on
        state["exp_avg"][...], state["exp_avg_sq"][...] = m, v
        m_hat, v_hat = adam_corrected(m, v, optimizer, optimizer.steps, put)
        return before - optimizer.lr * m_hat / (np.sqrt(v_hat) + optimizer.eps)


def _keep(name: str, value: NDArray) -> NDArray:
    return value


def batchnorm_backward(g: NDArray, gamma: NDArray, centered: NDArray, var: NDArray, eps: float, put=_keep) -> NDArray:
    """∂L/∂X of batch normalisation in training mode by the route the notes take, through ``∂L/∂x̂ = g ⊙ γ``,
    the σ² term ``∂L/∂σ² = −½·Σ ∂L/∂x̂ ⊙ (x − μ)·(σ² + ε)^(−3/2)`` and the μ term
    ``∂L/∂μ = −Σ ∂L/∂x̂/√(σ² + ε) − 2/n·∂L/∂σ²·Σ (x − μ)``; ``put(name, value)`` sees each of them
    (``grad_x_hat``, ``grad_var``, ``grad_mean``) and returns the value to go on with. ``centered`` is
    ``x − μ``."""
    n = g.shape[0]
    std = np.sqrt(var + eps)
    g_hat = put("grad_x_hat", g * gamma)
    g_var = put("grad_var", -0.5 * (g_hat * centered).sum(axis=0) / std**3)
    g_mean = put("grad_mean", -g_hat.sum(axis=0) / std - 2.0 * g_var * centered.sum(axis=0) / n)
    return g_hat / std + 2.0 * g_var * centered / n + g_mean / n


def adam_corrected(m: NDArray, v: NDArray, optimizer: Adam, t: int, put=_keep) -> tuple[NDArray, NDArray]:
    """Adam's bias-corrected moments ``m̂ = m/(1 − β₁ᵗ)`` and ``v̂ = v/(1 − β₂ᵗ)`` at step ``t``;
    ``put(name, value)`` sees each (``m_hat``, ``v_hat``) and returns the value to go on with."""
    return put("m_hat", m / (1.0 - optimizer.beta1**t)), put("v_hat", v / (1.0 - optimizer.beta2**t))
