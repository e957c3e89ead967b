"""Scheduled evals: ticks that score finished runs lacking a suite (scheduler.py), exactly once across workers,
through a claims table with leases (claims.py).

May import: evaluate, scale, model, recipe, moe, data, track and the base modules.
"""
