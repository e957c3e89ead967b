"""Page-load times of the dashboard over a large store (default 1,000 runs x 500 steps), headless via AppTest.

    .venv/bin/python tests/ui/bench_large_store.py [--runs 1000] [--steps 500] [--store /dev/shm/wb_large]

Seeds the store once (MlflowClient.log_batch; reused when --store already holds it), then times each page
cold (empty st.cache_data) and warm (the 30 s cache hit), in one process after imports are warm.
Not collected by pytest (no test_ prefix): it takes minutes to seed.
"""

import argparse
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parents[1])]

from store_seed import seed_large_store  # noqa: E402


def timed_page(page: str, **query) -> tuple[float, object]:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(HERE.parents[1] / "ui" / "app.py"), default_timeout=300)
    at.query_params["page"] = page
    for key, value in query.items():
        at.query_params[key] = value
    start = time.perf_counter()
    at.run()
    elapsed = time.perf_counter() - start
    assert not at.exception, [e.message for e in at.exception]
    return elapsed, at


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--store", type=Path, default=Path("/tmp/wb_large_store"))
    args = parser.parse_args()
    db = args.store / "mlflow.db"
    if not db.is_file():
        args.store.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        seed_large_store(args.store, args.runs, args.steps)
        print(f"seeded {args.runs} runs x {args.steps} steps in {time.perf_counter() - start:.0f} s "
              f"({db.stat().st_size / 1e6:.0f} MB)")
    os.environ["MLFLOW_TRACKING_URI"] = uri = f"sqlite:///{db}"
    import mlflow  # noqa: F401  - imports are not what we measure
    import plotly.graph_objects  # noqa: F401

    from workbench.track import dashboard_data as dd

    start = time.perf_counter()
    frame = dd.runs_frame(uri)
    print(f"runs_frame: {len(frame)} runs, {frame.shape[1]} columns in {time.perf_counter() - start:.2f} s")
    ids = ",".join(frame["run_id"].str[:8].head(5))
    for name, page, query in (("Runs", "runs", {}), ("Compare (2 runs)", "compare", {"runs": ids[:17]}),
                              ("Compare (5 runs)", "compare", {"runs": ids}), ("Evaluations", "evaluations", {})):
        cold, at = timed_page(page, **query)
        warm, _ = timed_page(page, **query)
        extra = f", table rows {len(at.dataframe[0].value)}" if page == "runs" else ""
        extra += f", charts {len(at.get('plotly_chart'))}" if page != "runs" else ""
        print(f"{name:18s} cold {cold:5.2f} s  warm {warm:5.2f} s{extra}")
        import streamlit as st

        st.cache_data.clear()


if __name__ == "__main__":
    main()
