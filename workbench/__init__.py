"""Fine-tuning and alignment workbench for DeepSeek-V3-style Mixture-of-Experts models.

Entry points: the `workbench` CLI (`workbench finetune legal`) and the builder
`workbench.run.build(recipe)`. See README.md.
"""

__version__ = "0.1.0"
