"""Verifiable rewards for GRPO: small pure functions TRL's `GRPOTrainer` calls once per batch of completions.

    from workbench.evaluate.rewards import build, check_row
    funcs, weights = build({"math_answer": 1.0, "format": 0.2})   # GRPOConfig(reward_weights=weights)
    check_row(row, ["math_answer"], "data/gsm8k.jsonl: row 7")      # before training: the fields each reward reads
    math_answer(prompts, ["... #### 42"], answer=["42"])           # [1.0]

Tests: `.venv/bin/python -m pytest -q tests/unit/evaluate/test_rewards.py`.

TRL calls each function as `fn(prompts=..., completions=..., completion_ids=..., **columns)`: a completion is a
string (text prompts) or a list of messages (chat prompts; the last assistant message is scored), every other
dataset column arrives as a list aligned with the completions, and `trainer_state`, `log_extra`, `log_metric`
are accepted and ignored. Each function returns one float per completion and is logged under its `__name__`.
Every reward is all or nothing (1.0 or 0.0) and refuses to be gamed by hedging: listing several answers earns 0.

  math_answer  GSM8K style. The completion must hold exactly one `####` marker, and the rest of that line must
               be exactly one number: optional sign, optional `$`, thousands commas (`1,200`), optional decimal
               part, optional trailing `.`, nothing else but whitespace. So `#### 12 or 13`, `#### 12, 13`,
               `#### 12 13`, an empty `####`, two markers or none earn 0. The row's `answer` (a number, a numeric
               string or a GSM8K solution ending in `#### N`) must be EQUAL as exact decimals once `$`, thousands
               commas and a trailing `.` are dropped (an int answer exactly, a float one as its shortest repr):
               `1,000`, `1000.0`, `$1000` all equal 1000; 24999975 is not 25000000. No tolerance.
  choice       One letter A-Z (`answer`, any case). Markers `Answer: X`, `answer is X`, `answer: (X)` (any case,
               X one letter followed by a non-letter) must all name the same letter, and none may go on to list
               more (`Answer: A, B`, `Answer: A or B`); without a marker the whole completion must be one
               letter, as `B`, `(B)`, `B.` or `B)`.
  code_tests   The last ```python (or bare ```) fenced block, or the whole text if there is none, and the row's
               `tests` go to workbench.evaluate.sandbox.run_tests (its pass rule: the tests run in their own sandbox
               against the program's functions, the row's `entry_point` or each top-level one, and get plain data
               back). Refuses a sandbox below its minimum unless `allow_weak_sandbox(True)`.
  format       1.0 when the stripped completion fully matches a regex (re.DOTALL) AND each named group that
               matched (else the whole match) holds a letter or digit (Unicode L*, N*; not only punctuation,
               spaces or invisible Cf characters). Default: `<think>(?P<think>.*?)</think>(?P<answer>.*)`.
  user         `path/to/file.py:function` (relative to the project root), called the same way; its return
               value is checked (one number or None per completion).
"""

import asyncio
import difflib
import hashlib
import importlib.util
import inspect
import math
import numbers
import re
import sys
import textwrap
import unicodedata
from decimal import Decimal
from pathlib import Path

from workbench.errors import WorkbenchError
from workbench.paths import project_root

NAMES = ("math_answer", "code_tests", "choice", "format")
FIELDS = {"math_answer": ("answer",), "choice": ("answer",), "code_tests": ("tests",), "format": ()}
DEFAULT_FORMAT = r"<think>(?P<think>.*?)</think>(?P<answer>.*)"  # each part must hold a letter or digit
KEY = "method.rewards"
FORMAT_KEY = "method.format_pattern"
KNOWN = f"known: {', '.join(NAMES)}, or path/to/file.py:function"
MARKER = "####"

NUMBER = re.compile(r"(?:[+-]?\$?|\$[+-])(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)\.?")
# "Answer: X", "answer is X", "**Answer:** (X)"; `more` catches a list going on from it on the same line ("A, B",
# "A or B", "A B"). A list over several lines credits only the marker's letter, so it gains nothing.
CHOICE_MARKER = re.compile(
    r"\banswer\**(?:\s+is\b\**:?|\s*:)[\s*]*\(?([A-Za-z])\)?(?![A-Za-z])"
    r"(?P<more>(?:[ \t]*[,;/&+|][ \t]*|[ \t]+(?:or|and)[ \t]+|[ \t]+)\(?[A-Za-z]\)?(?![A-Za-z']))?", re.IGNORECASE)
BARE_CHOICE = re.compile(r"\(?([A-Za-z])\)?\.?")
FENCE = re.compile(r"^[ \t]*```[ \t]*(python3?|py)?[ \t]*\n(.*?)^[ \t]*```", re.MULTILINE | re.DOTALL | re.IGNORECASE)

_settings = {"allow_weak": False}
_sandbox_checked: dict[bool, str] = {}  # allow_weak -> require_minimum's summary, once it has passed


# ---- reading completions and numbers --------------------------------------------------------------------------

def completion_text(completion) -> str:
    """A text completion as is; a chat completion's last assistant message; anything else ''."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list):
        for message in reversed(completion):
            if isinstance(message, dict) and message.get("role") == "assistant":
                content = message.get("content")
                return content if isinstance(content, str) else ""
    return ""


def parse_number(text) -> Decimal | None:
    """`-1,200.50`, `$42`, `42.` -> an exact Decimal; None unless the whole (stripped) text is one such number."""
    if not isinstance(text, str) or not NUMBER.fullmatch(text.strip()):
        return None
    return Decimal(text.strip().replace("$", "").replace(",", "").rstrip("."))


def final_answer(text: str) -> str | None:
    """The number after the only `####` marker (rest of its line), or None: no marker, two markers, or a line
    that is not exactly one number (`#### 12 or 13`, `#### 12, 13`, `#### 12 13`, `####`)."""
    if not isinstance(text, str) or text.count(MARKER) != 1:
        return None
    line = text.split(MARKER, 1)[1].split("\n", 1)[0].strip()
    return line if parse_number(line) is not None else None


def expected_number(answer) -> Decimal | None:
    """The row's answer as an exact Decimal: an int exactly, a finite float as its shortest repr (not bool),
    a numeric string, or text ending `#### N`."""
    if isinstance(answer, bool):
        return None
    if isinstance(answer, numbers.Integral):
        return Decimal(int(answer))
    if isinstance(answer, numbers.Real):
        value = float(answer)
        return Decimal(repr(value)) if math.isfinite(value) else None
    if isinstance(answer, str):
        value = parse_number(answer)
        if value is None and (final := final_answer(answer)) is not None:
            value = parse_number(final)
        return value
    return None


# ---- built-in rewards -----------------------------------------------------------------------------------------

def math_answer(prompts, completions, answer, **kwargs) -> list[float]:
    """1.0 when the completion's one `#### N` line (see `final_answer`) equals the row's answer exactly, as
    decimals (see `parse_number`, `expected_number`). No marker, two markers, or anything but one number after
    it: 0.0. No tolerance: 24999975 is not 25000000."""
    scores = []
    for completion, truth in zip(completions, answer, strict=True):
        given, want = final_answer(completion_text(completion)), expected_number(truth)
        got = parse_number(given) if given is not None else None
        scores.append(float(got is not None and want is not None and got == want))
    return scores


def chosen_letter(text: str) -> str | None:
    """The one letter a completion commits to (upper case), or None when it names none or several."""
    markers = list(CHOICE_MARKER.finditer(text))
    if markers:
        letters = {m.group(1).upper() for m in markers}
        return letters.pop() if len(letters) == 1 and not any(m.group("more") for m in markers) else None
    bare = BARE_CHOICE.fullmatch(text.strip())
    return bare.group(1).upper() if bare else None


def choice(prompts, completions, answer, **kwargs) -> list[float]:
    """1.0 when the completion commits to exactly the row's letter (see `chosen_letter`), else 0.0."""
    scores = []
    for completion, truth in zip(completions, answer, strict=True):
        letter = chosen_letter(completion_text(completion))
        scores.append(float(letter is not None and isinstance(truth, str) and letter == truth.strip().upper()))
    return scores


def check_pattern(pattern: str) -> str | None:
    """None if `pattern` compiles, else the one-line `re.error` message."""
    try:
        re.compile(pattern)
    except re.error as error:
        return str(error).splitlines()[0]
    except TypeError:
        return f"must be a string, got {type(pattern).__name__}"
    return None


def format_reward(pattern: str = DEFAULT_FORMAT):
    """A reward named `format`: 1.0 when the stripped completion text fully matches `pattern` (re.DOTALL) and
    each named group that matched (else the whole match) is `visible`."""
    if (problem := check_pattern(pattern)) is not None:
        raise WorkbenchError(f"{FORMAT_KEY}: {pattern!r}: {problem}")
    compiled = re.compile(pattern, re.DOTALL)

    def format(prompts, completions, **kwargs) -> list[float]:  # noqa: A001 - TRL logs the reward as "format"
        return [float(_well_formed(compiled, completion_text(c).strip())) for c in completions]

    return format


def visible(text: str) -> bool:
    """At least one letter or digit (Unicode categories L*, N*): not only punctuation, whitespace, separators
    (Z*) or invisible format characters (Cf, e.g. U+200B zero-width space)."""
    return any(unicodedata.category(char)[0] in "LN" for char in text)


def _well_formed(compiled: re.Pattern, text: str) -> bool:
    match = compiled.fullmatch(text)
    if match is None:
        return False
    parts = [part for part in match.groupdict().values() if part is not None] or [match.group(0)]
    return all(visible(part) for part in parts)


def extract_code(text: str) -> str:
    """The last ```python / ``` fenced block (dedented), or the whole text when there is no fence."""
    blocks = FENCE.findall(text)
    return textwrap.dedent(blocks[-1][1]) if blocks else text


def allow_weak_sandbox(flag: bool) -> None:
    """Let code_tests run in a sandbox below its minimum (network reachable, writable host): unsafe."""
    _settings["allow_weak"] = bool(flag)


def code_tests(prompts, completions, tests, *, entry_point=None, sandbox_limits=None, **kwargs) -> list[float]:
    """1.0 when the completion's code (see `extract_code`) passes the row's tests under the sandbox's pass
    rule (workbench.evaluate.sandbox.run_tests); empty code or empty tests earn 0.0 without running, and so
    does an `entry_point` that is not a name. `entry_point` (a dataset column, optional): the one function
    the tests call; without it every top-level function of the program is callable from the tests.
    `sandbox_limits`: a SandboxLimits (tests)."""
    from workbench.evaluate import sandbox

    programs = [extract_code(completion_text(c)) for c in completions]
    entry_points = [name or None for name in entry_point] if entry_point is not None else [None] * len(programs)
    runnable = [i for i, (program, test, name) in enumerate(zip(programs, tests, entry_points, strict=True))
                if program.strip() and isinstance(test, str) and test.strip()
                and (name is None or (isinstance(name, str) and name.isidentifier()))]
    scores = [0.0] * len(programs)
    if not runnable:
        return scores
    allow_weak = _settings["allow_weak"]
    if allow_weak not in _sandbox_checked:
        _sandbox_checked[allow_weak] = sandbox.require_minimum(allow_weak)
    results = sandbox.run_many([programs[i] for i in runnable], sandbox_limits or sandbox.SandboxLimits(),
                               tests=[tests[i] for i in runnable], entry_points=[entry_points[i] for i in runnable])
    for i, result in zip(runnable, results, strict=True):
        scores[i] = float(result.passed)
    return scores


BUILT_IN = {"math_answer": math_answer, "code_tests": code_tests, "choice": choice}


# ---- user rewards ---------------------------------------------------------------------------------------------

def is_user_spec(name: str) -> bool:
    """`path/to/file.py:function` (the part before the last ':' ends in .py)."""
    return isinstance(name, str) and ":" in name and name.rpartition(":")[0].endswith(".py")


def load_user_reward(spec: str, key: str = KEY):
    """The function named by `path/to/file.py:function`, wrapped so its return value is checked."""
    where, _, name = spec.rpartition(":")
    if not where or not name.strip():
        raise WorkbenchError(f"{key}: {spec}: expected path/to/file.py:function")
    path = Path(where).expanduser()
    path = path if path.is_absolute() else project_root() / path
    if not path.is_file():
        raise WorkbenchError(f"{key}: {spec}: file not found: {path}")
    if path.suffix != ".py":
        raise WorkbenchError(f"{key}: {spec}: not a .py file: {path}")
    module = _import_file(path, spec, key)
    if not hasattr(module, name):
        names = [n for n in vars(module) if not n.startswith("_") and callable(getattr(module, n))]
        close = difflib.get_close_matches(name, names, n=3)
        hint = (f" (did you mean {' or '.join(map(repr, close))}?)" if close
                else f" (it defines: {', '.join(names) or 'no functions'})")
        raise WorkbenchError(f"{key}: {spec}: {path.name} has no function '{name}'{hint}")
    fn = getattr(module, name)
    if not callable(fn):
        raise WorkbenchError(f"{key}: {spec}: '{name}' is not callable (a {type(fn).__name__})")
    return _checked_wrapper(fn, name, spec, key)


def _import_file(path: Path, spec: str, key: str):
    # A unique module name per file, registered while it runs, so dataclasses and pickling inside it work.
    module_name = f"workbench_user_reward_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module
    try:
        module_spec.loader.exec_module(module)
    except (Exception, SystemExit) as error:
        sys.modules.pop(module_name, None)
        message = (str(error).strip().splitlines() or [""])[0]
        raise WorkbenchError(f"{key}: {spec}: importing {path.name} failed: {type(error).__name__}"
                             + (f": {message}" if message else "")) from None
    return module


def _checked_wrapper(fn, name: str, spec: str, key: str):
    # Always a plain function, an async one run to completion inside it: the held-out reward report calls
    # rewards synchronously, and TRL calls a plain one the same way.
    run = (lambda **kwargs: asyncio.run(fn(**kwargs))) if inspect.iscoroutinefunction(fn) else fn
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        parameters = ()
    open_ended = not parameters or any(p.kind is p.VAR_KEYWORD for p in parameters)
    accepted = {p.name for p in parameters}

    def wrapper(prompts, completions, **kwargs):
        # TRL passes every dataset column plus trainer_state, log_extra, log_metric: a function that does not
        # take **kwargs gets only the arguments it names
        passed = {"prompts": prompts, "completions": completions, **kwargs}
        if not open_ended:
            passed = {k: v for k, v in passed.items() if k in accepted}
        try:
            values = run(**passed)
        except WorkbenchError:
            raise
        except Exception as error:
            message = (str(error).strip().splitlines() or [""])[0]
            raise RewardCallError(f"{key}: {spec}: calling {name} failed: {type(error).__name__}"
                                  + (f": {message}" if message else ""), cause=error) from None
        return _check_values(values, len(completions), spec, key)

    wrapper.__name__ = wrapper.__qualname__ = name
    wrapper.__doc__ = fn.__doc__
    return wrapper


class RewardCallError(WorkbenchError):
    """A user's reward function raised; `cause` is what it raised."""

    def __init__(self, message: str, cause: BaseException):
        super().__init__(message)
        self.cause = cause


def _check_values(values, expected: int, spec: str, key: str) -> list:
    if not isinstance(values, list | tuple):
        raise WorkbenchError(f"{key}: {spec} returned a {type(values).__name__}, expected a list of {expected} numbers")
    if len(values) != expected:
        raise WorkbenchError(f"{key}: {spec} returned {len(values)} values for {expected} completions")
    checked = []
    for i, value in enumerate(values):
        if value is None or (isinstance(value, float) and math.isnan(value)):
            checked.append(None)  # TRL: no reward for this completion (NaN, left out of the mean)
        elif isinstance(value, numbers.Real) and math.isfinite(value):
            checked.append(float(value))
        else:
            raise WorkbenchError(f"{key}: {spec} returned {value!r} at index {i}, expected a finite number or None")
    return checked


# ---- building and checking ------------------------------------------------------------------------------------

def build(rewards: dict[str, float], format_pattern: str | None = None) -> tuple[list, list[float]]:
    """The reward functions and their weights, in the mapping's order (for GRPOTrainer / GRPOConfig)."""
    if not rewards:
        raise WorkbenchError(f"{KEY}: name at least one reward with its weight, e.g. {{math_answer: 1.0}} ({KNOWN})")
    funcs, weights = [], []
    for name, weight in rewards.items():
        if isinstance(weight, bool) or not isinstance(weight, numbers.Real) or not math.isfinite(weight):
            raise WorkbenchError(f"{KEY}.{name}: weight must be a number, got {weight!r}")
        funcs.append(_reward(name, format_pattern))
        weights.append(float(weight))
    seen = {}
    for name, fn in zip(rewards, funcs, strict=True):
        if fn.__name__ in seen:  # TRL logs by __name__: two of one name would share a metric
            raise WorkbenchError(f"{KEY}: {seen[fn.__name__]} and {name} are both named '{fn.__name__}'; rename one")
        seen[fn.__name__] = name
    return funcs, weights


def _reward(name: str, format_pattern: str | None):
    if name == "format":
        return format_reward(DEFAULT_FORMAT if format_pattern is None else format_pattern)
    if name in BUILT_IN:
        return BUILT_IN[name]
    if is_user_spec(name):
        return load_user_reward(name)
    close = difflib.get_close_matches(str(name), NAMES, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise WorkbenchError(f"{KEY}: unknown reward {name!r}{hint} ({KNOWN})")


def check_row(row: dict, names, where: str) -> None:
    """Each built-in reward in `names` finds its fields in `row` with usable values; else a one-line
    WorkbenchError `<where>: <field>: <problem>`."""
    for name in names:
        for field in FIELDS.get(name, ()):
            if row.get(field) is None:
                raise WorkbenchError(f"{where}: {field}: missing (reward {name} reads it)")
            if (problem := _field_problem(name, row[field])) is not None:
                raise WorkbenchError(f"{where}: {field}: {problem}")
        if (optional := _optional_field_problem(name, row)) is not None:
            raise WorkbenchError(f"{where}: {optional[0]}: {optional[1]}")


def _field_problem(name: str, value) -> str | None:
    shown = _short(value)
    if name == "math_answer" and expected_number(value) is None:
        return f"not a number: {shown} (reward math_answer reads a number, or text ending in one '#### N' line)"
    if name == "choice" and not (isinstance(value, str) and re.fullmatch(r"[A-Za-z]", value.strip())):
        return f"must be one letter A-Z for reward choice, got {shown}"
    if name == "code_tests" and not (isinstance(value, str) and value.strip()):
        return "must be non-empty text (reward code_tests runs it)"
    return None


def _optional_field_problem(name: str, row: dict) -> tuple[str, str] | None:
    point = row.get("entry_point")
    if name == "code_tests" and point is not None and not (isinstance(point, str) and point.isidentifier()):
        return "entry_point", f"must be a function name for reward code_tests, got {_short(point)}"
    return None


def _short(value, limit: int = 60) -> str:
    shown = repr(value)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."
