"""Models: presets (presets.py), loading a preset, directory, hub id or run (load.py), the embedded tokenizer
(tokenizer.py), LoRA through PEFT (lora.py), DeepSeek-V3's MTP layer (mtp.py), speculative decoding with it
(speculative.py), device defaults (device.py).

May import: recipe (ModelConfig), moe, data, track and the base modules.
"""
