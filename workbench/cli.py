"""The `workbench` command.

    workbench finetune legal train.max_steps=5     # train a recipe (name under recipes/ or a path)
    workbench finetune legal --resume              # continue the newest unfinished run from its checkpoint
    workbench validate legal                       # check a recipe and its data without training

Errors in the user's input print one line naming the file and key (or row and field) and exit with 2.
The last line of `finetune` is `run_id=<id> output_dir=<path>` for scripts.
"""

import argparse
import os
import sys

from workbench.errors import WorkbenchError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="workbench", description="Fine-tune DeepSeek-V3-style MoE models.")
    sub = parser.add_subparsers(dest="command", required=True)
    finetune = sub.add_parser("finetune", help="train a recipe")
    finetune.add_argument("recipe", help="recipe name under recipes/ or a YAML path")
    finetune.add_argument("overrides", nargs="*", help="dotted.key=value overrides")
    finetune.add_argument("--resume", action="store_true", help="continue the newest unfinished run")
    validate = sub.add_parser("validate", help="check a recipe and its data without training")
    validate.add_argument("recipe")
    validate.add_argument("overrides", nargs="*")
    return parser


def cmd_finetune(args) -> int:
    from workbench.config import load_recipe
    from workbench.run import build

    recipe = load_recipe(args.recipe, args.overrides)
    run = build(recipe, resume=args.resume)
    try:
        run.train()
    finally:
        run.close()
    print(f"Finished {recipe.name} ({recipe.method.name}). Tracking store: {run.tracker.uri}")
    print(f"run_id={run.tracker.run_id} output_dir={run.output_dir}")
    return 0


def cmd_validate(args) -> int:
    from workbench.config import load_recipe
    from workbench.data import load_dataset

    recipe = load_recipe(args.recipe, args.overrides)
    splits = load_dataset(recipe.data, recipe.method.name)
    n_eval = len(splits.eval) if splits.eval is not None else 0
    print(f"{recipe.name}: ok ({recipe.method.name}, model {recipe.model.from_run and 'from run ' + recipe.model.from_run or recipe.model.name}, "
          f"{len(splits.train)} train / {n_eval} eval rows from {splits.source})")
    return 0


COMMANDS = {"finetune": cmd_finetune, "validate": cmd_validate}


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except WorkbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted: resume with --resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
