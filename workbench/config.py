"""Recipes: one YAML file validated into one typed, frozen config tree.

    from workbench.config import load_recipe
    recipe = load_recipe("legal", overrides=["train.max_steps=5"])

A recipe is a name under `recipes/` or a path. It may `extends:` another recipe (a name or a path
relative to it); mappings merge key by key, everything else is replaced. Overrides are
`dotted.key=value`, parsed as YAML and type-checked like the file. Every error names the file and
the dotted key, e.g. `recipes/legal.yaml: train.lr: must be > 0, got -1`.
"""

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from workbench.errors import WorkbenchError
from workbench.paths import project_root, recipes_dir

Method = Literal["sft", "dpo", "kto", "orpo"]


@dataclass(frozen=True)
class ModelConfig:
    name: str = "deepseek-v3-tiny"  # a preset, a hub id or a local directory
    from_run: str | None = None  # start from another run's output: an MLflow run id or an experiment name
    revision: str | None = None
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    seed: int = 0  # initialisation seed of a preset
    experts_implementation: Literal["auto", "eager", "grouped_mm"] = "auto"
    attn_implementation: str | None = None
    trust_remote_code: bool = False
    quantize: Literal["none", "nf4", "int8"] = "none"  # QLoRA: load the base in 4-bit nf4 or 8-bit (CUDA, bitsandbytes)
    architecture: str | None = None  # a published model whose config these weights share (estimates without weights)


@dataclass(frozen=True)
class DataConfig:
    train: str = "data/legal/sft.jsonl"  # jsonl/json/parquet path (relative to the project) or hub dataset id
    split: str = "train"
    eval: str | None = None  # a separate eval file; otherwise eval_fraction of train is held out
    eval_split: str | None = None
    eval_fraction: float = 0.1
    max_rows: int | None = None
    seed: int = 42


@dataclass(frozen=True)
class MethodConfig:
    name: Method = "sft"
    beta: float = 0.1  # dpo/kto/orpo: strength of the preference term
    loss_type: str | None = None  # dpo: sigmoid (default), ipo, hinge, ...
    reference: Literal["adapter", "model"] = "adapter"  # dpo/kto: adapter-disabled model or a frozen copy
    desirable_weight: float = 1.0  # kto
    undesirable_weight: float = 1.0  # kto


@dataclass(frozen=True)
class PeftConfig:
    type: Literal["none", "lora"] = "none"
    r: int = 16
    alpha: int = 32
    dropout: float = 0.0
    target_modules: tuple[str, ...] = ("q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj")
    modules_to_save: tuple[str, ...] = ()


@dataclass(frozen=True)
class MoeConfig:
    balance: Literal["none", "aux_free", "seq_aux"] = "none"
    bias_update_speed: float = 0.001  # aux_free: gamma, the bias step per optimizer step
    seq_aux_alpha: float = 0.0001  # seq_aux: weight of the sequence-wise balance loss
    telemetry: bool = True  # per-layer expert load, balance and entropy metrics
    telemetry_every: int = 10  # log routing metrics every N optimizer steps
    train_router: bool = True  # full fine-tuning: update the router weights
    train_shared_experts: bool = True
    train_routed_experts: bool = True
    esft: Literal["none", "gate", "token"] = "none"  # expert-specialised tuning: score experts by gate or tokens
    esft_top_p: float = 0.2  # ESFT: per layer, the fewest experts whose normalised score sum reaches this
    esft_profile_rows: int = 128  # ESFT: training rows used to profile the base model's routing


@dataclass(frozen=True)
class TrainConfig:
    max_steps: int = -1  # -1: run `epochs` epochs
    epochs: float = 1.0
    batch_size: int = 8
    grad_accum: int = 1
    lr: float = 2e-4
    lr_scheduler: str = "cosine"
    warmup_ratio: float = 0.0  # share of steps spent warming up the learning rate (< 1)
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    max_length: int = 512
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto: bf16 on a GPU that has it, else fp32
    gradient_checkpointing: bool | None = None  # None: on for GPU, off for CPU
    packing: bool = False
    group_by_length: bool = True  # sft: batch rows of similar length together, so less compute goes to padding
    assistant_only_loss: bool = True
    eval_steps: int = 20
    logging_steps: int = 5
    save_steps: int = 50
    save_total_limit: int = 2
    seed: int = 42
    num_threads: int | None = None
    deepspeed: str | None = None  # zero2 | zero3 | zero3_offload (recipes/deepspeed/) or a JSON path
    output_dir: str | None = None  # default runs/<recipe>/<run-name>


@dataclass(frozen=True)
class EvalConfig:
    suite: str | None = None  # a suite of evals/suites.yaml run before and after training
    limit: int | None = None  # rows per task (overrides the suite's limits)
    retention_suite: str | None = None  # general skills that must survive fine-tuning
    retention_tolerance: float = 0.02  # largest allowed drop of any retention score (absolute)
    batch_size: int = 8


@dataclass(frozen=True)
class TrackConfig:
    experiment: str | None = None  # default: the recipe's name
    tracking_uri: str | None = None  # default: $MLFLOW_TRACKING_URI or sqlite:///<project>/mlflow.db
    run_name: str | None = None
    log_model: bool = True  # upload the adapter/model as a run artifact (else record its path)
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Recipe:
    name: str
    path: str
    description: str = ""
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    peft: PeftConfig = field(default_factory=PeftConfig)
    moe: MoeConfig = field(default_factory=MoeConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    track: TrackConfig = field(default_factory=TrackConfig)

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))


SECTIONS = {f.name: f.type for f in dataclasses.fields(Recipe) if dataclasses.is_dataclass(f.type)}


def resolve_recipe_path(name_or_path: str) -> Path:
    """A recipe name (`legal`) under recipes/, or a path to a YAML file."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") or candidate.exists():
        if not candidate.is_file():
            raise WorkbenchError(f"{name_or_path}: recipe file not found")
        return candidate.resolve()
    found = sorted(recipes_dir().rglob(f"{name_or_path}.yaml"))
    if not found:
        known = ", ".join(sorted(p.stem for p in recipes_dir().rglob("*.yaml"))) or "none"
        raise WorkbenchError(f"unknown recipe '{name_or_path}': no recipes/{name_or_path}.yaml (known: {known})")
    return found[0]


def load_recipe(name_or_path: str, overrides: list[str] = ()) -> Recipe:
    path = resolve_recipe_path(name_or_path)
    raw = _read_with_extends(path, seen=())
    label = _display(path)
    for item in overrides:
        _apply_override(raw, item, label)
    return _build_recipe(raw, path, label)


def _display(path: Path) -> str:
    try:
        return str(path.relative_to(project_root()))
    except ValueError:
        return str(path)


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise WorkbenchError(f"{_display(path)}:{where} invalid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise WorkbenchError(f"{_display(path)}: a recipe must be a mapping of sections")
    return data


def _read_with_extends(path: Path, seen: tuple[Path, ...]) -> dict:
    if path in seen:
        raise WorkbenchError(f"{_display(path)}: extends: circular chain {' -> '.join(map(_display, seen))}")
    data = _read_yaml(path)
    parent_ref = data.pop("extends", None)
    if parent_ref is None:
        return data
    parent_path = path.parent / parent_ref
    if not parent_path.is_file():
        try:
            parent_path = resolve_recipe_path(str(parent_ref))
        except WorkbenchError:
            raise WorkbenchError(f"{_display(path)}: extends: recipe '{parent_ref}' not found") from None
    return _merge(_read_with_extends(parent_path.resolve(), seen + (path,)), data)


def _merge(base: dict, top: dict) -> dict:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _apply_override(raw: dict, item: str, label: str) -> None:
    key, sep, text = item.partition("=")
    if not sep or not key:
        raise WorkbenchError(f"{label}: override '{item}': expected dotted.key=value")
    try:
        value = yaml.safe_load(text) if text else None
    except yaml.YAMLError:
        value = text
    parts = key.split(".")
    node = raw
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise WorkbenchError(f"{label}: {key}: cannot override inside a non-mapping value")
    node[parts[-1]] = value


def _build_recipe(raw: dict, path: Path, label: str) -> Recipe:
    unknown = set(raw) - set(SECTIONS) - {"description"}
    if unknown:
        raise WorkbenchError(f"{label}: {sorted(unknown)[0]}: unknown section (known: {', '.join(SECTIONS)}, description)")
    sections = {}
    for name, cls in SECTIONS.items():
        value = raw.get(name) or {}
        if not isinstance(value, dict):
            raise WorkbenchError(f"{label}: {name}: must be a mapping, got {type(value).__name__}")
        sections[name] = _build_section(cls, value, name, label)
    recipe = Recipe(name=path.stem, path=str(path), description=str(raw.get("description", "")), **sections)
    check_recipe(recipe, label)
    return recipe


def _build_section(cls: type, values: dict, prefix: str, label: str):
    hints = typing.get_type_hints(cls)
    unknown = set(values) - set(hints)
    if unknown:
        key = sorted(unknown)[0]
        raise WorkbenchError(f"{label}: {prefix}.{key}: unknown key (known: {', '.join(hints)})")
    kwargs = {k: _coerce(v, hints[k], f"{prefix}.{k}", label) for k, v in values.items()}
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, key: str, label: str) -> Any:
    """Check `value` against a type hint; convert lists to tuples and ints to floats."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, option, key, label)
            except WorkbenchError as exc:
                errors.append(exc)
        raise errors[0]
    if origin is Literal:
        if value not in args:
            raise WorkbenchError(f"{label}: {key}: must be one of {', '.join(map(str, args))}, got {value!r}")
        return value
    if origin is tuple:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise WorkbenchError(f"{label}: {key}: must be a list, got {type(value).__name__} {value!r}")
        return tuple(_coerce(v, args[0], f"{key}[{i}]", label) for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise WorkbenchError(f"{label}: {key}: must be a mapping, got {type(value).__name__}")
        return {str(k): str(v) for k, v in value.items()}
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):
        try:
            return float(value)  # YAML 1.1 reads `2e-4` as a string
        except ValueError:
            pass
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise WorkbenchError(f"{label}: {key}: must be {hint.__name__}, got {type(value).__name__} {value!r}")
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    """{"train": {"lr": 1}} -> {"train.lr": 1}, for MLflow params."""
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


POSITIVE = ("train.lr", "train.batch_size", "train.grad_accum", "train.max_length", "train.eval_steps",
            "train.logging_steps", "train.save_steps", "train.epochs", "peft.r", "peft.alpha", "method.beta",
            "moe.bias_update_speed", "moe.telemetry_every", "moe.esft_profile_rows")
NON_NEGATIVE = ("train.warmup_ratio", "train.weight_decay", "train.max_grad_norm", "peft.dropout",
                "data.eval_fraction", "method.desirable_weight", "method.undesirable_weight", "moe.seq_aux_alpha",
                "eval.retention_tolerance")


def check_recipe(recipe: Recipe, label: str) -> None:
    """Value ranges and cross-field rules; each failure names the dotted key."""
    flat = flatten(recipe.to_dict())
    for key in POSITIVE:
        if flat[key] <= 0:
            raise WorkbenchError(f"{label}: {key}: must be > 0, got {flat[key]}")
    for key in NON_NEGATIVE:
        if flat[key] < 0:
            raise WorkbenchError(f"{label}: {key}: must be >= 0, got {flat[key]}")
    if not recipe.train.warmup_ratio < 1:
        raise WorkbenchError(f"{label}: train.warmup_ratio: must be < 1, got {recipe.train.warmup_ratio}")
    if not recipe.data.eval_fraction < 1:
        raise WorkbenchError(f"{label}: data.eval_fraction: must be < 1, got {recipe.data.eval_fraction}")
    if recipe.train.max_steps == 0 or recipe.train.max_steps < -1:
        raise WorkbenchError(f"{label}: train.max_steps: must be -1 (use epochs) or > 0, got {recipe.train.max_steps}")
    if recipe.peft.type == "lora" and not recipe.peft.target_modules:
        raise WorkbenchError(f"{label}: peft.target_modules: LoRA needs at least one target")
    if recipe.method.reference == "model" and recipe.method.name not in ("dpo", "kto"):
        raise WorkbenchError(f"{label}: method.reference: only dpo and kto use a reference model")
    for key in ("suite", "retention_suite"):
        suite = getattr(recipe.eval, key)
        if suite is not None:
            from workbench.eval_tasks import suite_names  # reads evals/suites.yaml only

            if suite not in suite_names():
                raise WorkbenchError(f"{label}: eval.{key}: unknown suite '{suite}' (known: {', '.join(suite_names())})")
    if recipe.eval.limit is not None and recipe.eval.limit <= 0:
        raise WorkbenchError(f"{label}: eval.limit: must be > 0, got {recipe.eval.limit}")
    if recipe.moe.esft != "none" and not 0 < recipe.moe.esft_top_p <= 1:
        raise WorkbenchError(f"{label}: moe.esft_top_p: must be in (0, 1], got {recipe.moe.esft_top_p}")
    if recipe.moe.esft != "none" and recipe.train.weight_decay > 0:
        raise WorkbenchError(f"{label}: train.weight_decay: must be 0 with moe.esft (decay would move frozen experts)")
    if recipe.moe.esft != "none" and recipe.peft.type != "none" and (
            tuple(recipe.peft.target_modules) != ("routed_experts",) or recipe.peft.modules_to_save):
        raise WorkbenchError(f"{label}: peft.target_modules: ESFT with LoRA adapts only the selected experts: "
                             "set it to [routed_experts] and leave peft.modules_to_save empty")
    if recipe.model.quantize != "none" and recipe.peft.type != "lora":
        raise WorkbenchError(f"{label}: model.quantize: a quantized base trains adapters only: set peft.type: lora")
    if recipe.train.deepspeed:
        _check_deepspeed(recipe, label)
    if recipe.train.packing and recipe.method.name != "sft":
        raise WorkbenchError(f"{label}: train.packing: only sft packs sequences, not {recipe.method.name}")


def _check_deepspeed(recipe: Recipe, label: str) -> None:
    from workbench import distributed

    config = distributed.load_config(recipe.train.deepspeed)
    distributed.check_consistency(recipe, config, distributed.world_size(), label)
    if distributed.zero_stage(config) != 3:
        return
    if recipe.model.quantize != "none":
        raise WorkbenchError(f"{label}: model.quantize: 4/8-bit weights cannot be partitioned by ZeRO-3; "
                             "use zero2 or model.quantize: none")
    if recipe.moe.esft != "none" and recipe.peft.type == "none":
        raise WorkbenchError(f"{label}: moe.esft: full ESFT masks expert gradients, which ZeRO-3 partitions; "
                             "use zero2 or ESFT with LoRA (peft.type: lora)")
    if recipe.method.reference == "model" and recipe.method.name in ("dpo", "kto"):
        raise WorkbenchError(f"{label}: method.reference: a frozen reference copy is not partitioned under ZeRO-3; "
                             "use method.reference: adapter with LoRA, or zero2")
