"""train.optimizer: muon end to end on the legal recipe: a full fine-tune and LoRA learn under Muon + AdamW, and
DeepSpeed ZeRO-2's own Muon takes the same steps as the workbench's torch Muon.

    .venv/bin/python -m pytest -q tests/recipes/test_muon.py      (about 3 min on 2 CPU cores, 2 more with -m slow)
"""

import pytest
from support import history

from workbench.train.optim import MuonWithAdamW, state_bytes

MUON = ["train.optimizer=muon", "train.eval_steps=10", "train.max_steps=10"]


def _optimizer(trainer):
    optimizer = trainer.optimizer
    while hasattr(optimizer, "optimizer"):  # accelerate's wrapper
        optimizer = optimizer.optimizer
    return optimizer


def test_a_full_fine_tune_under_muon_lowers_the_held_out_loss(train):
    run, client = train("legal", MUON + ["peft.type=none"])
    eval_loss = history(client, run.tracker.run_id, "eval/loss")
    assert len(eval_loss) == 2 and eval_loss[-1] < eval_loss[0] - 1.0, eval_loss  # measured: 9.07 -> 6.9
    optimizer = _optimizer(run.trainer)
    assert isinstance(optimizer, MuonWithAdamW)  # what ran, not only what was asked for
    names = {id(p): n for n, p in run.trainer.model.named_parameters()}
    muon = {names[id(p)] for g in optimizer.param_groups if g["muon"] for p in g["params"]}
    assert {n for n in names.values() if n.endswith("experts.gate_up_proj")} <= muon
    stack = next(p for g in optimizer.param_groups if g["muon"] for p in g["params"] if p.ndim == 3)
    assert optimizer.state[stack]["momentum_buffer"].shape == stack.shape  # one momentum per expert, kept whole
    assert 0 < state_bytes(optimizer) < 2 * 4 * sum(p.numel() for p in run.trainer.model.parameters())


def test_lora_under_muon_trains_its_adapters(train):
    run, client = train("legal", MUON)  # the shipped recipe: LoRA on the MLA projections, embeddings and head in full
    eval_loss = history(client, run.tracker.run_id, "eval/loss")
    assert eval_loss[-1] < eval_loss[0] - 0.5, eval_loss
    optimizer = _optimizer(run.trainer)
    names = {id(p): n for n, p in run.trainer.model.named_parameters()}
    muon = [names[id(p)] for g in optimizer.param_groups if g["muon"] for p in g["params"]]
    adamw = [names[id(p)] for g in optimizer.param_groups if not g["muon"] for p in g["params"]]
    assert muon and all(".lora_A." in n or ".lora_B." in n for n in muon)
    assert sorted(n.split(".")[-4] for n in adamw) == ["embed_tokens", "lm_head"]  # their modules_to_save copies
    assert all(optimizer.state[p]["momentum_buffer"].abs().sum() > 0 for g in optimizer.param_groups if g["muon"]
               for p in g["params"])  # every adapter matrix took Muon steps


@pytest.mark.slow
def test_deepspeed_zero2_runs_its_own_muon_with_the_same_steps(train, monkeypatch):
    import torch

    # DeepSpeed compiles its Muon update with torch.compile, per matrix shape: minutes on 2 cores; eager is the same math
    monkeypatch.setattr(torch._dynamo.config, "disable", True)
    same = ["train.optimizer=muon", "peft.type=none", "train.max_steps=4", "train.eval_steps=100",
            "train.max_grad_norm=0"]
    plain, client = train("legal", same, out="plain")
    zero2, _ = train("legal", same + ["train.deepspeed=zero2"], out="zero2")
    engine_optimizer = zero2.trainer.model_wrapped.optimizer.optimizer  # DeepSpeed's ZeRO-2 -> its Muon
    assert type(engine_optimizer).__name__ == "MuonWithAuxAdam"
    lr = zero2.recipe.train.lr
    lrs = {g["name"]: g["initial_lr"] for g in engine_optimizer.param_groups}  # before the schedule took them down
    assert lrs["adamw-decay-adam-params"] == pytest.approx(lr)
    assert lrs["muon-in256-muon-params"] == pytest.approx(lr * 0.2 * 256 ** 0.5)  # fan-in 256: the hidden size
    a = history(client, plain.tracker.run_id, "train/loss")
    b = history(client, zero2.tracker.run_id, "train/loss")
    assert len(a) == len(b) == 4 and a[0] == pytest.approx(b[0], abs=1e-4)  # the same rows and weights
    for x, y in zip(a[1:], b[1:]):
        assert abs(x - y) < 0.02 * x, (a, b)  # Newton-Schulz in other kernels; measured within 0.1%
    assert b[-1] < b[0]
