"""Export: a run as one plain model directory (merge.py), proven to compute what the trained run computed
(check.py), and ESFT expert patches applied onto their base (patch.py).

May import: schedule, evaluate, scale, model, recipe, moe, data, track and the base modules.
"""
