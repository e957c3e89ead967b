"""Expert parallelism for real on CPU: DeepSpeed AutoEP with gloo, ranks launched by torchrun as on a GPU node.

Each recipe runs once in a single process without DeepSpeed and once on two ranks with `train.expert_parallel: 2`
(ZeRO-2, each rank holding 4 of the 8 routed experts per layer). Batches are not grouped by length (that sampler's
mega-batches depend on the number of processes), so both runs see the same rows at every step: micro-batch 4 on
each of two ranks against batch 8 in one process.
"""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

SCALE = Path(__file__).parent
STEPS = 4
COMMON = ["train.max_steps=4", "train.logging_steps=1", "train.eval_steps=1000", "train.save_steps=2",
          "data.max_rows=96", "train.group_by_length=false", "moe.telemetry_every=1"]
EP = ["train.batch_size=4", "train.deepspeed=zero2", "train.expert_parallel=2"]
FULL = ["peft.type=none", "moe.balance=aux_free", "moe.bias_update_speed=0.01", "train.lr=1e-3"]
LOSS_TOL = 0.01  # the bound; measured: equal to 5 decimals at every step
LOGIT_TOL = 1e-4


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    env["OMP_NUM_THREADS"] = "1"
    return env


def _port() -> str:
    with socket.socket() as sock:  # a free port for the rendezvous (torchrun's port 0 is not passed to workers)
        sock.bind(("127.0.0.1", 0))
        return str(sock.getsockname()[1])


def _torchrun(ranks: int, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    torchrun = Path(sys.executable).parent / "torchrun"
    return subprocess.run([str(torchrun), "--nproc_per_node", str(ranks), "--master_port", _port(), *args],
                          capture_output=True, text=True, env=_env(), timeout=1200, cwd=cwd)


def _finetune(tmp: Path, recipe: str, name: str, extra: list[str], ranks: int = 1, resume: bool = False) -> str:
    args = [recipe, *COMMON, *extra, f"track.tracking_uri=sqlite:///{tmp / 'mlflow.db'}", f"track.run_name={name}",
            f"train.output_dir={tmp / name}", *(["--resume"] if resume else [])]
    if ranks == 1:
        out = subprocess.run([sys.executable, "-m", "workbench.cli", "finetune", *args], capture_output=True, text=True,
                             env=_env() | {"OMP_NUM_THREADS": "2"}, timeout=1200, cwd=tmp)
    else:
        out = _torchrun(ranks, "-m", "workbench.cli", "finetune", *args, cwd=tmp)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    return out.stdout.strip().splitlines()[-1].split()[0].removeprefix("run_id=")


def _losses(tmp: Path, run_id: str) -> list[float]:
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp / 'mlflow.db'}")
    by_step = {m.step: m.value for m in client.get_metric_history(run_id, "train/loss")}  # a resumed step: latest
    return [by_step[step] for step in sorted(by_step)]


def _run(tmp: Path, run_id: str):
    import mlflow

    return mlflow.MlflowClient(f"sqlite:///{tmp / 'mlflow.db'}").get_run(run_id)


def _assert_same_losses(single: list[float], parallel: list[float]) -> None:
    assert len(single) == len(parallel) == STEPS
    for a, b in zip(single, parallel):
        assert abs(a - b) <= LOSS_TOL * a, (single, parallel)
    assert parallel[-1] < parallel[0]  # it learned


def _probe_logits(model, tokenizer):
    import torch

    ids = tokenizer("The tenant must give written notice before ending the lease.", return_tensors="pt").input_ids
    with torch.no_grad():
        return model(ids).logits


@pytest.mark.slow
@pytest.mark.parametrize("world,ep", [(2, 2), (4, 2), (4, 4)])
def test_autoep_blocks_route_count_and_restore_like_transformers(tmp_path, world, ep):
    """Loss, padding-free expert loads summed over ranks, every parameter's gradient against one process, and the
    restored layout, per rank (tests/scale/ep_checks.py); with 4 ranks and EP 2 there are two expert-parallel
    groups, each gathering its own experts (and the experts' gradients are reduced over the two groups)."""
    out = _torchrun(world, str(SCALE / "ep_checks.py"), str(ep), cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert out.stdout.count(": ok (") == world and out.stdout.count("gradients of 63 tensors agree") == world


@pytest.mark.slow
def test_lora_under_expert_parallelism_trains_like_one_process(tmp_path):
    """legal (LoRA on attention, the routed experts frozen): the losses of one process, an adapter that reloads."""
    from workbench.model.load import load_final

    single_id = _finetune(tmp_path, "legal", "single", ["train.batch_size=8"])
    ep_id = _finetune(tmp_path, "legal", "ep", EP, ranks=2)
    _assert_same_losses(_losses(tmp_path, single_id), _losses(tmp_path, ep_id))

    run = _run(tmp_path, ep_id)
    assert run.data.tags["deepspeed"] == "zero2 x 2 processes"
    assert run.data.tags["expert_parallel"] == "2 (AutoEP: 4 of 8 routed experts per process)"
    assert run.data.tags["expert_parallel.loading"] == "share: 4 of 8 experts per process"  # workbench.model.shards
    single_moe = _run(tmp_path, single_id).data.metrics["moe/mean/max_over_mean"]
    assert run.data.metrics["moe/mean/max_over_mean"] == pytest.approx(single_moe, rel=1e-6)  # loads of every rank

    (model, tokenizer), (reference, _) = load_final(tmp_path / "ep" / "final"), load_final(tmp_path / "single" / "final")
    assert (_probe_logits(model, tokenizer) - _probe_logits(reference, tokenizer)).abs().max().item() < LOGIT_TOL


@pytest.mark.slow
def test_full_fine_tune_with_aux_free_bias_killed_and_resumed_matches_one_process(tmp_path):
    """Experts, router and the rest trained, aux-free balancing on: killed after step 3 (checkpoint at 2), resumed
    on two ranks, it ends with one process's losses, bias and weights; plain transformers loads the result."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    single_id = _finetune(tmp_path, "legal", "single", [*FULL, "train.batch_size=8"])
    name, overrides = "ep", [*FULL, *EP]
    killed = _torchrun(2, str(SCALE / "killed_run.py"), "3", "legal", *COMMON, *overrides,
                       f"track.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}", f"track.run_name={name}",
                       f"train.output_dir={tmp_path / name}", cwd=tmp_path)
    assert killed.returncode == 0, killed.stderr[-3000:]
    assert not (tmp_path / name / "final").exists() and (tmp_path / name / "checkpoint-2").is_dir()
    ep_id = _finetune(tmp_path, "legal", name, overrides, ranks=2, resume=True)
    _assert_same_losses(_losses(tmp_path, single_id), _losses(tmp_path, ep_id))

    single_bias = load_file(tmp_path / "single" / "final" / "router_bias.safetensors")
    ep_bias = load_file(tmp_path / name / "final" / "router_bias.safetensors")
    assert set(single_bias) == set(ep_bias) and len(ep_bias) == 3
    assert all(torch.equal(single_bias[k], ep_bias[k]) for k in ep_bias)  # the same sign steps from the same loads
    assert max(v.abs().max().item() for v in ep_bias.values()) > 0  # it did move

    # the checkpoint the run resumed from holds transformers' layout, every expert gathered (not rank 0's slice)
    at_two = AutoModelForCausalLM.from_pretrained(tmp_path / name / "checkpoint-2")
    single_at_two = AutoModelForCausalLM.from_pretrained(tmp_path / "single" / "checkpoint-2")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / name / "final")
    assert (_probe_logits(at_two, tokenizer) - _probe_logits(single_at_two, tokenizer)).abs().max().item() < LOGIT_TOL

    model = AutoModelForCausalLM.from_pretrained(tmp_path / name / "final")
    reference = AutoModelForCausalLM.from_pretrained(tmp_path / "single" / "final")
    assert torch.equal(model.model.layers[1].mlp.gate.e_score_correction_bias,
                       ep_bias["model.layers.1.mlp.gate.e_score_correction_bias"])
    assert (_probe_logits(model, tokenizer) - _probe_logits(reference, tokenizer)).abs().max().item() < LOGIT_TOL


@pytest.mark.slow
def test_full_esft_under_expert_parallelism_trains_only_the_selected_experts(tmp_path):
    """legal-esft: each rank masks the gradients of its own slice; the patch equals one process's."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    single_id = _finetune(tmp_path, "legal-esft", "single", ["train.batch_size=8"])
    ep_id = _finetune(tmp_path, "legal-esft", "ep", EP, ranks=2)
    _assert_same_losses(_losses(tmp_path, single_id), _losses(tmp_path, ep_id))
    # ESFT profiles the routing with the whole model before DeepSpeed starts: every rank loads it all, and says so
    assert _run(tmp_path, ep_id).data.tags["expert_parallel.loading"] == (
        "whole: ESFT profiles the routing with the whole model before DeepSpeed starts")
    single = load_file(tmp_path / "single" / "final" / "expert_patch.safetensors")
    patch = load_file(tmp_path / "ep" / "final" / "expert_patch.safetensors")
    assert sorted(patch) == sorted(single) and patch
    assert max((patch[k] - single[k]).abs().max().item() for k in patch) < 1e-4

    from workbench.recipe.schema import ModelConfig
    from workbench.model.load import load_model

    base, _ = load_model(ModelConfig())
    tuned = AutoModelForCausalLM.from_pretrained(tmp_path / "ep" / "final")
    selected = {(int(k.split(".")[2]), int(k.split(".")[-1])) for k in patch}
    for layer in (1, 2, 3):
        moved = (tuned.model.layers[layer].mlp.experts.down_proj - base.model.layers[layer].mlp.experts.down_proj)
        for expert in range(8):
            changed = moved[expert].abs().max().item() > 0
            assert changed == ((layer, expert) in selected), (layer, expert)
