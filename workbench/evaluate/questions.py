"""Your own questions as an eval suite: a .jsonl file checked row by row and turned into lm-eval task YAML.

    workbench eval <run id | model dir | preset> --suite data/vet/questions.jsonl
    eval: {suite: data/vet/questions.jsonl}                    # in a recipe
    - {questions: data/vet/questions.jsonl, chat: true}         # an entry of evals/suites.yaml

    from workbench.evaluate.questions import read_questions, task_name
    questions = read_questions("data/vet/questions.jsonl")    # every row checked; .kind "mc" or "qa"
    task_name(questions.path)                                  # "vet_questions" (folder + stem)

Two kinds, told apart by the fields of each row (one kind per file):
  multiple choice   {"question": str, "choices": [str, ...] (2-10), "answer": index or letter "A".."J"}
                    scored like legal_cloze: each choice's text as the continuation of "Question: ...\nAnswer:",
                    acc, acc_norm and domain-conditional PMI (acc_mutual_info, evals/tasks/legal/domain_pmi.py)
  question/answer   {"question": str, "answer": str}
                    lm-eval's generate_until (greedy, at most 32 new tokens, one line) scored by lm-eval's
                    exact_match ignoring case, punctuation, the articles a/an/the and whitespace
A sibling `<stem>_dev.jsonl` of the same kind, if present, holds few-shot examples (up to 5 are used by
default). `workbench.evaluate.tasks.task_dir(questions)` writes the generated task next to the shipped ones.
"""

import hashlib
import json
import re
import string
from dataclasses import dataclass
from pathlib import Path

from workbench.errors import WorkbenchError
from workbench.paths import project_root

SUFFIX = ".jsonl"
MIN_CHOICES, MAX_CHOICES = 2, 10
LETTERS = "ABCDEFGHIJ"
DEFAULT_SHOTS = 5  # at most this many rows of the dev file are few-shot examples unless a suite entry says otherwise
MAX_GEN_TOKS = 32  # answers are short; a longer generation only costs time
TASK_DIR_TOKEN = "${TASK_DIR}"  # the task folder's own path, known only once its content is hashed
KINDS = {"mc": "multiple choice (question, choices, answer)", "qa": "question/answer (question, answer)"}
# lm-eval's exact_match applies these before lowercasing and deleting punctuation: hence (?i), and whitespace
# deleted rather than collapsed (a space left next to deleted punctuation would otherwise count).
IGNORED = (r"(?i)\b(?:a|an|the)\b", r"\s+")


@dataclass(frozen=True)
class Questions:
    path: Path  # resolved
    label: str  # as the user wrote it, for messages
    kind: str  # "mc" or "qa"
    rows: tuple  # normalised rows: {"question", "choices", "answer": int} or {"question", "answer": str}
    dev_rows: tuple | None  # rows of `<stem>_dev.jsonl`, None when there is none
    sha256: str  # of the file and its dev file: the generated task changes when either does


def is_questions_ref(ref: str) -> bool:
    return isinstance(ref, str) and ref.lower().endswith(SUFFIX)


def resolve(ref: str | Path) -> Path:
    """An absolute path; a relative one is looked up under the project root (like data.train), then here."""
    path = Path(ref).expanduser()
    if path.is_absolute():
        return path
    for base in (project_root(), Path.cwd()):
        if (base / path).is_file():
            return (base / path).resolve()
    return project_root() / path


def dev_path(path: Path) -> Path:
    return path.with_name(f"{path.stem}_dev{SUFFIX}")


def question_files(ref: str | Path) -> list[Path]:
    """The file and, if present, its few-shot file: what the suite reads (the contamination check's input)."""
    path = resolve(ref)
    return [path] + ([dev_path(path)] if dev_path(path).is_file() else [])


def task_name(path: Path) -> str:
    """`<folder>_<stem>` as an lm-eval task name: data/vet/questions.jsonl -> vet_questions."""
    folder, stem = _slug(path.parent.name), _slug(path.stem)
    name = stem if not folder or stem == folder or stem.startswith(f"{folder}_") else f"{folder}_{stem}"
    return name if name[:1].isalpha() else f"q_{name}"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def read_questions(ref: str | Path) -> Questions:
    """Every row of the file (and of its dev file) checked; a problem is one line naming file, row and field."""
    label, path = str(ref), resolve(ref)
    if not is_questions_ref(label):
        raise WorkbenchError(f"{label}: a questions file must be {SUFFIX} (one JSON object per line)")
    if not path.is_file():
        raise WorkbenchError(f"{label}: file not found")
    kind, rows = _read_rows(path, label)
    digest = hashlib.sha256(path.read_bytes())
    dev_rows, dev = None, dev_path(path)
    if dev.is_file():
        dev_label = str(Path(label).with_name(dev.name))
        dev_kind, dev_rows = _read_rows(dev, dev_label)
        if dev_kind != kind:
            raise WorkbenchError(f"{dev_label}: its rows are {KINDS[dev_kind]} but {label} holds {KINDS[kind]}; "
                                 "few-shot examples must be of the same kind")
        digest.update(b"\0dev\0" + dev.read_bytes())
    return Questions(path, label, kind, tuple(rows), None if dev_rows is None else tuple(dev_rows), digest.hexdigest())


def _read_rows(path: Path, label: str) -> tuple[str, list[dict]]:
    from workbench.data.load import jsonl_rows

    kind, rows, first = None, [], 0
    for number, row in jsonl_rows(path, label):
        where = f"{label}: row {number}"
        if not isinstance(row, dict):
            raise WorkbenchError(f"{where}: must be a JSON object with question and answer fields, "
                                 f"got {type(row).__name__}")
        row_kind = "mc" if "choices" in row else "qa"
        if kind is None:
            kind, first = row_kind, number
        elif row_kind != kind:
            raise WorkbenchError(f"{where}: a {KINDS[row_kind]} row, but row {first} is {KINDS[kind]}: "
                                 "one kind per file (the kind is told by whether a row has 'choices')")
        rows.append(_mc_row(row, where) if kind == "mc" else _qa_row(row, where))
    if not rows:
        raise WorkbenchError(f"{label}: no questions: the file is empty")
    return kind, rows


def _text(row: dict, key: str, where: str, kind: str) -> str:
    if key not in row:
        raise WorkbenchError(f"{where}: missing field '{key}' (this row is {KINDS[kind]})")
    value = row[key]
    if not isinstance(value, str):
        raise WorkbenchError(f"{where}: {key}: must be text, got {_shown(value)}")
    if not value.strip():
        raise WorkbenchError(f"{where}: {key}: must not be empty")
    return value


def _mc_row(row: dict, where: str) -> dict:
    question = _text(row, "question", where, "mc")
    choices = row["choices"]
    if not isinstance(choices, list):
        raise WorkbenchError(f"{where}: choices: must be a list of {MIN_CHOICES}-{MAX_CHOICES} texts, got {_shown(choices)}")
    if not MIN_CHOICES <= len(choices) <= MAX_CHOICES:
        raise WorkbenchError(f"{where}: choices: must hold {MIN_CHOICES}-{MAX_CHOICES} choices, got {len(choices)}")
    seen = {}
    for i, choice in enumerate(choices):
        if not isinstance(choice, str):
            raise WorkbenchError(f"{where}: choices[{i}]: must be text, got {_shown(choice)}")
        if not choice.strip():
            raise WorkbenchError(f"{where}: choices[{i}]: must not be empty")
        key = " ".join(choice.split()).casefold()
        if key in seen:
            raise WorkbenchError(f"{where}: choices[{i}]: {choice!r} repeats choices[{seen[key]}]")
        seen[key] = i
    return {"question": question, "choices": choices, "answer": _answer_index(row, len(choices), where)}


def _answer_index(row: dict, n: int, where: str) -> int:
    if "answer" not in row:
        raise WorkbenchError(f"{where}: missing field 'answer' (this row is {KINDS['mc']})")
    answer, allowed = row["answer"], f"an index 0-{n - 1} or a letter A-{LETTERS[n - 1]}"
    if isinstance(answer, str) and len(answer.strip()) == 1 and answer.strip() in LETTERS:
        answer_index = LETTERS.index(answer.strip())
    elif isinstance(answer, int) and not isinstance(answer, bool):
        answer_index = answer
    else:
        raise WorkbenchError(f"{where}: answer: must be {allowed}, got {_shown(answer)}")
    if not 0 <= answer_index < n:
        raise WorkbenchError(f"{where}: answer: {_shown(answer)} is out of range for {n} choices ({allowed})")
    return answer_index


def _qa_row(row: dict, where: str) -> dict:
    question = _text(row, "question", where, "qa")
    if isinstance(row.get("answer"), int) and not isinstance(row.get("answer"), bool):
        raise WorkbenchError(f"{where}: answer: an index needs 'choices' (multiple choice); a question/answer "
                             f"row's answer is text, got {row['answer']}")
    answer = _text(row, "answer", where, "qa")
    if not normalised(answer):
        raise WorkbenchError(f"{where}: answer: {answer!r} is empty once case, punctuation, articles and "
                             "whitespace are ignored, so every answer would match it")
    return {"question": question, "answer": answer}


def normalised(text: str) -> str:
    """What exact_match compares, as lm-eval computes it with the options the generated task sets."""
    for pattern in IGNORED:
        text = re.sub(pattern, "", text)
    return text.lower().translate(str.maketrans("", "", string.punctuation))


def _shown(value) -> str:
    return json.dumps(value) if isinstance(value, (str, int, float, bool)) or value is None else type(value).__name__


def default_shots(questions: Questions) -> int:
    return min(len(questions.dev_rows), DEFAULT_SHOTS) if questions.dev_rows else 0


def task_files(questions: Questions, name: str, pmi_module: Path) -> dict[str, str]:
    """{file name: text} of the generated task: its YAML, the rows as checked (letters turned into indices,
    other fields dropped) and, for multiple choice, the PMI task class the YAML names."""
    files = {f"{name}.jsonl": _jsonl(questions.rows)}
    splits = {"test": f"{TASK_DIR_TOKEN}/questions/{name}.jsonl"}
    if questions.dev_rows:
        files[f"{name}_dev.jsonl"] = _jsonl(questions.dev_rows)
        splits["dev"] = f"{TASK_DIR_TOKEN}/questions/{name}_dev.jsonl"
    head = [f"# Generated by workbench.evaluate.questions from {json.dumps(str(questions.path))}",
            f"# (sha256 {questions.sha256}); edit that file, not this one.",
            f"task: {name}",
            f"task_alias: {json.dumps(f'{name} ({questions.path.name})')}",
            "dataset_path: json", "dataset_name: null", "dataset_kwargs:", "  data_files:",
            *(f"    {split}: {json.dumps(file)}" for split, file in splits.items()),
            "test_split: test",
            f"fewshot_split: {'dev' if questions.dev_rows else 'null'}",
            "fewshot_config:", "  sampler: first_n",
            f"num_fewshot: {default_shots(questions)}",
            'doc_to_text: "Question: {{question.strip()}}\\nAnswer:"']
    body = _mc_yaml() if questions.kind == "mc" else _qa_yaml()
    files[f"{name}.yaml"] = "\n".join(head + body + ["metadata:", "  version: 1.0", ""])
    if questions.kind == "mc":
        files["domain_pmi.py"] = pmi_module.read_text()
    return files


def _mc_yaml() -> list[str]:
    # legal_cloze's scoring (evals/tasks/legal/legal_cloze.yaml), spelled out: the PMI reference is the prompt
    # with the question left out, so acc_mutual_info counts what the question adds to each choice.
    return ["class: !function domain_pmi.DomainConditionalPMI", "output_type: multiple_choice",
            'doc_to_choice: "{{choices}}"', 'doc_to_target: "{{answer}}"',
            "metric_list:", *(line for metric in ("acc", "acc_norm", "acc_mutual_info") for line in
                              (f"  - metric: {metric}", "    aggregation: mean", "    higher_is_better: true"))]


def _qa_yaml() -> list[str]:
    return ["output_type: generate_until", 'doc_to_target: "{{answer}}"', 'target_delimiter: " "',
            "generation_kwargs:", '  until: ["\\n", "Question:"]', f"  max_gen_toks: {MAX_GEN_TOKS}",
            "  do_sample: false", "  temperature: 0.0",
            "metric_list:", "  - metric: exact_match", "    aggregation: mean", "    higher_is_better: true",
            "    ignore_case: true", "    ignore_punctuation: true",
            f"    regexes_to_ignore: {json.dumps(list(IGNORED))}"]


def _jsonl(rows) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)
