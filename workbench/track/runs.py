"""Runs from the command line: a table of recent runs, and one run's summary.

    workbench runs                 # the 20 newest runs of every recipe
    workbench runs legal --limit 5 # the newest runs of one recipe (its MLflow experiment)
    workbench show 7722094c        # one run: what it trained, held-out loss, scores before -> after, files

Reads the same MLflow store the fine-tunes write to ($MLFLOW_TRACKING_URI, else the project's mlflow.db).
"""

import re
from datetime import datetime

from pathlib import Path

from workbench import console
from workbench.track.dashboard_data import score_keys
from workbench.errors import WorkbenchError


def _client():
    import mlflow

    from workbench.paths import default_tracking_uri
    from workbench.track.store import check_store, store_key

    uri = check_store(default_tracking_uri(), key=store_key())
    return mlflow.MlflowClient(tracking_uri=uri), uri


def _experiments(client, recipe: str | None) -> list:
    if recipe is None:
        return [e for e in client.search_experiments() if e.name != "Default"]
    experiment = client.get_experiment_by_name(recipe)
    if experiment is None:
        known = ", ".join(sorted(e.name for e in client.search_experiments() if e.name != "Default")) or "none yet"
        raise WorkbenchError(f"runs: no runs of '{recipe}' in {client.tracking_uri} (recipes with runs: {known})")
    return [experiment]


def _headline(metrics: dict) -> str:
    """The run's main score: the first eval/<task>/<metric> score, with its value before training if there is one."""
    for name in score_keys(metrics):
        score = name[5:]
        before = metrics.get(f"base/{score}")
        return f"{score} {'' if before is None else f'{before:.3f} -> '}{metrics[name]:.3f}"
    return ""


def list_runs(recipe: str | None = None, limit: int = 20) -> list:
    from rich.table import Table

    client, uri = _client()
    experiments = _experiments(client, recipe)
    runs = client.search_runs([e.experiment_id for e in experiments], order_by=["attributes.start_time DESC"],
                              max_results=limit) if experiments else []
    if not runs:
        console.say(f"no runs in {uri}" + (f" for '{recipe}'" if recipe else "") + "; start one with `make finetune RECIPE=legal`")
        return []
    table = Table(box=None, padding=(0, 2), show_edge=False)
    for column in ("started", "recipe", "name", "status", "method", "eval loss", "score before -> after", "id"):
        table.add_column(column)
    for run in runs:
        tags, metrics = run.data.tags, run.data.metrics
        started = datetime.fromtimestamp(run.info.start_time / 1000).strftime("%Y-%m-%d %H:%M")
        loss = metrics.get("eval/loss")
        table.add_row(started, tags.get("recipe", ""), tags.get("mlflow.runName", ""), run.info.status,
                      tags.get("method", ""), "" if loss is None else f"{loss:.3f}", _headline(metrics), run.info.run_id)
    console.print_table(table)
    return runs


def find(ref: str):
    """A run by full id, a unique id prefix (8+ characters), or an experiment name (its newest run)."""
    client, uri = _client()
    if re.fullmatch(r"[0-9a-f]{32}", ref):
        try:
            return client, client.get_run(ref)
        except Exception:
            raise WorkbenchError(f"show: no run with id {ref} in {uri}") from None
    if re.fullmatch(r"[0-9a-f]{8,31}", ref):
        ids = [e.experiment_id for e in client.search_experiments()]
        matches = [r for r in client.search_runs(ids, max_results=5000) if r.info.run_id.startswith(ref)]
        if len(matches) == 1:
            return client, matches[0]
        if matches:
            raise WorkbenchError(f"show: '{ref}' matches {len(matches)} runs; give more of the id")
    experiment = client.get_experiment_by_name(ref)
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"],
                              max_results=1) if experiment else []
    if not runs:
        raise WorkbenchError(f"show: '{ref}' is neither a run id (or its first 8+ characters) nor an experiment "
                             f"with runs in {uri}")
    return client, runs[0]


def show_run(ref: str) -> None:
    client, run = find(ref)
    tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
    losses = [m.value for m in sorted(client.get_metric_history(run.info.run_id, "eval/loss"), key=lambda m: m.step)]
    rows = {"run": f"{run.info.run_id} ({tags.get('mlflow.runName', '')}, {run.info.status})",
            "recipe": f"{tags.get('recipe', '')}, method {tags.get('method', '')}, base model {tags.get('base_model', '')}",
            "data": f"{params.get('data.train', '')}: {params.get('data.train_rows', '?')} train / "
                    f"{params.get('data.eval_rows', '?')} eval rows (fingerprint {params.get('data.fingerprint', '?')})",
            "held-out loss": f"{losses[0]:.3f} -> {losses[-1]:.3f} ({len(losses)} evaluations)" if losses else "not logged",
            "output": tags.get("final_dir") or tags.get("output_dir", ""),
            "commit": params.get("git.commit", "")}
    for key in ("retention", "eval.contamination", "deepspeed", "base_run_id"):
        if key in tags:
            rows[key] = tags[key]
    console.header(rows)
    scores = sorted({k.split("/", 1)[1] for k in score_keys(metrics) + score_keys(metrics, "base")})
    table = [(s, _value(metrics, f"base/{s}"), _value(metrics, f"eval/{s}"), _change(metrics, s)) for s in scores]
    if table:
        console.scores_table(table)
    moe = {k: v for k, v in metrics.items() if k.startswith("moe/mean/")}
    if moe:
        console.say("  routing (last window): " + ", ".join(f"{k[9:]} {v:.3g}" for k, v in sorted(moe.items())))
    _show_samples(client, run.info.run_id)


def _show_samples(client, run_id: str, count: int = 3) -> None:
    """Three of the run's sample answers (samples.jsonl, workbench.evaluate.samples), before and after."""
    import json
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        try:
            path = client.download_artifacts(run_id, "samples.jsonl", folder)
        except Exception:  # an older run, or one with eval.samples: 0 or several processes: nothing to show
            console.say("  sample answers: none logged with this run")
            return
        rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    console.say(f"  sample answers ({min(count, len(rows))} of {len(rows)} held-out prompts; all in samples.jsonl):")
    for row in rows[:count]:
        console.say(f"  [{row['index']}] {_clip(row['prompt'])}")
        if row.get("reference") is not None:
            console.say(f"      reference  {_clip(row['reference'])}")
        for when in ("before", "after"):
            score = row.get(f"{when}_score")
            mark = f"  ({row['score']} {score:.2f})" if score is not None else ""
            console.say(f"      {when:<10} {_clip(row[when]) if row[when] is not None else '(not measured)'}{mark}")


def _clip(text: str, limit: int = 160) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[:limit - 1] + "\u2026"


def _value(metrics: dict, key: str) -> str:
    return f"{metrics[key]:.3f}" if key in metrics else "-"


def _change(metrics: dict, score: str) -> str:
    if f"base/{score}" not in metrics or f"eval/{score}" not in metrics:
        return ""
    change = f"{metrics[f'eval/{score}'] - metrics[f'base/{score}']:+.3f}"
    test = f"compare/{score}"
    if f"{test}/p_value" in metrics:
        change += console.sign_test(metrics[f"{test}/improved"], metrics[f"{test}/worsened"], metrics[f"{test}/p_value"])
    return change
