"""The dashboard in a real browser: a live `streamlit run ui/app.py` on a seeded store, driven by Chromium.
Run: .venv/bin/python -m pytest -q tests/ui/test_browser.py   (WORKBENCH_SCREENSHOT=1 also writes
ui/screenshots/compare.png and samples.png from the seeded store). Skipped only when /usr/bin/chromium is
missing (`apt-get install -y chromium`)."""

import os
import shutil
from pathlib import Path

import pytest
from chart_spec import label

from ui import screenshot

pytestmark = pytest.mark.skipif(not Path(screenshot.CHROMIUM).is_file(),
                                reason=f"{screenshot.CHROMIUM} missing: apt-get install -y chromium")


def test_compare_page_in_chromium_shows_both_runs(store, tmp_path):
    a, b = label("sft-a", store["a"]), label("sft-b", store["b"])
    png = tmp_path / "compare.png"
    with screenshot.serve(store["uri"], tmp_path / "streamlit.log") as base, screenshot.browser_page() as page:
        legend = screenshot.compare(page, base, [a, b])
        assert legend == [a, b]
        assert page.locator(".js-plotly-plot").count() >= 4  # train/eval loss, lr, grad norm (+ scores)
        assert "Params that differ" in page.inner_text("body")
        page.screenshot(path=str(png), full_page=True)
    assert png.stat().st_size > 20_000  # a rendered page, not a blank one
    if os.environ.get("WORKBENCH_SCREENSHOT") == "1":
        shutil.copy(png, Path(screenshot.APP).parent / "screenshots" / "compare.png")


def test_samples_page_in_chromium_shows_each_runs_answer(store, tmp_path):
    a, b = store["a"], store["b"]
    png = tmp_path / "samples.png"
    with screenshot.serve(store["uri"], tmp_path / "streamlit.log") as base, screenshot.browser_page() as page:
        screenshot.samples(page, base, [a, b])
        assert "user: Summarise clause 4." in page.locator(".st-key-samples_prompt_3").inner_text()
        # each run's answer to that prompt, in that run's column
        assert page.locator(f".st-key-samples_answer_3_after_{a}").inner_text().count("Clause 4 limits liability.") == 1
        assert page.locator(f".st-key-samples_answer_3_after_{b}").inner_text().count("Clause 4 sets the fee.") == 1
        assert "Clause 4 sets the fee." not in page.locator(f".st-key-samples_answer_3_after_{a}").inner_text()
        assert "differs from reference" in page.locator(f".st-key-samples_answer_2_after_{b}").inner_text()
        assert page.locator('[data-testid="stAppDeployButton"]').count() == 0  # ui/.streamlit/config.toml
        screenshot.full_screenshot(page, png)
    assert png.stat().st_size > 20_000
    if os.environ.get("WORKBENCH_SCREENSHOT") == "1":
        shutil.copy(png, Path(screenshot.APP).parent / "screenshots" / "samples.png")
