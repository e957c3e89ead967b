"""Does distillation beat plain SFT for the same student? legal-distill against the same recipe with method sft.

    .venv/bin/python benchmarks/distill_vs_sft.py                 # seeds 42 43 44, ~8 min on 2 cores
    .venv/bin/python benchmarks/distill_vs_sft.py --seeds 42 --steps 40

Needs a finished `legal-teacher` run (`make finetune RECIPE=legal-teacher`). For each seed both students start from
the same preset weights and train the same number of optimizer steps over the same rows (train.seed) with the same
schedule; the SFT student with the workbench's SFT defaults (length-grouped batches, assistant-only loss), the
distilled one in random batches (GKD's sampler). Both are then scored by one function
(`workbench.train.methods.distill.held_out`) on the recipe's held-out rows, which the teacher's run held out as well: the
forward KL to the teacher and the cross-entropy on the reference answers, per answer token (the last assistant
turn). Prints a table and the mean differences with their standard errors over seeds.
"""

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def train(method: str, seed: int, steps: int | None, out: Path, extra: list[str]):
    from workbench.recipe.load import load_recipe
    from workbench.train.build import build

    overrides = [f"train.seed={seed}", f"train.output_dir={out}", "eval.suite=null", "track.experiment=distill-vs-sft"]
    overrides += extra if method == "distill" else []
    if steps:
        overrides.append(f"train.max_steps={steps}")
    if method == "sft":
        overrides += ["method.name=sft", "teacher.from_run=null", "method.beta=0.1"]
    run = build(load_recipe("legal-distill", overrides))
    run.train()
    run.close()
    return run


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps (default: the recipe's epochs)")
    parser.add_argument("--methods", nargs="+", default=["distill", "sft"], choices=["distill", "sft"])
    parser.add_argument("--distill", nargs="*", default=[], metavar="KEY=VALUE", help="overrides for the distill run only")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = parser.parse_args(argv)

    from workbench.recipe.load import load_recipe
    from workbench.train.methods.distill import held_out
    from workbench.model.load import load_resolved
    from workbench.train.plan import make_plan

    recipe = load_recipe("legal-distill", args.distill)
    teacher, _ = load_resolved(make_plan(recipe).teacher, tokenizer=False)
    rows, results = None, []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            row = {"seed": seed}
            for method in args.methods:
                run = train(method, seed, args.steps, Path(tmp) / f"{method}-{seed}", args.distill)
                if rows is None:
                    rows = list(run.trainer.eval_dataset)
                scores = held_out(run.trainer.model, teacher, rows, run.trainer.processing_class,
                                  max_length=recipe.train.max_length)
                row.update({f"{method}_kl": scores["kl_to_teacher"], f"{method}_nll": scores["nll"],
                            "steps": run.trainer.state.global_step, "tokens": scores["tokens"]})
            results.append(row)
    teacher_nll = held_out(teacher, teacher, rows, run.trainer.processing_class, max_length=recipe.train.max_length)["nll"]
    print(f"held-out rows: {len(rows)} ({results[0]['tokens']} completion tokens); teacher's own nll {teacher_nll:.3f}")
    columns = [f"{m}_{k}" for k in ("kl", "nll") for m in args.methods]
    print(f"{'seed':>5} {'steps':>5} " + " ".join(f"{c:>12}" for c in columns))
    for r in results:
        print(f"{r['seed']:>5} {r['steps']:>5} " + " ".join(f"{r[c]:>12.3f}" for c in columns))
    summary = {"teacher_nll": teacher_nll}
    for metric in ("kl", "nll") if len(args.methods) == 2 else ():
        diffs = [r[f"distill_{metric}"] - r[f"sft_{metric}"] for r in results]
        mean = statistics.mean(diffs)
        se = statistics.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else float("nan")
        summary[f"{metric}_diff"], summary[f"{metric}_diff_se"] = mean, se
        print(f"distill - SFT {metric}: {mean:+.3f} (standard error {se:.3f}, {len(diffs)} seeds)")
    if args.out:
        args.out.write_text(json.dumps({"runs": results, "summary": summary}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
