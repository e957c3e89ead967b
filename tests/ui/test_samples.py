"""The Samples page, headless (streamlit AppTest), over the seeded store: the answers shown in each run's column,
the differs-from-reference marks, the disagreement filter, a GRPO run's completion groups, the note for runs
without samples, and the prompt box generating with real (tiny) models.
Run: .venv/bin/python -m pytest -q tests/ui/test_samples.py"""

import numpy as np
import pytest
from chart_spec import label
from store_seed import FOUR, LEGAL_AFTER, LEGAL_BEFORE, LEGAL_PROMPTS, SIX

from ui.views import samples


def no_exception(at):
    assert not at.exception, [e.message for e in at.exception]


def keyed(at, prefix: str) -> list:
    """Containers whose key starts with `prefix`, in page order."""
    from streamlit.testing.v1.element_tree import Block

    return [node for node in at.main if isinstance(node, Block) and (node.key or "").startswith(prefix)]


def answer(at, slot: int, field: str, run_id: str) -> tuple[str, str] | None:
    """(answer text, mark line) in the column of `field` (before/after) of `run_id` for the prompt in `slot`."""
    try:
        cell = at.get_by_key(f"samples_answer_{slot}_{field}_{run_id}")
    except KeyError:
        return None
    return (cell.code[0].value, cell.markdown[1].value) if len(cell.code) else ("", cell.caption[0].value)


def shown_prompts(at) -> list[str]:
    return [card.code[0].value for card in keyed(at, "samples_prompt_")]


@pytest.fixture
def two_runs(store, open_page):
    at = open_page(store["uri"], "samples", runs=f"{store['a'][:8]},{store['b'][:8]}")
    no_exception(at)
    return at


def test_the_start_answer_once_then_each_runs_answer_in_its_own_column(store, two_runs):
    a, b = store["a"], store["b"]
    card = two_runs.get_by_key("samples_prompt_3")
    assert [m.value for m in card.markdown if m.value.startswith("**") and "Prompt" not in m.value] == [
        "**before (start model)**", f"**{label('sft-a', a)}**", f"**{label('sft-b', b)}**"]  # in the URL's order
    for slot in range(len(LEGAL_PROMPTS)):
        assert answer(two_runs, slot, "before", a)[0] == LEGAL_BEFORE[slot]
        assert answer(two_runs, slot, "after", a)[0] == LEGAL_AFTER["a"][slot]
        assert answer(two_runs, slot, "after", b)[0].strip() == LEGAL_AFTER["b"][slot].strip()  # st.code trims a final newline
        assert answer(two_runs, slot, "before", b) is None  # the same start model: its answers shown once
    assert shown_prompts(two_runs) == [prompt for _, prompt, _ in LEGAL_PROMPTS]
    summary = two_runs.dataframe[0].value.set_index("answers")
    assert summary.loc[label("sft-a", a), "match reference"] == 3 and summary.loc[label("sft-b", b), "match reference"] == 2
    assert summary.loc[label("sft-b", b), "mean score"] == pytest.approx(2 / 3)
    assert summary.loc["before (start model)", "mean score"] == 0.0
    assert two_runs.query_params["runs"] == f"{a[:8]},{b[:8]}"  # the view is shareable


def test_answers_that_differ_from_the_reference_are_marked(store, two_runs):
    a, b = store["a"], store["b"]
    marks = {key: [answer(two_runs, slot, field, run)[1] for slot in range(4)]
             for key, field, run in (("before", "before", a), ("a", "after", a), ("b", "after", b))}
    assert marks["a"] == [":green-badge[matches reference] right"] * 3 + [":gray-badge[no reference]"]
    # b's "  45\n" is the reference once whitespace is normalised; "the High Court" is not
    assert marks["b"] == [":green-badge[matches reference] right"] * 2 + [
        ":red-badge[differs from reference] wrong", ":gray-badge[no reference]"]
    assert marks["before"][:3] == [":red-badge[differs from reference] wrong"] * 3  # "4 5" is not "45"
    assert any("after every run of whitespace is turned into one space" in c.value for c in two_runs.caption)


def test_differs_compares_normalised_whitespace_only():
    assert samples.differs(" 45\n", "45") is False
    assert samples.differs("the  Court\tof Appeal", "the Court of Appeal") is False
    assert samples.differs("4 5", "45") is True and samples.differs("The court", "the court") is True
    assert samples.differs("45", None) is None


def test_only_prompts_where_the_runs_disagree(store, two_runs):
    two_runs.toggle(key="samples_disagree").set_value(True).run()
    no_exception(two_runs)
    assert shown_prompts(two_runs) == [LEGAL_PROMPTS[2][1], LEGAL_PROMPTS[3][1]]  # prompt 1 differs by whitespace only
    assert any(c.value.startswith("2 of 4 held-out prompts") for c in two_runs.caption)
    assert list(two_runs.dataframe[0].value["prompts"]) == [2, 2, 2]  # the summary counts what is shown


def test_the_filter_needs_two_runs(store, open_page):
    at = open_page(store["uri"], "samples", runs=store["a"][:8])
    no_exception(at)
    assert at.toggle(key="samples_disagree").disabled
    assert len(keyed(at, "samples_prompt_")) == 4


def test_grpo_completions_by_step_and_group(store, open_page):
    at = open_page(store["uri"], "samples", runs=store["g"][:8])
    no_exception(at)
    # the held-out answers carry the run's reward
    assert answer(at, 0, "after", store["g"]) == ("\\boxed{42}", ":red-badge[differs from reference] reward 1.50")
    assert at.select_slider(key="samples_step").value == 10  # the newest step first
    groups = keyed(at, "samples_group_")
    assert len(groups) == 1
    table = groups[0].table[0].value
    assert list(table["completion"]) == ["\\boxed{42} at last", "\\boxed{42}"]
    assert table["advantage"].iloc[0] == 0.0 and np.isnan(table["advantage"].iloc[1])  # not logged: a blank cell
    at.select_slider(key="samples_step").set_value(5).run()
    groups = keyed(at, "samples_group_")
    assert [g.code[0].value for g in groups] == [SIX, FOUR, SIX]  # the first prompt drawn again: a third group
    first = groups[0].table[0].value
    assert list(first["completion"]) == ["41", "\\boxed{42}"]
    assert list(first["math_answer"]) == [0.0, 1.0] and list(first["format"]) == [0.0, 0.5]
    assert list(first["advantage"]) == [-0.5, 0.5]
    assert list(groups[2].table[0].value["completion"]) == ["42", "forty"]


def test_completion_groups_split_on_step_and_prompt():
    rows = [{"step": 1, "prompt": "p"}, {"step": 1, "prompt": "p"}, {"step": 1, "prompt": "q"},
            {"step": 2, "prompt": "q"}, {"step": 2, "prompt": "p"}]
    groups = samples.completion_groups(rows)
    assert [(g["step"], g["group"], g["prompt"], len(g["rows"])) for g in groups] == [
        (1, 1, "p", 2), (1, 2, "q", 1), (2, 1, "q", 1), (2, 2, "p", 1)]


def test_runs_without_samples_get_a_note_not_an_error(store, open_page):
    at = open_page(store["uri"], "samples", runs=f"{store['e'][:8]},{store['a'][:8]}")
    no_exception(at)
    assert not at.error
    note = at.info[0].value
    assert note.startswith(f"No sample answers on {label('sft-empty', store['e'])}:") and "sft-a" not in note
    assert answer(at, 3, "after", store["a"])[0] == LEGAL_AFTER["a"][3]  # the other run's answers still shown
    assert answer(at, 3, "after", store["e"]) is None


def test_runs_of_different_recipes_keep_their_own_start_answers(store, open_page):
    at = open_page(store["uri"], "samples", runs=f"{store['a'][:8]},{store['g'][:8]}")
    no_exception(at)
    # different prompts, different start models: a before column for each, blank where a run was not asked
    titles = [m.value for m in at.get_by_key("samples_prompt_0").markdown if m.value.startswith("**before")]
    assert titles == [f"**before: {label('sft-a', store['a'])}**", f"**before: {label('grpo-g', store['g'], 'legal-grpo')}**"]
    assert len(keyed(at, "samples_prompt_")) == 6


def reference_answer(final_dir: str, prompt: str, max_new_tokens: int) -> str:
    """The greedy answer computed here, without the workbench: transformers on the run's folder, the chat
    template with the generation prompt."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(final_dir)
    model = AutoModelForCausalLM.from_pretrained(final_dir).eval()
    batch = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                          return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id)
    return tokenizer.decode(out[0, batch["input_ids"].shape[1]:], skip_special_tokens=True)


def ask(at, prompt: str, runs: list[str], max_new_tokens: int = 8):
    at.text_area(key="samples_ask_prompt").input(prompt)
    at.multiselect(key="samples_ask_runs").set_value(runs)
    at.number_input(key="samples_max_tokens").set_value(max_new_tokens)
    return at.button(key="samples_generate").click().run()


def generated(at) -> list[tuple[str, str]]:
    """(answer, timing caption) of each asked run, left to right."""
    return [(box.code[0].value, box.caption[0].value) for box in keyed(at, "samples_generated_")]


@pytest.fixture
def two_threads():
    """torch on two threads, as on a 2-core machine (the suite's conftest sets one), restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_the_prompt_box_answers_with_each_runs_model_one_in_memory(model_store, open_page, monkeypatch, two_threads):
    import mlflow
    import torch

    from ui.views import generate
    from workbench.evaluate import harness, reward_report

    generate.loaded_model.clear()
    loads, load_target = [], harness.load_target
    monkeypatch.setattr(harness, "load_target", lambda run_id: (loads.append(run_id), load_target(run_id))[1])
    threads, greedy = [], reward_report.greedy_completions
    monkeypatch.setattr(reward_report, "greedy_completions",
                        lambda *args: (threads.append(torch.get_num_threads()), greedy(*args))[1])
    m0, m1 = model_store["m0"], model_store["m1"]
    labels = [label("tiny-m0", m0), label("tiny-m1", m1)]
    at = open_page(model_store["uri"], "samples", runs=f"{m0[:8]},{m1[:8]}")
    no_exception(at)
    prompt = "How many days are in a leap year?"
    ask(at, prompt, labels)
    no_exception(at)
    client = mlflow.MlflowClient(model_store["uri"])
    expected = [reference_answer(client.get_run(r).data.tags["final_dir"], prompt, 8) for r in (m0, m1)]
    assert [text for text, _ in generated(at)] == expected
    assert expected[0] != expected[1]  # two seeds: a swapped column would show
    assert all(" tokens in " in note and "on cpu" in note for _, note in generated(at))
    assert loads == [m0, m1]
    assert threads == [1, 1]  # one CPU thread while generating
    ask(at, prompt, [labels[1]])  # the model in memory: no load
    assert loads == [m0, m1] and generated(at)[0][0] == expected[1]
    ask(at, prompt, [labels[0]])  # only one model is kept: m0 loads again
    assert loads == [m0, m1, m0]
    # the thread setting is per OS thread and each page run has its own; called here, it must be put back
    assert generate.answer(model_store["uri"], m0, prompt, 8)["answer"] == expected[0]
    assert threads[-1] == 1 and torch.get_num_threads() == 2 and loads == [m0, m1, m0]


def test_a_run_whose_model_is_gone_is_a_message(model_store, open_page):
    gone = model_store["gone"]
    at = open_page(model_store["uri"], "samples", runs=gone[:8])
    ask(at, "hello", [label("tiny-gone", gone)])
    no_exception(at)
    assert "has no final model on disk" in at.get_by_key("samples_generated_0").error[0].value
    assert at.info[0].value.startswith("No sample answers on")  # and no samples.jsonl either
