"""The held-out reward report's arithmetic: the weighted reward per prompt, its mean and standard error, and what
ends a completion (workbench.evaluate.reward_report)."""

import math
from types import SimpleNamespace

import pytest

from workbench.evaluate import rewards
from workbench.evaluate.reward_report import mean_se, score, stop_tokens


def test_the_reward_is_the_weighted_sum_per_prompt():
    funcs, weights = rewards.build({"math_answer": 1.0, "format": 0.5}, format_pattern=r".*#### \d+")
    rows = [{"prompt": [{"role": "user", "content": "How many?"}], "answer": "3"},
            {"prompt": [{"role": "user", "content": "How many?"}], "answer": "4"},
            {"prompt": [{"role": "user", "content": "How many?"}], "answer": "5"}]
    scores = score(funcs, weights, rows, ["#### 3", "#### 7", "five"])
    assert scores["math_answer"] == [1.0, 0.0, 0.0] and scores["format"] == [1.0, 1.0, 0.0]
    assert scores["total"] == [1.5, 0.5, 0.0]


def test_a_user_reward_gets_trl_arguments_in_the_report_too(tmp_path):
    (tmp_path / "mine.py").write_text("def score(completions, log_metric, **kwargs):\n"
                                      "    log_metric('seen', 1.0)\n    return [None, 2.0]\n")
    funcs, weights = rewards.build({f"{tmp_path}/mine.py:score": 1.0})
    scores = score(funcs, weights, [{"prompt": "a"}, {"prompt": "b"}], ["x", "y"])
    assert math.isnan(scores["score"][0]) and scores["total"] == [0.0, 2.0]  # no reward: counts 0 in the total


def test_mean_and_standard_error():
    mean, se = mean_se([1.0, 0.0, 1.0, 0.0])
    assert mean == 0.5 and se == pytest.approx(math.sqrt((4 * 0.25 / 3) / 4))
    assert math.isnan(mean_se([1.0])[1])  # one prompt: no spread to estimate


def test_completions_stop_where_trl_stops_them():
    model = SimpleNamespace(generation_config=SimpleNamespace(eos_token_id=[7, 1]))
    assert stop_tokens(model, SimpleNamespace(eos_token_id=1)) == [1, 7]
    assert stop_tokens(SimpleNamespace(generation_config=None), SimpleNamespace(eos_token_id=1)) == [1]
