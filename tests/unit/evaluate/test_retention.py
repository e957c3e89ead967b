"""The retention gate's verdict on known scores: pass, fail, and unknown when there is nothing to compare."""

from workbench.evaluate.retention import retention_verdict


def test_drop_within_tolerance_passes_and_beyond_fails():
    base = {"mmlu/acc_none": 0.50, "gsm8k/exact_match_strict_match": 0.10}
    verdict, lines = retention_verdict(base, {"mmlu/acc_none": 0.49, "gsm8k/exact_match_strict_match": 0.12}, 0.02)
    assert verdict == "pass" and len(lines) == 2
    verdict, lines = retention_verdict(base, {"mmlu/acc_none": 0.40, "gsm8k/exact_match_strict_match": 0.12}, 0.02)
    assert verdict == "fail"
    assert any("mmlu/acc_none: 0.5000 -> 0.4000 (dropped 0.1000)" in line for line in lines)


def test_nothing_to_compare_is_unknown_never_pass():
    assert retention_verdict({"a/x": 1.0}, {"b/y": 0.0}, 0.0) == ("unknown", [])
    assert retention_verdict({}, {"mmlu/acc_none": 0.3}, 0.02) == ("unknown", [])
    assert retention_verdict({"mmlu/acc_none": 0.3}, {}, 0.02) == ("unknown", [])
