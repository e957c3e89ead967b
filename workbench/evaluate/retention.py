"""The retention gate: did fine-tuning keep the general skills the recipe names?

After training, each score of `eval.retention_suite` is compared with the same score before training;
a drop larger than `eval.retention_tolerance` (absolute) fails the gate. The run is tagged
`retention=pass|fail|unknown` and the command says so in plain words. With nothing to compare (no scores
from before training, or none after, e.g. a resumed run killed before its first evaluation was stored, or
evals skipped under ZeRO-3) the verdict is `unknown`, never `pass`. The run itself still finishes: the gate
is a verdict to act on (do not ship, tune less), not a crash.
"""


def retention_verdict(base: dict[str, float], tuned: dict[str, float], tolerance: float) -> tuple[str, list[str]]:
    """("pass" | "fail" | "unknown", one line per score) over the scores both evaluations have."""
    lines, passed = [], True
    shared = sorted(set(base) & set(tuned))
    for name in shared:
        drop = base[name] - tuned[name]
        ok = drop <= tolerance
        passed &= ok
        lines.append(f"  {name}: {base[name]:.4f} -> {tuned[name]:.4f} ({'ok' if ok else f'dropped {drop:.4f}'})")
    return ("pass" if passed else "fail") if shared else "unknown", lines


def retention_gate(tracker, base: dict[str, float], tuned: dict[str, float], cfg, why_unknown: str = "") -> str:
    from workbench.evaluate.tasks import suite_tasks

    benchmarks = {task.name for task in suite_tasks(cfg.retention_suite)}
    keep = lambda scores: {k: v for k, v in scores.items() if k.split("/")[0] in benchmarks}  # noqa: E731
    base, tuned = keep(base), keep(tuned)
    verdict, lines = retention_verdict(base, tuned, cfg.retention_tolerance)
    tracker.mlflow.set_tag("retention", verdict)
    suite = cfg.retention_suite
    if verdict == "unknown":
        missing = "before" if not base else "after"
        print(f"Retention gate: unknown - there are no scores of suite '{suite}' from {missing} training to compare "
              f"({why_unknown}); nothing says the general skills were kept. Score the base model and this run with "
              f"`workbench eval <target> --suite {suite}` to decide.")
        return verdict
    print(f"Retention gate: {verdict} - general skills of suite '{suite}' were {'kept' if verdict == 'pass' else 'LOST'} "
          f"(allowed drop {cfg.retention_tolerance}):")
    print("\n".join(lines if verdict == "fail" else [line for line in lines if "dropped" in line] or lines[:5]))
    return verdict
