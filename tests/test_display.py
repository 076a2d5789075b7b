"""What a notebook shows: rich display of models, histories, traces, explanations, check reports and
derivations, and the example notebook executed from top to bottom."""

from pathlib import Path

import numpy as np
import pytest

import chainrule as cr
from chainrule.explain import load_problem, run_problem
from chainrule.explain.check import check_answers, load_answers
from chainrule.training.loop import EpochResult, History

from conftest import optional

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_summary_counts_parameters_by_hand():
    model = cr.mlp([784, 128, 10], seed=0)
    text = model.summary()
    # by hand: 784·128 + 128 = 100,480 and 128·10 + 10 = 1,290, together 101,770
    assert "100,480" in text and "1,290" in text and text.endswith("101,770 parameters (float32)")
    assert "(n, 128)" in text.splitlines()[2] and "(n, 10)" in text.splitlines()[4]
    html = model._repr_html_()
    assert html.count("<tr>") == 4 and "101,770 parameters" in html


def test_history_reads_without_numpy_noise():
    history = History([EpochResult(1, np.float64(0.5), np.float64(0.75), 0.625, 0.7, 1.234)])
    history.epochs.append(EpochResult(2, np.float64(0.140625), np.float64(0.9), 0.25, 0.875, 1.0))
    assert repr(history) == "History(2 epochs, loss 0.5000 → 0.1406, validation accuracy 0.8750)"
    html = history._repr_html_()
    assert "np.float64" not in html and '<td class="num">0.1406</td>' in html and html.count("<tr>") == 3


def test_history_plot_draws_both_curves():
    optional("matplotlib")
    history = History([EpochResult(e, 1 / e, e / 10, 1.1 / e, e / 11) for e in range(1, 4)])
    figure = history.plot()
    loss_axis = figure.axes[0]
    assert [list(line.get_ydata()) for line in loss_axis.lines] == [[1, 0.5, 1 / 3], [1.1, 0.55, 1.1 / 3]]


def test_classifier_repr_is_short():
    classifier = cr.training.Classifier.of(cr.mlp([64, 32, 10], seed=0))
    assert repr(classifier) == "Classifier(Linear(64, 32) → ReLU() → Linear(32, 10); 10 classes, 64 features)"


def test_explanation_trace_check_and_derivation_display():
    explanation = run_problem(load_problem(EXAMPLES / "relu_mse.toml"))
    assert repr(explanation).startswith("Explanation('y = ReLU(X·W₀)·W₂") and "loss 0.25 →" in repr(explanation)
    markdown = explanation._repr_markdown_()
    assert markdown.startswith("# y = ReLU") and "$$" in markdown and "\\frac{\\partial L}{\\partial W_{0}}" in markdown
    sheet = EXAMPLES / "relu_mse_answers_with_slips.toml"
    report = check_answers(explanation, load_answers(sheet), str(sheet))
    html = report._repr_html_()
    for verdict in {v.verdict for v in report.verdicts}:
        assert html.count(f'data-verdict="{verdict}"') == sum(v.verdict == verdict for v in report.verdicts)
    trace = explanation.first.layers[0]
    assert trace.layer.kind == "linear"
    from chainrule.trace import Trace

    recorded = Trace()
    recorded.layers = {r.index: r for r in explanation.first.layers}
    assert repr(recorded) == "Trace(3 layers recorded: linear, relu, linear)"
    assert "∂W 2×2" in recorded._repr_html_()


def test_derivation_display():
    optional("sympy")
    from chainrule.derive import derive

    derivation = derive("relu")
    assert repr(derivation).startswith("Derivation('relu'") and "verified" in repr(derivation)
    assert derivation._repr_markdown_().lstrip().startswith("#")


@pytest.mark.slow
def test_the_example_notebook_runs():
    nbformat, nbclient = optional("nbformat"), optional("nbclient")
    optional("ipykernel")
    notebook = nbformat.read(EXAMPLES / "notebook.ipynb", as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=300, resources={"metadata": {"path": str(EXAMPLES)}})
    client.execute()
    outputs = {i: cell.get("outputs", []) for i, cell in enumerate(notebook.cells) if cell.cell_type == "code"}
    texts = ["".join(o.get("text", "") for o in out) for out in outputs.values()]
    # the entry of the seed's exercise, worked by hand in test_entries.py
    assert any("= 2·(−0.25) + 2·0 = −0.5" in t for t in texts)
    rich = [o for out in outputs.values() for o in out if o.get("output_type") in ("execute_result", "display_data")]
    kinds = {kind for o in rich for kind in o["data"]}
    assert {"text/markdown", "text/html", "image/png"} <= kinds
    accuracy = next(float(t.split()[-1]) for t in texts if "test accuracy" in t)
    assert accuracy > 0.9  # 8 epochs of a 64-32-10 MLP on the 8×8 digits
