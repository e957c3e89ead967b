"""MoE behaviour for any TRL trainer: routing telemetry, auxiliary-loss-free balancing, sequence-wise aux loss.

    from workbench.moe.plugin import attach
    moe = attach(trainer, recipe.moe, tracker, output_dir)   # after the trainer is built; None for dense models

Plugs in as a `TrainerCallback` plus a wrapper around the trainer's `compute_loss`, so SFT, DPO, KTO and
ORPO all get it without subclassing. `moe.balance: aux_free` applies DeepSeek-V3's update (tech report
2.1.2) after every optimizer step, from the loads of the whole step (all micro-batches, all ranks):
`bias_i += gamma * sign(mean_load - load_i)`, per layer, in fp32. `moe.sparsity` (or a stage's `sparsity`) adds
the gate-entropy penalty of `workbench.moe.sparsity`, summed over MoE layers, to the loss the same way.

Every figure here (loads, balance, entropy, the sequence-wise loss, eval drift) counts real tokens only,
prompt tokens included, padding never (see `workbench.moe.routing`): padding is no work for an expert,
and how much of it a batch carries depends on batching, not on the data.
"""

from pathlib import Path

import numpy as np
import torch
from transformers import TrainerCallback

from workbench.moe.routing import RoutingRecorder, find_routers, js_divergence, load_stats
from workbench.moe.sparsity import GATE_FIGURES

LOAD_ARTIFACT = "moe/expert_load.npz"


def attach(trainer, cfg, tracker, output_dir: Path, stage_balances: tuple = (), stage_sparsity: tuple = ()):
    """`stage_balances`, `stage_sparsity`: the balance modes and sparsity weights `train.stages` switch to during the
    run (the callback's `balance` and `sparsity`)."""
    model = trainer.model
    modes = {cfg.balance, *(mode for mode in stage_balances if mode)}
    sparse = cfg.sparsity > 0 or any(weight for weight in stage_sparsity if weight)
    if not find_routers(model):
        from workbench.errors import WorkbenchError

        if modes != {"none"}:
            mode = next(m for m in modes if m != "none")
            raise WorkbenchError(f"moe.balance: {mode} needs DeepSeek-V3 routers (sigmoid scores with a "
                                 f"correction bias); this {model.config.model_type} model has none: set moe.balance: none")
        if sparse:
            raise WorkbenchError(f"moe.sparsity: the penalty acts on DeepSeek-V3 routers; this {model.config.model_type} "
                                 "model has none: set moe.sparsity: 0")
        return None
    if modes == {"none"} and not cfg.telemetry and not sparse:
        return None
    recorder = RoutingRecorder(model, seq_aux_alpha=cfg.seq_aux_alpha if "seq_aux" in modes else 0.0,
                               gate_threshold=cfg.gate_threshold)
    callback = MoeCallback(recorder, cfg, tracker, output_dir)
    trainer.add_callback(callback)
    if "seq_aux" in modes:
        trainer.compute_loss = _with_seq_aux(trainer.compute_loss, recorder, cfg.seq_aux_alpha, callback)
    if sparse:
        trainer.compute_loss = _with_sparsity(trainer.compute_loss, recorder, callback)
    return callback


def _with_sparsity(compute_loss, recorder: RoutingRecorder, callback):
    """Adds the sparsity weight x the gate-entropy penalty, summed over MoE layers, while the weight is > 0."""
    return _with_term(compute_loss, recorder.sparsity_terms, recorder.sparsity_losses,
                      lambda: recorder.sparsity_weight, callback.sparsity_values)


def _with_seq_aux(compute_loss, recorder: RoutingRecorder, alpha: float, callback):
    """Adds alpha x V3's sequence-wise balance loss, summed over MoE layers, while the balance is seq_aux (a stage
    may switch it off)."""
    return _with_term(compute_loss, recorder.seq_aux_terms, recorder.seq_aux_losses,
                      lambda: alpha if callback.balance == "seq_aux" else 0.0, callback.seq_aux_values)


def _with_term(compute_loss, pending: list, losses, weight, logged: list):
    """compute_loss plus weight() x the sum of `losses()` (one term per MoE layer of the forward), the added value
    appended to `logged`; nothing is added where the forward recorded no terms or the weight is 0. `pending` is the
    recorder's list the hooks fill (emptied first: a forward outside compute_loss leaves nothing behind)."""
    def wrapped(model, inputs, return_outputs=False, **kwargs):
        pending.clear()
        result = compute_loss(model, inputs, return_outputs=return_outputs, **kwargs)
        terms, scale = losses(), weight()
        if not terms or not scale:
            return result
        added = scale * torch.stack(terms).sum()
        logged.append(added.detach().float().item())
        if return_outputs:
            loss, outputs = result
            return loss + added.to(loss.dtype), outputs
        return result + added.to(result.dtype)

    return wrapped


def _all_reduce(tensor: torch.Tensor) -> torch.Tensor:
    """Sum across data-parallel ranks so every rank applies the same bias update."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(tensor)
    return tensor


def balance_bias_update(routers, loads: torch.Tensor, gamma: float) -> None:
    """DeepSeek-V3's aux-loss-free step: raise the bias of underloaded experts, lower overloaded ones."""
    with torch.no_grad():
        for (_, router), layer_loads in zip(routers, loads):  # layer_loads: (E,)
            bias = router.e_score_correction_bias
            direction = torch.sign(layer_loads.mean() - layer_loads).to(device=bias.device, dtype=torch.float32)
            bias.copy_(bias.float() + gamma * direction)


class MoeCallback(TrainerCallback):
    def __init__(self, recorder: RoutingRecorder, cfg, tracker, output_dir: Path):
        self.recorder, self.cfg, self.tracker, self.output_dir = recorder, cfg, tracker, output_dir
        self.balance = cfg.balance  # what applies now: train.stages may switch it per stage
        self.history: list[np.ndarray] = []  # per optimizer step: (layers, E) loads
        self.steps: list[int] = []
        self.window: list[torch.Tensor] = []  # loads since the last telemetry log
        self.entropy_window: list[tuple[torch.Tensor, torch.Tensor]] = []  # (entropy sums, real tokens) per step
        self.seq_aux_values: list[float] = []
        self.sparsity_values: list[float] = []
        recorder.sparsity_target = getattr(cfg, "sparsity_target", 0.0)
        self.sparsity = getattr(cfg, "sparsity", 0.0)  # what applies now: train.stages may switch it per stage
        self.eval_base: torch.Tensor | None = None
        self.eval_last: torch.Tensor | None = None
        for _, router in recorder.routers:  # the bias must stay fp32 whatever the model dtype
            router.e_score_correction_bias.data = router.e_score_correction_bias.data.float()

    @property
    def sparsity(self) -> float:
        return self.recorder.sparsity_weight

    @sparsity.setter
    def sparsity(self, weight: float) -> None:
        self.recorder.sparsity_weight = weight

    def on_step_end(self, args, state, control, **kwargs):
        bucket = self.recorder.take("train")
        loads = _all_reduce(bucket.loads)
        if self.balance == "aux_free":
            balance_bias_update(self.recorder.routers, loads, self.cfg.bias_update_speed)
        self.history.append(loads.float().cpu().numpy())
        self.steps.append(state.global_step)
        self.window.append(loads)
        self.entropy_window.append((torch.cat([bucket.entropy_sum[None], bucket.figure_sums]), bucket.tokens))
        if state.global_step % self.cfg.telemetry_every == 0 and state.is_world_process_zero:
            self._log_window(state.global_step)

    def _log_window(self, step: int) -> None:
        if not self.window or not self.cfg.telemetry:
            return
        loads = torch.stack(self.window).sum(0)
        stats = load_stats(loads)
        sums, tokens = (torch.stack(parts).sum(0) for parts in zip(*self.entropy_window))
        means = sums / tokens.clamp_min(1)  # (1 + figures, layers) per real token over the window, not step means
        figures = dict(zip(("router_entropy", *GATE_FIGURES), means))
        metrics = {}
        for i, layer in enumerate(self.recorder.layers):
            for name, values in stats.items():
                metrics[f"moe/layer{layer}/{name}"] = values[i].item()
            for name, values in figures.items():
                metrics[f"moe/layer{layer}/{name}"] = values[i].item()
            metrics[f"moe/layer{layer}/bias_abs_mean"] = (
                self.recorder.routers[i][1].e_score_correction_bias.abs().mean().item())
        for name, values in {**stats, **figures}.items():
            metrics[f"moe/mean/{name}"] = values.mean().item()
        if self.sparsity_values:
            metrics["moe/sparsity_loss"] = float(np.mean(self.sparsity_values))
            self.sparsity_values.clear()
        if self.seq_aux_values:
            metrics["moe/seq_aux_loss"] = float(np.mean(self.seq_aux_values))
            self.seq_aux_values.clear()
        self.tracker.log_metrics(metrics, step=step, raw=True)
        self.window.clear()
        self.entropy_window.clear()

    def on_evaluate(self, args, state, control, **kwargs):
        bucket = self.recorder.take("eval")
        loads = _all_reduce(bucket.loads)
        sums, tokens = _all_reduce(bucket.figure_sums.clone()), _all_reduce(bucket.tokens.clone())
        if loads.sum() == 0 or not state.is_world_process_zero:
            return
        if self.eval_base is None:
            self.eval_base = loads
        self.eval_last = loads
        drift = js_divergence(self.eval_base, loads)
        metrics = {f"moe/layer{layer}/eval_drift_js": drift[i].item() for i, layer in enumerate(self.recorder.layers)}
        metrics["moe/mean/eval_drift_js"] = drift.mean().item()
        eval_stats = load_stats(loads)
        metrics["moe/mean/eval_max_over_mean"] = eval_stats["max_over_mean"].mean().item()
        if tokens.sum() > 0 and self.cfg.telemetry:  # eval-split gate figures, real tokens of every eval forward
            for name, values in zip(GATE_FIGURES, sums / tokens.clamp_min(1)):
                metrics[f"moe/mean/eval_{name}"] = values.mean().item()
        self.tracker.log_metrics(metrics, step=state.global_step, raw=True)

    def on_train_end(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        self._log_window(state.global_step)
        self.save_artifact()

    def save_artifact(self) -> Path | None:
        if not self.history:
            return None
        path = self.output_dir / LOAD_ARTIFACT
        path.parent.mkdir(parents=True, exist_ok=True)
        extra = {}
        if self.eval_base is not None:
            extra = {"eval_before": self.eval_base.cpu().numpy(), "eval_after": self.eval_last.cpu().numpy()}
        biases = np.stack([r.e_score_correction_bias.detach().float().cpu().numpy() for _, r in self.recorder.routers])
        np.savez_compressed(path, loads=np.stack(self.history), steps=np.array(self.steps),
                            layers=np.array(self.recorder.layers), bias=biases, **extra)
        self.tracker.log_artifact(path, "moe")
        return path
