"""`make gpu-proof DRY=1`: the GPU proof's wiring on this CPU machine, from the carried wheels, with no index.

The dry run downloads this machine's wheel folders (`make gpu-wheels DRY=1`, PyPI or pip's cache), then runs
`make gpu-proof DRY=1` with pip's index pointed at a closed port: a clean environment must install from the folders
alone (plus the local torch wheel), and every check must report. Asserted on the report and, independently, on what
the run left behind: the environment's packages, the MLflow store's loss histories, the folders' sizes on disk.
The other tests make the checks fail on purpose (a wrong kernel, a NaN loss, a group that hangs).
"""

import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks import gpu_proof  # noqa: E402

CUDA_ONLY = {"qlora", "autoep", "bench"}
ZERO = {"zero/zero2", "zero/zero3"}  # CPU-possible, opt-in in the dry run (DeepSpeed compiles its ops first)
METHODS = {"train/sft", "train/dpo", "train/kto", "train/orpo", "train/grpo", "train/distill", "train/mtp",
           "train/stages"}
EXPECTED = {"install", *METHODS, "speculative", "kernels/grouped_mm", "kernels/sdpa", *ZERO, *CUDA_ONLY}
# MiB on disk for Python 3.11 (3.12 measured within 1 MiB of these): the folder a node always needs stays under 60
LIMITS_MIB = {"stack": 60, "columnar": 80, "node": 12}
CLOSED_INDEX = {"PIP_INDEX_URL": "http://127.0.0.1:9/simple", "PIP_EXTRA_INDEX_URL": "", "PIP_RETRIES": "0",
                "PIP_TIMEOUT": "3"}


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    """(make's CompletedProcess, proof folder, wheel folder, seconds) of one dry run, index closed for the proof."""
    out = tmp_path_factory.mktemp("gpu-proof-dry")
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    wheels = ROOT / "wheels" / f"py{version}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    fetched = subprocess.run(["make", "gpu-wheels", "DRY=1"], cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=900)
    assert fetched.returncode == 0, fetched.stderr[-3000:]
    start = time.perf_counter()
    proof = subprocess.run(["make", "-o", "gpu-wheels", "gpu-proof", "DRY=1", f"GPU_PROOF={out}"], cwd=ROOT,
                           env={**env, **CLOSED_INDEX}, capture_output=True, text=True, timeout=1800)
    return proof, out, wheels, time.perf_counter() - start


@pytest.mark.slow
def test_dry_run_reports_every_check_and_passes_what_a_cpu_can(dry_run):
    proof, out, _, seconds = dry_run
    assert (out / "report.json").is_file(), (proof.stdout + proof.stderr)[-3000:]
    report = json.loads((out / "report.json").read_text())
    checks = report["checks"]
    assert set(checks) == EXPECTED
    for name, result in checks.items():
        if name in CUDA_ONLY:
            assert result["status"] == "skipped" and result["reason"].startswith("needs CUDA"), (name, result)
        elif name in ZERO:
            assert result["status"] == "skipped" and "ZERO=1" in result["reason"], (name, result)
        else:
            assert result["status"] == "passed", (name, result)
    counts = "12 passed, 0 failed, 5 skipped"
    assert f"gpu-proof: {counts}" in proof.stdout, proof.stdout[-3000:]
    assert proof.returncode == 0, proof.stderr[-2000:]
    print(f"dry run: {seconds:.0f} s wall (make gpu-proof DRY=1, wheels already fetched)")


@pytest.mark.slow
def test_every_method_lowered_its_loss_in_the_mlflow_store(dry_run):
    """The losses as MLflow recorded them (not the report's figures): finite, falling on the fixed batch; GRPO's
    routing replay applied to every recorded route."""
    import mlflow

    _, out, _, _ = dry_run
    checks = json.loads((out / "report.json").read_text())["checks"]
    client = mlflow.MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    for name in sorted(METHODS):
        assert checks[name]["status"] == "passed", (name, checks[name]["reason"])
        run_id = checks[name]["figures"]["run_id"]
        losses = [m.value for m in sorted(client.get_metric_history(run_id, "train/loss"), key=lambda m: m.step)]
        if name == "train/stages":  # its sparsify phase adds weight x gate entropy: the model's own loss must fall
            penalty = {m.step: m.value for m in client.get_metric_history(run_id, "moe/sparsity_loss")}
            steps = [m.step for m in sorted(client.get_metric_history(run_id, "train/loss"), key=lambda m: m.step)]
            assert penalty and all(v > 0 for v in penalty.values()), penalty
            losses = [loss - penalty.get(step, 0.0) for loss, step in zip(losses, steps)]
        assert len(losses) >= 3 and all(math.isfinite(v) for v in losses), (name, losses)
        if name != "train/grpo":  # a policy-gradient loss on a fixed batch need not fall (see gpu_checks.grpo)
            assert losses[-1] < losses[0], (name, losses)
    grpo = checks["train/grpo"]["figures"]["run_id"]
    assert {m.value for m in client.get_metric_history(grpo, "moe/replay_applied")} == {1.0}
    assert checks["speculative"]["figures"]["identical"] == 1.0 and checks["speculative"]["figures"]["prompts"] >= 3


@pytest.mark.slow
def test_the_environment_holds_exactly_the_carried_wheels(dry_run):
    """Installed with --no-index from the folders: its packages are the pins of stack, columnar and node, plus torch
    from the local wheel and pip/setuptools, and nothing else."""
    _, out, _, _ = dry_run
    venv = out / "venv"
    record = json.loads((venv / "install.json").read_text())
    assert "--no-index" in record["command"] and record["groups"] == ["stack", "columnar", "node"]
    site = next((venv / "lib").glob("python*/site-packages"))
    installed = {}
    for info in site.glob("*.dist-info"):
        name, version = info.name.removesuffix(".dist-info").rsplit("-", 1)
        installed[re.sub(r"[-_.]+", "-", name).lower()] = version
    sections = gpu_proof.wheel_groups()
    pins = {re.sub(r"[-_.]+", "-", r.split("==")[0]).lower(): r.split("==")[1]
            for group in ("stack", "columnar", "node") for r in sections[group]}
    assert installed.pop("torch") == "2.13.0+cpu"
    installed.pop("pip")
    assert installed == pins


@pytest.mark.slow
def test_wheel_folders_stay_small(dry_run):
    _, _, wheels, _ = dry_run
    for group, limit in LIMITS_MIB.items():
        files = list((wheels / group).glob("*.whl"))
        size = sum(f.stat().st_size for f in files) / 2**20
        assert files and size <= limit, (group, round(size, 1), limit)
        assert len(files) == len(gpu_proof.wheel_groups()[group])  # one wheel per pin, nothing stale


def test_carried_pins_are_the_lock_files():
    """Every carried package is pinned to constraints.txt's version (bitsandbytes and setuptools are not in it)."""
    lock = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if "==" in line:
            name, version = line.split("==")
            lock[re.sub(r"[-_.]+", "-", name).lower()] = version
    sections = gpu_proof.wheel_groups()
    assert set(sections) == {"stack", "columnar", "bitsandbytes", "node"}
    for group, requirements in sections.items():
        for requirement in requirements:
            name, version = re.sub(r"[-_.]+", "-", requirement.split("==")[0]).lower(), requirement.split("==")[1]
            if name in ("bitsandbytes", "setuptools"):
                continue
            assert lock.get(name) == version, (group, requirement, lock.get(name))
    for package in ("transformers", "trl", "peft", "accelerate", "datasets", "deepspeed", "mlflow-skinny"):
        assert any(r.lower().startswith(package + "==") for r in sections["stack"]), package


def test_a_wrong_kernel_fails_its_check(tmp_path, monkeypatch):
    """The kernel checks run through the proof's own child: grouped_mm that loses a routed expert's share and an
    sdpa that attends with the wrong scale are reported failed, with the error against eager's."""
    import torch
    from transformers.integrations import moe

    grouped = moe.ALL_EXPERTS_FUNCTIONS["grouped_mm"]

    def dropping(self, hidden_states, top_k_index, top_k_weights):
        return grouped(self, hidden_states, top_k_index, top_k_weights * (top_k_index != 0))  # expert 0 never counts

    sdpa = torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setitem(moe.ALL_EXPERTS_FUNCTIONS._global_mapping, "grouped_mm", dropping)
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention",
                        lambda q, k, v, *a, **kw: sdpa(q, k, v, *a, **{**kw, "scale": (kw.get("scale") or 1) * 1.5}))
    (tmp_path / "results").mkdir()
    gpu_proof.child("kernels", tmp_path, dry=True)
    results = json.loads((tmp_path / "results" / "kernels.json").read_text())
    assert results["kernels/grouped_mm"]["status"] == "failed"
    assert "against fp64, eager's" in results["kernels/grouped_mm"]["reason"]
    assert results["kernels/sdpa"]["status"] == "failed" and "sdpa" in results["kernels/sdpa"]["reason"]


def test_a_nan_loss_fails_the_method_check(tmp_path):
    """A learning rate of 1e30 blows the weights up within a step: the run must be reported failed by the check of
    finite losses (the check of finite weights behind it would say 'weights'), not passed because the loss 'fell'."""
    from benchmarks import gpu_checks

    ctx = gpu_checks.Context(out=tmp_path, dry=True, cuda=False)
    gpu_checks.prepare_models(ctx)
    with pytest.raises(gpu_checks.Fail, match="non-finite loss or grad norm"):
        gpu_checks.train(ctx, "nan", "legal", ["model.name=deepseek-v3-tiny", "train.lr=1e30", "peft.type=none"],
                         steps=3)


def test_a_group_that_hangs_fails_its_checks_and_the_proof_goes_on(tmp_path, monkeypatch):
    monkeypatch.setitem(gpu_proof.TIME_LIMITS, "kernels", 1)  # the child cannot even import torch in a second
    (tmp_path / "results").mkdir()
    (tmp_path / "logs").mkdir()
    results = gpu_proof.run_group("kernels", tmp_path, True, ["kernels/grouped_mm", "kernels/sdpa"])
    assert {r["status"] for r in results.values()} == {"failed"}
    assert all(r["reason"].startswith("timed out: the kernels group ran past 1 s") for r in results.values())
