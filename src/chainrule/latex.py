"""The head of a standalone LaTeX document in the language in effect, shared by the commands that write one.

English and Russian compile with pdflatex (Russian with the Cyrillic fonts of T2A and babel's Russian
hyphenation), Chinese with XeLaTeX, xeCJK and the Noto CJK fonts; a document for another engine than
pdflatex names it in its first line (``% !TEX program = xelatex``), as editors and ``latexmk`` read it.
Debian packages: texlive-latex-base; texlive-lang-cyrillic and cm-super-minimal; texlive-xetex, texlive-lang-chinese and
fonts-noto-cjk.
"""

from __future__ import annotations

import shutil
import subprocess

from chainrule.i18n import current

#: The packages each language needs beyond ``amsmath`` and ``amssymb``.
PREAMBLES = {
    "en": (r"\usepackage[utf8]{inputenc}",),
    "ru": (
        # outline Cyrillic fonts where CM-Super is installed (Debian: cm-super-minimal), scaled from its 10 pt
        # design; else TeX's bitmaps
        r"\IfFileExists{type1ec.sty}{\usepackage[10pt]{type1ec}}{}",
        r"\usepackage[T2A]{fontenc}",
        r"\usepackage[utf8]{inputenc}",
        r"\usepackage[russian]{babel}",
    ),
    "zh": (
        r"\usepackage{xeCJK}",
        r"\setCJKmainfont{Noto Serif CJK SC}",
        r"\setCJKsansfont{Noto Sans CJK SC}",
        r"\setCJKmonofont{Noto Sans Mono CJK SC}",
    ),
}
#: The engine that compiles a document of each language.
ENGINES = {"en": "pdflatex", "ru": "pdflatex", "zh": "xelatex"}
#: What compiling a document of each language needs: a file that TeX must find, and the Debian packages.
NEEDS = {
    "en": (None, "texlive-latex-base"),
    "ru": ("t2aenc.def", "texlive-latex-base texlive-lang-cyrillic cm-super-minimal"),
    "zh": ("xeCJK.sty", "texlive-xetex texlive-lang-chinese fonts-noto-cjk"),
}


def missing_for(lang: str | None = None) -> str | None:
    """``None`` when a document in ``lang`` (by default the language in effect) can be compiled here, else
    the Debian packages that compiling it needs."""
    lang = lang or current()
    needed, packages = NEEDS[lang]
    if shutil.which(ENGINES[lang]) is None:
        return packages
    if needed is not None:
        kpsewhich = shutil.which("kpsewhich")
        found = kpsewhich and subprocess.run([kpsewhich, needed], capture_output=True).returncode == 0
        if not found:
            return packages
    return None


def document_head(*packages: str, lang: str | None = None) -> list[str]:
    """The lines of a document up to ``\\begin{document}``: an article with ``amsmath``, what ``lang`` (by
    default the language in effect) needs, then ``packages`` (geometry and the like)."""
    lang = lang or current()
    engine = ENGINES[lang]
    return [
        *([] if engine == "pdflatex" else [f"% !TEX program = {engine}"]),
        r"\documentclass{article}",
        r"\usepackage{amsmath,amssymb}",
        *PREAMBLES[lang],
        *packages,
        r"\begin{document}",
    ]


def engine_of(document: str) -> str:
    """The engine that compiles ``document``: the one its first line names, else pdflatex."""
    first = document.split("\n", 1)[0]
    prefix = "% !TEX program = "
    return first[len(prefix) :].strip() if first.startswith(prefix) else "pdflatex"
