"""Distillation as a recipe: the teacher's vocabulary is checked before any run opens, the student moves towards
the teacher (closer than the same student trained with plain SFT on the same rows and steps), and the on-policy
share decides how many batches the student samples itself."""

import json
import shutil

import mlflow
import pytest
from support import FAST

from workbench.recipe.load import load_recipe
from workbench.errors import WorkbenchError
from workbench.train.methods.distill import held_out
from workbench.model.load import load_model
from workbench.model.presets import preset_dir
from workbench.train.plan import make_plan


def test_a_teacher_with_another_vocabulary_is_one_line_before_any_run_opens(tmp_path, finetune_cli):
    import json
    import shutil

    from workbench.model.presets import preset_dir

    other = tmp_path / "other-vocab"  # weights, no tokenizer (a teacher's own is never loaded), another vocabulary
    shutil.copytree(preset_dir("deepseek-v3-tiny", 0), other, ignore=shutil.ignore_patterns("tokenizer*", "special*"))
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "vocab_size": 4096}))
    result = finetune_cli(tmp_path, "method.name=distill", f"teacher.name={other}")
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: teacher: its vocabulary has 4096 tokens "
                                                                       "and the student's 8192"), result.stderr
    assert not (tmp_path / "out").exists()
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/m.db")
    assert not client.search_runs([e.experiment_id for e in client.search_experiments()])


def test_a_teacher_with_the_same_size_but_another_tokenizer_is_refused(tmp_path):
    from workbench.paths import project_root
    from workbench.model.tokenizer import build_tokenizer

    base = preset_dir("deepseek-v3-tiny", 0)
    other = tmp_path / "other-tokenizer"
    shutil.copytree(base, other)
    vet = sorted((project_root() / "data" / "vet").glob("*.jsonl"))
    build_tokenizer(8192, vet, model_max_length=2048).save_pretrained(other)
    recipe = load_recipe("legal", ["method.name=distill", f"teacher.name={other}", "eval.suite=null"])
    with pytest.raises(WorkbenchError, match=r"^teacher: its tokenizer differs from the student's \(\d+ tokens map to"):
        make_plan(recipe)


def test_the_distilled_student_ends_closer_to_the_teacher_than_the_sft_student(isolated, train_recipe, monkeypatch):
    from trl.experimental.gkd import GKDTrainer

    teacher_run, client = train_recipe("legal", FAST + ["peft.type=none", "train.max_steps=16", "train.lr=2e-3",
                                                        "train.eval_steps=100"], out="teacher")
    sampled = []
    original = GKDTrainer.generate_on_policy_outputs
    monkeypatch.setattr(GKDTrainer, "generate_on_policy_outputs",
                        staticmethod(lambda *a: sampled.append(1) or original(*a)))
    # the divergence alone (the recipe mixes in the answers' cross-entropy: benchmarks/distill_vs_sft.py measures that)
    common = FAST + [f"teacher.from_run={teacher_run.tracker.run_id}", "method.sft_weight=0", "train.max_steps=12",
                     "train.eval_steps=12"]
    distilled, _ = train_recipe("legal-distill", common, out="distill")
    assert not sampled  # on_policy_share 0: every batch is the rows' own answers
    sft, _ = train_recipe("legal-distill", common[:-2] + ["method.name=sft", "teacher.from_run=null", "train.max_steps=12",
                                                          "train.eval_steps=12"], out="sft")
    teacher, tokenizer = load_model(load_recipe("legal-distill", [f"teacher.from_run={teacher_run.tracker.run_id}",
                                                                  f"track.tracking_uri={isolated['uri']}"]).teacher)
    rows = list(distilled.trainer.eval_dataset)
    ours, theirs = (held_out(r.trainer.model, teacher, rows, tokenizer) for r in (distilled, sft))
    assert ours["tokens"] == theirs["tokens"] > 100
    assert ours["kl_to_teacher"] < 0.7 * theirs["kl_to_teacher"], (ours, theirs)
    kl = [m.value for m in sorted(client.get_metric_history(distilled.tracker.run_id, "eval/kl_to_teacher"),
                                  key=lambda m: m.step)]
    assert len(kl) == 2 and kl[1] < 0.5 * kl[0], kl  # before training, and after 12 steps
    tags = client.get_run(distilled.tracker.run_id).data.tags
    assert tags["distill.teacher"] == f"run {teacher_run.tracker.run_id}"
    assert tags["distill.student_params"] == "5,749,312" and tags["distill.teacher_params"] == "9,225,088"
    note = json.loads((distilled.output_dir / "final" / "workbench_model.json").read_text())
    assert note["base_model"]["name"] == "deepseek-v3-tiny-student" and not note["adapter"]

    on_policy, _ = train_recipe("legal-distill", common[:-2] + ["method.on_policy_share=1", "method.max_new_tokens=4",
                                                                "train.max_steps=2", "train.eval_steps=100"], out="on")
    assert len(sampled) == 2 and on_policy.trainer.state.global_step == 2
