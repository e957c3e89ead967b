"""GRPO rewards: right answers earn 1.0, wrong ones and reward-hacking attempts 0.0, bad inputs name their key.

Run: `.venv/bin/python -m pytest -q tests/unit/evaluate/test_rewards.py` (the code_tests cases use the real sandbox;
their forgeries are tests/unit/evaluate/sandbox_forgeries.py, shared with the sandbox's own tests).
"""

import math
from decimal import Decimal

import pytest

from sandbox_forgeries import FORGERIES, reward_program
from workbench.evaluate import rewards
from workbench.evaluate import sandbox
from workbench.errors import WorkbenchError
from workbench.evaluate.rewards import DEFAULT_FORMAT, FIELDS, NAMES, build, check_pattern, check_row, choice, code_tests, completion_text, extract_code, final_answer, format_reward, is_user_spec, load_user_reward, math_answer, parse_number
from workbench.evaluate.sandbox import SandboxLimits

QUICK = SandboxLimits(wall_seconds=3.0, cpu_seconds=2)
TRL_EXTRAS = {"completion_ids": [[1, 2]], "trainer_state": object(), "log_extra": print, "log_metric": print}


def chat(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def score(fn, completions, **columns) -> list[float]:
    return fn(prompts=["q"] * len(completions), completions=completions, **columns)


# ---- helpers ----------------------------------------------------------------------------------------------------

def test_completion_text_reads_strings_and_the_last_assistant_message():
    assert completion_text("plain") == "plain"
    assert completion_text([{"role": "user", "content": "q"}, {"role": "assistant", "content": "first"},
                            {"role": "tool", "content": "t"}, {"role": "assistant", "content": "last"}]) == "last"
    assert completion_text([{"role": "user", "content": "q"}]) == ""
    assert completion_text(None) == "" and completion_text(42) == ""
    assert completion_text([{"role": "assistant", "content": None}]) == ""


@pytest.mark.parametrize("text, value", [("42", "42"), ("-7", "-7"), ("+3", "3"), ("$1,200", "1200"),
                                         ("1,234,567.25", "1234567.25"), ("42.", "42"), ("42.0", "42"),
                                         ("-$5", "-5"), (" 0.5 ", "0.5"), (".5", "0.5"),
                                         ("12345678901234567891", "12345678901234567891")])
def test_parse_number_accepts_one_number_exactly(text, value):
    parsed = parse_number(text)
    assert isinstance(parsed, Decimal) and parsed == Decimal(value)


@pytest.mark.parametrize("text", ["", "forty", "12 13", "12, 13", "1,2", "12,34", "1e5", "nan", "inf", "4 2",
                                  "42%", "--4", "12 or 13", None, 42])
def test_parse_number_refuses_anything_else(text):
    assert parse_number(text) is None


# ---- math_answer ------------------------------------------------------------------------------------------------

def test_final_answer_takes_the_rest_of_the_only_marker_line():
    assert final_answer("So 6 * 7 = 42.\n#### 42\nDone.") == "42"
    assert final_answer("#### $1,200.") == "$1,200."
    for hedge in ["#### 12 #### 13", "#### 12\n#### 13", "#### 12, 13", "#### 12 or 13", "#### 12 13", "#### ",
                  "####", "42", "the answer is 42", "#### 42 apples"]:
        assert final_answer(hedge) is None, hedge


def test_math_answer_scores_right_wrong_and_hedged_answers():
    completions = ["6 * 7 = 42\n#### 42", "#### 41", "#### 12 #### 42", "#### 42, 43", "#### 41 or 42",
                   "#### 42 43", "#### 41\nno wait\n#### 42", "####", "The answer is 42.", "42"]
    assert score(math_answer, completions, answer=["42"] * len(completions)) == [1.0] + [0.0] * 9


def test_math_answer_accepts_the_same_number_written_differently():
    completions = ["#### 42.0", "#### $1,200", "#### 1200.", "#### -3.5", "#### 0.1", "#### 1,000", "#### 1000",
                   "#### $1000", "#### 1000.000", "#### -0", "#### 100000000000000000000"]
    answers = [42, "1,200", 1200.0, "-3.50", 0.1, 1000, "1,000", "1000.0", "$1,000", 0, 1e20]
    assert score(math_answer, completions, answer=answers) == [1.0] * len(completions)


@pytest.mark.parametrize("given, truth", [("24999975", 25000000), ("25000001", "25,000,000"), ("1000000.5", 1000000),
                                          ("0.0000005", 0), ("0.1", 0.1000000001), ("0.1000000001", 0.1),
                                          ("12345678901234567891", 12345678901234567890),
                                          ("12345678901234567891", "12345678901234567890"), ("-42", 42), ("4.2", 42)])
def test_math_answer_has_no_tolerance(given, truth):
    """Near misses score 0: floats would call the big integers equal, a relative tolerance the first four."""
    assert score(math_answer, [f"#### {given}"], answer=[truth]) == [0.0]


def test_math_answer_reads_a_gsm8k_solution_as_the_answer():
    solution = "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nAltogether she sold 48+24 = <<48+24=72>>72.\n#### 72"
    assert score(math_answer, ["#### 72", "#### 24"], answer=[solution, solution]) == [1.0, 0.0]


def test_math_answer_reads_chat_completions_and_ignores_trl_extras():
    completions = [chat("thinking...\n#### 42"), chat("#### 7")]
    extras = {**TRL_EXTRAS, "completion_ids": [[1], [2]], "question": ["q1", "q2"]}
    assert math_answer(prompts=[[{"role": "user", "content": "q"}]] * 2, completions=completions,
                       answer=["42", "8"], **extras) == [1.0, 0.0]


def test_math_answer_gives_zero_for_an_unusable_answer_field():
    assert score(math_answer, ["#### 1", "#### 1", "#### 1"], answer=[True, float("nan"), "one"]) == [0.0] * 3


def test_math_answer_ignores_markers_in_the_prompt():
    assert math_answer(prompts=["Example: #### 5"], completions=["#### 6"], answer=["6"]) == [1.0]


# ---- choice -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["B", " b ", "(B)", "B.", "B)", "(B).", "Answer: B", "answer: (b)", "The answer is B.",
                                  "Let me think. A is wrong.\nFinal answer: B", "**Answer:** B", "The answer is: (B)",
                                  "Answer: B\nBecause A is wrong.", "Answer: B ... so the answer is B"])
def test_choice_accepts_one_committed_letter(text):
    assert score(choice, [text], answer=["B"]) == [1.0]


@pytest.mark.parametrize("text", ["A B C D", "A, B, C, D", "ABCD", "Answer: A, B", "Answer: B, A", "Answer: A or B",
                                  "Answer: (A) and (B)", "Answer: A/B", "Answer: B C", "Answer: B\nAnswer: A",
                                  "answer is A. Answer: B", "B or C", "I think B", "", "Answer: Banana", "Answer:", "C"])
def test_choice_refuses_hedges_and_other_letters(text):
    assert score(choice, [text], answer=["B"]) == [0.0]


def test_choice_reads_a_lowercase_answer_field_and_chat_completions():
    completions = [chat("Answer: C"), chat("(d)"), "A"]
    assert choice(prompts=["q"] * 3, completions=completions, answer=["c", " D ", "AB"],
                  **{**TRL_EXTRAS, "completion_ids": [[1]] * 3}) == [1.0, 1.0, 0.0]


# ---- format -----------------------------------------------------------------------------------------------------

def test_default_format_wants_thinking_then_an_answer():
    fmt = format_reward(DEFAULT_FORMAT)
    completions = ["<think>6 * 7</think> 42", "  <think>\nstep\n</think>\n\n#### 42\n", "<think></think> 42",
                   "<think>   \n</think> 42", "<think>x</think>", "<think>x</think>   \n", "42", "<think>x 42",
                   chat("<think>ok</think>done"), "<think>步骤</think>答案", "<think>٣</think>٤"]
    assert fmt.__name__ == "format"
    assert score(fmt, completions, **TRL_EXTRAS | {"completion_ids": [[1]] * 11}) == [1, 1, 0, 0, 0, 0, 0, 0, 1, 1, 1]


@pytest.mark.parametrize("text", ["<think>.</think>.", "<think>...</think>!", "<think>\u200b</think>\u200b",
                                  "<think>ok</think>\u200b", "<think>\u200b\u200c\u2060</think>42",
                                  "<think>\u3000</think>ok", "<think>x</think>\u00a0", "<think>-*-</think>#### ",
                                  "<think>\u200e\ufeff</think>(\u2028)"],
                         ids=["dots", "punctuation", "zero-width", "zero-width answer", "invisible thinking",
                              "ideographic space", "no-break space", "symbols", "marks and separators"])
def test_format_needs_a_letter_or_digit_in_each_part(text):
    assert score(format_reward(DEFAULT_FORMAT), [text]) == [0.0]


def test_a_custom_format_with_named_groups_checks_each_group():
    fmt = format_reward(r"<answer>(?P<answer>.*)</answer>")
    assert score(fmt, ["<answer>B</answer>", "<answer>\u200b</answer>", "<answer>?</answer>"]) == [1.0, 0.0, 0.0]
    assert score(format_reward(r"#+"), ["###"]) == [0.0]  # no named group: the whole match must be visible


def test_custom_format_pattern_for_a_gsm8k_ending():
    fmt = format_reward(r".*\n#### -?[\d,]+")
    assert score(fmt, ["work\n#### 1,200", "#### 12", "work\n#### 12\nmore", "work\n#### twelve"]) == [1, 0, 0, 0]


def test_check_pattern_reports_a_bad_pattern_in_one_line():
    assert check_pattern(DEFAULT_FORMAT) is None
    problem = check_pattern("<think>(.*</think>")
    assert problem and "missing )" in problem and "\n" not in problem
    with pytest.raises(WorkbenchError, match=r"method\.format_pattern: .*missing \)"):
        format_reward("<think>(.*</think>")


# ---- code_tests (real sandbox) ----------------------------------------------------------------------------------

TESTS = "assert add(2, 3) == 5\nassert add(-1, 1) == 0\nassert add(10, 5) == 15\n"
RIGHT = "def add(a, b):\n    return a + b\n"
WRONG = "def add(a, b):\n    return a - b\n"


def test_code_tests_passes_a_right_solution_and_fails_a_wrong_one():
    completions = [f"Here:\n```python\n{RIGHT}```", WRONG, RIGHT, chat(f"```\n{RIGHT}```")]
    assert code_tests(prompts=["q"] * 4, completions=completions, tests=[TESTS] * 4, sandbox_limits=QUICK,
                      **{**TRL_EXTRAS, "completion_ids": [[1]] * 4}) == [1.0, 0.0, 1.0, 1.0]


@pytest.mark.parametrize("forgery", FORGERIES, ids=[f.name for f in FORGERIES])
def test_code_tests_gives_zero_to_a_forgery(forgery):
    """A wrong add (0.0 alone) with a forgery appended: still 0.0, whether the row names its entry point or not."""
    completion = f"```python\n{reward_program(forgery)}```"
    assert score(code_tests, [f"```python\n{WRONG}```"], tests=[forgery.reward_tests], sandbox_limits=QUICK) == [0.0]
    assert score(code_tests, [completion] * 2, tests=[forgery.reward_tests] * 2, entry_point=[None, "add"],
                 sandbox_limits=QUICK) == [0.0, 0.0], forgery.why


def test_code_tests_reads_an_entry_point_column():
    completions = [RIGHT + "def helper():\n    return 1\n"] * 3
    tests = [TESTS, TESTS + "assert helper() == 1\n", TESTS]
    assert score(code_tests, completions, tests=tests, entry_point=["add", "add", "not a name"],
                 sandbox_limits=QUICK) == [1.0, 0.0, 0.0]  # helper is not proxied when the row names add


def test_code_tests_gives_zero_to_reward_hacks():
    hacks = {
        "sys.exit(0) before the tests": "import sys\n" + WRONG + "sys.exit(0)\n",
        "os._exit(0) before the tests": "import os\n" + WRONG + "os._exit(0)\n",
        "SystemExit in the body": "def add(a, b):\n    raise SystemExit(0)\n",
        "exit() in the body": "def add(a, b):\n    exit()\n",
        "infinite loop": "def add(a, b):\n    while True:\n        pass\n",
        "fake pass text": WRONG + "print('3 passed in 0.01s')\nprint('OK')\n",
        "atexit os._exit(0)": "import atexit, os\natexit.register(lambda: os._exit(0))\n" + WRONG,
        "excepthook swallows the failure": "import sys\nsys.excepthook = lambda *a: None\n" + WRONG,
        "AssertionError replaced": ("import builtins\nbuiltins.AssertionError = type('E', (BaseException,), {})\n"
                                    + WRONG),
    }
    got = score(code_tests, [f"```python\n{code}```" for code in hacks.values()], tests=[TESTS] * len(hacks),
                sandbox_limits=QUICK)
    assert dict(zip(hacks, got, strict=True)) == dict.fromkeys(hacks, 0.0)


def test_code_tests_runs_the_last_fenced_block():
    first_wrong = f"Draft:\n```python\n{WRONG}```\nFixed:\n```python\n{RIGHT}```\nDone."
    last_wrong = f"```python\n{RIGHT}```\nOn second thought:\n```\n{WRONG}```"
    assert score(code_tests, [first_wrong, last_wrong], tests=[TESTS] * 2, sandbox_limits=QUICK) == [1.0, 0.0]


def test_extract_code_picks_the_last_python_or_bare_block():
    assert extract_code("a\n```python\nx = 1\n```\nb\n```\ny = 2\n```\n") == "y = 2\n"
    assert extract_code("```py\nx = 1\n```\n```bash\nls\n```") == "x = 1\n"
    assert extract_code("  ```python\n  x = 1\n  ```") == "x = 1\n"
    assert extract_code("x = 1") == "x = 1"


def test_code_tests_scores_empty_code_zero_without_the_sandbox(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the sandbox ran")

    monkeypatch.setattr(sandbox, "run_many", refuse)
    monkeypatch.setattr(sandbox, "require_minimum", refuse)
    assert score(code_tests, ["", "```python\n\n```", chat("   "), RIGHT], tests=["x", "x", "x", "  "]) == [0.0] * 4


def test_code_tests_refuses_a_weak_sandbox_unless_allowed(monkeypatch):
    seen = []

    def weak(allow_weak=False):
        seen.append(allow_weak)
        if not allow_weak:
            raise WorkbenchError("the code sandbox is below its minimum (network reachable)")
        return "none: weak"

    monkeypatch.setattr(sandbox, "require_minimum", weak)
    monkeypatch.setattr(sandbox, "run_many", lambda programs, limits, tests, **kwargs: [sandbox.SandboxResult(
        True, "passed", 0, "", "", 0.0, True)] * len(programs))
    monkeypatch.setattr(rewards, "_sandbox_checked", {})
    monkeypatch.setitem(rewards._settings, "allow_weak", False)
    with pytest.raises(WorkbenchError, match="below its minimum"):
        score(code_tests, [RIGHT], tests=[TESTS])
    rewards.allow_weak_sandbox(True)
    assert score(code_tests, [RIGHT], tests=[TESTS]) == [1.0]
    assert score(code_tests, [RIGHT], tests=[TESTS]) == [1.0]
    assert seen == [False, True]  # checked once per setting, not per batch


# ---- user rewards -----------------------------------------------------------------------------------------------

USER_FILE = '''
def length_bonus(prompts, completions, **kwargs):
    """Longer is better, up to 10 characters."""
    return [min(len(c), 10) / 10 for c in completions]

def wrong_length(prompts, completions, **kwargs):
    return [1.0]

def not_a_list(prompts, completions, **kwargs):
    return 1.0

def bad_value(prompts, completions, **kwargs):
    return ["high" for c in completions]

def maybe(prompts, completions, **kwargs):
    return [None if c == "?" else c == "yes" for c in completions]

async def later(prompts, completions, **kwargs):
    return [0.5 for c in completions]

THRESHOLD = 3
'''


@pytest.fixture
def user_file(tmp_path):
    path = tmp_path / "my_rewards.py"
    path.write_text(USER_FILE)
    return path


def test_user_reward_loads_by_absolute_path_and_keeps_its_name(user_file):
    fn = load_user_reward(f"{user_file}:length_bonus")
    assert fn.__name__ == "length_bonus" and "Longer is better" in fn.__doc__
    assert fn(prompts=["q", "q"], completions=["abcde", "x" * 20], **TRL_EXTRAS) == [0.5, 1.0]
    assert load_user_reward(f"{user_file}:maybe")(prompts=["q"] * 3, completions=["yes", "no", "?"]) == [1.0, 0.0, None]


def test_user_reward_resolves_relative_paths_from_the_project_root(user_file, monkeypatch):
    monkeypatch.setenv("WORKBENCH_HOME", str(user_file.parent))
    assert load_user_reward("my_rewards.py:length_bonus")(prompts=["q"], completions=["abc"]) == [pytest.approx(0.3)]


def test_user_reward_runs_an_async_function_to_completion(user_file):
    import inspect

    fn = load_user_reward(f"{user_file}:later")
    assert not inspect.iscoroutinefunction(fn) and fn.__name__ == "later"
    assert fn(prompts=["q"], completions=["a"]) == [0.5]


def test_user_reward_load_errors_name_the_key_and_the_problem(user_file, tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("import json\nraise ValueError('no config here\\nsecond line')\n")
    (tmp_path / "notes.txt").write_text("def f(): pass\n")
    cases = {f"{user_file}": "expected path/to/file.py:function", f"{user_file}:": "expected path/to/file.py:function",
             f"{tmp_path}/missing.py:f": "file not found", f"{tmp_path}/notes.txt:f": "not a .py file",
             f"{broken}:f": "importing broken.py failed: ValueError: no config here",
             f"{user_file}:length_bonsu": "has no function 'length_bonsu' (did you mean 'length_bonus'?)",
             f"{user_file}:THRESHOLD": "'THRESHOLD' is not callable (a int)"}
    for spec, problem in cases.items():
        with pytest.raises(WorkbenchError) as error:
            load_user_reward(spec)
        message = str(error.value)
        assert message.startswith(f"method.rewards: {spec}") and problem in message and "\n" not in message, message


def test_user_reward_return_values_are_checked(user_file):
    cases = {"wrong_length": "returned 1 values for 2 completions", "not_a_list": "returned a float, expected a list",
             "bad_value": "returned 'high' at index 0, expected a finite number or None"}
    for name, problem in cases.items():
        fn = load_user_reward(f"{user_file}:{name}", key="method.rewards")
        with pytest.raises(WorkbenchError, match=f"^method.rewards: {user_file}:{name} {problem}"):
            fn(prompts=["q", "q"], completions=["a", "b"])


def test_is_user_spec():
    assert is_user_spec("rewards/mine.py:score") and is_user_spec("/abs/x.py:f")
    assert not is_user_spec("math_answer") and not is_user_spec("mine:score") and not is_user_spec("mine.py")


# ---- build ------------------------------------------------------------------------------------------------------

def test_build_returns_functions_and_weights_in_order(user_file):
    funcs, weights = build({"format": 0.2, f"{user_file}:length_bonus": 0.5, "math_answer": 1, "choice": 2.0,
                            "code_tests": 1.0})
    assert [f.__name__ for f in funcs] == ["format", "length_bonus", "math_answer", "choice", "code_tests"]
    assert weights == [0.2, 0.5, 1.0, 2.0, 1.0] and all(isinstance(w, float) for w in weights)
    assert set(NAMES) == {"math_answer", "code_tests", "choice", "format"}


def test_build_uses_the_format_pattern():
    (fmt,), _ = build({"format": 1.0}, format_pattern=r"#### \d+")
    assert score(fmt, ["#### 12", "<think>x</think> y"]) == [1.0, 0.0]
    (default,), _ = build({"format": 1.0})
    assert score(default, ["#### 12", "<think>x</think> y"]) == [0.0, 1.0]


def test_build_errors():
    with pytest.raises(WorkbenchError) as error:
        build({"math_anwser": 1.0})
    assert str(error.value) == ("method.rewards: unknown reward 'math_anwser' (did you mean 'math_answer'?) "
                                "(known: math_answer, code_tests, choice, format, or path/to/file.py:function)")
    with pytest.raises(WorkbenchError, match="^method.rewards: name at least one reward"):
        build({})
    with pytest.raises(WorkbenchError, match=r"^method.rewards.choice: weight must be a number, got 'high'"):
        build({"choice": "high"})


def test_build_refuses_two_rewards_logged_under_one_name(tmp_path):
    path = tmp_path / "clash.py"
    path.write_text("def choice(prompts, completions, **kwargs):\n    return [0.0] * len(completions)\n")
    with pytest.raises(WorkbenchError, match="both named 'choice'"):
        build({"choice": 1.0, f"{path}:choice": 1.0})


# ---- check_row --------------------------------------------------------------------------------------------------

WHERE = "data/x.jsonl: row 7"


@pytest.mark.parametrize("names, row, message", [
    (["math_answer"], {"prompt": "q"}, "data/x.jsonl: row 7: answer: missing (reward math_answer reads it)"),
    (["math_answer"], {"answer": None}, "data/x.jsonl: row 7: answer: missing (reward math_answer reads it)"),
    (["math_answer"], {"answer": "forty"}, "data/x.jsonl: row 7: answer: not a number: 'forty'"),
    (["math_answer"], {"answer": True}, "answer: not a number: True"),
    (["math_answer"], {"answer": float("nan")}, "answer: not a number: nan"),
    (["math_answer"], {"answer": math.inf}, "answer: not a number: inf"),
    (["math_answer"], {"answer": "so 12\n#### 12 or 13"}, "answer: not a number: 'so 12\\n#### 12 or 13'"),
    (["choice"], {"answer": "AB"}, "data/x.jsonl: row 7: answer: must be one letter A-Z for reward choice, got 'AB'"),
    (["choice"], {"answer": 1}, "answer: must be one letter A-Z for reward choice, got 1"),
    (["choice"], {}, "answer: missing (reward choice reads it)"),
    (["code_tests"], {"tests": "  "}, "data/x.jsonl: row 7: tests: must be non-empty text (reward code_tests runs it)"),
    (["code_tests"], {"tests": ["assert f()"]}, "tests: must be non-empty text (reward code_tests runs it)"),
    (["format", "code_tests"], {"answer": "1"}, "tests: missing (reward code_tests reads it)"),
    (["code_tests"], {"tests": "assert f()", "entry_point": "f()"},
     "data/x.jsonl: row 7: entry_point: must be a function name for reward code_tests, got 'f()'"),
])
def test_check_row_names_the_field_and_problem(names, row, message):
    with pytest.raises(WorkbenchError) as error:
        check_row(row, names, WHERE)
    assert message in str(error.value) and str(error.value).startswith(WHERE) and "\n" not in str(error.value)


def test_check_row_accepts_valid_rows():
    for answer in [42, 1.5, "42", "1,200", "$3.50", "Step one.\n#### 72"]:
        check_row({"answer": answer}, ["math_answer", "format"], WHERE)
    check_row({"answer": "c"}, ["choice"], WHERE)
    check_row({"tests": "assert True"}, ["code_tests"], WHERE)
    check_row({"tests": "assert f()", "entry_point": "f"}, ["code_tests"], WHERE)
    check_row({}, ["format", "rewards/mine.py:f"], WHERE)  # user rewards read what they like
    assert FIELDS == {"math_answer": ("answer",), "choice": ("answer",), "code_tests": ("tests",), "format": ()}
