"""The retention gate's verdict on known scores."""

from workbench.retention import retention_verdict


def test_drop_within_tolerance_passes_and_beyond_fails():
    base = {"mmlu/acc_none": 0.50, "gsm8k/exact_match_strict_match": 0.10}
    passed, lines = retention_verdict(base, {"mmlu/acc_none": 0.49, "gsm8k/exact_match_strict_match": 0.12}, 0.02)
    assert passed and len(lines) == 2
    passed, lines = retention_verdict(base, {"mmlu/acc_none": 0.40, "gsm8k/exact_match_strict_match": 0.12}, 0.02)
    assert not passed
    assert any("mmlu/acc_none: 0.5000 -> 0.4000 (dropped 0.1000)" in line for line in lines)


def test_only_scores_present_on_both_sides_count():
    passed, lines = retention_verdict({"a/x": 1.0}, {"b/y": 0.0}, 0.0)
    assert passed and lines == []
