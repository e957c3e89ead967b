"""Reinforcement learning with verifiable rewards: TRL's `GRPOTrainer` (GRPO, or GSPO with sequence-level ratios).

    method: {name: grpo, generations: 4, max_new_tokens: 32, temperature: 1.0, beta: 0.0,
             importance_sampling: token, iterations: 1, rewards: {math_answer: 1.0, format: 0.1}}
    moe: {routing_replay: rollout}

Rows are `{"prompt": ..., <the fields the rewards read>}` (see `workbench.evaluate.rewards`). What this module adds to
TRL's trainer, and why:
- The router auxiliary loss is 0. TRL's `router_aux_loss_coef=None` means "the model config's value", a
  Mixtral-style softmax balance loss; DeepSeek-V3's config declares none, so it is off only by accident, and a
  model config that sets one would switch it on. A run that wants balancing sets `moe.balance: seq_aux`
  (V3's own sequence-wise loss) or `aux_free` (bias updates after each optimizer step, never between a
  rollout and its scoring: the plugin's update runs in `on_step_end`).
- Routing replay and routing agreement (`workbench.moe.replay`): the experts each token used while its
  completion was sampled travel with the batch (`rollout_routing`, through TRL's shuffle and split) into
  every forward that scores it: old log-probs, the reference, each iteration's and micro-batch's training
  forward. With `moe.routing_replay: rollout` they are used there (`moe/replay_applied`: the expert modules
  received them); either way the training forwards log `moe/router_agreement`, how often the router's own
  choice matches the rollout's. A recording that does not fit its batch stops a replay run (WorkbenchError
  naming moe.routing_replay); without replay it is counted in `moe/replay_skipped`, logged at every log.
- Sample completions with their rewards, as `completions.jsonl` (an MLflow artifact at the end).
"""

import json
from pathlib import Path

import torch
from trl import GRPOConfig, GRPOTrainer

from workbench.errors import WorkbenchError
from workbench.train.methods.common import shared_args

ROUTING_KEY = "rollout_routing"


class WorkbenchGRPOTrainer(GRPOTrainer):
    def __init__(self, *args, routing_replay: str = "none", samples_per_log: int = 8, reference=None,
                 beta: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        if reference is not None:
            self._install_reference(reference, beta)
        from workbench.moe.replay import RolloutRouting
        from workbench.moe.routing import find_routers

        self.routing = None  # vLLM's experts are not visible here: nothing is measured, nothing is logged
        if routing_replay != "none" or (find_routers(self.model) and not self.use_vllm):
            self.routing = RolloutRouting(self.model, replay=routing_replay == "rollout")
        self._rollout_layout = None
        self.samples_per_log = samples_per_log
        self.raw_metrics = None  # set by the run: logs `moe/...` names as they are (tracker.log_metrics raw)
        self._generations = self._written = 0  # rollout batches made / the last one written to completions.jsonl
        if self.routing is not None and self.ref_model is not None:
            self.routing.also(self.accelerator.unwrap_model(self.ref_model))

    def _install_reference(self, reference, beta: float) -> None:
        """A full fine-tune's KL reference: the model as it starts (a frozen copy), installed the way TRL installs
        its own. TRL would build one from `config.name_or_path`, which for a model from a run (a LoRA adapter merged
        into its base) names the base, not the model being tuned."""
        from trl.trainer.grpo_trainer import add_fused_lm_head, disable_dropout_in_model
        from trl.models import prepare_deepspeed

        self.beta = beta
        if self.args.disable_dropout:
            disable_dropout_in_model(reference)
        add_fused_lm_head(reference, temperature=self.temperature, cast_lm_head_to_fp32=self.args.cast_lm_head_to_fp32)
        self.ref_model = (prepare_deepspeed(reference, self.accelerator) if self.is_deepspeed_enabled
                          else self.accelerator.prepare_model(reference, evaluation_mode=True))

    # generation: record the experts, lay them out like the batch TRL builds next
    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        from workbench.moe.replay import RoutingLayoutError

        if self.routing is None or self.use_vllm:
            return super()._generate_single_turn(prompt_ids, images, multimodal_fields, num_generations, has_tool_images)
        with self.routing.recording():
            completion_ids, logprobs = super()._generate_single_turn(prompt_ids, images, multimodal_fields,
                                                                     num_generations, has_tool_images)
        try:
            self._rollout_layout = self.routing.layout(prompt_ids, completion_ids, self.pad_to_multiple_of)
        except RoutingLayoutError as err:
            self._rollout_layout = None
            self._layout_misfit(str(err))
        return completion_ids, logprobs

    def _layout_misfit(self, why: str) -> None:
        """A rollout whose recorded experts do not fit its batch: a replay run stops; a measuring run counts it
        (`moe/replay_skipped`), so a batch without agreement is reported, never silently left out."""
        if self.routing.replay:
            raise WorkbenchError(f"moe.routing_replay: {why}, so the update cannot be routed to the rollout's "
                                 "experts; set moe.routing_replay: none to train without replay")
        self.routing.skipped += 1

    def _generate_and_score_completions(self, inputs):
        self._rollout_layout = None
        if self.model.training:
            self._generations += 1
        output = super()._generate_and_score_completions(inputs)  # old / reference log-probs use the layout
        layout, self._rollout_layout = self._rollout_layout, None
        expected = (output["prompt_ids"].shape[0], output["prompt_ids"].shape[1] + output["completion_ids"].shape[1])
        if layout is not None and tuple(layout.shape[:2]) != expected:
            self._layout_misfit(f"the recorded layout covers {tuple(layout.shape[:2])} tokens, the batch {expected}")
        elif layout is not None:
            output[ROUTING_KEY] = layout.to(output["prompt_ids"].device)
        return output

    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, batch_size=None,
                                           **kwargs):
        layout = self._scoring_layout if getattr(self, "_scoring_layout", None) is not None else self._rollout_layout
        if layout is not None and tuple(layout.shape[:2]) != tuple(input_ids.shape):
            self._layout_misfit(f"the recorded layout covers {tuple(layout.shape[:2])} tokens, the forward "
                                f"{tuple(input_ids.shape)}")
            layout = self._scoring_layout = self._rollout_layout = None  # counted once, not once per forward
        if self.routing is None or layout is None:  # no recording: a misfit already stopped or counted above
            return super()._get_per_token_logps_and_entropies(model, input_ids, attention_mask, logits_to_keep,
                                                              batch_size=batch_size, **kwargs)
        if any(value is not None for key, value in kwargs.items() if key not in ("compute_entropy", "compute_aux_loss")):
            raise NotImplementedError("routing replay covers text-only batches")
        size = batch_size or input_ids.size(0)
        if size >= input_ids.size(0) and torch.is_grad_enabled():
            # the update's forward: the layout stays until training_step's backward is done (checkpointing
            # recomputes this forward inside backward, and it must route the same way)
            self.routing.hold(layout.to(input_ids.device))
            self.routing.counting = True
            try:
                return super()._get_per_token_logps_and_entropies(model, input_ids, attention_mask, logits_to_keep,
                                                                  batch_size=size, **kwargs)
            finally:
                self.routing.counting = False
        logps, entropies, aux = [], [], []
        for start in range(0, input_ids.size(0), size):  # one chunk per forward, each with its rows' experts
            end = start + size
            with self.routing.active(layout[start:end].to(input_ids.device)):
                chunk = super()._get_per_token_logps_and_entropies(model, input_ids[start:end],
                                                                   attention_mask[start:end], logits_to_keep,
                                                                   batch_size=size, **kwargs)
            logps.append(chunk[0]), entropies.append(chunk[1]), aux.append(chunk[2])
        return (torch.cat(logps), None if entropies[0] is None else torch.cat(entropies),
                None if aux[0] is None else torch.stack(aux).mean())

    def _compute_loss(self, model, inputs):
        self._scoring_layout = inputs.get(ROUTING_KEY)
        try:
            return super()._compute_loss(model, inputs)
        finally:
            self._scoring_layout = None
            if self.routing is not None and not getattr(self, "_in_step", False):
                self.routing.release()  # no backward follows here (evaluation): nothing may keep the layout

    def training_step(self, model, inputs, num_items_in_batch):
        self._in_step = True
        try:
            return super().training_step(model, inputs, num_items_in_batch)
        finally:
            self._in_step = False
            if self.routing is not None:
                self.routing.release()

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        training = self.model.training
        super().log(logs, start_time)
        if not training:
            return
        agreement = self.routing.take_agreement() if self.routing is not None else {}  # every rank: an all-reduce
        if not self.accelerator.is_main_process:
            return
        if agreement and self.raw_metrics is not None:
            self.raw_metrics(agreement, self.state.global_step)
        self._write_samples()

    def _write_samples(self) -> None:
        """The newest generation's first few completions with their rewards, appended to completions.jsonl
        (once per rollout batch: several updates per batch log the same samples only once)."""
        prompts, completions = list(self._logs["prompt"]), list(self._logs["completion"])
        if not prompts or self._written == self._generations:
            return
        self._written = self._generations
        rewards = {name: list(values) for name, values in self._logs["rewards"].items()}
        advantages = list(self._logs["advantages"])
        with open(self.samples_path, "a", encoding="utf-8") as out:
            for i in range(min(self.samples_per_log, len(prompts))):
                out.write(json.dumps({"step": self.state.global_step, "prompt": _text(prompts[i]),
                                      "completion": _text(completions[i]),
                                      "rewards": {name: values[i] for name, values in rewards.items()},
                                      "advantage": advantages[i] if i < len(advantages) else None}) + "\n")

    def train(self, resume_from_checkpoint=None, **kwargs):
        if resume_from_checkpoint and self.accelerator.is_main_process and self.samples_path.is_file():
            # the steps after the checkpoint run again; a line cut off by the crash is dropped
            step = int(Path(resume_from_checkpoint).name.rpartition("-")[2])
            kept = []
            for line in self.samples_path.read_text(encoding="utf-8").splitlines():
                try:
                    if json.loads(line)["step"] <= step:
                        kept.append(line)
                except (ValueError, KeyError, TypeError):
                    continue
            self.samples_path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
        return super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)

    @property
    def samples_path(self) -> Path:
        return Path(self.args.output_dir) / "completions.jsonl"


def _text(value) -> str:
    if isinstance(value, list):
        return "\n".join(f"{m.get('role', '')}: {m.get('content', '')}" for m in value if isinstance(m, dict))
    return str(value)


def build_trainer(recipe, model, tokenizer, splits, output_dir: str, callbacks: list, reference=None, deepspeed=None,
                  rewards: tuple = ()):
    """`rewards`: (functions, weights) as the plan built and tried them (workbench.train.plan)."""
    from workbench.evaluate.rewards import allow_weak_sandbox

    method = recipe.method
    funcs, weights = rewards
    if not funcs:
        raise ValueError("grpo.build_trainer: pass rewards=(functions, weights), e.g. from make_plan(recipe)")
    full_reference = method.beta > 0 and recipe.peft.type == "none"  # LoRA: TRL's adapter-disabled reference
    if full_reference:
        import copy

        reference = copy.deepcopy(model).eval().requires_grad_(False)
    allow_weak_sandbox(recipe.eval.unsafe_weak_sandbox)
    args = GRPOConfig(
        **shared_args(recipe, output_dir, has_eval=False, deepspeed=deepspeed),
        num_generations=method.generations,
        max_completion_length=method.max_new_tokens,
        temperature=method.temperature,
        beta=0.0 if full_reference else method.beta,  # a full reference is installed after TRL's set-up
        loss_type=method.loss_type or ("grpo" if method.importance_sampling == "sequence" else "dapo"),
        importance_sampling_level=method.importance_sampling,
        num_iterations=method.iterations,
        epsilon=method.clip_epsilon,
        reward_weights=list(weights),
        router_aux_loss_coef=0.0,  # explicit: see the module docstring
        use_vllm=method.use_vllm,
        log_completions=False,  # completions.jsonl instead of a console table
        disable_dropout=True,
        shuffle_dataset=True,
    )
    return WorkbenchGRPOTrainer(
        model=model,
        reward_funcs=list(funcs),
        args=args,
        train_dataset=splits.train,
        processing_class=tokenizer,
        callbacks=callbacks,
        routing_replay=recipe.moe.routing_replay,
        reference=reference if full_reference else None,
        beta=method.beta,
    )
