"""The distillation loss and its held-out figures, against the formulas written out here."""

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from workbench.train.methods.distill import WorkbenchDistillTrainer, token_divergence

V = 11


class Fixed(torch.nn.Module):
    def __init__(self, logits):
        super().__init__()
        self.logits = logits

    def forward(self, input_ids, attention_mask):
        return SimpleNamespace(logits=self.logits)


def _batch(seed=0):
    gen = torch.Generator().manual_seed(seed)
    student, teacher = torch.randn(2, 6, V, generator=gen), torch.randn(2, 6, V, generator=gen) * 2
    labels = torch.randint(0, V, (2, 6), generator=gen)
    labels[0, :3] = -100  # a prompt
    labels[1, :1] = -100  # left padding
    return student, teacher, labels


def _by_hand(student, teacher, labels, temperature=1.0):
    """Forward KL(teacher || student) and NLL per marked position, one position at a time."""
    kls, nlls = [], []
    for b in range(labels.shape[0]):
        for t in range(labels.shape[1] - 1):
            if labels[b, t + 1] == -100:
                continue
            p = torch.softmax(teacher[b, t] / temperature, -1)
            q = torch.softmax(student[b, t] / temperature, -1)
            kls.append((p * (p.log() - q.log())).sum())
            nlls.append(-torch.log_softmax(student[b, t], -1)[labels[b, t + 1]])
    return torch.stack(kls).mean(), torch.stack(nlls).mean(), len(kls)


def _loss(student, teacher, labels, beta=0.0, temperature=1.0, sft_weight=0.0, training=True):
    model = Fixed(student).train(training)
    fake = SimpleNamespace(teacher_model=Fixed(teacher), beta=beta, temperature=temperature, sft_weight=sft_weight,
                           generalized_jsd_loss=WorkbenchDistillTrainer.generalized_jsd_loss, _eval_sums=torch.zeros(3))
    inputs = {"input_ids": torch.zeros_like(labels), "attention_mask": torch.ones_like(labels), "labels": labels}
    return WorkbenchDistillTrainer.compute_loss(fake, model, inputs), fake


def test_beta_0_is_the_forward_kl_per_completion_token():
    student, teacher, labels = _batch()
    kl, _, _ = _by_hand(student, teacher, labels)
    loss, _ = _loss(student, teacher, labels)
    assert loss.item() == pytest.approx(kl.item(), rel=1e-5)


def test_the_temperature_softens_both_sides_and_keeps_the_gradient_scale():
    student, teacher, labels = _batch(1)
    kl, _, _ = _by_hand(student, teacher, labels, temperature=2.0)
    loss, _ = _loss(student, teacher, labels, temperature=2.0)
    assert loss.item() == pytest.approx(4 * kl.item(), rel=1e-5)


def test_sft_weight_mixes_in_the_cross_entropy_on_the_answers():
    student, teacher, labels = _batch(2)
    kl, nll, _ = _by_hand(student, teacher, labels)
    only_answers, _ = _loss(student, teacher, labels, sft_weight=1.0)
    assert only_answers.item() == pytest.approx(F.cross_entropy(student[:, :-1].flatten(0, 1), labels[:, 1:].flatten()).item(),
                                                rel=1e-5)
    half, _ = _loss(student, teacher, labels, sft_weight=0.5)
    assert half.item() == pytest.approx(0.5 * kl.item() + 0.5 * nll.item(), rel=1e-5)


def test_evaluation_sums_kl_and_nll_over_real_completion_tokens():
    student, teacher, labels = _batch(3)
    kl, nll, count = _by_hand(student, teacher, labels)
    sums = token_divergence(student, teacher, labels)
    assert sums[2].item() == count == 3 + 5  # row 0: 3 answer tokens after its prompt, row 1: 5 after its padding
    assert (sums[0] / sums[2]).item() == pytest.approx(kl.item(), rel=1e-5)
    assert (sums[1] / sums[2]).item() == pytest.approx(nll.item(), rel=1e-5)
    _, fake = _loss(student, teacher, labels, training=False)
    assert torch.allclose(fake._eval_sums, sums)
    _, fake = _loss(student, teacher, labels, training=True)
    assert fake._eval_sums.sum() == 0  # training batches are not held-out figures


def _divergence_by_hand(student, teacher, labels, beta):
    """Per marked position, written out from the definitions: beta 1 is the reverse KL(student || teacher); in
    between, GKD's generalised JSD beta KL(P || M) + (1 - beta) KL(Q || M) with M = beta P + (1 - beta) Q
    (P the teacher, Q the student; Agarwal et al. 2024, eq. 2), averaged over the marked positions."""
    values = []
    for b in range(labels.shape[0]):
        for t in range(labels.shape[1] - 1):
            if labels[b, t + 1] == -100:
                continue
            p, q = torch.softmax(teacher[b, t].double(), -1), torch.softmax(student[b, t].double(), -1)
            if beta == 1:
                values.append((q * (q.log() - p.log())).sum())
            else:
                m = beta * p + (1 - beta) * q
                values.append(beta * (p * (p.log() - m.log())).sum() + (1 - beta) * (q * (q.log() - m.log())).sum())
    return torch.stack(values).mean()


@pytest.mark.parametrize("beta", [0.5, 1.0, 0.25])
def test_beta_between_forward_and_reverse_kl_is_the_generalised_jsd(beta):
    student, teacher, labels = _batch(4)
    loss, _ = _loss(student, teacher, labels, beta=beta)
    assert loss.item() == pytest.approx(_divergence_by_hand(student, teacher, labels, beta).item(), rel=1e-5)
    forward, _ = _loss(student, teacher, labels, beta=0.0)
    assert abs(loss.item() - forward.item()) > 1e-2  # a loss that ignored beta would be the forward KL
