"""Every dashboard page, headless (streamlit AppTest), over a seeded sqlite store: the values shown, not just
that the page ran. Run: .venv/bin/python -m pytest -q tests/ui/test_app.py"""

import numpy as np
import pytest
from chart_spec import colour_distance, decode, figures, label

from ui.views.common import ema


def no_exception(at):
    assert not at.exception, [e.message for e in at.exception]


def test_runs_page_lists_every_run_with_its_latest_metrics(store, open_page):
    at = open_page(store["uri"], "runs")
    no_exception(at)
    table = at.dataframe[0].value.set_index("run")
    assert sorted(table.index) == ["dpo-c", "grpo-g", "sft-a", "sft-b", "sft-empty", "sft-running", "staged-f"]
    assert table.loc["staged-f", "teacher"] == "run 0123abcd" and table.loc["sft-a", "teacher"] == ""
    assert table.loc["staged-f", "eval KL to teacher"] == pytest.approx(0.3)
    assert table.loc["dpo-c", "status"] == "FAILED" and table.loc["sft-running", "status"] == "RUNNING"
    assert table.loc["dpo-c", "train loss"] == pytest.approx(0.68)  # the last value, not the first
    assert table.loc["sft-b", "legal_mc/acc"] == pytest.approx(0.75)  # the later of two scheduled evals
    assert np.isnan(table.loc["sft-empty", "train loss"])  # a run without metrics is a row with blanks
    assert table.loc["sft-a", "mlflow"] == f"http://mlflow.test/#/experiments/1/runs/{store['a']}"


def test_runs_page_filters_by_status_and_method(store, open_page):
    at = open_page(store["uri"], "runs")
    at.multiselect(key="runs_status").set_value(["FAILED", "RUNNING"]).run()
    assert sorted(at.dataframe[0].value["run"]) == ["dpo-c", "sft-running"]
    at.multiselect(key="runs_method").set_value(["dpo"]).run()
    assert list(at.dataframe[0].value["run"]) == ["dpo-c"]


def test_compare_overlays_both_runs_by_label(store, open_page):
    a, b = label("sft-a", store["a"]), label("sft-b", store["b"])
    at = open_page(store["uri"], "compare")
    assert "Pick two or more runs" in at.info[0].value  # nothing chosen yet
    at.multiselect(key="compare_runs").set_value([a, b]).run()
    no_exception(at)
    charts = {fig["layout"]["title"]["text"]: fig for fig in figures(at)}
    assert {"train/loss", "eval/loss", "train/learning_rate", "train/grad_norm"} <= set(charts)
    loss = charts["train/loss"]["data"]
    assert [trace["name"] for trace in loss] == [a, b]
    assert list(decode(loss[0]["x"])) == list(range(1, 21))
    assert list(decode(charts["eval/loss"]["data"][0]["x"])) == [10, 20]
    assert at.query_params["runs"] == f"{store['a'][:8]},{store['b'][:8]}"  # the view is shareable


def test_compare_marks_stage_boundaries_and_shows_kl_to_the_teacher(store, open_page):
    at = open_page(store["uri"], "compare", runs=f"{store['a'][:8]},{store['f'][:8]}")
    no_exception(at)
    charts = {fig["layout"]["title"]["text"]: fig for fig in figures(at)}
    for key in ("train/loss", "eval/loss"):  # phase 2 starts after step 5, phase 3 after step 15
        assert [shape["x0"] for shape in charts[key]["layout"]["shapes"]] == [5.5, 15.5]
        assert [note["text"] for note in charts[key]["layout"]["annotations"]] == ["joint", "sharpen"]
    assert "shapes" not in charts["train/learning_rate"]["layout"]
    kl = charts["eval/kl_to_teacher"]["data"]
    assert [trace["name"] for trace in kl] == [label("staged-f", store["f"], "legal-staged")]
    np.testing.assert_allclose(decode(kl[0]["y"]), [0.9, 0.5, 0.3])
    plain = open_page(store["uri"], "compare", runs=f"{store['a'][:8]},{store['b'][:8]}")
    titles = {fig["layout"]["title"]["text"] for fig in figures(plain)}
    assert "eval/kl_to_teacher" not in titles and not any("kl_to_teacher" in c.value for c in plain.caption)


def test_compare_draws_a_grpo_runs_reward_curves(store, open_page):
    at = open_page(store["uri"], "compare", runs=f"{store['a'][:8]},{store['g'][:8]}")
    no_exception(at)
    charts = {fig["layout"]["title"]["text"]: fig for fig in figures(at)}
    reward = charts["train/reward"]["data"]
    assert [trace["name"] for trace in reward] == [label("grpo-g", store["g"], "legal-grpo")]  # the SFT run has none
    np.testing.assert_allclose(decode(reward[0]["y"]), [0.2, 0.45])
    # replay_applied is 1.0 by design under replay; the router's own choice is the curve worth drawing
    np.testing.assert_allclose(decode(charts["moe/router_agreement"]["data"][0]["y"]), [0.97, 0.93])
    assert "moe/replay_applied" not in charts
    runs = open_page(store["uri"], "runs").dataframe[0].value.set_index("run")
    assert runs.loc["grpo-g", "held-out reward"] == pytest.approx(0.5)  # the last value: after training


def test_compare_smoothing_changes_loss_but_not_lr(store, open_page):
    at = open_page(store["uri"], "compare", runs=f"{store['a'][:8]},{store['b'][:8]}")
    raw = {f["layout"]["title"]["text"]: f for f in figures(at)}
    at.slider(key="compare_smoothing").set_value(0.9).run()
    smooth = {f["layout"]["title"]["text"]: f for f in figures(at)}
    raw_loss, smooth_loss = decode(raw["train/loss"]["data"][0]["y"]), decode(smooth["train/loss"]["data"][0]["y"])
    assert np.abs(np.diff(smooth_loss)).sum() < np.abs(np.diff(raw_loss)).sum()
    np.testing.assert_allclose(decode(smooth["train/learning_rate"]["data"][0]["y"]),
                               decode(raw["train/learning_rate"]["data"][0]["y"]))


def test_compare_scores_delta_against_base_model_and_baseline_run(store, open_page):
    a, b = label("sft-a", store["a"]), label("sft-b", store["b"])
    at = open_page(store["uri"], "compare", runs=f"{store['a'][:8]},{store['b'][:8]}")
    scores = at.dataframe[0].value
    assert scores.loc["legal_mc/acc", a] == pytest.approx(0.5) and scores.loc["legal_mc/acc", b] == pytest.approx(0.75)
    assert scores.loc["legal_mc/acc", f"delta {b}"] == pytest.approx(0.5)  # 0.75 - base 0.25
    at.selectbox(key="compare_baseline").set_value(a).run()
    scores = at.dataframe[0].value
    assert scores.loc["legal_mc/acc", f"delta {b}"] == pytest.approx(0.25)  # 0.75 - run a's 0.5
    assert f"delta {a}" not in scores


def test_compare_params_diff_shows_only_differing_keys(store, open_page):
    a, b = label("sft-a", store["a"]), label("sft-b", store["b"])
    at = open_page(store["uri"], "compare", runs=f"{store['a'][:8]},{store['b'][:8]}")
    diff = at.dataframe[1].value
    assert sorted(diff.index) == ["moe.balance", "moe.bias_update_speed", "train.lr"]
    assert diff.loc["moe.bias_update_speed", a] == "(unset)" and diff.loc["moe.bias_update_speed", b] == "0.01"


def test_routing_page_draws_heatmaps_and_base_vs_tuned(store, open_page):
    at = open_page(store["uri"], "routing", run=store["a"][:8])
    no_exception(at)
    specs = figures(at)
    heatmaps = [f for f in specs if f["data"][0]["type"] == "heatmap"]
    assert len(heatmaps) == 2  # both MoE layers of the artifact
    z = decode(heatmaps[0]["data"][0]["z"])
    assert z.shape == (8, 20)  # (experts, steps)
    np.testing.assert_allclose(z.mean(axis=0), 1.0)  # load / mean averages to 1 at every step
    curves = next(f for f in specs if "max / mean" in f["layout"]["title"]["text"])
    assert [t["name"] for t in curves["data"]] == ["layer1", "layer2", "mean"]
    bars = next(f for f in specs if "base vs tuned" in f["layout"]["title"]["text"])
    np.testing.assert_allclose(decode(bars["data"][1]["y"]), 1.0)  # the seeded tuned load is perfectly even


def test_routing_page_says_when_a_run_has_no_telemetry(store, open_page):
    at = open_page(store["uri"], "routing", run=store["e"][:8])
    no_exception(at)
    assert "no routing telemetry" in at.info[0].value
    assert not figures(at)


def test_evaluations_page_shows_score_history_and_samples(store, open_page):
    at = open_page(store["uri"], "evaluations", run=store["a"][:8])
    no_exception(at)
    history = figures(at)[0]["data"]
    legal = next(t for t in history if t["name"] == "eval/legal_mc/acc")
    np.testing.assert_allclose(decode(legal["y"]), [0.25, 0.5])  # two evals, oldest first
    samples = at.dataframe[1].value
    assert list(samples["passed"]) == [True, True, False]
    assert samples.loc[0, "prompt"].startswith("Question 0")
    at.radio(key="eval_samples_filter").set_value("failed").run()
    assert list(at.dataframe[1].value["doc_id"]) == [2]


def test_failed_run_is_flagged(store, open_page):
    at = open_page(store["uri"], "evaluations", run=store["c"][:8])
    no_exception(at)
    assert "FAILED" in at.warning[0].value
    assert "No evaluation scores" in at.info[0].value


def test_missing_store_is_a_message_not_a_traceback(tmp_path, open_page):
    at = open_page(f"sqlite:///{tmp_path / 'none.db'}", "compare")
    no_exception(at)
    assert "No MLflow store" in at.error[0].value
    assert not (tmp_path / "none.db").exists()  # read-only: the dashboard never creates a store


def test_empty_store_says_no_runs(fast_tmp, open_page):
    import mlflow

    uri = f"sqlite:///{fast_tmp / 'empty.db'}"
    mlflow.MlflowClient(uri).search_experiments()  # creates the empty schema
    at = open_page(uri, "runs")
    no_exception(at)
    assert "No runs" in at.info[0].value


def test_unreachable_server_is_a_message_not_a_traceback(open_page):
    at = open_page("http://127.0.0.1:9", "routing")
    no_exception(at)
    assert "Cannot reach the MLflow tracking server at http://127.0.0.1:9" in at.error[0].value


def test_ema_matches_hand_computed_values():
    np.testing.assert_allclose(ema(np.array([1.0, 3.0]), 0.5), [1.0, (0.5 * 0.5 + 1.5) / 0.75])
    np.testing.assert_allclose(ema(np.array([1.0, 3.0]), 0.0), [1.0, 3.0])


def test_compare_gives_each_run_its_own_colour_on_every_chart(store, open_page):
    a, b, g = label("sft-a", store["a"]), label("sft-b", store["b"]), label("grpo-g", store["g"], "legal-grpo")
    at = open_page(store["uri"], "compare", runs=f"{store['a'][:8]},{store['b'][:8]},{store['g'][:8]}")
    no_exception(at)
    colours: dict[str, set[str]] = {}
    for fig in figures(at):
        for trace in fig["data"]:
            drawn = trace["marker"]["color"] if trace["type"] == "bar" else trace["line"]["color"]
            colours.setdefault(trace["name"], set()).add(drawn)
    assert {"scores per task", "train/loss", "train/reward"} <= {f["layout"]["title"]["text"] for f in figures(at)}
    assert sorted(colours) == sorted([a, b, g]) and all(len(c) == 1 for c in colours.values())  # one colour a run
    picked = [next(iter(colours[name])) for name in (a, b, g)]
    assert colour_distance("#0068c9", "#83c9ff") < 60  # the two blues runs used to get
    for i in range(3):
        for j in range(i + 1, 3):
            assert colour_distance(picked[i], picked[j]) > 60, (picked[i], picked[j])


def test_tables_leave_missing_values_blank(store, open_page):
    runs = f"{store['a'][:8]},{store['b'][:8]}"
    pages = [open_page(store["uri"], "runs"), open_page(store["uri"], "compare", runs=runs),
             open_page(store["uri"], "evaluations", run=store["a"][:8]),
             open_page(store["uri"], "samples", runs=f"{store['a'][:8]},{store['g'][:8]}")]
    tables = [table for at in pages for table in at.dataframe]
    assert len(tables) == 6  # runs; scores and params; latest scores and samples; answers summary
    # an unset placeholder also reads "" (proto3), and then Streamlit writes "None": the field must be set
    assert [(table.proto.HasField("placeholder"), table.proto.placeholder) for table in tables] == [(True, "")] * 6
    assert np.isnan(tables[0].value.set_index("run").loc["sft-empty", "train loss"])  # there are cells to blank
