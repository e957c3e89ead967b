"""Samples page: what the models say. The held-out prompts every run answers greedily before and after training
(its `samples.jsonl` artifact), side by side for the picked runs: the start model's answer once, then each run's
answer, each marked where it differs from the reference and with its score, and a filter for the prompts
where the runs disagree. Below: a GRPO run's sampled completions (`completions.jsonl`) by step and group, with
rewards and advantages, and a prompt box that asks one or two runs' final models (ui/views/generate.py).

Runs of one recipe with the same data and seed answer the same prompts, so they line up row by row.
"""

import re
from dataclasses import dataclass

import pandas as pd
import streamlit as st

from ui.views import common, generate

WHITESPACE = re.compile(r"\s+")
CARDS_HEIGHT = 1100  # pixels
DIFFERS = ("An answer **differs** from the reference when the two texts are not equal after every run of "
           "whitespace is turned into one space and both ends are trimmed; letter case and punctuation count. "
           "Prompts without a reference get no mark.")


@dataclass(frozen=True)
class AnswerColumn:
    key: str  # unique on the page: "<field>_<run id>"
    title: str
    run_id: str
    field: str  # "before" (the start model) or "after" (the trained model)


def normalise(text) -> str | None:
    return None if text is None else WHITESPACE.sub(" ", str(text)).strip()


def differs(answer, reference) -> bool | None:
    """Whether `answer` differs from `reference` (see DIFFERS); None where either is missing."""
    if answer is None or reference is None:
        return None
    return normalise(answer) != normalise(reference)


def answer_columns(picked: pd.DataFrame, by_run: dict[str, list[dict]]) -> list[AnswerColumn]:
    """A `before` column per distinct start (runs that answered the same prompts the same way before training
    share one: usually there is just one), then each run's `after` column, in the order the runs were picked."""
    labels = dict(zip(picked["run_id"], picked["label"]))
    starts: dict[tuple, str] = {}
    for run_id in labels:
        rows = by_run.get(run_id) or []
        start = tuple(sorted((row.get("index"), row.get("prompt"), row.get("before") or "") for row in rows))
        if any(row.get("before") is not None for row in rows) and start not in starts:
            starts[start] = run_id
    before = [AnswerColumn(f"before_{run_id}", "before (start model)" if len(starts) == 1 else f"before: {labels[run_id]}",
                           run_id, "before") for run_id in starts.values()]
    return before + [AnswerColumn(f"after_{run_id}", label, run_id, "after")
                     for run_id, label in labels.items() if by_run.get(run_id)]


def prompt_rows(columns: list[AnswerColumn], by_run: dict[str, list[dict]]) -> list[dict]:
    """One entry per prompt (slot, index, prompt, reference, cells {column key: answer, score, kind, differs}),
    by index; a prompt only some runs answered has no cell for the others."""
    prompts: dict[tuple, dict] = {}
    for column in columns:
        for row in by_run[column.run_id]:
            entry = prompts.setdefault((row.get("index"), row.get("prompt")), {
                "index": row.get("index"), "prompt": row.get("prompt"), "reference": None, "cells": {}})
            if entry["reference"] is None:
                entry["reference"] = row.get("reference")
            answer = row.get(column.field)
            if answer is not None:
                entry["cells"][column.key] = {"answer": answer, "score": row.get(f"{column.field}_score"),
                                              "kind": row.get("score")}
    ordered = sorted(prompts.values(), key=lambda entry: (entry["index"] is None, entry["index"] or 0, entry["prompt"] or ""))
    for slot, entry in enumerate(ordered):
        entry["slot"] = slot  # names the prompt's widgets: an index alone may repeat across recipes
        for cell in entry["cells"].values():
            cell["differs"] = differs(cell["answer"], entry["reference"])
    return ordered


def runs_disagree(entry: dict, columns: list[AnswerColumn]) -> bool:
    """Whether the trained answers of two or more runs to this prompt differ (compared as DIFFERS compares)."""
    answers = {normalise(entry["cells"][c.key]["answer"]) for c in columns if c.field == "after" and c.key in entry["cells"]}
    return len(answers) > 1


def score_text(cell: dict) -> str:
    if cell["score"] is None:
        return ""
    if cell["kind"] == "right":
        return "right" if cell["score"] else "wrong"
    return f"{cell['kind'] or 'score'} {cell['score']:.2f}"


def mark(cell: dict) -> str:
    badge = {True: ":red-badge[differs from reference]", False: ":green-badge[matches reference]",
             None: ":gray-badge[no reference]"}[cell["differs"]]
    score = score_text(cell)
    return f"{badge} {score}" if score else badge


def summary(columns: list[AnswerColumn], entries: list[dict]) -> pd.DataFrame:
    """Per column: answers shown, how many match the reference (of those with one) and the mean score."""
    rows = []
    for column in columns:
        cells = [e["cells"][column.key] for e in entries if column.key in e["cells"]]
        judged = [c for c in cells if c["differs"] is not None]
        scores = [c["score"] for c in cells if c["score"] is not None]
        rows.append({"answers": column.title, "prompts": len(cells),
                     "match reference": sum(not c["differs"] for c in judged) if judged else None,
                     "with a reference": len(judged) if judged else None,
                     "mean score": sum(scores) / len(scores) if scores else None,
                     "score is": next((c["kind"] for c in cells if c["kind"]), None)})
    return pd.DataFrame(rows)


def answer_card(entry: dict, columns: list[AnswerColumn]) -> None:
    with st.container(border=True, key=f"samples_prompt_{entry['slot']}"):
        st.markdown(f"**Prompt {entry['index']}**")
        st.code(entry["prompt"], language=None, wrap_lines=True)
        reference = entry["reference"]
        st.caption("Reference: (none)" if reference is None else "Reference:")
        if reference is not None:
            st.code(reference, language=None, wrap_lines=True)
        for column, place in zip(columns, st.columns(len(columns))):
            with place.container(key=f"samples_answer_{entry['slot']}_{column.key}"):
                st.markdown(f"**{column.title}**")
                cell = entry["cells"].get(column.key)
                if cell is None:
                    st.caption("(no answer to this prompt)")
                    continue
                st.code(cell["answer"], language=None, wrap_lines=True)
                st.markdown(mark(cell))


def answers(uri: str, picked: pd.DataFrame) -> None:
    by_run = {run_id: common.run_samples(uri, run_id) for run_id in picked["run_id"]}
    missing = [label for run_id, label in zip(picked["run_id"], picked["label"]) if not by_run[run_id]]
    if missing:
        st.info("No sample answers on " + ", ".join(missing) + ": runs from before the workbench logged "
                "`samples.jsonl`, and runs with `eval.samples: 0`, have none. Their curves and scores are on the "
                "other pages.")
    columns = answer_columns(picked, by_run)
    if not columns:
        return
    entries = prompt_rows(columns, by_run)
    afters = sum(c.field == "after" for c in columns)
    only_disagree = st.toggle("Only prompts where the runs disagree", key="samples_disagree", disabled=afters < 2,
                              help="Keep the prompts whose trained answers are not all the same "
                                   "(compared as for the reference below); needs two or more runs with samples")
    shown = [e for e in entries if runs_disagree(e, columns)] if only_disagree and afters >= 2 else entries
    st.caption(f"{len(shown)} of {len(entries)} held-out prompts, answered greedily. {DIFFERS}")
    common.dataframe(summary(columns, shown), hide_index=True, width="stretch",
                     column_config={"mean score": st.column_config.NumberColumn(format="%.3f")})
    # many prompts scroll in a box of their own, so the completions and the prompt box below stay in reach
    with st.container(height=CARDS_HEIGHT if len(shown) > 3 else "content", key="samples_cards"):
        for entry in shown:
            answer_card(entry, columns)


def completion_groups(rows: list[dict]) -> list[dict]:
    """Consecutive rows of one step with the same prompt are one group (the completions sampled for one
    prompt): [{"step", "group" (1-based within the step), "prompt", "rows"}]."""
    groups: list[dict] = []
    for row in rows:
        last = groups[-1] if groups else None
        if last and last["step"] == row.get("step") and last["prompt"] == row.get("prompt"):
            last["rows"].append(row)
            continue
        number = last["group"] + 1 if last and last["step"] == row.get("step") else 1
        groups.append({"step": row.get("step"), "group": number, "prompt": row.get("prompt"), "rows": [row]})
    return groups


def group_table(group: dict) -> pd.DataFrame:
    """One row per completion: the text, each reward function's value, the advantage (st.table leaves a
    missing value blank)."""
    names = list(dict.fromkeys(name for row in group["rows"] for name in (row.get("rewards") or {})))
    return pd.DataFrame([{"completion": row.get("completion"),
                          **{name: (row.get("rewards") or {}).get(name) for name in names},
                          "advantage": row.get("advantage")} for row in group["rows"]])


def rollouts(uri: str, picked: pd.DataFrame) -> None:
    logged = {label: rows for run_id, label in zip(picked["run_id"], picked["label"])
              if (rows := common.completions(uri, run_id))}
    if not logged:
        return
    st.subheader("GRPO completions during training")
    label = st.selectbox("Run", list(logged), key="samples_rollout_run") if len(logged) > 1 else next(iter(logged))
    groups = completion_groups(logged[label])
    steps = sorted({g["step"] for g in groups}, key=lambda s: (s is None, s or 0))
    step = steps[0] if len(steps) == 1 else st.select_slider("Step", steps, value=steps[-1], key="samples_step")
    at_step = [g for g in groups if g["step"] == step]
    st.caption(f"{label}: {len(groups)} groups logged over {len(steps)} steps (`completions.jsonl`). A group is the "
               f"completions sampled for one prompt; the advantage is each one's reward relative to its group. "
               f"Step {step}: {len(at_step)} groups.")
    for group in at_step:
        with st.container(border=True, key=f"samples_group_{group['group']}"):
            st.markdown(f"**Group {group['group']}** at step {step}: {len(group['rows'])} completions")
            st.code(group["prompt"], language=None, wrap_lines=True)
            st.table(group_table(group))


def render(uri: str, frame: pd.DataFrame) -> None:
    picked = common.pick_runs(frame, "Runs", key="samples_runs", placeholder="pick one or more runs")
    if picked.empty:
        st.info("Pick one or more runs to read their answers to the held-out prompts (type part of a recipe, "
                "run name or run id); runs of one recipe answer the same prompts.")
        return
    answers(uri, picked)
    rollouts(uri, picked)
    generate.render(uri, picked)
