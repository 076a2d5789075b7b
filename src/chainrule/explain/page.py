"""``chainrule explain --format html``: the explanation as one self-contained page.

The page shows the blocks of :func:`~chainrule.explain.render.build` (the same document as the text,
Markdown and LaTeX), after a diagram of the network, as steps to move through (buttons, ← and →). Every
shown entry of an array that the JSON of ``explain`` holds carries its path (``data-path``), its value in
full precision, and its :func:`~chainrule.explain.entries.expand` (in ``title``, so that hovering shows it
without JavaScript; the script shows it in a panel and highlights the entries it came from). Without
JavaScript every step is shown one after the other; printed, too.
"""

from __future__ import annotations

import numpy as np

from chainrule.explain.entries import EntryError, expand
from chainrule.explain.explanation import Explanation
from chainrule.explain.render import Equation, Heading, Sentence, Sym, _as_matrix, _tex_equation, fmt, indexed, shown
from chainrule.html import escape, maths, page
from chainrule.i18n import _


def labels(explanation: Explanation) -> dict[int, tuple[np.ndarray, str]]:
    """``id(array) -> (array, path)`` for the arrays of the first step that the JSON holds: how a matrix
    of the document is known to be ``layers[0].grads.W``."""
    first, problem = explanation.first, explanation.problem
    found: dict[int, tuple[np.ndarray, str]] = {}

    def label(array, path: str) -> None:
        if isinstance(array, np.ndarray):
            found.setdefault(id(array), (array, path))

    label(problem.X, "layers[0].input")
    for r in first.layers:
        i = r.index
        for key in ("input", "output", "grad_output", "grad_input"):
            label(getattr(r, key), f"layers[{i}].{key}")
        label(r.local_derivative, f"layers[{i}].local_derivative")
        for name, array in r.params.items():
            label(array, f"layers[{i}].params.{name}")
        for name, array in r.details.items():
            label(array, f"layers[{i}].details.{name}")
        for name in r.grads:
            label(first.grads[i][name], f"layers[{i}].grads.{name}")
            decays = problem.l2 and r.layer.params[name].decay
            if not decays:  # with L2 the JSON's gradient is the total, shown in its own line
                label(r.grads[name], f"layers[{i}].grads.{name}")
            if len(explanation.history) == 1:
                label(first.params_after[i][name], f"layers[{i}].params_after.{name}")
    label(first.loss_grad, "loss_grad")
    return found


def _path_of(part: np.ndarray, known: dict[int, tuple[np.ndarray, str]]):
    """The path of a matrix of the document, and a function from an entry ``(i, j)`` shown to its index
    there: for the matrix itself, a view of it that reads its entries in the same order (a vector as a row,
    ``b[None, :]``), or its transpose (``Xᵀ``)."""
    for candidate in (part, part.base):
        if candidate is None or id(candidate) not in known:
            continue
        array, path = known[id(candidate)]
        if candidate is part or (part.flags.c_contiguous and part.size == array.size):
            return path, lambda i, j, cols=part.shape[-1], shape=array.shape: np.unravel_index(i * cols + j, shape)
        if array.ndim == 2 and part.ndim == 2 and np.shares_memory(part, array) and part.shape == array.shape[::-1]:
            return path, lambda i, j: (j, i)
    return None


class _Writer:
    """Equations and matrices as HTML; with an explanation, each entry it knows opens how it is computed."""

    def __init__(self, explanation: Explanation | None) -> None:
        self.explanation = explanation
        self.known = labels(explanation) if explanation is not None else {}

    def number(self, path: str, value: float, text: str | None = None) -> str:
        """One number, with what opens it."""
        try:
            expansion = expand(self.explanation, path)
        except EntryError:
            return escape(text or fmt(value))
        why = expansion.text(fmt)
        sources = " ".join(expansion.sources)
        return (
            f'<span tabindex="0" data-path="{escape(path)}" data-value="{float(value)!r}" '
            f'data-src="{escape(sources)}" title="{escape(why)}">{escape(text or fmt(value))}</span>'
        )

    def matrix(self, part: np.ndarray) -> str:
        matrix = _as_matrix(part)
        found = _path_of(part, self.known)
        rows = []
        for i in shown(matrix.shape[0]):
            cells = []
            for j in shown(matrix.shape[1]):
                if i is None or j is None:
                    cells.append("<td>" + ("⋮" if i is None else "…") + "</td>")
                    continue
                text = fmt(matrix[i, j])
                if found is not None:
                    path, where = found
                    index = "".join(f"[{k}]" for k in where(i, j))
                    text = self.number(path + index, matrix[i, j])
                cells.append(f"<td>{text}</td>")
            rows.append("<tr>" + "".join(cells) + "</tr>")
        shape = "×".join(str(s) for s in matrix.shape)
        return f'<table class="mat"><caption>{shape}</caption>' + "".join(rows) + "</table>"

    def equation(self, eq: Equation) -> str:
        pieces, run = [], []

        def flush() -> None:
            if run:
                text = "".join(p.text if isinstance(p, Sym) else p for p in run)
                pieces.append(maths(text, _tex_equation(Equation(list(run)))))
                run.clear()

        for part in eq.parts:
            if isinstance(part, np.ndarray):
                flush()
                pieces.append(self.matrix(part))
            else:
                run.append(part)
        flush()
        return '<div class="eq">' + "".join(pieces) + "</div>"


def _diagram(explanation: Explanation, writer: _Writer) -> str:
    """The network as boxes: the input, each layer with its output's shape, the loss."""
    problem, first = explanation.problem, explanation.first
    shape = "×".join(str(s) for s in problem.X.shape)
    boxes = [f'<div class="box">X<small>{shape}</small></div>']
    for r in first.layers:
        out = "×".join(str(s) for s in r.output.shape)
        params = ", ".join(
            f"{indexed(name, r.index).text} {'×'.join(str(s) for s in p.shape)}" for name, p in r.params.items()
        )
        name = indexed(r.layer.symbol, r.index).text
        boxes.append(
            f'<a class="box" href="#layer-{r.index}">{escape(r.layer.kind)}'
            f"<small>{escape(name)} {out}{(' · ' + escape(params)) if params else ''}</small></a>"
        )
    loss = writer.number("loss", first.loss)
    network = _("the network")
    boxes.append(f'<div class="box">{escape(problem.loss.kind)}<small>L = {loss}</small></div>')
    return f'<div class="net" aria-label="{escape(network)}">' + '<span class="arrow">→</span>'.join(boxes) + "</div>"


SCRIPT = """
(function () {
  var steps = Array.prototype.slice.call(document.querySelectorAll('section.step'));
  var current = 0, label = document.getElementById('step-label'), why = document.getElementById('why-text'),
      value = document.getElementById('why-value');
  document.body.classList.add('stepping');
  function go(k) {
    current = Math.max(0, Math.min(steps.length - 1, k));
    steps.forEach(function (s, i) { s.classList.toggle('current', i === current); });
    label.textContent = (current + 1) + ' / ' + steps.length + ': ' + steps[current].dataset.title;
  }
  document.getElementById('prev').onclick = function () { go(current - 1); };
  document.getElementById('next').onclick = function () { go(current + 1); };
  document.addEventListener('keydown', function (e) {
    if (e.key === 'ArrowRight') { go(current + 1); } else if (e.key === 'ArrowLeft') { go(current - 1); }
  });
  var numbers = document.querySelectorAll('[data-path]');
  numbers.forEach(function (el) { el.dataset.why = el.title; el.removeAttribute('title'); });
  function open(el) {
    document.querySelectorAll('.src, .sel').forEach(function (x) { x.classList.remove('src', 'sel'); });
    el.classList.add('sel');
    (el.dataset.src ? el.dataset.src.split(' ') : []).forEach(function (p) {
      document.querySelectorAll('[data-path="' + p + '"]').forEach(function (x) { x.classList.add('src'); });
    });
    why.textContent = el.dataset.why;
    value.textContent = el.dataset.path + ' = ' + el.dataset.value;
  }
  numbers.forEach(function (el) {
    el.addEventListener('click', function () { open(el); });
    el.addEventListener('focus', function () { open(el); });
    el.addEventListener('mouseenter', function () { open(el); });
  });
  go(0);
})();
"""


def to_html(explanation: Explanation, doc: list) -> str:
    """The page of an explanation whose document (``build``) is ``doc``."""
    writer = _Writer(explanation)
    title = doc[0].text
    sections: list[list[str]] = [[f"<h1>{escape(title)}</h1>"]]
    titles = [_("The problem")]
    for block in doc[1:]:
        if isinstance(block, Heading) and block.level <= 2:
            sections.append([f"<h2>{escape(block.text)}</h2>"])
            titles.append(block.text)
        elif isinstance(block, Heading):
            anchor = f' id="{block.anchor}"' if block.anchor else ""  # the diagram's boxes link to the layers
            sections[-1].append(f"<h3{anchor}>{escape(block.text)}</h3>")
        elif isinstance(block, Sentence):
            sections[-1].append(f"<p>{escape(block.text)}</p>")
        else:
            sections[-1].append(writer.equation(block))
    sections[0].insert(1, _diagram(explanation, writer))
    without_script = _("Without JavaScript every step is shown below; hover over a number to see how it is computed.")
    sections[0].append(f"<p><noscript>{escape(without_script)}</noscript></p>")
    steps, previous, following = _("steps"), _("← previous"), _("next →")
    help_text = _("Click or hover over a number to see how it is computed; ← and → move through the steps.")
    body = [
        f'<nav class="steps" aria-label="{escape(steps)}"><button id="prev" type="button">'
        f'{escape(previous)}</button><button id="next" type="button">{escape(following)}</button>'
        '<span id="step-label"></span></nav>',
        *(
            f'<section class="step" data-title="{escape(t)}">' + "\n".join(s) + "</section>"
            for t, s in zip(titles, sections, strict=True)
        ),
        f'<aside id="why" aria-live="polite"><div id="why-text">{escape(help_text)}</div>'
        '<div class="value" id="why-value"></div></aside>',
    ]
    return page(title, "\n".join(body), maths=True, script=SCRIPT)


def to_html_document(doc: list) -> str:
    """A document of :mod:`~chainrule.explain.render`'s blocks as a plain page: its headings, sentences and
    equations (typeset by KaTeX, readable without it), one after the other, with nothing that opens a
    number: what a question sheet needs, whose answers the page must not give away."""
    writer = _Writer(None)
    body = []
    for block in doc:
        if isinstance(block, Heading):
            body.append(f"<h{block.level}>{escape(block.text)}</h{block.level}>")
        elif isinstance(block, Sentence):
            body.append(f"<p>{escape(block.text)}</p>")
        else:
            body.append(writer.equation(block))
    return page(doc[0].text, "\n".join(body), maths=True)
