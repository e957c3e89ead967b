"""Routing maths and the recorder: balance figures, divergence, V3's sequence loss, the bias update."""

import math

import pytest
import torch

from workbench.moe.control import select_experts
from workbench.moe.plugin import balance_bias_update
from workbench.moe.routing import RoutingRecorder, js_divergence, load_stats, sequence_balance_loss


def test_load_stats_on_known_loads():
    loads = torch.tensor([[10.0, 10, 10, 10], [40, 0, 0, 0], [20, 15, 4.5, 0.5]])
    stats = load_stats(loads)
    assert stats["max_over_mean"].tolist() == pytest.approx([1.0, 4.0, 2.0])
    assert stats["cv"][0] == 0 and stats["cv"][1] == pytest.approx(math.sqrt(3))
    assert stats["starved_share"].tolist() == pytest.approx([0.0, 0.75, 0.25])  # 0.5 < 0.1 * 10


def test_js_divergence_bounds():
    p = torch.tensor([[1.0, 1, 1, 1], [1, 0, 0, 0]])
    q = torch.tensor([[2.0, 2, 2, 2], [0, 1, 0, 0]])
    assert js_divergence(p, q).tolist() == pytest.approx([0.0, math.log(2)])


def test_sequence_balance_loss_is_one_when_perfectly_balanced():
    # 4 tokens, 4 experts, top-1, each token picks a different expert with uniform affinities: f_i = 1, P_i = 1/4
    logits = torch.zeros(4, 4)
    one_sequence = torch.zeros(4, dtype=torch.long)
    chosen = torch.tensor([[0], [1], [2], [3]])
    assert sequence_balance_loss(logits, chosen, one_sequence, top_k=1).item() == pytest.approx(1.0)
    collapsed = torch.zeros(4, 1, dtype=torch.long)  # every token on expert 0: f_0 = 4
    assert sequence_balance_loss(logits, collapsed, one_sequence, top_k=1).item() == pytest.approx(1.0)
    peaked = torch.tensor([[5.0, -5, -5, -5]] * 4)  # affinity concentrated where the tokens go
    assert sequence_balance_loss(peaked, collapsed, one_sequence, top_k=1).item() > 3


def test_sequence_balance_loss_averages_sequences_over_their_real_tokens():
    # sequence A: 4 balanced tokens (loss 1); sequence B: 2 real tokens on expert 0 with peaked affinity,
    # then 2 padding positions (id 8 = tokens: the dropped slot) that route elsewhere
    peaked = [5.0, -5, -5, -5]
    logits = torch.tensor([[0.0] * 4] * 4 + [peaked] * 2 + [[0.0] * 4] * 2)
    chosen = torch.tensor([[0], [1], [2], [3], [0], [0], [1], [2]])
    ids = torch.tensor([0, 0, 0, 0, 1, 1, 8, 8])
    s = [1 / (1 + math.exp(-x)) for x in peaked]
    share_0 = s[0] / sum(s)  # P_0 of B over its 2 real tokens
    f_0 = 4 / (1 * 2) * 2  # E / (K T) * count, T = 2 real tokens, not 4 positions
    expected = (1.0 + f_0 * share_0) / 2  # 2.4604
    assert sequence_balance_loss(logits, chosen, ids, top_k=1).item() == pytest.approx(expected, rel=1e-6)
    as_rows = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])  # padding counted as part of B: what V3's loss must not do
    assert sequence_balance_loss(logits, chosen, as_rows, top_k=1).item() < expected - 0.5


def test_bias_update_moves_toward_balance():
    class Router(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("e_score_correction_bias", torch.zeros(4))

    router = Router()
    balance_bias_update([(1, router)], torch.tensor([[30.0, 8, 2, 0]]), gamma=0.01)
    assert router.e_score_correction_bias.tolist() == pytest.approx([-0.01, 0.01, 0.01, 0.01])
    assert router.e_score_correction_bias.dtype == torch.float32


def test_recorder_counts_training_forwards_only(tiny):
    model = tiny[0]
    recorder = RoutingRecorder(model)
    ids = torch.randint(0, 8000, (2, 16))
    try:
        model.train()
        model(input_ids=ids)
        with torch.no_grad():  # like DPO's reference pass
            model(input_ids=ids)
        model.eval()
        with torch.no_grad():
            model(input_ids=ids)
        train, evaluation = recorder.take("train"), recorder.take("eval")
        top_k = model.config.num_experts_per_tok
        assert train.loads.sum(-1).tolist() == [32 * top_k] * 3  # 2 x 16 tokens, once per MoE layer
        assert evaluation.loads.sum(-1).tolist() == [32 * top_k] * 3
        assert recorder.take("train").loads.sum() == 0  # taking resets
    finally:
        recorder.remove()
        model.eval()


def test_esft_selection_takes_the_fewest_experts_reaching_top_p():
    scores = torch.tensor([[0.5, 0.3, 0.1, 0.1], [0.25, 0.25, 0.25, 0.25]])
    assert select_experts(scores, 0.5) == [[0], [0, 1]]
    assert select_experts(scores, 0.8) == [[0, 1], [0, 1, 2, 3]]
