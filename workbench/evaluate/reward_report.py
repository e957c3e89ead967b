"""Held-out reward before and after a GRPO run: the evidence that reinforcement learning helped.

    report = RewardReport(recipe, tracker, rows=splits.eval, output_dir=run_dir, enabled=True, funcs=funcs, weights=weights)
    report.before(model, tokenizer)     # greedy completions of every held-out prompt, scored by the recipe's rewards
    ... train ...
    report.after(model, tokenizer, step)

Greedy decoding (deterministic for a given model), `method.max_new_tokens` new tokens, each completion scored
by every reward of the recipe; the reward is their weighted sum, as in training. Logged: `heldout/reward`
(mean over prompts), `heldout/reward_se` (its standard error), `heldout/<reward name>` per function; after
training also `heldout/reward_gain` (after - before) and `heldout/reward_gain_se`, the standard error of the
per-prompt differences (paired: the same prompts before and after). The before figures are kept in the run
folder, so a resumed run still reports its gain. Both sets of completions go to `heldout_completions.jsonl`.
"""

import json
import math
from pathlib import Path

import torch

BEFORE_FILE = "heldout_before.json"


def score(funcs, weights, rows: list[dict], texts: list[str], state=None) -> dict:
    """{"total": [...], <reward name>: [...]} per row for completions `texts` of `rows` (chat rows get chat
    completions); `state`: the trainer's TrainerState, as TRL passes it (a fresh one when None)."""
    if state is None:
        from transformers import TrainerState

        state = TrainerState()
    chat = bool(rows) and isinstance(rows[0]["prompt"], list)
    completions = [[{"role": "assistant", "content": t}] for t in texts] if chat else list(texts)
    columns = {key: [row.get(key) for row in rows] for key in rows[0] if key != "prompt"} if rows else {}
    per_func = {}
    for func in funcs:
        values = func(prompts=[row["prompt"] for row in rows], completions=completions, completion_ids=None,
                      trainer_state=state, log_extra=_ignore, log_metric=_ignore, **columns)  # TRL's arguments
        per_func[func.__name__] = [float("nan") if v is None else float(v) for v in values]
    total = [sum(w * (0.0 if math.isnan(values[i]) else values[i]) for w, values in zip(weights, per_func.values()))
             for i in range(len(rows))]
    return {"total": total, **per_func}


def stop_tokens(model, tokenizer) -> list[int]:
    """What ends a completion, as TRL's GRPOTrainer decides: the tokenizer's EOS and the generation config's."""
    ids = [tokenizer.eos_token_id]
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids += configured if isinstance(configured, list) else [configured] if configured is not None else []
    return sorted({i for i in ids if i is not None})


def _ignore(*args, **kwargs) -> None:  # log_extra / log_metric outside training: nothing to log to
    return None


@torch.no_grad()
def greedy_completions(model, tokenizer, rows: list[dict], max_new_tokens: int, batch_size: int = 16) -> list[str]:
    """Greedy completions of the rows' prompts, tokenized as TRL does: chat prompts through the chat template with
    the generation prompt, text prompts as they are."""
    was_training = model.training
    model.eval()
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    texts = []
    try:
        for start in range(0, len(rows), batch_size):
            prompts = [row["prompt"] for row in rows[start:start + batch_size]]
            if isinstance(prompts[0], list):
                rendered = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
                batch = tokenizer(rendered, return_tensors="pt", padding=True, add_special_tokens=False)
            else:
                batch = tokenizer(prompts, return_tensors="pt", padding=True)
            batch = batch.to(model.device)
            out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id, eos_token_id=stop_tokens(model, tokenizer))
            texts += tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    return texts


def mean_se(values: list[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, float("nan")
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


class RewardReport:
    def __init__(self, recipe, track, rows, output_dir: Path, enabled: bool, funcs=(), weights=()):
        """`funcs`, `weights`: the run's reward functions as the plan built and tried them."""
        self.recipe, self.track, self.output_dir = recipe, track, Path(output_dir)
        self.rows = [dict(row) for row in rows] if rows is not None else []
        self.active = enabled and recipe.method.name == "grpo" and bool(self.rows) and bool(funcs)
        self.before_scores: dict | None = None
        self.before_texts: list[str] | None = None
        self.funcs, self.weights = list(funcs), list(weights)

    def _measure(self, model, tokenizer) -> tuple[list[str], dict]:
        texts = greedy_completions(model, tokenizer, self.rows, self.recipe.method.max_new_tokens)
        return texts, score(self.funcs, self.weights, self.rows, texts)

    def _figures(self, scores: dict) -> dict[str, float]:
        mean, se = mean_se(scores["total"])
        figures = {"heldout/reward": mean, "heldout/reward_se": se}
        for name, values in scores.items():
            if name != "total":
                valid = [v for v in values if not math.isnan(v)]
                figures[f"heldout/{name}"] = sum(valid) / len(valid) if valid else float("nan")
        return figures

    def _fingerprint(self) -> str:
        import hashlib

        return hashlib.sha256(json.dumps(self.rows, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def before(self, model, tokenizer, resumed: bool = False) -> None:
        if not self.active:
            return
        saved = self.output_dir / BEFORE_FILE
        if resumed and saved.is_file():
            kept = json.loads(saved.read_text())
            if kept.get("rows") in (None, self._fingerprint()):  # None: written before rows were fingerprinted
                self.before_texts, self.before_scores = kept["completions"], kept["scores"]
                return
            print("notice: the held-out rows changed since the run started: the held-out reward after training is "
                  "reported without a gain (its start was measured on other rows)")
            return
        if resumed:
            return  # started before the held-out measurement existed: no start to compare with
        self.before_texts, self.before_scores = self._measure(model, tokenizer)
        saved.write_text(json.dumps({"rows": self._fingerprint(), "completions": self.before_texts,
                                     "scores": self.before_scores}))
        figures = self._figures(self.before_scores)
        self.track.log_metrics(figures, step=0, raw=True)
        print(f"held-out reward before training ({len(self.rows)} prompts, greedy): "
              f"{figures['heldout/reward']:.3f} (SE {figures['heldout/reward_se']:.3f})")

    def after(self, model, tokenizer, step: int) -> dict | None:
        if not self.active:
            return None
        texts, scores = self._measure(model, tokenizer)
        figures = self._figures(scores)
        if self.before_scores is not None:
            gain, gain_se = mean_se([a - b for a, b in zip(scores["total"], self.before_scores["total"])])
            figures.update({"heldout/reward_gain": gain, "heldout/reward_gain_se": gain_se})
        self.track.log_metrics(figures, step=step, raw=True)
        path = self.output_dir / "heldout_completions.jsonl"
        with open(path, "w", encoding="utf-8") as out:
            for i, row in enumerate(self.rows):
                out.write(json.dumps({"prompt": row["prompt"], **{k: v for k, v in row.items() if k != "prompt"},
                                      "before": self.before_texts[i] if self.before_texts else None,
                                      "reward_before": self.before_scores["total"][i] if self.before_scores else None,
                                      "after": texts[i], "reward_after": scores["total"][i]}, default=str) + "\n")
        self.track.log_artifact(path)
        line = f"held-out reward ({len(self.rows)} prompts, greedy): "
        if self.before_scores is not None:
            before = mean_se(self.before_scores["total"])[0]
            line += (f"{before:.3f} -> {figures['heldout/reward']:.3f}, gain {figures['heldout/reward_gain']:+.3f} "
                     f"(SE {figures['heldout/reward_gain_se']:.3f})")
        else:
            line += f"{figures['heldout/reward']:.3f} (SE {figures['heldout/reward_se']:.3f})"
        print(line)
        return figures
