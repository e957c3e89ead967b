"""Launched by torchrun from tests/scale/test_expert_parallel_cpu.py (`ep_checks.py EP`): on every rank, the embedded
model under DeepSpeed AutoEP (expert parallelism EP, ZeRO-2, gloo) against transformers' own blocks.

1. AutoEP replaced every MoE block and holds E/EP experts per rank.
2. A training forward on this rank's padded batch gives transformers' loss, and the routing recorder, moved onto
   AutoEP's routers, counts the same real-token loads (summed over ranks) as on transformers' routers.
3. After backward, every parameter's gradient (DeepSpeed's reduced gradient, `safe_get_full_grad`) equals the
   gradient of one process computing the same global loss (the mean of the ranks' losses) with transformers'
   blocks: routed experts (this rank's slice), shared experts, attention, router, embeddings, head. The DeepSpeed
   config is the workbench's own (`resolved_config` of the `legal` recipe with `train.expert_parallel`), clipping off.
   Tolerance: relative 1e-4 of the largest gradient of each tensor (fp32 sums in another order differ by ~1e-7
   relative; a wrong scale, e.g. experts averaged over the wrong group, is off by a factor of 2 or more).
4. After a training step, `restore_hf_layout` puts transformers' blocks back on rank 0 with every expert gathered:
   the same logits as the AutoEP model, the same state-dict keys and shapes as the original model, and the same
   tensors as `hf_state_dict` (a checkpoint's contents) gathered before; the other ranks keep their slices.
Exits non-zero with the reason on the first failure.
"""

import os
import sys
from pathlib import Path

import torch

os.environ.setdefault("DS_ACCELERATOR", "cpu")


def fail(message: str) -> None:
    print(f"rank {os.environ.get('RANK')}: {message}", flush=True)
    sys.exit(1)


def batch(rank: int, world: int):
    """Rank `rank`'s two rows of the global batch (one left-padded), with labels."""
    generator = torch.Generator().manual_seed(7)
    ids = torch.randint(3, 8000, (2 * world, 24), generator=generator)[2 * rank:2 * rank + 2]
    mask = torch.ones_like(ids)
    mask[1, :5] = 0  # left padding on one row: padding must not count as expert load
    return ids, mask, ids.masked_fill(mask == 0, -100)


def workbench_config(ep: int, world: int, model_config) -> dict:
    """The DeepSpeed config a `legal` full fine-tune with expert parallelism gets from the workbench."""
    from workbench.recipe.load import load_recipe
    from workbench.scale.deepspeed import resolved_config

    recipe = load_recipe("legal", ["peft.type=none", "train.deepspeed=zero2", f"train.expert_parallel={ep}",
                                   "train.batch_size=2", "train.lr=1e-3", "train.max_grad_norm=0", "eval.suite=null"])
    return resolved_config(recipe, hidden_size=model_config.hidden_size, world=world, model_type=model_config.model_type)


def reference_gradients(reference, rank: int, world: int) -> None:
    """One process, transformers' blocks: the gradient of the mean of every rank's loss (what data parallelism
    averages), accumulated into `reference`'s .grad."""
    total = 0
    for r in range(world):
        ids, mask, labels = batch(r, world)
        total = total + reference(ids, attention_mask=mask, labels=labels).loss
    (total / world).backward()


def _close(got: torch.Tensor, want: torch.Tensor, what: str, worst: list) -> None:
    scale = want.abs().max().item()
    diff = (got.float() - want.float()).abs().max().item()
    worst.append((diff / max(scale, 1e-12), what))
    if scale == 0 or diff > 1e-4 * scale:
        fail(f"gradient of {what}: max |difference| {diff:.3e} against a largest gradient of {scale:.3e}")


def compare_gradients(model, reference, layers, rank: int) -> None:
    """Every trainable tensor's reduced gradient against the one-process gradient (see the module docstring)."""
    from deepspeed.utils import safe_get_full_grad

    worst, seen = [], 0
    want = dict(reference.named_parameters())
    for name, param in model.named_parameters():
        if name in want and param.requires_grad and tuple(param.shape) == tuple(want[name].shape):
            _close(safe_get_full_grad(param), want[name].grad, name, worst)
            seen += 1
    for index, _, layer in layers:
        block = reference.model.layers[index].mlp
        group = (torch.distributed.get_process_group_ranks(layer.ep_group) if layer.ep_size > 1 else [rank])
        local = layer.experts.w1.shape[0]
        part = slice(group.index(rank) * local, (group.index(rank) + 1) * local)  # this rank's experts, in order
        inner = layer.experts.w1.shape[1]
        gate_up, down = block.experts.gate_up_proj.grad[part], block.experts.down_proj.grad[part]
        for got, expected, what in ((layer.experts.w1, gate_up[:, :inner], "gate"), (layer.experts.w3, gate_up[:, inner:], "up"),
                                    (layer.experts.w2, down, "down")):
            _close(safe_get_full_grad(got), expected, f"layer {index} routed experts {part.start}-{part.stop - 1} {what}", worst)
        _close(safe_get_full_grad(layer.router.gate.weight), block.gate.weight.grad, f"layer {index} router", worst)
        seen += 4
    if seen < 20 or not any("shared_experts" in what for _, what in worst):
        fail(f"only {seen} gradients compared")
    print(f"rank {rank}: gradients of {seen} tensors agree (worst relative {max(worst)[0]:.1e}: {max(worst)[1]})",
          flush=True)


def main() -> None:
    import deepspeed

    from workbench.recipe.schema import ModelConfig
    from workbench.model.device import experts_implementation, torch_dtype
    from workbench.model.load import load_model
    from workbench.model.shards import load_expert_share
    from workbench.scale.expert_parallel import ep_rank
    from workbench.scale.expert_parallel import autoep_layers, hf_state_dict, restore_hf_layout
    from workbench.moe.plugin import _all_reduce
    from workbench.moe.routing import RoutingRecorder

    ep = int(sys.argv[1])
    deepspeed.init_distributed(dist_backend="gloo")
    rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    reference, _ = load_model(ModelConfig())
    # the AutoEP model is loaded the way an expert-parallel run loads it: the dense weights and only this rank's
    # routed experts, from the preset saved in several safetensors shards as a real checkpoint is
    shards = Path.cwd() / "sharded"
    if rank == 0:
        reference.save_pretrained(shards, max_shard_size="300KB")
    torch.distributed.barrier()
    if len(list(shards.glob("model-*.safetensors"))) < 4:
        fail(f"expected the checkpoint in several shards, found {sorted(p.name for p in shards.iterdir())}")
    cfg = ModelConfig()
    model = load_expert_share(shards, reference.config, torch_dtype(cfg.dtype), ep_rank(ep), ep,
                              experts_implementation=experts_implementation(cfg.experts_implementation))
    loaded_rows = model.expert_share[2:]
    block_class = type(model.model.layers[1].mlp)
    n_experts = model.config.n_routed_experts

    ids, mask, labels = batch(rank, world)

    expected = RoutingRecorder(reference)
    reference.train()
    want = reference(ids, attention_mask=mask, labels=labels).loss
    want_loads = _all_reduce(expected.take("train").loads)
    reference.zero_grad()
    reference_gradients(reference, rank, world)

    recorder = RoutingRecorder(model)
    config = workbench_config(ep, world, model.config)
    engine, *_ = deepspeed.initialize(model=model, model_parameters=[p for p in model.parameters() if p.requires_grad],
                                      config=config)
    layers = autoep_layers(model)
    if len(layers) != model.config.num_hidden_layers - model.config.first_k_dense_replace:
        fail(f"AutoEP replaced {len(layers)} blocks")
    if any(layer.experts.w1.shape[0] != n_experts // ep for _, _, layer in layers):
        fail(f"expected {n_experts // ep} local experts per block")
    first, end = loaded_rows
    for index, name, layer in layers:  # AutoEP kept exactly the rows this rank read, checked against the full model
        gate = reference.model.layers[index].mlp.experts.gate_up_proj[first:end, :layer.experts.w1.shape[1]]
        if layer.ep_rank != ep_rank(ep) or not torch.equal(layer.experts.w1.detach(), gate.detach()):
            fail(f"{name}: AutoEP rank {layer.ep_rank} kept experts other than the {first}..{end - 1} this rank loaded")
    if recorder.rebind(model) != len(layers):
        fail("the recorder did not move onto AutoEP's routers")

    engine.train()
    got = engine(ids, attention_mask=mask, labels=labels).loss
    if abs(got.item() - want.item()) > 1e-5:
        fail(f"loss {got.item():.6f} under AutoEP, {want.item():.6f} with transformers' blocks")
    loads = _all_reduce(recorder.take("train").loads)
    if not torch.equal(loads, want_loads):
        fail(f"loads differ: {loads.tolist()} vs {want_loads.tolist()}")
    if loads.sum().item() != (2 * 24 * world - 5 * world) * model.config.num_experts_per_tok * len(layers):
        fail(f"{loads.sum().item()} expert loads: padding was counted")
    engine.backward(got)
    compare_gradients(model, reference, layers, rank)
    engine.step()

    engine.eval()
    probe = torch.randint(3, 8000, (1, 16), generator=torch.Generator().manual_seed(11))
    with torch.no_grad():
        before = model(probe).logits
    saved = hf_state_dict(model, block_class, model.config)  # what a checkpoint holds, gathered to rank 0's CPU
    restored = restore_hf_layout(model, block_class, model.config)  # onto rank 0 only
    if rank != 0:
        if restored or saved is not None or len(autoep_layers(model)) != len(layers):
            fail(f"rank {rank} restored {restored} blocks; only rank 0 gets the whole experts")
        print(f"rank {rank}: ok (EP {ep} of {world} ranks, loss {got.item():.6f}, slices kept)", flush=True)
        return
    if restored != len(layers):
        fail("not every block was restored")
    if autoep_layers(model) or any(not isinstance(model.model.layers[i].mlp, block_class) for i, _, _ in layers):
        fail("AutoEP blocks are left after the restore")
    with torch.no_grad():
        after = model(probe).logits
    if (after - before).abs().max().item() > 1e-5:
        fail(f"restored logits differ by {(after - before).abs().max().item():.2e}")
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if shapes != {k: tuple(v.shape) for k, v in reference.state_dict().items()}:
        fail("the restored state dict does not have transformers' keys and shapes")
    live = model.state_dict()
    if set(saved) != set(live) or any(not torch.equal(saved[k], live[k].cpu()) for k in live):
        fail("the checkpoint state dict differs from the restored model")
    moved = (model.model.layers[1].mlp.experts.gate_up_proj - reference.model.layers[1].mlp.experts.gate_up_proj)
    if moved.abs().amax(dim=(1, 2)).min().item() == 0:
        fail("an expert did not train: the gathered experts are not the trained ones")
    print(f"rank {rank}: ok (EP {ep} of {world} ranks, loss {got.item():.6f})", flush=True)


if __name__ == "__main__":
    main()
