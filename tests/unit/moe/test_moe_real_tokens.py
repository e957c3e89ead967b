"""Routing figures count real tokens only: padding, its length and its side change nothing.

    HF_HUB_OFFLINE=1 .venv/bin/python -m pytest -q tests/unit/moe/test_moe_real_tokens.py

Each test routes the same rows three ways (one at a time unpadded, right-padded, left-padded to another
length) on the tiny model and asserts the same loads, gate sums, entropy, sequence-wise loss, ESFT
selection and aux-free bias step. Counting every position, as the recorder once did, fails each of them:
the padded batches route 2-4x as many positions as the rows hold.
"""

import copy
from types import SimpleNamespace

import pytest
import torch

from workbench.moe.control import esft_scores, esft_select, profile_routing, select_experts
from workbench.moe.plugin import MoeCallback
from workbench.moe.routing import RoutingRecorder, find_routers, real_token_mask

PAD = 2  # the tiny model's pad_token_id
LENGTHS = (10, 7, 3)


def _rows():
    generator = torch.Generator().manual_seed(0)
    return [torch.randint(3, 8000, (n,), generator=generator) for n in LENGTHS]


def _padded(rows, length: int, side: str):
    """(input_ids, attention_mask) of shape (rows, length), padded on `side`."""
    ids = torch.full((len(rows), length), PAD)
    mask = torch.zeros(len(rows), length, dtype=torch.long)
    for i, row in enumerate(rows):
        where = slice(0, len(row)) if side == "right" else slice(length - len(row), length)
        ids[i, where], mask[i, where] = row, 1
    return ids, mask


def _three_ways(model, rows, **extra):
    """A forward per batching: rows one by one, right-padded to 16, left-padded to 12 (with real positions)."""
    yield "one at a time", [dict(input_ids=row[None], **extra) for row in rows]
    ids, mask = _padded(rows, 16, "right")
    yield "right-padded", [dict(input_ids=ids, attention_mask=mask, **extra)]
    ids, mask = _padded(rows, 12, "left")
    positions = (mask.cumsum(-1) - 1).clamp_min(0)
    yield "left-padded", [dict(input_ids=ids, attention_mask=mask, position_ids=positions, **extra)]


def test_real_token_mask_reads_2d_cached_and_4d_masks():
    mask = torch.tensor([[1, 1, 1, 0], [0, 1, 1, 1]])
    real = mask.bool()
    assert torch.equal(real_token_mask(mask, 2, 4), real)
    assert torch.equal(real_token_mask(mask, 2, 1), real[:, -1:])  # a decode step: the newest column
    causal = torch.ones(4, 4, dtype=torch.bool).tril()
    allowed = causal[None, None] & real[:, None, None, :]  # (batch, 1, query, key)
    assert torch.equal(real_token_mask(allowed, 2, 4), real)
    additive = torch.zeros(2, 1, 4, 4).masked_fill(~allowed, torch.finfo(torch.float32).min)
    assert torch.equal(real_token_mask(additive, 2, 4), real)
    assert real_token_mask(None, 2, 4) is None
    assert real_token_mask(mask, 3, 4) is None  # does not fit the batch: unreadable, not guessed


def test_padding_changes_no_eval_routing_figure(tiny):
    model, rows = tiny[0], _rows()
    recorder = RoutingRecorder(model)
    buckets = {}
    try:
        model.eval()
        with torch.no_grad():
            for name, forwards in _three_ways(model, rows):
                for inputs in forwards:
                    model(**inputs)
                buckets[name] = recorder.take("eval")
    finally:
        recorder.remove()
    top_k = model.config.num_experts_per_tok
    base = buckets.pop("one at a time")
    assert base.tokens.tolist() == [sum(LENGTHS)] * 3  # 20 real tokens per MoE layer
    assert base.loads.sum(-1).tolist() == [sum(LENGTHS) * top_k] * 3
    for name, bucket in buckets.items():
        assert torch.equal(bucket.loads, base.loads), name
        assert torch.equal(bucket.tokens, base.tokens), name
        torch.testing.assert_close(bucket.gate_sums, base.gate_sums, rtol=1e-5, atol=1e-5, msg=name)
        torch.testing.assert_close(bucket.entropy, base.entropy, rtol=1e-6, atol=1e-6, msg=name)


def _train_forwards(model, recorder, forwards) -> torch.Tensor:
    """Per-layer seq_aux loss of a batching (the mean over its sequences), from training forwards."""
    losses = []
    for inputs in forwards:
        recorder.seq_aux_terms.clear()
        model(**inputs)
        losses.append(torch.stack(recorder.seq_aux_losses()).detach())
    recorder.seq_aux_terms.clear()
    weights = torch.tensor([inputs["input_ids"].shape[0] for inputs in forwards], dtype=torch.float32)
    return (torch.stack(losses) * weights[:, None]).sum(0) / weights.sum()  # mean over all sequences


def test_padding_and_packing_change_no_training_load_or_sequence_loss(tiny):
    model, rows = tiny[0], _rows()
    recorder = RoutingRecorder(model, seq_aux_alpha=1.0)
    losses, loads = {}, {}
    try:
        model.train()
        ways = list(_three_ways(model, rows, use_cache=False))
        # padding-free, as TRL packs: one row, no mask, positions restarting at each sequence
        packed = dict(input_ids=torch.cat(rows)[None], position_ids=torch.cat([torch.arange(n) for n in LENGTHS])[None],
                      use_cache=False)
        for name, forwards in ways + [("packed", [packed])]:
            losses[name] = _train_forwards(model, recorder, forwards)
            loads[name] = recorder.take("train").loads
    finally:
        recorder.remove()
        model.eval()
    base_loss, base_loads = losses.pop("one at a time"), loads.pop("one at a time")
    assert base_loads.sum(-1).tolist() == [sum(LENGTHS) * model.config.num_experts_per_tok] * 3
    assert (base_loss > 1).all()  # V3's loss is 1 at perfect balance; a real router sits above it
    for name, loss in losses.items():
        torch.testing.assert_close(loss, base_loss, rtol=1e-5, atol=1e-6, msg=name)
        assert torch.equal(loads[name], base_loads), name


def test_esft_profile_and_selection_ignore_batching_and_padding_side(tiny):
    model, tokenizer = tiny
    words = "court contract statute appeal tenant clause liability damages notice breach".split()
    texts = [" ".join(words[: 2 + (7 * i) % 9] * (1 + i % 3)) for i in range(9)]  # 2 to 30 words
    lengths = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
    assert max(lengths) > 2 * min(lengths)  # batches of 4 carry a lot of padding
    top_k = model.config.num_experts_per_tok

    def selections(bucket):
        return {scoring: select_experts(esft_scores(bucket, top_k, scoring), 0.5) for scoring in ("token", "gate")}

    side = tokenizer.padding_side
    try:
        base, _ = profile_routing(model, tokenizer, texts, batch_size=1)
        for padding_side in ("right", "left"):
            tokenizer.padding_side = padding_side
            bucket, _ = profile_routing(model, tokenizer, texts, batch_size=4)
            assert torch.equal(bucket.tokens, base.tokens) and bucket.tokens[0] == sum(lengths), padding_side
            assert torch.equal(bucket.loads, base.loads), padding_side
            torch.testing.assert_close(bucket.gate_sums, base.gate_sums, rtol=1e-5, atol=1e-5)
            assert selections(bucket) == selections(base), padding_side
        chosen = esft_select(model, tokenizer, texts, SimpleNamespace(esft="token", esft_top_p=0.5), batch_size=4)
    finally:
        tokenizer.padding_side = side
    assert list(chosen.values()) == selections(base)["token"]  # the recipe path: left-padded batches of 4
    assert all(chosen.values())


def test_aux_free_step_from_a_padded_batch_equals_the_unpadded_rows(tiny, tmp_path):
    model, rows = copy.deepcopy(tiny[0]), _rows()  # the bias moves: keep the shared model untouched
    routers = find_routers(model)
    cfg = SimpleNamespace(balance="aux_free", bias_update_speed=0.01, telemetry=True, telemetry_every=1000)
    state = SimpleNamespace(global_step=1, is_world_process_zero=True)
    recorder = RoutingRecorder(model)
    callback = MoeCallback(recorder, cfg, tracker=None, output_dir=tmp_path)
    biases = {}
    try:
        model.train()
        for name, forwards in _three_ways(model, rows, use_cache=False):
            for _, router in routers:
                router.e_score_correction_bias.zero_()
            for inputs in forwards:  # several forwards, one optimizer step: like gradient accumulation
                model(**inputs)
            callback.on_step_end(None, state, None)
            biases[name] = torch.stack([router.e_score_correction_bias.clone() for _, router in routers])
    finally:
        recorder.remove()
    base = biases.pop("one at a time")
    assert base.abs().max() == pytest.approx(0.01)  # one step of gamma, up or down
    for name, bias in biases.items():
        assert torch.equal(bias, base), name
    assert [steps.sum() for steps in callback.history] == [sum(LENGTHS) * 2 * 3] * 3  # real tokens x top-2 x layers


def test_generation_counts_prompts_and_new_tokens_not_padding(tiny):
    model, rows = tiny[0], _rows()
    ids, mask = _padded(rows, 12, "left")
    recorder = RoutingRecorder(model)
    try:
        model.eval()
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=3, min_new_tokens=3,
                                 do_sample=False, pad_token_id=PAD)
        bucket = recorder.take("eval")
    finally:
        recorder.remove()
    assert out.shape == (3, 15)
    # the prefill routes the prompts' real tokens; two decode steps route one new token per row each
    assert bucket.tokens.tolist() == [sum(LENGTHS) + 2 * len(rows)] * 3
