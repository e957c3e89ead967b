"""Staged training: `train.stages` splits a run into phases that each train only some parameter groups.

    train:
      stages:
        - {name: experts, share: 0.25, train: [routed_experts, shared_experts], balance: none}
        - {name: joint, share: 0.5, train: all}
        - {name: router, share: 0.25, train: [router], lr_scale: 0.5}

Groups: attention (the MLA projections), router (`mlp.gate`), shared_experts, routed_experts, dense_mlp (the MLP
of the first dense layers), embeddings, lm_head, norms, and `all`. In a LoRA run a group means the adapters on
that group's modules (plus its `modules_to_save` copies); only what the run trains at all can be switched on.

Stage i covers optimizer steps [start_i, start_{i+1}) with start_i = round(total * sum of the earlier shares);
which stage a step is in depends on the step number alone, so a run resumed in the middle of a stage continues
it. At a boundary (before the stage's first step) the callback sets `requires_grad` on every parameter the run
trains: a frozen parameter then gets no gradient, and AdamW skips a parameter without one (no update, no weight
decay, its moment estimates untouched until it trains again). `lr_scale` multiplies the scheduler's learning
rate for the stage; `balance` overrides `moe.balance` for it (e.g. no aux-free bias updates while routing is
meant to stay fixed); `sparsity` overrides `moe.sparsity`, the weight of the gate-entropy penalty
(workbench.moe.sparsity), for it. The stage index is logged as `train/stage` at each boundary, and the boundaries as the
`train.stages` tag.
"""

import re

from transformers import TrainerCallback

from workbench.errors import WorkbenchError

GROUPS = ("attention", "router", "shared_experts", "routed_experts", "dense_mlp", "embeddings", "lm_head", "norms")
_PATTERNS = (  # first match wins; names may carry PEFT's prefixes and adapter suffixes
    ("attention", re.compile(r"\.self_attn\.")),
    ("router", re.compile(r"\.mlp\.gate\.")),
    ("shared_experts", re.compile(r"\.mlp\.shared_experts\.")),
    ("routed_experts", re.compile(r"\.mlp\.experts\.")),
    ("dense_mlp", re.compile(r"\.mlp\.")),
    ("embeddings", re.compile(r"embed_tokens")),
    ("lm_head", re.compile(r"lm_head")),
    ("norms", re.compile(r"norm")),
)


def group_of(name: str) -> str | None:
    for group, pattern in _PATTERNS:
        if pattern.search(name):
            return group
    return None


def trainable_groups(model) -> dict[str, int]:
    """{group: trainable tensors} of a model as the run will train it."""
    counts: dict[str, int] = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            group = group_of(name) or "other"
            counts[group] = counts.get(group, 0) + 1
    return counts


def check_groups(stages, available: dict[str, int]) -> None:
    """Every group a stage names must be trained by the run at all (one-line error otherwise)."""
    for i, stage in enumerate(stages):
        for group in stage.train:
            if group != "all" and not available.get(group):
                have = ", ".join(sorted(g for g, n in available.items() if n)) or "nothing"
                raise WorkbenchError(f"train.stages[{i}].train: '{group}' has no trainable parameters in this run "
                                     f"(it trains: {have}); check peft.target_modules and the moe.train_* keys")


def starts(stages, total_steps: int) -> list[int]:
    """The first optimizer step (0-based) of each stage."""
    edges, done = [], 0.0
    for stage in stages:
        edges.append(round(total_steps * done))
        done += stage.share
    return edges


def stage_at(edges: list[int], step: int) -> int:
    """The stage that optimizer step `step` (0-based: `state.global_step` before it runs) belongs to, given
    `starts(...)`."""
    return max(i for i, start in enumerate(edges) if step >= start)


class StageCallback(TrainerCallback):
    def __init__(self, stages, model, tracker, moe=None):
        self.stages, self.tracker, self.moe = stages, tracker, moe
        self.params = [(name, p, group_of(name)) for name, p in model.named_parameters() if p.requires_grad]
        check_groups(stages, trainable_groups(model))  # preflight checked a meta model; ESFT restricts the real one
        self.current: int | None = None
        self.scale = 1.0
        self.scheduler = self.optimizer = None
        self.edges = [0]  # the first step of each stage, set when training begins

    def on_train_begin(self, args, state, control, **kwargs):
        self.scheduler, self.optimizer = kwargs.get("lr_scheduler"), kwargs.get("optimizer")
        if any(stage.lr_scale != 1.0 for stage in self.stages):
            if not hasattr(self.scheduler, "lr_lambdas"):
                raise WorkbenchError("train.stages: lr_scale needs a LambdaLR schedule (train.lr_scheduler)")
            self.scheduler.lr_lambdas = [lambda step, f=f: f(step) * self.scale for f in self.scheduler.lr_lambdas]
        edges = starts(self.stages, state.max_steps)
        ends = edges[1:] + [state.max_steps]
        if state.is_world_process_zero:
            self.tracker.mlflow.set_tag("train.stages", ", ".join(
                f"{s.name}: steps {a + 1}-{b}" for s, a, b in zip(self.stages, edges, ends)))
            for stage, start, end in zip(self.stages, edges, ends):
                if end <= start:
                    print(f"warning: train.stages: '{stage.name}' gets no steps of this {state.max_steps}-step run "
                          f"(share {stage.share:g}); raise train.max_steps or its share")
        self.edges = edges
        self._enter(stage_at(edges, state.global_step), state)

    def on_step_begin(self, args, state, control, **kwargs):
        index = stage_at(self.edges, state.global_step)
        if index != self.current:
            self._enter(index, state)

    def _enter(self, index: int, state) -> None:
        stage = self.stages[index]
        on = set(GROUPS) if "all" in stage.train else set(stage.train)
        for _, param, group in self.params:
            param.requires_grad_("all" in stage.train or group in on)
        self.scale = stage.lr_scale
        if self.scheduler is not None and hasattr(self.scheduler, "lr_lambdas"):
            for group, base, factor in zip(self.optimizer.param_groups, self.scheduler.base_lrs, self.scheduler.lr_lambdas):
                group["lr"] = base * factor(self.scheduler.last_epoch)
            self.scheduler._last_lr = [group["lr"] for group in self.optimizer.param_groups]  # what the Trainer logs
        if self.moe is not None and stage.balance is not None:
            self.moe.balance = stage.balance
        elif self.moe is not None:
            self.moe.balance = self.moe.cfg.balance
        if self.moe is not None:
            self.moe.sparsity = self.moe.cfg.sparsity if stage.sparsity is None else stage.sparsity
        self.current = index
        if state.is_world_process_zero:
            self.tracker.log_metrics({"train/stage": index}, step=state.global_step, raw=True)
            trained = sum(p.numel() for _, p, g in self.params if g in on)
            print(f"stage {index + 1}/{len(self.stages)} '{stage.name}' from step {state.global_step + 1}: "
                  f"trains {', '.join(sorted(on & {g for _, _, g in self.params}))} ({trained:,} parameters)"
                  + (f", lr x{stage.lr_scale:g}" if stage.lr_scale != 1.0 else "")
                  + (f", balance {stage.balance}" if stage.balance else "")
                  + (f", sparsity {stage.sparsity:g}" if stage.sparsity is not None else ""))
