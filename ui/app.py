"""The workbench dashboard: runs, comparisons, MoE routing, evaluations and the models' answers, read-only
over MLflow (the Samples page can also load a run's final model to answer a prompt).

    make dashboard                      # or: .venv/bin/python -m streamlit run ui/app.py
    MLFLOW_TRACKING_URI=http://127.0.0.1:5000 make dashboard   # against a tracking server (make mlflow)

The store is $MLFLOW_TRACKING_URI, else the project's sqlite store (workbench.paths.default_tracking_uri);
links to the MLflow UI use $MLFLOW_UI_URL (default http://127.0.0.1:5000). Pages are chosen in the sidebar
and kept in the URL (`?page=compare&runs=<id>,<id>`), so a view can be shared. Nothing is written to MLflow.
ui/.streamlit/config.toml (read because it sits beside this script) hides the developer toolbar (Deploy).
"""

import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `ui.views` when run as a script

from ui.views import common, compare, evaluations, routing, runs, samples  # noqa: E402
from workbench.track import dashboard_data as dd  # noqa: E402

PAGES = {"Runs": runs.render, "Compare": compare.render, "Samples": samples.render, "Routing": routing.render,
         "Evaluations": evaluations.render}


def choose_page() -> str:
    names = list(PAGES)
    wanted = st.query_params.get("page", "runs").lower()
    index = next((i for i, name in enumerate(names) if name.lower() == wanted), 0)
    page = st.sidebar.radio("Page", names, index=index, key="page")
    if st.query_params.get("page") != page.lower():
        st.query_params["page"] = page.lower()
    return page


def filter_experiments(frame):
    names = sorted(frame["experiment"].unique())
    chosen = st.sidebar.multiselect("Experiments", names, placeholder="all experiments")
    return frame[frame["experiment"].isin(chosen)] if chosen else frame


def main() -> None:
    st.set_page_config(page_title="Workbench dashboard", layout="wide")
    page = choose_page()
    uri = dd.tracking_uri()
    st.sidebar.caption(f"Tracking store: `{uri}`")
    if st.sidebar.button("Refresh", help="Drop cached reads and query MLflow again"):
        st.cache_data.clear()
    st.title(page)
    try:
        frame = common.runs(uri)
        if frame.empty:
            st.info(f"No runs in {uri} yet. Start one with `make finetune RECIPE=legal`.")
            return
        PAGES[page](uri, filter_experiments(frame))
    except dd.TrackingUnavailable as err:
        st.error(str(err))


main()
