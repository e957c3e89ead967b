"""Alignment methods: sibling modules with the same `build_trainer(...)` getter, each wrapping one TRL trainer.

    from workbench.train.methods import get_method
    trainer = get_method("sft").build_trainer(recipe, model, tokenizer, splits, output_dir, callbacks)
"""

import importlib


def get_method(name: str):
    return importlib.import_module(f"workbench.train.methods.{name}")
