"""A recipe's `eval:` section: its suites before and after training, what fine-tuning changed, the retention gate.

    evals = RecipeEvals(recipe, tracker, output_dir)
    evals.before(model, tokenizer)              # base/<task>/<metric> on the run, kept in <output_dir>/base_scores.json
    evals.before(model, tokenizer, resumed=True)    # a resumed run reuses those (the weights have moved on)
    evals.after(model, tokenizer)               # eval/<task>/<metric>, a paired sign test per score, the gate

Scores before training are stored with the run when first computed (MLflow metrics and samples, and a JSON
file in the output folder) and reused on resume; they are never recomputed from weights that already
trained. For every per-question score (right or wrong on each question: acc, acc_norm, acc_mutual_info,
exact_match) the same questions before and after are compared with an exact sign test
(`workbench.evaluate.significance`), logged as `compare/<task>/<metric>/{improved,worsened,p_value}`.
"""

import json
from pathlib import Path

from workbench import console
from workbench.evaluate.harness import log_to_run, run_suite, score_name

BASE_SCORES = "base_scores.json"


class RecipeEvals:
    def __init__(self, recipe, tracker, output_dir: Path, skipped: str | None = None, main: bool = True):
        cfg = recipe.eval
        self.cfg, self.tracker, self.output_dir, self.main = cfg, tracker, output_dir, main
        self.suites = [s for s in dict.fromkeys((cfg.suite, cfg.retention_suite)) if s]
        self.skipped = skipped if self.suites else None  # why suites cannot run in this process (ZeRO-3, ranks)
        self.base_scores: dict[str, float] = {}
        self.tuned_scores: dict[str, float] = {}
        self.base_results: dict[str, dict] = {}  # suite -> run_suite result (samples for the sign tests)
        self.comparisons: dict[str, object] = {}  # score name -> workbench.evaluate.significance.SignTest
        self.retention: str | None = None  # the gate's verdict, in words

    def before(self, model, tokenizer, resumed: bool = False) -> None:
        if self.skipped and self.main:
            print(f"notice: eval: suites {', '.join(self.suites)} skipped: {self.skipped}; score the run afterwards "
                  f"with `workbench eval <run id> --suite {self.suites[0]}` (or `make schedule`)")
        if self.skipped or not self.suites:
            return
        if resumed:
            self.base_scores = self._stored_scores()
            if self.base_scores:
                console.say(f"Scores before training: {len(self.base_scores)} reused from the run's first evaluation")
            return
        self.base_results = self._run(model, tokenizer, "base")
        self.base_scores = {k: v for r in self.base_results.values() for k, v in r["scores"].items()}
        if self.main:
            (self.output_dir / BASE_SCORES).write_text(json.dumps({"scores": self.base_scores}, indent=2))

    def after(self, model, tokenizer) -> None:
        tuned_results = {} if self.skipped else self._run(model, tokenizer, "eval")
        self.tuned_scores = tuned = {k: v for r in tuned_results.values() for k, v in r["scores"].items()}
        for suite, result in tuned_results.items():
            self._compare(suite, result)
        if self.cfg.retention_suite and self.main:
            from workbench.evaluate.retention import retention_gate

            verdict = retention_gate(self.tracker, self.base_scores, tuned, self.cfg,
                                     why_unknown=self.skipped or "the run was resumed before its first evaluation was stored")
            self.retention = f"{verdict} (suite {self.cfg.retention_suite}, allowed drop {self.cfg.retention_tolerance})"

    def _run(self, model, tokenizer, prefix: str) -> dict[str, dict]:
        model = model.get_base_model() if hasattr(model, "get_base_model") else model  # adapters stay active
        was_training = model.training
        model.eval()
        results = {}
        for suite in self.suites:
            with console.phase(f"Evaluating suite '{suite}' {'before' if prefix == 'base' else 'after'} training"):
                results[suite] = run_suite(model, tokenizer, suite, limit=self.cfg.limit, batch_size=self.cfg.batch_size,
                                           **_sandbox_opt_in(self.cfg))
            log_to_run(self.tracker.run_id, results[suite], prefix=prefix, tracking_uri=self.tracker.uri)
            console.say("  " + ", ".join(f"{k} {v:.3f}" for k, v in sorted(results[suite]["scores"].items())))
        model.train(was_training)
        return results

    def _stored_scores(self) -> dict[str, float]:
        stored = self.output_dir / BASE_SCORES
        if stored.is_file():
            return json.loads(stored.read_text())["scores"]
        metrics = self.tracker.mlflow.get_run(self.tracker.run_id).data.metrics  # logged before the run was killed
        return {k[len("base/"):]: v for k, v in metrics.items() if k.startswith("base/")}

    def _base_samples(self, suite: str, task: str) -> list | None:
        if suite in self.base_results:
            return self.base_results[suite]["samples"].get(task)
        from workbench.evaluate.significance import read_samples

        try:
            folder = self.tracker.mlflow.artifacts.download_artifacts(run_id=self.tracker.run_id,
                                                                      artifact_path=f"base/{suite}")
        except Exception:  # not logged (killed during the first evaluation)
            return None
        path = Path(folder) / f"samples_{task}.jsonl"
        return read_samples(path) if path.is_file() else None

    def _compare(self, suite: str, tuned: dict) -> None:
        from workbench.errors import WorkbenchError
        from workbench.evaluate.significance import paired_sign_test

        metrics = {}
        names = {t["task"] + ("_chat" if t["chat"] else ""): t["name"] for t in tuned["results"]["workbench"]["tasks"]}
        for task, samples in tuned.get("samples", {}).items():
            base = self._base_samples(suite, task)
            if not base:
                continue
            for key in tuned["results"].get("results", {}).get(task, {}):
                metric, _, filter_name = key.partition(",")
                if not filter_name or metric.endswith("_stderr"):
                    continue
                try:
                    test = paired_sign_test(base, samples, metric=metric, filter_name=filter_name)
                except WorkbenchError:  # a score that is not right/wrong per question (e.g. pass@k over repeats)
                    continue
                score = score_name(names.get(task, task), key)  # <benchmark>/<metric>
                metrics.update({f"compare/{score}/improved": test.n_improved,
                                f"compare/{score}/worsened": test.n_worsened, f"compare/{score}/p_value": test.p_value})
                self.comparisons[score] = test
        if metrics and self.main:
            self.tracker.mlflow.log_metrics(metrics, step=0)


def _sandbox_opt_in(cfg) -> dict:
    """`eval.unsafe_weak_sandbox`, for code tasks, where run_suite takes it."""
    import inspect

    takes = "unsafe_weak_sandbox" in inspect.signature(run_suite).parameters
    return {"unsafe_weak_sandbox": cfg.unsafe_weak_sandbox} if takes else {}
