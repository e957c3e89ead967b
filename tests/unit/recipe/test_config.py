"""Recipe loading: extends, overrides, the schema's types, ranges and enumerations, and one-line errors that name
file and key; the README's key tables document the schema exactly.

    .venv/bin/python -m pytest -q tests/unit/recipe/test_config.py
"""

import re
from pathlib import Path

import pytest
import yaml

from workbench.recipe.schema import SECTIONS
from workbench.recipe.load import load_recipe
from workbench.train.plan import check_references
from workbench.errors import WorkbenchError
from workbench.paths import project_root

RECIPES = sorted((project_root() / "recipes").rglob("*.yaml"))


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_every_shipped_recipe_validates_and_starts_with_its_command(path):
    recipe = load_recipe(str(path))
    check_references(recipe)
    assert recipe.name == path.stem
    first = path.read_text().splitlines()[0]
    assert first.startswith("# ") and ("make " in first or "workbench " in first), first


def test_legal_extends_base_and_overrides_win():
    recipe = load_recipe("legal", ["train.max_steps=5", "peft.r=4", "train.lr=0.01"])
    assert recipe.model.name == "deepseek-v3-tiny"  # from base.yaml
    assert recipe.peft.type == "lora"  # from legal.yaml
    assert (recipe.train.max_steps, recipe.peft.r, recipe.train.lr) == (5, 4, 0.01)
    assert isinstance(recipe.peft.target_modules, tuple)


def test_yaml_scientific_notation_reads_as_float():
    assert load_recipe("legal", ["train.lr=3e-4"]).train.lr == pytest.approx(3e-4)


def test_the_config_tree_is_frozen():
    recipe = load_recipe("legal")
    with pytest.raises(Exception):
        recipe.train.lr = 1.0


def _write(tmp_path: Path, text: str | bytes, name: str = "bad.yaml") -> str:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return str(path)


@pytest.mark.parametrize("key, value", [("model.from_run", "12345678901234567890123456789012"),
                                        ("model.from_run", "01234567012345670123456701234567"),  # YAML 1.1 octal
                                        ("track.run_name", "20261201"), ("track.run_name", "1_000"),
                                        ("track.experiment", "2e5"), ("track.run_name", "yes")])
def test_text_keys_keep_the_text_as_written(tmp_path, key, value):
    section, name = key.split(".")
    from_file = load_recipe(_write(tmp_path, f"{section}:\n  {name}: {value}\n", "ok.yaml"))
    from_override = load_recipe("base", [f"{key}={value}"])
    assert getattr(getattr(from_file, section), name) == value == getattr(getattr(from_override, section), name)


@pytest.mark.parametrize(
    "text, overrides, expected",
    [
        ("train:\n  lr: -1\n", [], "train.lr: must be > 0, got -1"),
        ("train:\n  batch_size: eight\n", [], "train.batch_size: must be an integer, got eight"),
        ("train:\n  learning_rate: 0.1\n", [], "train.learning_rate: unknown key (known: max_steps,"),
        ("trian:\n  lr: 0.1\n", [], "trian: unknown section (did you mean 'train'?)"),
        ("method:\n  name: ppo\n", [], "method.name: must be one of sft, dpo, kto, orpo, distill, grpo, got ppo"),
        ("{}\n", ["train.max_steps=abc"], "train.max_steps: must be an integer, got abc"),
        ("{}\n", ["train.max_steps=0"], "train.max_steps: must be -1 (use epochs) or > 0, got 0"),
        ("{}\n", ["peft.r=0"], "peft.r: must be > 0, got 0"),
        ("{}\n", ["train.packing=true", "method.name=dpo"], "train.packing: only sft packs"),
        ("extends: nowhere.yaml\n", [], "extends: recipe 'nowhere.yaml' not found"),
        ("extends: [a, b]\n", [], "extends: must name one recipe"),
        ("train: [1, 2\n", [], "invalid YAML"),
        ("train:\n  lr: 0.1\n  lr: 0.2\n", [], "invalid YAML: key 'lr' appears twice"),
        ("train: 5\n", [], "train: must be a mapping, got 5"),
        ("- train\n", [], "a recipe must be a mapping of sections"),
        ("", [], "the recipe is empty"),
        ("# only a comment\n", [], "the recipe is empty"),
        # every enumerated value is checked when the recipe loads
        ("{}\n", ["train.lr_scheduler=cosine_typo"], "train.lr_scheduler: must be one of linear, cosine,"),
        ("{}\n", ["model.attn_implementation=flashy"], "model.attn_implementation: must be one of eager, sdpa,"),
        ("{}\n", ["method.name=dpo", "method.loss_type=sigmoidd"], "method.loss_type: must be one of sigmoid, hinge,"),
        ("{}\n", ["method.name=kto", "method.loss_type=sigmoid"], "method.loss_type: must be one of kto, apo_zero_unpaired"),
        ("{}\n", ["method.loss_type=ipo"], "method.loss_type: sft has no loss types"),
        ("{}\n", ["peft.type=lora", "peft.target_modules=[no_such_module]"],
         "peft.target_modules[0]: unknown target 'no_such_module'"),
        ("{}\n", ["model.dtype=fp64"], "model.dtype: must be one of auto, float32, bfloat16, float16"),
        ("{}\n", ["model.experts_implementation=batched"], "model.experts_implementation: must be one of auto,"),
        ("{}\n", ["train.precision=fp8"], "train.precision: must be one of auto, fp32, bf16, fp16"),
        ("{}\n", ["moe.balance=auxfree"], "moe.balance: must be one of none, aux_free, seq_aux, got auxfree"),
        ("{}\n", ["moe.esft=tokens"], "moe.esft: must be one of none, gate, token, got tokens (did you mean 'token'?)"),
        ("{}\n", ["train.deepspeed=zero4"], "train.deepspeed: 'zero4' is neither a shipped config"),
        ("{}\n", ["eval.suite=legal_chatt"], "eval.suite: unknown suite 'legal_chatt' (did you mean 'legal_chat'?)"),
        ("{}\n", ["model.quantize=nf8"], "model.quantize: must be one of none, nf4, int8"),
        # ranges
        ("{}\n", ["train.num_threads=-2"], "train.num_threads: must be > 0, got -2"),
        ("{}\n", ["data.max_rows=-1"], "data.max_rows: must be > 0, got -1"),
        ("{}\n", ["data.eval_fraction=1"], "data.eval_fraction: must be < 1, got 1"),
        ("{}\n", ["train.warmup_ratio=-0.1"], "train.warmup_ratio: must be >= 0, got -0.1"),
        ("{}\n", ["train.lr=nan"], "train.lr: must be a finite number, got nan"),
        ("{}\n", ["train.epochs=.inf"], "train.epochs: must be a number, got .inf"),
        ("{}\n", ["train.epochs=1e400"], "train.epochs: must be a finite number, got 1e400"),
        ("{}\n", ["train.seed=-1"], "train.seed: must be >= 0, got -1"),
        ("{}\n", ["train.seed=99999999999"], "train.seed: must be <= 4294967295"),
        ("{}\n", ["moe.esft_top_p=1.5"], "moe.esft_top_p: must be <= 1, got 1.5"),
        ("{}\n", ["eval.limit=0"], "eval.limit: must be > 0, got 0"),
        ("{}\n", ["train.save_total_limit=0"], "train.save_total_limit: must be > 0, got 0"),
        # types
        ("{}\n", ["moe.telemetry=maybe"], "moe.telemetry: must be true or false, got maybe"),
        ("{}\n", ["train.batch_size=8.5"], "train.batch_size: must be an integer, got 8.5"),
        ("{}\n", ["peft.r=[4]"], "peft.r: must be an integer, got ['4']"),
        ("{}\n", ["model.name="], "model.name: must be text, got null"),
        ("{}\n", ["data.train=null"], "data.train: must be text, got null"),
        ("{}\n", ["track.tags=5"], "track.tags: must be a mapping, got 5"),
        ("{}\n", ["track.run_name=a/b"], "track.run_name: must be a plain folder name"),
        # distillation and its teacher
        ("{}\n", ["method.name=distill"], "teacher: method distill needs a teacher"),
        ("{}\n", ["teacher.from_run=legal"], "teacher: only method distill uses a teacher (method.name is sft)"),
        ("{}\n", ["method.name=distill", "teacher.name=deepseek-v3-tiny", "method.beta=1.5"],
         "method.beta: distill interpolates forward KL (0) to reverse KL (1): must be <= 1, got 1.5"),
        ("{}\n", ["method.name=dpo", "method.beta=0"], "method.beta: must be > 0 for dpo, got 0"),
        ("{}\n", ["method.on_policy_share=-0.5"], "method.on_policy_share: must be >= 0, got -0.5"),
        ("{}\n", ["method.sft_weight=2"], "method.sft_weight: must be <= 1, got 2"),
        ("{}\n", ["method.temperature=0"], "method.temperature: must be > 0, got 0"),
        ("{}\n", ["teacher.nmae=x"], "teacher.nmae: unknown key (did you mean 'name'?)"),
        ("{}\n", ["method.name=distill", "teacher.name=deepseek-v3-tiny", "method.sft_weight=0.5", "method.on_policy_share=0.5"],
         "method.sft_weight: the cross-entropy is on the rows' answers"),
        ("{}\n", ["method.name=distill", "teacher.from_run=legal", "teacher.quantize=nf4"],
         "teacher.quantize: a run's weights load as saved"),
        # stages
        ("{}\n", ["train.stages=[{name: a, share: 0.5, train: all}, {name: b, share: 0.4, train: router}]"],
         "train.stages: the shares add up to 0.9; they must add up to 1"),
        ("{}\n", ["train.stages=[{name: a, share: 1, train: [routers]}]"],
         "train.stages[0].train[0]: must be one of all, attention, router,"),
        ("{}\n", ["train.stages=[{name: a, share: 1, train: []}]"], "train.stages[0].train: must not be empty"),
        ("{}\n", ["train.stages=[{name: a, share: 0, train: all}]"], "train.stages[0].share: must be > 0, got 0"),
        ("{}\n", ["train.stages=[{name: a, share: 1, train: all, lr: 2}]"],
         "train.stages[0].lr: unknown key (known: name, share, train, lr_scale, balance, sparsity)"),
        ("{}\n", ["train.stages=[{share: 1, train: all}]"], "train.stages[0].name: missing (it is required)"),
        ("{}\n", ["train.stages=[{name: a, share: 0.5, train: all}, {name: a, share: 0.5, train: all}]"],
         "train.stages: stage names must differ ('a' twice)"),
        ("{}\n", ["train.stages=[{name: a, share: 1, train: all, balance: auxfree}]"],
         "train.stages[0].balance: must be one of none, aux_free, seq_aux"),
        ("{}\n", ["train.stages=[{name: a, share: 1, train: all}]", "train.deepspeed=zero2"],
         "train.stages: DeepSpeed's partitioned optimizer does not follow"),
        ("{}\n", ["train.stages=all"], "train.stages: must be a list"),
        # multi-token prediction
        ("{}\n", ["mtp.enabled=true", "method.name=dpo"], "mtp.enabled: the MTP loss is trained with sft only"),
        ("{}\n", ["mtp.enabled=true", "train.packing=true"], "mtp.enabled: the MTP layer would attend across packed"),
        ("{}\n", ["mtp.enabled=true", "train.deepspeed=zero3_offload"], "mtp.enabled: the MTP layer is added after"),
        ("{}\n", ["mtp.weight=0"], "mtp.weight: must be > 0, got 0"),
        ("{}\n", ["mtp.init=last"], "mtp.init: must be one of auto, checkpoint, last_layer, got last"),
        ("{}\n", ["mtp.speculative_prompts=-1"], "mtp.speculative_prompts: must be >= 0, got -1"),
        ("{}\n", ["mtp.wieght=0.1"], "mtp.wieght: unknown key (did you mean 'weight'?)"),
        ("{}\n", ["mtp.report=always", "method.name=dpo"], "mtp.report: always measures on chat rows"),
        ("{}\n", ["mtp.enabled=true", "moe.esft=gate", "peft.type=none"], "mtp.enabled: ESFT freezes all but"),
        ("{}\n", ["mtp.enabled=true", "train.stages=[{name: a, share: 1, train: all}]"],
         "mtp.enabled: train.stages has no group"),
        ("{}\n", ["mtp.enabled=true", "model.trust_remote_code=true"], "mtp.enabled: needs transformers' own"),
        ("{}\n", ["method.name=grpo"], "method.rewards: method grpo needs at least one reward"),
        ("{}\n", ["method.name=grpo", "method.rewards={math_anwser: 1}"],
         "method.rewards.math_anwser: unknown reward (did you mean 'math_answer'?)"),
        ("{}\n", ["method.name=grpo", "method.rewards={math_answer: heavy}"], "method.rewards.math_answer: must be a number"),
        ("{}\n", ["method.name=grpo", "method.rewards={math_answer: inf}"], "method.rewards.math_answer: must be a finite"),
        ("{}\n", ["method.rewards={math_answer: 1}"], "method.rewards: only method grpo uses rewards"),
        ("{}\n", ["moe.routing_replay=rollout"], "moe.routing_replay: only method grpo generates rollouts"),
        ("{}\n", ["moe.routing_replay=always"], "moe.routing_replay: must be one of none, rollout, got always"),
        ("{}\n", ["method.name=grpo", "method.rewards={format: 1}", "method.format_pattern=(unclosed"],
         "method.format_pattern: not a regular expression"),
        ("{}\n", ["method.name=grpo", "method.rewards={math_answer: 1}", "method.generations=3", "train.batch_size=8"],
         "train.batch_size: GRPO samples method.generations=3 completions per prompt"),
        ("{}\n", ["method.name=grpo", "method.rewards={math_answer: 1}", "method.generations=1"],
         "method.generations: must be >= 2, got 1"),
        ("{}\n", ["method.name=grpo", "method.rewards={math_answer: 1}", "method.use_vllm=true",
                   "moe.routing_replay=rollout"], "moe.routing_replay: the experts are recorded from transformers'"),
        ("{}\n", ["method.name=grpo", "method.rewards={math_answer: 1}", "method.loss_type=sigmoid"],
         "method.loss_type: must be one of grpo, dapo"),
        ("{}\n", ["method.name=grpo", "method.rewards={math_answer: 0}"], "method.rewards: every weight is 0"),
        ("{}\n", ["method.name=grpo", "method.rewards={math_answer: 1}", "method.beta=0.1", "train.deepspeed=zero3"],
         "method.beta: a full fine-tune's KL reference is a frozen copy"),
        ("{}\n", ["method.name=grpo", "method.rewards={math_answer: 1}", "method.importance_sampling=sentence"],
         "method.importance_sampling: must be one of token, sequence, got sentence"),
        # expert parallelism (DeepSpeed AutoEP)
        ("{}\n", ["train.expert_parallel=2"], "train.expert_parallel: 2 runs through DeepSpeed's AutoEP: set train.deepspeed"),
        ("{}\n", ["train.expert_parallel=0"], "train.expert_parallel: must be > 0, got 0"),
        ("{}\n", ["train.expert_parallel=two"], "train.expert_parallel: must be an integer, got two"),
        ("{}\n", ["train.expert_parallel=2", "train.deepspeed=zero3"], "train.expert_parallel: 2 needs ZeRO stage 1 or 2"),
        ("{}\n", ["train.expert_parallel=8", "train.deepspeed=zero3_offload"], "train.expert_parallel: 8 needs ZeRO stage 1"),
        ("{}\n", ["train.expert_parallel=2", "train.deepspeed=zero2", "peft.type=lora",
                   "peft.target_modules=[attention, routed_experts]"], "LoRA on the routed experts or the router"),
        ("{}\n", ["train.expert_parallel=2", "train.deepspeed=zero2", "peft.type=lora", "peft.target_modules=[all]"],
         "LoRA on the routed experts or the router ('all' in peft.target_modules)"),
        ("{}\n", ["train.expert_parallel=2", "train.deepspeed=zero2", "peft.type=lora",
                   "peft.target_modules=[attention, router]"], "('router' in peft.target_modules) is not supported"),
        ("{}\n", ["train.expert_parallel=2", "train.deepspeed=zero2", "peft.type=lora", "peft.modules_to_save=[gate]"],
         "peft.modules_to_save 'gate' copies a part of the MoE block"),
        ("{}\n", ["train.expert_parallel=2", "train.deepspeed=zero2", "peft.type=lora",
                   "peft.modules_to_save=[lm_head, mlp.gate]"], "peft.modules_to_save 'mlp.gate' copies a part"),
        ("{}\n", ["train.expert_parallel=2", "train.deepspeed=zero2", "method.name=distill",
                   "teacher.name=deepseek-v3-tiny"], "would convert the teacher with the student's AutoEP settings"),
        ("{}\n", ["train.expert_parallel=2", "train.deepspeed=zero2", "method.name=dpo", "method.reference=model"],
         "the frozen reference copy would be converted by AutoEP"),
        ("{}\n", ["train.expert_parallel=2", "train.deepspeed=zero2", "method.name=grpo",
                   "method.rewards={math_answer: 1}"], "train.expert_parallel: 2: GRPO's rollouts"),
        ("{}\n", ["train.expert_parallel=2", "train.deepspeed=zero2", "moe.balance=seq_aux"],
         "the sequence-wise balance loss reads transformers' router outputs"),
        ("{}\n", ["train.expert_parallel=2", "train.deepspeed=zero2", "mtp.enabled=true"],
         "train.expert_parallel: 2: the MTP layer is trained on transformers' MoE block"),
        ("{}\n", ["train.expert_parallel=2", "train.deepspeed=zero2", "peft.type=lora", "model.quantize=nf4"],
         "train.expert_parallel: 2 repacks the routed experts"),
        ("{}\n", ["train.expert_parallel=2", "train.deepspeed=zero2", "model.trust_remote_code=true"],
         "needs transformers' own DeepSeek MoE blocks"),
        # overrides themselves
        ("{}\n", ["train.lr"], "override 'train.lr': expected dotted.key=value"),
        ("{}\n", ["train..lr=1"], "override 'train..lr=1': expected dotted.key=value"),
        ("train:\n  lr: 0.1\n", ["train.lr.x=1"], "train.lr: cannot override inside a non-mapping value"),
        ("{}\n", ["train.lr=-1", "train.batch_size=0"], "(and 1 more problem)"),
    ],
)
def test_bad_recipes_name_file_and_key(tmp_path, text, overrides, expected):
    """The schema's checks, and the references the plan resolves (suites, rewards, DeepSpeed configs), name the
    file and the key alike."""
    with pytest.raises(WorkbenchError) as err:
        check_references(load_recipe(_write(tmp_path, text), overrides))
    message = str(err.value)
    assert expected in message
    assert message.startswith(f"{tmp_path / 'bad.yaml'}: ") and "\n" not in message


def test_a_recipe_that_is_not_utf8_names_the_file_and_the_byte(tmp_path):
    latin1 = "train:\n  lr: 0.1\ndescription: Vertragsklausel f\u00fcr Mieter\n".encode("latin-1")
    with pytest.raises(WorkbenchError) as err:
        load_recipe(_write(tmp_path, latin1))
    offset = latin1.index(b"\xfc")
    assert str(err.value) == f"{tmp_path / 'bad.yaml'}: not UTF-8 text: byte 0xfc at offset {offset} (save the file as UTF-8)"


def test_a_byte_order_mark_is_fine(tmp_path):
    assert load_recipe(_write(tmp_path, b"\xef\xbb\xbftrain:\n  lr: 0.5\n", "bom.yaml")).train.lr == 0.5


def test_unknown_recipe_name_lists_known_ones():
    with pytest.raises(WorkbenchError, match=r"unknown recipe 'legl' \(did you mean 'legal'\?\).*known: .*legal"):
        load_recipe("legl")


def test_circular_extends_is_reported(tmp_path):
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(WorkbenchError, match="circular"):
        load_recipe(str(tmp_path / "a.yaml"))


def _readme_tables() -> dict[str, str]:
    """{dotted key: documented default text} from the README's key tables (`### Every key`, `eval:`)."""
    readme = (project_root() / "README.md").read_text()
    documented, section = {}, None
    for line in readme.splitlines():
        if heading := re.fullmatch(r"\*\*`(\w+):`\*\*", line.strip()):
            section = heading[1]
        if not line.startswith("| `") or section is None and "`eval." not in line:
            continue
        keys_cell, default_cell = [c.strip() for c in line.strip("|").split("|")][:2]
        keys = re.findall(r"`([\w.]+)`", keys_cell)
        defaults = re.findall(r"`([^`]*)`", default_cell)
        for i, key in enumerate(keys):
            dotted = key if "." in key else f"{section}.{key}"
            documented[dotted] = defaults[i] if len(defaults) == len(keys) else defaults[0] if len(defaults) == 1 else None
        if line.startswith("| `output_dir`") or line.startswith("| `tags`"):
            section = None if line.startswith("| `tags`") else section
    return documented


def _schema_defaults() -> dict[str, object]:
    return {f"{name}.{key}": field.default for name, cls in SECTIONS.items() for key, field in cls.model_fields.items()}


def _same(text: str, default) -> bool:
    if default is None:
        return text == "null"
    if isinstance(default, bool):
        return text == str(default).lower()
    if isinstance(default, (int, float)):
        return float(text) == float(default)
    if isinstance(default, (tuple, dict)):
        return yaml.safe_load(text) == (list(default) if isinstance(default, tuple) else default)
    return text == default


def test_the_readme_documents_every_key_and_its_default():
    documented, schema = _readme_tables(), _schema_defaults()
    assert sorted(documented) == sorted(schema)
    checked = 0
    for key, text in documented.items():
        if text is not None and not text.startswith(("$", "the ")):  # prose defaults ("the recipe's name")
            assert _same(text, schema[key]), (key, text, schema[key])
            checked += 1
    assert checked >= 60, checked  # nearly every default is written as a value the test can compare
