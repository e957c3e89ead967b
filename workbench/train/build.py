"""The builder: a recipe becomes a ready-to-train run (data, model, TRL trainer, tracker).

    from workbench.train.build import build
    run = build(load_recipe("legal"))
    run.train()
    run.close()

Outputs go to `runs/<recipe>/<run-name>/`: checkpoints every `train.save_steps`, `final/` (adapter or
model, tokenizer, workbench_model.json), `recipe.yaml` and `run.json`. `build(recipe, resume=True)`
continues the newest unfinished run of the recipe from its last checkpoint, in the same MLflow run.
"""

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from workbench.errors import WorkbenchError
from workbench.model.load import write_final_info
from workbench.paths import project_root, runs_dir

RUN_INFO = "run.json"


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
    distributed: object | None = None  # the workbench.scale.deepspeed module when train.deepspeed is set
    zero_stage: int = 0
    ds_config_keepalive: object | None = None  # HfDeepSpeedConfig: ZeRO-3 partitions the model as it loads
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
        result = self.trainer.train(resume_from_checkpoint=self.resume_from)
        final_dir = self.output_dir / "final"
        final_dir.mkdir(parents=True, exist_ok=True)
        self._save_reference(final_dir)  # what the trained model computes, before anything is saved
        self._save_final(final_dir)
        if main:
            self.trainer.processing_class.save_pretrained(str(final_dir))
            write_final_info(final_dir, self.base_model, adapter=self.recipe.peft.type != "none")
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
        from workbench.model.load import local_checkpoint

        lm = mtp.causal_lm(self.trainer.model)
        copied = mtp.carry(local_checkpoint(lm.config.name_or_path), final_dir, lm.config.num_hidden_layers)
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


def _new_output_dir(recipe) -> Path:
    if recipe.train.output_dir:
        path = Path(recipe.train.output_dir)
        return path if path.is_absolute() else project_root() / path
    name = recipe.track.run_name or os.environ.get("WORKBENCH_RUN_NAME")
    return runs_dir() / recipe.name / (name or time.strftime("%Y%m%d-%H%M%S"))


def _resumable(recipe) -> tuple[Path, str, str]:
    """(output_dir, MLflow run id, checkpoint) of the newest unfinished run of this recipe."""
    newest = _new_output_dir(recipe)
    # A fixed train.output_dir is the one candidate; otherwise every run folder of the recipe, newest first.
    candidates = [newest] if recipe.train.output_dir else sorted(newest.parent.glob("*"), reverse=True)
    for path in candidates:
        info_file = path / RUN_INFO
        checkpoints = sorted(path.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
        info = json.loads(info_file.read_text()) if info_file.is_file() else {"state": "finished"}
        if checkpoints and info["state"] != "finished":
            return path, info["run_id"], str(checkpoints[-1])
    parent = newest if recipe.train.output_dir else newest.parent
    raise WorkbenchError(f"--resume: no unfinished run of '{recipe.name}' with a checkpoint under {parent}")


def build(recipe, resume: bool = False) -> Run:
    import torch
    from transformers import set_seed

    from workbench.model.load import load_model
    from workbench.train.plan import preflight
    from workbench.track.tracker import tracker

    if recipe.train.num_threads:
        torch.set_num_threads(recipe.train.num_threads)
    dist, ds_config, keepalive = None, None, None
    if recipe.train.deepspeed:
        from workbench.scale import deepspeed as dist

        dist.prepare_process()
    if resume:
        output_dir, run_id, checkpoint = _resumable(recipe)
    else:
        if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not (recipe.track.run_name or recipe.train.output_dir
                                                               or os.environ.get("WORKBENCH_RUN_NAME")):
            # Every rank must write to the same folder; a clock-based name could differ between processes.
            raise WorkbenchError("track.run_name: set it (or WORKBENCH_RUN_NAME) when launching several processes; "
                                 "`make finetune GPUS=N` does this for you")
        output_dir, run_id, checkpoint = _new_output_dir(recipe), None, None
    # Everything `workbench validate` checks fails here, before a run is opened in MLflow.
    main = dist is None or dist.is_main_process()
    checked = preflight(recipe, output_dir=output_dir if main else None, resume=resume)
    splits, base_model = checked.splits, checked.base_model
    if dist:
        ds_config, keepalive = _deepspeed_config(recipe, checked)
    track = tracker(recipe, run_name=output_dir.name, run_id=run_id) if main else _null_tracker()
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        if main:
            from workbench import console

            console.attach_log(output_dir / "workbench.log")
        track.log_start(recipe, splits, output_dir)
        _record_contamination(checked.facts.get("contamination", {}), recipe, track)
        if base_model.from_run:
            track.mlflow.set_tag("base_run_id", base_model.from_run)
        if ds_config:
            track.mlflow.log_dict(ds_config, "deepspeed_config.json")
            track.mlflow.set_tag("deepspeed", f"zero{dist.zero_stage(ds_config)} x {dist.world_size()} processes")
            if "expert_parallel" in ds_config:
                n, experts = recipe.train.expert_parallel, getattr(checked.model_config, "n_routed_experts", 0)
                track.mlflow.set_tag("expert_parallel", f"{n} (AutoEP: {experts // n} of {experts} routed experts "
                                                        "per process)")
        set_seed(recipe.train.seed)  # adapter weights and anything else drawn before the trainer seeds itself
        # a full fine-tune from a LoRA run keeps that run's MTP layer (its adapters merged) in memory, frozen: on
        # disk it exists only as base + adapter, so it could not be copied over afterwards
        keep_merged_mtp = not recipe.mtp.enabled and recipe.peft.type == "none" and checked.facts.get("base_is_adapter")
        model, tokenizer = load_model(base_model, with_mtp=bool(recipe.mtp.enabled and recipe.mtp.init != "last_layer"
                                                                 or keep_merged_mtp))
        _attach_mtp(recipe, model, track)
        if keepalive is not None:
            _record_zero_init(model, track)
        teacher = _teacher(checked.teacher, model, track) if checked.teacher else None
        trainer, moe, selection, adapted = _assemble(recipe, model, tokenizer, splits, output_dir, track, ds_config,
                                                     teacher=teacher)
        evals, reference_texts = _evals(recipe, track, output_dir, splits, tokenizer, dist, ds_config, main)
        from workbench.train.mtp import MtpReport

        several = dist is not None and (dist.zero_stage(ds_config) == 3 or dist.world_size() > 1)
        report = MtpReport(recipe, track, splits.eval if splits.eval is not None else [],
                           enabled=main and not several and splits.eval is not None)
        from workbench.evaluate.reward_report import RewardReport

        rewards = RewardReport(recipe, track, splits.eval, output_dir, enabled=main and not several)
    except BaseException:
        track.end("FAILED")
        raise
    return Run(recipe=recipe, output_dir=output_dir, trainer=trainer, tracker=track, evals=evals, adapters=adapted,
               mtp=report, rewards=rewards,
               reference_texts=reference_texts,
               base_model=base_model.model_dump(), resume_from=checkpoint, moe=moe, esft_selection=selection,
               distributed=dist, zero_stage=dist.zero_stage(ds_config) if ds_config else 0, ds_config_keepalive=keepalive,
               teacher=(f"run {checked.teacher.from_run}" if checked.teacher.from_run else checked.teacher.name)
               if checked.teacher else None)


def _evals(recipe, track, output_dir, splits, tokenizer, dist, ds_config, main):
    """The recipe's before/after evaluation, and the rows the export reference is computed on."""
    from workbench.data.load import as_texts
    from workbench.evaluate.recipe_evals import RecipeEvals

    several = dist is not None and (dist.zero_stage(ds_config) == 3 or dist.world_size() > 1)
    evals = RecipeEvals(recipe, track, output_dir, main=main,
                        skipped="recipe evals run in a single process without ZeRO-3" if several else None)
    rows = splits.eval if splits.eval is not None else splits.train
    try:
        texts = as_texts(rows, tokenizer, 64)
    except Exception as exc:  # e.g. a tokenizer without a chat template: the export check falls back
        print(f"notice: export reference: rows could not be rendered ({type(exc).__name__}); `workbench export` "
              "will compare with the saved model instead of the trained one")
        texts = None
    return evals, texts


def _attach_mtp(recipe, model, track) -> None:
    """mtp.enabled: the MTP layer, from the checkpoint (already loaded) or built from the last decoder layer."""
    from workbench.model.mtp import attach, mtp_layers

    if not recipe.mtp.enabled:
        for layer in mtp_layers(model):  # kept as loaded (see keep_merged_mtp), not trained
            layer.requires_grad_(False)
        return

    origin = "checkpoint" if mtp_layers(model) else attach(model, None, init=recipe.mtp.init)
    if origin != "checkpoint" and recipe.peft.type != "none":  # preflight's check, for a checkpoint it could not see
        raise WorkbenchError("mtp.enabled: with LoRA the MTP layer's own weights must come from the checkpoint, and "
                             f"{recipe.model.name} holds none")
    size = sum(p.numel() for layer in mtp_layers(model) for p in layer.parameters())
    track.mlflow.set_tags({"mtp": f"weight {recipe.mtp.weight:g}, from the {origin.replace('_', ' ')}",
                           "mtp.params": f"{size:,}"})


def _record_contamination(counts: dict, recipe, track) -> None:
    """Whether the eval suites' data share text with this recipe's training file (tag, and a warning if so)."""
    if not counts:
        return
    hits = sum(h for h, _ in counts.values())
    track.mlflow.set_tag("eval.contamination", "clean" if not hits else f"{hits} of {sum(n for _, n in counts.values())} rows")
    for path, (overlapping, rows) in counts.items():
        if overlapping:
            print(f"warning: eval data {path}: {overlapping} of {rows} rows share a 13-gram with {recipe.data.train}; "
                  "its scores partly measure recall of training text (`workbench contamination` lists them)")


def _record_zero_init(model, track) -> None:
    """ZeRO-3 partitions the weights while they load (zero.Init); record that it did, so it is never assumed."""
    tensors = list(model.parameters())
    partitioned = sum(hasattr(p, "ds_id") for p in tensors)
    track.mlflow.set_tag("deepspeed.zero_init", f"{partitioned} of {len(tensors)} weight tensors partitioned while loading")
    if partitioned < len(tensors):
        print(f"warning: ZeRO-3: only {partitioned} of {len(tensors)} weight tensors were partitioned while loading")


def _teacher(cfg, student, track):
    """distill: the teacher, loaded like a base model (a run's adapter merged), frozen; its size on the run."""
    from workbench.model.load import load_model

    teacher, _ = load_model(cfg, key="teacher", with_mtp=False)
    teacher.requires_grad_(False)
    sizes = {"teacher": sum(p.numel() for p in teacher.parameters()), "student": sum(p.numel() for p in student.parameters())}
    track.mlflow.set_tags({"distill.teacher": f"run {cfg.from_run}" if cfg.from_run else cfg.name,
                           "distill.teacher_params": f"{sizes['teacher']:,}", "distill.student_params": f"{sizes['student']:,}"})
    return teacher


def _null_tracker():
    from workbench.track.tracker import NullTracker

    return NullTracker()


def _deepspeed_config(recipe, checked):
    """(resolved DeepSpeed config, HfDeepSpeedConfig to keep alive). Under ZeRO-3 the HfDeepSpeedConfig
    makes `from_pretrained` partition the weights while loading (zero.Init), so no rank ever holds the
    whole model; that needs the model's width up front, read from its config."""
    from workbench.scale import deepspeed as dist

    hidden = getattr(checked.model_config, "hidden_size", None)
    config = dist.resolved_config(recipe, hidden_size=hidden, model_type=getattr(checked.model_config, "model_type", None))
    if recipe.train.expert_parallel > 1:
        from workbench.scale.expert_parallel import check_model

        check_model(recipe, checked.model_config)
    dist.validate(config)
    keepalive = None
    if dist.zero_stage(config) == 3 and hidden is None:
        raise WorkbenchError("train.deepspeed: ZeRO-3 partitions the model while it loads (zero.Init) and needs its "
                             "hidden size, but this model's config could not be read here; download it, or use zero2")
    if dist.zero_stage(config) == 3 and recipe.mtp.enabled:
        raise WorkbenchError(f"mtp.enabled: the MTP layer is added after loading, outside ZeRO-3's partitioned load "
                             f"({recipe.train.deepspeed} is ZeRO-3); use zero2 or drop train.deepspeed")
    if dist.zero_stage(config) == 3 and checked.facts.get("base_is_adapter"):
        raise WorkbenchError(f"model.from_run: run {recipe.model.from_run} saved a LoRA adapter, which must be merged "
                             "into whole weights before ZeRO-3 can partition them; run `workbench export "
                             f"{checked.base_model.from_run}` and set model.name to its export directory")
    if dist.zero_stage(config) == 3:
        from transformers.integrations import HfDeepSpeedConfig

        dist.init_process_group()  # zero.Init partitions across the real world size

        keepalive = HfDeepSpeedConfig(config)
    return config, keepalive


def _assemble(recipe, model, tokenizer, splits, output_dir: Path, track, ds_config: dict | None = None, teacher=None):
    """Model surgery in order: trainable groups, ESFT, reference copy, LoRA; then the trainer and MoE plugin."""
    from workbench.data.load import as_texts
    from workbench.model.lora import wrap
    from workbench.train.methods import get_method
    from workbench.train.methods.common import reference_model
    from workbench.moe import control, plugin

    control.apply_trainable(model, recipe.moe)
    selection = None
    total = sum(p.numel() for p in model.parameters())
    if recipe.moe.esft != "none":
        texts = as_texts(splits.train, tokenizer, recipe.moe.esft_profile_rows)
        selection = control.esft_select(model, tokenizer, texts, recipe.moe)
        if recipe.peft.type == "none":
            track.log_esft(selection, control.esft_restrict(model, selection), total)
    reference = reference_model(recipe, model)
    if recipe.model.quantize != "none":  # QLoRA: norms in fp32, inputs that carry gradients through frozen 4/8-bit layers
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=bool(recipe.train.gradient_checkpointing
                                                                                       in (None, True)))
    model, adapted = wrap(model, recipe.peft)
    if selection is not None and recipe.peft.type != "none":
        track.log_esft(selection, control.esft_restrict_lora(model, selection), total)
    if adapted:
        track.mlflow.log_params({f"peft.adapted.{k}": v for k, v in adapted.items()})
    if ds_config and ds_config.get("zero_optimization", {}).get("stage") == 3:
        from workbench.scale.deepspeed import register_moe_leaves

        leaves = register_moe_leaves(model)
        if leaves:
            from deepspeed.utils import z3_leaf_module

            flagged = sum(z3_leaf_module(m) for m in model.modules())
            track.mlflow.set_tag("deepspeed.z3_leaf_modules", f"{flagged} x {', '.join(leaves)}")
            print(f"ZeRO-3: {flagged} {', '.join(leaves)} blocks gathered as one leaf module each "
                  "(no rank waits on unrouted experts)")
    callbacks = [track.callback()]
    extra = {"teacher": teacher} if teacher is not None else {}
    trainer = get_method(recipe.method.name).build_trainer(recipe, model, tokenizer, splits, str(output_dir),
                                                           callbacks, reference=reference, deepspeed=ds_config, **extra)
    moe = plugin.attach(trainer, recipe.moe, track, output_dir, stage_balances=[s.balance for s in recipe.train.stages])
    if recipe.train.expert_parallel > 1:  # AutoEP swaps the MoE blocks when the trainer starts DeepSpeed
        from workbench.scale.expert_parallel import ExpertParallelCallback, save_in_hf_layout

        ep_callback = ExpertParallelCallback(trainer.model, moe, selection if recipe.peft.type == "none" else None)
        # first in line: the gathers at the end run before any rank-0-only work of the other callbacks
        trainer.callback_handler.callbacks.insert(0, ep_callback)
        if ep_callback.saves_whole:
            save_in_hf_layout(trainer, ep_callback)
    if hasattr(trainer, "raw_metrics"):  # grpo: routing agreement, under its own `moe/...` names
        trainer.raw_metrics = lambda metrics, step: track.log_metrics(metrics, step=step, raw=True)
    if recipe.train.stages:
        from workbench.train.stages import StageCallback

        trainer.add_callback(StageCallback(recipe.train.stages, trainer.model, track, moe))
    from workbench.console import replace_progress

    replace_progress(trainer)
    _load_checkpoints_as_saved(trainer)
    return trainer, moe, selection, adapted


def _load_checkpoints_as_saved(trainer) -> None:
    """Resume full-weight checkpoints through `from_pretrained`, which undoes the layout conversion `save_pretrained`
    applies. transformers saves DeepSeek-V3's fused expert tensors per expert (the published key layout), and the
    Trainer's own resume reads the file back with `load_state_dict(strict=False)`: every routed expert silently kept
    its freshly loaded value (a log line the only sign). Adapter checkpoints and DeepSpeed's own go the usual way."""
    original = trainer._load_from_checkpoint

    def load(resume_from_checkpoint, model=None):
        model = trainer.model if model is None else model
        folder = Path(resume_from_checkpoint)
        full = (folder / "model.safetensors").is_file() or (folder / "model.safetensors.index.json").is_file()
        if not full or hasattr(model, "peft_config") or trainer.is_deepspeed_enabled or trainer.is_fsdp_enabled:
            return original(resume_from_checkpoint, model)
        import torch

        from workbench.model import mtp

        with torch.device("cpu"):
            saved = type(model).from_pretrained(str(folder), dtype=model.dtype, config=model.config)
        if mtp.mtp_layers(model):
            mtp.attach(saved, str(folder), init="checkpoint", key="--resume")
        model.load_state_dict(saved.state_dict(), strict=True)
        del saved

    trainer._load_from_checkpoint = load
