"""The one-way build: the plan looks everything up once, and the builder looks nothing up again."""

import functools
import sys

from workbench.recipe.load import load_recipe

# What resolves a source: a name to a folder, a run to its files, a file to its rows, a config file to a config
LOOKUPS = {"resolve_source", "read_config", "local_checkpoint", "preset_dir", "check_loadable", "find_run", "run_output",
           "final_info", "load_dataset", "resolved_config", "load_config", "check_suite_ref", "load_user_reward",
           "tracking_uri", "check_store"}


def _count_lookups(monkeypatch) -> dict:
    """Replace each lookup (a workbench function named in LOOKUPS) wherever a loaded workbench module binds it, by a
    wrapper that counts its calls; {name: calls}, filled as they happen. A module imported later binds the wrapper
    from its defining module, as does a function-local import. (A per-call profiler did the same, but under
    pytest-xdist, after other tests in the same worker, it ran for tens of minutes.)"""
    counts: dict = {}
    wrappers = {}
    modules = [m for name, m in list(sys.modules.items()) if name.startswith("workbench") and m is not None]
    for module in modules:
        for name in LOOKUPS & set(vars(module)):
            fn = getattr(module, name)
            if callable(fn) and getattr(fn, "__module__", "").startswith("workbench") and fn not in wrappers:
                wrappers[fn] = _counter(fn, name, counts)
    for module in modules:
        for name in LOOKUPS & set(vars(module)):
            if getattr(module, name) in wrappers:
                monkeypatch.setattr(module, name, wrappers[getattr(module, name)])
    assert {w.__name__ for w in wrappers.values()} == LOOKUPS  # each lookup found and wrapped
    return counts


def _counter(fn, name, counts):
    @functools.wraps(fn)
    def counted(*args, **kwargs):
        counts[name] = counts.get(name, 0) + 1
        return fn(*args, **kwargs)
    return counted


def test_the_plan_resolves_each_source_once_and_the_build_nothing(isolated, monkeypatch):
    import workbench.data.load  # every module defining a lookup, loaded before wrapping
    import workbench.evaluate.rewards
    import workbench.evaluate.tasks
    import workbench.model.load
    import workbench.model.presets
    import workbench.scale.deepspeed
    import workbench.track.lineage
    import workbench.track.store
    import workbench.track.tracker  # noqa: F401
    from workbench.train.build import build
    from workbench.train.plan import make_plan

    recipe = load_recipe("legal", isolated["overrides"] + ["data.max_rows=24"])
    counts = _count_lookups(monkeypatch)
    plan = make_plan(recipe)
    in_plan = dict(counts)
    assert {"resolve_source", "read_config", "load_dataset", "check_suite_ref", "tracking_uri"} <= set(in_plan)
    assert {name: n for name, n in in_plan.items() if n > 1 and name != "check_suite_ref"} == {}  # once each
    counts.clear()
    run = build(plan)
    run.close()
    assert counts == {}  # the builder loads what the plan pinned, nothing more
