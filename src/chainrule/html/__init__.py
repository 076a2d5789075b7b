"""Self-contained HTML: one file that needs no network, with its styles, scripts and fonts inside.

Used by the pages of ``chainrule explain --format html``, ``chainrule check --format html`` and the
``report.html`` of ``chainrule train``, and by the rich display of chainrule's objects in Jupyter
(:func:`table`). Maths is typeset by KaTeX 0.19.1, vendored in ``katex/`` from its npm release (MIT licence,
``katex/LICENSE``): its script, its style sheet and the fonts the formulas use are put into the page, the
fonts as ``data:`` URLs. A maths element holds its Unicode text, so that the page reads without
JavaScript; the script replaces it with the typeset formula from its ``data-tex``.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Iterable, Sequence
from functools import cache
from importlib import resources

escape = html.escape

STYLE = """
:root { --ink: #1d2330; --muted: #5b6475; --line: #d7dbe3; --accent: #2756c5; --soft: #eef2fb;
  --right: #d9f2dd; --carried: #fff1c7; --wrong: #fbd9d6; --blank: #eceef2; --src: #ffe08a; --sel: #9cc0ff; }
* { box-sizing: border-box; }
body { font: 16px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--ink); margin: 0 auto;
  max-width: 70rem; padding: 1rem 1.5rem 8rem; }
h1 { font-size: 1.6rem; margin: .5rem 0; } h2 { font-size: 1.3rem; border-bottom: 1px solid var(--line); }
h3 { font-size: 1.05rem; margin: 1.2rem 0 .3rem; }
.eq { display: flex; flex-wrap: wrap; align-items: center; gap: .15rem; margin: .35rem 0 .35rem 1rem; }
.m { white-space: pre-wrap; }
table.mat { border-collapse: collapse; border-left: 2px solid var(--ink); border-right: 2px solid var(--ink);
  border-radius: 7px; margin: 0 .2rem; font-variant-numeric: tabular-nums; position: relative; z-index: 1; }
table.mat td { padding: .05rem .45rem; text-align: right; }
table.mat caption { caption-side: bottom; font-size: .7rem; color: var(--muted); }
[data-path] { cursor: pointer; border-radius: 3px; }
[data-path]:hover, [data-path]:focus { outline: 2px solid var(--accent); }
.src { background: var(--src); } .sel { background: var(--sel); }
table.grid { border-collapse: collapse; margin: .5rem 0; }
table.grid th, table.grid td { border: 1px solid var(--line); padding: .2rem .6rem; text-align: left; }
table.grid td.num { text-align: right; font-variant-numeric: tabular-nums; }
.net { display: flex; flex-wrap: wrap; align-items: center; gap: .4rem; margin: 1rem 0; }
.box { border: 2px solid var(--accent); border-radius: 6px; padding: .3rem .6rem; background: var(--soft);
  text-align: center; line-height: 1.2; } .box small { display: block; color: var(--muted); }
.arrow { color: var(--muted); }
nav.steps { position: sticky; top: 0; background: #fff; padding: .4rem 0; border-bottom: 1px solid var(--line);
  display: none; gap: .5rem; align-items: center; z-index: 2; }
.stepping nav.steps { display: flex; }
.stepping section.step { display: none; } .stepping section.step.current { display: block; }
button { font: inherit; padding: .2rem .7rem; }
#why { position: fixed; left: 0; right: 0; bottom: 0; background: #fff; border-top: 2px solid var(--accent);
  padding: .5rem 1.5rem; font-size: 1.05rem; display: none; max-height: 40vh; overflow: auto; }
.stepping #why { display: block; }
#why .value { color: var(--muted); font-size: .85rem; }
.right { background: var(--right); } .carried_forward { background: var(--carried); }
.wrong { background: var(--wrong); } .unanswered { background: var(--blank); }
figure { margin: 1rem 0; } figure img { max-width: 100%; }
@media print {
  body { max-width: none; padding: 0; } nav.steps, #why, noscript { display: none !important; }
  section.step { display: block !important; break-inside: auto; } h2 { break-after: avoid; }
  .eq, table { break-inside: avoid; }
}
"""


@cache
def _katex() -> tuple[str, str]:
    """KaTeX's style sheet with the vendored fonts inside it (a font that is not vendored is dropped, so
    that the page asks for no file), and its script."""
    folder = resources.files("chainrule.html") / "katex"
    fonts = {f.name: f for f in (folder / "fonts").iterdir()}

    def inline(match: re.Match) -> str:
        name = re.search(r"KaTeX_[\w-]+\.woff2", match.group(0))
        if name is None or name.group(0) not in fonts:
            return ""
        data = base64.b64encode(fonts[name.group(0)].read_bytes()).decode("ascii")
        head = match.group(0)[: match.group(0).index("src:")]
        return f'{head}src:url(data:font/woff2;base64,{data}) format("woff2")}}'

    css = re.sub(r"@font-face\{[^}]*\}", inline, (folder / "katex.min.css").read_text("utf-8"))
    return css, (folder / "katex.min.js").read_text("utf-8")


def page(title: str, body: str, *, maths: bool = False, script: str = "") -> str:
    """A whole HTML document: ``body`` with the shared style, KaTeX when ``maths``, and ``script``; its
    ``lang`` is the language in effect (:mod:`chainrule.i18n`)."""
    from chainrule.i18n import current

    head = [
        "<!DOCTYPE html>",
        f'<html lang="{current()}"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title>",
        f"<style>{STYLE}</style>",
    ]
    tail = []
    if maths:
        css, js = _katex()
        head.append(f"<style>{css}</style>")
        tail.append(f"<script>{_safe(js)}</script>")
        tail.append(f"<script>{TYPESET}</script>")
    if script:
        tail.append(f"<script>{_safe(script)}</script>")
    return "\n".join([*head, "</head><body>", body, *tail, "</body></html>"]) + "\n"


def _safe(js: str) -> str:
    """A script inside ``<script>``: no ``</script`` can end it early."""
    return js.replace("</script", "<\\/script")


TYPESET = """
document.querySelectorAll('.m[data-tex]').forEach(function (el) {
  katex.render(el.dataset.tex, el, {throwOnError: false, strict: 'ignore', displayMode: false});
});
"""


def maths(unicode_text: str, latex: str) -> str:
    """A formula: its Unicode text (read without JavaScript), typeset from ``latex`` by KaTeX."""
    return f'<span class="m" data-tex="{escape(latex)}">{escape(unicode_text)}</span>'


def table(header: Sequence[str], rows: Iterable[Sequence[object]], numeric: Sequence[bool] | None = None) -> str:
    """A plain table (the rich display of a model's layers, a history): cells escaped; numbers right-aligned
    in the columns marked ``numeric``."""
    numeric = numeric or [False] * len(header)
    out = ['<table class="grid"><thead><tr>', *(f"<th>{escape(h)}</th>" for h in header), "</tr></thead><tbody>"]
    for row in rows:
        cells = (
            f'<td class="num">{escape(str(c))}</td>' if n else f"<td>{escape(str(c))}</td>"
            for c, n in zip(row, numeric, strict=True)
        )
        out += ["<tr>", *cells, "</tr>"]
    out.append("</tbody></table>")
    return "".join(out)
