"""What a recipe is: the typed, frozen schema (schema.py) and reading YAML with `extends:` and overrides (load.py).

May import: moe (the names of LoRA targets), data, track and the base modules. Whatever a recipe names outside
itself (eval suites, reward files, DeepSpeed configs, models, data) is resolved by the plan (workbench.train.plan).
"""
