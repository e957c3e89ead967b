"""Kahneman-Tversky Optimization with TRL's `KTOTrainer` on unpaired prompt/completion/label rows."""

from trl import KTOConfig, KTOTrainer

from workbench.train.methods.common import shared_args


def build_trainer(recipe, model, tokenizer, splits, output_dir: str, callbacks: list, reference=None, deepspeed=None):
    extra = {"loss_type": recipe.method.loss_type} if recipe.method.loss_type else {}
    args = KTOConfig(
        **shared_args(recipe, output_dir, has_eval=splits.eval is not None, deepspeed=deepspeed),
        **extra,
        beta=recipe.method.beta,
        desirable_weight=recipe.method.desirable_weight,
        undesirable_weight=recipe.method.undesirable_weight,
        max_length=recipe.train.max_length,
        dataset_num_proc=1,
    )
    return KTOTrainer(
        model=model,
        ref_model=reference,
        args=args,
        train_dataset=splits.train,
        eval_dataset=splits.eval,
        processing_class=tokenizer,
        callbacks=callbacks,
    )
