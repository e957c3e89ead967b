"""`workbench estimate`: parameter counts of the real architectures, and model states that agree with DeepSpeed."""

import itertools
import json
import subprocess
import sys

import pytest

from workbench.recipe.load import load_recipe
from workbench.scale.estimate import GIB, deepspeed_estimate, model_states

N, LARGEST = 15_700_000_000, 550_000_000


@pytest.mark.parametrize("stage, offload_opt, offload_param, gpus, nodes", [
    (s, o, p, g, n) for (s, o, p), g, n in itertools.product(
        [(2, False, False), (2, True, False), (3, False, False), (3, True, False), (3, True, True)], [1, 8], [1, 4])
])
def test_full_finetune_model_states_equal_deepspeeds_estimator(stage, offload_opt, offload_param, gpus, nodes):
    gpu, host = model_states(N, N, LARGEST, stage, offload_opt, offload_param, gpus, nodes)
    ds_gpu, ds_host = deepspeed_estimate(N, LARGEST, stage, offload_opt, offload_param, gpus, nodes)
    assert sum(gpu.values()) == pytest.approx(ds_gpu, rel=1e-9, abs=8)  # DeepSpeed rounds to whole bytes
    assert sum(host.values()) == pytest.approx(ds_host, rel=1e-9, abs=8)


def test_lora_needs_less_than_a_full_finetune():
    full_gpu, full_host = model_states(N, N, LARGEST, 2, False, False, 8, 1)
    lora_gpu, lora_host = model_states(N, N // 1000, LARGEST, 2, False, False, 8, 1)
    assert sum(lora_gpu.values()) < sum(full_gpu.values()) / 2


def _estimate(*args):
    out = subprocess.run([sys.executable, "-m", "workbench.cli", "estimate", *args, "--json"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Warning" not in out.stdout + out.stderr, out.stderr[-2000:]  # the libraries' warnings stay out of sight
    text = "\n" + out.stdout
    return json.loads(text[text.index("\n{\n") + 1:])  # after DeepSpeed's start-up log lines


def test_v3_recipe_per_gpu_model_states_match_deepspeed_and_counts_match_the_paper():
    result = _estimate("deepseek-v3-legal", "--gpus", "8", "--nodes", "4")
    assert 670e9 < result["params_total"] < 672e9  # 671B without the MTP module (tech report)
    assert 37e9 < result["params_active"] < 38e9  # 37B activated per token
    assert result["zero_stage"] == 3 and result["offload_params"] and result["offload_optimizer"]
    assert result["model_states_per_gpu"] == result["deepspeed_per_gpu"]  # 4 bytes x the largest layer
    assert result["lora_adapters"] == {"attention": 61 * 5}
    assert result["fp8_checkpoint"] is True
    assert result["fits"] is True


def test_estimate_says_when_it_does_not_fit():
    result = _estimate("deepseek-v3-legal", "train.deepspeed=zero3", "--gpus", "8", "--nodes", "1", "--gpu-memory", "80")
    assert result["fits"] is False  # 671B x 2 bytes over 8 GPUs is 157 GiB each before anything else
    assert result["per_gpu"]["weights (16-bit), partition"] > 150 * GIB


def test_bad_gpu_count_is_a_one_line_error():
    out = subprocess.run([sys.executable, "-m", "workbench.cli", "estimate", "legal", "--gpus", "0"],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "--gpus" in out.stderr and "Traceback" not in out.stderr


def test_recipe_loads_for_estimate_without_weights():
    recipe = load_recipe("deepseek-v3-legal")
    assert recipe.model.architecture == "deepseek-ai/DeepSeek-V3"


def test_expert_parallel_splits_only_the_routed_experts():
    """deepseek-v3-legal on 4 x 8 GPUs: each GPU holds 1/N of the 653.9B routed weights, the rest whole; ZeRO-3's
    gathered layer is gone. The recipe's own key (deepseek-v3-legal-ep: 32) gives the same as the flag."""
    ep8 = _estimate("deepseek-v3-legal", "--gpus", "8", "--nodes", "4", "--expert-parallel", "8")
    ep32 = _estimate("deepseek-v3-legal-ep", "--gpus", "8", "--nodes", "4")
    assert ep32["expert_parallel"] == 32 and ep8["expert_parallel"] == 8
    assert ep8["zero_stage"] == ep32["zero_stage"] == 2 and ep8["recipe_zero_stage"] == 3
    routed, total = ep8["params_routed"], ep8["params_total"]
    assert 650e9 < routed < total
    for result, n in ((ep8, 8), (ep32, 32)):
        gpu = result["per_gpu"]
        assert gpu[f"routed expert weights (16-bit), {256 // n} of 256 per layer"] == 2 * routed / n
        assert gpu["weights (16-bit), dense + shared"] == 2 * (total - routed)
        assert "largest layer, gathered" not in gpu
        assert result["zero3_gathers"] == 4 * result["largest_layer_params"]
    assert ep8["fits_gpu"] is False and ep32["fits_gpu"] is True  # 191.7 GiB against 77.5 GiB per GPU of 80
    # each of a node's 8 processes reads the dense weights and 1/32 of the experts (workbench.model.shards): 559.6 GiB
    loading = ep32["per_host"]["loading (each process reads the dense weights and 1/32 of the routed experts)"]
    assert loading == 2 * ((total - routed) + routed / 32) * 8
    assert ep32["fits_host"] is True and ep32["fits"] is True
    assert ep8["per_gpu_total"] - ep32["per_gpu_total"] == pytest.approx(2 * routed * (1 / 8 - 1 / 32))


@pytest.mark.parametrize("flag, expected", [("3", "does not divide the 256 routed experts"),
                                            ("64", "does not divide the job's 32 GPUs"),
                                            ("0", "--expert-parallel must be >= 1")])
def test_bad_expert_parallel_sizes_are_one_line_errors(flag, expected):
    out = subprocess.run([sys.executable, "-m", "workbench.cli", "estimate", "deepseek-v3-legal", "--gpus", "8",
                          "--nodes", "4", "--expert-parallel", flag], capture_output=True, text=True, timeout=600)
    assert out.returncode == 2 and expected in out.stderr and "Traceback" not in out.stderr


# Each shipped real-model recipe on the node its header names (GPUs per node, nodes; 80 GiB GPUs; 1 TiB of CPU
# memory per node, the estimate's default): every one fits. The same V3 set-up with ESFT does not, and says why:
# ESFT profiles the routing with the whole model, so every process reads the whole 1.25 TiB BF16 checkpoint.
NODES = [("deepseek-v3-legal", 8, 4, None), ("deepseek-v3-legal-ep", 8, 4, None),
         ("moonlight-legal", 4, 1, None), ("moonlight-legal-ep", 8, 1, None), ("deepseek-v2-lite-legal", 2, 1, None),
         ("deepseek-v3-legal-ep moe.esft=gate peft.type=none", 8, 4,
          "loading (each process reads the whole model: ESFT profiles")]


@pytest.mark.parametrize("name, gpus, nodes, blocker", NODES, ids=[n[0] for n in NODES])
def test_each_real_recipe_on_the_node_it_names_counts_gpu_and_host_memory(name, gpus, nodes, blocker):
    from workbench.scale.estimate import HOST_MEMORY_GIB, estimate

    name, *overrides = name.split()
    result = estimate(load_recipe(name, overrides), gpus_per_node=gpus, nodes=nodes)
    assert result["per_gpu_total"] > 0 and result["per_host_total"] > 0  # both budgets are counted
    assert result["host_memory"] == HOST_MEMORY_GIB * GIB
    assert result["fits"] == (result["fits_gpu"] and result["fits_host"])
    if blocker is None:
        assert result["fits"] and result["why_not"] is None, result["why_not"]
    else:
        assert not result["fits_host"] and not result["fits"]
        assert blocker in result["why_not"].split("; per host ")[-1]  # the host's part names the loading
        roomy = estimate(load_recipe(name, overrides), gpus_per_node=gpus, nodes=nodes, host_memory_gib=16_384)
        assert roomy["fits_host"]  # with enough CPU memory per node the host fits: the loading was the reason
