"""Where the workbench keeps things: the project root, its cache, recipes and run outputs.

`WORKBENCH_HOME` overrides the root (the folder holding `recipes/`, `runs/` and `mlflow.db`);
`WORKBENCH_CACHE` overrides the cache (built tiny models, tokenizers, compiled DeepSpeed ops).
"""

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
FINAL_MODEL_INFO = "workbench_model.json"  # written next to a run's final adapter/model: how to rebuild it


def project_root() -> Path:
    if "WORKBENCH_HOME" in os.environ:
        return Path(os.environ["WORKBENCH_HOME"]).resolve()
    source_checkout = PACKAGE_DIR.parent
    if (source_checkout / "recipes").is_dir():
        return source_checkout
    return Path.cwd()


def cache_dir() -> Path:
    path = Path(os.environ.get("WORKBENCH_CACHE", project_root() / ".cache" / "workbench"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def recipes_dir() -> Path:
    return project_root() / "recipes"


def runs_dir() -> Path:
    return project_root() / "runs"


def default_tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_root() / 'mlflow.db'}"
