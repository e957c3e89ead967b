"""GRPO step time and memory: the workbench's `legal-grpo` (routing replay and telemetry on) against plain TRL.

    .venv/bin/python benchmarks/grpo_bench.py                  # ~12 min on 2 cores: --steps 12 --repeats 3
    .venv/bin/python benchmarks/grpo_bench.py --steps 6 --repeats 1   # a smoke run (~3 min)
    make bench                                                  # runs this after benchmarks/bench.py

Both variants start from the same model: a short `legal-calc` SFT run made first (its final weights, a full
model directory), and train on the same prompts (data/legal-calc/prompts.jsonl) with the same reward
(`workbench.evaluate.rewards.math_answer`), generations, completion length, temperature, batch, learning rate,
schedule, loss type and seed:
  trl        `trl.GRPOTrainer` + `GRPOConfig` set as a competent CPU user would: use_cpu, fp32, no gradient
             checkpointing (TRL's default recomputes activations: memory, not speed), beta 0, the recipe's
             generation and optimisation settings; the model loaded with plain `from_pretrained` (transformers'
             kernel defaults: grouped_mm experts)
  trl_eager  the same with `from_pretrained(..., experts_implementation="eager")`, the kernel the workbench picks
             on CPU, so a difference in kernels cannot pass for the workbench's own; the 1.1x budget is judged
             against the faster of the two plain variants (on the tiny model the default measured faster)
  workbench  `workbench.train.build.build(load_recipe("legal-grpo", ...))`: the recipe as it stands (routing replay on,
             routing telemetry and agreement on, samples written each log), held-out measurement off (it runs
             outside the training loop anyway)
Each variant runs in a fresh subprocess (peak RSS is its own, os.wait4's ru_maxrss), interleaved, repeat i with
seed 42 + i. Measured: median step time over steps 3..N (a step = generating the batch's completions, scoring
them, one update), completion tokens per second, the peak RSS, and the mean training reward over all steps. The
reward is compared as the mean of per-repeat differences, within noise when it is inside the 95% t interval
(4.3 standard errors with 3 repeats). Results: a table on stdout and --out (JSON).
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
SEED = 42
VARIANTS = ["trl", "trl_eager", "workbench"]
BUDGET = 1.1  # the workbench's step time over the faster plain variant's
# two-sided 95% t values by degrees of freedom: with 3 repeats a mean difference needs 4.3 SE, not 2
T95 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26, 10: 2.23}


def start_model(workdir: Path, sft_steps: int) -> Path:
    """A quick legal-calc SFT run (full weights), the start of both variants."""
    from workbench.recipe.load import load_recipe
    from workbench.train.build import build

    run = build(load_recipe("legal-calc", [f"train.max_steps={sft_steps}", f"train.output_dir={workdir / 'sft'}",
                                           f"track.tracking_uri=sqlite:///{workdir / 'mlflow.db'}", "train.eval_steps=1000",
                                           "track.log_model=false"]))
    try:
        run.train()
    finally:
        run.close()
    return workdir / "sft" / "final"


def _recipe(spec: dict):
    from workbench.recipe.load import load_recipe

    return load_recipe("legal-grpo", ["model.from_run=null", f"model.name={spec['model']}",
                                      f"train.max_steps={spec['steps']}", f"train.seed={spec['seed']}",
                                      f"train.output_dir={spec['workdir']}/{spec['variant']}-{spec['repeat']}",
                                      f"track.tracking_uri=sqlite:///{spec['workdir']}/child-{spec['variant']}.db",
                                      "data.eval=null", "data.eval_fraction=0", "train.save_steps=100000",
                                      "track.log_model=false", "train.logging_steps=1"])


class Clock:
    """Step end times and completion tokens, from TrainerCallback hooks and the trainer's own metrics."""

    def __init__(self):
        from transformers import TrainerCallback

        clock = self

        class Hook(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                clock.ends.append(time.perf_counter())

        self.ends, self.callback = [], Hook()


def run_child(spec: dict) -> None:
    import resource

    import torch

    torch.manual_seed(spec["seed"])
    recipe = _recipe(spec)
    clock = Clock()
    if spec["variant"].startswith("trl"):
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from trl import GRPOConfig, GRPOTrainer

        from workbench.evaluate import rewards
        from workbench.data.load import load_dataset

        method, train = recipe.method, recipe.train
        extra = {"experts_implementation": "eager"} if spec["variant"] == "trl_eager" else {}
        model = AutoModelForCausalLM.from_pretrained(spec["model"], **extra)
        tokenizer = AutoTokenizer.from_pretrained(spec["model"])
        args = GRPOConfig(output_dir=f"{spec['workdir']}/{spec['variant']}-{spec['repeat']}", max_steps=spec["steps"],
                          per_device_train_batch_size=train.batch_size, num_generations=method.generations,
                          max_completion_length=method.max_new_tokens, temperature=method.temperature,
                          beta=method.beta, loss_type="dapo", learning_rate=train.lr,
                          lr_scheduler_type=train.lr_scheduler, seed=spec["seed"], use_cpu=True, bf16=False,
                          gradient_checkpointing=False, logging_steps=1, save_strategy="no", report_to="none",
                          disable_dropout=True)
        splits = load_dataset(recipe.data, "grpo")
        trainer = GRPOTrainer(model=model, reward_funcs=rewards.build(dict(method.rewards))[0], args=args,
                              train_dataset=splits.train, processing_class=tokenizer, callbacks=[clock.callback])
        begin = time.perf_counter()
        trainer.train()
        history = trainer.state.log_history
    else:
        from workbench.train.build import build

        run = build(recipe)
        run.trainer.add_callback(clock.callback)
        begin = time.perf_counter()
        try:
            run.trainer.train()
            run.status = "FINISHED"
        finally:
            run.close()
        history = run.trainer.state.log_history
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ends = [begin] + clock.ends
    steps = [b - a for a, b in zip(ends, ends[1:])]
    logged = [h for h in history if "reward" in h]
    lengths = [h["completions/mean_length"] for h in logged]
    timed = steps[2:]
    result = {"step_time_s": statistics.median(timed), "steps": len(steps),
              "completion_tokens_per_s": sum(lengths[2:]) * recipe.train.batch_size / sum(timed),
              "reward_mean": statistics.mean(h["reward"] for h in logged), "rewards": [h["reward"] for h in logged],
              "completion_length": statistics.mean(lengths), "peak_rss_train_mb": peak}
    Path(spec["result"]).write_text(json.dumps(result))


def measure(spec: dict) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": str(ROOT)}
    log = Path(spec["workdir"]) / f"{spec['variant']}-{spec['repeat']}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, __file__, "--child", json.dumps(spec)], stdout=out,
                                stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{spec['variant']} failed:\n{log.read_text()[-3000:]}")
    result = json.loads(Path(spec["result"]).read_text())
    result["peak_rss_mb"] = usage.ru_maxrss / 1024
    return result


def summarize(runs: dict[str, list[dict]]) -> dict:
    summary = {}
    for name, results in runs.items():
        rewards = [r["reward_mean"] for r in results]
        summary[name] = {"step_time_s": statistics.median(r["step_time_s"] for r in results),
                         "completion_tokens_per_s": statistics.median(r["completion_tokens_per_s"] for r in results),
                         "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in results),
                         "reward_mean": statistics.mean(rewards), "reward_runs": rewards,
                         "step_time_runs": [r["step_time_s"] for r in results]}
    for reference in ("trl", "trl_eager"):
        ratios = [w["step_time_s"] / t["step_time_s"] for w, t in zip(runs["workbench"], runs[reference])]
        diffs = [w["reward_mean"] - t["reward_mean"] for w, t in zip(runs["workbench"], runs[reference])]
        se = statistics.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else float("nan")
        summary[f"vs_{reference}"] = {
            "step_time_ratio": statistics.median(ratios), "step_time_ratio_runs": ratios,
            "peak_rss_ratio": summary["workbench"]["peak_rss_mb"] / summary[reference]["peak_rss_mb"],
            "reward_diff": statistics.mean(diffs), "reward_diff_se": se,
            # identical rewards in every repeat (the same samples drawn) have no spread: equal, not unknown
            "reward_within_noise": (True if all(d == 0 for d in diffs) else None if se != se
                                    else abs(statistics.mean(diffs)) <= T95.get(len(diffs) - 1, 2.0) * se),
        }
    fastest = min(("trl", "trl_eager"), key=lambda name: summary[name]["step_time_s"])
    ratio = summary[f"vs_{fastest}"]["step_time_ratio"]
    summary["budget"] = {"against": fastest, "step_time_ratio": ratio, "limit": BUDGET, "within": ratio <= BUDGET}
    return summary


def report(summary: dict) -> str:
    lines = [f"{'variant':<11}{'step s':>8}{'compl tok/s':>13}{'peak RSS MB':>13}{'reward':>8}"]
    for name in VARIANTS:
        row = summary[name]
        lines.append(f"{name:<11}{row['step_time_s']:>8.2f}{row['completion_tokens_per_s']:>13.0f}"
                     f"{row['peak_rss_mb']:>13.0f}{row['reward_mean']:>8.3f}")
    for reference in ("trl", "trl_eager"):
        c = summary[f"vs_{reference}"]
        verdict = {None: "unknown (one repeat)", True: "within noise",
                   False: "NOT within noise"}[c["reward_within_noise"]]
        lines.append(f"workbench / {reference}: step time x{c['step_time_ratio']:.2f} (per repeat "
                     f"{', '.join(f'{r:.2f}' for r in c['step_time_ratio_runs'])}), peak RSS x{c['peak_rss_ratio']:.2f}; "
                     f"reward {c['reward_diff']:+.3f} (SE {c['reward_diff_se']:.3f}): {verdict}")
    b = summary["budget"]
    lines.append(f"budget: x{b['step_time_ratio']:.2f} of {b['against']} (the faster plain variant), limit "
                 f"x{b['limit']:.1f}: {'within' if b['within'] else 'OVER'}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sft-steps", type=int, default=200)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results_grpo.json"))
    parser.add_argument("--child")
    args = parser.parse_args()
    if args.child:
        return run_child(json.loads(args.child))
    with tempfile.TemporaryDirectory(prefix="grpo-bench-") as tmp:
        workdir = Path(tmp)
        print(f"start model: legal-calc SFT, {args.sft_steps} steps", flush=True)
        model = start_model(workdir, args.sft_steps)
        runs = {name: [] for name in VARIANTS}
        for repeat in range(args.repeats):
            for variant in VARIANTS[repeat % 3:] + VARIANTS[:repeat % 3]:  # rotated: no variant always first
                spec = {"variant": variant, "repeat": repeat, "seed": SEED + repeat, "steps": args.steps,
                        "model": str(model), "workdir": str(workdir), "result": str(workdir / f"{variant}-{repeat}.json")}
                result = measure(spec)
                runs[variant].append(result)
                print(f"  repeat {repeat} {variant:<10} step {result['step_time_s']:.2f} s  "
                      f"{result['peak_rss_mb']:.0f} MB  reward {result['reward_mean']:.3f}", flush=True)
    summary = summarize(runs)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"summary": summary, "runs": runs, "args": vars(args)}, indent=1))
    print(report(summary))


if __name__ == "__main__":
    main()
