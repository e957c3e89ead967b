"""Load and validate a recipe's data into train/eval `datasets.Dataset`s for its method.

    from workbench.data.load import load_dataset
    splits = load_dataset(recipe.data, method="sft")   # splits.train, splits.eval, splits.fingerprint

Formats (TRL's, chat or plain text):
  sft, distill {"messages": [{"role": "user"|"assistant"|"system", "content": str}, ...]}
  dpo, orpo  {"prompt": ..., "chosen": ..., "rejected": ...}   (each a string or a list of messages)
  kto        {"prompt": ..., "completion": ..., "label": bool}  (preference pairs are unpaired for it)
  grpo       {"prompt": ..., <the fields its rewards read: answer, tests, ...>}  (every field is kept)
Sources: a local .jsonl/.json/.parquet file (relative to the project root) or a hub dataset id + split.
Every row is checked up front; a bad one is reported as `<file>: row <n>: <field>: <problem>`.
"""

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from workbench.errors import WorkbenchError
from workbench.paths import project_root

ROLES = ("system", "user", "assistant")
LOCAL_SUFFIXES = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}
FIELDS = {"sft": ("messages",), "distill": ("messages",), "dpo": ("prompt", "chosen", "rejected"), "orpo": ("prompt", "chosen", "rejected"),
          "kto": ("prompt", "completion", "label"), "grpo": ("prompt",)}


@dataclass
class Splits:
    train: object  # datasets.Dataset
    eval: object | None
    fingerprint: str
    source: str


def load_dataset(cfg, method: str, check_row=None) -> Splits:
    """`check_row(row, where)`: a further per-row check (grpo: the fields its rewards read), raising WorkbenchError."""
    rows, source, digest = _read(cfg.train, cfg.split, "data.train")
    rows = _validated(rows, source, method, check_row)[: cfg.max_rows]
    if cfg.eval:
        eval_rows, eval_source, eval_digest = _read(cfg.eval, cfg.eval_split or cfg.split, "data.eval")
        eval_rows = _validated(eval_rows, eval_source, method, check_row)
        digest = hashlib.sha256((digest + eval_digest).encode()).hexdigest()
    else:
        rows, eval_rows = _hold_out(rows, cfg.eval_fraction, cfg.seed)
    from datasets import Dataset

    train = Dataset.from_list(rows)
    held_out = Dataset.from_list(eval_rows) if eval_rows else None
    return Splits(train=train, eval=held_out, fingerprint=digest[:16], source=source)


def _read(ref: str, split: str, key: str) -> tuple[list[dict], str, str]:
    path = Path(ref).expanduser()
    path = path if path.is_absolute() else project_root() / path
    if path.suffix in LOCAL_SUFFIXES or path.exists():
        if not path.is_file():
            raise WorkbenchError(f"{key}: file not found: {ref}")
        if path.suffix not in LOCAL_SUFFIXES:
            raise WorkbenchError(f"{key}: {ref}: unsupported file type '{path.suffix}' (use {', '.join(LOCAL_SUFFIXES)})")
        return _read_local(path, ref), ref, hashlib.sha256(path.read_bytes()).hexdigest()
    return _read_hub(ref, split, key)


def jsonl_rows(path: Path, label: str) -> list[tuple[int, object]]:
    """(line number, parsed value) for each non-blank line of a UTF-8 .jsonl file; one-line errors name the row."""
    from workbench.files import read_text

    return json_lines(read_text(path, label), label)


def json_lines(text: str, label: str) -> list[tuple[int, object]]:
    """(line number, parsed value) for each non-blank line of JSONL text."""
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append((number, json.loads(line)))
        except json.JSONDecodeError as exc:
            raise WorkbenchError(f"{label}: row {number}: not valid JSON ({exc.msg})") from None
    return rows


def _read_local(path: Path, label: str) -> list[dict]:
    from workbench.files import read_text

    if path.suffix == ".jsonl":
        return jsonl_rows(path, label)
    text = read_text(path, label) if path.suffix != ".parquet" else None
    import datasets

    try:
        loaded = datasets.load_dataset(LOCAL_SUFFIXES.get(path.suffix, "json"), data_files=str(path), split="train")
    except Exception as exc:  # a malformed file: say which, not where inside the library
        raise WorkbenchError(f"{label}: cannot read: {str(exc).splitlines()[0]}") from None
    return list(enumerate(loaded, start=1))


def _read_hub(ref: str, split: str, key: str) -> tuple[list[dict], str, str]:
    import datasets

    try:
        loaded = datasets.load_dataset(ref, split=split)
    except Exception as exc:
        raise WorkbenchError(f"{key}: '{ref}' is not a local file and the hub dataset failed to load: "
                             f"{str(exc).splitlines()[0]}") from None
    return list(enumerate(loaded, start=1)), f"{ref}[{split}]", loaded._fingerprint


def _validated(numbered_rows: list, source: str, method: str, check_row=None) -> list[dict]:
    if not numbered_rows:
        raise WorkbenchError(f"{source}: dataset is empty")
    if method == "kto" and "chosen" in numbered_rows[0][1]:
        numbered_rows = _unpair(numbered_rows, source)
    fields = FIELDS[method]
    rows = []
    for number, row in numbered_rows:
        where = f"{source}: row {number}"
        if not isinstance(row, dict):
            raise WorkbenchError(f"{where}: must be a JSON object")
        for name in fields:
            if name not in row or row[name] is None:
                raise WorkbenchError(f"{where}: {name}: missing (a {method} row needs {', '.join(fields)})")
        for name in fields:
            if name == "label":
                if not isinstance(row[name], bool):
                    raise WorkbenchError(f"{where}: label: must be true or false, got {row[name]!r}")
            else:
                _check_turns(row[name], f"{where}: {name}", require_assistant=(name == "messages"))
        if method == "grpo":
            if check_row is not None:  # what the rewards read first: the most specific message
                check_row(row, where)
            _check_grpo_row(row, where, rows[0] if rows else None, numbered_rows[0][0])
            rows.append(dict(row))
            continue
        if method == "distill" and row["messages"][-1]["role"] != "assistant":
            raise WorkbenchError(f"{where}: messages: the last turn must be the assistant's (distillation trains on "
                                 f"it), got {row['messages'][-1]['role']!r}")
        rows.append({name: row[name] for name in fields})
    return rows


# TRL passes a row's fields to reward functions as keyword arguments beside these, and keeps `completion` itself
GRPO_RESERVED = ("prompts", "completions", "completion", "completion_ids", "trainer_state", "log_extra", "log_metric",
                 "environments")


def _check_grpo_row(row: dict, where: str, first: dict | None, first_number: int) -> None:
    """A GRPO row: a prompt the model continues, no field TRL reserves, and the first row's fields and types
    (the rows become one Arrow table, and TRL reads whether prompts are chat from the first row alone)."""
    if isinstance(row["prompt"], list) and row["prompt"][-1]["role"] == "assistant":
        raise WorkbenchError(f"{where}: prompt: the last turn must not be the assistant's (the model writes the "
                             "completion)")
    clash = next((name for name in row if name in GRPO_RESERVED), None)
    if clash:
        raise WorkbenchError(f"{where}: {clash}: a field name TRL uses for its own reward arguments; rename it")
    if first is None:
        return
    if set(row) != set(first):
        extra, missing = sorted(set(row) - set(first)), sorted(set(first) - set(row))
        what = f"has {', '.join(extra)} which row {first_number} lacks" if extra else f"lacks {', '.join(missing)}"
        raise WorkbenchError(f"{where}: {what} (every row needs the same fields)")
    for name, value in row.items():
        if value is not None and first[name] is not None and _json_kind(value) != _json_kind(first[name]):
            raise WorkbenchError(f"{where}: {name}: {_json_kind(value)} here but {_json_kind(first[name])} in row "
                                 f"{first_number} (write it the same way in every row)")


def _json_kind(value) -> str:
    return ("true/false" if isinstance(value, bool) else "a number" if isinstance(value, (int, float))
            else "text" if isinstance(value, str) else "a list" if isinstance(value, list)
            else "an object" if isinstance(value, dict) else type(value).__name__)


def _check_turns(value, where: str, require_assistant: bool) -> None:
    if isinstance(value, str):
        if require_assistant or not value.strip():
            raise WorkbenchError(f"{where}: must be a non-empty list of messages" if require_assistant
                                 else f"{where}: empty text")
        return
    if not isinstance(value, list) or not value:
        raise WorkbenchError(f"{where}: must be a string or a non-empty list of messages")
    for i, message in enumerate(value):
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise WorkbenchError(f"{where}[{i}]: must be an object with role and content")
        if message["role"] not in ROLES:
            raise WorkbenchError(f"{where}[{i}].role: unknown role '{message['role']}' (expected {', '.join(ROLES)})")
        if not isinstance(message["content"], str) or not message["content"].strip():
            raise WorkbenchError(f"{where}[{i}].content: must be non-empty text")
    if require_assistant and not any(m["role"] == "assistant" for m in value):
        raise WorkbenchError(f"{where}: no assistant message to learn from")


def _unpair(numbered_rows: list, source: str) -> list:
    """KTO learns from single completions: each pair gives a desirable and an undesirable row."""
    unpaired = []
    for number, row in numbered_rows:
        for name in ("prompt", "chosen", "rejected"):
            if name not in row:
                raise WorkbenchError(f"{source}: row {number}: {name}: missing (a preference pair for kto)")
        unpaired.append((number, {"prompt": row["prompt"], "completion": row["chosen"], "label": True}))
        unpaired.append((number, {"prompt": row["prompt"], "completion": row["rejected"], "label": False}))
    return unpaired


def _hold_out(rows: list[dict], fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """A seeded shuffle, then the last `fraction` of rows become the eval split."""
    if fraction == 0:
        return rows, []
    import random

    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    n_eval = max(1, round(len(rows) * fraction))
    if n_eval >= len(rows):
        raise WorkbenchError(f"data.eval_fraction: {fraction} of {len(rows)} rows leaves nothing to train on")
    return [rows[i] for i in order[:-n_eval]], [rows[i] for i in order[-n_eval:]]


def as_texts(dataset, tokenizer, limit: int) -> list[str]:
    """Rows rendered as the model sees them (chat template applied), for routing profiles."""
    texts = []
    for row in dataset.select(range(min(limit, len(dataset)))):
        if "messages" in row:
            turns = row["messages"]
        elif not any(key in row for key in ("chosen", "completion")):  # grpo: the prompt is all a row has
            prompt = row["prompt"]
            texts.append(tokenizer.apply_chat_template(prompt if isinstance(prompt, list) else
                                                       [{"role": "user", "content": prompt}], tokenize=False))
            continue
        else:
            answer = row.get("chosen", row.get("completion"))
            turns = (row["prompt"] if isinstance(row["prompt"], list) else [{"role": "user", "content": row["prompt"]}]) + \
                    (answer if isinstance(answer, list) else [{"role": "assistant", "content": answer}])
        texts.append(tokenizer.apply_chat_template(turns, tokenize=False))
    return texts
