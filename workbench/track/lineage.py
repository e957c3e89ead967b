"""Find another run's final weights, for recipes that start where a previous run ended.

`model.from_run` is either an MLflow run id or an experiment name (a recipe's name, such as `legal`),
which means the newest FINISHED run of that experiment. The run's `final_dir` on disk is used when it
still exists; otherwise the `model` artifact is downloaded from the tracking store.
"""

import re
from pathlib import Path

from workbench.errors import WorkbenchError
from workbench.paths import FINAL_MODEL_INFO


def find_run(ref: str, key: str = "model.from_run"):
    import mlflow

    from workbench.track.store import check_store

    uri = check_store(mlflow.get_tracking_uri(), key=key, write=True)  # a missing sqlite file: "no run" below
    client = mlflow.MlflowClient()
    if re.fullmatch(r"[0-9a-f]{32}", ref):
        try:
            return client.get_run(ref)
        except mlflow.exceptions.MlflowException:
            raise WorkbenchError(f"{key}: no run with id {ref} in {uri}") from None
    experiment = client.get_experiment_by_name(ref)
    runs = client.search_runs(
        [experiment.experiment_id], filter_string="attributes.status = 'FINISHED' and tags.final_dir != ''",
        order_by=["attributes.end_time DESC"], max_results=1,
    ) if experiment else []
    if not runs:
        raise WorkbenchError(
            f"{key}: no finished run in experiment '{ref}' at {uri}; "
            f"run `make finetune RECIPE={ref}` first, or name a run id"
        )
    return runs[0]


def run_output(ref: str, key: str = "model.from_run") -> Path:
    run = find_run(ref, key)
    final_dir = Path(run.data.tags.get("final_dir", ""))
    if (final_dir / FINAL_MODEL_INFO).is_file():
        return final_dir
    import mlflow

    try:
        return Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="model"))
    except Exception:
        raise WorkbenchError(f"{key}: run {run.info.run_id} has no final model on disk "
                             f"({final_dir}) or in its artifacts") from None
