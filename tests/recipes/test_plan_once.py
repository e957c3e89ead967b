"""The one-way build: the plan looks everything up once, and the builder looks nothing up again."""

import sys

from workbench.recipe.load import load_recipe

# What resolves a source: a name to a folder, a run to its files, a file to its rows, a config file to a config
LOOKUPS = {"resolve_source", "read_config", "local_checkpoint", "preset_dir", "check_loadable", "find_run", "run_output",
           "final_info", "load_dataset", "resolved_config", "load_config", "check_suite_ref", "load_user_reward",
           "tracking_uri", "check_store"}


def _lookups(fn):
    """(what fn returned, {workbench function name: calls}) for the lookups above, counted by a profiler."""
    counts = {}

    def profile(frame, event, arg):
        code = frame.f_code
        if event == "call" and code.co_name in LOOKUPS and "/workbench/" in code.co_filename:
            counts[code.co_name] = counts.get(code.co_name, 0) + 1

    sys.setprofile(profile)
    try:
        result = fn()
    finally:
        sys.setprofile(None)
    return result, counts


def test_the_plan_resolves_each_source_once_and_the_build_nothing(isolated):
    from workbench.train.build import build
    from workbench.train.plan import make_plan

    recipe = load_recipe("legal", isolated["overrides"] + ["data.max_rows=24"])
    plan, in_plan = _lookups(lambda: make_plan(recipe))
    assert {"resolve_source", "read_config", "load_dataset", "check_suite_ref", "tracking_uri"} <= set(in_plan)
    assert {name: n for name, n in in_plan.items() if n > 1 and name != "check_suite_ref"} == {}  # once each
    run, in_build = _lookups(lambda: build(plan))
    run.close()
    assert in_build == {}  # the builder loads what the plan pinned, nothing more
