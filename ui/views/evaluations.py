"""Evaluations page: a run's benchmark scores over time as (scheduled) evals land - every logged value of
`eval/<task>/<metric>` and `base/<task>/<metric>` by timestamp - and the per-sample outputs (prompt,
output, pass/fail) from the `samples_<task>.jsonl` artifacts when the run has them."""

import pandas as pd
import streamlit as st

from ui.views import common
from workbench.track import dashboard_data as dd


def score_history(uri: str, run: pd.Series, keys: list[str]) -> None:
    import plotly.graph_objects as go

    history = common.histories(uri, (run["run_id"],), tuple(keys))
    fig = go.Figure()
    for key in keys:
        rows = history[history["key"] == key]
        fig.add_trace(go.Scatter(x=rows["time"], y=rows["value"], name=key, mode="lines+markers"))
    fig.update_layout(title="scores by time logged", xaxis_title="time (UTC)", height=360,
                      margin=dict(l=10, r=10, t=40, b=10))
    st.plotly_chart(fig, key="eval_history")
    latest = history.sort_values("timestamp").groupby("key").agg(
        latest=("value", "last"), evaluations=("value", "size"), last_logged=("time", "last"))
    common.dataframe(latest, width="stretch")


def sample_view(uri: str, run: pd.Series) -> None:
    st.subheader("Per-sample outputs")
    files = common.sample_files(uri, run["run_id"])
    if not files:
        st.caption("No per-sample artifacts (`eval/<suite>/samples_<task>.jsonl`) on this run.")
        return
    path = st.selectbox("Samples file", files, key="eval_samples_file")
    rows = common.samples(uri, run["run_id"], path)
    shown = st.radio("Show", ["all", "failed", "passed"], horizontal=True, key="eval_samples_filter")
    if shown != "all" and "passed" in rows:
        rows = rows[rows["passed"] == (shown == "passed")]
    passed = rows["passed"].dropna() if "passed" in rows else pd.Series(dtype=bool)
    st.caption(f"{len(rows)} samples" + (f", {passed.mean():.0%} passed" if len(passed) else ""))
    common.dataframe(rows, hide_index=True, width="stretch", column_config={
        "prompt": st.column_config.TextColumn(width="large"), "output": st.column_config.TextColumn(width="medium")})


def render(uri: str, frame: pd.DataFrame) -> None:
    all_keys = common.metric_keys(frame)
    score_cols = [f"metrics.{k}" for k in dd.score_keys(all_keys) + dd.score_keys(all_keys, "base")]
    scored = frame[score_cols].notna().any(axis=1) if score_cols else pd.Series(False, index=frame.index)
    run = common.pick_run(frame, "Model (run)", prefer=scored, key="eval_run")
    common.status_note(run)
    keys = common.metric_keys(frame[frame["run_id"] == run["run_id"]])
    keys = dd.score_keys(keys) + dd.score_keys(keys, "base")
    if keys:
        score_history(uri, run, keys)
    else:
        st.info("No evaluation scores on this run yet: `make eval TARGET=<run id>` logs them as "
                "`eval/<task>/<metric>` (and `base/...` for the model before training).")
    sample_view(uri, run)
