"""The `workbench` command.

    workbench finetune legal train.max_steps=5     # train a recipe (name under recipes/ or a path)
    workbench finetune legal --resume              # continue the newest unfinished run from its checkpoint
    workbench validate legal                       # check a recipe and its data without training
    workbench export legal                         # merged, verified model dir from the newest legal run
    workbench eval deepseek-v3-tiny --suite smoke  # score a run id, model dir, hub id or preset (evals/suites.yaml)
    workbench schedule --suite legal --every 600   # evaluate finished runs lacking the suite (--cron EXPR, --once)
    workbench estimate deepseek-v3-legal --gpus 8 --nodes 4   # memory per GPU/host for the recipe's ZeRO set-up
    workbench generate legal "What is a tort?"     # the newest legal run's answer, streamed (--temperature, --mtp)
    workbench chat deepseek-v3-tiny                # a conversation at a '> ' prompt (/reset, /exit or Ctrl-D)

Errors in the user's input print one line naming the file and key (or row and field) and exit with 2.
The last line of `finetune` is `run_id=<id> output_dir=<path>` for scripts.
"""

import argparse
import os
import sys

from workbench.errors import WorkbenchError


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (`error: ...`, exit 2) like every other bad input."""

    def error(self, message):
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="workbench", description="Fine-tune DeepSeek-V3-style MoE models.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    finetune = sub.add_parser("finetune", help="train a recipe")
    finetune.add_argument("recipe", help="recipe name under recipes/ or a YAML path")
    finetune.add_argument("overrides", nargs="*", help="dotted.key=value overrides")
    finetune.add_argument("--resume", action="store_true", help="continue the newest unfinished run")
    finetune.add_argument("-v", "--verbose", action="store_true", help="show the libraries' warnings and logs too")
    validate = sub.add_parser("validate", help="check a recipe and its data without training")
    validate.add_argument("recipe")
    validate.add_argument("overrides", nargs="*")
    export = sub.add_parser("export", help="merge LoRA / apply an expert patch into a plain model dir, verified")
    export.add_argument("run", help="MLflow run id, experiment name (newest finished run) or a final/ directory")
    export.add_argument("--out", help="output directory (default: <run output>/export)")
    export.add_argument("--tolerance", type=float, default=1e-4, help="largest allowed logit difference")
    patch = sub.add_parser("apply-patch", help="apply an ESFT expert patch to its base model")
    patch.add_argument("patch_dir", help="an ESFT run's final/ directory")
    patch.add_argument("--out", required=True)
    evaluate = sub.add_parser("eval", help="score a model on an eval suite (evals/suites.yaml)")
    evaluate.add_argument("target", help="MLflow run id (scores are logged onto it), model directory, hub id or preset")
    evaluate.add_argument("--suite", default="standard", help="suite name in evals/suites.yaml")
    evaluate.add_argument("--limit", type=int, help="rows per task (overrides the suite's limits)")
    evaluate.add_argument("--source", default="local", help="local (offline data, default) or hub")
    evaluate.add_argument("--batch-size", type=int, default=8)
    evaluate.add_argument("-v", "--verbose", action="store_true", help="show the libraries' warnings and logs too")
    evaluate.add_argument("--unsafe-weak-sandbox", action="store_true",
                          help="run code tasks even under a sandbox below the minimum isolation (unsafe)")
    schedule = sub.add_parser("schedule", help="evaluate finished runs that lack a suite's results, on a schedule")
    schedule.add_argument("--suite", required=True, help="suite name in evals/suites.yaml")
    when = schedule.add_mutually_exclusive_group()  # one of them, unless --reset alone
    when.add_argument("--every", type=float, metavar="SECONDS", help="a tick every SECONDS")
    when.add_argument("--cron", metavar="EXPR", help="ticks on a cron expression, e.g. '*/30 * * * *'")
    when.add_argument("--once", action="store_true", help="one tick now, then exit (for cron / Kubernetes)")
    schedule.add_argument("--limit", type=int, help="rows per task (overrides the suite's limits)")
    schedule.add_argument("--experiment", action="append", default=[], help="only runs of this experiment (repeatable)")
    schedule.add_argument("--max-runs", type=int, help="at most N evaluations per tick")
    schedule.add_argument("--lease", type=float, default=900, metavar="SECONDS", help="claim lease, renewed while evaluating")
    schedule.add_argument("--max-attempts", type=int, default=3, help="give up on a run after N failed attempts")
    schedule.add_argument("--claims-db", help="claims database: SQLAlchemy URL or sqlite path "
                          "(default: $WORKBENCH_CLAIMS_DB, else next to a sqlite tracking store)")
    schedule.add_argument("--batch-size", type=int, default=8)
    schedule.add_argument("--reset", metavar="RUN_ID|all", help="put a given-up run (id or its first 8 digits; or "
                          "all of them) back in the queue; alone it then exits, with --once/--every/--cron it ticks on")
    schedule.add_argument("--store-retry", type=float, default=300, metavar="SECONDS",
                          help="ride out a tracking-store / claims-database outage this long before a tick stops")
    schedule.add_argument("--unsafe-weak-sandbox", action="store_true",
                          help="run code tasks even under a sandbox below the minimum isolation (unsafe)")
    schedule.add_argument("-v", "--verbose", action="store_true",
                          help="show the libraries' warnings and progress too (always in runs/schedule/<suite>.log)")
    runs = sub.add_parser("runs", help="recent runs as a table (name, status, method, key metrics, id)")
    runs.add_argument("recipe", nargs="?", help="only this recipe's runs (its MLflow experiment)")
    runs.add_argument("--limit", type=int, default=20, help="at most N runs, newest first")
    show = sub.add_parser("show", help="one run's summary: what it trained, its scores, where its files are")
    show.add_argument("run", help="MLflow run id (or its first 8 characters), or an experiment name for its newest run")
    generate = sub.add_parser("generate", help="stream a model's answer to one prompt (its chat template)")
    generate.add_argument("target", help=TALK_TARGET)
    generate.add_argument("prompt", help="what the user says (quoted)")
    chat = sub.add_parser("chat", help="talk with a model at a '> ' prompt (/reset, /exit or Ctrl-D)")
    chat.add_argument("target", help=TALK_TARGET)
    for talk in (generate, chat):
        _sampling_flags(talk)
    estimate = sub.add_parser("estimate", help="memory per GPU and host for a recipe (no weights needed)")
    estimate.add_argument("recipe")
    estimate.add_argument("overrides", nargs="*")
    estimate.add_argument("--gpus", type=int, default=1, help="GPUs per node")
    estimate.add_argument("--nodes", type=int, default=1)
    estimate.add_argument("--gpu-memory", type=float, default=80.0, metavar="GIB", help="memory of one GPU")
    estimate.add_argument("--host-memory", type=float, default=1024.0, metavar="GIB",
                          help="CPU memory of one node (default 1024; a DGX H100 has 2048)")
    estimate.add_argument("--expert-parallel", type=int, default=None, metavar="N",
                          help="routed experts split over N GPUs (AutoEP, ZeRO-2); default: the recipe's train.expert_parallel")
    estimate.add_argument("--json", action="store_true", help="print the numbers as JSON")
    contamination = sub.add_parser("contamination", help="eval rows that share an n-gram with training files "
                                   "(exit 1 if any)")
    contamination.add_argument("train", nargs="+", help="training files (.jsonl, .json, .parquet)")
    contamination.add_argument("--eval", nargs="+", required=True, help="eval files to check against them")
    contamination.add_argument("--ngram", type=int, default=13, help="words per n-gram (lm-eval's rule: 13)")
    contamination.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser


TALK_TARGET = "preset, model directory, MLflow run id, experiment name (its newest finished run) or hub id"


def _sampling_flags(parser) -> None:
    parser.add_argument("--temperature", type=float, default=0.0, metavar="T",
                        help="0: greedy (default); higher: more varied")
    parser.add_argument("--top-p", type=float, default=1.0, metavar="P",
                        help="sample from the likeliest tokens holding this much probability, in (0, 1] (default 1)")
    parser.add_argument("--max-new-tokens", type=int, default=256, metavar="N",
                        help="longest answer, in tokens (default 256)")
    parser.add_argument("--seed", type=int, metavar="S", help="the same samples on every call (default: a fresh seed)")
    parser.add_argument("--mtp", action="store_true", help="decode speculatively with the model's trained MTP layer")
    parser.add_argument("-v", "--verbose", action="store_true", help="show the libraries' warnings and logs too")


def cmd_finetune(args) -> int:
    import time

    from workbench import console
    from workbench.recipe.load import load_recipe
    from workbench.train.build import build
    from workbench.train.plan import make_plan
    from workbench.train.report import describe, summarize

    start = time.perf_counter()
    plan = make_plan(load_recipe(args.recipe, args.overrides), resume=args.resume)  # what `validate` prints
    run = build(plan)
    main_process = run.tracker.run_id is not None  # ranks other than 0 of a multi-process job stay quiet
    try:
        if main_process:
            console.header(describe(run))
        run.train()
        if main_process:
            summarize(run, time.perf_counter() - start)
    finally:
        run.close()
    if main_process:
        print(f"run_id={run.tracker.run_id} output_dir={run.output_dir}")
    return 0


def cmd_validate(args) -> int:
    from workbench.recipe.load import load_recipe
    from workbench.train.plan import describe_plan, make_plan

    print(describe_plan(make_plan(load_recipe(args.recipe, args.overrides))))  # exactly what `finetune` would train
    return 0


def cmd_export(args) -> int:
    from workbench.export.merge import export

    result = export(args.run, out=args.out, tolerance=args.tolerance)
    if result.against == "trained":
        f = result.facts
        reach = (f", every routed expert reached ({f['experts_covered']} of {f['experts']}, at least "
                 f"{f['fewest_tokens_per_expert']} tokens each)" if f.get("experts") == f.get("experts_covered")
                 else f", routed experts reached: {f['experts_covered']} of {f['experts']}" if f.get("experts") else "")
        print(f"exported ({result.kind}); max |logit difference| vs the trained model in memory: {result.max_abs_diff:.2e} "
              f"on {f['tokens']} tokens in {f['rows']} rows{reach}; routing agreement {f['routing_agreement']:.2%}")
    else:
        print(f"exported ({result.kind}); max |logit difference| vs the saved model: {result.max_abs_diff:.2e} "
              "(this run stored no in-memory reference: it was trained by an older workbench)")
    print(f"export_dir={result.out_dir}")
    return 0


def cmd_apply_patch(args) -> int:
    from workbench.export.merge import apply_patch_to_dir

    print(f"patched model: {apply_patch_to_dir(args.patch_dir, args.out)}")
    return 0


def cmd_eval(args) -> int:
    import time

    from workbench.evaluate.harness import check_suite, format_scores, load_target, log_to_run, run_suite

    start = time.perf_counter()
    check_suite(args.suite, args.source, args.limit)  # fail on bad input before loading a model
    model, tokenizer, run_id = load_target(args.target)
    result = run_suite(model, tokenizer, args.suite, limit=args.limit, source=args.source, batch_size=args.batch_size,
                       unsafe_weak_sandbox=args.unsafe_weak_sandbox)
    print(format_scores(result))
    if run_id:
        log_to_run(run_id, result, prefix="eval" if args.source == "local" else "eval_hub")
        print(f"logged onto run {run_id}")
    print(f"{args.suite} ({args.source}) on {args.target}: {time.perf_counter() - start:.1f} s")
    return 0


def cmd_schedule(args) -> int:
    from workbench.evaluate.harness import check_suite
    from workbench.schedule.scheduler import ScheduleConfig, run_schedule

    check_suite(args.suite, "local", args.limit)
    if not (args.every is not None or args.cron or args.once or args.reset):
        raise WorkbenchError("schedule: give --every SECONDS, --cron EXPR or --once (or --reset RUN_ID|all)")
    for flag, value in (("--every", args.every), ("--lease", args.lease), ("--max-runs", args.max_runs),
                        ("--max-attempts", args.max_attempts)):
        if value is not None and value <= 0:
            raise WorkbenchError(f"schedule: {flag} must be > 0, got {value:g}")
    if args.store_retry < 0:
        raise WorkbenchError(f"schedule: --store-retry must be >= 0, got {args.store_retry:g}")
    _schedule_log(args.suite)
    cfg = ScheduleConfig(suite=args.suite, limit=args.limit, experiments=tuple(args.experiment), max_runs=args.max_runs,
                         lease_s=args.lease, max_attempts=args.max_attempts, batch_size=args.batch_size,
                         store_retry_s=args.store_retry, unsafe_weak_sandbox=args.unsafe_weak_sandbox)
    run_schedule(cfg, every=args.every, cron=args.cron, once=args.once, claims_db=args.claims_db, reset=args.reset)
    return 0


def _schedule_log(suite: str) -> None:
    """The libraries' output (lm-eval's notices, progress bars, warnings) goes to one log per suite; the
    scheduler's own lines, one per run, stay on stdout for cron mail and `kubectl logs`."""
    import re

    from workbench import console
    from workbench.paths import runs_dir

    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", suite).strip("_") or "suite"
    path = console.attach_log(runs_dir() / "schedule" / f"{name}.log")
    if path is not None:
        print(f"library output: {path}", flush=True)


def cmd_estimate(args) -> int:
    import json

    from workbench.recipe.load import load_recipe
    from workbench.scale.estimate import estimate, render

    for flag, value in (("--gpus", args.gpus), ("--nodes", args.nodes), ("--gpu-memory", args.gpu_memory),
                        ("--host-memory", args.host_memory)):
        if value <= 0:
            raise WorkbenchError(f"estimate: {flag} must be > 0, got {value:g}")
    recipe = load_recipe(args.recipe, args.overrides)
    from workbench.train.plan import check_references

    check_references(recipe)  # its DeepSpeed config, as finetune reads it
    result = estimate(recipe, gpus_per_node=args.gpus, nodes=args.nodes, gpu_memory_gib=args.gpu_memory,
                      expert_parallel=args.expert_parallel, host_memory_gib=args.host_memory)
    print(json.dumps(result, indent=2) if args.json else render(result, recipe))
    return 0


def cmd_contamination(args) -> int:
    import json

    from workbench.evaluate.contamination import check, render

    report = check(args.train, args.eval, n=args.ngram)
    print(json.dumps(report.as_dict(), indent=2) if args.json else render(report))
    return 0 if report.clean else 1


def cmd_runs(args) -> int:
    from workbench.track.runs import list_runs

    list_runs(args.recipe, limit=args.limit)
    return 0


def cmd_show(args) -> int:
    from workbench.track.runs import show_run

    show_run(args.run)
    return 0


def _talk_setup(args):
    """The checked sampling flags, then the model (flags are checked before anything loads)."""
    from workbench.model.generate import Sampling, load_target

    sampling = Sampling(temperature=args.temperature, top_p=args.top_p, max_new_tokens=args.max_new_tokens,
                        seed=args.seed).check(args.command)
    if args.command == "generate" and not args.prompt.strip():
        raise WorkbenchError("generate: the prompt is empty")
    return sampling, load_target(args.target, mtp=args.mtp, command=args.command, notes=sys.__stderr__)


def cmd_generate(args) -> int:
    from workbench.model.generate import generate_once

    sampling, target = _talk_setup(args)
    try:
        generate_once(target, args.prompt, sampling)
    except KeyboardInterrupt:  # not main()'s "resume with --resume": there is nothing to resume
        print()
        return 130
    return 0


def cmd_chat(args) -> int:
    from workbench.model.generate import chat

    sampling, target = _talk_setup(args)
    import signal

    # Ctrl-C stops an answer even where whatever started this process ignores SIGINT (a shell's background job
    # passes SIG_IGN on, and Python then installs no handler): the chat's own promise, so it takes SIGINT back
    signal.signal(signal.SIGINT, signal.default_int_handler)
    return chat(target, sampling)  # Ctrl-C stops an answer; Ctrl-D or /exit leaves (exit 0)


COMMANDS = {"finetune": cmd_finetune, "validate": cmd_validate, "eval": cmd_eval, "export": cmd_export,
            "apply-patch": cmd_apply_patch, "schedule": cmd_schedule,
            "estimate": cmd_estimate, "contamination": cmd_contamination, "runs": cmd_runs, "show": cmd_show,
            "generate": cmd_generate, "chat": cmd_chat}


POSITIVE = ("limit", "batch_size", "tolerance", "gpus", "nodes", "gpu_memory", "every", "lease", "max_runs",
            "max_attempts")  # numeric flags of any command that only make sense above zero


def _check_numbers(args) -> None:
    for name in POSITIVE:
        value = getattr(args, name, None)
        if value is not None and not value > 0:  # `not >` also catches nan
            raise WorkbenchError(f"{args.command}: --{name.replace('_', '-')} must be > 0, got {value:g}")


# commands whose library output goes to a log (finetune: the run's); generate/chat stream only the answer to stdout
QUIET = ("finetune", "eval", "validate", "estimate", "schedule", "generate", "chat")


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # not "Creating initial MLflow database tables..."
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # `show` reads an artifact: no bar
    import logging

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # the same where MLflow was imported before (in-process)
    args = _parser().parse_args(argv)
    errors = sys.stderr  # the workbench's own one-line errors always reach the person
    if args.command in QUIET:  # library warnings and progress bars go to the run's log instead
        from workbench import console

        console.capture_library_output(verbose=getattr(args, "verbose", False))
    try:
        _check_numbers(args)
        return COMMANDS[args.command](args)
    except WorkbenchError as exc:
        print(f"error: {exc}", file=errors)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted: resume with --resume", file=errors)
        return 130
    finally:
        if sys.stderr is not errors and args.command in QUIET:
            from workbench import console

            console.release(errors)


if __name__ == "__main__":
    sys.exit(main())
