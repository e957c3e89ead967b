"""Training DeepSeek-V3's multi-token-prediction (MTP) layer beside the main model, and measuring it.

    from workbench.train.mtp import mtp_loss, HiddenCapture, MtpReport
    capture = HiddenCapture(model)                   # the decoder stack's final hidden states per forward
    total, n, correct = mtp_loss(model, capture.take(), input_ids, labels)   # the head's loss on tokens two ahead
    report = MtpReport(recipe, tracker, rows, enabled=True)   # held-out figures before and after a run

V3 (technical report, section 2.2): at position i the MTP module combines the main model's final hidden state
h_i with the embedding of token i+1 and predicts token i+2,

    x_i = eh_proj([enorm(embed(t_{i+1})); hnorm(h_i)]),   x = Block(x),   logits = head(shared_head.norm(x))

with the embedding and output head shared with the main model. The layer itself (attached as one more decoder
layer, in DeepSeek's checkpoint layout) lives in `workbench.model.mtp`; this module is the loss the SFT trainer
adds (`mtp.weight` times it) and the report (held-out next-next-token accuracy, speculative acceptance).
"""

import contextlib
from pathlib import Path

import torch
from torch import nn

from workbench.model.mtp import attach, causal_lm, checkpoint_mtp_keys, mtp_layers
from workbench.model.speculative import speculative_stats


class HiddenCapture:
    """Holds the decoder stack's last output (after the final norm: what `generate(use_mtp=True)` hands its MTP
    layers) from the most recent forward."""

    def __init__(self, model):
        lm = causal_lm(model)
        self.hidden = None
        self.handle = lm.model.register_forward_hook(self._hook)

    def _hook(self, module, args, output):
        self.hidden = output.last_hidden_state

    def take(self) -> torch.Tensor | None:
        hidden, self.hidden = self.hidden, None
        return hidden

    def remove(self) -> None:
        self.handle.remove()


def mtp_forward(model, hidden: torch.Tensor, input_ids: torch.Tensor, attention_mask=None, position_ids=None):
    """The MTP layer's output states over positions 0..T-2 (each predicts the token two ahead), from the main
    model's final hidden states `hidden` (batch, T, H) and the batch's tokens."""
    from transformers.masking_utils import create_causal_mask

    lm = causal_lm(model)
    layer = mtp_layers(lm)[0]
    embeds = lm.get_input_embeddings()(input_ids[:, 1:])
    if position_ids is None:
        position_ids = torch.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(0)
    positions = position_ids[:, 1:]
    x = layer.eh_proj(torch.cat([layer.enorm(embeds), layer.hnorm(hidden[:, :-1])], dim=-1))
    mask = create_causal_mask(config=layer.self_attn.config, inputs_embeds=x,
                              attention_mask=attention_mask[:, 1:] if attention_mask is not None else None,
                              past_key_values=None, position_ids=positions)
    x = layer(x, attention_mask=mask, position_ids=positions,
              position_embeddings=lm.model.rotary_emb(x, positions))
    return layer.shared_head.norm(x)


def mtp_loss(model, hidden, input_ids, labels, attention_mask=None, position_ids=None):
    """(summed cross-entropy, number of targets, correct top-1) of the MTP head on the tokens two ahead whose
    label is not -100 (assistant-only and padding masks carry over from the main loss's labels)."""
    states = mtp_forward(model, hidden, input_ids, attention_mask, position_ids)[:, :-1]  # predicts t_{i+2}
    targets = labels[:, 2:]
    mask = targets != -100
    logits = causal_lm(model).lm_head(states[mask]).float()
    chosen = targets[mask]
    total = nn.functional.cross_entropy(logits, chosen, reduction="sum") if chosen.numel() else states.sum() * 0
    with torch.no_grad():
        correct = (logits.argmax(-1) == chosen).sum() if chosen.numel() else torch.zeros((), device=states.device)
    return total, mask.sum(), correct


@torch.no_grad()
def next_next_accuracy(model, tokenizer, rows, max_length: int = 512, batch_size: int = 8) -> dict[str, float]:
    """Held-out MTP figures over the last assistant turns of chat `rows`: the MTP head's loss and top-1 accuracy
    on the token two ahead, per answer token."""
    from workbench.train.methods.distill import DataCollatorForChatML

    lm = causal_lm(model)
    collate = DataCollatorForChatML(tokenizer=tokenizer, max_length=max_length)
    was_training = lm.training
    lm.eval()
    capture = HiddenCapture(lm)
    totals = torch.zeros(3, dtype=torch.float64)
    rows = list(rows)
    try:
        for start in range(0, len(rows), batch_size):
            batch = {k: v.to(lm.device) for k, v in collate(rows[start:start + batch_size]).items()
                     if k in ("input_ids", "attention_mask", "labels")}
            lm(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False)
            s, n, c = mtp_loss(lm, capture.take(), batch["input_ids"], batch["labels"], batch["attention_mask"])
            totals += torch.tensor([s.item(), n.item(), c.item()], dtype=torch.float64)
    finally:
        capture.remove()
        lm.train(was_training)
    count = max(totals[1].item(), 1.0)
    return {"loss": totals[0].item() / count, "accuracy": totals[2].item() / count, "tokens": int(totals[1].item())}


def prompts_of(rows, limit: int) -> list[list[dict]]:
    """The turns before each chat row's last assistant turn: held-out prompts for speculative decoding."""
    prompts = []
    for row in list(rows)[:limit]:
        messages = row["messages"]
        last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
        prompts.append(messages[:last])
    return prompts


def measure(model, tokenizer, rows, cfg) -> dict[str, float]:
    """Held-out MTP loss and next-next-token accuracy, and speculative decoding's acceptance rate."""
    rows = list(rows)
    figures = {f"heldout_{k}": v for k, v in next_next_accuracy(model, tokenizer, rows).items() if k != "tokens"}
    if cfg.speculative_prompts:
        stats = speculative_stats(model, tokenizer, prompts_of(rows, cfg.speculative_prompts), cfg.speculative_tokens)
        figures.update({k: v for k, v in stats.items() if k != "prompts"})
    return figures


@contextlib.contextmanager
def temporarily_attached(model, folder: str):
    """The checkpoint's MTP layer on `model` for a while (to measure a layer that is not trained), then off again."""
    lm = causal_lm(model)
    before = lm.config.num_mtp_layers
    attach(lm, folder, init="checkpoint", key="mtp.report")
    try:
        yield
    finally:
        del lm.model.layers[lm.config.num_hidden_layers]
        lm.config.num_mtp_layers = before


@contextlib.contextmanager
def merged(model):
    """LoRA adapters merged into their base weights for a while (the MTP drafter reads plain weights)."""
    peft = hasattr(model, "merge_adapter") and hasattr(model, "peft_config")
    if peft:
        model.merge_adapter()
    try:
        yield
    finally:
        if peft:
            model.unmerge_adapter()


class MtpReport:
    """Before and after a run: the MTP head's held-out figures and speculative decoding on held-out prompts,
    logged as `mtp/*` (step 0 before, the last step after) and summed up in one console line. Measured on the
    model in memory (no second copy): the trained layer, or with `mtp.report: always` the checkpoint's layer
    attached for the measurement only."""

    def __init__(self, recipe, track, rows, enabled: bool, base_weights: str | None = None):
        mode = recipe.mtp.report
        self.recipe, self.track, self.rows = recipe, track, rows
        self.base_weights = base_weights  # the base checkpoint's folder, as the plan pinned it
        self.active = enabled and mode != "never" and (recipe.mtp.enabled or mode == "always")
        self.before_figures: dict | None = None

    def _untrained_source(self, model, final_dir: Path | None = None) -> str | None:
        lm = causal_lm(model)
        for folder in ([str(final_dir)] if final_dir else []) + [self.base_weights]:
            if folder and checkpoint_mtp_keys(folder, lm.config.num_hidden_layers):
                return folder
        return None

    def _measure(self, model, tokenizer, final_dir: Path | None = None) -> dict | None:
        if mtp_layers(model):
            with merged(model):
                return measure(model, tokenizer, self.rows, self.recipe.mtp)
        folder = self._untrained_source(model, final_dir)
        if folder is None:
            return None
        with temporarily_attached(model, folder), merged(model):
            return measure(model, tokenizer, self.rows, self.recipe.mtp)

    def before(self, model, tokenizer) -> None:
        if not self.active:
            return
        self.before_figures = self._measure(model, tokenizer)
        if self.before_figures is None:
            print("notice: mtp.report: always, but the base model has no MTP layer to measure")
            return
        self.track.log_metrics({f"mtp/{k}": v for k, v in self.before_figures.items()}, step=0, raw=True)

    def after(self, model, tokenizer, final_dir: Path, step: int) -> None:
        if not self.active:
            return
        figures = self._measure(model, tokenizer, final_dir)
        if figures is None:
            return
        self.track.log_metrics({f"mtp/{k}": v for k, v in figures.items()}, step=step, raw=True)
        before = self.before_figures or {}

        def change(key, fmt="{:.3f}"):
            now = fmt.format(figures[key])
            return f"{fmt.format(before[key])} -> {now}" if key in before else now

        trained = "trained" if self.recipe.mtp.enabled else "kept as loaded, mtp.enabled: false"
        line = f"MTP ({trained}): held-out next-next-token accuracy {change('heldout_accuracy')}"
        if "acceptance_rate" in figures:
            line += (f"; speculative decoding accepts {change('acceptance_rate')} of drafts, "
                     f"{change('tokens_per_forward', '{:.2f}')} tokens per forward")
            if figures["identical"] < 1:
                line += f" (warning: only {figures['identical']:.0%} of continuations equal plain greedy decoding)"
        print(line)
