"""Own questions as eval suites: every bad row is one line naming file, row and field; the generated task follows
the file's content; suite entries, recipe refs and the contamination check see the file. No model runs here
(tests/recipes/test_own_questions.py scores one against lm-eval's own CLI).

    .venv/bin/python -m pytest -q tests/unit/evaluate/test_own_evals.py
"""

import json
import random
import sys

import pytest

from workbench.evaluate import tasks as eval_tasks
from workbench.evaluate import questions as own_evals
from workbench.recipe.load import load_recipe
from workbench.train.plan import check_references
from workbench.errors import WorkbenchError
from workbench.evaluate.tasks import SuiteTask, check_suite_ref, suite_label, suite_tasks, task_dir
from workbench.paths import project_root

VET = project_root() / "data" / "vet"
MC = {"question": "Which food is toxic to dogs?", "choices": ["Chocolate", "Carrots", "Rice"], "answer": 0}
QA = {"question": "Which insect spreads heartworm?", "answer": "The mosquito."}


def _jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("rows, expected", [
    (['{"question": "x", '], "row 1: not valid JSON"),
    ([MC, ["a", "b"]], "row 2: must be a JSON object with question and answer fields, got list"),
    ([{k: v for k, v in MC.items() if k != "answer"}],
     "row 1: missing field 'answer' (this row is multiple choice (question, choices, answer))"),
    ([{"answer": "Rice"}], "row 1: missing field 'question' (this row is question/answer (question, answer))"),
    ([{**MC, "question": 7}], "row 1: question: must be text, got 7"),
    ([{**MC, "choices": "Chocolate, Rice"}], 'row 1: choices: must be a list of 2-10 texts, got "Chocolate, Rice"'),
    ([{**MC, "choices": ["Chocolate", 3]}], "row 1: choices[1]: must be text, got 3"),
    ([{**MC, "answer": 3}], "row 1: answer: 3 is out of range for 3 choices (an index 0-2 or a letter A-C)"),
    ([{**MC, "answer": "D"}], 'row 1: answer: "D" is out of range for 3 choices'),
    ([{**MC, "answer": -1}], "row 1: answer: -1 is out of range"),
    ([{**MC, "answer": 1.0}], "row 1: answer: must be an index 0-2 or a letter A-C, got 1.0"),
    ([{**MC, "answer": True}], "row 1: answer: must be an index 0-2 or a letter A-C, got true"),
    ([{**MC, "choices": ["Chocolate"]}], "row 1: choices: must hold 2-10 choices, got 1"),
    ([{**MC, "choices": [f"c{i}" for i in range(11)]}], "row 1: choices: must hold 2-10 choices, got 11"),
    ([{**MC, "choices": ["Chocolate", "Rice", " chocolate"]}], "row 1: choices[2]: ' chocolate' repeats choices[0]"),
    ([MC, {**MC, "question": "   "}], "row 2: question: must not be empty"),
    ([{**MC, "choices": ["Chocolate", ""]}], "row 1: choices[1]: must not be empty"),
    ([{**QA, "answer": ""}], "row 1: answer: must not be empty"),
    ([{**QA, "answer": "The!"}], "row 1: answer: 'The!' is empty once case, punctuation, articles and whitespace"),
    ([{**QA, "answer": 2}], "row 1: answer: an index needs 'choices' (multiple choice)"),
    ([MC, "", QA], "row 3: a question/answer (question, answer) row, but row 1 is multiple choice (question, choices, "
                   "answer): one kind per file"),
    ([], "no questions: the file is empty"),
    (["", "  "], "no questions: the file is empty"),
])
def test_each_bad_row_is_one_line_naming_file_row_and_field(rows, expected, tmp_path):
    path = _jsonl(tmp_path / "clinic" / "questions.jsonl", rows)
    with pytest.raises(WorkbenchError) as err:
        suite_tasks(str(path))
    assert str(err.value) == f"{path}: {expected}" or str(err.value).startswith(f"{path}: {expected}"), err.value
    assert "\n" not in str(err.value)


def test_not_utf8_wrong_suffix_missing_file_and_a_dev_file_of_the_other_kind(tmp_path):
    latin1 = tmp_path / "q.jsonl"
    latin1.write_bytes(json.dumps(MC).encode() + b'\n{"question": "caf\xe9?", "answer": "yes"}\n')
    offset = len(json.dumps(MC)) + 1 + len('{"question": "caf')
    with pytest.raises(WorkbenchError, match=rf"^{latin1}: not UTF-8 text: byte 0xe9 at offset {offset} "):
        suite_tasks(str(latin1))
    with pytest.raises(WorkbenchError, match=r"^data/nowhere/q\.jsonl: file not found$"):
        suite_tasks("data/nowhere/q.jsonl")
    with pytest.raises(ValueError, match=r"^unknown suite 'q\.json' \(known: .*legal_chat.*\), and not a questions "
                                         r"file \(\.jsonl\)$"):
        check_suite_ref("q.json")
    path = _jsonl(tmp_path / "clinic" / "questions.jsonl", [MC])
    _jsonl(tmp_path / "clinic" / "questions_dev.jsonl", [QA])
    with pytest.raises(WorkbenchError, match=r"questions_dev\.jsonl: its rows are question/answer .* but .* holds "
                                             r"multiple choice"):
        suite_tasks(str(path))
    _jsonl(tmp_path / "clinic" / "questions_dev.jsonl", [MC, {**MC, "answer": 9}])
    with pytest.raises(WorkbenchError, match=r"questions_dev\.jsonl: row 2: answer: 9 is out of range"):
        suite_tasks(str(path))


def test_letters_become_indices_and_the_task_is_named_after_folder_and_file(tmp_path):
    path = _jsonl(tmp_path / "Clinic A" / "questions.jsonl", [{**MC, "answer": "C", "subject": "toxins"}, QA | MC])
    questions = own_evals.read_questions(path)
    assert questions.kind == "mc" and [r["answer"] for r in questions.rows] == [2, 0]
    assert questions.rows[0] == {"question": MC["question"], "choices": MC["choices"], "answer": 2}  # subject dropped
    assert own_evals.task_name(path) == "clinic_a_questions"
    assert own_evals.task_name(VET / "questions.jsonl") == "vet_questions"
    assert own_evals.task_name(VET / "vet_qa.jsonl") == "vet_qa"  # the folder is not repeated
    assert suite_tasks(str(path)) == [SuiteTask("clinic_a_questions", "clinic_a_questions", None, None, False,
                                                str(path))]


def test_the_generated_task_changes_with_the_file_and_holds_what_was_checked(tmp_path):
    path = _jsonl(tmp_path / "clinic" / "questions.jsonl", [MC])
    first = task_dir([path])
    assert first != task_dir() and task_dir([path]) == first  # same content, same folder
    generated = first / "questions" / "clinic_questions.yaml"
    assert json.dumps(str(first / "questions" / "clinic_questions.jsonl")) in generated.read_text()
    assert not (first / "questions" / "clinic_questions_dev.jsonl").exists()
    _jsonl(path, [MC, {**MC, "answer": "B"}])
    second = task_dir([path])
    assert second != first and first.is_dir()  # the old folder stays for whoever still reads it
    copied = [json.loads(line) for line in (second / "questions" / "clinic_questions.jsonl").read_text().splitlines()]
    assert [r["answer"] for r in copied] == [0, 1]
    _jsonl(path.with_name("questions_dev.jsonl"), [MC])  # a few-shot file alone changes the task too
    third = task_dir([path])
    assert third not in (first, second) and "num_fewshot: 1" in (third / "questions" / "clinic_questions.yaml").read_text()


def test_two_files_may_not_claim_one_task_name_nor_a_shipped_one(tmp_path):
    one = _jsonl(tmp_path / "a" / "clinic" / "questions.jsonl", [MC])
    two = _jsonl(tmp_path / "b" / "clinic" / "questions.jsonl", [MC])
    with pytest.raises(WorkbenchError, match=rf"{two}: its task name 'clinic_questions' .* is taken by {one}"):
        task_dir([one, two])
    shipped = _jsonl(tmp_path / "legal" / "legal_mc.jsonl", [MC])
    with pytest.raises(WorkbenchError, match="'legal_mc' .* is taken by a shipped task of that name"):
        task_dir([shipped])


def test_exact_match_options_of_the_generated_qa_task_are_lm_evals(tmp_path):
    """The YAML's metric options, applied by lm-eval's own exact_match: case, punctuation, articles, spaces."""
    from lm_eval.api.metrics import exact_match_hf_evaluate
    from lm_eval.tasks._yaml_loader import load_yaml

    path = _jsonl(tmp_path / "clinic" / "qa.jsonl", [QA])
    cfg = load_yaml(task_dir([path]) / "questions" / "clinic_qa.yaml", resolve_func=False)
    (metric,) = cfg["metric_list"]
    options = {k: v for k, v in metric.items() if k not in ("metric", "aggregation", "higher_is_better")}
    assert cfg["output_type"] == "generate_until" and cfg["generation_kwargs"]["max_gen_toks"] == 32
    pairs = [(" the Mosquito!", "Mosquito", 1), ("an apple", "Apple.", 1), ("New  York", "new york", 1),
             ("Mosquitoes", "mosquito", 0), ("theobromine", "bromine", 0), ("a cat", "cats", 0)]
    for prediction, reference, expected in pairs:
        assert exact_match_hf_evaluate([prediction], [reference], **options)["exact_match"] == expected, prediction
        assert (own_evals.normalised(prediction) == own_evals.normalised(reference)) == bool(expected)


def test_suite_entries_name_questions_files(tmp_path, monkeypatch):
    mc = _jsonl(tmp_path / "clinic" / "questions.jsonl", [MC])
    _jsonl(tmp_path / "clinic" / "questions_dev.jsonl", [MC, MC])
    qa = _jsonl(tmp_path / "clinic" / "qa.jsonl", [QA])
    suites = tmp_path / "suites.yaml"
    monkeypatch.setattr(eval_tasks, "suites_file", lambda: suites)

    def entries(*lines):
        suites.write_text("tasks:\n  legal_mc: {local: legal_mc}\nsuites:\n  mine:\n" + "".join(f"    - {x}\n" for x in lines))

    entries(f"{{questions: {mc}, chat: true, num_fewshot: 2}}", f"{{questions: {qa}, limit: 5}}", "legal_mc")
    assert suite_tasks("mine") == [SuiteTask("clinic_questions_chat", "clinic_questions", None, 2, True, str(mc)),
                                   SuiteTask("clinic_qa", "clinic_qa", 5, None, False, str(qa)),
                                   SuiteTask("legal_mc", "legal_mc")]
    assert eval_tasks.suite_questions() == [str(mc), str(qa)]
    where = rf"{suites}: suites.mine\[0\]"
    for line, expected in [(f"{{questions: {mc}, num_fewshot: 3}}", rf"{where}.num_fewshot: 3 few-shot examples, but "
                                                                     r"questions_dev.jsonl .* has 2 rows"),
                           (f"{{questions: {qa}, num_fewshot: 1}}", r"qa_dev.jsonl \(beside .*\) does not exist"),
                           (f"{{questions: {mc}, task: legal_mc}}", rf"{where}: needs exactly one of task, questions"),
                           ("{questions: data/vet/questions.csv}", rf"{where}.questions: must be a path to a .jsonl"),
                           (f"{{questions: {mc}, shots: 1}}", rf"{where}: unknown key\(s\) \['shots'\]")]:
        entries(line)
        with pytest.raises(WorkbenchError, match=expected):
            suite_tasks("mine")
    entries(f"{{questions: {mc}}}", f"{{questions: {mc}, chat: true}}", f"{{questions: {mc}, limit: 1}}")
    with pytest.raises(WorkbenchError, match=r"suites.mine\[2\]: its scores would be named clinic_questions/"):
        suite_tasks("mine")
    with pytest.raises(WorkbenchError, match=rf"own questions \({mc}\) have only a 'local' source, not 'hub'"):
        suite_tasks(str(mc), "hub")


def test_check_suite_ref_and_mlflow_labels(tmp_path):
    assert check_suite_ref("legal_chat") == "legal_chat"
    assert check_suite_ref("data/vet/questions.jsonl") == "data/vet/questions.jsonl"
    bad = _jsonl(tmp_path / "clinic" / "questions.jsonl", [MC, {**MC, "choices": ["A", "a"]}])
    with pytest.raises(ValueError, match=rf"^{bad}: row 2: choices\[1\]: 'a' repeats choices\[0\]$"):
        check_suite_ref(str(bad))
    with pytest.raises(ValueError, match=r"unknown suite 'legal_chatt' \(did you mean 'legal_chat'\?\)"):
        check_suite_ref("legal_chatt")
    # tags eval.<suite>.* and artifact folders eval/<suite>/: MLflow refuses a leading / or a '..'
    assert suite_label("legal_chat") == "legal_chat"
    assert suite_label("data/vet/questions.jsonl") == suite_label(str(VET / "questions.jsonl")) == "data/vet/questions.jsonl"
    assert suite_label(str(tmp_path / "clinic" / "questions.jsonl")) == "clinic/questions.jsonl"


def test_a_recipe_names_a_questions_file_and_its_overlap_with_the_training_data_is_reported(tmp_path):
    from workbench.train.checks import eval_contamination

    recipe = load_recipe("vet")
    assert recipe.data.train == "data/vet/sft.jsonl" and recipe.eval.suite == "vet_chat"
    assert eval_contamination(recipe) == {"data/vet/questions.jsonl": (0, 98), "data/vet/questions_dev.jsonl": (0, 4)}
    mine = _jsonl(tmp_path / "clinic" / "questions.jsonl", [MC, {**MC, "question": " ".join(["word"] * 13)}])
    leaky = _jsonl(tmp_path / "train.jsonl", [{"messages": [{"role": "user", "content": " ".join(["word"] * 14)},
                                                            {"role": "assistant", "content": "ok"}]}])
    recipe = load_recipe("vet", [f"eval.suite={mine}", f"data.train={leaky}"])
    assert recipe.eval.suite == str(mine)
    assert eval_contamination(recipe) == {str(mine): (1, 2)}
    _jsonl(mine, [MC, {**MC, "answer": "Z"}])
    with pytest.raises(WorkbenchError, match=rf"^recipes/vet.yaml: eval.suite: {mine}: row 2: answer: must be an index"):
        check_references(load_recipe("vet", [f"eval.suite={mine}"]))


def test_cli_eval_and_schedule_refuse_a_bad_questions_file_before_loading_a_model(tmp_path, capsys):
    from workbench.cli import main

    bad = _jsonl(tmp_path / "clinic" / "questions.jsonl", [MC, {"question": "x", "choices": ["a", "b"]}])
    for args in (["eval", "deepseek-v3-tiny", "--suite", str(bad)], ["schedule", "--suite", str(bad), "--once"]):
        assert main(args) == 2
        err = capsys.readouterr().err.strip()
        assert err == f"error: {bad}: row 2: missing field 'answer' (this row is multiple choice (question, choices, answer))"


def test_the_shipped_vet_files_are_what_build_py_writes_and_balanced():
    sys.path.insert(0, str(VET))
    try:
        import build
    finally:
        sys.path.remove(str(VET))
    rows = lambda name: [json.loads(line) for line in (VET / name).read_text().splitlines()]  # noqa: E731
    assert rows("sft.jsonl") == build.sft_rows(random.Random(build.SFT_SEED))
    assert rows("questions.jsonl") == build.mc_rows(random.Random(build.MC_SEED)) and rows("qa.jsonl") == build.qa_rows()
    questions, dev, qa = (own_evals.read_questions(VET / n) for n in ("questions.jsonl", "questions_dev.jsonl", "qa.jsonl"))
    assert (questions.kind, len(questions.rows), len(questions.dev_rows), qa.kind, len(qa.rows)) == ("mc", 98, 4, "qa", 20)
    assert sorted(sum(r["answer"] == p for r in questions.rows) for p in range(4)) == [24, 24, 25, 25]
    assert dev.dev_rows is None and 150 <= len(rows("sft.jsonl")) <= 250
    assert all((VET / n).read_text().isascii() for n in ("sft.jsonl", "questions.jsonl", "qa.jsonl", "README.md"))


def test_the_embedded_tokenizer_learns_from_the_legal_training_files_only():
    from workbench.model.presets import tokenizer_corpus

    legal = project_root() / "data" / "legal"
    assert tokenizer_corpus() == [legal / "kto.jsonl", legal / "preference.jsonl", legal / "sft.jsonl"]
