"""The checks of `make gpu-proof` (benchmarks/gpu_proof.py runs them, each group in its own process).

Each check takes the proof's `Context` and returns its figures, raises `Skip(reason)` or `Fail(reason)`; any other
exception is a failure with its first line. On CUDA the models are bf16 V3 layouts from benchmarks/gpu.py (~190M
parameters); in the dry run (`--dry`, CPU) the embedded presets in fp32. Every method trains through the workbench's
own builder, `build(make_plan(load_recipe(...)))`, into one MLflow sqlite file in the proof's folder, on the same 8
rows every step (a fixed batch: its loss must fall within a few steps whatever the method).
"""

import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class Skip(Exception):
    """The check cannot run here; the message says why."""


class Fail(Exception):
    """The check ran and found something wrong; the message says what, in one line."""


def require(ok: bool, reason: str) -> None:
    if not ok:
        raise Fail(reason)


@dataclass
class Context:
    out: Path
    dry: bool
    cuda: bool
    models: dict = field(default_factory=dict)  # role (base, mtp, student) -> preset name or model folder
    keep: dict = field(default_factory=dict)  # what one check hands to a later one in the same process

    @property
    def uri(self) -> str:
        return f"sqlite:///{self.out / 'mlflow.db'}"

    @property
    def precision(self) -> tuple[str, str]:  # (train.precision, model.dtype)
        return ("bf16", "bfloat16") if self.cuda else ("fp32", "float32")


def prepare_models(ctx: Context) -> None:
    """GPU: the proof's random-init bf16 models (benchmarks/gpu.py), saved once under <out>/models; dry: presets."""
    if not ctx.cuda:
        ctx.models = {"base": "deepseek-v3-tiny", "mtp": "deepseek-v3-tiny-mtp", "student": "deepseek-v3-tiny-student"}
        return
    from benchmarks import gpu

    configs = {"base": gpu.deepseek_v3_proof, "mtp": gpu.deepseek_v3_proof_mtp, "student": gpu.deepseek_v3_proof_student}
    ctx.models = {role: gpu.save_random_model(build(), ctx.out / "models" / f"proof-{role}") for role, build in
                  configs.items()}


# ---------------------------------------------------------------- training through the builder

def common_overrides(ctx: Context, slug: str, steps: int = 6) -> list[str]:
    """Every run: `steps` steps on the same rows (8 on GPU; 4 rows of at most 128 tokens in the dry run, which must
    fit CI's 2 cores), constant learning rate, bf16 and gradient checkpointing on GPU, no evals, samples or uploads."""
    precision, dtype = ctx.precision
    rows, length = (8, 256) if ctx.cuda else (4, 128)
    return [f"track.tracking_uri={ctx.uri}", "track.experiment=gpu-proof", f"track.run_name={slug}",
            f"train.output_dir={ctx.out / 'runs' / slug}", "track.log_model=false", f"train.max_steps={steps}",
            f"train.batch_size={rows}", "train.grad_accum=1", f"train.max_length={length}", "train.logging_steps=1",
            "train.eval_steps=100000", "train.save_steps=100000", "train.lr_scheduler=constant", "train.warmup_ratio=0",
            "train.gradient_checkpointing=true", f"train.precision={precision}", f"model.dtype={dtype}",
            f"data.max_rows={rows}", "data.eval_fraction=0", "eval.suite=null", "eval.samples=0"]


def history(ctx: Context, run_id: str, key: str) -> list[float]:
    """A metric's values in step order, read back from the MLflow store (not from the trainer's memory)."""
    import mlflow

    client = mlflow.MlflowClient(ctx.uri)
    return [m.value for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)]


def train(ctx: Context, slug: str, recipe: str, overrides: list[str], steps: int = 6):
    """One run through the workbench's builder; returns (run, figures) after checking what every method must show:
    the device and precision asked for, gradient checkpointing on, finite losses, grad norms and weights."""
    import torch

    from workbench.recipe.load import load_recipe
    from workbench.train.build import build
    from workbench.train.plan import make_plan

    plan = make_plan(load_recipe(recipe, common_overrides(ctx, slug, steps) + overrides))
    run = build(plan)
    try:
        start = time.perf_counter()
        run.train()
        seconds = time.perf_counter() - start
    finally:
        run.close()
    model, args = run.trainer.model, run.trainer.args
    trainable = [p for p in model.parameters() if p.requires_grad]
    losses = history(ctx, run.tracker.run_id, "train/loss")
    norms = history(ctx, run.tracker.run_id, "train/grad_norm")
    require(len(losses) == steps, f"{len(losses)} losses logged for {steps} steps")
    bad = [v for v in losses + norms if not math.isfinite(v)]
    require(not bad, f"non-finite loss or grad norm: {bad[:3]}")
    require(all(bool(torch.isfinite(p).all()) for p in trainable), "non-finite trained weights")
    want_bf16 = ctx.precision[0] == "bf16"
    require(bool(args.bf16) == want_bf16, f"trainer bf16={args.bf16}, expected {want_bf16}")
    require(bool(args.gradient_checkpointing), "gradient checkpointing is off")
    device = str(trainable[0].device) if trainable else "none"
    require(device.startswith("cuda") == ctx.cuda, f"trained on {device}")
    return run, {"loss_first": losses[0], "loss_last": losses[-1], "steps": steps, "train_s": round(seconds, 1),
                 "device": device, "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
                 "run_id": run.tracker.run_id}


def falls(figures: dict, what: str = "loss") -> dict:
    require(figures["loss_last"] < figures["loss_first"],
            f"{what} did not fall: {figures['loss_first']:.4f} -> {figures['loss_last']:.4f}")
    return figures


def sft(ctx):
    return falls(train(ctx, "sft", "legal", [f"model.name={ctx.models['base']}"])[1])


def preference(method: str, extra: list[str]):
    def check(ctx):
        # a full fine-tune beside the LoRA runs above: the reference is a frozen copy of the start
        overrides = ["model.from_run=null", f"model.name={ctx.models['base']}", "train.lr=5e-3", *extra]
        return falls(train(ctx, method, "legal-dpo", overrides)[1])
    return check


def grpo(ctx):
    """GRPO with routing replay. A fixed batch of prompts does not make a policy-gradient loss fall, so this checks
    that replay routed every scored token to the experts it used while sampled (moe/replay_applied = 1), and that
    the format reward (no digit in the answer) varies within groups, so the updates were not all zero."""
    run, figures = train(ctx, "grpo", "legal-grpo", [
        "model.from_run=null", f"model.name={ctx.models['base']}", "data.eval=null", "method.generations=4",
        "method.max_new_tokens=16", "moe.routing_replay=rollout", "method.rewards={math_answer: 1.0, format: 1.0}",
        "method.format_pattern=[^0-9]*"], steps=3)
    applied = history(ctx, figures["run_id"], "moe/replay_applied")
    require(bool(applied) and min(applied) == 1.0, f"routing replay applied to {applied} of the recorded routes")
    spread = history(ctx, figures["run_id"], "train/reward_std")
    return {**figures, "replay_applied": min(applied), "reward_std_max": max(spread) if spread else None,
            "router_agreement": history(ctx, figures["run_id"], "moe/router_agreement")[-1]}


def distill(ctx):
    overrides = [f"model.name={ctx.models['student']}", "teacher.from_run=null", f"teacher.name={ctx.models['base']}",
                 f"teacher.dtype={ctx.precision[1]}"]
    return falls(train(ctx, "distill", "legal-distill", overrides)[1])


def mtp(ctx):
    run, figures = train(ctx, "mtp", "legal-mtp", [f"model.name={ctx.models['mtp']}", "mtp.speculative_prompts=0",
                                                   "mtp.report=never"])
    head = history(ctx, figures["run_id"], "train/mtp/loss")
    require(len(head) >= 2 and head[-1] < head[0], f"the MTP head's loss did not fall: {head}")
    ctx.keep["mtp"] = (run.trainer.model, run.trainer.processing_class)
    return {**falls(figures), "mtp_loss_first": head[0], "mtp_loss_last": head[-1]}


def speculative(ctx):
    """Greedy speculative decoding with the MTP layer just trained, in the training dtype (bf16 on GPU), against
    plain greedy decoding of the same model: transformers' verification keeps the main model's choice, so the text
    must be identical; where bf16 makes it differ, this says on how many prompts."""
    from workbench.model.speculative import speculative_stats

    if "mtp" not in ctx.keep:
        raise Fail("no trained MTP model: the train/mtp check did not finish")
    model, tokenizer = ctx.keep["mtp"]
    rows = [json.loads(line) for line in open(ROOT / "data" / "legal" / "sft.jsonl")][100:108]  # not trained on
    prompts = [row["messages"][:-1] for row in rows][: 8 if ctx.cuda else 3]
    stats = speculative_stats(model, tokenizer, prompts, max_new_tokens=32 if ctx.cuda else 12)
    require(stats["identical"] == 1.0, f"speculative output differs from greedy on "
                                       f"{round((1 - stats['identical']) * len(prompts))} of {len(prompts)} prompts "
                                       f"(acceptance {stats['acceptance_rate']:.2f})")
    return {**stats, "dtype": str(next(model.parameters()).dtype).removeprefix("torch.")}


def stages(ctx):
    run, figures = train(ctx, "stages", "legal-staged", [f"model.name={ctx.models['base']}"], steps=8)
    phases = sorted(set(history(ctx, figures["run_id"], "train/stage")))
    require(phases == [0.0, 1.0, 2.0], f"phases logged: {phases}, expected 0, 1, 2")
    # the third phase adds its sparsity penalty (weight x gate entropy) to train/loss: the model's own loss is what
    # must fall, and the penalty must have been added there
    penalty = history(ctx, figures["run_id"], "moe/sparsity_loss")
    require(bool(penalty) and penalty[-1] > 0, "the sparsify phase logged no sparsity penalty")
    model_loss = figures["loss_last"] - penalty[-1]
    return falls({**figures, "phases": len(phases), "loss_last": model_loss, "sparsity_loss_last": penalty[-1]})


TRAIN = [("train/sft", sft),
         ("train/dpo", preference("dpo", ["peft.type=none", "method.reference=model"])),
         ("train/kto", preference("kto", ["method.name=kto", "data.train=data/legal/kto.jsonl", "peft.type=none",
                                          "method.reference=model"])),
         ("train/orpo", preference("orpo", ["method.name=orpo", "peft.type=none"])),
         ("train/grpo", grpo), ("train/distill", distill), ("train/mtp", mtp), ("speculative", speculative),
         ("train/stages", stages)]


# ---------------------------------------------------------------- kernels against eager

def relative_error(value, reference) -> float:
    """||value - reference|| / ||reference||, in fp64."""
    value, reference = value.double(), reference.double()
    return float((value - reference).norm() / reference.norm().clamp_min(1e-30))


def within(errors: dict, name: str) -> None:
    """The kernel must be as accurate as eager in the same dtype, both measured against an fp64 eager reference.
    Both round the same inputs and accumulate in fp32, so their errors come from the same roundings of outputs (bf16:
    2^-9 relative each, a few chained; fp32: 2^-24); a factor 2 leaves room for a different summation order, and
    the floor of 1e-5 for fp32 results that agree to the last bits. A wrong kernel (a dropped expert, a transposed
    weight, a lost gate) is off by O(1)."""
    for tensor, (kernel, eager) in errors.items():
        require(kernel <= 2 * eager + 1e-5, f"{name} {tensor}: error {kernel:.2e} against fp64, eager's {eager:.2e}")


def grouped_mm(ctx):
    """transformers' grouped_mm experts against its eager loop, forward and gradients (input and both weights), on
    routes from a real V3 router; fails where grouped_mm fell back to transformers' own loop instead of torch's
    kernel."""
    import torch
    from transformers.integrations import moe
    from transformers.models.deepseek_v3 import modeling_deepseek_v3 as v3

    config = _kernel_config(ctx, layers=2)
    device, dtype = ("cuda", torch.bfloat16) if ctx.cuda else ("cpu", torch.float32)
    tokens = 4096 if ctx.cuda else 512
    torch.manual_seed(0)
    experts, router = v3.DeepseekV3Experts(config).double(), v3.DeepseekV3TopkRouter(config).double()
    for weight in (experts.gate_up_proj, experts.down_proj, router.weight):
        torch.nn.init.normal_(weight, std=0.02)
    experts, router = experts.to(device), router.to(device)
    x = torch.randn(tokens, config.hidden_size, dtype=torch.float64, device=device)
    with torch.no_grad():
        _, weights, chosen = router(x)  # (tokens, k) gate weights and expert indices
    grad_out = torch.randn_like(x)
    calls = []
    can_use = moe._can_use_grouped_mm
    moe._can_use_grouped_mm = lambda *a: calls.append(can_use(*a)) or calls[-1]
    try:
        reference = _experts_pass(experts, "eager", torch.float64, x, chosen, weights, grad_out)
        eager = _experts_pass(experts, "eager", dtype, x, chosen, weights, grad_out)
        grouped = _experts_pass(experts, "grouped_mm", dtype, x, chosen, weights, grad_out)
    finally:
        moe._can_use_grouped_mm = can_use
    require(bool(calls), "grouped_mm never ran (the experts took another path)")
    require(all(calls), f"grouped_mm fell back to transformers' loop on {calls.count(False)} of {len(calls)} calls")
    errors = {k: (relative_error(grouped[k], reference[k]), relative_error(eager[k], reference[k])) for k in reference}
    within(errors, "grouped_mm")
    return {"dtype": str(dtype).removeprefix("torch."), "tokens": tokens, "experts": config.n_routed_experts,
            **{f"err_{k}": round(v[0], 8) for k, v in errors.items()},
            **{f"eager_err_{k}": round(v[1], 8) for k, v in errors.items()}}


def _experts_pass(experts, implementation, dtype, x, chosen, weights, grad_out) -> dict:
    import copy

    module = copy.deepcopy(experts).to(dtype)
    module.config = copy.copy(experts.config)
    module.config._experts_implementation = implementation
    inputs = x.detach().to(dtype).requires_grad_()
    out = module(inputs, chosen, weights.to(dtype))  # (tokens, hidden)
    out.backward(grad_out.to(dtype))
    return {"output": out.detach(), "grad_input": inputs.grad, "grad_gate_up": module.gate_up_proj.grad,
            "grad_down": module.down_proj.grad}


def sdpa(ctx):
    """PyTorch's scaled_dot_product_attention against eager attention in a V3 model of dense layers (MLA, no routing,
    so only attention differs): logits where the mask lets tokens in, the loss and every gradient, with one row
    padded; fails where sdpa was not called."""
    import torch
    from transformers import DeepseekV3ForCausalLM

    config = _kernel_config(ctx, layers=2)
    config.first_k_dense_replace = config.num_hidden_layers  # dense MLPs only
    device, dtype = ("cuda", torch.bfloat16) if ctx.cuda else ("cpu", torch.float32)
    torch.manual_seed(0)
    model = DeepseekV3ForCausalLM(config).double().to(device)
    batch, seq = (4, 512) if ctx.cuda else (2, 64)
    ids = torch.randint(3, config.vocab_size, (batch, seq), device=device)
    mask = torch.ones_like(ids)
    mask[-1, seq * 3 // 4:] = 0  # the last row ends in padding
    labels = ids.masked_fill(mask == 0, -100)
    calls = []
    original = torch.nn.functional.scaled_dot_product_attention

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    torch.nn.functional.scaled_dot_product_attention = counted
    try:
        reference = _attention_pass(model, "eager", torch.float64, ids, mask, labels)
        eager = _attention_pass(model, "eager", dtype, ids, mask, labels)
        require(not calls, "eager attention called sdpa")
        fast = _attention_pass(model, "sdpa", dtype, ids, mask, labels)
    finally:
        torch.nn.functional.scaled_dot_product_attention = original
    require(len(calls) >= config.num_hidden_layers, f"sdpa called {len(calls)} times for {config.num_hidden_layers} layers")
    errors = {k: (relative_error(fast[k], reference[k]), relative_error(eager[k], reference[k])) for k in reference}
    within(errors, "sdpa")
    return {"dtype": str(dtype).removeprefix("torch."), "tokens": int(mask.sum()),
            **{f"err_{k}": round(v[0], 8) for k, v in errors.items()},
            **{f"eager_err_{k}": round(v[1], 8) for k, v in errors.items()}}


def _attention_pass(model, implementation, dtype, ids, mask, labels) -> dict:
    import copy

    import torch

    module = copy.deepcopy(model).to(dtype)
    module.config._attn_implementation = implementation
    for layer in module.model.layers:
        layer.self_attn.config._attn_implementation = implementation
    out = module(input_ids=ids, attention_mask=mask, labels=labels)
    out.loss.backward()
    grads = torch.cat([p.grad.reshape(-1).double() for p in module.parameters() if p.grad is not None])
    return {"logits": out.logits[mask.bool()].detach(), "loss": out.loss.detach().reshape(1), "grads": grads}


def _kernel_config(ctx, layers: int):
    if ctx.cuda:
        from benchmarks.gpu import deepseek_v3_proof as build
    else:
        from workbench.model.presets import deepseek_v3_tiny as build
    config = build()
    config.num_hidden_layers = layers
    config._experts_implementation = "eager"
    return config


KERNELS = [("kernels/grouped_mm", grouped_mm), ("kernels/sdpa", sdpa)]


# ---------------------------------------------------------------- QLoRA, ZeRO, AutoEP, the benchmark

def qlora(ctx):
    """QLoRA: the base in 4-bit nf4 with LoRA on attention and every routed expert, then `workbench export`'s check
    of the merged model against what the trained one computed."""
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise Skip("bitsandbytes is not installed (carry wheels/<python>/bitsandbytes/)") from None
    from workbench.export.merge import export

    run, figures = train(ctx, "qlora", "legal", [
        f"model.name={ctx.models['base']}", "model.quantize=nf4", "peft.target_modules=[attention,routed_experts]",
        "peft.modules_to_save=[]"], steps=4)
    require(getattr(run.trainer.model.get_base_model(), "is_loaded_in_4bit", False), "the base is not 4-bit")
    import mlflow

    params = mlflow.MlflowClient(ctx.uri).get_run(figures["run_id"]).data.params
    routed = int(params.get("peft.adapted.routed_experts", 0))
    require(routed > 0, "no LoRA adapter on the routed experts")
    result = export(str(run.output_dir / "final"))
    return {**falls(figures), "adapted_routed_experts": routed, "export_max_abs_diff": result.max_abs_diff,
            "export_kind": result.kind}


def zero(stage: int):
    """ZeRO-`stage` with the shipped config (recipes/deepspeed/zero<stage>.json) in one process, over NCCL on GPU
    (gloo in the dry run). Each stage runs in its own process: DeepSpeed keeps its process groups for the process's life."""
    def check(ctx):
        import mlflow
        import torch.distributed as dist

        run, figures = train(ctx, f"zero{stage}", "legal", [f"model.name={ctx.models['base']}",
                                                            f"train.deepspeed=zero{stage}"], steps=4)
        backend = dist.get_backend() if dist.is_initialized() else "none"
        require(backend == ("nccl" if ctx.cuda else "gloo"), f"process group backend {backend}")
        tag = mlflow.MlflowClient(ctx.uri).get_run(figures["run_id"]).data.tags.get("deepspeed")
        require(tag == f"zero{stage} x 1 processes", f"deepspeed tag {tag!r}")
        return {**falls(figures), "backend": backend, "deepspeed": tag}
    return check


def autoep(ctx):
    """AutoEP splits every MoE layer's routed experts over the processes, one per GPU: 2 GPUs at least."""
    import torch

    if not ctx.cuda or torch.cuda.device_count() < 2:
        raise Skip(f"needs 2 GPUs (this machine: {torch.cuda.device_count() if ctx.cuda else 0}): AutoEP splits the "
                   "routed experts over >= 2 processes, one per GPU (NCCL takes one process per device)")
    slug = "autoep"
    overrides = common_overrides(ctx, slug, steps=4) + [f"model.name={ctx.models['base']}", "train.deepspeed=zero2",
                                                        "train.expert_parallel=2", "peft.target_modules=[attention]"]
    # torch's own launcher as a module: the node's torch lives outside the environment, and so does its `torchrun`
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "workbench.cli",
                          "finetune", "legal", *overrides],
                         capture_output=True, text=True, cwd=ROOT, timeout=600)
    require(out.returncode == 0, f"exit {out.returncode}: {(out.stderr.strip().splitlines() or [''])[-1][:200]}")
    run_id = out.stdout.strip().splitlines()[-1].split()[0].removeprefix("run_id=")
    losses = history(ctx, run_id, "train/loss")
    return falls({"loss_first": losses[0], "loss_last": losses[-1], "steps": len(losses), "run_id": run_id})


def bench(ctx):
    """`bench.py --gpu` for a short window: tokens/s and MFU against a bf16 matmul's TFLOP/s measured in the same
    process as each run (benchmarks/workloads.py)."""
    steps = int(os.environ.get("GPU_PROOF_BENCH_STEPS", "10"))
    report = ctx.out / "bench.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench.py"), "--gpu", "--steps", str(steps), "--warmup", "2",
           "--repeats", "1", "--no-extras", "--no-mlflow", "--out", str(report)]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=900)
    (ctx.out / "logs" / "bench.log").write_text(out.stdout + out.stderr)
    require(out.returncode == 0, f"bench.py exit {out.returncode}: {(out.stderr.strip().splitlines() or [''])[-1][:200]}")
    summary = json.loads(report.read_text())["summary"]
    figures = {}
    for variant, row in summary.items():
        if "tokens_per_s" in row:
            require(0 < row["mfu"] <= 1, f"{variant}: MFU {row['mfu']:.3f} is not a fraction of the measured peak")
            figures[variant] = {"tokens_per_s": round(row["tokens_per_s"]), "mfu": round(row["mfu"], 4),
                                "model_tflops_per_s": round(row["model_tflops_per_s"], 1),
                                "gpu_peak_mem_gb": round(row.get("gpu_peak_mem_gb") or 0, 1)}
    require("workbench" in figures, "no workbench row in bench.py's summary")
    peak = summary["workbench"]["peak_flops"]
    return {"matmul_peak_tflops": round(peak / 1e12, 1), "steps": steps, **figures}


# group -> checks run in one process, in order; what a check needs that this machine may lack, checked by the parent
GROUPS = {"train": TRAIN, "kernels": KERNELS, "qlora": [("qlora", qlora)],
          "zero2": [("zero/zero2", zero(2))], "zero3": [("zero/zero3", zero(3))], "autoep": [("autoep", autoep)],
          "bench": [("bench", bench)]}
# Dry-run skips that are not about CUDA: ZeRO runs on CPU (gloo), but a new environment first compiles DeepSpeed's
# CPU ops (fused Adam, shared-memory comm): 2-4 minutes on 2 cores, past the dry run's budget. `--zero` runs them.
_ZERO_DRY = ("the dry run's new environment would first compile DeepSpeed's CPU ops (2-4 min on 2 cores); "
             "`make gpu-proof DRY=1 ZERO=1` runs it (gloo), as tests/scale/test_deepspeed_cpu.py does")
DRY_OPT_IN = {"zero2": _ZERO_DRY, "zero3": _ZERO_DRY}
NEEDS_CUDA = {"qlora": "bitsandbytes' 4-bit kernels", "autoep": "2 GPUs, one process each",
              "bench": "bench.py --gpu runs the ~1B model in bf16"}
