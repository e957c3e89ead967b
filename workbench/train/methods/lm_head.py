"""A loss head that scores only the positions that carry a loss, for devices without Triton (CPU).

TRL's trainers compute the loss through a fused LM head (`model(..., fused_lm_head=True)`, installed by
`trl.trainer.utils.add_fused_lm_head`). On CUDA it projects only the positions whose label is not -100. On
other devices it projects every position, padding and prompt included, through a tiled torch fallback
that recomputes the logits in the backward. With assistant-only loss most positions carry no loss, and on
the embedded model the LM head is the largest matmul.

`use_compact_lm_head(model)` wraps that fused forward (SFT: the fields `SFTTrainer` reads). On a CPU batch
it projects only the positions that carry a loss with the model's own LM head module, and returns TRL's
`FusedCausalLMOutput` with the same fields and values (log-probabilities, entropy, top-1, loss). Everything
else goes to TRL's forward unchanged: other devices, pre-shifted labels, router aux loss, and models whose
logits are scaled or soft-capped. The logits of the selected positions are held for the backward: rows x vocab x 4 bytes.
Batches above `MAX_LOGITS` elements (256 MiB of fp32) also go to TRL's forward.
"""

import types

import torch
from trl.trainer.utils import FusedCausalLMOutput

MAX_LOGITS = 64 * 2**20
# Config fields that change the logits after the LM head; TRL's forward handles them, this one does not.
LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "output_multiplier", "lm_head_multiplier",
                    "logits_scaling")


def use_compact_lm_head(model) -> bool:
    """Wrap the fused forward TRL installed on `model` (on its base model, under PEFT). Returns whether it did."""
    if hasattr(model, "get_base_model"):  # PEFT: TRL installs the head on the base model
        model = model.get_base_model()
    fused_forward = model.__dict__.get("forward")
    code = getattr(getattr(fused_forward, "__func__", None), "__code__", None)
    if code is None or code.co_name != "_fused_forward":
        return False  # TRL did not install a fused head on this model
    text_config = model.config.get_text_config()
    if any(getattr(text_config, name, None) is not None for name in LOGIT_TRANSFORMS):
        return False

    def forward(self, *args, fused_lm_head=False, labels=None, shift_labels=None, num_items_in_batch=None, **kwargs):
        def trl_head():
            return fused_forward(*args, fused_lm_head=fused_lm_head, labels=labels, shift_labels=shift_labels,
                                 num_items_in_batch=num_items_in_batch, **kwargs)

        if (not fused_lm_head or shift_labels is not None or labels.device.type != "cpu"
                or kwargs.get("output_router_logits") or getattr(text_config, "output_router_logits", False)):
            return trl_head()
        mask = labels[:, 1:] != -100
        positions = mask.sum()
        if positions * text_config.vocab_size > MAX_LOGITS:
            return trl_head()
        kwargs["use_cache"] = False
        hidden = self.base_model(*args, **kwargs).last_hidden_state[:, :-1]
        targets = labels[:, 1:][mask]
        logits = self.get_output_embeddings()(hidden[mask]).float()  # (loss positions, vocab)
        log_softmax = logits.log_softmax(-1)
        selected = log_softmax.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        with torch.no_grad():
            entropy = -(log_softmax.exp() * log_softmax).sum(-1)
            is_top1 = logits.argmax(-1) == targets  # argmax takes the first maximum: a tie with an earlier token is not top-1
        # masked_scatter keeps the output connected to the graph when no position carries a loss
        log_probs = selected.new_zeros(mask.shape).masked_scatter(mask, selected)
        entropy = entropy.new_zeros(mask.shape).masked_scatter(mask, entropy)
        is_top1 = is_top1.new_zeros(mask.shape).masked_scatter(mask, is_top1)
        loss = -log_probs.sum() / (positions.clamp(min=1) if num_items_in_batch is None else num_items_in_batch)
        return FusedCausalLMOutput(loss=loss, log_probs=log_probs, entropy=entropy, is_top1=is_top1, label_mask=mask)

    model.forward = types.MethodType(forward, model)
    return True
