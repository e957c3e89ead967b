"""Distillation: a student learns the next-token distributions of a teacher (TRL's GKD trainer) on chat rows.

    method: {name: distill, beta: 0.0, on_policy_share: 0.0, temperature: 1.0}
    teacher: {from_run: legal}            # or name: a preset, a model directory, a hub id

Why GKD (`trl.experimental.gkd.GKDTrainer`) and not TRL's stable `DistillationTrainer`: the stable trainer is
on-policy only, so every step first samples a completion from the student and the recipe's own answers are
never used. GKD mixes the two: with probability `on_policy_share` a batch's completions are sampled from the
student, otherwise they are the rows' assistant turns (supervised KD on the same rows SFT trains on, which is
what a fair comparison with SFT needs, and what a barely trained student can learn from at all). It subclasses
`SFTTrainer`, so LoRA, checkpoints and the MoE plugin work as for SFT.

The loss is the generalised Jensen-Shannon divergence on each row's last assistant turn: `beta` 0 is forward
KL(teacher || student), 1 is reverse KL, 0.5 the symmetric JSD. `temperature` divides both models' logits in
the loss (the classic soft targets) and is the sampling temperature of on-policy completions. The teacher runs
in eval mode without gradients. Every evaluation also logs, per completion token (token-weighted, padding and
prompt excluded), the student's forward KL to the teacher at temperature 1 (`eval/kl_to_teacher`) and its
cross-entropy on the reference answers (`eval/nll`); `held_out()` computes the same two numbers for any student,
e.g. one trained with plain SFT.
"""

import os

import torch
import torch.nn.functional as F

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # GKD lives in trl.experimental in TRL 1.x
from trl.experimental.gkd import GKDConfig, GKDTrainer  # noqa: E402
from trl.experimental.utils import DataCollatorForChatML  # noqa: E402

from workbench.train.methods.common import shared_args  # noqa: E402


def token_divergence(student_logits, teacher_logits, labels) -> torch.Tensor:
    """[KL(teacher || student) summed, student NLL summed, tokens] over the positions `labels` marks (-100 = none).

    Logits are (B, T, V) for the whole sequence; position t predicts token t + 1."""
    student, teacher, targets = student_logits[:, :-1].float(), teacher_logits[:, :-1].float(), labels[:, 1:]
    mask = targets != -100
    student_logp = F.log_softmax(student[mask], dim=-1)
    teacher_logp = F.log_softmax(teacher[mask], dim=-1)
    kl = (teacher_logp.exp() * (teacher_logp - student_logp)).sum()
    nll = -student_logp.gather(-1, targets[mask].unsqueeze(-1)).sum()
    return torch.stack([kl.detach(), nll.detach(), mask.sum().to(kl.dtype)])


@torch.no_grad()
def held_out(student, teacher, rows, tokenizer, max_length: int = 512, batch_size: int = 8) -> dict[str, float]:
    """{kl_to_teacher, nll, tokens} of `student` on chat rows' last assistant turns, per token."""
    collate = DataCollatorForChatML(tokenizer=tokenizer, max_length=max_length)
    was_training = (student.training, teacher.training)
    student.eval(), teacher.eval()
    totals = torch.zeros(3)
    rows = list(rows)
    for start in range(0, len(rows), batch_size):
        batch = collate(rows[start:start + batch_size])
        kwargs = {"input_ids": batch["input_ids"].to(student.device), "attention_mask": batch["attention_mask"].to(student.device)}
        teacher_kwargs = {k: v.to(teacher.device) for k, v in kwargs.items()}
        totals += token_divergence(student(**kwargs).logits, teacher(**teacher_kwargs).logits.to(student.device),
                                   batch["labels"].to(student.device)).cpu()
    student.train(was_training[0]), teacher.train(was_training[1])
    tokens = max(totals[2].item(), 1.0)
    return {"kl_to_teacher": totals[0].item() / tokens, "nll": totals[1].item() / tokens, "tokens": int(totals[2].item())}


class WorkbenchDistillTrainer(GKDTrainer):
    """GKD with the temperature applied in the loss, and token-weighted held-out KL / NLL at every evaluation."""

    def __init__(self, *args, sft_weight: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.sft_weight = sft_weight
        self._eval_sums = torch.zeros(3)

    def training_step(self, model, inputs, num_items_in_batch=None):
        self._dataset_labels = inputs["labels"]  # GKD replaces them when the student samples this batch
        return super().training_step(model, inputs, num_items_in_batch)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        global_count = num_items_in_batch is not None  # the Trainer's count: over all micro-batches and ranks
        if model.training and inputs["labels"] is not getattr(self, "_dataset_labels", inputs["labels"]):
            # a sampled batch: the Trainer counted the rows' answer tokens, not these; a mean over this
            # micro-batch, shared between the accumulation steps like the Trainer's own count
            num_items_in_batch = (inputs["labels"][:, 1:] != -100).sum().clamp_min(1) * self.args.gradient_accumulation_steps
            global_count = False
        kwargs = {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"]}
        student_outputs = model(**kwargs)
        self.teacher_model.eval()
        with torch.no_grad():
            teacher_logits = self.teacher_model(**kwargs).logits
        labels = inputs["labels"][:, 1:]
        mask = labels != -100  # the divergence only where there is an answer token: no work on prompts and padding
        loss = self.generalized_jsd_loss(student_outputs.logits[:, :-1][mask], teacher_logits[:, :-1][mask],
                                         beta=self.beta, temperature=self.temperature, num_items_in_batch=num_items_in_batch)
        if self.temperature != 1.0:
            loss = loss * self.temperature ** 2  # Hinton et al.: keeps the gradient scale independent of the temperature
        if self.sft_weight:
            nll = F.cross_entropy(student_outputs.logits[:, :-1][mask].float(), labels[mask], reduction="sum")
            count = num_items_in_batch if num_items_in_batch is not None else mask.sum().clamp_min(1)
            loss = (1 - self.sft_weight) * loss + self.sft_weight * nll / count
        if global_count and self.args.average_tokens_across_devices and self.accelerator.num_processes > 1:
            loss = loss * self.accelerator.num_processes  # the count is global, DDP averages gradients (as Trainer does)
        if not model.training:
            self._eval_sums += token_divergence(student_outputs.logits, teacher_logits, inputs["labels"]).cpu()
        return (loss, student_outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if any(key.startswith("eval_") for key in logs):
            sums = self.accelerator.reduce(self._eval_sums.to(self.accelerator.device), reduction="sum").cpu()
            kl, nll, tokens = sums.tolist()
            if tokens > 0:
                logs.update({"eval_kl_to_teacher": kl / tokens, "eval_nll": nll / tokens})
            self._eval_sums.zero_()
        super().log(logs, start_time)


def build_trainer(recipe, model, tokenizer, splits, output_dir: str, callbacks: list, reference=None, deepspeed=None,
                  teacher=None):
    method = recipe.method
    args = GKDConfig(
        **shared_args(recipe, output_dir, has_eval=splits.eval is not None, deepspeed=deepspeed),
        max_length=recipe.train.max_length,
        beta=method.beta,
        lmbda=method.on_policy_share,
        temperature=method.temperature,
        max_new_tokens=method.max_new_tokens,
        disable_dropout=True,
        dataset_num_proc=1,
    )
    teacher.requires_grad_(False)
    return WorkbenchDistillTrainer(
        model=model,
        teacher_model=teacher.eval(),
        args=args,
        train_dataset=splits.train,
        eval_dataset=splits.eval,
        processing_class=tokenizer,
        callbacks=callbacks,
        sft_weight=method.sft_weight,
    )
