"""`workbench estimate`: parameter counts of the real architectures, and model states that agree with DeepSpeed."""

import itertools
import json
import subprocess
import sys

import pytest

from workbench.config import load_recipe
from workbench.estimate import GIB, deepspeed_estimate, model_states

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
