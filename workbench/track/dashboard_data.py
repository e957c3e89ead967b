"""Read-only queries on the MLflow store for the dashboard (ui/app.py): runs, metric histories, artifacts.

    from workbench.track import dashboard_data as dd
    uri = dd.tracking_uri()                       # $MLFLOW_TRACKING_URI or the project's sqlite store
    runs = dd.runs_frame(uri)                     # one row per run: latest metrics, params, tags
    hist = dd.metric_histories(uri, [run_id], ["train/loss"])   # histories only for the runs asked for
    load = dd.expert_load(uri, run_id)            # arrays of moe/expert_load.npz, or None
    answers = dd.run_samples(uri, run_id)         # rows of samples.jsonl (held-out answers before/after), or None
    rollouts = dd.completions(uri, run_id)        # rows of a GRPO run's completions.jsonl, or None

Nothing here writes to MLflow: a sqlite store that does not exist yet is reported, not created, and an
unreachable server raises `TrackingUnavailable` quickly (one short health check, no retry storm).
No streamlit import: the UI adds caching on top; this module is plain functions over an MlflowClient.
"""

import json
import os
import tempfile
from pathlib import Path

from workbench.paths import default_tracking_uri

LOAD_ARTIFACT = "moe/expert_load.npz"  # written by workbench.moe.plugin
SCORE_PREFIXES = ("eval", "base")  # eval/<task>/<metric> after training, base/<task>/<metric> before
RUN_SAMPLES = "samples.jsonl"  # workbench.evaluate.samples: held-out prompts answered before and after training
COMPLETIONS = "completions.jsonl"  # workbench.train.methods.grpo: sampled completions with rewards, by step
SAMPLE_DIRS = ("eval", "evals", "base")  # where workbench.evaluate.harness.log_to_run puts samples_<task>.jsonl
# Trainer-side eval metrics that share the eval/ prefix but are not benchmark scores (TRL DPO/KTO/SFT).
TRAINER_EVAL_GROUPS = {"rewards", "logps", "logits"}
MAX_RUNS = 5000
DATABASES = ("postgresql", "mysql", "mssql")


class TrackingUnavailable(RuntimeError):
    """The tracking store cannot be read; the message is meant for the user."""


def tracking_uri() -> str:
    return default_tracking_uri()


def ui_base_url() -> str:
    return os.environ.get("MLFLOW_UI_URL", "http://127.0.0.1:5000").rstrip("/")


def run_url(experiment_id: str, run_id: str) -> str:
    return f"{ui_base_url()}/#/experiments/{experiment_id}/runs/{run_id}"


def sqlite_path(uri: str) -> Path | None:
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///"):])


def check_store(uri: str) -> None:
    """Raise TrackingUnavailable with a plain-words reason if `uri` cannot be read (without creating it)."""
    path = sqlite_path(uri)
    if path is not None and not path.is_file():
        raise TrackingUnavailable(f"No MLflow store at {path} yet: run a fine-tune first "
                                  f"(`make finetune RECIPE=legal`) or point MLFLOW_TRACKING_URI at your store.")
    if uri.split(":", 1)[0].split("+")[0] in DATABASES:  # a database that is down: seconds, not MLflow's two minutes
        from workbench.errors import WorkbenchError
        from workbench.track.store import check_store

        try:
            check_store(uri, key="MLFLOW_TRACKING_URI")
        except WorkbenchError as err:
            raise TrackingUnavailable(f"{err}. Start the database or set MLFLOW_TRACKING_URI.") from None
    if uri.startswith(("http://", "https://")):
        import requests

        try:
            requests.get(f"{uri.rstrip('/')}/health", timeout=3).raise_for_status()
        except requests.RequestException as err:
            raise TrackingUnavailable(f"Cannot reach the MLflow tracking server at {uri} ({type(err).__name__}). "
                                      f"Start it with `make mlflow` or set MLFLOW_TRACKING_URI.") from None


def client(uri: str):
    import mlflow

    # A dashboard should fail in seconds, not after MLflow's default seven retries with backoff.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    check_store(uri)
    return mlflow.MlflowClient(tracking_uri=uri)


def _guard(fn):
    """Turn MLflow and connection errors into TrackingUnavailable so pages can show one message."""
    def wrapped(uri, *args, **kwargs):
        try:
            return fn(uri, *args, **kwargs)
        except TrackingUnavailable:
            raise
        except Exception as err:  # noqa: BLE001 - any store failure becomes a message, not a traceback
            raise TrackingUnavailable(f"Reading the MLflow store at {uri} failed: {type(err).__name__}: {err}") from err
    wrapped.__name__, wrapped.__doc__ = fn.__name__, fn.__doc__
    return wrapped


@_guard
def experiments(uri: str) -> dict[str, str]:
    """{experiment_id: name} for active experiments."""
    return {e.experiment_id: e.name for e in client(uri).search_experiments(max_results=1000)}


@_guard
def runs_frame(uri: str, experiment_ids: list[str] | None = None):
    """One row per run (newest first): identity columns, `metrics.<key>` (latest values), `params.<key>`,
    `tags.<key>`. Uses search_runs only, never metric histories."""
    import pandas as pd

    mlflow_client = client(uri)
    names = {e.experiment_id: e.name for e in mlflow_client.search_experiments(max_results=1000)}
    ids = list(experiment_ids or names)
    rows, token = [], None
    while ids and len(rows) < MAX_RUNS:
        page = mlflow_client.search_runs(ids, max_results=1000, order_by=["attributes.start_time DESC"],
                                         page_token=token)
        rows += [_run_row(run, names) for run in page]
        token = page.token
        if not token:
            break
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    for column in ("start_time", "end_time"):
        frame[column] = pd.to_datetime(frame[column], unit="ms", utc=True)
    return frame


def _run_row(run, experiment_names: dict[str, str]) -> dict:
    info, data = run.info, run.data
    recipe = data.tags.get("recipe") or experiment_names.get(info.experiment_id, "?")
    row = {
        "run_id": info.run_id, "experiment_id": info.experiment_id,
        "experiment": experiment_names.get(info.experiment_id, info.experiment_id),
        "run_name": info.run_name or info.run_id[:8], "status": info.status,
        "start_time": info.start_time, "end_time": info.end_time,
        "recipe": recipe, "method": data.tags.get("method", data.params.get("method.name", "")),
        "base_model": data.tags.get("base_model", ""),
        "label": f"{recipe} / {info.run_name or '-'} ({info.run_id[:8]})",
    }
    row.update({f"metrics.{k}": v for k, v in data.metrics.items()})
    row.update({f"params.{k}": v for k, v in data.params.items()})
    row.update({f"tags.{k}": v for k, v in data.tags.items() if not k.startswith("mlflow.")})
    return row


def score_keys(metric_keys, prefix: str = "eval") -> list[str]:
    """Benchmark score metrics `<prefix>/<task>/<metric>` among `metric_keys` (trainer eval/rewards/... excluded)."""
    keys = []
    for key in metric_keys:
        parts = key.split("/")
        if len(parts) >= 3 and parts[0] == prefix and parts[1] not in TRAINER_EVAL_GROUPS:
            keys.append(key)
    return sorted(keys)


@_guard
def metric_histories(uri: str, run_ids: list[str], keys: list[str]):
    """Long frame (run_id, key, step, value, timestamp) of the full histories of `keys` for `run_ids` only."""
    import pandas as pd

    mlflow_client = client(uri)
    rows = [(run_id, key, m.step, m.value, m.timestamp)
            for run_id in run_ids for key in keys for m in mlflow_client.get_metric_history(run_id, key)]
    frame = pd.DataFrame(rows, columns=["run_id", "key", "step", "value", "timestamp"])
    frame["time"] = pd.to_datetime(frame["timestamp"], unit="ms", utc=True)
    return frame.sort_values(["run_id", "key", "step", "timestamp"], ignore_index=True)


def _artifact_files(mlflow_client, run_id: str, folder: str) -> list[str]:
    """Every file path under `folder` of a run's artifacts (recursive)."""
    files = []
    for item in mlflow_client.list_artifacts(run_id, folder):
        if item.is_dir:
            files += _artifact_files(mlflow_client, run_id, item.path)
        else:
            files.append(item.path)
    return files


@_guard
def expert_load(uri: str, run_id: str) -> dict | None:
    """The arrays of a run's moe/expert_load.npz (loads[steps, layers, experts], steps, layers, bias,
    optionally eval_before/eval_after), or None when the run has no such artifact."""
    import numpy as np

    mlflow_client = client(uri)
    if LOAD_ARTIFACT not in _artifact_files(mlflow_client, run_id, "moe"):
        return None
    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow_client.download_artifacts(run_id, LOAD_ARTIFACT, tmp)
        with np.load(local) as npz:
            return {name: npz[name] for name in npz.files}


@_guard
def sample_files(uri: str, run_id: str) -> list[str]:
    """Artifact paths of per-sample eval outputs (`samples_<task>.jsonl`) on a run."""
    mlflow_client = client(uri)
    top = {item.path for item in mlflow_client.list_artifacts(run_id) if item.is_dir}
    files = []
    for folder in SAMPLE_DIRS:
        if folder in top:
            files += [f for f in _artifact_files(mlflow_client, run_id, folder) if f.endswith(".jsonl")]
    return sorted(files)


@_guard
def samples(uri: str, run_id: str, path: str, limit: int = 2000) -> list[dict]:
    """Rows (prompt, output, target, passed, metric, doc_id) from an lm-eval samples jsonl artifact."""
    with tempfile.TemporaryDirectory() as tmp:
        local = client(uri).download_artifacts(run_id, path, tmp)
        with open(local) as fh:
            records = [json.loads(line) for _, line in zip(range(limit), fh) if line.strip()]
    return [sample_row(record) for record in records]


def sample_row(record: dict) -> dict:
    """One lm-eval logged sample in plain columns; `passed` is the first metric's value as a bool."""
    arguments = record.get("arguments") or [[""]]
    first = arguments[0] if isinstance(arguments, list) else next(iter(arguments.values()), {})
    prompt = first[0] if isinstance(first, list) and first else (first.get("arg_0", "") if isinstance(first, dict) else first)
    output = record.get("filtered_resps", record.get("resps", [""]))
    while isinstance(output, list) and len(output) == 1:
        output = output[0]
    metric = (record.get("metrics") or [None])[0]
    value = record.get(metric) if metric else None
    return {"doc_id": record.get("doc_id"), "prompt": str(prompt), "output": str(output),
            "target": str(record.get("target", "")), "metric": metric, "score": value,
            "passed": bool(value) if isinstance(value, (int, float, bool)) else None}


def _root_jsonl(uri: str, run_id: str, name: str, limit: int) -> list[dict] | None:
    """The first `limit` JSON lines of the artifact `name` at the run's artifact root; None when it has none.
    A line that is not JSON (a file cut off mid-write) is skipped."""
    mlflow_client = client(uri)
    if name not in {item.path for item in mlflow_client.list_artifacts(run_id) if not item.is_dir}:
        return None
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        with open(mlflow_client.download_artifacts(run_id, name, tmp), encoding="utf-8") as fh:
            for line in fh:
                if len(rows) >= limit:
                    break
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
    return rows


@_guard
def run_samples(uri: str, run_id: str, limit: int = 5000) -> list[dict] | None:
    """Rows of the run's samples.jsonl (index, prompt, reference, before, after, before_score, after_score,
    score), or None for a run that did not log one (older runs, `eval.samples: 0`)."""
    return _root_jsonl(uri, run_id, RUN_SAMPLES, limit)


@_guard
def completions(uri: str, run_id: str, limit: int = 20000) -> list[dict] | None:
    """Rows of a GRPO run's completions.jsonl (step, prompt, completion, rewards {name: value}, advantage),
    or None for a run without one."""
    return _root_jsonl(uri, run_id, COMPLETIONS, limit)
