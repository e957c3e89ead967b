"""What `workbench finetune` tells a person: a header before training and a summary after it.

    from workbench.train.report import describe, summarize
    console.header(describe(run))        # recipe, method, model, trainable parameters, rows, steps, device, store
    summarize(run, seconds)              # eval loss first -> last, scores before -> after, routing, where to look

Everything here reads what the run already holds (the trainer's state, the recipe evals, the MoE callback,
the tracker); nothing is recomputed.
"""

import math

from workbench import console
from workbench.track.dashboard_data import run_url


def _params(n: int) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n:,}"


def _device() -> str:
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} x {torch.cuda.device_count()}"
    return f"CPU ({torch.get_num_threads()} threads)"


def _steps(run) -> str:
    train = run.recipe.train
    if train.max_steps > 0:
        return f"{train.max_steps} (train.max_steps)"
    per_epoch = math.ceil(len(run.trainer.train_dataset) / (train.batch_size * train.grad_accum))
    return f"{math.ceil(per_epoch * train.epochs)} ({train.epochs:g} epochs of {per_epoch} steps of " \
           f"{train.batch_size * train.grad_accum} rows)"


def describe(run) -> dict[str, str]:
    recipe, model = run.recipe, run.trainer.model
    # the model's own weights: not LoRA's, nor the trainable copies PEFT keeps of modules_to_save
    total = sum(p.numel() for n, p in model.named_parameters() if "lora_" not in n and ".modules_to_save." not in n)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    config = getattr(model, "config", None)
    experts = getattr(config, "n_routed_experts", None)
    shape = f", {experts} routed experts per MoE layer" if experts else ""
    base = f"run {run.base_model['from_run']}" if run.base_model.get("from_run") else run.base_model["name"]
    peft = recipe.peft
    adapters = ", ".join(f"{k} {v}" for k, v in (run.adapters or {}).items())
    method = recipe.method.name + (f", LoRA r{peft.r}: {adapters or ', '.join(peft.target_modules)}"
                                   + (f" (+ {', '.join(peft.modules_to_save)} in full)" if peft.modules_to_save else "")
                                   if peft.type == "lora" else ", full fine-tuning")
    rows = {"recipe": f"{recipe.name} ({recipe.description})" if recipe.description else recipe.name,
            "method": method, "model": f"{base} ({getattr(config, 'model_type', '?')}, {_params(total)} parameters{shape})",
            "trainable": f"{_params(trainable)} of {_params(total)} parameters ({trainable / max(total, 1):.1%})",
            "data": f"{len(run.trainer.train_dataset)} train / {len(run.trainer.eval_dataset or [])} eval rows "
                    f"from {recipe.data.train}",
            "steps": _steps(run), "device": _device(),
            "tracking": f"{run.tracker.uri}  (run {run.tracker.run_id})", "output": str(run.output_dir)}
    teacher = getattr(run.trainer, "teacher_model", None)
    if teacher is not None:
        size = sum(p.numel() for p in teacher.parameters())
        rows["teacher"] = f"{run.teacher} ({_params(size)} parameters, frozen)"
    if recipe.mtp.enabled:
        from workbench.model.mtp import mtp_layers

        size = sum(p.numel() for layer in mtp_layers(run.trainer.model) for p in layer.parameters())
        rows["mtp"] = (f"1 multi-token-prediction layer ({_params(size)} parameters), loss weight {recipe.mtp.weight:g}"
                       if size else "enabled, but no MTP layer is attached")
    if recipe.method.name == "grpo":
        m = recipe.method
        held = len(run.rewards.rows) if run.rewards is not None and run.rewards.active else 0
        rows["data"] = f"{len(run.trainer.train_dataset)} prompts from {recipe.data.train}, {held} held-out prompts"
        rows["rewards"] = (", ".join(f"{name} x{weight:g}" for name, weight in m.rewards.items())
                           + f"; {m.generations} completions of up to {m.max_new_tokens} tokens per prompt, "
                           + ("GSPO (sequence ratios)" if m.importance_sampling == "sequence" else "GRPO (token ratios)")
                           + f", routing replay {recipe.moe.routing_replay}")
    if recipe.train.expert_parallel > 1 and experts:
        n = recipe.train.expert_parallel
        rows["experts"] = (f"split over {n} processes (DeepSpeed AutoEP): {experts // n} of {experts} routed experts "
                           "per layer in each")
    if recipe.train.stages:
        rows["stages"] = ", ".join(f"{s.name} {s.share:g}" for s in recipe.train.stages) + " (share of the steps)"
    if console.log_path():
        rows["library log"] = f"{console.log_path()}  (warnings of the libraries; -v shows them here)"
    if run.resume_from:
        rows["resuming"] = run.resume_from
    for line in run.off:  # evidence a multi-process run does not produce, and why
        name, _, why = line.partition(": ")
        rows[name] = why
    return rows


def _eval_losses(run) -> list[float]:
    return [entry["eval_loss"] for entry in run.trainer.state.log_history if "eval_loss" in entry]


def _routing(run) -> str | None:
    if run.moe is None or not getattr(run.moe, "history", None):
        return None
    import numpy as np
    import torch

    from workbench.moe.routing import load_stats

    stats = load_stats(torch.from_numpy(np.stack(run.moe.history).sum(0)))  # (layers, E) over the whole run
    max_over_mean, starved = stats["max_over_mean"].mean().item(), stats["starved_share"].mean().item()
    balance = run.recipe.moe.balance
    if run.recipe.train.stages:
        balance += " (by stage: " + ", ".join(s.balance or run.recipe.moe.balance for s in run.recipe.train.stages) + ")"
    return (f"expert load max/mean {max_over_mean:.2f} (1.0 is even), {starved:.1%} of experts starved, "
            f"balance {balance}")


def _score_rows(evals) -> list[tuple[str, str, str, str]]:
    rows = []
    for name in sorted(set(evals.base_scores) | set(evals.tuned_scores)):
        before, after = evals.base_scores.get(name), evals.tuned_scores.get(name)
        change = "" if before is None or after is None else f"{after - before:+.3f}"
        test = evals.comparisons.get(name)
        if test is not None:
            change += console.sign_test(test.n_improved, test.n_worsened, test.p_value)
        rows.append((name, "-" if before is None else f"{before:.3f}", "-" if after is None else f"{after:.3f}", change))
    return rows


def summarize(run, seconds: float) -> None:
    say = console.say
    say("")
    say(f"Finished {run.recipe.name} ({run.recipe.method.name}) in {seconds / 60:.1f} min")
    losses = _eval_losses(run)
    if len(losses) >= 2:
        say(f"  held-out loss {losses[0]:.3f} -> {losses[-1]:.3f} ({len(losses)} evaluations)")
    kl = [(e["eval_kl_to_teacher"], e["eval_nll"]) for e in run.trainer.state.log_history if "eval_kl_to_teacher" in e]
    if len(kl) >= 2:
        say(f"  held-out KL to the teacher {kl[0][0]:.3f} -> {kl[-1][0]:.3f}, answer loss {kl[0][1]:.3f} -> {kl[-1][1]:.3f}")
    if run.evals is not None and (run.evals.base_scores or run.evals.tuned_scores):
        console.scores_table(_score_rows(run.evals))
    if run.evals is not None and run.evals.retention:
        say(f"  retention gate: {run.evals.retention}")
    if routing := _routing(run):
        say(f"  routing: {routing}")
    for line in run.off:
        say(f"  {line}")
    url = run_url(run.tracker.run.info.experiment_id, run.tracker.run_id)
    say(f"  see it: make mlflow, then {url}")
    say(f"          make dashboard, then http://127.0.0.1:8501/?page=compare&runs={run.tracker.run_id}")
    say(f"          workbench show {run.tracker.run_id}")
