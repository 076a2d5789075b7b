"""The HTML pages in a real browser: headless Chromium (Debian's ``chromium`` and ``chromium-driver``),
driven by Selenium. Each example's page is opened from a file, with no network; every step is visited
with the → key; every number is clicked and the expansion it opens must show the JSON's value; the
browser's console must stay free of errors. Skipped where no browser is installed, except in CI
(CHAINRULE_REQUIRE_BROWSER=1)."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from chainrule.explain import load_problem, run_problem, to_json
from chainrule.explain.check import check_answers, load_answers, verdicts_to_json
from chainrule.explain.render import render

from conftest import optional
from helpers import json_at

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
PROBLEMS = sorted(p for p in EXAMPLES.glob("*.toml") if "answers" not in p.name)


@pytest.fixture(scope="module")
def browser():
    required = os.environ.get("CHAINRULE_REQUIRE_BROWSER") == "1"
    driver_path = shutil.which("chromedriver")
    if driver_path is None:
        if required:
            pytest.fail("CHAINRULE_REQUIRE_BROWSER=1 but chromedriver is not installed")
        pytest.skip("no chromedriver (Debian: apt-get install chromium chromium-driver)")
    if required:
        os.environ["CHAINRULE_REQUIRE_EXTRAS"] = os.environ.get("CHAINRULE_REQUIRE_EXTRAS", "1")
    webdriver = optional("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,900"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    yield driver
    driver.quit()


OPEN_ALL = """
return Array.prototype.map.call(document.querySelectorAll('section.step.current [data-path]'), function (el) {
  el.click();
  var value = document.getElementById('why-value').textContent.split(' = ');
  var lit = Array.prototype.map.call(document.querySelectorAll('.src'), function (x) { return x.dataset.path; });
  return [value[0], value[1], document.getElementById('why-text').textContent,
          el.dataset.src ? el.dataset.src.split(' ') : [], lit];
});
"""


def _errors(driver) -> list[dict]:
    return [entry for entry in driver.get_log("browser") if entry["level"] in ("SEVERE", "WARNING")]


def _detail(explanation, path):
    """A value the JSON does not hold (BatchNorm's μ, σ², x̂): the trace's."""
    layer, name, *index = re.findall(r"\w+", path.replace("layers", "", 1).replace("details", "", 1))
    return explanation.first.layers[int(layer)].details[name][tuple(int(k) for k in index)]


@pytest.mark.parametrize("problem", PROBLEMS, ids=lambda p: p.stem)
def test_every_number_of_the_page_opens_into_the_jsons_value(browser, tmp_path, problem):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    explanation = run_problem(load_problem(problem))
    page = tmp_path / "page.html"
    page.write_text(render(explanation, "html"), encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//|url\((https?:)?//""", page.read_text("utf-8"))
    data = json.loads(json.dumps(to_json(explanation)))
    browser.get(page.as_uri())
    label = browser.find_element(By.ID, "step-label")
    steps = len(browser.find_elements(By.CSS_SELECTOR, "section.step"))
    assert label.text.startswith(f"1 / {steps}: ")
    assert not browser.find_elements(By.CSS_SELECTOR, ".katex-error")
    assert browser.find_elements(By.CSS_SELECTOR, ".katex")  # the maths was typeset
    body = browser.find_element(By.TAG_NAME, "body")
    clicked = set()
    for step in range(1, steps + 1):
        assert label.text.startswith(f"{step} / {steps}: ")
        numbers = browser.find_elements(By.CSS_SELECTOR, "section.step.current [data-path]")
        arrays = {}
        for number in numbers:  # a real click on the first number of each array
            arrays.setdefault(re.sub(r"(\[\d+\])+$", "", number.get_attribute("data-path")), number)
        for number in arrays.values():
            # in the middle of the window, as a reader would have it: not under the panel at the bottom
            browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", number)
            number.click()
            assert browser.find_element(By.ID, "why-value").text.startswith(number.get_attribute("data-path") + " = ")
        # every number, clicked by a script in one go: the panel's path and value, the highlighted sources
        opened = browser.execute_script(OPEN_ALL)
        assert len(opened) == len(numbers)
        for path, value, why, sources, highlighted in opened:
            expected = _detail(explanation, path) if ".details." in path else json_at(data, path)
            assert float(value) == pytest.approx(expected, rel=1e-12, abs=1e-300), path
            assert why and "=" in why, path
            shown = {s for s in sources if browser.find_elements(By.CSS_SELECTOR, f'[data-path="{s}"]')}
            assert set(highlighted) == shown - {path}, path
            clicked.add(path)
        body.send_keys(Keys.ARROW_RIGHT)
    body.send_keys(Keys.ARROW_LEFT)
    assert label.text.startswith(f"{steps - 1} / {steps}: ")
    assert "loss" in clicked and (not explanation.first.grads or any(".grads." in p for p in clicked))
    assert _errors(browser) == []


def test_the_seed_exercise_page_opens_the_issues_example(browser, tmp_path):
    from selenium.webdriver.common.by import By

    page = tmp_path / "page.html"
    page.write_text(render(run_problem(load_problem(EXAMPLES / "relu_mse.toml")), "html"), encoding="utf-8")
    browser.get(page.as_uri())
    browser.find_element(By.ID, "next").click()
    browser.find_element(By.ID, "next").click()  # the backward pass
    browser.find_element(By.CSS_SELECTOR, '.current [data-path="layers[0].grads.W[1][0]"]').click()
    assert browser.find_element(By.ID, "why-text").text == (
        "∂L/∂W₀[1][0] = Σᵢ X[i][1]·δ[i][0] = 2·(−0.25) + 2·0 = −0.5"
    )  # by hand: X[0][1]·δ[0][0] + X[1][1]·δ[1][0] = 2·(−0.25) + 2·0
    highlighted = {e.get_attribute("data-path") for e in browser.find_elements(By.CSS_SELECTOR, ".src")}
    assert "layers[0].grad_output[0][0]" in highlighted
    assert _errors(browser) == []


def test_the_page_reads_without_javascript(tmp_path):
    html = render(run_problem(load_problem(EXAMPLES / "relu_mse.toml")), "html")
    without_scripts = re.sub(r"<script>.*?</script>", "", html, flags=re.S)
    text = re.sub(r"<[^>]+>", " ", re.sub(r"<style>.*?</style>", "", without_scripts, flags=re.S))
    # every step is in the page, with its formulas in Unicode and every number hoverable (title)
    for heading in ("Forward pass", "Backward pass", "Update: sgd", "Z₀ = X·W₀", "∂L/∂W₀ = Xᵀ·δ"):
        assert heading in text
    assert 'title="∂L/∂W₀[1][0] = Σᵢ X[i][1]·δ[i][0] = 2·(−0.25) + 2·0 = −0.5"' in html


def test_check_page_colours_the_sheet(browser, tmp_path):
    from selenium.webdriver.common.by import By

    problem, answers = EXAMPLES / "relu_mse.toml", EXAMPLES / "relu_mse_answers_with_slips.toml"
    page = tmp_path / "check.html"
    with page.open("w", encoding="utf-8") as out:
        result = subprocess.run(
            [sys.executable, "-m", "chainrule.cli", "check", str(problem), str(answers), "--format", "html"],
            stdout=out,
            text=True,
        )
    assert result.returncode == 1  # the sheet has slips
    report = verdicts_to_json(check_answers(run_problem(load_problem(problem)), load_answers(answers)))
    browser.get(page.as_uri())
    rows = browser.find_elements(By.CSS_SELECTOR, "table.sheet tbody tr")
    assert [r.get_attribute("data-verdict") for r in rows] == [a["verdict"] for a in report["answers"]]
    colours = {r.get_attribute("data-verdict"): r.value_of_css_property("background-color") for r in rows}
    assert colours.get("wrong") == "rgba(251, 217, 214, 1)" and len(set(colours.values())) == len(colours)
    assert len(browser.find_elements(By.CSS_SELECTOR, "ol li")) == len(report["roots"]) > 0
    assert _errors(browser) == []


def test_a_question_sheet_typesets_in_the_browser(browser, tmp_path):
    from selenium.webdriver.common.by import By

    from chainrule.exercise import TEMPLATES, make_variants, write_variant

    (variant,) = make_variants(TEMPLATES["batchnorm"], 1, seed=1)
    write_variant(variant, tmp_path, pdf=False)
    browser.get((tmp_path / "sheets" / f"{variant.id}.html").as_uri())
    formulas = browser.find_elements(By.CSS_SELECTOR, ".m[data-tex]")
    assert formulas and all(f.find_elements(By.CSS_SELECTOR, ".katex") for f in formulas)
    assert [h.text for h in browser.find_elements(By.TAG_NAME, "h3")][:2] == [
        "a) (round to 3 decimals)",
        "b) (round to 3 decimals)",
    ]
    assert _errors(browser) == []
