"""Scaling out: DeepSpeed ZeRO configs checked against the recipe (deepspeed.py), expert parallelism through
AutoEP (expert_parallel.py), and the memory estimate per GPU and host (estimate.py, architectures/).

May import: model, recipe, moe, data, track and the base modules.
"""
