"""DeepSpeed ZeRO for MoE recipes: shipped configs, consistency with the recipe, single-process set-up.

    from workbench.scale import deepspeed as distributed
    ds = distributed.resolved_config(recipe, hidden_size=7168)   # every "auto" filled from the recipe
    distributed.register_moe_leaves(model)                       # ZeRO-3: one MoE block = one gather

`train.deepspeed` names a shipped config (`zero2`, `zero3`, `zero3_offload`, files in
recipes/deepspeed/) or a JSON path. Batch size, accumulation, clipping, precision and optimizer
settings come from the recipe; a config that sets one of them to a different value is an error naming
both keys. Without a launcher (`make finetune` with no GPUS) the run is one process: the rendezvous
variables are set here, and on a machine without CUDA DeepSpeed runs on its CPU accelerator (gloo).
"""

import json
import os
import socket
from pathlib import Path

from workbench.errors import WorkbenchError
from workbench.paths import project_root, recipes_dir

SHIPPED = ("zero2", "zero3", "zero3_offload")
ADAM_BETAS, ADAM_EPS = [0.9, 0.999], 1e-8  # transformers' TrainingArguments defaults
MUON_MOMENTUM, MUON_NS = 0.95, "standard"  # as workbench.train.optim's torch Muon: momentum, the plain Newton-Schulz


def config_path(name: str) -> Path:
    if name in SHIPPED:
        return recipes_dir() / "deepspeed" / f"{name}.json"
    path = Path(name).expanduser()
    path = path if path.is_absolute() else project_root() / path
    if not path.is_file():
        raise WorkbenchError(f"train.deepspeed: '{name}' is neither a shipped config ({', '.join(SHIPPED)}) "
                             "nor a JSON file")
    return path


def load_config(name: str) -> dict:
    from workbench.files import read_text

    path = config_path(name)
    try:
        config = json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise WorkbenchError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    if not isinstance(config, dict):
        raise WorkbenchError(f"{path}: a DeepSpeed config must be a JSON object")
    return config


def zero_stage(config: dict) -> int:
    return int(config.get("zero_optimization", {}).get("stage", 0))


def offloads(config: dict) -> tuple[bool, bool]:
    """(optimizer offloaded to CPU/NVMe, parameters offloaded)."""
    zero = config.get("zero_optimization", {})
    device = lambda key: zero.get(key, {}).get("device", "none") not in ("none", None)  # noqa: E731
    return device("offload_optimizer"), device("offload_param")


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _precision(recipe) -> str:
    from workbench.model.device import precision_flags

    flags = precision_flags(recipe.train.precision)
    return "bf16" if flags["bf16"] else "fp16" if flags["fp16"] else "fp32"


def expected_values(recipe, world: int) -> dict[str, object]:
    """The DeepSpeed keys the recipe decides, as dotted paths, with the recipe key that decides each."""
    train, precision = recipe.train, _precision(recipe)
    return {
        "train_micro_batch_size_per_gpu": (train.batch_size, "train.batch_size"),
        "gradient_accumulation_steps": (train.grad_accum, "train.grad_accum"),
        "train_batch_size": (train.batch_size * train.grad_accum * world, "train.batch_size x train.grad_accum x GPUs"),
        "gradient_clipping": (train.max_grad_norm, "train.max_grad_norm"),
        "bf16.enabled": (precision == "bf16", "train.precision"),
        "fp16.enabled": (precision == "fp16", "train.precision"),
        "optimizer.params.lr": (train.lr, "train.lr"),
        "optimizer.params.weight_decay": (train.weight_decay, "train.weight_decay"),
        "optimizer.params.betas": (ADAM_BETAS, "(AdamW default)"),
        "optimizer.params.eps": (ADAM_EPS, "(AdamW default)"),
        **({"optimizer.type": ("Muon", "train.optimizer"), "optimizer.params.momentum": (MUON_MOMENTUM, "(Muon default)"),
            "optimizer.params.ns_method": (MUON_NS, "(torch's Newton-Schulz)")} if train.optimizer == "muon" else {}),
    }


def _get(config: dict, dotted: str):
    node = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _set(config: dict, dotted: str, value) -> None:
    *parents, leaf = dotted.split(".")
    node = config
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


def check_consistency(recipe, config: dict, world: int, label: str | None) -> None:
    """A value the config sets explicitly must equal the recipe's; "auto" or absent always agrees."""
    where = f"{label}: " if label else ""
    for key, (want, source) in expected_values(recipe, world).items():
        have = _get(config, key)
        if have is None or have == "auto":
            continue
        if not _same(have, want):
            raise WorkbenchError(f"{where}train.deepspeed: {key} is {have} in {config_path(recipe.train.deepspeed).name} "
                                 f"but {source} gives {want}; set it to \"auto\" or make them agree")
    if _get(config, "expert_parallel") is not None:
        raise WorkbenchError(f"{where}train.deepspeed: remove the 'expert_parallel' section; set train.expert_parallel: N "
                             "in the recipe (the workbench fills in AutoEP's settings for the model)")
    if _get(config, "scheduler") is not None:
        raise WorkbenchError(f"{where}train.deepspeed: remove the 'scheduler' section; the schedule comes from "
                             "train.lr_scheduler and train.warmup_ratio")


def _same(have, want) -> bool:
    try:
        if isinstance(want, list):
            return [float(x) for x in have] == [float(x) for x in want]
        if isinstance(want, str):
            return str(have).lower() == want.lower()
        return have == want if isinstance(want, bool) else float(have) == float(want)
    except (TypeError, ValueError):  # "eight", [1, 2] where a number belongs: it cannot agree
        return False


def recipe_problem(recipe) -> str | None:
    """What the recipe's DeepSpeed set-up cannot do, as `dotted.key: why`, or None (a recipe validator)."""
    try:
        config = load_config(recipe.train.deepspeed)
        if recipe.train.optimizer == "muon" and (problem := muon_problem(recipe, config)):
            return problem
        check_consistency(recipe, _optimizer_section(recipe, config), world_size(), label=None)
    except WorkbenchError as exc:
        return str(exc)
    if recipe.train.expert_parallel > 1:
        problem = expert_parallel_problem(recipe, zero_stage(config))
        if problem is None and "optimizer" not in config:
            problem = (f"train.expert_parallel: {recipe.train.expert_parallel} needs the DeepSpeed config's own "
                       f"'optimizer' section (as in zero2.json): DeepSpeed sorts the expert weights into their own "
                       "optimizer groups only when it builds the optimizer")
        return problem
    if zero_stage(config) != 3:
        return None
    if recipe.model.quantize != "none":
        return "model.quantize: 4/8-bit weights cannot be partitioned by ZeRO-3; use zero2 or model.quantize: none"
    if recipe.moe.esft != "none" and recipe.peft.type == "none":
        return ("moe.esft: full ESFT masks expert gradients, which ZeRO-3 partitions; "
                "use zero2 or ESFT with LoRA (peft.type: lora)")
    if recipe.method.reference == "model" and recipe.method.name in ("dpo", "kto"):
        return ("method.reference: a frozen reference copy is not partitioned under ZeRO-3; "
                "use method.reference: adapter with LoRA, or zero2")
    if recipe.method.name == "grpo" and recipe.method.beta > 0 and recipe.peft.type == "none":
        return ("method.beta: a full fine-tune's KL reference is a frozen copy, which is not partitioned under ZeRO-3; "
                "use LoRA (the adapter-disabled model is the reference), method.beta: 0, or zero2")
    return None


def muon_problem(recipe, config: dict) -> str | None:
    """What DeepSpeed's own Muon (`train.optimizer: muon`, the optimizer section of type Muon) cannot run here."""
    name, stage = recipe.train.deepspeed, zero_stage(config)
    if recipe.train.expert_parallel > 1:
        return (f"train.optimizer: muon is not supported with train.expert_parallel: {recipe.train.expert_parallel} "
                "(AutoEP replaces the routed experts with its own grouped weights, unchecked against Muon's per-expert "
                "split); use adamw or train.expert_parallel: 1")
    if stage != 2:
        return (f"train.optimizer: muon runs under DeepSpeed with ZeRO stage 2 only (its Muon, tried here); {name} is "
                f"stage {stage}: use train.deepspeed: zero2, or adamw")
    if any(offloads(config)):
        return f"train.optimizer: muon under DeepSpeed without optimizer or parameter offload only (untested); {name} offloads"
    section = config.get("optimizer")
    if section is not None and name not in SHIPPED and str(section.get("type", "")).lower() != "muon":
        return (f"train.optimizer: muon, but {config_path(name).name} has its own optimizer section of type "
                f"{section.get('type')}: set its type to Muon or remove the section (the workbench writes it)")
    foreign = [k for k in ("muon_lr", "adam_lr", "per_head_muon") if k in (section or {}).get("params", {})]
    if foreign:
        return (f"train.deepspeed: remove optimizer.params.{foreign[0]}: with train.optimizer: muon, train.lr serves "
                "both halves (Moonlight's RMS matching) and each matrix is orthogonalised whole")
    if recipe.train.max_grad_norm > 0:
        return ("train.max_grad_norm: DeepSpeed's Muon clips the orthogonalised updates, not the gradients (their norm "
                "grows with every matrix's size), so clipping would shrink each Muon step: set it to 0 with "
                "train.optimizer: muon under DeepSpeed")
    stacked = [t for t in recipe.peft.target_modules if t in ("routed_experts", "all", "all-linear")]
    if recipe.peft.type == "lora" and stacked:
        return (f"peft.target_modules: '{stacked[0]}' stacks the routed experts' LoRA matrices, which DeepSpeed's Muon "
                "would orthogonalise together, not per expert: drop routed experts from the targets, or train.deepspeed")
    return None


def _optimizer_section(recipe, config: dict) -> dict:
    """`train.optimizer: muon`: DeepSpeed's own Muon (a shipped config's AdamW section is the workbench's to replace; a
    user's section is kept when it is Muon, see muon_problem)."""
    if recipe.train.optimizer == "muon":
        section = config.get("optimizer") if recipe.train.deepspeed not in SHIPPED else None
        config = {**config, "optimizer": {"type": "Muon", "params": dict((section or {}).get("params", {}))}}
    return config


def expert_parallel_problem(recipe, stage: int) -> str | None:
    """What `train.expert_parallel: N` (DeepSpeed AutoEP) cannot be combined with, as `dotted.key: why`, or None."""
    n = recipe.train.expert_parallel
    key = f"train.expert_parallel: {n}"
    if stage == 3:
        return (f"{key} needs ZeRO stage 1 or 2: DeepSpeed cannot save AutoEP experts out of ZeRO-3 partitions (and "
                "experts split over processes are what ZeRO-3 would otherwise gather); use train.deepspeed: zero2")
    if stage == 0:
        return (f"{key} needs ZeRO stage 1 or 2 (DeepSpeed's stage-0 optimizers refuse AutoEP models whose experts "
                "are frozen); use train.deepspeed: zero2")
    if recipe.model.quantize != "none":
        return f"{key} repacks the routed experts into grouped tensors, which 4/8-bit weights cannot be; use model.quantize: none"
    if recipe.model.trust_remote_code:
        return f"{key} needs transformers' own DeepSeek MoE blocks (AutoEP's preset); set model.trust_remote_code: false"
    moe_targets = [t for t in recipe.peft.target_modules if t in ("routed_experts", "router", "all", "all-linear")]
    if recipe.peft.type != "none" and moe_targets:
        return (f"{key}: LoRA on the routed experts or the router ('{moe_targets[0]}' in peft.target_modules) is not "
                "supported under expert parallelism (AutoEP rebuilds both from the base weights); adapt attention, "
                "dense_mlp and shared_experts, or train the experts fully (peft.type: none)")
    inside = [m for m in recipe.peft.modules_to_save  # PEFT matches by suffix: mlp.gate, layers.3.mlp, ...
              if m.split(".")[-1] in ("mlp", "gate", "experts") or (".mlp." in f".{m}." and "shared_experts" not in m)]
    if recipe.peft.type != "none" and inside:
        return (f"{key}: peft.modules_to_save '{inside[0]}' copies a part of the MoE block, which AutoEP replaces; "
                "drop it or train the experts fully (peft.type: none)")
    if recipe.method.name == "distill":
        return (f"{key}: DeepSpeed would convert the teacher with the student's AutoEP settings, and on-policy "
                "generation is not synchronised across the expert-parallel group; drop train.expert_parallel")
    if recipe.method.reference == "model" and recipe.method.name in ("dpo", "kto"):
        return (f"{key}: the frozen reference copy would be converted by AutoEP as well (untested); use "
                "method.reference: adapter with LoRA, or drop train.expert_parallel")
    if recipe.method.name == "grpo":
        return f"{key}: GRPO's rollouts and routing replay run on transformers' MoE blocks; drop train.expert_parallel"
    balances = {recipe.moe.balance, *(stage.balance for stage in recipe.train.stages)}
    if "seq_aux" in balances:
        return (f"{key}: the sequence-wise balance loss reads transformers' router outputs, which AutoEP replaces; "
                "use moe.balance: aux_free or none")
    if recipe.mtp.enabled:
        return f"{key}: the MTP layer is trained on transformers' MoE block; drop mtp.enabled or train.expert_parallel"
    return None


def autoep_section(recipe, model_type: str | None) -> dict:
    """DeepSpeed's `expert_parallel` section for the recipe's model (AutoEP's DeepSeek preset, found under PEFT too)."""
    if model_type not in ("deepseek_v3", "deepseek_v2"):  # AutoEP's preset names are the model types
        raise WorkbenchError(f"train.expert_parallel: AutoEP's presets here cover DeepSeek-V2/V3 MoE models; this model "
                             f"is '{model_type or 'unknown'}': drop train.expert_parallel")
    return {"enabled": True, "autoep_size": recipe.train.expert_parallel, "preset_model": model_type,
            # a PEFT wrapper puts the blocks under base_model.model.: the preset's pattern, with any prefix
            "moe_layer_pattern": r"(?:.+\.)?model\.layers\.\d+\.mlp"}


def resolved_config(recipe, hidden_size: int | None = None, world: int | None = None,
                    model_type: str | None = None) -> dict:
    """The recipe's DeepSpeed config with every value the recipe decides filled in (no "auto" left there).

    Bucket sizes that depend on the model's width follow transformers' own rules (hidden^2 etc.), so the
    same config can partition a model at load time (ZeRO-3 `zero.Init`) before the trainer exists.
    """
    world = world_size() if world is None else world
    config = _optimizer_section(recipe, load_config(recipe.train.deepspeed))
    check_consistency(recipe, config, world, recipe.path)
    for key, (value, _) in expected_values(recipe, world).items():
        if key.startswith("optimizer.") and "optimizer" not in config:  # the Trainer's own AdamW
            continue
        if _get(config, key) in (None, "auto"):
            _set(config, key, value)
    zero = config.setdefault("zero_optimization", {})
    if hidden_size:
        sizes = {"reduce_bucket_size": hidden_size * hidden_size,
                 "stage3_prefetch_bucket_size": int(0.9 * hidden_size * hidden_size),
                 "stage3_param_persistence_threshold": 10 * hidden_size}
        for key, value in sizes.items():
            if zero.get(key) == "auto" or (key.startswith("stage3") and zero_stage(config) == 3 and key not in zero):
                zero[key] = value
    if recipe.train.expert_parallel > 1:
        config["expert_parallel"] = autoep_section(recipe, model_type)
    return config


def validate(config: dict) -> None:
    """DeepSpeed's own parser on a resolved config (raises a one-line WorkbenchError when it refuses it)."""
    prepare_process()
    from deepspeed.runtime.config import DeepSpeedConfig

    checked = {k: v for k, v in config.items() if k != "train_batch_size"}  # derived per world size at start-up
    try:
        DeepSpeedConfig(checked)
    except Exception as exc:  # DeepSpeed raises assorted types for a bad config
        raise WorkbenchError(f"train.deepspeed: DeepSpeed rejects the config: {str(exc).splitlines()[0]}") from None


def prepare_process() -> None:
    """Make a plain `workbench finetune` a valid one-process DeepSpeed job (and pick the CPU accelerator)."""
    import torch

    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(project_root() / ".cache" / "workbench" / "torch_extensions"))
    if "RANK" in os.environ:  # started by a launcher (deepspeed, torchrun, accelerate, srun)
        os.environ.setdefault("LOCAL_RANK", os.environ.get("SLURM_LOCALID", "0"))
        return
    os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1")
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(_free_port()))


def init_process_group() -> None:
    """Join the job's process group now (before the trainer would), on this rank's GPU where there is one."""
    import deepspeed
    import torch

    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    deepspeed.init_distributed()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def moe_block_classes(model) -> list[type]:
    """Module classes that hold a router (`gate`) and routed `experts`: DeepseekV3MoE, DeepseekV2Moe, ..."""
    classes = []
    for module in model.modules():
        if hasattr(module, "gate") and hasattr(module, "experts") and type(module) not in classes:
            classes.append(type(module))
    return classes


def register_moe_leaves(model) -> list[str]:
    """ZeRO-3: gather each MoE block's parameters as one unit.

    Without it ZeRO-3 fetches expert parameters as the forward touches them; experts that receive no
    tokens on one rank are never touched there, and the ranks wait on each other forever.
    """
    from deepspeed.utils import set_z3_leaf_modules

    classes = moe_block_classes(model)
    if classes:
        set_z3_leaf_modules(model, classes)
    return [cls.__name__ for cls in classes]
