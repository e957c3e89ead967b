"""Routing page: how a MoE run spread tokens over experts - load heatmap per layer over steps (from the
moe/expert_load.npz artifact), max/mean load curves (from the moe/... metrics) and the eval-set load before
vs after training."""

import numpy as np
import pandas as pd
import streamlit as st

from ui.views import common

MAX_HEATMAPS = 4


def relative_load(loads: np.ndarray) -> np.ndarray:
    """(steps, experts) token counts -> load relative to the mean expert (1.0 = perfectly balanced)."""
    totals = loads.sum(axis=-1, keepdims=True)
    return np.divide(loads * loads.shape[-1], totals, out=np.zeros_like(loads, dtype=float), where=totals > 0)


def heatmaps(load: dict) -> None:
    import plotly.graph_objects as go

    layers = [int(x) for x in load["layers"]]
    chosen = st.multiselect("Layers", layers, default=layers[:MAX_HEATMAPS], key="routing_layers")
    for layer in chosen:
        i = layers.index(layer)
        # (experts, steps); white = balanced, the colour saturates at 2x the mean (hover shows the value)
        z = relative_load(load["loads"][:, i, :].astype(float)).T
        fig = go.Figure(go.Heatmap(z=z, x=load["steps"], y=list(range(z.shape[0])), colorscale="RdBu_r", zmin=0.0, zmax=2.0,
                                   colorbar=dict(title="load / mean"), name=f"layer {layer}",
                                   hovertemplate="step %{x}, expert %{y}: %{z:.2f} x mean<extra></extra>"))
        fig.update_layout(title=f"layer {layer}: expert load over steps", xaxis_title="step", yaxis_title="expert",
                          height=300, margin=dict(l=10, r=10, t=40, b=10))
        st.plotly_chart(fig, key=f"heatmap_{layer}")


def load_curves(uri: str, frame: pd.DataFrame, run: pd.Series) -> None:
    keys = [k for k in common.metric_keys(frame[frame["run_id"] == run["run_id"]], "moe/")
            if k.endswith("/max_over_mean") and "eval" not in k]
    if not keys:
        st.caption("No `moe/.../max_over_mean` metrics on this run.")
        return
    history = common.histories(uri, (run["run_id"],), tuple(keys))
    import plotly.graph_objects as go

    fig = go.Figure()
    for key in keys:
        rows = history[history["key"] == key]
        fig.add_trace(go.Scatter(x=rows["step"], y=rows["value"], name=key.split("/")[1],
                                 line=dict(width=4 if key.startswith("moe/mean") else 1.5)))
    fig.update_layout(title="max / mean expert load (1.0 = balanced)", xaxis_title="step", height=320,
                      margin=dict(l=10, r=10, t=40, b=10))
    st.plotly_chart(fig, key="routing_max_over_mean")


def before_after(load: dict) -> None:
    if "eval_before" not in load:
        st.caption("No eval-set loads in the artifact (the run did not evaluate).")
        return
    import plotly.graph_objects as go

    layers = [int(x) for x in load["layers"]]
    layer = st.selectbox("Layer (eval-set load)", layers, key="routing_eval_layer")
    i = layers.index(layer)
    before, after = (relative_load(load[k][i].astype(float)[None])[0] for k in ("eval_before", "eval_after"))
    experts = list(range(len(before)))
    fig = go.Figure([go.Bar(name="base (first eval)", x=experts, y=before),
                     go.Bar(name="tuned (last eval)", x=experts, y=after)])
    fig.update_layout(barmode="group", title=f"layer {layer}: eval-set load per expert, base vs tuned",
                      xaxis_title="expert", yaxis_title="load / mean", height=320, margin=dict(l=10, r=10, t=40, b=10))
    st.plotly_chart(fig, key="routing_before_after")


def render(uri: str, frame: pd.DataFrame) -> None:
    moe_cols = [c for c in frame.columns if c.startswith("metrics.moe/")]
    has_moe = frame[moe_cols].notna().any(axis=1) if moe_cols else pd.Series(False, index=frame.index)
    run = common.pick_run(frame, "Run", prefer=has_moe, key="routing_run")
    common.status_note(run)
    load = common.expert_load(uri, run["run_id"])
    if load is None:
        st.info("This run has no routing telemetry (no `moe/expert_load.npz` artifact): a dense model, "
                "`moe.telemetry: false`, or a run that has not finished yet.")
    else:
        steps, n_layers, n_experts = load["loads"].shape
        st.caption(f"{steps} optimizer steps, {n_layers} MoE layers, {n_experts} routed experts.")
        heatmaps(load)
    load_curves(uri, frame, run)
    if load is not None:
        before_after(load)
