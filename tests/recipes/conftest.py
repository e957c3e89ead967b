"""Fixtures for end-to-end runs: train a recipe for a few steps into the test's temp dir."""

import pytest
from support import FAST


@pytest.fixture
def train(train_recipe):
    """train(recipe, overrides) -> (finished Run, MlflowClient), with the fast test overrides."""
    return lambda recipe, extra, out="out": train_recipe(recipe, FAST + list(extra), out)
