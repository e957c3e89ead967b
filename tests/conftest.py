"""Shared test setup: offline hub, a tiny model built from its config, and isolated outputs per test."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
os.environ.setdefault("DISABLE_MLFLOW_INTEGRATION", "TRUE")

import pytest  # noqa: E402


@pytest.fixture
def isolated(tmp_path):
    """Overrides that send a run's outputs and MLflow store into this test's temp dir."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    return {
        "uri": uri,
        "tmp": tmp_path,
        "overrides": [f"track.tracking_uri={uri}", f"train.output_dir={tmp_path / 'out'}"],
    }


@pytest.fixture(scope="session")
def tiny():
    """The embedded deepseek-v3-tiny model and tokenizer, built once per session."""
    from workbench.config import ModelConfig
    from workbench.model import load_model

    return load_model(ModelConfig())


FAST = ["train.batch_size=4", "train.max_length=256", "train.logging_steps=1", "train.save_steps=100",
        "data.max_rows=48", "data.eval_fraction=0.1"]


@pytest.fixture
def train(isolated):
    """train(recipe, overrides) -> (finished Run, MlflowClient) with outputs in this test's temp dir."""
    import mlflow

    from workbench.config import load_recipe
    from workbench.run import build

    def _train(recipe, extra, out="out"):
        overrides = [f"track.tracking_uri={isolated['uri']}", f"train.output_dir={isolated['tmp'] / out}"]
        run = build(load_recipe(recipe, overrides + FAST + extra))
        try:
            run.train()
        finally:
            run.close()
        return run, mlflow.MlflowClient(isolated["uri"])

    return _train


def history(client, run_id, key):
    return [m.value for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)]
