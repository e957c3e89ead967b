"""The plan's own logic that needs no model: what a run with several processes says it cannot measure."""

from pathlib import Path
from types import SimpleNamespace

import pytest

from workbench.recipe.load import load_recipe
from workbench.train.build import _evidence_off
from workbench.train.plan import Plan


def _plan(recipe, overrides, stage, world):
    return Plan(recipe=load_recipe(recipe, overrides), label="x.yaml", tracking_uri="sqlite:///x.db",
                output_dir=Path("/tmp/x"), splits=SimpleNamespace(eval=[{"prompt": "p", "answer": "1"}]), model=None,
                deepspeed={"zero_optimization": {"stage": stage}} if stage is not None else None, world_size=world)


@pytest.mark.parametrize("recipe, overrides, expected", [
    ("legal-grpo", ["model.from_run=null"], ["held-out reward: off", "sample answers: off"]),
    ("legal-mtp", [], ["recipe evals: off", "MTP report: off", "sample answers: off"]),
    ("legal", [], ["recipe evals: off", "sample answers: off"]),
    ("legal", ["eval.samples=0"], ["recipe evals: off"]),
])
def test_a_run_with_several_processes_names_each_piece_of_evidence_it_does_not_produce(recipe, overrides, expected):
    lines = _evidence_off(_plan(recipe, overrides, stage=2, world=2))
    assert [line.split(" (")[0] for line in lines] == expected
    assert all("2 processes hold the model" in line for line in lines)
    assert all("ZeRO-3 partitions the model over 1 process(es)" in line
               for line in _evidence_off(_plan(recipe, overrides, stage=3, world=1)))


@pytest.mark.parametrize("stage, world", [(None, 1), (2, 1), (0, 1)])
def test_one_process_holding_the_whole_model_keeps_all_of_it(stage, world):
    assert _evidence_off(_plan("legal-mtp", [], stage, world)) == ()
