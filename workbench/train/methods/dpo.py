"""Direct Preference Optimization with TRL's `DPOTrainer` on prompt/chosen/rejected rows.

With LoRA and `method.reference: adapter` the reference is the same model with its adapter disabled
(no second copy in memory); `reference: model` keeps a frozen full copy.
"""

from trl import DPOConfig, DPOTrainer

from workbench.train.methods.common import shared_args


def build_trainer(recipe, model, tokenizer, splits, output_dir: str, callbacks: list, reference=None, deepspeed=None):
    extra = {"loss_type": [recipe.method.loss_type]} if recipe.method.loss_type else {}
    args = DPOConfig(
        **shared_args(recipe, output_dir, has_eval=splits.eval is not None, deepspeed=deepspeed),
        beta=recipe.method.beta,
        max_length=recipe.train.max_length,
        dataset_num_proc=1,
        **extra,
    )
    return DPOTrainer(
        model=model,
        ref_model=reference,
        args=args,
        train_dataset=splits.train,
        eval_dataset=splits.eval,
        processing_class=tokenizer,
        callbacks=callbacks,
    )
