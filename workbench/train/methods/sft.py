"""Supervised fine-tuning (full or LoRA) with TRL's `SFTTrainer` on chat `messages` rows.

Assistant-only loss needs a chat template that marks assistant turns with `{% generation %}` (the
embedded tokenizer's does; most published ones, DeepSeek's and Moonlight's included, do not). With such
a template each conversation is split into a prompt (everything before its last assistant turn) and a
completion (that turn), and TRL's completion-only loss trains on the completion: the same tokens for
single-turn data, the last reply for multi-turn data (earlier replies become context).
"""

import re

import torch
from transformers.trainer_pt_utils import LengthGroupedSampler, get_length_grouped_indices
from trl import SFTConfig, SFTTrainer

from workbench.train.methods.common import shared_args
from workbench.train.methods.lm_head import use_compact_lm_head

GENERATION_TAG = re.compile(r"\{%-?\s*generation\s*-?%\}")


def marks_assistant_turns(tokenizer) -> bool:
    return bool(GENERATION_TAG.search(tokenizer.chat_template or ""))


def as_prompt_completion(dataset):
    """messages -> prompt (turns before the last assistant turn) + completion (that turn)."""
    def split(row):
        messages = row["messages"]
        last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
        return {"prompt": messages[:last], "completion": [messages[last]]}

    return dataset.map(split, remove_columns=dataset.column_names)


class LengthGroupedBatches(LengthGroupedSampler):
    """transformers' length-grouped batches, served in a random order instead of longest to shortest.

    transformers sorts each mega-batch (up to 50 batches) from its longest rows to its shortest, so within a
    mega-batch the model sees ever shorter rows: a curriculum by length that a run shorter than an epoch never
    finishes (on the legal recipe, then with a cosine schedule, 40 steps ended on the shortest rows, 0.11 higher
    in held-out loss than random batches over 3 seeds). Here the batches are the same, the one holding the
    longest row still comes first (an out-of-memory error shows at step 1), and the rest follow in a random
    order drawn from the same generator.
    """

    def __iter__(self):
        order = get_length_grouped_indices(self.lengths, self.batch_size, generator=self.generator)
        size, full = self.batch_size, len(order) // self.batch_size
        batches = [order[i * size:(i + 1) * size] for i in range(full)]
        if full > 2:
            shuffled = torch.randperm(full - 1, generator=self.generator).tolist()
            batches = batches[:1] + [batches[1 + i] for i in shuffled]
        return iter([i for batch in batches for i in batch] + order[full * size:])  # a short last batch stays last


class WorkbenchSFTTrainer(SFTTrainer):
    """TRL's SFT trainer with length-grouped batches in a random order and, with `mtp_weight`, DeepSeek-V3's
    multi-token-prediction loss on the same answer tokens (workbench.train.mtp)."""

    mtp_weight: float = 0.0
    _mtp_capture = None

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        result = super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)
        if not self.mtp_weight or self._mtp_capture is None:
            return result
        from workbench.train.mtp import mtp_loss

        loss, outputs = result if return_outputs else (result, None)
        total, count, correct = mtp_loss(model, self._mtp_capture.take(), inputs["input_ids"], inputs["labels"],
                                         inputs.get("attention_mask"), inputs.get("position_ids"))
        mode = "train" if self.model.training else "eval"
        sums = self.accelerator.gather_for_metrics(torch.stack([total.detach().float(), count.float(),
                                                                correct.float()]).reshape(1, 3)).sum(0)
        if sums[1] > 0:
            self._metrics[mode]["mtp/loss"].append((sums[0] / sums[1]).item())
            self._metrics[mode]["mtp/accuracy"].append((sums[2] / sums[1]).item())
        if mode == "train":  # eval/loss stays the main model's own, comparable with runs without MTP
            # normalised like the main loss: per answer token of the whole (accumulated, all-rank) batch
            denominator = count if num_items_in_batch is None else num_items_in_batch
            term = total / torch.as_tensor(denominator).clamp(min=1)  # a batch without answer tokens: 0, not NaN
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                term = term * self.accelerator.num_processes
            loss = loss + self.mtp_weight * term
        return (loss, outputs) if return_outputs else loss

    def _get_train_sampler(self, train_dataset=None):
        sampler = super()._get_train_sampler(train_dataset)
        if type(sampler) is LengthGroupedSampler:
            return LengthGroupedBatches(sampler.batch_size, lengths=sampler.lengths, generator=sampler.generator)
        return sampler


def build_trainer(recipe, model, tokenizer, splits, output_dir: str, callbacks: list, reference=None, deepspeed=None):
    train, held_out = splits.train, splits.eval
    assistant_only, completion_only = recipe.train.assistant_only_loss, None
    if assistant_only and not marks_assistant_turns(tokenizer):
        print("notice: train.assistant_only_loss: this model's chat template does not mark assistant turns "
              "({% generation %}); training on each conversation's last assistant turn as a completion instead")
        train = as_prompt_completion(train)
        held_out = as_prompt_completion(held_out) if held_out is not None else None
        assistant_only, completion_only = False, True
    args = SFTConfig(
        **shared_args(recipe, output_dir, has_eval=held_out is not None, deepspeed=deepspeed),
        max_length=recipe.train.max_length,
        packing=recipe.train.packing,
        assistant_only_loss=assistant_only,
        completion_only_loss=completion_only,
        # Length-grouped batches: rows of similar length share a batch, so little compute goes to padding
        # (served in a random order: LengthGroupedBatches).
        train_sampling_strategy="group_by_length" if recipe.train.group_by_length else "random",
        dataset_num_proc=1,
    )
    trainer = WorkbenchSFTTrainer(
        model=model,
        args=args,
        train_dataset=train,
        eval_dataset=held_out,
        processing_class=tokenizer,
        callbacks=callbacks,
    )
    # On CPU, project only the positions that carry a loss (TRL's fallback projects every one; see lm_head.py)
    use_compact_lm_head(trainer.model)
    if recipe.mtp.enabled:
        from workbench.train.mtp import HiddenCapture
        from workbench.model.mtp import mtp_layers

        if mtp_layers(trainer.model):
            trainer.mtp_weight = recipe.mtp.weight
            trainer._mtp_capture = HiddenCapture(trainer.model)
    return trainer
