"""Speculative decoding with a model's own MTP layer (`generate(use_mtp=True)`), and how often its drafts hold.

    from workbench.model.speculative import speculative_stats
    speculative_stats(model, tokenizer, prompts, max_new_tokens=48)
    # {"acceptance_rate": ..., "tokens_per_forward": ..., "identical": 1.0, "prompts": 16}

The drafts come from the MTP layer attached to the model in memory (as trained, or merged), through
transformers' own `MtpModel` and `MTPCandidateGenerator`; verification keeps the main model's greedy choice, so
every continuation must equal plain greedy decoding (`identical`).
"""

import contextlib

import torch

from workbench.errors import WorkbenchError
from workbench.model.mtp import (
    as_mtp_model_state,
    causal_lm,
    detached,
    mtp_layers,
    quiet_transformers,
)


@contextlib.contextmanager
def _drafts_from(layer):
    """Make `generate(use_mtp=True)` draft with this in-memory layer instead of reading the MTP weights from the
    model's files (which may be an older save, or an adapter's base)."""
    from transformers.modeling_layers import MtpModel

    original = MtpModel.__dict__["from_pretrained"]

    def from_memory(cls, main_model, device_map=None, **kwargs):
        from transformers.modeling_utils import local_torch_dtype

        reference = next(layer.parameters())
        with local_torch_dtype(reference.dtype, cls.__name__):  # built in the layer's dtype (bf16 on GPU), not fp32
            model = cls(main_model, 1)
        missing, unexpected = model.load_state_dict(as_mtp_model_state(layer), strict=False)
        shared = ("embed_tokens.", "shared_head.")  # tied to the main model's
        if unexpected or any(not k.startswith(shared) for k in missing):
            raise WorkbenchError(f"mtp: the MTP layer does not match transformers' MtpModel ({(missing + unexpected)[:3]})")
        return model.to(device=reference.device, dtype=reference.dtype).eval()

    MtpModel.from_pretrained = classmethod(from_memory)
    try:
        yield
    finally:
        MtpModel.from_pretrained = original


@contextlib.contextmanager
def _count_drafts(stats: dict):
    """Count MTP drafts proposed and accepted in `generate(use_mtp=True)` (transformers' MTPCandidateGenerator)."""
    from transformers.generation.candidate_generator import MTPCandidateGenerator

    get, update = MTPCandidateGenerator.get_candidates, MTPCandidateGenerator.update_candidate_strategy

    def get_candidates(self, input_ids, *args, **kwargs):
        ids, logits = get(self, input_ids, *args, **kwargs)
        stats["forwards"] += 1
        stats["proposed"] += ids.shape[1] - input_ids.shape[1]
        return ids, logits

    def update_candidate_strategy(self, input_ids, scores, num_matches):
        stats["accepted"] += int(num_matches)
        return update(self, input_ids, scores, num_matches)

    MTPCandidateGenerator.get_candidates = get_candidates
    MTPCandidateGenerator.update_candidate_strategy = update_candidate_strategy
    try:
        yield
    finally:
        MTPCandidateGenerator.get_candidates, MTPCandidateGenerator.update_candidate_strategy = get, update


@torch.no_grad()
def speculative_stats(model, tokenizer, prompts: list, max_new_tokens: int = 48) -> dict[str, float]:
    """Greedy speculative decoding with the model's MTP layer (`generate(use_mtp=True)`) on chat prompts, against
    plain greedy decoding: acceptance rate (accepted drafts / proposed), new tokens per main-model forward, and
    whether every continuation equals plain greedy's (it must: verification keeps the main model's choice).
    The drafts come from the MTP layer attached to `model` (in memory, as trained or merged), through transformers'
    own `MtpModel` and candidate generator."""
    lm = causal_lm(model)
    lm.eval()
    stats = {"forwards": 0, "proposed": 0, "accepted": 0}
    new_tokens = identical = 0
    layers = mtp_layers(lm)
    if not layers:
        raise WorkbenchError("mtp: this model has no multi-token-prediction layer to draft with")
    with detached(lm), _drafts_from(layers[0]):
        for prompt in prompts:
            new, same = _compare_generation(lm, tokenizer, prompt, max_new_tokens, stats)
            new_tokens, identical = new_tokens + new, identical + same
    return {"acceptance_rate": stats["accepted"] / max(stats["proposed"], 1),
            "tokens_per_forward": new_tokens / max(stats["forwards"], 1),
            "identical": identical / max(len(prompts), 1), "prompts": len(prompts)}


def _compare_generation(lm, tokenizer, prompt, max_new_tokens: int, stats: dict) -> tuple[int, int]:
    ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, return_tensors="pt",
                                        return_dict=True)["input_ids"].to(lm.device)
    # use_cache and position_ids: a trainer may have switched the config's cache off, or wrapped the forward so
    # that generate no longer sees it take positions, and the MTP drafter needs both
    settings = dict(max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id,
                    use_cache=True, attention_mask=torch.ones_like(ids),
                    position_ids=torch.arange(ids.shape[1], device=ids.device).unsqueeze(0))
    plain = lm.generate(ids, **settings)
    with _count_drafts(stats), quiet_transformers():
        fast = lm.generate(ids, use_mtp=True, **settings)
    return fast.shape[1] - ids.shape[1], int(torch.equal(plain, fast))
