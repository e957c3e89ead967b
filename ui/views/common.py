"""Shared pieces of the dashboard pages: cached reads (short TTL), run pickers, smoothing, line charts and
the colour each picked run keeps on every chart of a page.

Every read goes through `st.cache_data` with a 30 s TTL, so switching pages or moving a slider does not
query MLflow again, while runs that are still training show new points within half a minute.
"""

import numpy as np
import pandas as pd
import streamlit as st

from workbench.track import dashboard_data as dd

TTL_S = 30
# Okabe-Ito, a qualitative palette colour-blind readers tell apart too, ordered so that the first runs picked get
# the most different colours (blue, orange, green, purple); yellow last (faint on white).
RUN_COLOURS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#000000", "#56B4E9", "#F0E442")


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


@st.cache_data(ttl=TTL_S, show_spinner="Downloading samples.jsonl")
def run_samples(uri: str, run_id: str) -> list[dict] | None:
    return dd.run_samples(uri, run_id)


@st.cache_data(ttl=TTL_S, show_spinner="Downloading completions.jsonl")
def completions(uri: str, run_id: str) -> list[dict] | None:
    return dd.completions(uri, run_id)


def run_colours(run_ids) -> dict[str, str]:
    """One colour per run, in the order the runs were picked (more than 8 runs reuse colours)."""
    return {run_id: RUN_COLOURS[i % len(RUN_COLOURS)] for i, run_id in enumerate(run_ids)}


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


def line_chart(history: pd.DataFrame, key: str, labels: dict[str, str], smoothing: float = 0.0, x: str = "step",
               colours: dict[str, str] | None = None):
    """A plotly figure of `key` with one trace per run, named by its label and drawn in its colour (default:
    `run_colours` in the order of `labels`); None when no run logged it."""
    import plotly.graph_objects as go

    rows = history[history["key"] == key]
    if rows.empty:
        return None
    colours = colours or run_colours(labels)
    fig = go.Figure()
    for run_id, label in labels.items():
        run_rows = rows[rows["run_id"] == run_id]
        if run_rows.empty:
            continue
        fig.add_trace(go.Scatter(x=run_rows[x], y=ema(run_rows["value"].to_numpy(), smoothing), name=label,
                                 mode="lines+markers" if len(run_rows) < 30 else "lines",
                                 line=dict(color=colours[run_id]), marker=dict(color=colours[run_id])))
    fig.update_layout(title=key, height=340, margin=dict(l=10, r=10, t=40, b=10), xaxis_title=x,
                      legend=dict(orientation="h", yanchor="top", y=-0.2))
    return fig


def dataframe(data, **kwargs) -> None:
    """st.dataframe with missing values shown as blank cells (Streamlit's default writes "None")."""
    st.dataframe(data, placeholder="", **kwargs)


def pick_run(frame: pd.DataFrame, label: str, prefer: pd.Series | None = None, key: str | None = None) -> pd.Series:
    """A selectbox over run labels (runs where `prefer` is True listed first); returns the chosen row."""
    ordered = frame if prefer is None else pd.concat([frame[prefer], frame[~prefer]])
    wanted = st.query_params.get("run", "")
    options = list(ordered["label"])
    index = next((i for i, run_id in enumerate(ordered["run_id"]) if wanted and run_id.startswith(wanted)), 0)
    chosen = st.selectbox(label, options, index=index, key=key)
    return ordered[ordered["label"] == chosen].iloc[0]


def pick_runs(frame: pd.DataFrame, label: str, key: str, placeholder: str) -> pd.DataFrame:
    """A multiselect over run labels, kept in the URL as `runs=<id8>,<id8>` (so Compare and Samples share the
    picked runs); returns the chosen rows in the order they were picked."""
    wanted = [w for w in st.query_params.get("runs", "").split(",") if w]
    default = list(dict.fromkeys(run_label for w in wanted  # in the URL's order: a shared view keeps its columns
                                 for run_label, run_id in zip(frame["label"], frame["run_id"]) if run_id.startswith(w)))
    chosen = st.multiselect(label, list(frame["label"]), default=default, key=key, placeholder=placeholder)
    ids = ",".join(frame.set_index("label").loc[chosen, "run_id"].str[:8]) if chosen else ""
    if st.query_params.get("runs", "") != ids:
        st.query_params["runs"] = ids
    return frame.set_index("label").loc[chosen].reset_index()


def status_note(row: pd.Series) -> None:
    if row["status"] == "RUNNING":
        st.caption("This run is still running: figures refresh every 30 s (or press Refresh in the sidebar).")
    elif row["status"] == "FAILED":
        st.warning("This run FAILED: it shows what was logged before it stopped.")
