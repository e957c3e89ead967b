"""The checks the plan (workbench.train.plan) runs on a recipe before anything starts, each a one-line error.

    from workbench.train.checks import check_tracking, check_architecture
    check_tracking(recipe)                    # the MLflow store answers, the sqlite folder exists and is writable
    facts = check_architecture(recipe, config)   # LoRA targets, MoE settings, attention against a meta-device build

Each check names the recipe key (and the file, row or folder) it is about. Nothing here opens an MLflow run,
loads weights or writes outside a throwaway probe.
"""

import json
import os
from pathlib import Path

from workbench.errors import WorkbenchError
from workbench.paths import project_root


def check_references(recipe) -> None:
    """What the recipe names outside itself, resolved: eval suites (evals/suites.yaml or a questions file, every row
    read), rewards (known names, a user's file and function), the format pattern, and the DeepSpeed config file
    against the recipe. Errors name the recipe file and the key, like the schema's."""
    from workbench.recipe.load import display_path

    if problem := reference_problem(recipe):
        raise WorkbenchError(f"{display_path(Path(recipe.path))}: {problem}")


def reference_problem(recipe) -> str | None:
    from workbench.evaluate.tasks import check_suite_ref

    for key in ("suite", "retention_suite"):
        ref = getattr(recipe.eval, key)
        if ref is not None:
            try:
                check_suite_ref(ref)
            except ValueError as exc:
                return f"eval.{key}: {exc}"
    if recipe.method.name == "grpo" and (problem := _rewards_problem(recipe.method)):
        return problem
    if recipe.train.deepspeed:
        from workbench.scale.deepspeed import recipe_problem

        return recipe_problem(recipe)
    return None


def _rewards_problem(method) -> str | None:
    from workbench.evaluate import rewards
    from workbench.recipe.schema import did_you_mean

    known = f"known: {', '.join(rewards.NAMES)}, or path/to/file.py:function"
    if not method.rewards:
        return f"method.rewards: method grpo needs at least one reward, e.g. {{math_answer: 1.0}} ({known})"
    for name in method.rewards:
        if name not in rewards.NAMES and not rewards.is_user_spec(name):
            return f"method.rewards.{name}: unknown reward{did_you_mean(name, rewards.NAMES)} ({known})"
    if method.format_pattern is not None and (problem := rewards.check_pattern(method.format_pattern)):
        return f"method.format_pattern: not a regular expression: {problem}"
    return None


def reward_fields(recipe):
    """grpo: each row must carry what its rewards read (a math answer that parses, tests to run, ...)."""
    if recipe.method.name != "grpo":
        return None
    from workbench.evaluate import rewards

    names = list(recipe.method.rewards)
    for name in names:
        if rewards.is_user_spec(name):
            rewards.load_user_reward(name, key=f"method.rewards.{name}")  # a missing file or function fails here
    return lambda row, where: rewards.check_row(row, names, where)


def try_rewards(recipe, rows) -> tuple[list, list[float]]:
    """The recipe's reward functions and weights, each called once the way TRL will: on the first two rows with two
    placeholder completions. A signature that does not fit, or a value that is not one finite number (or None) per
    completion, stops here instead of at the first step; a crash on a placeholder is only a notice."""
    from transformers import TrainerState

    from workbench.evaluate import rewards

    funcs, weights = rewards.build(dict(recipe.method.rewards), format_pattern=recipe.method.format_pattern)
    sample = [rows[i % len(rows)] for i in range(2)]
    chat = isinstance(sample[0]["prompt"], list)
    placeholders = ["0", "The answer is 1."]  # no answers: what matters here is that the calls themselves work
    columns = {key: [row[key] for row in sample] for key in sample[0] if key != "prompt"}
    for name, func in zip(recipe.method.rewards, funcs):
        if not rewards.is_user_spec(name):
            continue
        try:
            func(prompts=[row["prompt"] for row in sample],
                 completions=[[{"role": "assistant", "content": text}] if chat else text for text in placeholders],
                 completion_ids=[[0], [1]], log_extra=lambda *a, **k: None, log_metric=lambda *a, **k: None,
                 trainer_state=TrainerState(global_step=0, max_steps=max(recipe.train.max_steps, 1)), **columns)
        except rewards.RewardCallError as error:
            if isinstance(error.cause, TypeError):  # its arguments do not fit what TRL passes: it cannot run
                raise
            print(f"notice: {error} (on a placeholder completion before training; it may be fine on real ones)")
    return funcs, weights


def check_mtp(recipe, model) -> None:
    """mtp.enabled needs a DeepSeek-V3 model, and MTP weights in the checkpoint where the recipe relies on them
    (`model`: the resolved base model)."""
    config = model.config
    if not recipe.mtp.enabled or config is None:
        return
    from workbench.model.mtp import checkpoint_mtp_keys

    if getattr(config, "model_type", None) != "deepseek_v3":
        raise WorkbenchError(f"mtp.enabled: multi-token prediction is DeepSeek-V3's module; this model is "
                             f"{getattr(config, 'model_type', type(config).__name__)}")
    if recipe.mtp.init == "last_layer" and recipe.peft.type != "none":
        raise WorkbenchError("mtp.init: last_layer builds the MTP layer in memory, and a LoRA adapter saves neither it "
                             "nor its frozen weights; use mtp.init: checkpoint with LoRA, or a full fine-tune")
    from workbench.model.mtp import holds_weights

    folder = model.weights_dir
    if not holds_weights(folder):  # a hub checkpoint not downloaded yet: what it holds is known once it loads
        return
    if recipe.mtp.init == "last_layer" or checkpoint_mtp_keys(folder, config.num_hidden_layers):
        return
    layer = f"model.layers.{config.num_hidden_layers}.*"
    if recipe.mtp.init == "checkpoint":
        raise WorkbenchError(f"mtp.init: checkpoint, but {folder} holds no MTP weights ({layer}); set mtp.init: "
                             "last_layer to start the module from the last decoder layer")
    if recipe.peft.type != "none":
        raise WorkbenchError(f"mtp.enabled: with LoRA the MTP layer's own weights stay frozen and unsaved, so they must "
                             f"come from the checkpoint, and {folder} holds none ({layer}); start from a model that has "
                             "one (deepseek-v3-tiny-mtp, DeepSeek-V3, or a full fine-tune with mtp.enabled)")


def check_distill_rows(recipe, splits, tokenizer_dir: str | None) -> None:
    """Distillation keeps the last train.max_length tokens of a row and needs a prompt left to start from (TRL's
    collator raises mid-run otherwise): name the first row whose answer alone fills the window."""
    if tokenizer_dir is None:
        return
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    limit = recipe.train.max_length
    for part, rows in (("data.train", splits.train), ("data.eval", splits.eval)):
        for row in rows if rows is not None else ():
            messages = row["messages"]
            prompt = tokenizer.apply_chat_template(messages[:-1], add_generation_prompt=True, tokenize=False)
            full = tokenizer.apply_chat_template(messages, tokenize=False)
            n_prompt = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
            n_answer = len(tokenizer(full, add_special_tokens=False)["input_ids"]) - n_prompt
            if n_prompt == 0 or n_answer >= limit:
                why = (f"its answer alone is {n_answer} tokens, which fills train.max_length ({limit})" if n_prompt
                       else "nothing comes before its assistant turn")
                raise WorkbenchError(f"{part}: the row whose answer starts {messages[-1]['content'][:40]!r}: {why}, "
                                     "so no prompt is left to distil from; raise train.max_length or shorten the row")


def check_teacher(teacher, student) -> dict:
    """The teacher must score the student's tokens: the same vocabulary, token for token (one-line error). Both are
    resolved models (workbench.model.load.ResolvedModel); the teacher's quantization was checked when it resolved."""
    teacher_config, teacher_dir = teacher.config, teacher.tokenizer_dir
    student_config, student_dir = student.config, student.tokenizer_dir
    sizes = [getattr(c.get_text_config(), "vocab_size", None) if c is not None else None
             for c in (teacher_config, student_config)]
    if None not in sizes and sizes[0] != sizes[1]:
        raise WorkbenchError(f"teacher: its vocabulary has {sizes[0]} tokens and the student's {sizes[1]}; distillation "
                             "matches next-token distributions token by token, so both need the same tokenizer")
    if teacher_dir and student_dir:
        from transformers import AutoTokenizer

        try:
            vocabs = [AutoTokenizer.from_pretrained(d).get_vocab() for d in (teacher_dir, student_dir)]
        except Exception as exc:  # a tokenizer file transformers cannot read: name the folder, not the library frame
            raise WorkbenchError(f"teacher: cannot read the tokenizers in {teacher_dir} and {student_dir} to compare "
                                 f"them: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
        if vocabs[0] != vocabs[1]:
            differ = len(set(vocabs[0].items()) ^ set(vocabs[1].items())) // 2
            raise WorkbenchError(f"teacher: its tokenizer differs from the student's ({differ} tokens map to other ids); "
                                 "distillation needs the same tokenizer")
    if teacher_config is None:
        return {}
    return {"model_type": teacher_config.model_type, "layers": getattr(teacher_config, "num_hidden_layers", None),
            "routed_experts": getattr(teacher_config, "n_routed_experts", None)}


def check_tracking(recipe) -> str:
    """The store must be one MLflow can open from here (workbench.track.store): a sqlite file in a folder that
    exists and can be written, a server that answers, a database whose server accepts a connection. Returns the URI."""
    from workbench.track.store import check_store, store_key
    from workbench.track.tracker import tracking_uri

    key = "track.tracking_uri" if recipe.track.tracking_uri else store_key()  # where the URI came from
    return check_store(tracking_uri(recipe), key=key, write=True)


def eval_contamination(recipe) -> dict[str, tuple[int, int]]:
    """{eval data file: (rows sharing a 13-gram with the recipe's training file, rows)} for the recipe's eval
    suites (workbench.evaluate.contamination); empty when there is no suite or the training data is not a local file."""
    suites = [s for s in dict.fromkeys((recipe.eval.suite, recipe.eval.retention_suite)) if s]
    train = Path(recipe.data.train).expanduser()
    train = train if train.is_absolute() else project_root() / train
    if not suites or not train.is_file():
        return {}
    from workbench.evaluate.contamination import check, suite_data_files

    files = list(dict.fromkeys(f for suite in suites for f in suite_data_files(suite)))
    counts = check([train], files).counts if files else {}
    shown = lambda path: str(Path(path).relative_to(project_root())) if Path(path).is_relative_to(project_root()) else path  # noqa: E731
    return {shown(path): value for path, value in counts.items()}


def check_output_dir(path: Path) -> None:
    """A new run never writes into a folder that holds another run's work (that would be lost), and its folder can
    be created and written (tried with a throwaway folder beside it, removed at once)."""
    info = path / "run.json"
    if path.exists() and not path.is_dir():
        raise WorkbenchError(f"train.output_dir: {path} exists and is not a folder")
    _check_writable(path)
    if info.is_file():
        state = json.loads(info.read_text()).get("state", "finished")
        hint = "continue it with --resume" if state != "finished" else "choose another train.output_dir"
        raise WorkbenchError(f"train.output_dir: {path} already holds a {state} run; {hint}")


def _check_writable(path: Path) -> None:
    import tempfile

    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise WorkbenchError(f"train.output_dir: {path} cannot be created: {existing} is a file")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".workbench-probe-", dir=existing))
    except OSError as exc:
        raise WorkbenchError(f"train.output_dir: {path} cannot be created or written: "
                             f"{exc.strerror or exc} (in {existing})") from None


def check_architecture(recipe, config) -> dict:
    """Build the architecture on the meta device (the dense layers + one MoE layer) and resolve the recipe's
    LoRA, MoE and attention settings against it. Returns what it found."""
    import warnings

    from workbench.moe.routing import find_routers

    with warnings.catch_warnings():  # library deprecation notices about a throwaway meta model
        warnings.simplefilter("ignore", FutureWarning)
        return _resolve_against(recipe, config, find_routers)


def _resolve_against(recipe, config, find_routers) -> dict:
    model = _meta_model(recipe, config)
    routers = find_routers(model)
    moe_keys = {"moe.balance": recipe.moe.balance != "none", "moe.esft": recipe.moe.esft != "none",
                "moe.train_router": not recipe.moe.train_router,
                "moe.train_shared_experts": not recipe.moe.train_shared_experts,
                "moe.train_routed_experts": not recipe.moe.train_routed_experts,
                "train.stages": any(stage.balance not in (None, "none") or stage.sparsity
                                    for stage in recipe.train.stages),
                "moe.routing": recipe.moe.routing != "top_k", "moe.sparsity": recipe.moe.sparsity > 0}
    needs_routers = [key for key, used in moe_keys.items() if used]
    if needs_routers and not routers:
        raise WorkbenchError(f"{needs_routers[0]}: needs DeepSeek-V3 routers (sigmoid scores with a correction bias); "
                             f"this {config.model_type} model has none")
    if recipe.moe.routing != "top_k":  # the blocks can be patched and the expert bounds fit (a one-line error if not)
        from workbench.moe.top_p import apply_routing, routing_spec

        apply_routing(model, routing_spec(recipe.moe))
    facts = {"model_type": config.model_type, "moe_layers_built": len(routers),
             "routed_experts": routers[0][1].e_score_correction_bias.numel() if routers else 0}
    if recipe.train.stages:
        from workbench.moe.control import apply_trainable

        apply_trainable(model, recipe.moe)
    if recipe.peft.type == "lora":
        _check_modules_to_save(model, recipe.peft.modules_to_save)
        from workbench.model.lora import wrap

        model, facts["adapters"] = wrap(model, recipe.peft, quiet=True)
    if recipe.train.stages:
        from workbench.train.stages import check_groups, trainable_groups

        check_groups(recipe.train.stages, trainable_groups(model))
    return facts


def _meta_model(recipe, config):
    import copy

    import torch
    from transformers import AutoModelForCausalLM

    config = copy.deepcopy(config)
    if getattr(config, "quantization_config", None) is not None:
        del config.quantization_config
    dense = getattr(config, "first_k_dense_replace", None)
    if dense is not None and getattr(config, "num_hidden_layers", 0) > dense + 1:
        config.num_hidden_layers = dense + 1  # every kind of layer once: enough to resolve targets, and fast
    kwargs = {"trust_remote_code": recipe.model.trust_remote_code}
    if recipe.model.attn_implementation:
        kwargs["attn_implementation"] = recipe.model.attn_implementation
    try:
        with torch.device("meta"):
            return AutoModelForCausalLM.from_config(config, **kwargs)
    except Exception as exc:  # the user's config.json decides what runs here: report it, whatever it raised
        key = "model.attn_implementation" if isinstance(exc, ImportError) or "ttention" in str(exc) else "model.name"
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise WorkbenchError(f"{key}: transformers cannot build this model here: {first}") from None


def _check_modules_to_save(model, names) -> None:
    modules = [name for name, _ in model.named_modules()]
    for i, name in enumerate(names):
        if not any(m == name or m.endswith(f".{name}") for m in modules):
            leaves = sorted({m.rsplit(".", 1)[-1] for m in modules if m and not m.rsplit(".", 1)[-1].isdigit()})
            raise WorkbenchError(f"peft.modules_to_save[{i}]: no module named '{name}' in this model "
                                 f"(module names: {', '.join(leaves)})")
