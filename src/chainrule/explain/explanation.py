"""Run the training steps of a problem and keep every number: the data of ``chainrule explain``.

The first steps are recorded in full with a :class:`~chainrule.trace.Trace`; later steps (``--steps
10000``) only keep their loss, so that long runs stay fast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from chainrule.derive.topics import topic_of
from chainrule.explain.problem import Problem, check_steps
from chainrule.layers import BatchNorm1d
from chainrule.losses import Loss, l2_penalty
from chainrule.network import Sequential
from chainrule.optim import Adam, Optimizer
from chainrule.step import train_step
from chainrule.trace import LayerRecord, Trace

#: Steps recorded in full (for the renderers, and for ``chainrule check`` to recognise a value that
#: belongs to another step); later steps keep only their loss.
DETAILED_STEPS = 20


@dataclass
class StepRecord:
    """Everything about one step: the trace of every layer, the loss, and the update."""

    number: int
    layers: list[LayerRecord]
    loss: float  # data loss + L2 penalty, before the update
    penalty: float
    loss_grad: NDArray  # ∂L/∂(network output), what the loss passes to the last layer
    grads: dict[int, dict[str, NDArray]]  # total gradients (L2 included) per layer and parameter
    params_after: dict[int, dict[str, NDArray]]
    optimizer_state: dict[int, dict[str, dict[str, NDArray]]]  # per layer and parameter, by state name
    lr: float


@dataclass
class Explanation:
    problem: Problem
    steps: list[StepRecord]
    history: list[float]
    final_loss: float
    params_after: dict[int, dict[str, NDArray]] = field(default_factory=dict)
    optimizer: Optimizer | None = None  # as it is after the steps

    @property
    def first(self) -> StepRecord:
        return self.steps[0]

    def __repr__(self) -> str:
        return (
            f"Explanation({self.problem.title!r}: {len(self.first.layers)} layers, {len(self.history)} steps, "
            f"loss {self.history[0]:.6g} → {self.final_loss:.6g})"
        )

    def _repr_markdown_(self) -> str:
        """Jupyter's display: every number of the first step, as ``chainrule explain --format markdown``
        (JupyterLab and VS Code typeset its LaTeX), in the language in effect (:mod:`chainrule.i18n`)."""
        from chainrule.explain.render import render

        return render(self, "markdown")

    def to_html(self, precision: int = 4, lang: str | None = None) -> str:
        """The self-contained page of ``chainrule explain --format html``, in ``lang`` (by default the
        language in effect)."""
        from chainrule.explain.render import render

        return render(self, "html", precision, lang=lang)

    def entry(self, path: str, lang: str | None = None) -> str:
        """How the number at ``path`` (``"layers[0].grads.W[1][0]"``) is computed, with the numbers put in,
        as ``chainrule explain --entry`` shows it, in ``lang`` (by default the language in effect)."""
        from chainrule.explain.entries import expand
        from chainrule.explain.render import fmt
        from chainrule.i18n import language

        with language(lang):
            return expand(self, path).text(fmt)


def run_problem(problem: Problem, steps: int | None = None) -> Explanation:
    """Train a float64 copy of the problem's network for ``steps`` steps (default: the file's)."""
    steps = problem.steps if steps is None else check_steps(steps, "steps")
    model: Sequential = problem.model.astype(np.float64)
    optimizer = problem.make_optimizer(model)
    owners = _parameter_owners(model, optimizer)
    records, history = [], []
    for number in range(1, steps + 1):
        if number <= DETAILED_STEPS:
            trace = Trace()
            with trace.recording(model):
                value, _ = train_step(model, problem.loss, optimizer, problem.X, problem.y, problem.l2, input_grad=True)
            records.append(_step_record(number, trace, value, problem, optimizer, owners))
        else:
            value, _ = train_step(model, problem.loss, optimizer, problem.X, problem.y, problem.l2)
        history.append(float(value))
    final = _loss_at(model, problem.loss, problem)
    params_after = {
        i: {n: p.data.copy() for n, p in layer.params.items()} for i, layer in enumerate(model.layers) if layer.params
    }
    return Explanation(problem, records, history, final, params_after, optimizer)


def to_json(explanation: Explanation) -> dict[str, Any]:
    """The JSON contract of ``chainrule explain --format json`` (``loss``, ``layers``, ``history``,
    ``final_loss``) and a few more keys: per layer ``input``, ``grad_output``, ``local_derivative``
    (element-wise activations), ``params`` (before the step) and ``derivation`` (the ``chainrule derive``
    topic behind its formulas); ``loss_grad``, ``data_loss``, ``l2_penalty``, ``steps``, and
    ``derivations`` (the topics behind the loss's gradient, the update and L2)."""
    problem, first = explanation.problem, explanation.first
    layers = []
    for record in first.layers:
        entry: dict[str, Any] = {
            "type": record.layer.kind,
            "input": record.input.tolist(),
            "output": record.output.tolist(),
            "grad_output": record.grad_output.tolist(),
            "grad_input": record.grad_input.tolist(),
        }
        if record.local_derivative is not None:
            entry["local_derivative"] = record.local_derivative.tolist()
        entry["derivation"] = topic_of("layer", record.layer.kind)
        details = _details(record)
        if details:
            entry["details"] = {n: v.tolist() for n, v in details.items()}
        if record.params:
            entry["params"] = {n: v.tolist() for n, v in record.params.items()}
            entry["grads"] = {n: v.tolist() for n, v in first.grads[record.index].items()}
            entry["params_after"] = {n: v.tolist() for n, v in explanation.params_after[record.index].items()}
            moments = _moments(explanation, record.index)
            if moments:
                entry["moments"] = moments
        layers.append(entry)
    return _finite_or_null(
        {
            "title": problem.title,
            "loss": first.loss,
            "data_loss": first.loss - first.penalty,
            "l2_penalty": first.penalty,
            "loss_grad": first.loss_grad.tolist(),
            "layers": layers,
            "steps": len(explanation.history),
            "history": explanation.history,
            "final_loss": explanation.final_loss,
            "derivations": derivations(explanation),
        }
    )


def _details(record: LayerRecord) -> dict[str, NDArray]:
    """A layer's intermediate values of the first step (BatchNorm in training mode: ``mean``, ``var``,
    ``x_hat``, and the terms of its backward pass, ``grad_x_hat``, ``grad_var``, ``grad_mean``)."""
    from chainrule.explain.replay import batchnorm_backward

    layer = record.layer
    if not isinstance(layer, BatchNorm1d) or not layer.batch_stats or "mean" not in record.details:
        return {}
    details = {name: record.details[name] for name in ("mean", "var", "x_hat")}

    def keep(name: str, value: NDArray) -> NDArray:
        details[name] = value
        return value

    centered = record.input - record.details["mean"]
    batchnorm_backward(record.grad_output, record.params["gamma"], centered, record.details["var"], layer.eps, keep)
    return details


def _moments(explanation: Explanation, index: int) -> dict[str, dict[str, list]]:
    """Adam's moments after the first step per parameter: ``m``, ``v`` and their bias corrections."""
    from chainrule.explain.replay import adam_corrected

    optimizer = explanation.optimizer
    if not isinstance(optimizer, Adam) or optimizer.decoupled_decay:
        return {}
    out = {}
    for name, state in explanation.first.optimizer_state.get(index, {}).items():
        if "exp_avg" in state:
            m, v = state["exp_avg"], state["exp_avg_sq"]
            m_hat, v_hat = adam_corrected(m, v, optimizer, 1)
            out[name] = {"m": m.tolist(), "v": v.tolist(), "m_hat": m_hat.tolist(), "v_hat": v_hat.tolist()}
    return out


def derivations(explanation: Explanation) -> dict[str, str | None]:
    """The ``chainrule derive`` topics behind the formulas of the loss, the update and (if used) L2."""
    problem = explanation.problem
    topics = {"loss": topic_of("loss", problem.loss.kind)}
    if explanation.optimizer is not None:
        topics["optimizer"] = topic_of("optimizer", problem.optimizer_name)
    if problem.l2:
        topics["l2"] = "l2"
    return topics


def _finite_or_null(value: Any) -> Any:
    """JSON has no inf or NaN: a diverging run's non-finite numbers are written as null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, list):
        return [_finite_or_null(v) for v in value]
    if isinstance(value, dict):
        return {k: _finite_or_null(v) for k, v in value.items()}
    return value


def _parameter_owners(model: Sequential, optimizer: Optimizer | None) -> list[tuple[int, str]]:
    """For each of the optimizer's parameters, the (layer index, name) it belongs to."""
    owner = {id(p): (i, name) for i, layer in enumerate(model.layers) for name, p in layer.params.items()}
    return [owner[id(p)] for p in optimizer.params] if optimizer is not None else []


def _step_record(
    number: int,
    trace: Trace,
    value: float,
    problem: Problem,
    optimizer: Optimizer | None,
    owners: list[tuple[int, str]],
) -> StepRecord:
    grads: dict[int, dict[str, NDArray]] = {}
    after: dict[int, dict[str, NDArray]] = {}
    state: dict[int, dict[str, dict[str, NDArray]]] = {}
    saved = optimizer.state_dict()["state"] if optimizer is not None else {}
    for k, (i, name) in enumerate(owners):
        p = optimizer.params[k]
        grads.setdefault(i, {})[name] = p.grad.copy()
        after.setdefault(i, {})[name] = p.data.copy()
        state.setdefault(i, {})[name] = {
            s: np.array(v, copy=True) for s, v in saved.get(k, {}).items() if isinstance(v, np.ndarray)
        }
    layers = [trace.layers[i] for i in sorted(trace.layers)]
    penalty = value - problem.loss.value() if problem.l2 else 0.0
    return StepRecord(
        number,
        layers,
        float(value),
        float(penalty),
        layers[-1].grad_output,
        grads,
        after,
        state,
        optimizer.lr if optimizer is not None else 0.0,
    )


def _loss_at(model: Sequential, loss: Loss, problem: Problem) -> float:
    return float(loss.forward(model.forward(problem.X), problem.y) + l2_penalty(model.parameters(), problem.l2))
