"""Does legal-staged's sparsity phase concentrate routing? Its third phase with the gate-entropy penalty against the
same phase without it (the router alone, as the recipe had it), same seeds, measured on the held-out rows.

    nice .venv/bin/python benchmarks/sparsity_stages.py                    # seeds 42 43 44, both variants
    nice .venv/bin/python benchmarks/sparsity_stages.py --seeds 42 --variants control sparsity:sparsity=4,lr_scale=2

For each seed the first two phases of recipes/legal-staged.yaml train once and stop at the boundary with a
checkpoint; each variant then resumes a copy of it (and of its MLflow store) and trains the third phase: `sparsity`
as the recipe has it (`sparsity:key=value,...` changes its keys), `control` the phase the recipe had before, the
router alone at half the learning rate with no penalty. At the end of phase 2 and at the end of the run the
script measures, on the recipe's held-out rows (real tokens, prompt included, in eval mode): the held-out loss
(the trainer's own evaluation), the router entropy over all experts, and the gate figures of
workbench.moe.sparsity (top-k entropy, effective experts above moe.gate_threshold, top-1 share, experts per
token), averaged over MoE layers; and the recipe's legal suite (eval.suite, `legal_chat`). Prints a table (mean and
standard deviation over seeds) and writes JSON with every run's figures (--out).
"""

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FIGURES = ("loss", "router_entropy", "topk_entropy", "effective_experts", "top1_share", "experts_per_token")
CONTROL = {"name": "router_only", "share": 0.25, "train": ["router"], "lr_scale": 0.5, "balance": "none"}


def measure(trainer, suite: str | None, threshold: float) -> dict:
    """Held-out loss and routing figures (means over MoE layers), and the suite's scores, of the model now."""
    from workbench.evaluate.harness import run_suite
    from workbench.moe.routing import RoutingRecorder
    from workbench.moe.sparsity import GATE_FIGURES

    model = trainer.model
    recorder = RoutingRecorder(model, gate_threshold=threshold)
    try:
        loss = trainer.evaluate(metric_key_prefix="heldout")["heldout_loss"]
        bucket = recorder.take("eval")
    finally:
        recorder.remove()
    tokens = bucket.tokens.clamp_min(1)
    row = {"loss": loss, "router_entropy": bucket.entropy.mean().item(), "tokens": int(bucket.tokens[0])}
    row.update({name: (bucket.figure_sums[i] / tokens).mean().item() for i, name in enumerate(GATE_FIGURES)})
    if suite:
        was_training = model.training
        model.eval()
        row["scores"] = run_suite(model, trainer.processing_class, suite)["scores"]
        model.train(was_training)
    return row


def stages(variant: str) -> list[dict]:
    from workbench.recipe.load import load_recipe

    recipe = load_recipe("legal-staged")
    listed = [stage.model_dump(mode="json") for stage in recipe.train.stages]
    name, _, changes = variant.partition(":")
    if name == "control":
        listed[2] = dict(CONTROL)
    for item in filter(None, changes.split(",")):
        key, _, value = item.partition("=")
        listed[2][key] = yaml.safe_load(value)
    return listed


def _recipe(seed: int, variant: str, suite: bool, out: Path, store: Path):
    from workbench.recipe.load import load_recipe

    overrides = [f"train.seed={seed}", f"train.output_dir={out}", f"track.tracking_uri=sqlite:///{store}",
                 "track.experiment=sparsity-stages", "track.log_model=false", "eval.samples=0",
                 "train.stages=" + json.dumps(stages(variant))]
    return load_recipe("legal-staged", overrides + ([] if suite else ["eval.suite=null"]))


def phases_one_and_two(seed: int, suite: bool, tmp: Path) -> tuple[Path, dict]:
    """Train the first two phases, checkpoint at the boundary, measure there and stop: (the run folder, figures)."""
    from transformers import TrainerCallback

    from workbench.train.build import build
    from workbench.train.stages import starts

    out = tmp / f"base-{seed}"
    recipe = _recipe(seed, "control", suite, out, tmp / f"base-{seed}.db")
    figures = {}

    class Stop(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            state.save_steps = starts(recipe.train.stages, state.max_steps)[2]  # one checkpoint, at the boundary

        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step == starts(recipe.train.stages, state.max_steps)[2]:
                figures["before"] = measure(run.trainer, recipe.eval.suite, recipe.moe.gate_threshold)
                raise KeyboardInterrupt  # the third phase is trained by each variant from the checkpoint

    run = build(recipe)
    run.trainer.add_callback(Stop())
    try:
        run.train()
    except KeyboardInterrupt:
        pass
    run.close()
    return out, figures["before"]


def phase_three(seed: int, variant: str, suite: bool, base: Path, tmp: Path) -> dict:
    """The third phase of `variant`, resumed from a copy of the boundary checkpoint (and of its MLflow store)."""
    import shutil

    from workbench.train.build import build

    label = variant.replace(":", "-").replace(",", "-").replace("=", "")
    out, store = tmp / f"{label}-{seed}", tmp / f"{label}-{seed}.db"
    shutil.copytree(base, out)
    shutil.copy(base.parent / f"{base.name}.db", store)
    recipe = _recipe(seed, variant, suite, out, store)
    run = build(recipe, resume=True)
    run.train()
    after = measure(run.trainer, None, recipe.moe.gate_threshold)
    after["scores"] = dict(run.evals.tuned_scores)
    run.close()
    return after


def _cell(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def table(results: list[dict]) -> str:
    score_names = sorted({k for r in results for k in r["after"].get("scores", {})})
    head = ["variant", "when", *FIGURES, *score_names]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for variant in dict.fromkeys(r["variant"] for r in results):
        rows = [r for r in results if r["variant"] == variant]
        for when in ("before", "after"):
            cells = [_cell([r[when][name] for r in rows]) for name in FIGURES]
            cells += [_cell([r[when]["scores"][s] for r in rows]) if all(s in r[when].get("scores", {}) for r in rows)
                      else "" for s in score_names]
            label = "end of phase 2" if when == "before" else "end of phase 3"
            lines.append(f"| {variant} | {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--variants", nargs="+", default=["sparsity", "control"],
                        help="sparsity (the recipe's third phase), control (the router alone, no penalty); "
                             "either with :key=value,... changing the phase")
    parser.add_argument("--no-suite", action="store_true", help="skip the legal suite (faster)")
    parser.add_argument("--out", type=Path, default=None, help="write every run's figures as JSON")
    args = parser.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            base, before = phases_one_and_two(seed, not args.no_suite, Path(tmp))
            for variant in args.variants:
                after = phase_three(seed, variant, not args.no_suite, base, Path(tmp))
                results.append({"seed": seed, "variant": variant, "phase": stages(variant)[2],
                                "before": before, "after": after})
                print(json.dumps(results[-1]), flush=True)
    print(table(results))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
