"""Data loading: the shipped legal set, hold-out splits, and one-line errors naming file, row and field."""

import json

import pytest

from workbench.recipe.schema import DataConfig
from workbench.data.load import load_dataset
from workbench.errors import WorkbenchError


def _jsonl(tmp_path, rows, name="rows.jsonl") -> str:
    path = tmp_path / name
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return str(path)


GOOD = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}


def test_shipped_legal_sets_meet_their_sizes():
    sft = load_dataset(DataConfig(train="data/legal/sft.jsonl"), "sft")
    pairs = load_dataset(DataConfig(train="data/legal/preference.jsonl"), "dpo")
    assert len(sft.train) + len(sft.eval) >= 400
    assert len(pairs.train) + len(pairs.eval) >= 200
    assert len(sft.eval) == round((len(sft.train) + len(sft.eval)) * 0.1)


def test_hold_out_is_seeded_and_disjoint():
    a = load_dataset(DataConfig(train="data/legal/sft.jsonl", seed=1), "sft")
    b = load_dataset(DataConfig(train="data/legal/sft.jsonl", seed=1), "sft")
    c = load_dataset(DataConfig(train="data/legal/sft.jsonl", seed=2), "sft")
    key = lambda ds: [json.dumps(r) for r in ds]  # noqa: E731
    assert key(a.eval) == key(b.eval) != key(c.eval)
    assert not set(key(a.eval)) & set(key(a.train))
    assert a.fingerprint == c.fingerprint  # the file, not the split, is fingerprinted


def test_kto_unpairs_preference_pairs():
    splits = load_dataset(DataConfig(train="data/legal/preference.jsonl", eval_fraction=0), "kto")
    labels = splits.train["label"]
    assert labels.count(True) == labels.count(False) == len(labels) // 2


@pytest.mark.parametrize(
    "rows, method, expected",
    [
        ([GOOD, {"text": "x"}], "sft", "row 2: messages: missing"),
        ([{"messages": [{"role": "bot", "content": "x"}]}], "sft", "row 1: messages[0].role: unknown role 'bot'"),
        ([{"messages": [{"role": "user", "content": "only a question"}]}], "sft", "row 1: messages: no assistant"),
        ([GOOD, GOOD, "{not json"], "sft", "row 3: not valid JSON"),
        ([{"messages": [{"role": "user", "content": ""}, {"role": "assistant", "content": "x"}]}], "sft",
         "row 1: messages[0].content: must be non-empty"),
        ([{"prompt": "p", "chosen": "c"}], "dpo", "row 1: rejected: missing"),
        ([{"prompt": "p", "completion": "c", "label": "yes"}], "kto", "row 1: label: must be true or false"),
    ],
)
def test_bad_rows_name_file_row_and_field(tmp_path, rows, method, expected):
    with pytest.raises(WorkbenchError) as err:
        load_dataset(DataConfig(train=_jsonl(tmp_path, rows), eval_fraction=0), method)
    assert expected in str(err.value) and "rows.jsonl" in str(err.value)


def test_empty_and_missing_files(tmp_path):
    with pytest.raises(WorkbenchError, match="rows.jsonl: dataset is empty"):
        load_dataset(DataConfig(train=_jsonl(tmp_path, [])), "sft")
    with pytest.raises(WorkbenchError, match="data.train: file not found: data/legal/nope.jsonl"):
        load_dataset(DataConfig(train="data/legal/nope.jsonl"), "sft")


def test_parquet_and_separate_eval_file(tmp_path):
    from datasets import Dataset

    Dataset.from_list([GOOD] * 6).to_parquet(str(tmp_path / "train.parquet"))
    splits = load_dataset(DataConfig(train=str(tmp_path / "train.parquet"), eval=_jsonl(tmp_path, [GOOD])), "sft")
    assert (len(splits.train), len(splits.eval)) == (6, 1)
