"""A run being trained: `train()` runs the trainer with the evidence around it, then saves; `close()` ends it.

    run = build(plan)          # workbench.train.build
    run.train()                # evals before, training, the final save, evals and reports after
    run.close()                # the MLflow run ends FINISHED, FAILED or KILLED

Outputs go to `runs/<recipe>/<run-name>/`: checkpoints every `train.save_steps`, `final/` (adapter or
model, tokenizer, workbench_model.json), `recipe.yaml` and `run.json`.
"""

import json
from dataclasses import dataclass
from pathlib import Path

from workbench.model.load import write_final_info
from workbench.train.plan import RUN_INFO


@dataclass
class Run:
    recipe: object
    output_dir: Path
    trainer: object
    tracker: object
    base_model: dict
    resume_from: str | None = None
    moe: object | None = None
    esft_selection: dict | None = None
    teacher: str | None = None  # distill: what the teacher is ("run <id>" or its name)
    adapters: dict | None = None  # LoRA adapters each group really got (shown in the header)
    reference_texts: list | None = None  # rows the export reference is computed on (see workbench.export.check)
    evals: object | None = None  # workbench.evaluate.recipe_evals.RecipeEvals
    mtp: object | None = None  # workbench.train.mtp.MtpReport
    rewards: object | None = None  # workbench.evaluate.reward_report.RewardReport (grpo: held-out reward before and after)
    samples: object | None = None  # workbench.evaluate.samples.SampleReport (held-out answers before and after)
    distributed: object | None = None  # the workbench.scale.deepspeed module when train.deepspeed is set
    zero_stage: int = 0
    ds_config_keepalive: object | None = None  # HfDeepSpeedConfig: ZeRO-3 partitions the model as it loads
    weights_dir: str | None = None  # the base's local weights folder, as the plan pinned it
    off: tuple = ()  # evidence this run cannot produce, each a line saying why (several processes)
    status: str = "RUNNING"

    def train(self):
        self.status = "FAILED"
        main = self.distributed is None or self.distributed.is_main_process()
        if main:
            _write_info(self.output_dir, self.tracker.run_id, "running")
        self.evals.before(self.trainer.model, self.trainer.processing_class, resumed=bool(self.resume_from))
        if not self.resume_from:
            self.mtp.before(self.trainer.model, self.trainer.processing_class)
        self.rewards.before(self.trainer.model, self.trainer.processing_class, resumed=bool(self.resume_from))
        self.samples.before(self.trainer.model, self.trainer.processing_class, resumed=bool(self.resume_from))
        result = self.trainer.train(resume_from_checkpoint=self.resume_from)
        final_dir = self.output_dir / "final"
        final_dir.mkdir(parents=True, exist_ok=True)
        self._save_reference(final_dir)  # what the trained model computes, before anything is saved
        self._save_final(final_dir)
        if main:
            self.trainer.processing_class.save_pretrained(str(final_dir))
            from workbench.moe.top_p import routing_spec

            write_final_info(final_dir, self.base_model, adapter=self.recipe.peft.type != "none",
                             routing=routing_spec(self.recipe.moe))
            from workbench.moe.bias import save_router_bias
            from workbench.moe.patch import save_expert_patch

            save_router_bias(self.trainer.model, final_dir)
            if self.esft_selection:
                save_expert_patch(self.trainer.model, self.esft_selection, final_dir, self.base_model)
            self.tracker.log_final(final_dir, upload=self.recipe.track.log_model)
        self.evals.after(self.trainer.model, self.trainer.processing_class)
        self.mtp.after(self.trainer.model, self.trainer.processing_class, final_dir, self.trainer.state.global_step)
        if main:
            samples = self.output_dir / "completions.jsonl"
            if samples.is_file():  # grpo: sampled completions with their rewards, as training went
                self.tracker.log_artifact(samples)
        self.rewards.after(self.trainer.model, self.trainer.processing_class, self.trainer.state.global_step)
        self.samples.after(self.trainer.model, self.trainer.processing_class)
        if main:
            _write_info(self.output_dir, self.tracker.run_id, "finished")
        self.status = "FINISHED"
        return result

    def _save_final(self, final_dir: Path) -> None:
        """Adapter for LoRA, full weights otherwise. Under ZeRO-3 a LoRA run gathers only the trainable
        tensors (the frozen base is never assembled on one host: that is what runs out of memory on big MoEs)."""
        if not (self.zero_stage == 3 and self.recipe.peft.type != "none"):
            self.trainer.save_model(str(final_dir))
            self._carry_mtp(final_dir)
            return
        import deepspeed

        model = self.trainer.model
        model = model.module if hasattr(model, "module") else model
        trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
        with deepspeed.zero.GatheredParameters([p for _, p in trainable], modifier_rank=None):
            state = {name: p.detach().to("cpu", copy=True) for name, p in trainable}
        if self.distributed.is_main_process():
            model.save_pretrained(str(final_dir), state_dict=state)

    def _carry_mtp(self, final_dir: Path) -> None:
        """A full fine-tune without `mtp.enabled` keeps the checkpoint's MTP weights as they were (not dropped)."""
        from workbench.model import mtp

        if self.recipe.peft.type != "none" or mtp.mtp_layers(self.trainer.model):
            return
        if self.distributed is not None and not self.distributed.is_main_process():
            return
        lm = mtp.causal_lm(self.trainer.model)
        copied = mtp.carry(self.weights_dir, final_dir, lm.config.num_hidden_layers)
        if copied:
            print(f"notice: the base's multi-token-prediction layer ({copied} tensors) is saved unchanged: "
                  "mtp.enabled is false, so it no longer matches the fine-tuned model (set mtp.enabled to train it)")

    def _save_reference(self, final_dir: Path) -> None:
        if self.zero_stage == 3 or not self.reference_texts:  # a partitioned model is never whole in one process
            return
        if self.distributed is not None and not self.distributed.is_main_process():
            return
        from workbench.scale.expert_parallel import autoep_layers

        if autoep_layers(self.trainer.model):  # experts still split over processes (a LoRA run): no lone forward
            return
        from workbench.export.check import save_reference

        model = self.trainer.model
        model = model.module if hasattr(model, "module") else model
        facts = save_reference(model, self.trainer.processing_class, final_dir, self.reference_texts)
        self.tracker.log_metrics({f"export_reference/{k}": v for k, v in facts.items()}, step=0, raw=True)

    def close(self):
        from workbench import console

        if console.log_path() is not None and console.log_path().is_file() and self.tracker.run_id:
            self.tracker.log_artifact(console.log_path())  # the libraries' warnings, for when something looks off
        self.tracker.end("FINISHED" if self.status == "FINISHED" else "KILLED" if self.status == "RUNNING" else "FAILED")


def _write_info(output_dir: Path, run_id: str, state: str) -> None:
    (output_dir / RUN_INFO).write_text(json.dumps({"run_id": run_id, "state": state}))
