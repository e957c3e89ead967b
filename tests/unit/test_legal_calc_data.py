"""The shipped legal-calc task (data/legal-calc/): rows parse with their counts, every answer is the figure the
question asks for (or the stated sum), held-out rows share no 13-gram with the training files, no prompt repeats,
every figure and answer is a single token for the project's tokenizer, and the files are exactly what build.py
generates now.

    .venv/bin/python -m pytest -q tests/unit/test_legal_calc_data.py
"""

import importlib.util
import json
import re
from collections import Counter

import pytest
from transformers import AutoTokenizer

from workbench.contamination import check
from workbench.model import preset_dir
from workbench.paths import project_root

CALC = project_root() / "data" / "legal-calc"
TRAIN = [CALC / "sft.jsonl", CALC / "prompts.jsonl"]
HELDOUT = CALC / "heldout.jsonl"
PICK_KINDS = {  # the words the sentence holding the answer must use: what the figure is, and its unit
    "notice_days": (r"notice", r"days?"), "payment_days": (r"pa(y|id)\w*", r"days?"),
    "damages": (r"damages", r"thousand dollars"), "filing_fee": (r"fee", r"dollars"),
    "rent": (r"rent", r"hundred dollars"),
    "jurors": (r"jurors", r"jurors"), "witnesses": (r"witnesses", r"witnesses"), "judges": (r"judges", r"judges")}
COMBINATION_KINDS = {"damages_total", "judges_total"}


def _rows(name):
    return [json.loads(line) for line in (CALC / name).read_text().splitlines()]


def _examples():
    """(file, prompt, answer text, kind or None) for every row; an sft answer is read off its `#### N` line."""
    out = []
    for row in _rows("sft.jsonl"):
        user, assistant = row["messages"]
        assert (user["role"], assistant["role"]) == ("user", "assistant")
        *sentence, last = assistant["content"].split("\n")
        assert len(sentence) == 1 and re.fullmatch(r"#### \d+", last), assistant["content"]
        out.append(("sft.jsonl", user["content"], last.removeprefix("#### "), None))
    for name in ("prompts.jsonl", "heldout.jsonl"):
        for row in _rows(name):
            assert set(row) == {"prompt", "answer", "kind"} and [m["role"] for m in row["prompt"]] == ["user"]
            out.append((name, row["prompt"][0]["content"], row["answer"], row["kind"]))
    return out


@pytest.fixture(scope="module")
def examples():
    return _examples()


def test_files_parse_with_their_row_counts_kinds_and_lengths(examples):
    assert Counter(name for name, *_ in examples) == {"sft.jsonl": 800, "prompts.jsonl": 400, "heldout.jsonl": 96}
    for name in ("prompts.jsonl", "heldout.jsonl"):
        kinds = Counter(kind for file, _, _, kind in examples if file == name)
        assert set(kinds) == set(PICK_KINDS) | COMBINATION_KINDS
        share = sum(kinds[k] for k in COMBINATION_KINDS) / sum(kinds.values())
        assert 0.1 <= share <= 0.2, (name, share)
        assert len(set(kinds[k] for k in PICK_KINDS)) == 1  # every pick kind equally often
    assert max(len(prompt.split()) for _, prompt, _, _ in examples) <= 60


def _sentences(prompt):
    return re.split(r"(?<=[.?]) ", prompt)


def _kind_of(prompt):
    """The sft rows carry no kind: the pick kind whose question the prompt ends with, else a combination."""
    question = _sentences(prompt)[-1].lower()
    if "total" in question or "add up" in question or "in all" in question:
        return "combination"
    return next(k for k, (word, _) in PICK_KINDS.items() if re.search(rf"\b{word}\b", question))


def test_every_answer_is_the_asked_figure_or_the_stated_sum(examples):
    for name, prompt, answer, kind in examples:
        assert re.fullmatch(r"[1-9]\d*", answer), (name, answer)
        figures = re.findall(r"\d+", prompt)
        assert len(figures) == len(set(figures)) == 3, prompt  # three distinct figures: one guess in three
        kind = kind or _kind_of(prompt)
        if kind in PICK_KINDS:
            (holder,) = [s for s in _sentences(prompt) if re.search(rf"\b{answer}\b", s)]
            word, unit = PICK_KINDS[kind]
            assert re.search(rf"\b{word}\b", holder, re.I), (kind, holder)
            assert re.search(rf"\b{answer} {unit}\b|\bday {answer}\b", holder), (kind, holder)
        else:
            (parts,) = [s for s in _sentences(prompt) if len(re.findall(r"\d+", s)) == 2]
            a, b = map(int, re.findall(r"\d+", parts))
            assert int(answer) == a + b and answer not in figures, prompt


def test_sft_answers_name_the_figure_then_end_with_the_answer_line():
    for row in _rows("sft.jsonl"):
        sentence, last = row["messages"][1]["content"].split("\n")
        assert last == "#### " + re.findall(r"\d+", sentence)[-1]  # the sentence's last number is the answer


def test_every_figure_and_answer_is_one_token_for_the_project_tokenizer(examples):
    """A figure is copied as one token: " N" is one id, the prompt holds that id, and `#### N` ends with it."""
    tok = AutoTokenizer.from_pretrained(str(preset_dir("deepseek-v3-tiny", 0)))
    ids = {}

    def one_token(n):
        if n not in ids:
            (ids[n],) = tok(" " + n, add_special_tokens=False).input_ids  # exactly one id
            assert tok("#### " + n, add_special_tokens=False).input_ids[-1] == ids[n], n
        return ids[n]

    for name, prompt, answer, _ in examples:
        prompt_ids = tok(prompt, add_special_tokens=False).input_ids
        for figure in re.findall(r"\d+", prompt):
            assert one_token(figure) in prompt_ids, (name, figure, prompt)
        one_token(answer)
    for row in _rows("sft.jsonl"):  # the answer line as trained on: the same single token at the end
        content = row["messages"][1]["content"]
        answer = content.rsplit("#### ", 1)[1]
        assert tok(content, add_special_tokens=False).input_ids[-1] == one_token(answer), content
    assert len(ids) >= 20


def test_every_kind_draws_from_at_least_8_values(examples):
    """So always answering a kind's usual figure rarely scores."""
    values = {}
    for name, prompt, answer, kind in examples:
        values.setdefault(kind or _kind_of(prompt), set()).add(answer)
    for kind, seen in values.items():
        if kind != "combination":
            assert len(seen) >= 8, (kind, sorted(seen, key=int))


def test_heldout_shares_no_13gram_with_the_training_files():
    report = check(TRAIN, [HELDOUT])  # lm-eval's rule, n = 13
    assert report.counts == {str(HELDOUT): (0, 96)} and report.train_rows == 1200
    # the check can fail on these rows: each is long enough to share a 13-gram with a copy of itself
    assert check([HELDOUT], [HELDOUT]).counts == {str(HELDOUT): (96, 96)}


def test_no_prompt_repeats_within_or_across_files(examples):
    keys = [" ".join(re.sub(r"[^\w\s]", "", prompt.lower()).split()) for _, prompt, _, _ in examples]
    assert len(set(keys)) == len(keys) == 1296


def test_files_are_exactly_what_build_py_generates():
    spec = importlib.util.spec_from_file_location("legal_calc_build", CALC / "build.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    files, dropped = build.build()
    assert build.build() == (files, dropped)  # same seed, same rows
    for name, rows in files.items():
        assert build.jsonl(rows) == (CALC / name).read_text(), name
