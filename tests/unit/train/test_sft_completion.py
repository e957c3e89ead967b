"""Assistant-only loss with a chat template that does not mark assistant turns (DeepSeek's, Moonlight's)."""

import copy

from workbench.recipe.load import load_recipe
from workbench.data.load import load_dataset
from workbench.train.methods import sft


def _splits():
    return load_dataset(load_recipe("legal", ["data.max_rows=16"]).data, "sft")


def _trainer(tiny, tmp_path, tokenizer):
    model, _ = tiny
    recipe = load_recipe("legal", ["data.max_rows=16", "eval.suite=null"])
    return sft.build_trainer(recipe, copy.deepcopy(model), tokenizer, _splits(), str(tmp_path), callbacks=[])


def test_unmarked_template_trains_on_the_same_assistant_tokens(tiny, tmp_path):
    _, tokenizer = tiny
    assert sft.marks_assistant_turns(tokenizer)
    marked = _trainer(tiny, tmp_path / "a", tokenizer).train_dataset

    plain = copy.deepcopy(tokenizer)
    plain.chat_template = plain.chat_template.replace("{% generation %}", "").replace("{% endgeneration %}", "")
    assert not sft.marks_assistant_turns(plain)
    split = _trainer(tiny, tmp_path / "b", plain).train_dataset

    source = _splits().train
    assert len(split) == len(marked) == len(source) > 0
    multi_turn = 0
    for row, row_marked, row_split in zip(source, marked, split):
        assert row_split["input_ids"] == row_marked["input_ids"]  # same conversation text
        trained_split = {i for i, label in enumerate(row_split["labels"]) if label != -100}
        trained_marked = {i for i, label in enumerate(row_marked["labels"]) if label != -100}
        assert 0 < len(trained_split) < len(row_split["input_ids"])
        if sum(m["role"] == "assistant" for m in row["messages"]) == 1:
            assert trained_split == trained_marked  # loss on exactly the same tokens
        else:  # only the last reply trains; earlier replies are context
            multi_turn += 1
            assert trained_split < trained_marked and max(trained_split) == max(trained_marked)
    assert multi_turn < len(source)
