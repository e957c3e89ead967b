"""Serve the dashboard for real and drive it with Chromium: the browser test and the README screenshots.

    .venv/bin/python ui/screenshot.py --uri sqlite:////tmp/ui_real/mlflow.db --out ui/screenshots
        # compare.png (the two newest runs), routing.png (the newest run with routing telemetry) and samples.png
        # (the two newest runs of one experiment with samples.jsonl; --ask "a prompt" also asks both models)

Needs Debian's chromium (`apt-get install -y chromium`); playwright drives it via executable_path, so no
`playwright install` (which downloads browsers) is ever needed.
"""

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

APP = Path(__file__).resolve().parent / "app.py"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serve(uri: str, log_path: Path, timeout_s: float = 60):
    """Run `streamlit run ui/app.py` on a free port against `uri`; yields the base URL. The Popen pid is the
    server itself (no shell), and it is stopped by that pid however the block exits."""
    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}
    with open(log_path, "w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(APP), "--server.address", "127.0.0.1",
             "--server.port", str(port), "--server.headless", "true"],  # toolbar: ui/.streamlit/config.toml
            env=env, cwd=APP.parent.parent, stdout=log, stderr=subprocess.STDOUT)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_healthy(f"{base}/_stcore/health", server, timeout_s)
            yield base
        finally:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def wait_healthy(url: str, server: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"streamlit exited with code {server.returncode} before serving")
        with contextlib.suppress(OSError):
            if urllib.request.urlopen(url, timeout=2).read() == b"ok":
                return
        time.sleep(0.3)
    raise TimeoutError(f"streamlit did not answer {url} within {timeout_s} s")


@contextlib.contextmanager
def browser_page(width: int = 1400, height: int = 1800):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(viewport={"width": width, "height": height})
        finally:
            browser.close()


def compare(page, base: str, run_labels: list[str], timeout_ms: int = 60_000) -> list[str]:
    """Open Compare, pick `run_labels` in the multiselect as a user would (type, Enter), wait for the
    charts; returns the legend texts of the first chart."""
    page.goto(f"{base}/?page=compare", timeout=timeout_ms)
    box = page.locator('[data-testid="stMultiSelect"]', has_text="Runs to compare").locator("input")
    box.wait_for(timeout=timeout_ms)
    for run_label in run_labels:
        box.click()
        box.fill(run_label)
        page.locator('[role="option"]', has_text=run_label).first.click(timeout=timeout_ms)
    page.keyboard.press("Escape")
    page.wait_for_selector(".js-plotly-plot .legendtext", timeout=timeout_ms)
    settle(page)
    return page.locator(".js-plotly-plot").first.locator(".legendtext").all_text_contents()


def routing(page, base: str, run_id: str, timeout_ms: int = 60_000) -> None:
    page.goto(f"{base}/?page=routing&run={run_id[:8]}", timeout=timeout_ms)
    page.wait_for_selector(".js-plotly-plot .heatmaplayer", timeout=timeout_ms)
    settle(page)


def samples(page, base: str, run_ids: list[str], timeout_ms: int = 60_000) -> None:
    """Open the Samples page for `run_ids` (by URL, as a shared link would) and wait for the first prompt."""
    page.goto(f"{base}/?page=samples&runs={','.join(r[:8] for r in run_ids)}", timeout=timeout_ms)
    page.wait_for_selector(".st-key-samples_prompt_0", timeout=timeout_ms)
    settle(page)


def ask(page, prompt: str, timeout_ms: int = 120_000) -> list[str]:
    """Type `prompt` into the Samples page's prompt box, press Generate, wait for the answers; their texts."""
    page.get_by_label("Prompt (sent as one user turn").fill(prompt)
    page.get_by_role("button", name="Generate").click()
    page.wait_for_selector(".st-key-samples_generated_0 code", timeout=timeout_ms)
    settle(page)
    return page.locator('[class*="st-key-samples_generated_"] code').all_inner_texts()


def settle(page, quiet_ms: int = 1500) -> None:
    """Wait until Streamlit has stopped running the script, lazily loaded elements have replaced their
    skeletons and plotly has drawn."""
    page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=60_000)
    page.wait_for_function("!document.querySelector('[data-testid=\"stSkeleton\"]')", timeout=60_000)  # st.code loads late
    page.wait_for_timeout(quiet_ms)


def full_screenshot(page, path: Path) -> None:
    """Streamlit scrolls inside its main block, so grow the viewport to the content before the shot."""
    height = page.evaluate("document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
    page.set_viewport_size({"width": page.viewport_size["width"], "height": int(height) + 40})
    page.wait_for_timeout(1000)
    page.screenshot(path=str(path), full_page=True)


def with_samples(frame, uri: str):
    """The two newest runs of the newest experiment whose runs logged samples.jsonl (or fewer)."""
    from workbench.track import dashboard_data as dd

    logged = frame[[dd.run_samples(uri, run_id) is not None for run_id in frame["run_id"]]]
    if logged.empty:
        return logged
    return logged[logged["experiment_id"] == logged.iloc[0]["experiment_id"]].head(2).iloc[::-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uri", required=True)
    parser.add_argument("--out", type=Path, default=APP.parent / "screenshots")
    parser.add_argument("--ask", default="", help="a prompt for the Samples page's prompt box (loads the models)")
    args = parser.parse_args()
    sys.path.insert(0, str(APP.parent.parent))
    from workbench.track import dashboard_data as dd

    frame = dd.runs_frame(args.uri)
    newest = frame.head(2).iloc[::-1]
    moe = frame[frame.filter(like="metrics.moe/").notna().any(axis=1)]
    sampled = with_samples(frame, args.uri)
    args.out.mkdir(parents=True, exist_ok=True)
    with serve(args.uri, args.out / "streamlit.log") as base, browser_page() as page:
        print("legend:", compare(page, base, list(newest["label"])))
        full_screenshot(page, args.out / "compare.png")
        routing(page, base, moe.iloc[0]["run_id"])
        full_screenshot(page, args.out / "routing.png")
        if not sampled.empty:
            samples(page, base, list(sampled["run_id"]))
            if args.ask:
                page.get_by_label("Runs to ask").click()  # the second run too: type its label, pick it
                page.keyboard.type(sampled.iloc[-1]["label"])
                page.locator('[role="option"]').first.click()
                page.keyboard.press("Escape")
                print("answers:", ask(page, args.ask))
            full_screenshot(page, args.out / "samples.png")
    (args.out / "streamlit.log").unlink()
    print(f"wrote compare.png, routing.png{', samples.png' if not sampled.empty else ''} to {args.out}")


if __name__ == "__main__":
    main()
