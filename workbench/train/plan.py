"""The plan: a recipe resolved once, before anything runs. `validate` prints it; `finetune` trains it.

    from workbench.train.plan import make_plan
    plan = make_plan(load_recipe("legal"))     # every source pinned, data loaded and checked, configs resolved
    print(describe_plan(plan))                  # what `workbench validate legal` prints
    run = build(plan)                           # workbench.train.build consumes it and looks nothing up again

After the schema (workbench.recipe.schema), the plan reads what the recipe points at, in this order: the eval
suites, rewards and DeepSpeed file it names; the tracking store (it must answer); the output folder (it must be
creatable and hold no other run); the data (every row); the rewards (called once on two placeholder
completions); the base model (a run reference pinned to its id, a preset built, a folder's weights and tokenizer
checked, its config read); the architecture on PyTorch's meta device (LoRA targets, MoE settings, attention);
eval contamination; MTP; the teacher; the resolved DeepSpeed config with expert parallelism against the model.
Every failure is one line naming the key, before an MLflow run is opened. What needs the launched processes
(their number against `train.expert_parallel`) is checked by `build`, the only check left there.
"""

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from workbench.errors import WorkbenchError
from workbench.paths import runs_dir
from workbench.train import checks
from workbench.train.checks import check_references  # noqa: F401  (the CLI's estimate runs it alone)

RUN_INFO = "run.json"


@dataclass(frozen=True)
class Plan:
    recipe: object  # workbench.recipe.schema.Recipe
    label: str  # the recipe file as errors name it
    tracking_uri: str
    output_dir: Path
    splits: object  # workbench.data.load.Splits: loaded, every row checked
    model: object  # workbench.model.load.ResolvedModel: the pinned base
    teacher: object | None = None  # distill: the pinned teacher
    deepspeed: dict | None = None  # the resolved DeepSpeed config for this process's world size
    world_size: int = 1
    rewards: tuple = ()  # grpo: the reward functions, in the recipe's order (tried before training)
    reward_weights: tuple = ()
    contamination: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))
    facts: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))  # architecture, adapters, teacher
    resume_from: str | None = None  # --resume: the checkpoint
    run_id: str | None = None  # --resume: the MLflow run it continues

    @property
    def zero_stage(self) -> int:
        return (self.deepspeed or {}).get("zero_optimization", {}).get("stage", 0)

    @property
    def several_processes(self) -> bool:
        """ZeRO-3 or more than one process: no process holds the whole model alone."""
        return self.deepspeed is not None and (self.zero_stage == 3 or self.world_size > 1)


def make_plan(recipe, resume: bool = False) -> Plan:
    """Resolve `recipe` (see the module docstring); raises a one-line WorkbenchError on anything `finetune` refuses."""
    import mlflow

    from workbench.data.load import load_dataset
    from workbench.model.load import resolve_model

    checks.check_references(recipe)
    uri = checks.check_tracking(recipe)
    main = os.environ.get("RANK", "0") == "0"
    output_dir, run_id, checkpoint = locate_run(recipe, resume)
    if main and not resume:
        checks.check_output_dir(output_dir)
    splits = load_dataset(recipe.data, recipe.method.name, check_row=checks.reward_fields(recipe))
    funcs, weights = checks.try_rewards(recipe, splits.train) if recipe.method.name == "grpo" else ((), ())
    mlflow.set_tracking_uri(uri)  # where `from_run` references are looked up
    model = resolve_model(recipe.model)
    facts = checks.check_architecture(recipe, model.config) if model.config is not None else {}
    checks.check_mtp(recipe, model)
    teacher = None
    if recipe.teacher.given:
        teacher = resolve_model(recipe.teacher, key="teacher")
        facts["teacher"] = checks.check_teacher(teacher, model)
        checks.check_distill_rows(recipe, splits, model.tokenizer_dir)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    deepspeed = resolve_deepspeed(recipe, model) if recipe.train.deepspeed else None
    return Plan(recipe=recipe, label=_label(recipe), tracking_uri=uri, output_dir=output_dir, splits=splits,
                model=model, teacher=teacher, deepspeed=deepspeed, world_size=world, rewards=tuple(funcs),
                reward_weights=tuple(weights), contamination=MappingProxyType(checks.eval_contamination(recipe)),
                facts=MappingProxyType(facts), resume_from=checkpoint, run_id=run_id)


def _label(recipe) -> str:
    from workbench.recipe.load import display_path

    return display_path(Path(recipe.path))


def new_output_dir(recipe) -> Path:
    from workbench.paths import project_root

    if recipe.train.output_dir:
        path = Path(recipe.train.output_dir)
        return path if path.is_absolute() else project_root() / path
    name = recipe.track.run_name or os.environ.get("WORKBENCH_RUN_NAME")
    return runs_dir() / recipe.name / (name or time.strftime("%Y%m%d-%H%M%S"))


def locate_run(recipe, resume: bool) -> tuple[Path, str | None, str | None]:
    """(output folder, MLflow run id, checkpoint): a new folder, or with `resume` the newest unfinished run of the
    recipe that has a checkpoint."""
    if not resume:
        several = int(os.environ.get("WORLD_SIZE", "1")) > 1
        if several and not (recipe.track.run_name or recipe.train.output_dir or os.environ.get("WORKBENCH_RUN_NAME")):
            # Every rank must write to the same folder; a clock-based name could differ between processes.
            raise WorkbenchError("track.run_name: set it (or WORKBENCH_RUN_NAME) when launching several processes; "
                                 "`make finetune GPUS=N` does this for you")
        return new_output_dir(recipe), None, None
    import json

    newest = new_output_dir(recipe)
    # A fixed train.output_dir is the one candidate; otherwise every run folder of the recipe, newest first.
    candidates = [newest] if recipe.train.output_dir else sorted(newest.parent.glob("*"), reverse=True)
    for path in candidates:
        info_file = path / RUN_INFO
        found = sorted(path.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
        info = json.loads(info_file.read_text()) if info_file.is_file() else {"state": "finished"}
        if found and info["state"] != "finished":
            return path, info["run_id"], str(found[-1])
    parent = newest if recipe.train.output_dir else newest.parent
    raise WorkbenchError(f"--resume: no unfinished run of '{recipe.name}' with a checkpoint under {parent}")


def resolve_deepspeed(recipe, model) -> dict:
    """The recipe's DeepSpeed config with every value filled in for this world size, checked against the model
    (ZeRO-3 needs its width; AutoEP its routed experts) and by DeepSpeed's own parser."""
    from workbench.scale import deepspeed as dist
    from workbench.scale.expert_parallel import check_experts

    config_of = model.config
    hidden = getattr(config_of, "hidden_size", None)
    config = dist.resolved_config(recipe, hidden_size=hidden, model_type=getattr(config_of, "model_type", None))
    if recipe.train.expert_parallel > 1:
        check_experts(recipe, config_of)
        from workbench.scale.expert_parallel import check_share_source

        check_share_source(recipe, model)  # each process will read its share of the experts from these shards
    dist.validate(config)
    if dist.zero_stage(config) == 3:
        if hidden is None:
            raise WorkbenchError("train.deepspeed: ZeRO-3 partitions the model while it loads (zero.Init) and needs "
                                 "its hidden size, but this model's config could not be read here; download it, or "
                                 "use zero2")
        if recipe.mtp.enabled:
            raise WorkbenchError(f"mtp.enabled: the MTP layer is added after loading, outside ZeRO-3's partitioned "
                                 f"load ({recipe.train.deepspeed} is ZeRO-3); use zero2 or drop train.deepspeed")
        if model.is_adapter:
            raise WorkbenchError(f"model.from_run: run {recipe.model.from_run} saved a LoRA adapter, which must be "
                                 "merged into whole weights before ZeRO-3 can partition them; run `workbench export "
                                 f"{model.cfg.from_run}` and set model.name to its export directory")
    return config


def describe_plan(plan: Plan) -> str:
    """What `workbench validate` prints: the first line says ok, the rest what would run."""
    recipe, facts, splits = plan.recipe, plan.facts, plan.splits
    n_eval = len(splits.eval) if splits.eval is not None else 0
    adapters = ", ".join(f"{k} {v}" for k, v in facts.get("adapters", {}).items())
    lines = [f"{recipe.name}: ok ({recipe.method.name}, model {plan.model.label}"
             + (f" [{facts['model_type']}, {facts['routed_experts']} routed experts per MoE layer]"
                if "model_type" in facts else "")
             + (f", LoRA adapters on the dense layers + one MoE layer: {adapters}" if adapters else "")
             + f", {len(splits.train)} train / {n_eval} eval rows from {splits.source})"]
    lines.append(f"  weights {plan.model.weights}" + (f" + {len(plan.model.adapters)} adapter(s)" if plan.model.adapters
                                                       else ""))
    if plan.teacher is not None:
        about = facts.get("teacher", {})
        lines.append(f"  teacher {plan.teacher.label}"
                     + (f" [{about['model_type']}, {about['layers']} layers, {about['routed_experts']} routed experts]"
                        if about.get("routed_experts") else f" [{about['model_type']}]" if about else "")
                     + ": same vocabulary as the student")
    if plan.rewards:
        lines.append("  rewards " + ", ".join(f"{f.__name__} x{w:g}" for f, w in zip(plan.rewards, plan.reward_weights))
                     + " (each tried on two placeholder completions)")
    if recipe.mtp.enabled:
        lines.append(f"  mtp trained beside the model (weight {recipe.mtp.weight:g}, init {recipe.mtp.init})")
    if recipe.train.optimizer == "muon":  # workbench.train.optim
        lines.append("  optimizer Muon for the hidden matrices (each routed expert's alone), AdamW for embeddings, LM head"
                     f" and norms, both at lr {recipe.train.lr:g}" + (" (DeepSpeed's own Muon)" if plan.deepspeed else ""))
    if recipe.train.stages:
        lines.append("  stages " + ", ".join(f"{s.name} ({s.share:g}: {', '.join(s.train)}"
                                             + (f"; sparsity {s.sparsity:g}" if s.sparsity is not None else "") + ")"
                                             for s in recipe.train.stages))
    if recipe.moe.routing != "top_k":
        from workbench.moe.top_p import describe, routing_spec

        lines.append(f"  routing {describe(routing_spec(recipe.moe))} in every MoE block (training, eval and generate)")
    if plan.deepspeed is not None:
        ep = recipe.train.expert_parallel
        lines.append(f"  deepspeed ZeRO-{plan.zero_stage} ({recipe.train.deepspeed}), {plan.world_size} process(es) here"
                     + (f", routed experts split over {ep} processes (AutoEP)" if ep > 1 else ""))
        if ep > 1:
            from workbench.scale.expert_parallel import loads_whole

            why = loads_whole(recipe, base_is_adapter=plan.model.is_adapter)
            lines.append("  loading " + (f"every process reads the whole model ({why})" if why else
                                         f"each process reads the dense weights and 1/{ep} of the routed experts"))
    for path, (hits, rows) in plan.contamination.items():
        verdict = "held out" if not hits else "CONTAMINATED: the score partly measures recall of training text"
        lines.append(f"  eval data {path}: {hits} of {rows} rows share a 13-gram with {recipe.data.train} ({verdict})")
    lines.append(f"  tracking {plan.tracking_uri}; output {plan.output_dir}")
    return "\n".join(lines)
