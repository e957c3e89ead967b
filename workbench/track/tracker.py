"""MLflow tracking: one experiment per recipe, one run per fine-tune, no server needed.

    from workbench.track.tracker import tracker
    t = tracker(recipe)                 # starts (or resumes) an MLflow run
    trainer.add_callback(t.callback())  # per-step train loss, lr, eval metrics
    t.finish(final_dir)

The store is `track.tracking_uri`, else `$MLFLOW_TRACKING_URI`, else `sqlite:///<project>/mlflow.db`.
Each run records the resolved recipe (artifact + flattened params), a data fingerprint, the git
commit, package versions, metrics, the trained adapter/model and tags for recipe, method and base model.
"""

import re
import subprocess
from importlib import metadata
from pathlib import Path

import yaml
from transformers import TrainerCallback

from workbench.paths import default_tracking_uri, project_root

PACKAGES = ("torch", "transformers", "trl", "peft", "datasets", "accelerate", "deepspeed", "mlflow")


def metric_name(key: str) -> str:
    """`eval_rewards/accuracies` -> `eval/rewards/accuracies`; characters MLflow rejects become `_`."""
    name = f"eval/{key[5:]}" if key.startswith("eval_") else f"train/{key}"
    return re.sub(r"[^A-Za-z0-9_\-./ ]", "_", name)


def flatten(tree: dict, prefix: str = "") -> dict:
    """{"train": {"lr": 1}} -> {"train.lr": 1}, for MLflow params."""
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project_root(), capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


class Tracker:
    def __init__(self, uri: str, experiment: str, run_name: str, run_id: str | None = None):
        import mlflow

        self.mlflow = mlflow
        mlflow.set_tracking_uri(uri)
        self.uri = uri
        mlflow.set_experiment(experiment)
        self.run = mlflow.start_run(run_id=run_id, run_name=None if run_id else run_name, log_system_metrics=False)
        self.run_id = self.run.info.run_id

    def log_start(self, recipe, splits, output_dir: Path) -> None:
        recipe_dict = recipe.to_dict()
        text = yaml.safe_dump(recipe_dict, sort_keys=False)
        (output_dir / "recipe.yaml").write_text(text)
        self.mlflow.log_artifact(str(output_dir / "recipe.yaml"))
        commit = git_commit()
        params = {k: str(v) for k, v in flatten(recipe_dict).items() if k not in ("path",)}
        params.update({f"version.{k}": v for k, v in package_versions().items()})
        params.update({"data.fingerprint": splits.fingerprint, "data.train_rows": len(splits.train),
                       "data.eval_rows": len(splits.eval) if splits.eval is not None else 0, "git.commit": commit})
        existing = self.mlflow.get_run(self.run_id).data.params
        self.mlflow.log_params({k: v for k, v in params.items() if k not in existing})  # resume: params are immutable
        self.mlflow.set_tags({
            "recipe": recipe.name,
            "method": recipe.method.name,
            "base_model": recipe.model.from_run and f"run:{recipe.model.from_run}" or recipe.model.name,
            "output_dir": str(output_dir),
            "data.fingerprint": splits.fingerprint,
            "mlflow.source.git.commit": commit,
            **recipe.track.tags,
        })

    def log_metrics(self, metrics: dict[str, float], step: int, raw: bool = False) -> None:
        """Trainer logs get `train/` or `eval/` prefixes; `raw` names (e.g. `moe/layer1/cv`) are kept."""
        name = (lambda k: re.sub(r"[^A-Za-z0-9_\-./ ]", "_", k)) if raw else metric_name
        clean = {name(k): float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
        if clean:  # queued, written by MLflow's logging thread (end_run waits for it): the train loop does not wait
            self.mlflow.log_metrics(clean, step=step, synchronous=False)

    def log_esft(self, selection: dict[int, list[int]], trainable: int, total: int) -> None:
        """The experts ESFT trains, as a table artifact and as params."""
        rows = [{"layer": layer, "experts": " ".join(map(str, experts)), "n_selected": len(experts)}
                for layer, experts in selection.items()]
        self.mlflow.log_table({k: [r[k] for r in rows] for k in rows[0]}, artifact_file="moe/esft_selection.json")
        self.mlflow.log_params({"esft.trainable_params": trainable, "esft.total_params": total,
                                **{f"esft.layer{r['layer']}": r["experts"] for r in rows}})
        print(f"ESFT: training {sum(len(e) for e in selection.values())} experts "
              f"({trainable:,} of {total:,} parameters, {trainable / total:.1%})")

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self.mlflow.log_artifact(str(path), artifact_path=artifact_path)

    def callback(self) -> TrainerCallback:
        return _MetricsCallback(self)

    def log_final(self, final_dir: Path, upload: bool) -> None:
        self.mlflow.set_tag("final_dir", str(final_dir))
        if upload:
            self.mlflow.log_artifacts(str(final_dir), artifact_path="model")

    def end(self, status: str = "FINISHED") -> None:
        self.mlflow.end_run(status=status)


class _MetricsCallback(TrainerCallback):
    def __init__(self, tracker: Tracker):
        self.tracker = tracker

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            self.tracker.log_metrics({k: v for k, v in logs.items() if k not in ("epoch", "total_flos")},
                                     step=state.global_step)


def tracking_uri(recipe) -> str:
    return recipe.track.tracking_uri or default_tracking_uri()


def tracker(recipe, run_name: str, run_id: str | None = None) -> Tracker:
    return Tracker(tracking_uri(recipe), recipe.track.experiment or recipe.name, run_name, run_id)


class NullTracker:
    """What ranks other than 0 get in a multi-process run: one MLflow run per job, written by rank 0 only."""

    run_id = None
    uri = None

    class _Quiet:
        def __getattr__(self, name):
            return lambda *args, **kwargs: None

    mlflow = _Quiet()

    def __getattr__(self, name):  # log_start, log_metrics, log_esft, log_artifact, log_final, end
        return lambda *args, **kwargs: None

    def callback(self) -> TrainerCallback:
        return TrainerCallback()
