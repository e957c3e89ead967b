"""The compact loss head (workbench/train/methods/lm_head.py) against TRL's fused head, on the legal recipe's LoRA model."""

import copy

import pytest
import torch

from workbench.recipe.load import load_recipe
from workbench.data.load import load_dataset
from workbench.model.lora import wrap
from workbench.train.methods import sft

OVERRIDES = ["data.max_rows=16", "eval.suite=null", "train.batch_size=4"]


def _trainer(tiny, tmp_path, compact: bool):
    model, tokenizer = tiny
    recipe = load_recipe("legal", OVERRIDES)
    splits = load_dataset(recipe.data, "sft")
    torch.manual_seed(0)  # the same LoRA initialisation in both trainers
    peft_model, _ = wrap(copy.deepcopy(model), recipe.peft)
    with pytest.MonkeyPatch.context() as patch:
        if not compact:  # TRL's fused head as SFTTrainer installs it
            patch.setattr(sft, "use_compact_lm_head", lambda model: False)
        return sft.build_trainer(recipe, peft_model, tokenizer, splits, str(tmp_path), callbacks=[])


def _loss_and_grads(trainer, batch):
    trainer.model.zero_grad()
    out = trainer.model(**batch, fused_lm_head=True)
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    return out, grads


@pytest.fixture(scope="module")
def batch_and_trainers(tiny, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("lm_head")
    compact = _trainer(tiny, tmp_path / "compact", True)
    fused = _trainer(tiny, tmp_path / "fused", False)
    batch = next(iter(compact.get_train_dataloader()))
    return batch, compact, fused


def test_compact_head_matches_trl_fused_head(batch_and_trainers):
    batch, compact, fused = batch_and_trainers
    assert compact.model.get_base_model().forward.__name__ == "forward"  # the workbench wrapper
    assert fused.model.get_base_model().forward.__func__.__code__.co_name == "_fused_forward"
    assert (batch["labels"] == -100).float().mean() > 0.3  # prompt + padding: most positions carry no loss

    out_c, grads_c = _loss_and_grads(compact, batch)
    out_f, grads_f = _loss_and_grads(fused, batch)
    assert out_c.loss.item() == pytest.approx(out_f.loss.item(), rel=1e-5)
    torch.testing.assert_close(out_c.label_mask, out_f.label_mask)
    torch.testing.assert_close(out_c.log_probs, out_f.log_probs, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(out_c.entropy, out_f.entropy, atol=1e-4, rtol=1e-5)
    assert torch.equal(out_c.is_top1, out_f.is_top1)
    assert grads_c.keys() == grads_f.keys() and len(grads_c) > 0
    for name in grads_c:
        torch.testing.assert_close(grads_c[name], grads_f[name], atol=1e-6, rtol=1e-3, msg=name)


def test_compact_head_projects_only_loss_positions(batch_and_trainers):
    batch, compact, _ = batch_and_trainers
    rows = []
    head = compact.model.get_base_model().get_output_embeddings()
    handle = head.register_forward_hook(lambda module, args, output: rows.append(args[0].shape[0]))
    try:
        with torch.no_grad():
            compact.model(**batch, fused_lm_head=True)
    finally:
        handle.remove()
    assert rows == [int((batch["labels"][:, 1:] != -100).sum())]
    assert rows[0] < batch["labels"][:, 1:].numel()  # prompt and padding positions are not projected


def test_compact_head_steps_aside_for_plain_forward_and_generation(batch_and_trainers):
    batch, compact, _ = batch_and_trainers
    with torch.no_grad():
        out = compact.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    assert out.logits.shape == (*batch["input_ids"].shape, compact.model.config.vocab_size)
