"""Training-throughput benchmark: the workbench's legal recipe against plain TRL, on the same model and data.

    .venv/bin/python benchmarks/bench.py                       # ~15 min on 2 cores: --steps 40 --repeats 5
    .venv/bin/python benchmarks/bench.py --steps 10 --repeats 1 --no-extras   # a smoke run (~2-3 min)
    .venv/bin/python benchmarks/bench.py --candidates packing,trl_compile   # try variants (CANDIDATES, TUNED_CANDIDATES)
    .venv/bin/python benchmarks/bench.py --threads 1            # on a busy machine: see tokens_per_cpu_s
    .venv/bin/python benchmarks/bench.py --gpu                  # bf16, ~1B-parameter V3 config (needs CUDA; untested)
    make bench
    .venv/bin/python benchmarks/profile_step.py --variant workbench   # where one step's time goes

Variants, each in a fresh subprocess (so peak RSS is per run), interleaved baseline, baseline_tuned, workbench, ...
and repeated; every figure is the median over repeats, ratios are the median of per-repeat ratios (the runs of one
repeat ran back to back), against each baseline; repeat i trains every variant with seed 42 + i, and the held-out
loss is compared as mean over seeds, within noise when the difference is at most twice its standard error (see
loss_check). Both baselines load the model as plain transformers does (its own kernel defaults: grouped_mm experts
and sdpa attention on CPU), take batch size, max_length, lr and the LoRA adapter (r, alpha, targets,
modules_to_save) from recipes/legal.yaml, and train the recipe's training split of the embedded deepseek-v3-tiny:
  baseline              TRL `SFTTrainer` + `SFTConfig` defaults (gradient checkpointing on, random batches padded to
                        their longest row, loss on all tokens, linear schedule), changed only where CPU needs it
                        (use_cpu=True, bf16=False: fp32)
  baseline_tuned        the same plus what a competent user sets, one flag each (workloads.TUNED): no gradient
                        checkpointing on CPU, train_sampling_strategy="group_by_length", assistant_only_loss=True
                        (the embedded chat template marks assistant turns), and the recipe's schedule, warm-up,
                        weight decay and clipping. TUNED_CANDIDATES are the other flags tried on it.
  workbench             `workbench.train.build.build(load_recipe("legal", ...))` as the recipe stands (telemetry on)
  workbench_no_telemetry  the same with moe.telemetry=false (moe.balance=none); the telemetry runs also time their
                        hooks and callback directly: that share of step time must be <= 5%
  workbench_tuned       the recipe plus RECOMMENDED overrides (only when RECOMMENDED is non-empty)
Also, once each: the sandbox (programs/s over the 164 HumanEval canonical solutions) and lm-eval (requests/s on
the local MMLU task), skipped when workbench/evaluate/sandbox.py or workbench/evaluate/harness.py is absent.

Measured (see benchmarks/workloads.py for the exact definitions): real tokens/s (input tokens that are not
padding) and real tokens per CPU-second of the child (on a machine shared with other work this moves far less than
wall time; compare it with --threads 1), step time, peak RSS of the child (os.wait4's ru_maxrss), final train loss
(mean of the last 5 steps; its scope, all or assistant tokens, differs by variant), held-out loss on the recipe's
eval rows over all tokens and over assistant tokens (the same for every variant: this is the loss to compare), and
MFU against a matmul peak measured in the same child. Results go to --out (JSON), a table on stdout, and an MLflow
run in experiment `bench` (tracking URI: $MLFLOW_TRACKING_URI, else the project's mlflow.db).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Repeat i of every variant trains with seed SEED + i (adapter init, batch order), so the spread of the held-out
# loss over repeats is the seed-to-seed noise the loss comparison is judged against.
SEED = 42

# Overrides the benchmark found worth it on CPU; `workbench_tuned` measures the recipe with them applied.
RECOMMENDED: list[str] = []

# Workbench variants for --candidates; each runs interleaved with the baseline and the recipe as it stands.
# The MTP loss's cost: the same recipe on the preset with one MTP layer, trained (its loss on); speculative decoding
# is measured after training, outside the timed loop, and is switched off here.
MTP = ["model.name=deepseek-v3-tiny-mtp", "mtp.enabled=true", "mtp.speculative_prompts=0"]
CANDIDATES = {
    "mtp": MTP,
    "packing": ["train.packing=true"],
    "all_token_loss": ["train.assistant_only_loss=false"],
    "checkpointing": ["train.gradient_checkpointing=true"],
    "eager": ["model.experts_implementation=eager"],
    "grouped_mm": ["model.experts_implementation=grouped_mm"],
    "threads1": ["train.num_threads=1"],
    "batch16": ["train.batch_size=16"],
    "micro4x2": ["train.batch_size=4", "train.grad_accum=2"],  # the same rows per step as 2 micro-batches
    "no_telemetry": ["moe.telemetry=false", "moe.balance=none"],
    "random_batches": ["train.group_by_length=false"],
    "cosine_lr": ["train.lr_scheduler=cosine", "train.warmup_ratio=0.05"],  # the recipe's schedule until linear won
    "as_baseline": ["train.group_by_length=false", "train.lr_scheduler=linear", "train.warmup_ratio=0",
                    "train.assistant_only_loss=false"],  # the baseline's training choices on the workbench path
}

# Flags a competent user might also set on plain TRL, each run as `baseline_tuned` plus that flag (--candidates).
# workloads.TUNED keeps those that made plain TRL faster without changing what a step trains on; the README lists
# what each measured. Not tried: use_liger_kernel (Triton kernels, GPU only), packing (it changes the rows per step:
# 8 packed rows of up to 512 tokens train ~6x the tokens of 8 conversations), bf16 (a different loss on CPU).
TUNED_CANDIDATES = {
    "trl_workers1": {"trl_args": {"dataloader_num_workers": 1}},  # collate in a worker process
    "trl_workers2": {"trl_args": {"dataloader_num_workers": 2}},
    "trl_compile": {"trl_args": {"torch_compile": True}},  # inductor on CPU (g++)
    # padding-free needs max_length=None without packing; no row here is near 512 tokens, so nothing changes length
    "trl_padding_free": {"trl_args": {"padding_free": True, "max_length": None}},
    "trl_pad8": {"trl_args": {"pad_to_multiple_of": 8}},
    "trl_adamw_foreach": {"trl_args": {"optim": "adamw_torch"}},  # the default is adamw_torch_fused
    "trl_eager_experts": {"model_args": {"experts_implementation": "eager"}},  # transformers' CPU default: grouped_mm
    "trl_eager_attention": {"model_args": {"attn_implementation": "eager"}},  # the default: sdpa
}

METRICS = ("tokens_per_s", "tokens_per_cpu_s", "loss_tokens_per_s", "step_time_s", "peak_rss_train_mb", "peak_rss_mb",
           "final_loss", "heldout_loss_assistant",
           "heldout_loss_all", "mfu", "model_tflops_per_s", "tokens_per_step", "peak_flops", "wall_s")


def run_child(spec: dict, logdir: Path) -> dict:
    """One workload in a fresh interpreter; returns its result plus the child's peak RSS and wall time."""
    name = f"{spec['variant']}-{spec['repeat']}"
    spec = {**spec, "result_path": str(logdir / f"{name}.json")}
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "HF_HUB_DISABLE_TELEMETRY": "1", "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    with open(logdir / f"{name}.log", "w") as log:
        proc = subprocess.Popen([sys.executable, __file__, "--child", json.dumps(spec)], stdout=log,
                                stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        tail = (logdir / f"{name}.log").read_text()[-3000:]
        raise RuntimeError(f"{name} failed (exit {proc.returncode}):\n{tail}")
    result = json.loads(Path(spec["result_path"]).read_text())
    result.update(peak_rss_mb=usage.ru_maxrss / 1024, wall_s=time.perf_counter() - start)
    return result


def variants(args) -> dict[str, dict]:
    """Variant name -> what its child runs: the workload kind plus recipe overrides or TRL/model arguments."""
    plan = {"baseline": {"kind": "baseline"}, "baseline_tuned": {"kind": "baseline_tuned"},
            "workbench": {"kind": "workbench"}}
    if args.candidates:
        names = [*CANDIDATES, *TUNED_CANDIDATES] if args.candidates == "all" else args.candidates.split(",")
        for name in names:
            if name in TUNED_CANDIDATES:
                plan[name] = {"kind": "baseline_tuned", **TUNED_CANDIDATES[name]}
            else:
                plan[name] = {"kind": "workbench", "overrides": CANDIDATES[name]}
    else:
        plan["workbench_no_telemetry"] = {"kind": "workbench", "overrides": ["moe.telemetry=false", "moe.balance=none"]}
        plan["workbench_mtp"] = {"kind": "workbench", "overrides": MTP}
        if RECOMMENDED:
            plan["workbench_tuned"] = {"kind": "workbench", "overrides": RECOMMENDED}
    return plan


def train_runs(args, plan: dict, logdir: Path, model_overrides: list[str]) -> dict[str, list[dict]]:
    """Interleaved: each repeat runs every variant once, in an order rotated by the repeat index."""
    runs = {name: [] for name in plan}
    names = list(plan)
    for repeat in range(args.repeats):
        for name in names[repeat % len(names):] + names[:repeat % len(names)]:
            spec = {"overrides": [], **plan[name], "variant": name, "repeat": repeat, "seed": SEED + repeat,
                    "steps": args.steps, "warmup": args.warmup, "gpu": args.gpu, "model_overrides": model_overrides,
                    "threads": args.threads}
            result = run_child(spec, logdir)
            runs[name].append(result)
            print(f"  repeat {repeat} {name:<24} {result['tokens_per_s']:8.0f} tok/s  {result['peak_rss_train_mb']:6.0f} MB  "
                  f"loss {result['final_loss']:.3f}  held-out {result['heldout_loss_assistant']:.3f}  "
                  f"({result['wall_s']:.0f} s)", flush=True)
    return runs


# The references every variant is compared with, and the suffix of those comparisons' keys.
REFERENCES = {"baseline": "vs_baseline", "baseline_tuned": "vs_tuned"}


def summarize(runs: dict[str, list[dict]]) -> dict:
    """Medians per variant; ratios to each baseline as the median of per-repeat ratios (the runs of one repeat ran
    back to back), and the held-out loss against each baseline's, judged by seed-to-seed noise."""
    summary = {}
    for name, results in runs.items():
        row = {m: statistics.median(r[m] for r in results) for m in METRICS if m in results[0]}
        row.update({k: results[0][k] for k in ("gradient_checkpointing", "packing", "assistant_only_loss",
                                               "loss_scope", "trainable_params", "active_params", "threads")})
        row["tokens_per_s_runs"] = [r["tokens_per_s"] for r in results]
        row.update(heldout_loss_mean=statistics.mean(r["heldout_loss_assistant"] for r in results),
                   heldout_loss_sd=statistics.stdev(r["heldout_loss_assistant"] for r in results) if len(results) > 1 else None,
                   heldout_loss_runs=[r["heldout_loss_assistant"] for r in results])
        for reference, suffix in REFERENCES.items():
            if reference in runs:
                row.update({f"{k}_{suffix}": v for k, v in compare(results, runs[reference]).items()})
        summary[name] = row
    with_mtp = runs.get("workbench_mtp") or runs.get("mtp")
    if with_mtp and runs.get("workbench"):
        # step time with the MTP loss over step time without, per repeat (the same tokens, the same main model)
        costs = [b["tokens_per_s"] / a["tokens_per_s"] for a, b in zip(with_mtp, runs["workbench"])]
        summary["mtp_cost"] = {"step_time_ratio": statistics.median(costs), "per_repeat": costs}
    on, off = runs.get("workbench"), runs.get("workbench_no_telemetry") or runs.get("no_telemetry")
    if on and off:
        # Two ways: the share of step time spent inside the telemetry code, timed directly in the telemetry-on runs
        # (the figure the 5% limit applies to), and the throughput difference between separate on and off runs
        # (end to end, but it carries the machine's run-to-run noise).
        shares = [r["telemetry_share"] for r in on]
        overheads = [1 - a["tokens_per_s"] / b["tokens_per_s"] for a, b in zip(on, off)]
        summary["telemetry_overhead"] = {"share_of_step_time": statistics.median(shares), "share_per_repeat": shares,
                                         "on_vs_off_median": statistics.median(overheads), "on_vs_off_per_repeat": overheads,
                                         "limit": 0.05, "ok": statistics.median(shares) <= 0.05}
    return summary


def compare(results: list[dict], base: list[dict]) -> dict:
    """Throughput and peak-RSS ratios to one baseline (per repeat and their median), plus the loss check."""
    pairs = list(zip(results, base))
    speed = [r["tokens_per_s"] / b["tokens_per_s"] for r, b in pairs]
    return {"ratio_tokens_per_s": statistics.median(speed), "ratio_per_repeat": speed,
            # the training loop's peak (what the workbench saves and checks after training is not the training)
            "ratio_peak_rss": statistics.median(r["peak_rss_train_mb"] / b["peak_rss_train_mb"] for r, b in pairs),
            "ratio_peak_rss_process": statistics.median(r["peak_rss_mb"] / b["peak_rss_mb"] for r, b in pairs),
            **loss_check(results, base)}


def loss_check(results: list[dict], base: list[dict], key: str = "heldout_loss_assistant") -> dict:
    """Held-out loss against a baseline's, judged by seed-to-seed noise: the difference of the means over the
    repeats (one seed each) is within noise when it is at most twice its standard error."""
    ours, theirs = [r[key] for r in results], [b[key] for b in base]
    row = {"heldout_loss_diff": statistics.mean(ours) - statistics.mean(theirs)}
    if min(len(ours), len(theirs)) < 2:  # one seed: no estimate of the noise
        return {**row, "heldout_loss_diff_stderr": None, "loss_within_noise": None}
    stderr = (statistics.variance(ours) / len(ours) + statistics.variance(theirs) / len(theirs)) ** 0.5
    return {**row, "heldout_loss_diff_stderr": stderr, "loss_within_noise": abs(row["heldout_loss_diff"]) <= 2 * stderr}


def extras(args, logdir: Path) -> dict:
    """Sandbox and eval throughput, each once in its own child; absent modules are skipped."""
    out = {}
    jobs = {"sandbox": ("sandbox.py", {"kind": "sandbox"}), "eval": ("evaluate.py", {"kind": "eval", "limit": args.eval_limit})}
    for name, (module, spec) in jobs.items():
        if not (ROOT / "workbench" / module).is_file():
            out[name] = {"skipped": f"workbench/{module} absent"}
            continue
        try:
            out[name] = run_child({**spec, "variant": name, "repeat": 0}, logdir)
        except RuntimeError as exc:  # a broken extra must not cost the training figures
            out[name] = {"failed": str(exc)[-500:]}
    return out


def table(summary: dict) -> str:
    header = (f"{'variant':<24} {'tok/s':>7} {'x base':>6} {'x tuned':>7} {'step ms':>7} {'RSS MB':>6} {'x base':>6} "
              f"{'x tuned':>7} {'train loss':>10} {'held-out asst':>13} {'held-out all':>12} {'MFU':>6}")
    lines = [header, "-" * len(header)]
    for name, row in summary.items():
        if "tokens_per_s" not in row:
            continue
        lines.append(f"{name:<24} {row['tokens_per_s']:7.0f} {_ratio(row, 'tokens_per_s', 'vs_baseline', 6)} "
                     f"{_ratio(row, 'tokens_per_s', 'vs_tuned', 7)} {row['step_time_s'] * 1000:7.0f} "
                     f"{row['peak_rss_train_mb']:6.0f} {_ratio(row, 'peak_rss', 'vs_baseline', 6)} "
                     f"{_ratio(row, 'peak_rss', 'vs_tuned', 7)} {row['final_loss']:10.3f} "
                     f"{row['heldout_loss_assistant']:13.3f} {row['heldout_loss_all']:12.3f} {row['mfu']:6.1%}")
    for name, row in summary.items():
        checks = [_loss_line(summary, row, reference, suffix) for reference, suffix in REFERENCES.items()
                  if reference != name and f"heldout_loss_diff_{suffix}" in row]
        if "tokens_per_s" in row and checks:
            spread = "" if row["heldout_loss_sd"] is None else f" +- {row['heldout_loss_sd']:.3f}"
            lines.append(f"held-out loss, {name} (mean{' +- sd' if spread else ''} over seeds "
                         f"{row['heldout_loss_mean']:.3f}{spread}): " + "; ".join(checks))
    if "workbench" in summary and "ratio_per_repeat_vs_tuned" in summary["workbench"]:
        row = summary["workbench"]
        lines.append(f"workbench speed per repeat: x tuned {_list(row['ratio_per_repeat_vs_tuned'])}; "
                     f"x base {_list(row['ratio_per_repeat_vs_baseline'])}; per CPU-second x tuned "
                     f"{row['tokens_per_cpu_s'] / summary['baseline_tuned']['tokens_per_cpu_s']:.2f}")
    lines.append("RSS MB: peak of the training loop; whole process (with what a run does after training): " + ", ".join(
        f"{name} {row['peak_rss_mb']:.0f}" for name, row in summary.items() if "peak_rss_mb" in row))
    if "mtp_cost" in summary:
        m = summary["mtp_cost"]
        lines.append(f"MTP loss: step time x{m['step_time_ratio']:.2f} of the workbench row's (per repeat "
                     f"{_list(m['per_repeat'])}), one MTP layer on a 4-layer model")
    if "telemetry_overhead" in summary:
        t = summary["telemetry_overhead"]
        lines.append(f"telemetry: {t['share_of_step_time']:.1%} of step time inside its hooks and callback, timed directly "
                     f"(limit 5%: {'ok' if t['ok'] else 'FAIL'}); separate on/off runs differ by "
                     f"{t['on_vs_off_median']:+.1%} (per repeat {', '.join(f'{x:+.1%}' for x in t['on_vs_off_per_repeat'])}, "
                     f"run-to-run noise)")
    return "\n".join(lines)


def _ratio(row: dict, metric: str, suffix: str, width: int) -> str:
    value = row.get(f"ratio_{metric}_{suffix}")
    return f"{value:{width}.2f}" if value is not None else " " * (width - 1) + "-"


def _list(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


def _loss_line(summary: dict, row: dict, reference: str, suffix: str) -> str:
    diff, stderr = row[f"heldout_loss_diff_{suffix}"], row[f"heldout_loss_diff_stderr_{suffix}"]
    line = f"{diff:+.3f} against {reference}"
    if stderr is None:
        return line + " (one seed: no noise estimate)"
    verdict = "within" if row[f"loss_within_noise_{suffix}"] else "lower, OUTSIDE" if diff < 0 else "OUTSIDE"
    base = summary[reference]
    return (line + f" ({base['heldout_loss_mean']:.3f} +- {base['heldout_loss_sd']:.3f}), {verdict} noise "
            f"(2 SE = {2 * stderr:.3f})")


def log_mlflow(report: dict, out: Path) -> str:
    import mlflow

    from workbench.paths import default_tracking_uri

    mlflow.set_tracking_uri(default_tracking_uri())
    mlflow.set_experiment("bench")
    with mlflow.start_run(run_name=f"{report['mode']}-{time.strftime('%Y%m%d-%H%M%S')}") as run:
        mlflow.log_params({k: str(v) for k, v in report["config"].items()})
        metrics = {}
        for name, row in report["summary"].items():
            for key, value in row.items():
                if isinstance(value, (int, float)):  # a bool (loss within noise) is logged as 0/1
                    metrics[f"{name}/{key}"] = float(value)
        for name, row in report["extras"].items():
            metrics.update({f"{name}/{k}": float(v) for k, v in row.items()
                            if isinstance(v, (int, float)) and not isinstance(v, bool)})
        mlflow.log_metrics(metrics)
        mlflow.log_artifact(str(out))
        return run.info.run_id


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=40, help="optimizer steps per training run")
    parser.add_argument("--warmup", type=int, default=3, help="steps left out of the throughput figures")
    parser.add_argument("--repeats", type=int, default=5, help="runs per variant (median; seeds 42, 43, ...)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results.json"))
    parser.add_argument("--candidates", help=f"comma list of {', '.join(CANDIDATES)} (or 'all') to try instead")
    parser.add_argument("--threads", type=int, help="torch threads in every child (default: torch's)")
    parser.add_argument("--eval-limit", type=int, default=4, help="MMLU questions per subject for eval throughput")
    parser.add_argument("--no-extras", action="store_true", help="skip the sandbox and eval throughput")
    parser.add_argument("--no-mlflow", action="store_true")
    parser.add_argument("--gpu", action="store_true", help="bf16 on CUDA with a ~1B-parameter V3 config (untested)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        from benchmarks.workloads import run_child as child_main

        child_main(json.loads(args.child))
        return 0
    model_overrides = []
    if args.gpu:
        from benchmarks.gpu import gpu_model_dir

        model_overrides = [f"model.name={gpu_model_dir()}"]
    plan = variants(args)
    out = Path(args.out)
    with tempfile.TemporaryDirectory(prefix="wb-bench-logs-") as tmp:
        logdir = Path(tmp)
        print(f"benchmark: {', '.join(plan)} x {args.repeats} repeats, {args.steps} steps each", flush=True)
        start = time.perf_counter()
        runs = train_runs(args, plan, logdir, model_overrides)
        summary = summarize(runs)
        extra = {} if args.no_extras or args.candidates else extras(args, logdir)
    report = {"mode": "gpu" if args.gpu else "cpu", "summary": summary, "extras": extra, "runs": runs,
              "variants": {k: v for k, v in plan.items()},
              "config": {"steps": args.steps, "warmup": args.warmup, "repeats": args.repeats, "threads": args.threads,
                         "gpu": args.gpu, "candidates": args.candidates, "cpu_count": os.cpu_count(),
                         "load_avg_at_end": os.getloadavg()[0], "elapsed_s": round(time.perf_counter() - start, 1)}}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(table(summary))
    for name, row in extra.items():
        print(f"{name}: " + ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
    print(f"results: {out}  ({report['config']['elapsed_s']:.0f} s)")
    if not args.no_mlflow:
        print(f"mlflow run: {log_mlflow(report, out)} (experiment bench)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
