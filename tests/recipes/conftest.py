"""Fixtures for end-to-end runs: train a recipe for a few steps into the test's temp dir."""

import pytest
from support import FAST


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
