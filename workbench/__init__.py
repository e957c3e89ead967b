"""Fine-tuning and alignment workbench for DeepSeek-V3-style Mixture-of-Experts models.

Entry points: the `workbench` CLI (`workbench finetune legal`, workbench/cli.py) and the builder
`workbench.train.build.build(recipe)`. See README.md.

Packages, in the order a user walks through them; arrows point down this list, never up
(tests/test_layers.py checks it):

    cli.py      the `workbench` command                      may import everything below
    train/      plan (preflight), builder, methods, stages, MTP training, run report
    export/     merged model directories and the evidence they compute what was trained
    schedule/   scheduled, exactly-once eval jobs and their claims table
    evaluate/   lm-eval suites, own questions, contamination, retention, significance, the code sandbox, rewards
    scale/      DeepSpeed ZeRO, expert parallelism (AutoEP), the memory estimate
    model/      presets, loading, tokenizer, LoRA, the MTP layer, speculative decoding
    recipe/     the recipe schema (typed, frozen) and YAML loading
    moe/        routing telemetry, balancing, LoRA targets, ESFT, routing replay
    data/       datasets read and checked row by row
    track/      MLflow: the run tracker, lineage between runs, run listings, dashboard queries
    errors.py, files.py, paths.py, console.py   what every package may use
"""
