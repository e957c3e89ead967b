"""The command line as a user meets it: bad input of every kind is one line with exit code 2 and opens no MLflow
run, and a good run ends with a parseable last line.

    .venv/bin/python -m pytest -q tests/recipes/test_cli.py
"""

import json
import re
import subprocess
import sys

import pytest

from workbench.cli import main
from workbench.paths import project_root


def _cli(*args, env_extra=None):
    import os

    env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "workbench.cli", *args], capture_output=True, text=True,
                          cwd=project_root(), env=env, timeout=300)


@pytest.mark.parametrize(
    "args, expected",
    [
        (["validate", "no-such-recipe"], "unknown recipe 'no-such-recipe'"),
        (["validate", "legal", "train.lr=-1"], "recipes/legal.yaml: train.lr: must be > 0, got -1"),
        (["finetune", "legal", "model.name=nobody/nothing"], "model.name: 'nobody/nothing' is neither a preset"),
        (["finetune", "legal", "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    ],
)
def test_bad_input_is_one_line_with_exit_code_2_from_a_real_process(args, expected, tmp_path):
    result = _cli(*args, f"track.tracking_uri=sqlite:///{tmp_path}/m.db", f"train.output_dir={tmp_path}/o")
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: "), result.stderr[-2000:]
    assert expected in result.stderr


def _broken_model_dir(tmp_path):
    folder = tmp_path / "broken-model"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "deepseek_v3", "hidden_size": 256,')  # cut off mid-file
    return folder


def _model_dir(tmp_path, name, drop=(), edit=None):
    """A copy of the tiny preset's files with some left out or one rewritten."""
    import shutil

    from workbench.model.presets import preset_dir

    folder = tmp_path / name
    shutil.copytree(preset_dir("deepseek-v3-tiny", 0), folder, ignore=shutil.ignore_patterns(*drop))
    if edit:
        file, text = edit
        (folder / file).write_text(text)
    return folder


def _bad_config_values(tmp_path):
    from workbench.model.presets import preset_dir

    config = json.loads((preset_dir("deepseek-v3-tiny", 0) / "config.json").read_text())
    return _model_dir(tmp_path, "bad-values", edit=("config.json", json.dumps({**config, "hidden_size": "big"})))


def _dense_model(tmp_path):
    """The tiny preset with every layer dense: no router for top-p routing or the sparsity penalty to act on."""
    from workbench.model.presets import preset_dir

    config = json.loads((preset_dir("deepseek-v3-tiny", 0) / "config.json").read_text())
    return _model_dir(tmp_path, "dense", edit=("config.json", json.dumps({**config, "first_k_dense_replace": 4})))


def _sharded_model(tmp_path, broken: str):
    """The tiny preset saved in shards with an index, then one shard removed or its header made unreadable: an
    expert-parallel run reads each process's share from the shards, so the plan opens every shard's header."""
    from workbench.model.presets import preset_dir

    folder = _model_dir(tmp_path, f"sharded-{broken}", drop=("model.safetensors",))
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(preset_dir("deepseek-v3-tiny", 0)).save_pretrained(folder, max_shard_size="300KB")
    shard = sorted(folder.glob("model-*.safetensors"))[1]
    if broken == "missing":
        shard.unlink()
    else:
        shard.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00 not a header ")
    return folder


def _finished_run_dir(tmp_path):
    folder = tmp_path / "done"
    folder.mkdir()
    (folder / "run.json").write_text(json.dumps({"run_id": "0" * 32, "state": "finished"}))
    return folder


def _latin1(tmp_path, name):
    path = tmp_path / name
    row = {"messages": [{"role": "user", "content": "Qu'est-ce qu'un bail?"},
                        {"role": "assistant", "content": "Un contrat de location \u00e0 dur\u00e9e d\u00e9termin\u00e9e."}]}
    path.write_bytes((json.dumps(row, ensure_ascii=False) + "\n").encode("latin-1"))
    return path


BROKEN_JSON = '{"version": '


def _batch_reward(tmp_path):
    """A user reward that returns one value for a whole batch of completions (TRL wants one per completion)."""
    path = tmp_path / "batch_reward.py"
    path.write_text("def whole_batch(prompts, completions, **kwargs):\n    return [1.0]\n")
    return ["method.name=grpo", "data.train=data/legal-calc/prompts.jsonl", "eval.suite=null", "peft.type=lora",
            "method.generations=4", "train.batch_size=4", f"method.rewards={{{path}:whole_batch: 1.0}}"]


def _under_a_file(tmp_path):
    (tmp_path / "a-file").write_text("x")
    return [f"train.output_dir={tmp_path / 'a-file' / 'run'}"]


def _deepspeed_json(tmp_path, optimizer: str, offload: bool = False) -> str:
    """A user's ZeRO-2 config with its own optimizer section (and CPU offload of the optimizer)."""
    config = json.loads((project_root() / "recipes/deepspeed/zero2.json").read_text())
    config["optimizer"]["type"] = optimizer
    if offload:
        config["zero_optimization"]["offload_optimizer"] = {"device": "cpu"}
    path = tmp_path / f"{optimizer.lower()}{'-offload' if offload else ''}.json"
    path.write_text(json.dumps(config))
    return str(path)
# (overrides or a callable building them from tmp_path, the words the one-line error must contain)
FINETUNE_BAD = [
    (["train.lr_scheduler=cosine_typo"], "train.lr_scheduler: must be one of linear, cosine"),
    (["model.attn_implementation=flashy"], "model.attn_implementation: must be one of eager, sdpa"),
    (["model.attn_implementation=flash_attention_2"], "model.attn_implementation: transformers cannot build"),
    (["peft.target_modules=[no_such_module]"], "peft.target_modules[0]: unknown target 'no_such_module'"),
    (["peft.modules_to_save=[embeddings]"], "peft.modules_to_save[0]: no module named 'embeddings'"),
    (["train.num_threads=-2"], "train.num_threads: must be > 0, got -2"),
    (["data.max_rows=-1"], "data.max_rows: must be > 0, got -1"),
    (["data.train=data/legal/README.md"], "data.train: data/legal/README.md: unsupported file type '.md'"),
    (["data.train=data/legal/missing.jsonl"], "data.train: file not found"),
    (["model.from_run=0123456789abcdef0123456789abcdef"], "model.from_run: no run with id 0123456789abcdef"),
    (lambda tmp: [f"model.name={_broken_model_dir(tmp)}"], "config.json: not valid JSON (line 1"),
    (lambda tmp: [f"model.name={_model_dir(tmp, 'no-weights', drop=['*.safetensors'])}"], "holds no weights"),
    (lambda tmp: [f"model.name={_model_dir(tmp, 'bad-tok', edit=('tokenizer.json', BROKEN_JSON))}"], "the tokenizer in"),
    (lambda tmp: [f"model.name={_bad_config_values(tmp)}"], "config.json: transformers cannot read it: Validation error"),
    (lambda tmp: [f"data.train={_latin1(tmp, 'rows.jsonl')}"], "rows.jsonl: not UTF-8 text: byte 0xe0 at offset"),
    (lambda tmp: [f"train.output_dir={_finished_run_dir(tmp)}"], "already holds a finished run"),
    (lambda tmp: [f"track.tracking_uri=sqlite:///{tmp}/no/such/folder/m.db"], "track.tracking_uri: the folder"),
    (["track.tracking_uri=http://127.0.0.1:9"], "track.tracking_uri: cannot reach the MLflow server"),
    (["track.tracking_uri=ftp://example.org/x"], "track.tracking_uri: 'ftp://example.org/x' has an unknown scheme"),
    (["eval.suite=nope"], "eval.suite: unknown suite 'nope'"),
    (["method.name=dpo", "method.loss_type=sigmoidd"], "method.loss_type: must be one of sigmoid"),
    # the tracking store is down, the output folder cannot be made: before any run opens, without the libraries' noise
    (["track.tracking_uri=postgresql://wb:wb@127.0.0.1:1/mlflow"], "track.tracking_uri: cannot reach the tracking database"),
    (["train.output_dir=/proc/x"], "train.output_dir: /proc/x cannot be created or written"),
    (_under_a_file, "cannot be created:"),
    # resolved by the plan: validate and finetune refuse them alike
    (["train.deepspeed=zero2", "train.expert_parallel=3"], "8 routed experts per layer cannot be split evenly over 3"),
    (lambda tmp: ["train.deepspeed=zero2", "train.expert_parallel=2", f"model.name={_sharded_model(tmp, 'missing')}"],
     "model.safetensors.index.json names model-00002-of-"),
    (lambda tmp: ["train.deepspeed=zero2", "train.expert_parallel=2", f"model.name={_sharded_model(tmp, 'garbled')}"],
     "is not a readable safetensors file"),
    (["train.deepspeed=zero4"], "train.deepspeed: 'zero4' is neither a shipped config"),
    (["model.quantize=nf4"], "model.quantize: nf4 loads the weights through bitsandbytes' CUDA kernels"),
    (_batch_reward, "returned 1 values for 2 completions"),
    # train.optimizer: muon where it cannot run (workbench.train.optim, workbench.scale.deepspeed.muon_problem)
    (["train.optimizer=sgd"], "train.optimizer: must be one of adamw, muon, got sgd"),
    (["train.optimizer=muon", "train.deepspeed=zero3"], "train.optimizer: muon runs under DeepSpeed with ZeRO stage 2 only"),
    (["train.optimizer=muon", "train.deepspeed=zero2", "train.expert_parallel=2"],
     "train.optimizer: muon is not supported with train.expert_parallel: 2"),
    (["train.optimizer=muon", "model.quantize=nf4"], "train.optimizer: muon is not supported with model.quantize: nf4"),
    (lambda tmp: ["train.optimizer=muon", f"train.deepspeed={_deepspeed_json(tmp, 'AdamW')}"],
     "train.optimizer: muon, but adamw.json has its own optimizer section of type AdamW"),
    (lambda tmp: ["train.optimizer=muon", f"train.deepspeed={_deepspeed_json(tmp, 'Muon', offload=True)}"],
     "train.optimizer: muon under DeepSpeed without optimizer or parameter offload only"),
    (["train.optimizer=muon", "train.deepspeed=zero2"], "train.max_grad_norm: DeepSpeed's Muon clips the orthogonalised"),
    (["train.optimizer=muon", "train.deepspeed=zero2", "train.max_grad_norm=0", "peft.target_modules=[routed_experts]"],
     "peft.target_modules: 'routed_experts' stacks the routed experts' LoRA matrices"),
    # top-p routing and the sparsity penalty (workbench.moe.top_p, workbench.moe.sparsity)
    (["moe.routing=top_p", "moe.top_p=0"], "moe.top_p: must be > 0, got 0"),
    (["moe.routing=top_p", "moe.top_p=1.5"], "moe.top_p: must be <= 1, got 1.5"),
    (["moe.routing=top_p", "moe.min_experts=3", "moe.max_experts=2"], "moe.min_experts: must be <= moe.max_experts, got 3 > 2"),
    (["moe.routing=top_p", "moe.max_experts=5"], "moe.max_experts: a token reaches at most 4 experts in this model"),
    (["moe.routing=top_p", "train.deepspeed=zero2", "train.expert_parallel=2"], "moe.routing: top_p patches the MoE "
                                                                               "blocks that DeepSpeed AutoEP replaces"),
    (["moe.routing=top_p", "method.name=grpo", "moe.routing_replay=rollout"], "which routing replay cannot record"),
    (["moe.routing=top_p", "moe.balance=seq_aux"], "moe.balance: seq_aux's f_i assumes top_k experts per token"),
    (["moe.top_p=0.3"], "moe.top_p: only read with moe.routing: top_p (moe.routing is top_k)"),
    (["moe.sparsity_target=0.2"], "moe.sparsity_target: only read when moe.sparsity or a stage's sparsity is > 0"),
    (lambda tmp: ["moe.routing=top_p", f"model.name={_dense_model(tmp)}"], "moe.routing: needs DeepSeek-V3 routers"),
    (lambda tmp: ["moe.sparsity=0.5", f"model.name={_dense_model(tmp)}"], "moe.sparsity: needs DeepSeek-V3 routers"),
]


@pytest.mark.parametrize("overrides, expected", FINETUNE_BAD, ids=[str(i) for i in range(len(FINETUNE_BAD))])
def test_finetune_and_validate_refuse_bad_input_in_the_same_one_line_and_open_no_run(overrides, expected, tmp_path,
                                                                                      capsys):
    """Every refusal of `finetune` listed here, and `validate` gives the same line for each: both run the one plan
    (workbench.train.plan), and nothing but the launched process count is checked after it."""
    import mlflow

    store = tmp_path / "m.db"
    extra = overrides(tmp_path) if callable(overrides) else overrides
    capsys.readouterr()  # what making a bad input printed (transformers' progress bars) is not the command's
    where = [f"track.tracking_uri=sqlite:///{store}", f"train.output_dir={tmp_path}/o"]
    lines = {}
    for command in ("validate", "finetune"):
        code = main([command, "legal", *where, *extra])  # later overrides win
        err = capsys.readouterr().err
        assert code == 2, err
        assert err.count("\n") == 1 and err.startswith("error: ") and expected in err, err  # one line, nothing else
        lines[command] = err
    assert lines["validate"] == lines["finetune"]
    if store.exists():
        assert mlflow.MlflowClient(f"sqlite:///{store}").search_runs(
            [e.experiment_id for e in mlflow.MlflowClient(f"sqlite:///{store}").search_experiments()]) == []
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("args, expected", [
    (["eval", "deepseek-v3-tiny", "--limit", "x"], "argument --limit: invalid int value: 'x'"),
    (["eval", "deepseek-v3-tiny", "--suite", "nope"], "suite 'nope' is not defined"),
    (["eval", "deepseek-v3-tiny", "--source", "web"], "eval source 'web' is unknown"),
    (["eval", "deepseek-v3-tiny", "--batch-size", "0"], "--batch-size must be > 0, got 0"),
    (["eval", "", "--suite", "smoke"], "eval target '' is not"),
    (["export", "no-such-run", "--tolerance", "-1"], "--tolerance must be > 0, got -1"),
    (["estimate", "legal", "--gpus", "0"], "--gpus must be > 0, got 0"),
    (["schedule", "--suite", "legal", "--every", "-5"], "--every must be > 0, got -5"),
    (["apply-patch", "/no/such/dir", "--out", "x"], "no expert_patch.json here"),
    (["apply-patch", "/no/such/dir", "--out", "README.md"], "--out README.md exists and is not a folder"),
    (["export", "no-such-experiment"], "export: no finished run in experiment 'no-such-experiment'"),
    (["finetune"], "the following arguments are required: recipe"),
    (["nope"], "invalid choice: 'nope'"),
])
def test_bad_command_line_values_are_one_line(args, expected, capsys):
    try:
        code = main(args)
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("error: ") and expected in err, err


def test_validate_reports_eval_rows_that_share_text_with_the_training_data(tmp_path, capsys):
    question = json.loads((project_root() / "data/legal/mc_test.jsonl").read_text().splitlines()[7])
    leaked = {"messages": [{"role": "user", "content": question["question"]},
                           {"role": "assistant", "content": question["choices"][question["answer"]]}]}
    rows = [json.loads(line) for line in (project_root() / "data/legal/sft.jsonl").read_text().splitlines()[:40]]
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows + [leaked]))
    assert main(["validate", "legal", f"data.train={train}"]) == 0
    out = capsys.readouterr().out
    leaks = re.search(r"eval data data/legal/mc_test.jsonl: (\d+) of 149 rows share a 13-gram .*CONTAMINATED", out)
    assert leaks and 1 <= int(leaks[1]) <= 3, out  # the leaked row, and any other row sharing its answer's words
    assert main(["validate", "legal"]) == 0
    assert "eval data data/legal/mc_test.jsonl: 0 of 149 rows share a 13-gram with data/legal/sft.jsonl (held out)" \
        in capsys.readouterr().out


def test_dpo_without_its_sft_run_says_what_to_do(tmp_path, capsys):
    code = main(["finetune", "legal-dpo", f"track.tracking_uri=sqlite:///{tmp_path}/m.db", f"train.output_dir={tmp_path}/o"])
    err = capsys.readouterr().err
    assert code == 2
    assert "model.from_run: no finished run in experiment 'legal'" in err and "make finetune RECIPE=legal" in err


def test_validate_reports_what_it_checked(capsys):
    assert main(["validate", "legal"]) == 0
    out = capsys.readouterr().out
    assert "legal: ok (sft, model deepseek-v3-tiny [deepseek_v3, 8 routed experts per MoE layer]" in out
    assert "LoRA adapters on the dense layers + one MoE layer: attention 10" in out and "440 train / 49 eval rows" in out


def test_finetune_last_line_is_parseable(tmp_path):
    result = _cli("finetune", "legal", "train.max_steps=1", "data.max_rows=16", "train.eval_steps=1", "eval.suite=null",
                  f"track.tracking_uri=sqlite:///{tmp_path}/m.db", f"train.output_dir={tmp_path}/o")
    assert result.returncode == 0, result.stderr[-3000:]
    fields = dict(item.split("=", 1) for item in result.stdout.strip().splitlines()[-1].split())
    assert len(fields["run_id"]) == 32 and fields["output_dir"] == f"{tmp_path}/o"


DOWN = "postgresql://wb:wb@127.0.0.1:1/mlflow"  # nothing listens on port 1: a store that is down


@pytest.mark.parametrize("args, code, expected", [
    (["runs"], 2, "MLFLOW_TRACKING_URI: cannot reach the tracking database"),
    (["show", "0123abcd"], 2, "MLFLOW_TRACKING_URI: cannot reach the tracking database"),
    (["eval", "0123456789abcdef0123456789abcdef", "--suite", "smoke"], 2, "MLFLOW_TRACKING_URI: cannot reach"),
    (["export", "0123456789abcdef0123456789abcdef"], 2, "export: cannot reach the tracking database"),
    (["validate", "legal"], 2, "MLFLOW_TRACKING_URI: cannot reach the tracking database"),
    (["finetune", "legal", "model.from_run=legal"], 2, "MLFLOW_TRACKING_URI: cannot reach the tracking database"),
    (["schedule", "--suite", "legal", "--once", "--store-retry", "0", "--claims-db", "sqlite:///{tmp}/claims.db"], 75,
     "schedule: opening the tracking store: the store is still unavailable"),
])
def test_every_command_meets_a_store_that_is_down_with_one_line_at_once(args, code, expected, monkeypatch, tmp_path,
                                                                       capsys):
    """MLflow alone retries a database that does not answer for about two minutes and ends in a traceback; each
    command looks first (workbench.track.store) and says it in one line (the scheduler's outage is exit 75)."""
    import time

    monkeypatch.setenv("MLFLOW_TRACKING_URI", DOWN)
    monkeypatch.chdir(tmp_path)
    start = time.monotonic()
    assert main([a.format(tmp=tmp_path) for a in args]) == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and expected in err, err
    assert "wb:wb@" not in err and time.monotonic() - start < 60  # the password hidden; no two-minute retry loop
