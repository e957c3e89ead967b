"""Top-p routing against DeepSeek-V3's top-k on the same run: experts per token, tokens/s and held-out loss.

    nice .venv/bin/python benchmarks/top_p.py                          # top_k, top_p 0.5, top_p 0.7; seed 42; ~15 min
    nice .venv/bin/python benchmarks/top_p.py --variants top_k top_p:0.6 --seeds 42 43 --steps 60

Every variant is recipes/legal-staged.yaml without its stages (a full fine-tune of the embedded model: router and
experts train under the routing they will be used with; lr 1e-3 linear, aux-free balancing, 3 epochs), the same
seed and rows; only moe.routing / moe.top_p differ. Measured per run, on the recipe's held-out rows:
- experts per token: mean over real tokens and MoE layers of the experts a token was sent to (the router's
  output, sentinel slots left out), in the trainer's evaluation at the end;
- held-out loss: that evaluation's loss (assistant tokens);
- training tokens/s: real tokens of the training rows (every epoch) / the trainer's train_runtime;
- forward tokens/s: real held-out tokens / the fastest no-grad pass over all held-out rows (batches of 8), the trained
  models of all variants timed in turn, 5 rounds, after every variant has trained (so background load hits all alike).
Training runs one variant after another: on a shared machine its tokens/s moves with the load; compare within one
invocation.
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def overrides_for(variant: str) -> list[str]:
    if variant == "top_k":
        return []
    mode, _, p = variant.partition(":")
    return ["moe.routing=top_p", f"moe.top_p={p}"]


def forward_seconds(model, batches) -> float:
    """One no-grad pass over `batches` in eval mode, in seconds."""
    import torch

    model.eval()
    start = time.perf_counter()
    with torch.no_grad():
        for batch in batches:
            model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    return time.perf_counter() - start


def run_one(variant: str, seed: int, steps: int | None, tmp: Path) -> tuple[dict, object, list]:
    from workbench.moe.routing import RoutingRecorder
    from workbench.moe.sparsity import GATE_FIGURES
    from workbench.recipe.load import load_recipe
    from workbench.train.build import build

    overrides = [f"train.seed={seed}", f"train.output_dir={tmp / f'{variant}-{seed}'}", "train.stages=[]",
                 f"track.tracking_uri=sqlite:///{tmp}/mlflow.db", "track.experiment=top-p", "track.log_model=false",
                 "eval.suite=null", "eval.samples=0", *overrides_for(variant)]
    if steps:
        overrides.append(f"train.max_steps={steps}")
    run = build(load_recipe("legal-staged", overrides))
    result = run.train()
    trainer = run.trainer
    epochs = trainer.state.epoch
    train_tokens = sum(len(ids) for ids in trainer.train_dataset["input_ids"]) * epochs
    recorder = RoutingRecorder(trainer.model)
    try:
        loss = trainer.evaluate(metric_key_prefix="heldout")["heldout_loss"]
        bucket = recorder.take("eval")
    finally:
        recorder.remove()
    per_token = (bucket.figure_sums[GATE_FIGURES.index("experts_per_token")] / bucket.tokens.clamp_min(1))
    row = {"variant": variant, "seed": seed, "steps": trainer.state.global_step, "heldout_loss": loss,
           "experts_per_token": per_token.mean().item(), "experts_per_token_by_layer": per_token.tolist(),
           "train_tokens_per_s": train_tokens / result.metrics["train_runtime"], "heldout_tokens": int(bucket.tokens[0])}
    batches = [{k: v for k, v in b.items() if k in ("input_ids", "attention_mask")} for b in trainer.get_eval_dataloader()]
    run.close()
    return row, trainer.model, batches


def table(rows: list[dict]) -> str:
    lines = ["| routing | seed | experts per token (held-out) | training tokens/s | forward tokens/s | held-out loss |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['seed']} | {r['experts_per_token']:.2f} | {r['train_tokens_per_s']:,.0f} | "
                     f"{r['forward_tokens_per_s']:,.0f} | {r['heldout_loss']:.3f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=["top_k", "top_p:0.5", "top_p:0.7"],
                        help="top_k or top_p:<p>")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42])
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps (default: the recipe's 3 epochs)")
    parser.add_argument("--out", type=Path, default=None, help="write the rows as JSON")
    args = parser.parse_args(argv)
    rows, models = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for variant in args.variants:
                row, model, batches = run_one(variant, seed, args.steps, Path(tmp))
                rows.append(row)
                models.append(model)
                print(json.dumps(row), flush=True)
    best = [float("inf")] * len(rows)
    for _ in range(5):  # in turn, so that a burst of background load slows every variant alike
        for i, model in enumerate(models):
            best[i] = min(best[i], forward_seconds(model, batches))
    tokens = sum(int(b["attention_mask"].sum()) for b in batches)
    for row, seconds in zip(rows, best):
        row["forward_tokens_per_s"] = tokens / seconds
    print(table(rows))
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
