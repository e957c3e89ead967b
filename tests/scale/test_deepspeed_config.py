"""DeepSpeed configs: shipped ones pass DeepSpeed's own validator; conflicts with the recipe fail naming both keys."""

import json
import subprocess
import sys

import pytest

from workbench.scale import deepspeed as distributed
from workbench.recipe.load import load_recipe
from workbench.train.plan import check_references
from workbench.errors import WorkbenchError


@pytest.mark.parametrize("name", distributed.SHIPPED)
def test_shipped_config_resolves_and_deepspeed_accepts_it(name):
    recipe = load_recipe("legal", [f"train.deepspeed={name}", "train.batch_size=4", "train.grad_accum=2"])
    config = distributed.resolved_config(recipe, hidden_size=256, world=8)
    assert config["train_micro_batch_size_per_gpu"] == 4
    assert config["gradient_accumulation_steps"] == 2
    assert config["train_batch_size"] == 4 * 2 * 8
    assert config["optimizer"]["params"]["lr"] == recipe.train.lr
    assert config["bf16"]["enabled"] is False  # fp32 on this CPU machine (precision: auto)
    assert "auto" not in json.dumps(config)
    distributed.validate(config)  # DeepSpeed's DeepSpeedConfig parser


def test_offload_and_stage_are_read_from_the_config():
    config = distributed.load_config("zero3_offload")
    assert distributed.zero_stage(config) == 3
    assert distributed.offloads(config) == (True, True)
    assert distributed.offloads(distributed.load_config("zero2")) == (False, False)


def test_a_value_that_contradicts_the_recipe_names_both_keys(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"zero_optimization": {"stage": 2}, "train_micro_batch_size_per_gpu": 2}))
    with pytest.raises(WorkbenchError, match=r"train_micro_batch_size_per_gpu is 2 .* train.batch_size gives 8"):
        check_references(load_recipe("legal", [f"train.deepspeed={path}", "train.batch_size=8"]))


def test_explicit_values_that_agree_are_accepted(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"zero_optimization": {"stage": 2}, "train_micro_batch_size_per_gpu": 8,
                                "gradient_clipping": 1.0, "bf16": {"enabled": False}}))
    recipe = load_recipe("legal", [f"train.deepspeed={path}", "train.batch_size=8"])
    assert distributed.resolved_config(recipe, world=1)["gradient_clipping"] == 1.0


@pytest.mark.parametrize("overrides, key", [
    (["train.deepspeed=zero4"], "train.deepspeed: 'zero4'"),
    (["train.deepspeed=zero3", "model.quantize=nf4"], "model.quantize"),
    (["train.deepspeed=zero3", "moe.esft=gate", "peft.type=none", "peft.modules_to_save=[]", "train.weight_decay=0"],
     "moe.esft"),
])
def test_impossible_combinations_fail_in_one_line(overrides, key):
    out = subprocess.run([sys.executable, "-m", "workbench.cli", "validate", "legal", *overrides],
                         capture_output=True, text=True)
    assert out.returncode == 2, out.stderr
    assert key in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_a_scheduler_section_is_refused(tmp_path):
    path = tmp_path / "sched.json"
    path.write_text(json.dumps({"zero_optimization": {"stage": 2}, "scheduler": {"type": "WarmupLR"}}))
    with pytest.raises(WorkbenchError, match="scheduler"):
        check_references(load_recipe("legal", [f"train.deepspeed={path}"]))


def test_moe_blocks_are_found_for_the_zero3_leaf(tiny):
    model, _ = tiny
    assert [cls.__name__ for cls in distributed.moe_block_classes(model)] == ["DeepseekV3MoE"]
