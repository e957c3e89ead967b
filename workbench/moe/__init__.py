"""MoE awareness for DeepSeek-V3 models: routing telemetry, balancing, LoRA targets, ESFT, expert patches."""
