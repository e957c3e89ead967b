"""Where a training step's time goes: per-step milliseconds by phase and by model part, forward and backward.

    .venv/bin/python benchmarks/profile_step.py                           # the workbench's legal recipe, 20 steps
    .venv/bin/python benchmarks/profile_step.py --variant baseline_tuned  # plain TRL with a user's flags
    .venv/bin/python benchmarks/profile_step.py --variant workbench --ops 25   # plus torch.profiler's top ops
    .venv/bin/python benchmarks/profile_step.py --overrides model.experts_implementation=grouped_mm

Builds the same trainer as the benchmark child (benchmarks/workloads.py) in this process and times, in every step
after --warmup: the batch fetch and collation, the model's forward and backward split into attention, router,
routed experts, shared experts, dense MLP, norms, embedding and loss head (module hooks; backward through
`register_full_backward_*_hook`, so each part is timed between the gradient reaching its output and leaving its
inputs), grad clipping, the optimizer step and the rest (callbacks, scheduler, zero_grad, TRL's metrics). On CPU
the kernels run synchronously, so wall time is the cost. The hooks add a little time of their own (a few
microseconds per module call, reported as `hook overhead`); compare figures within one profile, and take
throughput from bench.py.
"""

import argparse
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Wall time by default; --clock cpu switches to this process's CPU time, which other processes on a busy machine
# barely move (with --threads 1 it is the work done; with more threads it also counts their waiting).
clock = time.perf_counter

# Module name (its last parts) -> the part of the model it is counted in; the first match wins. Modules inside a
# leaf part count in it; a container part (the MoE block, the backbone) counts only what its children do not.
PARTS = (("mlp.gate", "router"), ("mlp.experts", "routed experts"), ("mlp.shared_experts", "shared experts"),
         ("self_attn", "attention"), ("layernorm", "norms"), ("model.norm", "norms"), ("embed_tokens", "embedding"),
         ("lm_head", "lm head projection"))
CONTAINERS = {"DeepseekV3MoE": "moe glue (reshape, shared add)", "DeepseekV3Model": "backbone rest (mask, rope, residuals)"}


def part_of(name: str, module) -> str | None:
    kind = type(module).__name__
    if kind in CONTAINERS:
        return CONTAINERS[kind]
    if name.endswith(".mlp"):
        return "dense mlp"
    return next((part for suffix, part in PARTS if name.endswith(suffix)), None)


class _Mark(torch.autograd.Function):
    """Identity whose backward calls `callback`: the moment a gradient reaches this tensor."""

    @staticmethod
    def forward(ctx, tensor, callback):
        ctx.callback = callback
        return tensor.view_as(tensor)

    @staticmethod
    def backward(ctx, grad):
        ctx.callback()
        return grad, None


def _marked(value, callback):
    """`value` with every floating tensor that carries a gradient passed through a _Mark; (new value, count)."""
    if isinstance(value, torch.Tensor):
        return (_Mark.apply(value, callback), 1) if value.requires_grad else (value, 0)
    if isinstance(value, tuple):
        items = [_marked(v, callback) for v in value]
        return tuple(v for v, _ in items), sum(n for _, n in items)
    if isinstance(value, dict):  # a ModelOutput: mark its hidden states, leave the rest
        key = "last_hidden_state"
        if key in value and isinstance(value[key], torch.Tensor) and value[key].requires_grad:
            value[key] = _Mark.apply(value[key], callback)
            return value, 1
    return value, 0


class _Call:
    """One call of a timed module: its forward span, then its backward span (from the first gradient reaching an
    output to the last one leaving an input)."""

    def __init__(self, timer, part: str):
        self.timer, self.part, self.backward, self.inputs_left = timer, part, None, 0
        phase = "recompute" if torch._C._current_graph_task_id() != -1 else "forward"
        self.forward = timer.open((phase, part))

    def output_grad(self):
        if self.backward is None:
            self.backward = self.timer.open(("backward", self.part))

    def input_grad(self):
        self.inputs_left -= 1
        if self.inputs_left == 0 and self.backward is not None:
            self.timer.close(self.backward)


class PartTimer:
    """Exclusive wall time per (phase, part) from open/close events: at every moment the most recently opened span
    still open gets the time, so a part's figure leaves out the parts it calls."""

    def __init__(self, model):
        self.events: list[tuple[float, int, object]] = []  # (time, span id, key or None when closing)
        self.open_spans: set[int] = set()
        self.next_id = 0
        self.calls = 0
        self.handles = []
        leaves = []
        for name, module in model.named_modules():
            part = part_of(name.removeprefix("base_model.model."), module)
            if part is None or any(name.startswith(leaf + ".") for leaf in leaves):
                continue
            if type(module).__name__ not in CONTAINERS:
                leaves.append(name)
            self.handles += [module.register_forward_pre_hook(self._pre(module, part), with_kwargs=True),
                             module.register_forward_hook(self._post(module))]

    def open(self, key) -> int:
        self.next_id += 1
        self.events.append((clock(), self.next_id, key))
        self.open_spans.add(self.next_id)
        return self.next_id

    def close(self, span: int) -> None:
        self.events.append((clock(), span, None))
        self.open_spans.discard(span)

    def close_all(self) -> None:
        """End of the backward: spans whose inputs carry no gradient (the embedding's token ids) end here."""
        for span in list(self.open_spans):
            self.close(span)

    def _pre(self, module, part: str):
        def hook(_, args, kwargs):
            self.calls += 1
            call = _Call(self, part)
            module.__dict__.setdefault("_profile_calls", []).append(call)
            if not torch.is_grad_enabled():
                return None
            args, n_args = _marked(args, call.input_grad)
            marked = {k: _marked(v, call.input_grad) for k, v in kwargs.items()}
            call.inputs_left = n_args + sum(n for _, n in marked.values())
            return args, {k: v for k, (v, _) in marked.items()}
        return hook

    def _post(self, module):
        def hook(_, args, output):
            call = module.__dict__["_profile_calls"].pop()
            self.close(call.forward)
            return _marked(output, call.output_grad)[0] if torch.is_grad_enabled() else None
        return hook

    def take(self) -> dict:
        """Seconds per (phase, part) since the last take; spans still open end now."""
        now = clock()
        totals, open_spans, keys, last = defaultdict(float), [], {}, None
        for at, span, key in sorted(self.events, key=lambda e: e[0]):
            if open_spans and last is not None:
                totals[keys[open_spans[-1]]] += at - last
            last = at
            if key is not None:
                keys[span] = key
                open_spans.append(span)
            elif span in open_spans:
                open_spans.remove(span)
        if open_spans and last is not None:
            totals[keys[open_spans[-1]]] += now - last
        self.events, self.calls = [], 0
        return dict(totals)

    def remove(self):
        for handle in self.handles:
            handle.remove()


class StepProfile:
    """Wraps the trainer's batch fetch, forward, backward, clipping and optimizer step; one record per step."""

    def __init__(self, trainer, warmup: int):
        self.trainer, self.warmup = trainer, warmup
        self.parts = PartTimer(trainer.model)
        self.steps: list[dict] = []
        self.current = defaultdict(float)
        self.last_end = None
        self._wrap(trainer, "get_batch_samples", "data")
        self._wrap(trainer, "compute_loss", "forward (compute_loss)")
        self._wrap(trainer.accelerator, "backward", "backward", after=self.parts.close_all)
        self._wrap(trainer, "_clip_grad_norm", "grad clip")
        self._wrap(trainer, "_maybe_log_save_evaluate", "logging (Trainer.log, tracker callbacks)")
        handler = trainer.callback_handler
        original_event = handler.call_event

        def timed_event(event, *args, **kwargs):
            start = clock()
            try:
                return original_event(event, *args, **kwargs)
            finally:
                if event not in ("on_log", "on_pre_optimizer_step", "on_optimizer_step"):  # on_log: in logging
                    self.current[f"callbacks ({event})"] += clock() - start

        handler.call_event = timed_event
        from transformers import TrainerCallback

        profile = self

        class Optimizer(TrainerCallback):
            def on_pre_optimizer_step(self, args, state, control, **kwargs):
                profile.opt_start = clock()

            def on_optimizer_step(self, args, state, control, **kwargs):
                profile.current["optimizer step"] += clock() - profile.opt_start

            def on_step_end(self, args, state, control, **kwargs):
                profile.end_step()

        trainer.add_callback(Optimizer())

    def _wrap(self, owner, attribute: str, label: str, after=None):
        original = getattr(owner, attribute)

        def timed(*args, **kwargs):
            start = clock()
            try:
                return original(*args, **kwargs)
            finally:
                if after is not None:
                    after()
                self.current[label] += clock() - start

        setattr(owner, attribute, timed)

    def end_step(self):
        now = clock()
        record, calls, parts = dict(self.current), self.parts.calls, self.parts.take()
        self.current = defaultdict(float)
        if self.last_end is not None:
            record["step"] = now - self.last_end
            record.update(parts=parts, hook_calls=calls)
            self.steps.append(record)
        self.last_end = now


REST = {"forward": "forward: loss head rest (log-softmax, gather, entropy; TRL's loss and metrics)",
        "backward": "backward: loss head rest (log-softmax, gather; before the projection)"}
TOTALS = {"forward": "forward (compute_loss)", "backward": "backward"}
PHASES = ("data", "grad clip", "optimizer step", "logging (Trainer.log, tracker callbacks)", "callbacks (on_step_begin)",
          "callbacks (on_step_end)")


def report(profile: StepProfile, tokens_per_step: float) -> str:
    """Median per row over the timed steps; the rest rows are per-step differences, then medians."""
    timed = profile.steps[profile.warmup:]
    keys = sorted({k for s in timed for k in s["parts"]})
    per_step = []  # one {label: seconds} per step
    for s in timed:
        row = {}
        for phase in ("forward", "backward", "recompute"):
            parts = {f"{phase}: {key[1]}": value for key, value in s["parts"].items() if key[0] == phase}
            row.update(parts)
            if phase in TOTALS:
                row[REST[phase]] = s.get(TOTALS[phase], 0.0) - sum(parts.values())
        row.update({label: s.get(label, 0.0) for label in PHASES})
        row["other (scheduler, zero_grad, loop)"] = s["step"] - sum(row.values())
        row["step"] = s["step"]
        per_step.append(row)
    labels = [f"{k[0]}: {k[1]}" for k in keys if k[0] == "forward"] + [REST["forward"]]
    labels += [f"{k[0]}: {k[1]}" for k in keys if k[0] == "backward"] + [REST["backward"]]
    labels += [f"{k[0]}: {k[1]}" for k in keys if k[0] == "recompute"]
    labels += [*PHASES, "other (scheduler, zero_grad, loop)"]
    ms = {label: statistics.median(r.get(label, 0.0) for r in per_step) * 1000 for label in labels + ["step"]}
    step, width = ms["step"], max(len(label) for label in labels) + 2
    lines = [f"{'per step, median of ' + str(len(timed)) + ' steps':<{width}} {'ms':>7} {'share':>6}", "-" * (width + 15)]
    lines += [f"{label:<{width}} {ms[label]:7.1f} {ms[label] / step:6.1%}" for label in labels]
    lines += ["-" * (width + 15), f"{'step':<{width}} {step:7.1f} {1:6.1%}  (rows are medians: they need not add up)",
              f"{tokens_per_step:.0f} real tokens per step: {tokens_per_step / step * 1000:.0f} tokens/s while profiled"]
    return "\n".join(lines)


def build(args, workdir: Path):
    from benchmarks import workloads

    spec = {"kind": args.variant, "steps": args.steps + args.warmup + 1, "seed": args.seed, "gpu": False,
            "overrides": args.overrides, "model_overrides": []}
    if args.variant == "workbench":
        from workbench.recipe.load import load_recipe
        from workbench.train.build import build as build_run

        run = build_run(load_recipe(workloads.RECIPE, workloads.workbench_overrides(spec, workdir)))
        return run.trainer, run.trainer.train, run.close
    trainer, _, _ = workloads.baseline_trainer(spec, workdir, tuned=args.variant == "baseline_tuned")
    return trainer, trainer.train, lambda: None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variant", default="workbench", choices=["workbench", "baseline_tuned", "baseline"])
    parser.add_argument("--steps", type=int, default=20, help="steps profiled after the warm-up")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--overrides", nargs="*", default=[], help="recipe overrides (workbench variant)")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall")
    parser.add_argument("--ops", type=int, default=0, help="also print torch.profiler's top N ops (self CPU time)")
    args = parser.parse_args(argv)
    global clock
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    if args.threads:
        torch.set_num_threads(args.threads)
    from benchmarks.workloads import sequence_lengths

    with tempfile.TemporaryDirectory(prefix="wb-profile-") as tmp:
        trainer, train, close = build(args, Path(tmp))
        profile = StepProfile(trainer, args.warmup)
        tokens = []
        original = trainer.training_step

        def counted(model, inputs, *rest, **kwargs):
            tokens.append(sum(sequence_lengths(inputs)))
            return original(model, inputs, *rest, **kwargs)

        trainer.training_step = counted
        try:
            if args.ops:
                from torch.profiler import ProfilerActivity, profile as torch_profile

                with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
                    train()
            else:
                train()
        finally:
            close()
    print(f"{args.variant}, {args.clock} clock, {torch.get_num_threads()} threads, overrides: {args.overrides or 'none'}")
    print(report(profile, statistics.mean(tokens[args.warmup + 1:])))
    print(f"timing-hook calls per step: {statistics.median(s['hook_calls'] for s in profile.steps)}")
    if args.ops:
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.ops))
    return 0


if __name__ == "__main__":
    sys.exit(main())
