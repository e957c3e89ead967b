"""The command line as a user meets it: one-line errors with exit code 2, and a parseable last line."""

import subprocess
import sys

import pytest

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
        (["validate", "legal", "train.lr=-1"], "recipes/legal.yaml: train.lr: must be > 0, got -1.0"),
        (["validate", "legal", "train.bogus=1"], "recipes/legal.yaml: train.bogus: unknown key"),
        (["validate", "legal", "train.batch_size=big"], "recipes/legal.yaml: train.batch_size: must be int"),
        (["validate", "legal", "data.train=data/legal/missing.jsonl"], "data.train: file not found"),
        (["finetune", "legal", "model.name=nobody/nothing"], "model.name: 'nobody/nothing' is neither a preset"),
    ],
)
def test_bad_input_is_one_line_with_exit_code_2(args, expected, tmp_path):
    result = _cli(*args, f"track.tracking_uri=sqlite:///{tmp_path}/m.db", f"train.output_dir={tmp_path}/o")
    assert result.returncode == 2, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and expected in last, result.stderr[-2000:]
    assert "Traceback" not in result.stderr


def test_dpo_without_its_sft_run_says_what_to_do(tmp_path):
    result = _cli("finetune", "legal-dpo", f"track.tracking_uri=sqlite:///{tmp_path}/m.db", f"train.output_dir={tmp_path}/o")
    assert result.returncode == 2
    assert "model.from_run: no finished run in experiment 'legal'" in result.stderr
    assert "make finetune RECIPE=legal" in result.stderr


def test_validate_reports_split_sizes():
    result = _cli("validate", "legal")
    assert result.returncode == 0, result.stderr
    assert "legal: ok (sft" in result.stdout and "train /" in result.stdout


def test_finetune_last_line_is_parseable(tmp_path):
    result = _cli("finetune", "legal", "train.max_steps=1", "data.max_rows=16", "train.eval_steps=1",
                  f"track.tracking_uri=sqlite:///{tmp_path}/m.db", f"train.output_dir={tmp_path}/o")
    assert result.returncode == 0, result.stderr[-3000:]
    fields = dict(item.split("=", 1) for item in result.stdout.strip().splitlines()[-1].split())
    assert len(fields["run_id"]) == 32 and fields["output_dir"] == f"{tmp_path}/o"


def test_a_bad_model_name_opens_no_run(tmp_path):
    import mlflow

    _cli("finetune", "legal", "model.name=nobody/nothing", f"track.tracking_uri=sqlite:///{tmp_path}/m.db",
         f"train.output_dir={tmp_path}/o")
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/m.db")
    assert client.get_experiment_by_name("legal") is None
