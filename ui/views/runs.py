"""Runs page: filter runs by recipe, method, status and start date; one table row per run with its key
metrics (last train/eval loss, eval scores) and a link to the run in the MLflow UI."""

import datetime as dt

import pandas as pd
import streamlit as st

from ui.views import common
from workbench.track import dashboard_data as dd

KEY_METRICS = {"train/loss": "train loss", "eval/loss": "eval loss", "eval/rewards/accuracies": "eval reward acc",
               "eval/kl_to_teacher": "eval KL to teacher", "heldout/reward": "held-out reward",
               "moe/mean/max_over_mean": "max/mean load"}


def filter_runs(frame: pd.DataFrame) -> pd.DataFrame:
    cols = st.columns(4)
    for col, field in zip(cols, ("recipe", "method", "status")):
        chosen = col.multiselect(field.capitalize(), sorted(frame[field].dropna().unique()), placeholder="all",
                                 key=f"runs_{field}")
        if chosen:
            frame = frame[frame[field].isin(chosen)]
    first, last = frame["start_time"].min(), frame["start_time"].max()
    if pd.notna(first):
        span = cols[3].date_input("Started between", (first.date(), last.date()), key="runs_dates")
        if isinstance(span, tuple) and len(span) == 2:
            start = pd.Timestamp(span[0], tz="UTC")
            end = pd.Timestamp(span[1] + dt.timedelta(days=1), tz="UTC")
            frame = frame[(frame["start_time"] >= start) & (frame["start_time"] < end)]
    return frame


def runs_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The displayed table: identity, duration, key metrics, eval scores, MLflow link."""
    table = pd.DataFrame({
        "run": frame["run_name"], "recipe": frame["recipe"], "method": frame["method"], "status": frame["status"],
        "started": frame["start_time"].dt.strftime("%Y-%m-%d %H:%M"),
        "minutes": ((frame["end_time"] - frame["start_time"]).dt.total_seconds() / 60).round(1),
    })
    for key, title in KEY_METRICS.items():
        if f"metrics.{key}" in frame:
            table[title] = frame[f"metrics.{key}"]
    if "tags.distill.teacher" in frame:  # distillation runs: what they learned from
        table["teacher"] = frame["tags.distill.teacher"].fillna("")
    for key in dd.score_keys(common.metric_keys(frame)):
        table[key[len("eval/"):]] = frame[f"metrics.{key}"]
    table["mlflow"] = [dd.run_url(e, r) for e, r in zip(frame["experiment_id"], frame["run_id"])]
    table["run id"] = frame["run_id"]
    return table.reset_index(drop=True)


def render(uri: str, frame: pd.DataFrame) -> None:
    shown = filter_runs(frame)
    st.caption(f"{len(shown)} of {len(frame)} runs - latest metric values; eval scores are `eval/<task>/<metric>`.")
    if shown.empty:
        st.info("No run matches these filters.")
        return
    common.dataframe(runs_table(shown), hide_index=True, width="stretch", column_config={
        "mlflow": st.column_config.LinkColumn("MLflow", display_text="open"),
        "train loss": st.column_config.NumberColumn(format="%.4f"),
        "eval loss": st.column_config.NumberColumn(format="%.4f"),
    })
