"""The dashboard in a real browser: a live `streamlit run ui/app.py` on a seeded store, driven by Chromium.
Run: .venv/bin/python -m pytest -q tests/ui/test_browser.py   (WORKBENCH_SCREENSHOT=1 also writes
ui/screenshots/compare.png). Skipped only when /usr/bin/chromium is missing (`apt-get install -y chromium`)."""

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
