"""Sample answers with every run: the same held-out prompts answered greedily before and after training.

    report = SampleReport(recipe, tracker, rows=splits.eval, output_dir=run_dir, enabled=True)
    report.before(model, tokenizer)      # the start model's answers (kept in the run folder: a resume keeps them)
    ... train ...
    report.after(model, tokenizer)       # the trained model's: samples.jsonl, an MLflow artifact of the run

`eval.samples` prompts (default 16; 0: off) are drawn from the held-out rows with `data.seed`, so every run of a
recipe with the same data answers the same prompts, and the dashboard's Samples page can put runs side by side.
Each answer is greedy, at most `eval.sample_tokens` new tokens, with the model's chat template for chat rows.
One JSON line per prompt:

    {"index": 3, "prompt": "user: How many days ...", "reference": "45", "before": "...", "after": "...",
     "before_score": 0.0, "after_score": 1.0, "score": "reward"}

`reference` is the row's own answer where it has one (an SFT row's last assistant turn, a preference pair's
chosen answer, a KTO row's desirable completion, a GRPO row's `answer`); `score` names what the scores are:
"reward" (a GRPO run: the weighted sum of its rewards, as in training) or null (no score).
"""

import json
import random
from pathlib import Path

SAMPLES_FILE = "samples.jsonl"
BEFORE_FILE = "samples_before.json"


def prompt_and_reference(row: dict) -> tuple[object, str | None]:
    """(what the model is asked, the row's own answer or None) for a row of any method's data."""
    if "messages" in row:  # sft, distill: the turns before the last assistant turn
        messages = row["messages"]
        last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
        return messages[:last], messages[last]["content"]
    reference = row.get("chosen", row.get("completion") if row.get("label", True) else None)
    if reference is None and row.get("answer") is not None:
        reference = str(row["answer"])
    if isinstance(reference, list):  # chat-formatted preference rows: the answer's assistant turn
        reference = next((m["content"] for m in reversed(reference) if m.get("role") == "assistant"), None)
    return row["prompt"], reference


def shown(prompt) -> str:
    """A prompt as plain text: chat turns as `role: content` lines."""
    if isinstance(prompt, list):
        return "\n".join(f"{m.get('role', '')}: {m.get('content', '')}" for m in prompt)
    return str(prompt)


def pick(rows, count: int, seed: int) -> list[int]:
    """The indices of the held-out rows that are sampled: `count` of them, drawn with `seed`, in order."""
    return sorted(random.Random(seed).sample(range(len(rows)), min(count, len(rows))))


class SampleReport:
    def __init__(self, recipe, track, rows, output_dir: Path, enabled: bool, funcs=(), weights=()):
        """`funcs`, `weights`: a GRPO run's reward functions (as the plan built them), to score each answer."""
        self.recipe, self.track, self.output_dir = recipe, track, Path(output_dir)
        rows = list(rows) if rows is not None else []
        self.indices = pick(rows, recipe.eval.samples, recipe.data.seed) if enabled else []
        self.rows = [dict(rows[i]) for i in self.indices]
        self.active = bool(self.rows)
        self.funcs, self.weights = list(funcs), list(weights)
        self.before_answers: list[str] | None = None
        self.before_scores: list[float] | None = None

    def _answer(self, model, tokenizer) -> tuple[list[str], list[float] | None]:
        from workbench.evaluate.reward_report import greedy_completions, score

        asked = [{"prompt": prompt_and_reference(row)[0]} for row in self.rows]
        answers = greedy_completions(model, tokenizer, asked, self.recipe.eval.sample_tokens)
        if not self.funcs:
            return answers, None
        return answers, score(self.funcs, self.weights, self.rows, answers)["total"]

    def before(self, model, tokenizer, resumed: bool = False) -> None:
        if not self.active:
            return
        saved = self.output_dir / BEFORE_FILE
        if resumed:
            if saved.is_file():
                kept = json.loads(saved.read_text(encoding="utf-8"))
                if kept.get("indices") == self.indices:
                    self.before_answers, self.before_scores = kept["answers"], kept["scores"]
            return  # a run resumed without its start answers shows the trained ones only
        self.before_answers, self.before_scores = self._answer(model, tokenizer)
        saved.write_text(json.dumps({"indices": self.indices, "answers": self.before_answers,
                                     "scores": self.before_scores}))

    def after(self, model, tokenizer) -> Path | None:
        if not self.active:
            return None
        answers, scores = self._answer(model, tokenizer)
        path = self.output_dir / SAMPLES_FILE
        with open(path, "w", encoding="utf-8") as out:
            for k, (index, row) in enumerate(zip(self.indices, self.rows)):
                prompt, reference = prompt_and_reference(row)
                out.write(json.dumps({
                    "index": index, "prompt": shown(prompt), "reference": reference,
                    "before": self.before_answers[k] if self.before_answers else None, "after": answers[k],
                    "before_score": self.before_scores[k] if self.before_scores else None,
                    "after_score": scores[k] if scores else None, "score": "reward" if scores else None,
                }, ensure_ascii=False) + "\n")
        self.track.log_artifact(path)
        print(f"sample answers: {len(self.rows)} held-out prompts, before and after ({SAMPLES_FILE}; "
              f"`workbench show {self.track.run_id}` prints three)")
        return path


def read_samples(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
