"""Training: the plan a recipe resolves to before anything runs (plan.py), the builder that consumes it
(build.py), one module per method around a TRL trainer (methods/), staged training (stages.py), the MTP loss and
report (mtp.py), and what a person sees before and after (report.py).

    plan = make_plan(load_recipe("legal"))     # every source pinned, data loaded and checked
    run = build(plan); run.train(); run.close()

May import: every package below it (export, schedule, evaluate, scale, model, recipe, moe, data, track, base).
"""
