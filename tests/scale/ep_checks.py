"""Launched by torchrun from tests/scale/test_expert_parallel_cpu.py (`ep_checks.py EP`): on every rank, the embedded
model under DeepSpeed AutoEP (expert parallelism EP, ZeRO-2, gloo) against transformers' own blocks.

1. AutoEP replaced every MoE block and holds E/EP experts per rank.
2. A training forward on this rank's padded batch gives transformers' loss, and the routing recorder, moved onto
   AutoEP's routers, counts the same real-token loads (summed over ranks) as on transformers' routers.
3. After a training step, `restore_hf_layout` puts transformers' blocks back on rank 0 with every expert gathered:
   the same logits as the AutoEP model, the same state-dict keys and shapes as the original model, and the same
   tensors as `hf_state_dict` (a checkpoint's contents) gathered before; the other ranks keep their slices.
Exits non-zero with the reason on the first failure.
"""

import copy
import os
import sys

import torch

os.environ.setdefault("DS_ACCELERATOR", "cpu")


def fail(message: str) -> None:
    print(f"rank {os.environ.get('RANK')}: {message}", flush=True)
    sys.exit(1)


def main() -> None:
    import deepspeed

    from workbench.recipe.schema import ModelConfig
    from workbench.model.load import load_model
    from workbench.scale.expert_parallel import autoep_layers, hf_state_dict, restore_hf_layout
    from workbench.moe.plugin import _all_reduce
    from workbench.moe.routing import RoutingRecorder

    ep = int(sys.argv[1])
    deepspeed.init_distributed(dist_backend="gloo")
    rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    model, _ = load_model(ModelConfig())
    reference = copy.deepcopy(model)
    block_class = type(model.model.layers[1].mlp)
    n_experts = model.config.n_routed_experts

    generator = torch.Generator().manual_seed(7)
    ids = torch.randint(3, 8000, (2 * world, 24), generator=generator)[2 * rank:2 * rank + 2]
    mask = torch.ones_like(ids)
    mask[1, :5] = 0  # left padding on one row: padding must not count as expert load
    labels = ids.masked_fill(mask == 0, -100)

    expected = RoutingRecorder(reference)
    reference.train()
    want = reference(ids, attention_mask=mask, labels=labels).loss
    want_loads = _all_reduce(expected.take("train").loads)

    recorder = RoutingRecorder(model)
    config = {"train_micro_batch_size_per_gpu": 2, "gradient_accumulation_steps": 1,
              "zero_optimization": {"stage": 2}, "optimizer": {"type": "AdamW", "params": {"lr": 1e-3}},
              "expert_parallel": {"enabled": True, "autoep_size": ep, "preset_model": "deepseek_v3"}}
    engine, *_ = deepspeed.initialize(model=model, model_parameters=[p for p in model.parameters() if p.requires_grad],
                                      config=config)
    layers = autoep_layers(model)
    if len(layers) != model.config.num_hidden_layers - model.config.first_k_dense_replace:
        fail(f"AutoEP replaced {len(layers)} blocks")
    if any(layer.experts.w1.shape[0] != n_experts // ep for _, _, layer in layers):
        fail(f"expected {n_experts // ep} local experts per block")
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
