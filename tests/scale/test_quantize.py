"""QLoRA and FP8 checkpoints: clear one-line errors where they cannot work, a real 4-bit run where they can."""

import json
import shutil
import subprocess
import sys

import pytest
import torch


def _finetune(*overrides, tmp):
    return subprocess.run([sys.executable, "-m", "workbench.cli", "finetune", "legal", *overrides,
                           f"track.tracking_uri=sqlite:///{tmp / 'mlflow.db'}", f"train.output_dir={tmp / 'out'}"],
                          capture_output=True, text=True, timeout=600)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU-only error")
def test_qlora_on_a_cpu_machine_says_why_in_one_line(tmp_path):
    out = _finetune("model.quantize=nf4", tmp=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [out.stderr.strip()]  # one line
    assert "model.quantize: nf4" in out.stderr and "no CUDA GPU" in out.stderr
    assert not (tmp_path / "out").exists()  # failed before any run was opened


def test_fp8_weights_are_refused_with_what_to_do(tiny_final_dir, tmp_path):
    fp8 = tmp_path / "fp8-model"
    shutil.copytree(tiny_final_dir, fp8)
    config = json.loads((fp8 / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                                     "weight_block_size": [128, 128]}
    (fp8 / "config.json").write_text(json.dumps(config))
    out = _finetune(f"model.name={fp8}", tmp=tmp_path)
    assert out.returncode == 2, out.stderr[-2000:]
    assert "FP8" in out.stderr and "BF16" in out.stderr and "fp8_cast_bf16.py" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.gpu
def test_qlora_nf4_trains_adapters_on_a_gpu(train_recipe):
    run, client = train_recipe("legal", ["model.quantize=nf4", "train.max_steps=3", "peft.modules_to_save=[]",
                                         "train.logging_steps=1", "data.max_rows=48"])
    losses = [m.value for m in client.get_metric_history(run.tracker.run_id, "train/loss")]
    assert len(losses) == 3 and all(v == v for v in losses)
    assert getattr(run.trainer.model.get_base_model(), "is_loaded_in_4bit", False)
