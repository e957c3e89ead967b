"""Launched by torchrun from the expert-parallel tests: train a recipe and stop every rank at the end of a step,
as a killed job would (`python killed_run.py STEP RECIPE [key=value ...]`)."""

import sys

from transformers import TrainerCallback

from workbench.recipe.load import load_recipe
from workbench.train.build import build


class Kill(TrainerCallback):
    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt


def main() -> int:
    step, name, overrides = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
    run = build(load_recipe(name, overrides))
    run.trainer.add_callback(Kill(step))
    try:
        run.train()
    except KeyboardInterrupt:
        run.close()
        return 0
    run.close()
    return 1  # it was meant to stop


if __name__ == "__main__":
    sys.exit(main())
