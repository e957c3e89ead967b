"""Expert parallelism's set-up checks and DeepSpeed section, without starting DeepSpeed (the runs themselves are in
tests/scale/test_expert_parallel_cpu.py)."""

import json

import pytest

from workbench.scale import deepspeed as distributed
from workbench.recipe.load import load_recipe
from workbench.train.plan import check_references
from workbench.errors import WorkbenchError
from workbench.scale.expert_parallel import check_experts, check_world


class _Config:
    model_type = "deepseek_v3"

    def __init__(self, experts):
        self.n_routed_experts = experts


def _recipe(*overrides):
    return load_recipe("legal", ["train.deepspeed=zero2", *overrides])


def test_the_resolved_config_carries_autoep_with_the_models_preset():
    recipe = _recipe("train.expert_parallel=2")
    config = distributed.resolved_config(recipe, hidden_size=256, world=2, model_type="deepseek_v3")
    assert config["expert_parallel"]["enabled"] is True
    assert config["expert_parallel"]["autoep_size"] == 2 and config["expert_parallel"]["preset_model"] == "deepseek_v3"
    assert config["zero_optimization"]["stage"] == 2
    v2 = distributed.resolved_config(recipe, hidden_size=256, world=2, model_type="deepseek_v2")
    assert v2["expert_parallel"]["preset_model"] == "deepseek_v2"
    assert "expert_parallel" not in distributed.resolved_config(_recipe(), hidden_size=256, world=2)


def test_the_layer_pattern_finds_blocks_inside_a_peft_wrapper():
    import re

    pattern = re.compile(distributed.autoep_section(_recipe("train.expert_parallel=2"), "deepseek_v3")["moe_layer_pattern"])
    assert pattern.fullmatch("model.layers.3.mlp") and pattern.fullmatch("base_model.model.model.layers.3.mlp")
    assert not pattern.fullmatch("model.layers.3.mlp.experts") and not pattern.fullmatch("model.layers.3.self_attn")


def test_a_model_without_an_autoep_preset_is_refused_by_name():
    with pytest.raises(WorkbenchError, match="this model is 'mixtral'"):
        distributed.resolved_config(_recipe("train.expert_parallel=2"), hidden_size=256, world=2, model_type="mixtral")


@pytest.mark.parametrize("world, experts, n, expected", [
    ("3", 8, 2, "needs a multiple of 2 processes; it has 3"),
    ("1", 8, 2, "needs a multiple of 2 processes; it has 1"),
    ("6", 8, 3, "8 routed experts per layer cannot be split evenly over 3 processes; use one of 2, 4, 8"),
    ("2", None, 2, "has no routed experts to split"),
])
def test_the_job_and_the_model_must_split_evenly(monkeypatch, world, experts, n, expected):
    """The experts are checked by the plan (validate too), the launched processes at start-up."""
    monkeypatch.setenv("WORLD_SIZE", world)
    with pytest.raises(WorkbenchError, match="train.expert_parallel") as err:
        check_experts(_recipe(f"train.expert_parallel={n}"), _Config(experts))
        check_world(_recipe(f"train.expert_parallel={n}"))
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_an_even_split_passes(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    check_experts(_recipe("train.expert_parallel=4"), _Config(8))
    check_world(_recipe("train.expert_parallel=4"))


@pytest.mark.parametrize("stage, expected", [(0, "needs ZeRO stage 1 or 2 (DeepSpeed's stage-0"), (3, "out of ZeRO-3")])
def test_a_json_config_of_the_wrong_stage_is_refused(tmp_path, stage, expected):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"zero_optimization": {"stage": stage}, "optimizer": {"type": "AdamW", "params": {}}}))
    with pytest.raises(WorkbenchError, match="train.expert_parallel: 2 needs ZeRO stage"):
        try:
            check_references(load_recipe("legal", [f"train.deepspeed={path}", "train.expert_parallel=2"]))
        except WorkbenchError as exc:
            assert expected in str(exc)
            raise


def test_a_json_config_with_its_own_autoep_section_is_refused(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"zero_optimization": {"stage": 2},
                                "expert_parallel": {"enabled": True, "autoep_size": 4}}))
    with pytest.raises(WorkbenchError, match="remove the 'expert_parallel' section; set train.expert_parallel: N"):
        check_references(load_recipe("legal", [f"train.deepspeed={path}"]))


def test_a_json_config_without_an_optimizer_section_is_refused(tmp_path):
    """DeepSpeed puts expert weights in optimizer groups of their own only when it builds the optimizer itself."""
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"zero_optimization": {"stage": 2}}))
    with pytest.raises(WorkbenchError, match="needs the DeepSpeed config's own 'optimizer' section"):
        check_references(load_recipe("legal", [f"train.deepspeed={path}", "train.expert_parallel=2"]))


def test_a_run_without_lora_gets_whole_experts_back_even_when_they_are_frozen():
    """Whether the experts are gathered at the end follows what the run saves (whole weights or an adapter), not
    whether they trained: a full fine-tune with frozen experts still writes every expert into final/."""
    from workbench.recipe.schema import ModelConfig
    from workbench.model.lora import wrap
    from workbench.model.load import load_model
    from workbench.scale.expert_parallel import ExpertParallelCallback

    model, _ = load_model(ModelConfig())
    for name, param in model.named_parameters():
        param.requires_grad_(".mlp.experts." not in name)
    assert ExpertParallelCallback(model).saves_whole is True
    adapted, _ = wrap(model, load_recipe("legal").peft)
    callback = ExpertParallelCallback(adapted)
    assert callback.saves_whole is False and callback.expected == 3  # the three MoE blocks, found under PEFT too


def test_a_process_whose_autoep_rank_is_not_the_share_it_loaded_stops_in_one_line():
    """workbench.model.shards filled this process's rows for EP rank 0; DeepSpeed slicing as rank 1 would keep rows
    it never read. The callback compares the two when training starts."""
    from types import SimpleNamespace

    import torch

    from workbench.scale.expert_parallel import ExpertParallelCallback

    def fake(rank):
        model = torch.nn.Module()
        model.model = torch.nn.Module()
        model.model.layers = torch.nn.ModuleList([torch.nn.Module(), torch.nn.Module()])
        block = model.model.layers[1].mlp = torch.nn.Module()
        block._is_autoep_layer, block.ep_rank, block.ep_size = True, rank, 2
        model.expert_share = (0, 2, 0, 4)  # (rank, size, first, end) as load_expert_share records it
        return model

    callback = SimpleNamespace(expected=1, moe_callback=None, esft_selection=None)
    ExpertParallelCallback.on_train_begin(callback, None, None, None, model=fake(0))  # the same rank: goes on
    with pytest.raises(WorkbenchError, match=r"^train.expert_parallel: this process loaded routed experts 0..3 "
                                             r"\(expert-parallel rank 0 of 2\) but DeepSpeed AutoEP made it rank 1 "
                                             r"of 2 in model.layers.1.mlp$"):
        ExpertParallelCallback.on_train_begin(callback, None, None, None, model=fake(1))


def test_a_share_needs_the_checkpoint_on_local_disk():
    """An expert-parallel run reads each process's share from local shards: a hub id that is not downloaded is
    refused before a run opens, naming the download; ESFT (which loads whole) and EP 1 are not checked."""
    from types import SimpleNamespace

    from workbench.scale.expert_parallel import check_share_source

    remote = SimpleNamespace(is_adapter=False, weights_dir=None, weights="deepseek-ai/DeepSeek-V3")
    with pytest.raises(WorkbenchError, match=r"^model.name: under expert parallelism each process reads its share .* "
                                             r"`huggingface-cli download deepseek-ai/DeepSeek-V3` on every node first$"):
        check_share_source(load_recipe("legal", ["train.deepspeed=zero2", "train.expert_parallel=2"]), remote)
    check_share_source(load_recipe("legal", ["train.deepspeed=zero2", "train.expert_parallel=2", "moe.esft=gate",
                                             "peft.type=none"]), remote)
    check_share_source(load_recipe("legal"), remote)
