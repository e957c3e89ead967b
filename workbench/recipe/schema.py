"""Recipes: one YAML file validated into one typed, frozen config tree (pydantic v2 models).

    from workbench.recipe.load import load_recipe
    recipe = load_recipe("legal", overrides=["train.max_steps=5"])

A recipe is a name under `recipes/` or a path. It may `extends:` another recipe (a name or a path
relative to it); mappings merge key by key, everything else is replaced. Overrides are
`dotted.key=value`, parsed as YAML and type-checked like the file. Every error is one line naming the
file and the dotted key, e.g. `recipes/legal.yaml: train.lr: must be > 0, got -1`.

YAML is read with every scalar as text (`yaml.BaseLoader`) and typed by the schema, so a run id made
only of digits stays the string it was written as, `2e-4` is a float, and `yes` is not a run name.
"""

import difflib
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    model_validator,
)

from workbench.moe.targets import known_targets
from workbench.recipe.moe_rules import moe_routing_problem

SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup", "inverse_sqrt")


ATTENTION = ("eager", "sdpa", "flash_attention_2", "flash_attention_3", "flash_attention_4", "flex_attention")


LOSS_TYPES = {  # TRL 1.16's loss types that run without further settings (exo_pair needs label smoothing)
    "dpo": ("sigmoid", "hinge", "ipo", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot", "aot_unpaired", "apo_zero",
            "apo_down", "discopop", "sft", "sigmoid_norm"),
    "kto": ("kto", "apo_zero_unpaired"),
    "grpo": ("grpo", "dapo", "dr_grpo", "bnpo", "cispo", "sapo", "luspo"),
}


def _listed(value):
    return [value] if isinstance(value, str) else value


def _tag_text(value):  # tags from Python code may carry numbers; MLflow stores text
    return {k: str(v) if isinstance(v, (int, float)) else v for k, v in value.items()} if isinstance(value, dict) else value


Text = Annotated[str, Field(min_length=1)]


OptText = Text | None


PosInt = Annotated[int, Field(gt=0)]


Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]  # numpy's seed range, which set_seed feeds


Number = Annotated[float, Field(allow_inf_nan=False)]


PosFloat = Annotated[Number, Field(gt=0)]


NonNegFloat = Annotated[Number, Field(ge=0)]


Share = Annotated[Number, Field(ge=0, lt=1)]


def _member(options, what: str) -> AfterValidator:
    """A value from a list known only at run time (suites in evals/suites.yaml, LoRA target names)."""
    def check(value):
        if value is not None and value not in options():
            raise ValueError(f"unknown {what} '{value}'{did_you_mean(value, options())} (known: {', '.join(options())})")
        return value
    return AfterValidator(check)


def _steps(value: int) -> int:
    if value == 0 or value < -1:
        raise ValueError(f"must be -1 (use epochs) or > 0, got {value}")
    return value


def _folder(name):
    if name is not None and ("/" in name or "\\" in name or name in (".", "..")):
        raise ValueError(f"must be a plain folder name (no / or \\), got {name!r}")
    return name


Names = Annotated[tuple[Text, ...], BeforeValidator(_listed)]


Targets = Annotated[tuple[Annotated[Text, _member(known_targets, "target")], ...], BeforeValidator(_listed)]


Suite = OptText  # a suite of evals/suites.yaml or a questions file (checked by the plan: workbench.train.plan)


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelConfig(Section):
    name: Text = "deepseek-v3-tiny"  # a preset, a hub id or a local directory
    from_run: OptText = None  # start from another run's output: an MLflow run id or an experiment name
    revision: OptText = None
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    seed: Seed = 0  # initialisation seed of a preset
    experts_implementation: Literal["auto", "eager", "grouped_mm"] = "auto"
    attn_implementation: Literal[ATTENTION] | None = None
    trust_remote_code: bool = False
    quantize: Literal["none", "nf4", "int8"] = "none"  # QLoRA: 4-bit nf4 or 8-bit base weights (CUDA, bitsandbytes)
    architecture: OptText = None  # a published model whose config these weights share (estimates without weights)


class DataConfig(Section):
    train: Text = "data/legal/sft.jsonl"  # jsonl/json/parquet path (relative to the project) or hub dataset id
    split: Text = "train"
    eval: OptText = None  # a separate eval file; otherwise eval_fraction of train is held out
    eval_split: OptText = None
    eval_fraction: Share = 0.1
    max_rows: PosInt | None = None
    seed: Seed = 42


class MethodConfig(Section):
    name: Literal["sft", "dpo", "kto", "orpo", "distill", "grpo"] = "sft"
    beta: NonNegFloat = 0.1  # dpo/kto/orpo: preference strength (> 0); distill: 0 forward ... 1 reverse KL; grpo: KL weight
    loss_type: OptText = None  # dpo/kto/grpo: TRL's loss type (checked per method below); grpo: null = dapo / grpo (GSPO)
    reference: Literal["adapter", "model"] = "adapter"  # dpo/kto: adapter-disabled model or a frozen copy
    desirable_weight: PosFloat = 1.0  # kto
    undesirable_weight: PosFloat = 1.0  # kto
    on_policy_share: Annotated[Number, Field(ge=0, le=1)] = 0.0  # distill: share of batches the student samples itself
    temperature: PosFloat = 1.0  # distill: softens both distributions in the loss; sampling temperature when on-policy
    max_new_tokens: PosInt = 128  # distill: length of the student's on-policy completions
    sft_weight: Annotated[Number, Field(ge=0, le=1)] = 0.0  # distill: weight of the answers' cross-entropy in the loss
    rewards: dict[Text, Number] = {}  # grpo: reward name (or path/to/file.py:function) -> weight (workbench.evaluate.rewards)
    generations: Annotated[int, Field(ge=2)] = 4  # grpo: completions sampled per prompt (one group)
    importance_sampling: Literal["token", "sequence"] = "token"  # grpo: token = GRPO, sequence = GSPO
    iterations: PosInt = 1  # grpo: policy updates per batch of rollouts (mu)
    clip_epsilon: PosFloat = 0.2  # grpo: the ratio's clipping range
    format_pattern: OptText = None  # grpo: the `format` reward's regular expression (null: think-then-answer)
    use_vllm: bool = False  # grpo: generate with vLLM (GPU nodes, the gpu extra); routing replay needs false


class TeacherConfig(ModelConfig):
    """distill: the model the student learns from, named like `model:` (a preset, directory, hub id or a run)."""
    name: OptText = None

    @property
    def given(self) -> bool:
        return bool(self.name or self.from_run)


class PeftConfig(Section):
    type: Literal["none", "lora"] = "none"
    r: PosInt = 16
    alpha: PosInt = 32
    dropout: Share = 0.0
    target_modules: Targets = ("q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj")
    modules_to_save: Names = ()


class MoeConfig(Section):
    balance: Literal["none", "aux_free", "seq_aux"] = "none"
    bias_update_speed: PosFloat = 0.001  # aux_free: gamma, the bias step per optimizer step
    seq_aux_alpha: NonNegFloat = 0.0001  # seq_aux: weight of the sequence-wise balance loss
    telemetry: bool = True  # per-layer expert load, balance and entropy metrics
    telemetry_every: PosInt = 10  # log routing metrics every N optimizer steps
    train_router: bool = True  # full fine-tuning: update the router weights
    train_shared_experts: bool = True
    train_routed_experts: bool = True
    esft: Literal["none", "gate", "token"] = "none"  # expert-specialised tuning: score experts by gate or tokens
    esft_top_p: Annotated[Number, Field(gt=0, le=1)] = 0.2  # ESFT: per layer, the fewest experts reaching this share
    esft_profile_rows: PosInt = 128  # ESFT: training rows used to profile the base model's routing
    routing_replay: Literal["none", "rollout"] = "none"  # grpo: route the update's forwards to the rollout's experts
    routing: Literal["top_k", "top_p"] = "top_k"  # top_p: each token takes the fewest experts reaching top_p (moe/top_p.py)
    top_p: Annotated[Number, Field(gt=0, le=1)] = 0.5  # top_p: the share of normalised score a token's experts reach
    min_experts: PosInt = 1  # top_p: fewest experts per token
    max_experts: PosInt | None = None  # top_p: most experts per token; null: all its group limit allows
    sparsity: NonNegFloat = 0.0  # weight of the gate-entropy penalty (moe/sparsity.py); 0: off
    sparsity_target: NonNegFloat = 0.0  # nats: tokens whose gate-share entropy is at or below it are not pushed
    gate_threshold: Annotated[Number, Field(gt=0, lt=1)] = 0.1  # effective experts: gate shares above it


GROUPS = ("all", "attention", "router", "shared_experts", "routed_experts", "dense_mlp", "embeddings", "lm_head", "norms")


class StageConfig(Section):
    name: Text
    share: Annotated[Number, Field(gt=0, le=1)]  # of the run's optimizer steps
    train: Annotated[tuple[Literal[GROUPS], ...], BeforeValidator(_listed), Field(min_length=1)]
    lr_scale: PosFloat = 1.0
    balance: Literal["none", "aux_free", "seq_aux"] | None = None  # None: moe.balance
    sparsity: NonNegFloat | None = None  # None: moe.sparsity


class TrainConfig(Section):
    max_steps: Annotated[int, AfterValidator(_steps)] = -1  # -1: run `epochs` epochs
    epochs: PosFloat = 1.0
    batch_size: PosInt = 8
    grad_accum: PosInt = 1
    lr: PosFloat = 2e-4
    lr_scheduler: Literal[SCHEDULERS] = "cosine"
    optimizer: Literal["adamw", "muon"] = "adamw"  # muon: Muon for the hidden matrices (per expert), AdamW for the rest
    warmup_ratio: Share = 0.0  # share of steps spent warming up the learning rate
    weight_decay: NonNegFloat = 0.0
    max_grad_norm: NonNegFloat = 1.0  # 0: no clipping
    max_length: PosInt = 512
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto: bf16 on a GPU that has it, else fp32
    gradient_checkpointing: bool | None = None  # None: on for GPU, off for CPU
    packing: bool = False
    group_by_length: bool = True  # sft: batch rows of similar length together, so less compute goes to padding
    assistant_only_loss: bool = True
    eval_steps: PosInt = 20
    logging_steps: PosInt = 5
    save_steps: PosInt = 50
    save_total_limit: PosInt = 2
    seed: Seed = 42
    num_threads: PosInt | None = None
    deepspeed: OptText = None  # zero2 | zero3 | zero3_offload (recipes/deepspeed/) or a JSON path
    expert_parallel: PosInt = 1  # N > 1: routed experts split over N processes (DeepSpeed AutoEP, with zero2)
    output_dir: OptText = None  # default runs/<recipe>/<run-name>
    stages: tuple[StageConfig, ...] = ()  # phases that each train some parameter groups (workbench.train.stages)


class MtpConfig(Section):
    """Multi-token prediction (workbench.model.mtp, workbench.train.mtp): DeepSeek-V3's MTP module trained beside the main model (sft)."""
    enabled: bool = False
    weight: PosFloat = 0.1  # the MTP loss's weight in the training loss (V3: 0.3, then 0.1)
    init: Literal["auto", "checkpoint", "last_layer"] = "auto"  # auto: the checkpoint's MTP weights, else the last layer
    report: Literal["trained", "always", "never"] = "trained"  # measure before/after: a trained layer, also a kept one
    speculative_prompts: Annotated[int, Field(ge=0)] = 16  # held-out prompts for the acceptance rate at the end; 0: skip
    speculative_tokens: PosInt = 48  # new tokens per prompt in that measurement


class EvalConfig(Section):
    suite: Suite = None  # a suite of evals/suites.yaml run before and after training
    limit: PosInt | None = None  # rows per task (overrides the suite's limits)
    retention_suite: Suite = None  # general skills that must survive fine-tuning
    retention_tolerance: NonNegFloat = 0.02  # largest allowed drop of any retention score (absolute)
    batch_size: PosInt = 8
    unsafe_weak_sandbox: bool = False  # run code tasks even where the sandbox is below its minimum isolation
    samples: Annotated[int, Field(ge=0)] = 16  # held-out prompts answered before and after (samples.jsonl); 0: off
    sample_tokens: PosInt = 64  # the longest sample answer, in new tokens


class TrackConfig(Section):
    experiment: OptText = None  # default: the recipe's name
    tracking_uri: OptText = None  # default: $MLFLOW_TRACKING_URI or sqlite:///<project>/mlflow.db
    run_name: Annotated[OptText, AfterValidator(_folder)] = None  # also the output folder's name
    log_model: bool = True  # upload the adapter/model as a run artifact (else record its path)
    tags: Annotated[dict[Text, str], BeforeValidator(_tag_text)] = {}


class Recipe(Section):
    name: str
    path: str
    description: str = ""
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    method: MethodConfig = MethodConfig()
    teacher: TeacherConfig = TeacherConfig()
    peft: PeftConfig = PeftConfig()
    moe: MoeConfig = MoeConfig()
    mtp: MtpConfig = MtpConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    track: TrackConfig = TrackConfig()

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @model_validator(mode="after")
    def _cross_field(self):
        for rule in CROSS_FIELD_RULES:
            if problem := rule(self):
                raise ValueError(problem)
        return self


SECTIONS = {name: field.annotation for name, field in Recipe.model_fields.items() if name not in ("name", "path", "description")}


def _loss_type(r: Recipe):
    allowed = LOSS_TYPES.get(r.method.name, ())
    if r.method.loss_type is not None and r.method.loss_type not in allowed:
        if not allowed:
            return f"method.loss_type: {r.method.name} has no loss types; leave it null"
        return f"method.loss_type: must be one of {', '.join(allowed)} for {r.method.name}, got '{r.method.loss_type}'"


def _esft(r: Recipe):
    if r.moe.esft == "none":
        return None
    if r.train.weight_decay > 0:
        return "train.weight_decay: must be 0 with moe.esft (decay would move frozen experts)"
    if r.peft.type != "none" and (tuple(r.peft.target_modules) != ("routed_experts",) or r.peft.modules_to_save):
        return ("peft.target_modules: ESFT with LoRA adapts only the selected experts: set it to [routed_experts] "
                "and leave peft.modules_to_save empty")


def _deepspeed(r: Recipe):  # the DeepSpeed config file itself is read and checked by the plan (workbench.train.plan)
    if r.train.expert_parallel > 1 and not r.train.deepspeed:
        return (f"train.expert_parallel: {r.train.expert_parallel} runs through DeepSpeed's AutoEP: set "
                "train.deepspeed: zero2 and launch a multiple of that many processes (make finetune ... GPUS=N)")


def _distill(r: Recipe):
    if r.method.name != "distill":
        if r.teacher.given:
            return f"teacher: only method distill uses a teacher (method.name is {r.method.name})"
        if r.method.beta == 0 and r.method.name in ("dpo", "kto", "orpo"):
            return f"method.beta: must be > 0 for {r.method.name}, got 0"
        return None
    if not r.teacher.given:
        return ("teacher: method distill needs a teacher: set teacher.from_run (a run id or a recipe's name) or "
                "teacher.name (a preset, a model directory or a hub id)")
    if r.method.beta > 1:
        return f"method.beta: distill interpolates forward KL (0) to reverse KL (1): must be <= 1, got {r.method.beta:g}"
    if r.method.sft_weight and r.method.on_policy_share:
        return ("method.sft_weight: the cross-entropy is on the rows' answers, which the student's own samples replace "
                "in on-policy batches; set sft_weight: 0 or on_policy_share: 0")
    if r.teacher.from_run and r.teacher.quantize != "none":
        return "teacher.quantize: a run's weights load as saved; quantize a teacher named by teacher.name"


def _grpo(r: Recipe):
    method = r.method
    if method.name != "grpo":
        if method.rewards:
            return f"method.rewards: only method grpo uses rewards (method.name is {method.name})"
        if r.moe.routing_replay != "none":
            return f"moe.routing_replay: only method grpo generates rollouts to replay (method.name is {method.name})"
        return None
    # the reward names, files and pattern are resolved by the plan (workbench.train.plan.check_references)
    if method.rewards and not any(method.rewards.values()):
        return "method.rewards: every weight is 0, so no completion can earn more than another; give one a weight"
    rows = r.train.batch_size * r.train.grad_accum
    if rows % method.generations:
        return (f"train.batch_size: GRPO samples method.generations={method.generations} completions per prompt, so "
                f"batch_size x grad_accum ({rows}) must be a multiple of it")
    if method.use_vllm and r.moe.routing_replay != "none":
        return ("moe.routing_replay: the experts are recorded from transformers' generate; vLLM's are not visible "
                "here: set method.use_vllm: false or moe.routing_replay: none")


def _stages(r: Recipe):
    stages = r.train.stages
    if not stages:
        return None
    total = sum(stage.share for stage in stages)
    if abs(total - 1) > 1e-6:
        return f"train.stages: the shares add up to {total:g}; they must add up to 1"
    names = [stage.name for stage in stages]
    if len(set(names)) < len(names):
        return f"train.stages: stage names must differ ('{next(n for n in names if names.count(n) > 1)}' twice)"
    if r.train.deepspeed:
        return ("train.stages: DeepSpeed's partitioned optimizer does not follow parameters switched on and off "
                "between steps; drop train.deepspeed or train.stages")


def _mtp(r: Recipe):
    if r.mtp.report == "always" and r.method.name not in ("sft", "distill"):
        return f"mtp.report: always measures on chat rows (sft, distill); method {r.method.name} has none"
    if not r.mtp.enabled:
        return None
    if r.method.name != "sft":
        return (f"mtp.enabled: the MTP loss is trained with sft only (method.name is {r.method.name}); the preference "
                "and distillation methods keep a checkpoint's MTP layer as it is")
    if r.train.packing:
        return "mtp.enabled: the MTP layer would attend across packed sequences; set train.packing: false"
    if r.model.quantize != "none":
        return "mtp.enabled: a quantized base is not supported with the MTP loss; set model.quantize: none"
    if r.moe.esft != "none":
        return "mtp.enabled: ESFT freezes all but the selected experts, the MTP layer's too; drop moe.esft or mtp"
    if r.train.stages:
        return "mtp.enabled: train.stages has no group for the MTP layer's own projections; drop one of them"
    if r.model.trust_remote_code:
        return "mtp.enabled: needs transformers' own DeepSeek-V3 code; set model.trust_remote_code: false"
    if str(r.train.deepspeed).startswith("zero3"):  # a JSON config's stage is checked when it is resolved
        return ("mtp.enabled: the MTP layer is added after loading, outside ZeRO-3's partitioned load; use zero2 or "
                "drop train.deepspeed")


CROSS_FIELD_RULES = (
    lambda r: r.train.optimizer == "muon" and r.model.quantize != "none" and "train.optimizer: muon is not supported "
    f"with model.quantize: {r.model.quantize} (QLoRA's bitsandbytes path is untested with Muon); use adamw or none",
    _grpo,
    _mtp,
    _loss_type,
    _distill,
    _stages,
    _deepspeed,
    _esft,
    moe_routing_problem,
    lambda r: r.peft.type == "lora" and not r.peft.target_modules and "peft.target_modules: LoRA needs at least one target",
    lambda r: r.method.reference == "model" and r.method.name not in ("dpo", "kto")
    and "method.reference: only dpo and kto use a reference model",
    lambda r: r.model.quantize != "none" and r.peft.type != "lora"
    and "model.quantize: a quantized base trains adapters only: set peft.type: lora",
    lambda r: r.train.packing and r.method.name != "sft" and f"train.packing: only sft packs sequences, not {r.method.name}",
)


def did_you_mean(word: str, options) -> str:
    match = difflib.get_close_matches(str(word), [str(o) for o in options], n=1)
    return f" (did you mean '{match[0]}'?)" if match else ""
