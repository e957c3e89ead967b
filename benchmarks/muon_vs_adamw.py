"""Muon against AdamW on a full fine-tune of the embedded tiny model: the `legal` recipe with `peft.type=none`.

    .venv/bin/python benchmarks/muon_vs_adamw.py                     # seeds 42 43 44, 60 steps: ~15 min on 2 cores
    .venv/bin/python benchmarks/muon_vs_adamw.py --seeds 42 --steps 20 --out /tmp/muon.json

For each seed both optimizers train the same preset weights on the same rows in the same order (train.seed) for the
same optimizer steps with the recipe's learning rate and schedule, one after the other (AdamW first), each in a
fresh process. Measured per run:
  held-out loss    the recipe's eval/loss on its held-out rows after the last step (before training: 9.07 for both)
  step time        median seconds per optimizer step, evaluations excluded (on a machine shared with other work the
                   spread between seeds is mostly the machine's)
  optimizer state  bytes of the optimizer's state tensors after the last step (AdamW: two moments per parameter;
                   Muon: one momentum per matrix, AdamW's two moments for embeddings, LM head and norms)
Prints one row per run and mean +- standard deviation over seeds; --out writes the runs as JSON.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def one_run(optimizer: str, seed: int, steps: int, tmp: Path) -> dict:
    """Train in this process; the measurements as a dict."""
    import time

    from transformers import TrainerCallback

    from workbench.recipe.load import load_recipe
    from workbench.train.build import build
    from workbench.train.optim import state_bytes

    class StepTimes(TrainerCallback):
        def __init__(self):
            self.times, self.start = [], None

        def on_step_begin(self, args, state, control, **kwargs):
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.times.append(time.perf_counter() - self.start)

    overrides = ["peft.type=none", f"train.optimizer={optimizer}", f"train.seed={seed}", f"train.max_steps={steps}",
                 f"train.eval_steps={steps}", f"train.save_steps={steps + 1}", "eval.suite=null", "eval.samples=0",
                 f"track.tracking_uri=sqlite:///{tmp / 'mlflow.db'}", "track.experiment=muon-vs-adamw",
                 f"train.output_dir={tmp / f'{optimizer}-{seed}'}", "track.log_model=false"]
    run = build(load_recipe("legal", overrides))
    timer = StepTimes()
    run.trainer.add_callback(timer)
    run.train()
    evals = [entry["eval_loss"] for entry in run.trainer.state.log_history if "eval_loss" in entry]
    result = {"optimizer": optimizer, "seed": seed, "steps": run.trainer.state.global_step,
              "held_out_before": evals[0], "held_out_loss": evals[-1],
              "step_s": statistics.median(timer.times), "optimizer_state_bytes": state_bytes(run.trainer.optimizer)}
    run.close()
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--optimizers", nargs="+", default=["adamw", "muon"], choices=["adamw", "muon"])
    parser.add_argument("--out", type=Path, default=None, help="write the runs as JSON")
    parser.add_argument("--one", nargs=3, metavar=("OPTIMIZER", "SEED", "DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:  # the child: one run, its result as the last line
        print(json.dumps(one_run(args.one[0], int(args.one[1]), args.steps, Path(args.one[2]))))
        return 0

    runs = []
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for optimizer in args.optimizers:
                out = subprocess.run([sys.executable, __file__, "--steps", str(args.steps), "--one", optimizer,
                                      str(seed), tmp], capture_output=True, text=True, env=env, cwd=ROOT)
                if out.returncode != 0:
                    sys.stderr.write(out.stdout[-2000:] + out.stderr[-4000:])
                    return 1
                runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
                print(f"{optimizer:>6} seed {seed}: held-out loss {runs[-1]['held_out_loss']:.3f}, "
                      f"{runs[-1]['step_s']:.2f} s/step, optimizer state {runs[-1]['optimizer_state_bytes'] / 2**20:.1f} MiB",
                      flush=True)
    print(f"\n{len(args.seeds)} seeds, {args.steps} steps, legal with peft.type=none (mean +- sd over seeds)")
    print(f"{'optimizer':>9} {'held-out loss':>17} {'s/step':>15} {'optimizer state MiB':>20}")
    for optimizer in args.optimizers:
        mine = [r for r in runs if r["optimizer"] == optimizer]
        cells = []
        for key, scale, fmt in (("held_out_loss", 1, ".3f"), ("step_s", 1, ".2f"), ("optimizer_state_bytes", 2**-20, ".1f")):
            values = [r[key] * scale for r in mine]
            sd = statistics.stdev(values) if len(values) > 1 else float("nan")
            cells.append(f"{statistics.mean(values):{fmt}} +- {sd:{fmt}}")
        print(f"{optimizer:>9} {cells[0]:>17} {cells[1]:>15} {cells[2]:>20}")
    if args.out:
        args.out.write_text(json.dumps({"steps": args.steps, "runs": runs}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
