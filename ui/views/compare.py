"""Compare page: two or more runs side by side - loss and learning-rate curves by step (optional EMA
smoothing; a staged run's phase boundaries drawn on its loss curves; a distillation run's held-out KL to its
teacher; a GRPO run's mean reward, its spread and the routing agreement with the rollouts), eval scores per task with the delta against the base model or a baseline run, and the params that
differ. Metric histories are fetched for the selected runs only."""

import pandas as pd
import streamlit as st

from ui.views import common
from workbench.track import dashboard_data as dd

CURVES = ("train/loss", "eval/loss", "train/learning_rate", "train/grad_norm")
# drawn when a picked run logged them (distillation; grpo's reward and routing agreement), never listed as missing
OPTIONAL = ("eval/kl_to_teacher", "train/reward", "train/reward_std", "moe/router_agreement")
SMOOTHED = {"train/loss", "eval/loss", "train/grad_norm", "train/reward", "train/reward_std"}
STAGED = {"train/loss", "eval/loss"}  # curves that get the phase boundaries of train.stages
BASE = "base model (base/... scores)"


def pick_runs(frame: pd.DataFrame) -> pd.DataFrame:
    return common.pick_runs(frame, "Runs to compare", key="compare_runs", placeholder="pick two or more runs")


def curves(uri: str, picked: pd.DataFrame) -> None:
    smoothing = st.slider("Smoothing (EMA)", 0.0, 0.95, 0.0, 0.05, key="compare_smoothing",
                          help="Exponential moving average of loss and grad-norm curves; 0 shows raw values")
    labels = dict(zip(picked["run_id"], picked["label"]))
    colours = common.run_colours(picked["run_id"])
    history = common.histories(uri, tuple(picked["run_id"]), CURVES + OPTIONAL + ("train/stage",))
    edges = stage_edges(history, picked)
    columns = st.columns(2)
    figures = [(key, common.line_chart(history, key, labels, smoothing if key in SMOOTHED else 0.0, colours=colours))
               for key in CURVES + OPTIONAL]
    for i, (key, fig) in enumerate([(k, f) for k, f in figures if f is not None]):
        if key in STAGED:
            for run_id, x, name in edges:
                fig.add_vline(x=x, line_dash="dash", line_color="gray", annotation_text=name,
                              annotation_position="top left" if len(labels) == 1 else "top right")
        columns[i % 2].plotly_chart(fig, key=f"curve_{key}")
    missing = [key for key, fig in figures if fig is None and key not in OPTIONAL]
    if missing:
        st.caption(f"Not logged by these runs: {', '.join(missing)}")
    if edges:
        st.caption("Dashed lines: where a staged run (train.stages) enters its next phase, named on the line.")


def stage_edges(history: pd.DataFrame, picked: pd.DataFrame) -> list[tuple[str, float, str]]:
    """(run id, x, phase name) for every phase after the first: `train/stage` is logged at the step a phase
    starts after, so its line sits half a step later, between the two phases' steps."""
    rows = history[history["key"] == "train/stage"]
    edges = []
    for _, run in picked.iterrows():
        names = [part.split(":")[0].strip() for part in str(run.get("tags.train.stages") or "").split(", ") if ":" in part]
        for _, point in rows[rows["run_id"] == run["run_id"]].sort_values("step").iterrows():
            index = int(point["value"])
            if index > 0 and not any(e[0] == run["run_id"] and e[3] == index for e in edges):  # logged again on resume
                name = names[index] if index < len(names) else f"stage {index + 1}"
                edges.append((run["run_id"], point["step"] + 0.5, name, index))
    return [edge[:3] for edge in edges]


def score_table(picked: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """Rows task/metric; a column of scores per run, then a delta column per run against the baseline."""
    keys = dd.score_keys(common.metric_keys(picked))
    table = pd.DataFrame(index=[k[len("eval/"):] for k in keys])
    for _, run in picked.iterrows():
        table[run["label"]] = [run.get(f"metrics.{k}") for k in keys]
    for _, run in picked.iterrows():
        if baseline == BASE:
            reference = pd.Series([run.get(f"metrics.base/{k[len('eval/'):]}") for k in keys], index=table.index)
        elif baseline == run["label"]:
            continue
        else:
            reference = table[baseline]
        table[f"delta {run['label']}"] = table[run["label"]] - reference.astype(float)
    return table


def scores(picked: pd.DataFrame) -> None:
    st.subheader("Eval scores")
    if not dd.score_keys(common.metric_keys(picked)):
        st.info("None of these runs has eval scores (`eval/<task>/<metric>`) yet: run `make eval TARGET=<run id>`.")
        return
    baseline = st.selectbox("Delta against", [BASE, *picked["label"]], key="compare_baseline")
    table = score_table(picked, baseline)
    common.dataframe(table, width="stretch", column_config={
        c: st.column_config.NumberColumn(format="%+.4f") for c in table.columns if c.startswith("delta ")})
    import plotly.graph_objects as go

    colours = common.run_colours(picked["run_id"])
    fig = go.Figure([go.Bar(name=label, x=list(table.index), y=table[label], marker_color=colours[run_id])
                     for run_id, label in zip(picked["run_id"], picked["label"])])
    fig.update_layout(barmode="group", height=320, margin=dict(l=10, r=10, t=30, b=10), title="scores per task")
    st.plotly_chart(fig, key="compare_scores")


def params_diff(picked: pd.DataFrame) -> pd.DataFrame:
    """Params (rows) whose values are not the same in every picked run; a missing value counts as a value."""
    cols = [c for c in picked.columns if c.startswith("params.")]
    values = picked.set_index("label")[cols].T.astype(object).where(lambda df: df.notna(), "(unset)")
    values.index = [c[len("params."):] for c in values.index]
    differing = values[values.nunique(axis=1) > 1]
    return differing.sort_index()


def render(uri: str, frame: pd.DataFrame) -> None:
    picked = pick_runs(frame)
    if len(picked) < 2:
        st.info("Pick two or more runs to compare (type part of a recipe, run name or run id).")
        return
    curves(uri, picked)
    scores(picked)
    st.subheader("Params that differ")
    diff = params_diff(picked)
    if diff.empty:
        st.success("These runs have identical params.")
    else:
        common.dataframe(diff, width="stretch")
