"""The team path on a real PostgreSQL (tests/stores.py starts one): a fine-tune tracked in an MLflow store on
PostgreSQL, read back, then scored by the scheduler with its claims on the same server.

    .venv/bin/python -m pytest -q tests/recipes/test_postgres_tracking.py
"""

import uuid

from support import FAST, history

METRIC = "eval/legal_mc/acc_none"


def test_a_fine_tune_tracked_on_postgresql_is_read_back_and_scored_once_by_the_scheduler(
        postgres, mlflow_pg_uri, tmp_path, monkeypatch):
    import mlflow

    from workbench.recipe.load import load_recipe
    from workbench.train.build import build
    from workbench.schedule.scheduler import ClaimStore, ScheduleConfig, tick

    experiment = f"legal-pg-{uuid.uuid4().hex[:8]}"  # the session shares one MLflow database
    client = mlflow.MlflowClient(mlflow_pg_uri)
    client.create_experiment(experiment, artifact_location=str(tmp_path / "artifacts"))
    overrides = FAST + [f"track.tracking_uri={mlflow_pg_uri}", f"track.experiment={experiment}",
                        f"train.output_dir={tmp_path / 'out'}", "train.max_steps=2", "data.max_rows=16"]
    run = build(load_recipe("legal", overrides))
    try:
        run.train()
    finally:
        run.close()

    found = client.get_run(run.tracker.run_id)
    assert found.info.status == "FINISHED"
    params, tags = found.data.params, found.data.tags
    assert (params["train.max_steps"], params["data.max_rows"], params["method.name"]) == ("2", "16", "sft")
    assert (tags["recipe"], tags["method"], tags["final_dir"]) == ("legal", "sft", str(run.output_dir / "final"))
    losses = history(client, found.info.run_id, "train/loss")
    assert len(losses) == 2 and all(0 < loss < 20 for loss in losses)  # one per step, a plausible LM loss

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_pg_uri)  # where evaluate_run looks the run up
    store = ClaimStore(postgres.create_database(f"claims_{uuid.uuid4().hex[:8]}"))
    cfg, lines = ScheduleConfig(suite="legal", limit=1, experiments=(experiment,)), []
    assert tick(cfg, store, client, "node-a:1:pg0001", say=lines.append) == [found.info.run_id]
    assert tick(cfg, store, client, "node-b:2:pg0002", say=lines.append) == []  # nothing left
    assert len(client.get_metric_history(found.info.run_id, METRIC)) == 1
    tags = client.get_run(found.info.run_id).data.tags
    assert (tags["eval.legal.source"], tags["eval.legal.limit"], tags["eval.legal.attempts"]) == ("local", "1", "1")
    row = store.get(found.info.run_id, "legal")
    assert (row["state"], row["owner"], row["generation"]) == ("done", "node-a:1:pg0001", 1)
    store.close()
