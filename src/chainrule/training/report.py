"""``report.html``: a run on one self-contained page, beside its PNGs: the test result, the learning
curves, the confusion matrix and the weight images (the PNGs, inside the page), the metrics of every epoch
and the model's layers."""

from __future__ import annotations

import base64
from pathlib import Path

from chainrule.archive import atomic_write
from chainrule.html import escape, page
from chainrule.i18n import language
from chainrule.training.loop import History

NAME = "report.html"

_CAPTIONS = {
    "learning_curves.png": "Learning curves: loss and accuracy per epoch",
    "confusion_matrix.png": "Confusion matrix on the test set",
    "first_layer_weights.png": "The first layer's weights, one image per unit",
    "most_confident_errors.png": "The test images the model got wrong most confidently",
}


def write_report(result, plots: list[Path]) -> Path:
    """Write ``report.html`` into the run's folder from its result and the PNGs written (``plots``)."""
    metrics = result.metrics
    title = f"chainrule train: {metrics.get('dataset', {}).get('name', '')}".rstrip(": ")
    network = result.model.network
    body = [
        f"<h1>{escape(title)}</h1>",
        f"<p>Test accuracy <b>{result.test_accuracy:.4f}</b>, test loss {result.test_loss:.4f}, after "
        f"{len(result.history)} epochs.</p>",
    ]
    for path in plots:
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        caption = escape(_CAPTIONS.get(path.name, path.name))
        image = f'<img alt="{caption}" src="data:image/png;base64,{data}">'
        body.append(f"<figure>{image}<figcaption>{caption}</figcaption></figure>")
    body += ["<h2>Metrics</h2>", History(result.history)._repr_html_()]
    body += ["<h2>Model</h2>", network._repr_html_()]
    out = result.out / NAME
    with language("en"):  # its words are English yet (the plots' too): the page says so to the browser
        text = page(title, "\n".join(body))
    atomic_write(out, lambda f: f.write(text.encode("utf-8")))
    return out
