"""Seed an MLflow sqlite store with realistic workbench runs, for the dashboard tests and the large-store bench.

    from store_seed import seed_small_store, seed_large_store
    runs = seed_small_store(tmp_path)        # {"a": run_id, ...}; uri in runs["uri"]
    models = seed_model_store(tmp_path)      # runs whose final_dir holds a real tiny model (the prompt box)
    seed_large_store(tmp_path, n_runs=1000, n_steps=500)

Written with MlflowClient.log_batch (1,000 metrics per call), the way the trainer's tracker writes them.
"""

import json
import time
from pathlib import Path

import numpy as np

N_LAYERS, N_EXPERTS = 2, 8
PARAMS = {"method.name": "sft", "model.name": "deepseek-v3-tiny", "train.lr": "0.0002", "train.max_steps": "20",
          "peft.r": "16", "moe.balance": "none", "data.fingerprint": "abc123"}


def _client(uri: str):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=uri)


def _metrics(history: dict[str, list[tuple[int, float]]], t0: int):
    from mlflow.entities import Metric

    return [Metric(key, value, t0 + step * 1000, step) for key, points in history.items() for step, value in points]


def _log(client, run_id: str, metrics=(), params=None, tags=None) -> None:
    from mlflow.entities import Param, RunTag

    metrics = list(metrics)
    params = [Param(k, v) for k, v in (params or {}).items()]
    tags = [RunTag(k, v) for k, v in (tags or {}).items()]
    for i in range(0, max(len(metrics), 1), 1000):  # MLflow's log_batch takes at most 1,000 metrics
        client.log_batch(run_id, metrics=metrics[i:i + 1000], params=params if i == 0 else [],
                         tags=tags if i == 0 else [])


def training_history(steps: int, lr: float, speed: float, eval_every: int = 10) -> dict[str, list[tuple[int, float]]]:
    """Loss falling like 1/sqrt(step), a linear-decay lr and an eval loss every `eval_every` steps."""
    rng = np.random.default_rng(int(speed * 1000))
    loss = [(s, float(10 / np.sqrt(1 + speed * s) + 0.05 * rng.standard_normal())) for s in range(1, steps + 1)]
    return {
        "train/loss": loss,
        "train/learning_rate": [(s, lr * (1 - s / (steps + 1))) for s in range(1, steps + 1)],
        "train/grad_norm": [(s, float(2 + rng.random())) for s in range(1, steps + 1)],
        "eval/loss": [(s, v + 0.3) for s, v in loss if s % eval_every == 0],
    }


def expert_load_npz(path: Path, steps: int, skew: float) -> Path:
    rng = np.random.default_rng(0)
    weights = np.exp(skew * np.linspace(-1, 1, N_EXPERTS))
    loads = rng.poisson(100 * weights / weights.mean(), size=(steps, N_LAYERS, N_EXPERTS)).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, loads=loads, steps=np.arange(1, steps + 1), layers=np.array([1, 2]),
                        bias=np.zeros((N_LAYERS, N_EXPERTS), np.float32),
                        eval_before=loads[0] * 2, eval_after=np.full((N_LAYERS, N_EXPERTS), 50, np.float32))
    return path


def samples_jsonl(path: Path) -> Path:
    """Three lm-eval-style logged samples of a multiple-choice task: two right, one wrong."""
    records = [{"doc_id": i, "doc": {"q": f"question {i}"}, "target": "B",
                "arguments": [[f"Question {i}: which clause applies?", " B"]], "resps": [[["-1.0", "True"]]],
                "filtered_resps": [f"answer {i}"], "filter": "none", "metrics": ["acc"], "acc": float(i != 2)}
               for i in range(3)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


# samples.jsonl of runs a and b (workbench.evaluate.samples): the same held-out prompts, one start model.
# Prompt 1: b's answer differs from a's only in whitespace; prompts 2 and 3: the runs disagree; 3 has no reference.
LEGAL_PROMPTS = [(0, "user: How many days are in a leap year?", "366"), (1, "user: What is 40 + 5?", "45"),
                 (2, "user: Which court hears the appeal?", "the Court of Appeal"), (3, "user: Summarise clause 4.", None)]
LEGAL_BEFORE = ["365", "4 5", "court", "clause"]
LEGAL_AFTER = {"a": ["366", "45", "the Court of Appeal", "Clause 4 limits liability."],
               "b": ["366", "  45\n", "the High Court", "Clause 4 sets the fee."]}


def right_or_wrong(answer: str, reference: str | None) -> float | None:
    return None if reference is None else float(" ".join(answer.split()) == reference)


def run_samples_jsonl(path: Path, prompts, before, after, score: str | None, before_scores=None, after_scores=None) -> Path:
    """A run's samples.jsonl: one line per held-out prompt, the start model's and the trained model's answer."""
    lines = []
    for k, (index, prompt, reference) in enumerate(prompts):
        if score == "right":
            before_score, after_score = right_or_wrong(before[k], reference), right_or_wrong(after[k], reference)
        else:
            before_score = before_scores[k] if before_scores else None
            after_score = after_scores[k] if after_scores else None
        lines.append({"index": index, "prompt": prompt, "reference": reference, "before": before[k], "after": after[k],
                      "before_score": before_score, "after_score": after_score, "score": score})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


# completions.jsonl of the GRPO run g: step 5 holds three groups (the first prompt drawn again for the third),
# step 10 one group whose second completion has no advantage.
SIX, FOUR = "user: What is 6 * 7? Answer in \\boxed{}.", "user: What is 2 + 2? Answer in \\boxed{}."
GRPO_COMPLETIONS = [
    (5, SIX, "41", 0.0, 0.0, -0.5), (5, SIX, "\\boxed{42}", 1.0, 0.5, 0.5),
    (5, FOUR, "\\boxed{4}", 1.0, 0.5, 0.75), (5, FOUR, "four", 0.0, 0.0, -0.75),
    (5, SIX, "42", 1.0, 0.0, 0.25), (5, SIX, "forty", 0.0, 0.0, -0.25),
    (10, SIX, "\\boxed{42} at last", 1.0, 0.5, 0.0), (10, SIX, "\\boxed{42}", 1.0, 0.5, None)]


def completions_jsonl(path: Path) -> Path:
    rows = [{"step": step, "prompt": prompt, "completion": completion,
             "rewards": {"math_answer": math_answer, "format": fmt}, "advantage": advantage}
            for step, prompt, completion, math_answer, fmt, advantage in GRPO_COMPLETIONS]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _start(client, exp_id: str, name: str, params: dict, tags: dict, history: dict, t0: int) -> str:
    run = client.create_run(exp_id, run_name=name, start_time=t0)
    _log(client, run.info.run_id, _metrics(history, t0), params, tags)
    return run.info.run_id


def seed_small_store(root: Path) -> dict[str, str]:
    """Seven runs in four experiments: a, b (finished SFT, with scores, routing and samples.jsonl), c (FAILED
    DPO), d (RUNNING), e (finished, no metrics), f (a staged distillation run) and g (GRPO, with samples.jsonl
    and completions.jsonl). Returns their ids and the store uri."""
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = _client(uri)
    legal = client.create_experiment("legal", artifact_location=(root / "artifacts").as_uri())
    dpo = client.create_experiment("legal-dpo", artifact_location=(root / "artifacts").as_uri())
    t0 = int(time.time() * 1000) - 3_600_000
    tags = {"recipe": "legal", "method": "sft", "base_model": "deepseek-v3-tiny"}
    ids = {"uri": uri}
    ids["a"] = _start(client, legal, "sft-a", PARAMS, tags, training_history(20, 2e-4, 1.0), t0)
    ids["b"] = _start(client, legal, "sft-b", {**PARAMS, "train.lr": "0.0001", "moe.balance": "aux_free",
                                                "moe.bias_update_speed": "0.01"},
                      tags, training_history(20, 1e-4, 2.0), t0 + 60_000)
    for key, run_id, value in (("a", ids["a"], 0.5), ("b", ids["b"], 0.75)):
        scores = {"eval/legal_mc/acc": [(0, value - 0.25)], "base/legal_mc/acc": [(0, 0.25)],
                  "eval/gsm8k/exact_match_strict_match": [(0, 0.1)], "base/gsm8k/exact_match_strict_match": [(0, 0.05)],
                  "moe/mean/max_over_mean": [(10, 1.8), (20, 1.4 if key == "b" else 1.7)],
                  "moe/layer1/max_over_mean": [(10, 1.9), (20, 1.5)], "moe/layer2/max_over_mean": [(10, 1.7), (20, 1.3)]}
        # the second eval of legal_mc lands a minute later, as a scheduled eval would
        _log(client, run_id, _metrics(scores, t0 + 600_000)
             + _metrics({"eval/legal_mc/acc": [(0, value)]}, t0 + 660_000))
        client.log_artifact(run_id, str(expert_load_npz(root / key / "moe" / "expert_load.npz", 20, 1.0)), "moe")
        client.set_terminated(run_id, "FINISHED", end_time=t0 + 1_200_000)
    client.log_artifact(ids["a"], str(samples_jsonl(root / "a" / "samples_legal_mc.jsonl")), "eval/standard")
    for key in ("a", "b"):
        client.log_artifact(ids[key], str(run_samples_jsonl(root / key / "samples.jsonl", LEGAL_PROMPTS, LEGAL_BEFORE,
                                                            LEGAL_AFTER[key], "right")))
    ids["c"] = _start(client, dpo, "dpo-c", {**PARAMS, "method.name": "dpo"},
                      {**tags, "method": "dpo", "recipe": "legal-dpo"}, {"train/loss": [(1, 0.69), (2, 0.68)]}, t0)
    client.set_terminated(ids["c"], "FAILED", end_time=t0 + 120_000)
    ids["d"] = _start(client, legal, "sft-running", PARAMS, tags, {"train/loss": [(1, 9.0), (2, 8.5)]}, t0 + 90_000)
    ids["e"] = _start(client, legal, "sft-empty", PARAMS, tags, {}, t0 + 30_000)
    client.set_terminated(ids["e"], "FINISHED", end_time=t0 + 40_000)
    # f: a staged distillation run (three phases; held-out KL to its teacher)
    staged = client.create_experiment("legal-staged", artifact_location=(root / "artifacts").as_uri())
    history = {**training_history(20, 1e-3, 1.5), "train/stage": [(0, 0), (5, 1), (15, 2)],
               "eval/kl_to_teacher": [(0, 0.9), (10, 0.5), (20, 0.3)]}
    ids["f"] = _start(client, staged, "staged-f", {**PARAMS, "method.name": "distill"},
                      {**tags, "recipe": "legal-staged", "method": "distill", "distill.teacher": "run 0123abcd",
                       "train.stages": "warmup: steps 1-5, joint: steps 6-15, sharpen: steps 16-20"}, history, t0 + 120_000)
    client.set_terminated(ids["f"], "FINISHED", end_time=t0 + 300_000)
    # g: a GRPO run (reward per step, routing agreement, held-out reward before and after)
    grpo = client.create_experiment("legal-grpo", artifact_location=(root / "artifacts").as_uri())
    history = {"train/loss": [(5, 0.01), (10, -0.02)], "train/reward": [(5, 0.2), (10, 0.45)],
               "train/reward_std": [(5, 0.3), (10, 0.4)], "moe/replay_applied": [(5, 1.0), (10, 1.0)],
               "moe/router_agreement": [(5, 0.97), (10, 0.93)],
               "heldout/reward": [(0, 0.25), (10, 0.5)]}
    ids["g"] = _start(client, grpo, "grpo-g", {**PARAMS, "method.name": "grpo"},
                      {**tags, "recipe": "legal-grpo", "method": "grpo"}, history, t0 + 150_000)
    grpo_prompts = [(0, SIX, "42"), (1, FOUR, "4")]
    client.log_artifact(ids["g"], str(run_samples_jsonl(root / "g" / "samples.jsonl", grpo_prompts, ["6", "2"],
                                                        ["\\boxed{42}", "4"], "reward", [0.0, 0.0], [1.5, 1.0])))
    client.log_artifact(ids["g"], str(completions_jsonl(root / "g" / "completions.jsonl")))
    client.set_terminated(ids["g"], "FINISHED", end_time=t0 + 400_000)
    return ids


def final_dir(target: Path, seed: int) -> Path:
    """A run's final folder holding full weights: the embedded preset built from `seed` (so two seeds answer
    differently), with the model description a fine-tune writes beside them."""
    import shutil

    from workbench.model.load import write_final_info
    from workbench.model.presets import preset_dir

    shutil.copytree(preset_dir("deepseek-v3-tiny", seed), target)
    write_final_info(target, {"name": "deepseek-v3-tiny", "seed": seed}, adapter=False)
    return target


def seed_model_store(root: Path) -> dict[str, str]:
    """Two finished runs whose `final_dir` tags point at real (tiny, untrained) models, for the prompt box:
    {"uri", "m0", "m1"} (embedded preset seeds 0 and 1) and "gone" (its final_dir was deleted)."""
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = _client(uri)
    exp = client.create_experiment("legal", artifact_location=(root / "artifacts").as_uri())
    t0 = int(time.time() * 1000) - 600_000
    ids = {"uri": uri}
    for key, seed in (("m0", 0), ("m1", 1), ("gone", 2)):
        folder = root / key / "final" if key != "gone" else root / "deleted" / "final"
        if key != "gone":
            final_dir(folder, seed)
        tags = {"recipe": "legal", "method": "sft", "base_model": "deepseek-v3-tiny", "final_dir": str(folder)}
        ids[key] = _start(client, exp, f"tiny-{key}", PARAMS, tags, {"train/loss": [(1, 9.0)]}, t0 + seed * 1000)
        client.set_terminated(ids[key], "FINISHED", end_time=t0 + 60_000)
    return ids


def seed_large_store(root: Path, n_runs: int = 1000, n_steps: int = 500) -> str:
    """`n_runs` finished runs of `n_steps` steps (train loss, lr, grad norm each step; eval loss every 50)."""
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = _client(uri)
    exp = client.create_experiment("legal", artifact_location=(root / "artifacts").as_uri())
    t0 = int(time.time() * 1000) - 86_400_000
    tags = {"recipe": "legal", "method": "sft", "base_model": "deepseek-v3-tiny"}
    for i in range(n_runs):
        history = training_history(n_steps, 1e-4 * (1 + i % 5), 0.5 + (i % 10) / 5, eval_every=50)
        history["eval/legal_mc/acc"] = [(0, 0.25 + (i % 50) / 100)]
        params = {**PARAMS, "train.lr": str(1e-4 * (1 + i % 5)), "run.index": str(i)}
        run_id = _start(client, exp, f"run-{i:04d}", params, tags, history, t0 + i * 60_000)
        client.set_terminated(run_id, "FINISHED", end_time=t0 + i * 60_000 + 50_000)
    return uri
