"""Odds-Ratio Preference Optimization (no reference model) with TRL's experimental `ORPOTrainer`."""

import os

from workbench.train.methods.common import shared_args


def build_trainer(recipe, model, tokenizer, splits, output_dir: str, callbacks: list, reference=None, deepspeed=None):
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # ORPO lives in trl.experimental in TRL 1.x
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    args = ORPOConfig(
        **shared_args(recipe, output_dir, has_eval=splits.eval is not None, deepspeed=deepspeed),
        beta=recipe.method.beta,
        max_length=recipe.train.max_length,
        dataset_num_proc=1,
    )
    return ORPOTrainer(
        model=model,
        args=args,
        train_dataset=splits.train,
        eval_dataset=splits.eval,
        processing_class=tokenizer,
        callbacks=callbacks,
    )
