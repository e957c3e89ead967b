"""MoE awareness for DeepSeek-V3 models: routing telemetry from real tokens (routing.py), aux-free and
sequence-wise balancing (plugin.py, bias.py), which parts train and ESFT (control.py), LoRA targets that reach the
experts (targets.py), expert patches (patch.py), routing replay for RL (replay.py).

May import: data, track and the base modules. Nothing here loads a model; it works on the model it is given.
"""
