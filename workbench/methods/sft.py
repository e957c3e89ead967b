"""Supervised fine-tuning (full or LoRA) with TRL's `SFTTrainer` on chat `messages` rows."""

from trl import SFTConfig, SFTTrainer

from workbench.methods.common import shared_args


def build_trainer(recipe, model, tokenizer, splits, output_dir: str, callbacks: list, reference=None, deepspeed=None):
    args = SFTConfig(
        **shared_args(recipe, output_dir, has_eval=splits.eval is not None, deepspeed=deepspeed),
        max_length=recipe.train.max_length,
        packing=recipe.train.packing,
        assistant_only_loss=recipe.train.assistant_only_loss,
        # Length-grouped batches: rows of similar length share a batch, so little compute goes to padding.
        train_sampling_strategy="group_by_length" if recipe.train.group_by_length else "random",
        dataset_num_proc=1,
    )
    return SFTTrainer(
        model=model,
        args=args,
        train_dataset=splits.train,
        eval_dataset=splits.eval,
        processing_class=tokenizer,
        callbacks=callbacks,
    )
