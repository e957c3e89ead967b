"""The builder: a plan becomes a ready-to-train run (model, TRL trainer, MoE plug-ins, tracker).

    from workbench.train.build import build
    run = build(make_plan(load_recipe("legal")))    # or build(recipe): the plan is made first
    run.train()
    run.close()

The plan (workbench.train.plan) has resolved everything: the data, the pinned model and teacher, the DeepSpeed
config, the rewards. `build` opens the MLflow run, loads exactly what the plan pinned and assembles the trainer;
the only check left here is the one that needs the launched processes (their number against
`train.expert_parallel`). `build(recipe, resume=True)` continues the newest unfinished run of the recipe from its
last checkpoint, in the same MLflow run.
"""

from pathlib import Path

from workbench.errors import WorkbenchError
from workbench.train.plan import Plan, make_plan
from workbench.train.run import Run


def build(plan, resume: bool = False) -> Run:
    import torch
    from transformers import set_seed

    from workbench.track.tracker import NullTracker, Tracker

    if not isinstance(plan, Plan):  # a recipe: resolve it first (the same plan `validate` prints)
        plan = make_plan(plan, resume=resume)
    recipe = plan.recipe
    if recipe.train.num_threads:
        torch.set_num_threads(recipe.train.num_threads)
    dist, keepalive = _start_processes(plan)
    main = dist is None or dist.is_main_process()
    output_dir = plan.output_dir
    run_name = recipe.track.run_name or output_dir.name  # a named run keeps its name whatever its folder
    track = Tracker(plan.tracking_uri, recipe.track.experiment or recipe.name, run_name, plan.run_id) if main else NullTracker()
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        if main:
            from workbench import console

            console.attach_log(output_dir / "workbench.log")
        track.log_start(recipe, plan.splits, output_dir)
        _record_plan(plan, track, dist)
        set_seed(recipe.train.seed)  # adapter weights and anything else drawn before the trainer seeds itself
        model, tokenizer = _load_student(plan, track)
        _attach_mtp(recipe, model, track)
        if keepalive is not None:
            _record_zero_init(model, track)
        teacher = _teacher(plan, model, track) if plan.teacher is not None else None
        trainer, moe, selection, adapted = _assemble(plan, model, tokenizer, track, teacher=teacher)
        run = Run(recipe=recipe, output_dir=output_dir, trainer=trainer, tracker=track, adapters=adapted,
                  base_model=plan.model.cfg.model_dump(), resume_from=plan.resume_from, moe=moe,
                  esft_selection=selection, distributed=dist, zero_stage=plan.zero_stage, ds_config_keepalive=keepalive,
                  teacher=plan.teacher.label if plan.teacher is not None else None,
                  weights_dir=plan.model.weights_dir, off=_evidence_off(plan))
        _add_reports(run, plan, tokenizer, main)
    except BaseException:
        track.end("FAILED")
        raise
    return run


def _start_processes(plan):
    """(the DeepSpeed helper module or None, HfDeepSpeedConfig to keep alive or None). Under ZeRO-3 the
    HfDeepSpeedConfig makes `from_pretrained` partition the weights while loading (zero.Init), so no rank ever
    holds the whole model."""
    if plan.deepspeed is None:
        return None, None
    from workbench.scale import deepspeed as dist

    dist.prepare_process()
    if plan.recipe.train.expert_parallel > 1:
        from workbench.scale.expert_parallel import check_world

        check_world(plan.recipe)  # the one check that needs the launched processes
    if plan.zero_stage != 3:
        return dist, None
    from transformers.integrations import HfDeepSpeedConfig

    dist.init_process_group()  # zero.Init partitions across the real world size
    return dist, HfDeepSpeedConfig(plan.deepspeed)


def _record_plan(plan, track, dist) -> None:
    recipe = plan.recipe
    _record_contamination(dict(plan.contamination), recipe, track)
    if plan.model.cfg.from_run:
        track.mlflow.set_tag("base_run_id", plan.model.cfg.from_run)
    if plan.deepspeed:
        track.mlflow.log_dict(plan.deepspeed, "deepspeed_config.json")
        track.mlflow.set_tag("deepspeed", f"zero{plan.zero_stage} x {dist.world_size()} processes")
        if "expert_parallel" in plan.deepspeed:
            n, experts = recipe.train.expert_parallel, getattr(plan.model.config, "n_routed_experts", 0)
            track.mlflow.set_tag("expert_parallel", f"{n} (AutoEP: {experts // n} of {experts} routed experts "
                                                    "per process)")
    for line in _evidence_off(plan):
        track.mlflow.set_tag(f"off.{line.split(':')[0].replace(' ', '_')}", line)


def _load_student(plan, track):
    from dataclasses import replace

    from workbench.model.load import load_resolved
    from workbench.moe.top_p import describe, routing_spec

    recipe = plan.recipe
    # a full fine-tune from a LoRA run keeps that run's MTP layer (its adapters merged) in memory, frozen: on disk it
    # exists only as base + adapter, so it could not be copied over afterwards
    keep_merged_mtp = not recipe.mtp.enabled and recipe.peft.type == "none" and plan.model.is_adapter
    # the recipe's moe.routing decides how the run routes, whatever its base run was trained with
    resolved = replace(plan.model, routing=routing_spec(recipe.moe))
    if recipe.train.expert_parallel > 1:
        model, tokenizer = _load_expert_parallel(plan, resolved, track)
    else:
        model, tokenizer = load_resolved(resolved, with_mtp=bool(recipe.mtp.enabled and recipe.mtp.init != "last_layer"
                                                                 or keep_merged_mtp))
    if resolved.routing:
        print(f"routing: {describe(resolved.routing)} in every MoE block (moe.routing)")
    if recipe.train.expert_parallel > 1 and plan.model.config is None:  # the plan could not read it: check it now
        from workbench.scale.expert_parallel import check_experts

        check_experts(recipe, model.config)
    return model, tokenizer


def _load_expert_parallel(plan, resolved, track):
    """Under expert parallelism each process reads the dense weights and only its slice of the routed experts
    (workbench.model.shards); where the run's start needs the whole model, every process loads it and says why."""
    from workbench.model.load import load_resolved
    from workbench.scale.expert_parallel import ep_rank, loads_whole

    n = plan.recipe.train.expert_parallel
    why = loads_whole(plan.recipe, base_is_adapter=resolved.is_adapter)  # a share needs local shards: the plan checked
    if why is not None:
        print(f"loading: every process reads the whole model ({why})")
        track.mlflow.set_tag("expert_parallel.loading", f"whole: {why}")
        return load_resolved(resolved, with_mtp=False)
    model, tokenizer = load_resolved(resolved, with_mtp=False, share=(ep_rank(n), n))
    _, _, first, end = model.expert_share
    experts = resolved.config.n_routed_experts
    print(f"loading: each process reads the dense weights and its {end - first} of {experts} routed experts per "
          f"layer from the checkpoint's shards (this one: experts {first}..{end - 1})")
    track.mlflow.set_tag("expert_parallel.loading", f"share: {end - first} of {experts} experts per process")
    return model, tokenizer


def _evidence_off(plan) -> tuple[str, ...]:
    """The before/after evidence a run with several processes does not produce, each as one line saying why."""
    if not plan.several_processes:
        return ()
    why = (f"ZeRO-3 partitions the model over {plan.world_size} process(es)" if plan.zero_stage == 3
           else f"{plan.world_size} processes hold the model")
    recipe, off = plan.recipe, []
    if recipe.eval.suite or recipe.eval.retention_suite:
        off.append(f"recipe evals: off ({why}; they run in one process: `workbench eval <run id> --suite ...` after)")
    if recipe.method.name == "grpo" and plan.splits.eval is not None:
        off.append(f"held-out reward: off ({why}; it generates in one process)")
    if recipe.mtp.enabled or recipe.mtp.report == "always":
        off.append(f"MTP report: off ({why}; it generates in one process)")
    if recipe.eval.samples and plan.splits.eval is not None:
        off.append(f"sample answers: off ({why}; `workbench generate <run id> ...` after)")
    return tuple(off)


def _add_reports(run, plan, tokenizer, main) -> None:
    """The recipe's before/after evals, the MTP report, the held-out reward, sample answers, and the export
    reference's rows."""
    from workbench.data.load import as_texts
    from workbench.evaluate.recipe_evals import RecipeEvals
    from workbench.evaluate.reward_report import RewardReport
    from workbench.evaluate.samples import SampleReport
    from workbench.train.mtp import MtpReport

    recipe, splits, alone = plan.recipe, plan.splits, main and not plan.several_processes
    run.evals = RecipeEvals(recipe, run.tracker, plan.output_dir, main=main,
                            skipped="recipe evals run in a single process without ZeRO-3" if plan.several_processes
                            else None)
    run.mtp = MtpReport(recipe, run.tracker, splits.eval if splits.eval is not None else [],
                        enabled=alone and splits.eval is not None, base_weights=plan.model.weights_dir)
    run.rewards = RewardReport(recipe, run.tracker, splits.eval, plan.output_dir, enabled=alone,
                               funcs=plan.rewards, weights=plan.reward_weights)
    run.samples = SampleReport(recipe, run.tracker, splits.eval, plan.output_dir, enabled=alone,
                               funcs=plan.rewards, weights=plan.reward_weights)
    rows = splits.eval if splits.eval is not None else splits.train
    try:
        run.reference_texts = as_texts(rows, tokenizer, 64)
    except Exception as exc:  # e.g. a tokenizer without a chat template: the export check falls back
        print(f"notice: export reference: rows could not be rendered ({type(exc).__name__}); `workbench export` "
              "will compare with the saved model instead of the trained one")


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


def _teacher(plan, student, track):
    """distill: the teacher the plan pinned, loaded like a base model (a run's adapter merged), frozen."""
    from workbench.model.load import load_resolved

    teacher, _ = load_resolved(plan.teacher, with_mtp=False, tokenizer=False)
    teacher.requires_grad_(False)
    sizes = {"teacher": sum(p.numel() for p in teacher.parameters()), "student": sum(p.numel() for p in student.parameters())}
    track.mlflow.set_tags({"distill.teacher": plan.teacher.label, "distill.teacher_params": f"{sizes['teacher']:,}",
                           "distill.student_params": f"{sizes['student']:,}"})
    return teacher


def _assemble(plan, model, tokenizer, track, teacher=None):
    """Model surgery in order: trainable groups, ESFT, reference copy, LoRA; then the trainer and MoE plugin."""
    from workbench.data.load import as_texts
    from workbench.model.lora import wrap
    from workbench.train.methods import get_method
    from workbench.train.methods.common import reference_model
    from workbench.moe import control, plugin

    recipe, splits, output_dir, ds_config = plan.recipe, plan.splits, plan.output_dir, plan.deepspeed
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
    if recipe.method.name == "grpo":
        extra["rewards"] = (plan.rewards, plan.reward_weights)
    trainer = get_method(recipe.method.name).build_trainer(recipe, model, tokenizer, splits, str(output_dir),
                                                           callbacks, reference=reference, deepspeed=ds_config, **extra)
    from workbench.train.optim import use_optimizer

    use_optimizer(trainer, recipe.train)  # train.optimizer: muon (the trainer builds it when training starts)
    moe = plugin.attach(trainer, recipe.moe, track, output_dir, stage_balances=[s.balance for s in recipe.train.stages],
                        stage_sparsity=[s.sparsity for s in recipe.train.stages])
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
