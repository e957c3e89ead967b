"""The retention gate: did fine-tuning keep the general skills the recipe names?

After training, each score of `eval.retention_suite` is compared with the same score before training;
a drop larger than `eval.retention_tolerance` (absolute) fails the gate. The run is tagged
`retention=pass|fail` and the command says so in plain words. The run itself still finishes: the gate
is a verdict to act on (do not ship, tune less), not a crash.
"""


def retention_verdict(base: dict[str, float], tuned: dict[str, float], tolerance: float) -> tuple[bool, list[str]]:
    """(passed, one line per score) over the scores both evaluations have."""
    lines, passed = [], True
    for name in sorted(set(base) & set(tuned)):
        drop = base[name] - tuned[name]
        ok = drop <= tolerance
        passed &= ok
        lines.append(f"  {name}: {base[name]:.4f} -> {tuned[name]:.4f} ({'ok' if ok else f'dropped {drop:.4f}'})")
    return passed, lines


def retention_gate(tracker, base: dict[str, float], tuned: dict[str, float], cfg) -> bool:
    from workbench.eval_tasks import suite_tasks

    benchmarks = {task.name for task in suite_tasks(cfg.retention_suite)}
    keep = lambda scores: {k: v for k, v in scores.items() if k.split("/")[0] in benchmarks}  # noqa: E731
    passed, lines = retention_verdict(keep(base), keep(tuned), cfg.retention_tolerance)
    tracker.mlflow.set_tag("retention", "pass" if passed else "fail")
    verdict = "kept" if passed else "LOST"
    print(f"Retention gate: {'pass' if passed else 'fail'} - general skills of suite '{cfg.retention_suite}' "
          f"were {verdict} (allowed drop {cfg.retention_tolerance}):")
    print("\n".join(lines))
    return passed
