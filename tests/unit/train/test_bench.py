"""benchmarks/bench.py's summary: ratios to both baselines, the held-out loss judged by seed noise, the table."""

import importlib.util

import pytest

from workbench.paths import project_root


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench", project_root() / "benchmarks" / "bench.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(tokens_per_s, heldout, rss=1000.0, **extra):
    return {"tokens_per_s": tokens_per_s, "tokens_per_cpu_s": tokens_per_s * 2, "loss_tokens_per_s": tokens_per_s / 2,
            "step_time_s": 0.3, "peak_rss_train_mb": rss, "peak_rss_mb": rss + 100, "final_loss": 6.0,
            "heldout_loss_assistant": heldout, "heldout_loss_all": heldout + 0.2, "mfu": 0.3, "model_tflops_per_s": 0.1,
            "tokens_per_step": 700, "peak_flops": 1e11, "wall_s": 60, "gradient_checkpointing": False, "packing": False,
            "assistant_only_loss": True, "loss_scope": "assistant tokens", "trainable_params": 1, "active_params": 2,
            "threads": 2, **extra}


def test_summary_compares_with_both_baselines(bench):
    runs = {"baseline": [_run(100, 5.80), _run(120, 5.70), _run(110, 5.75)],
            "baseline_tuned": [_run(200, 5.78, rss=900), _run(180, 5.72, rss=900), _run(250, 5.76, rss=900)],
            "workbench": [_run(420, 5.77, rss=810, telemetry_share=0.01), _run(360, 5.73, rss=810, telemetry_share=0.02),
                          _run(400, 5.40, rss=810, telemetry_share=0.01)],
            "workbench_no_telemetry": [_run(430, 5.77), _run(370, 5.73), _run(410, 5.40)]}
    summary = bench.summarize(runs)
    wb = summary["workbench"]
    assert wb["ratio_per_repeat_vs_tuned"] == pytest.approx([2.1, 2.0, 1.6])
    assert wb["ratio_tokens_per_s_vs_tuned"] == pytest.approx(2.0)  # median of the back-to-back pairs
    assert wb["ratio_tokens_per_s_vs_baseline"] == pytest.approx(400 / 110)
    assert wb["ratio_peak_rss_vs_tuned"] == pytest.approx(0.9)  # the training loop's peak, not the process's
    assert wb["ratio_peak_rss_process_vs_tuned"] == pytest.approx(910 / 1000)
    # held-out loss: a mean 0.12 below the tuned baseline's, with a seed spread that makes 2 SE about 0.24
    assert wb["heldout_loss_diff_vs_tuned"] == pytest.approx((5.77 + 5.73 + 5.40) / 3 - (5.78 + 5.72 + 5.76) / 3)
    assert wb["loss_within_noise_vs_tuned"] is True
    assert summary["baseline_tuned"]["ratio_tokens_per_s_vs_baseline"] == pytest.approx(2.0)
    assert summary["telemetry_overhead"]["share_of_step_time"] == pytest.approx(0.01)
    text = bench.table(summary)
    assert "x tuned" in text.splitlines()[0]
    line = next(x for x in text.splitlines() if x.startswith("held-out loss, workbench "))
    assert "against baseline (" in line and "against baseline_tuned (" in line and "within noise" in line


def test_loss_outside_noise_is_flagged(bench):
    ours = [_run(1, 6.30), _run(1, 6.31), _run(1, 6.32)]
    theirs = [_run(1, 6.00), _run(1, 6.01), _run(1, 6.02)]
    check = bench.loss_check(ours, theirs)
    assert check["heldout_loss_diff"] == pytest.approx(0.30)
    assert check["loss_within_noise"] is False
    assert bench.loss_check(ours[:1], theirs[:1])["loss_within_noise"] is None  # one seed: no noise estimate
