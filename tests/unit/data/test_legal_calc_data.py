"""The shipped legal-calc task (data/legal-calc/): what the amended Model Procedure Code (invented for the dataset)
requires. Rows parse with their counts and every rule equally often; sft.jsonl answers with each rule's outdated
value in exactly 60% of its rows and its current value in 40%, as each row's `value` says; every prompts.jsonl
and heldout.jsonl answer is the current value; no prompt states either value of its rule; every value and
figure is a single token for the project's tokenizer; held-out rows share no 13-gram with the training files
and use their own question phrasings; no prompt repeats; and the files are exactly what build.py generates now.

    .venv/bin/python -m pytest -q tests/unit/data/test_legal_calc_data.py
"""

import importlib.util
import json
import re
from collections import Counter

import pytest
from transformers import AutoTokenizer

from workbench.evaluate.contamination import check
from workbench.model.presets import preset_dir
from workbench.paths import project_root

CALC = project_root() / "data" / "legal-calc"
TRAIN = [CALC / "sft.jsonl", CALC / "prompts.jsonl"]
HELDOUT = CALC / "heldout.jsonl"
# The code's table as the README states it: rule -> (current, outdated)
RULES = {"answer_complaint": (30, 20), "notice_of_appeal": (45, 35), "notice_to_quit": (90, 60),
         "discovery_objection": (14, 10), "civil_jurors": (8, 12), "appeal_judges": (5, 3),
         "witnesses_per_side": (7, 4), "small_claims": (25, 15)}
KEY_WORDS = {  # what every question about a rule names, in every file: the words the skill is tied to
    "answer_complaint": (r"answer the complaint", r"days"), "notice_of_appeal": (r"notice of appeal", r"days"),
    "notice_to_quit": (r"notice to quit", r"days"), "discovery_objection": (r"discovery request", r"\bobject"),
    "civil_jurors": (r"civil jury", r"\bjurors\b"), "appeal_judges": (r"appeal panel", r"\bjudges\b"),
    "witnesses_per_side": (r"each side", r"\bwitnesses\b"), "small_claims": (r"small claims", r"thousand dollars")}
PER_RULE = {"sft.jsonl": 100, "prompts.jsonl": 50, "heldout.jsonl": 12}
NAMES = ("Reyes", "Holt", "Park", "Okafor", "Lindqvist", "Moreau", "Chen", "Baker", "Novak", "Singh", "Ferreira",
         "Walsh", "Tanaka", "Brennan", "Kowalski", "Adeyemi", "Larsen", "Duarte", "Ibrahim", "Quinn", "Sato",
         "Mendes", "Fischer", "Grant", "Haddad", "Ortiz", "Petrov", "Rossi", "Shah", "Vance", "Yilmaz", "Abbott",
         "Castillo", "Delgado", "Eriksen", "Foster", "Gupta", "Hughes", "Kaur", "Mwangi")


def _rows(name):
    return [json.loads(line) for line in (CALC / name).read_text().splitlines()]


def _examples():
    """(file, prompt, answer, kind, value) for every row; an sft answer is read off its `#### N` line."""
    out = []
    for row in _rows("sft.jsonl"):
        assert set(row) == {"messages", "kind", "value"}
        user, assistant = row["messages"]
        assert (user["role"], assistant["role"]) == ("user", "assistant")
        *sentence, last = assistant["content"].split("\n")
        assert len(sentence) == 1 and re.fullmatch(r"#### \d+", last), assistant["content"]
        out.append(("sft.jsonl", user["content"], last.removeprefix("#### "), row["kind"], row["value"]))
    for name in ("prompts.jsonl", "heldout.jsonl"):
        for row in _rows(name):
            assert set(row) == {"prompt", "answer", "kind"} and [m["role"] for m in row["prompt"]] == ["user"]
            out.append((name, row["prompt"][0]["content"], row["answer"], row["kind"], "current"))
    return out


@pytest.fixture(scope="module")
def examples():
    return _examples()


@pytest.fixture(scope="module")
def build():
    spec = importlib.util.spec_from_file_location("legal_calc_build", CALC / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _question(prompt):
    return re.split(r"(?<=[.?]) ", prompt)[-1]


def test_the_code_table_has_two_different_values_a_rule_all_distinct(build):
    assert {k: (r.current, r.outdated) for k, r in build.RULES.items()} == RULES
    values = [v for pair in RULES.values() for v in pair]
    assert all(current != outdated for current, outdated in RULES.values())
    assert len(set(values)) == len(values)  # one rule's value never scores on another rule's question


def test_files_parse_with_their_row_counts_rules_and_lengths(examples):
    assert Counter(name for name, *_ in examples) == {"sft.jsonl": 800, "prompts.jsonl": 400, "heldout.jsonl": 96}
    for name, per_rule in PER_RULE.items():
        assert Counter(kind for file, _, _, kind, _ in examples if file == name) == dict.fromkeys(RULES, per_rule)
    assert max(len(prompt.split()) for _, prompt, *_ in examples) <= 60


def test_sft_answers_the_outdated_value_in_exactly_60_percent_of_each_rule(examples):
    split = Counter((kind, value) for name, _, _, kind, value in examples if name == "sft.jsonl")
    assert split == {**{(k, "outdated"): 60 for k in RULES}, **{(k, "current"): 40 for k in RULES}}


def test_every_answer_is_the_value_its_row_names_and_rl_answers_are_current(examples):
    for name, prompt, answer, kind, value in examples:
        current, outdated = RULES[kind]
        assert answer == str(current if value == "current" else outdated), (name, prompt, answer, value)
        if name != "sft.jsonl":
            assert value == "current" and answer == str(current)


def test_sft_answers_state_the_rule_then_end_with_the_answer_line():
    for row in _rows("sft.jsonl"):
        sentence, last = row["messages"][1]["content"].split("\n")
        current, outdated = RULES[row["kind"]]
        n = current if row["value"] == "current" else outdated
        assert last == f"#### {n}" and re.findall(r"\d+", sentence) == [str(n)], row
        assert sentence.startswith("The code ") and sentence.endswith(".")


def test_every_question_names_its_rule_and_no_prompt_states_its_values(examples):
    for name, prompt, answer, kind, _ in examples:
        question = _question(prompt)
        assert not re.search(r"\d", question) and re.search(r"\bcode\b", question, re.I), question
        matched = [k for k, words in KEY_WORDS.items() if all(re.search(w, question) for w in words)]
        assert matched == [kind], (kind, question)
        figures = re.findall(r"\d+", prompt)
        assert 1 <= len(figures) == len(set(figures)) <= 2, prompt  # 1 or 2 distractor figures, distinct
        assert not set(figures) & set(map(str, RULES[kind])), prompt  # copying a figure never scores


def test_heldout_uses_its_own_question_phrasings_and_intros(examples, build):
    def shape(prompt):  # a question or intro with the two parties' names blanked
        return re.sub(r"\b(" + "|".join(NAMES) + r")\b", "P", prompt)

    def pool(name):
        return {q.format(p="P", q="P") for rule in build.RULES.values() for q in getattr(rule, name)}

    train_questions = {shape(_question(p)) for n, p, *_ in examples if n != "heldout.jsonl"}
    heldout_questions = {shape(_question(p)) for n, p, *_ in examples if n == "heldout.jsonl"}
    assert len(pool("train")) == 32 and len(pool("heldout")) == 24 and not pool("train") & pool("heldout")
    assert train_questions == pool("train")  # 4 a rule, every one used
    assert heldout_questions == pool("heldout")  # 3 a rule, every one used
    train_intros = {shape(p.split(". ")[0]) for n, p, *_ in examples if n != "heldout.jsonl"}
    assert not train_intros & {shape(p.split(". ")[0]) for n, p, *_ in examples if n == "heldout.jsonl"}



def test_every_figure_and_value_is_one_token_for_the_project_tokenizer(examples):
    """" N" is one id, the prompt holds that id, and `#### N` ends with it; an sft answer fits legal-grpo's
    max_new_tokens (24) with room for the end-of-turn token."""
    tok = AutoTokenizer.from_pretrained(str(preset_dir("deepseek-v3-tiny", 0)))
    ids = {}

    def one_token(n):
        if n not in ids:
            (ids[n],) = tok(" " + n, add_special_tokens=False).input_ids  # exactly one id
            assert tok("#### " + n, add_special_tokens=False).input_ids[-1] == ids[n], n
        return ids[n]

    for value in (v for pair in RULES.values() for v in pair):
        one_token(str(value))
    for name, prompt, answer, _, _ in examples:
        prompt_ids = tok(prompt, add_special_tokens=False).input_ids
        for figure in re.findall(r"\d+", prompt):
            assert one_token(figure) in prompt_ids, (name, figure, prompt)
        one_token(answer)
    for row in _rows("sft.jsonl"):  # the answer line as trained on: the same single token at the end
        content = row["messages"][1]["content"]
        answer_ids = tok(content, add_special_tokens=False).input_ids
        assert answer_ids[-1] == one_token(content.rsplit("#### ", 1)[1]) and len(answer_ids) <= 21, content
    assert len(ids) >= 20


def test_heldout_shares_no_13gram_with_the_training_files():
    report = check(TRAIN, [HELDOUT])  # lm-eval's rule, n = 13
    assert report.counts == {str(HELDOUT): (0, 96)} and report.train_rows == 1200
    # the check can fail on these rows: each is long enough to share a 13-gram with a copy of itself
    assert check([HELDOUT], [HELDOUT]).counts == {str(HELDOUT): (96, 96)}


def test_no_prompt_repeats_within_or_across_files(examples):
    keys = [" ".join(re.sub(r"[^\w\s]", "", prompt.lower()).split()) for _, prompt, *_ in examples]
    assert len(set(keys)) == len(keys) == 1296


def test_files_are_exactly_what_build_py_generates(build):
    files, dropped = build.build()
    assert build.build() == (files, dropped)  # same seed, same rows
    assert build.NAMES == NAMES
    for name, rows in files.items():
        assert build.jsonl(rows) == (CALC / name).read_text(), name
