"""Shared pieces of the dashboard pages: cached reads (short TTL), run pickers, smoothing, line charts.

Every read goes through `st.cache_data` with a 30 s TTL, so switching pages or moving a slider does not
query MLflow again, while runs that are still training show new points within half a minute.
"""

import numpy as np
import pandas as pd
import streamlit as st

from workbench.track import dashboard_data as dd

TTL_S = 30


@st.cache_data(ttl=TTL_S, show_spinner="Reading runs")
def runs(uri: str) -> pd.DataFrame:
    return dd.runs_frame(uri)


@st.cache_data(ttl=TTL_S, show_spinner="Reading metric histories")
def histories(uri: str, run_ids: tuple[str, ...], keys: tuple[str, ...]) -> pd.DataFrame:
    return dd.metric_histories(uri, list(run_ids), list(keys))


@st.cache_data(ttl=TTL_S, show_spinner="Downloading moe/expert_load.npz")
def expert_load(uri: str, run_id: str) -> dict | None:
    return dd.expert_load(uri, run_id)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def sample_files(uri: str, run_id: str) -> list[str]:
    return dd.sample_files(uri, run_id)


@st.cache_data(ttl=TTL_S, show_spinner="Downloading samples")
def samples(uri: str, run_id: str, path: str) -> pd.DataFrame:
    return pd.DataFrame(dd.samples(uri, run_id, path))


def metric_keys(frame: pd.DataFrame, prefix: str = "") -> list[str]:
    """Metric names (without `metrics.`) that at least one row of `frame` has, starting with `prefix`."""
    cols = [c for c in frame.columns if c.startswith(f"metrics.{prefix}") and frame[c].notna().any()]
    return sorted(c[len("metrics."):] for c in cols)


def ema(values: np.ndarray, smoothing: float) -> np.ndarray:
    """Exponential moving average with TensorBoard's debiasing; smoothing 0 returns the values unchanged."""
    if smoothing <= 0 or len(values) == 0:
        return np.asarray(values, dtype=float)
    out, last, weight = np.empty(len(values)), 0.0, 0.0
    for i, value in enumerate(values):
        last = smoothing * last + (1 - smoothing) * value
        weight = smoothing * weight + (1 - smoothing)
        out[i] = last / weight
    return out


def line_chart(history: pd.DataFrame, key: str, labels: dict[str, str], smoothing: float = 0.0, x: str = "step"):
    """A plotly figure of `key` with one trace per run, named by its label; None when no run logged it."""
    import plotly.graph_objects as go

    rows = history[history["key"] == key]
    if rows.empty:
        return None
    fig = go.Figure()
    for run_id, label in labels.items():
        run_rows = rows[rows["run_id"] == run_id]
        if run_rows.empty:
            continue
        fig.add_trace(go.Scatter(x=run_rows[x], y=ema(run_rows["value"].to_numpy(), smoothing), name=label,
                                 mode="lines+markers" if len(run_rows) < 30 else "lines"))
    fig.update_layout(title=key, height=340, margin=dict(l=10, r=10, t=40, b=10), xaxis_title=x,
                      legend=dict(orientation="h", yanchor="top", y=-0.2))
    return fig


def pick_run(frame: pd.DataFrame, label: str, prefer: pd.Series | None = None, key: str | None = None) -> pd.Series:
    """A selectbox over run labels (runs where `prefer` is True listed first); returns the chosen row."""
    ordered = frame if prefer is None else pd.concat([frame[prefer], frame[~prefer]])
    wanted = st.query_params.get("run", "")
    options = list(ordered["label"])
    index = next((i for i, run_id in enumerate(ordered["run_id"]) if wanted and run_id.startswith(wanted)), 0)
    chosen = st.selectbox(label, options, index=index, key=key)
    return ordered[ordered["label"] == chosen].iloc[0]


def status_note(row: pd.Series) -> None:
    if row["status"] == "RUNNING":
        st.caption("This run is still running: figures refresh every 30 s (or press Refresh in the sidebar).")
    elif row["status"] == "FAILED":
        st.warning("This run FAILED: it shows what was logged before it stopped.")
