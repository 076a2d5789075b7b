"""Formulas written once in Unicode maths, turned into LaTeX: the conversion, against LaTeX written by hand."""

import pytest

from chainrule.notation import Eq, is_maths, to_latex


@pytest.mark.parametrize(
    "text, latex",
    [
        ("∂L/∂W₀ = Xᵀ·δ", r"\frac{\partial L}{\partial W_{0}} = X^{\top}\cdot \delta "),
        ("(x − μ)/√(σ² + ε)", r"\left(x - \mu \right)/\sqrt{\sigma ^{2} + \epsilon }"),
        ("ln(1 + e^(−|z|))", r"\ln \left(1 + e^{-|z|}\right)"),
        ("x̂ + μ̄", r"\hat{x} + \bar{\mu}"),
        ("Σ_rows δ", r"\sum _{\text{rows}} \delta "),
        ("[z > 0]", r"\left[z > 0\right]"),
        ("Δ Ω Α ς", r"\Delta  \Omega  A \varsigma "),
        ("lr·g,  wd", r"\mathrm{lr}\cdot g,\quad \mathrm{wd}"),
        ("ε = 1.000e-08", r"\epsilon  = 1.000\times 10^{-8}"),
        ("2e^(z)", r"2e^{z}"),
        ("erf(z)", r"\operatorname{erf}\left(z\right)"),
        ("√", r"\sqrt{}"),  # a root with nothing after it, at the end of a title
        ("(a", "(a"),  # an unmatched parenthesis stays a plain one
    ],
)
def test_unicode_maths_to_latex(text, latex):
    assert to_latex(text) == latex


def test_what_is_maths_in_a_sentence():
    assert all(is_maths(c) for c in "σΔ·−²₀\u0302")
    assert not any(is_maths(c) for c in "aZ=é üя")


def test_an_equation_names_what_it_computes():
    assert Eq("∂L/∂{W} = {in}ᵀ·{δ}").computes() == "∂W"
    assert Eq("{out} = σ({in})").computes() == "out"
    assert Eq("L = {k}·Σ({in} − {y})²", result="L").computes() == "L"
    assert Eq("Φ(z) = ½·(1 + erf(z/√2))", result=None).computes() is None
    assert Eq("{θ} ← {θ} − {lr}·{g}").rhs == "{θ} − {lr}·{g}"
