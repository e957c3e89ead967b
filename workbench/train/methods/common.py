"""Trainer arguments every method shares, with device-aware defaults (fp32 and no checkpointing on CPU)."""

from workbench.model.device import precision_flags, uses_gpu


def shared_args(recipe, output_dir: str, has_eval: bool, deepspeed: dict | None = None) -> dict:
    """Keyword arguments for any TRL config class, from the recipe's `train:` section (and its resolved DeepSpeed config)."""
    train = recipe.train
    checkpointing = uses_gpu() if train.gradient_checkpointing is None else train.gradient_checkpointing
    return dict(
        output_dir=output_dir,
        max_steps=train.max_steps,
        num_train_epochs=train.epochs,
        per_device_train_batch_size=train.batch_size,
        per_device_eval_batch_size=train.batch_size,
        gradient_accumulation_steps=train.grad_accum,
        learning_rate=train.lr,
        lr_scheduler_type=train.lr_scheduler,
        warmup_steps=train.warmup_ratio,  # transformers 5: a value below 1 is a ratio of all steps
        weight_decay=train.weight_decay,
        max_grad_norm=train.max_grad_norm,
        gradient_checkpointing=checkpointing,
        use_cpu=not uses_gpu(),
        logging_steps=train.logging_steps,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=train.eval_steps,
        eval_on_start=has_eval,  # the first evaluation is the untrained baseline
        save_strategy="steps",
        save_steps=train.save_steps,
        save_total_limit=train.save_total_limit,
        seed=train.seed,
        data_seed=train.seed,
        report_to="none",  # the workbench's own tracker logs to MLflow
        disable_tqdm=False,
        dataloader_num_workers=0,
        deepspeed=deepspeed,
        # train.stages switches parameters off between steps: DDP must not wait for their gradients
        ddp_find_unused_parameters=True if train.stages else None,
        **precision_flags(train.precision),
    )


def reference_model(recipe, model):
    """A frozen copy when the recipe asks for a full reference model; None lets TRL use the adapter-disabled one."""
    if recipe.method.reference != "model":
        return None
    import copy

    reference = copy.deepcopy(model).eval()
    reference.requires_grad_(False)
    return reference
