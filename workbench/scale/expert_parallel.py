"""Expert parallelism through DeepSpeed AutoEP: the routed experts split over N processes, everything else as before.

    train:
      deepspeed: zero2
      expert_parallel: 8        # each process holds 1/8 of every MoE layer's routed experts

`workbench.scale.deepspeed.autoep_section` writes DeepSpeed's `expert_parallel` section (AutoEP's DeepSeek preset).
At `deepspeed.initialize()` AutoEP swaps every MoE block (`model.layers.L.mlp`) for an `AutoEPMoELayer`: the same
router weights and correction bias, this process's slice of the experts as grouped tensors, the shared experts as
they were (LoRA adapters on them included), and an all-to-all that sends each token to the process holding its
experts. `ExpertParallelCallback` keeps the workbench's MoE features on the swapped blocks:

- on_train_begin: routing telemetry and aux-free balancing follow AutoEP's routers. The loads are still summed over
  every process before the bias moves, so the bias takes the same steps as in a run without expert parallelism.
  Full ESFT's gradient masks are re-applied to the slices of the selected experts this process holds.
- on_train_end, in a run that saves whole weights (no LoRA): the first process gets transformers' blocks back,
  experts gathered from its expert-parallel group one layer at a time, so the final save, the export reference,
  the expert patch and `workbench export` see a plain transformers model. A LoRA run with the experts frozen saves
  its adapter and router bias from the split model; nothing is gathered.

Loading (`loads_whole`): each process reads the dense weights and only its own slice of the routed experts from the
checkpoint's shards (`workbench.model.shards`), so the host's memory holds N processes x (dense + experts / N), not N
whole models. A run whose start needs the whole model in every process says why in its header: a base that is a
LoRA run (its adapter is merged over every weight) or ESFT (it profiles the routing with a forward pass before
DeepSpeed starts). on_train_begin checks that DeepSpeed gave each process the experts it loaded.
"""

import re

import torch
from transformers import TrainerCallback

from workbench.errors import WorkbenchError


def check_experts(recipe, model_config) -> None:
    """In the plan, before a run opens: the model's routed experts must split into N equal parts."""
    n = recipe.train.expert_parallel
    experts = getattr(model_config, "n_routed_experts", None) if model_config is not None else None
    if model_config is not None and not experts:
        raise WorkbenchError(f"train.expert_parallel: {recipe.model.name} has no routed experts to split; "
                             "drop train.expert_parallel")
    if experts and experts % n:
        divisors = [d for d in range(2, experts + 1) if experts % d == 0]
        raise WorkbenchError(f"train.expert_parallel: {experts} routed experts per layer cannot be split evenly over "
                             f"{n} processes; use one of {', '.join(map(str, divisors))}")


def loads_whole(recipe, base_is_adapter: bool = False) -> str | None:
    """Under expert parallelism: None where each process loads only its share of the routed experts; else why every
    process loads them all."""
    if base_is_adapter:
        return "the base is a LoRA run, whose adapter is merged over the whole model"
    if recipe.moe.esft != "none":
        return "ESFT profiles the routing with the whole model before DeepSpeed starts"
    return None


def check_share_source(recipe, resolved) -> None:
    """Before a run opens: where each process will read its share, the checkpoint is on local disk and every shard
    the index names is there with a readable header."""
    if recipe.train.expert_parallel <= 1 or loads_whole(recipe, resolved.is_adapter) is not None:
        return
    if not resolved.weights_dir:
        raise WorkbenchError(f"model.name: under expert parallelism each process reads its share of the experts from "
                             f"the checkpoint's safetensors files on local disk, and '{resolved.weights}' is not "
                             f"downloaded here: `huggingface-cli download {resolved.weights}` on every node first")
    from workbench.model.shards import check_checkpoint

    check_checkpoint(resolved.weights_dir)


def ep_rank(ep_size: int) -> int:
    """This process's place in its expert-parallel group: DeepSpeed groups consecutive ranks (0..N-1, N..2N-1, ...);
    on_train_begin checks it against the rank AutoEP actually used."""
    import os

    return int(os.environ.get("RANK", "0")) % ep_size


def check_world(recipe) -> None:
    """At start-up, once the processes are launched: the job's size must be a multiple of N."""
    from workbench.scale.deepspeed import world_size

    n, world = recipe.train.expert_parallel, world_size()
    if world % n:
        raise WorkbenchError(f"train.expert_parallel: {n} splits the routed experts over {n} processes, so the job "
                             f"needs a multiple of {n} processes; it has {world} (launch with make finetune ... GPUS={n})")


def allow_frozen_experts() -> None:
    """Let ZeRO-1/2 build its optimizer when every routed expert is frozen (LoRA on attention and shared experts).

    DeepSpeed 0.19.8's ZeRO optimizer asserts that a model with AutoEP layers has an optimizer group of expert
    weights. A LoRA run trains none, and an empty group crashes the same constructor, so the check is skipped
    for exactly that case: no group needs the expert-parallel gradient path, every group takes the plain one.
    """
    from deepspeed.runtime.zero.stage_1_and_2 import DeepSpeedZeroOptimizer

    original = DeepSpeedZeroOptimizer._configure_moe_settings
    if getattr(original, "workbench_frozen_experts", False):
        return

    def configure(self):
        from deepspeed.moe.utils import is_moe_param

        if any(is_moe_param(p) for group in self.optimizer.param_groups for p in group["params"]):
            return original(self)  # expert weights train: DeepSpeed's own checks and groups
        self.is_moe_param_group = [False] * len(self.optimizer.param_groups)

    configure.workbench_frozen_experts = True
    DeepSpeedZeroOptimizer._configure_moe_settings = configure


def autoep_layers(model) -> list[tuple[int, str, torch.nn.Module]]:
    """(layer index, module name, AutoEPMoELayer) for every block AutoEP replaced."""
    found = []
    for name, module in model.named_modules():
        if getattr(module, "_is_autoep_layer", False):
            layer = int(re.findall(r"layers\.(\d+)\.", name + ".")[-1])
            found.append((layer, name, module))
    return found


def _gathered(param: torch.Tensor, layer, to_rank: int) -> torch.Tensor | None:
    """All of a layer's experts from each process's slice (dim 0), in expert order, on `to_rank` only (None elsewhere)."""
    local = param.detach().contiguous()
    if layer.ep_size == 1:
        return local
    first = torch.distributed.get_rank() == to_rank
    whole = local.new_empty((local.shape[0] * layer.ep_size, *local.shape[1:])) if first else None
    parts = list(whole.chunk(layer.ep_size)) if first else None  # views: received in place, no second copy
    torch.distributed.gather(local, parts, dst=to_rank, group=layer.ep_group)
    return whole


def _hf_block_tensors(layer, block, to_rank: int, device=None) -> dict[str, torch.Tensor] | None:
    """One AutoEP layer's router and routed experts under transformers' names inside `block` (a meta-device
    `block_class(config)`, for its layout), all experts gathered on `to_rank`; None on the other processes.

    Collective over the layer's expert-parallel group. w1 = gate, w3 = up, w2 = down; transformers' standard layout
    is gate_up (E, 2 x inner, hidden) with down (E, hidden, inner), the other one transposes both (down_proj tells
    them apart even where hidden == 2 x inner makes gate_up's shapes equal)."""
    gathered = [_gathered(p, layer, to_rank) for p in (layer.experts.w1, layer.experts.w2, layer.experts.w3)]
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    if rank != to_rank:
        return None
    experts = block.experts
    if not (hasattr(experts, "gate_up_proj") and hasattr(experts, "down_proj")):
        raise WorkbenchError(f"train.expert_parallel: {type(experts).__name__} does not keep fused gate_up_proj / "
                             "down_proj tensors; the trained experts cannot be put back in transformers' layout")
    w1, w2, w3 = (t.to(device) if device is not None else t for t in gathered)
    n_experts, inner, hidden = w1.shape
    standard = tuple(experts.down_proj.shape) == (n_experts, hidden, inner)
    gate_up, down = torch.cat([w1, w3], 1), w2  # gate rows, then up rows
    if not standard:
        gate_up, down = gate_up.transpose(1, 2), w2.transpose(1, 2)
    router = layer.router
    tensors = {"experts.gate_up_proj": gate_up.contiguous(), "experts.down_proj": down.contiguous(),
               "gate.weight": router.gate.weight.detach().to(device or router.gate.weight.device).clone()}
    bias = getattr(router, "e_score_correction_bias", None)
    if bias is not None and hasattr(block.gate, "e_score_correction_bias"):
        tensors["gate.e_score_correction_bias"] = bias.detach().float().to(device or bias.device).clone()
    return tensors


def _holds(layer, to_rank: int) -> bool:
    """Whether this process's expert-parallel group for `layer` holds process `to_rank`."""
    return layer.ep_size == 1 or to_rank in torch.distributed.get_process_group_ranks(layer.ep_group)


def restore_hf_layout(model, block_class, config, to_rank: int = 0) -> int:
    """Put transformers' MoE blocks back where AutoEP's are, on process `to_rank` (collective over the expert-parallel
    group that holds it; the processes of other groups return at once and keep their slices).

    The router's weight and correction bias, all routed experts (gathered one layer at a time) and the very same
    shared-expert module move into a new `block_class(config)`; trainability is kept per tensor. Returns the number
    of blocks restored in this process.
    """
    restored = 0
    for _, name, layer in autoep_layers(model):
        if not _holds(layer, to_rank):
            continue
        with torch.device("meta"):
            block = block_class(config)
        tensors = _hf_block_tensors(layer, block, to_rank)
        if tensors is None:
            continue
        block.load_state_dict(tensors, strict=False, assign=True)  # from meta: nothing allocated twice
        block.gate.weight.requires_grad_(layer.router.gate.weight.requires_grad)
        block.experts.gate_up_proj.requires_grad_(layer.experts.w1.requires_grad or layer.experts.w3.requires_grad)
        block.experts.down_proj.requires_grad_(layer.experts.w2.requires_grad)
        if getattr(layer, "shared_experts", None) is not None:
            block.shared_experts = layer.shared_experts
        block.train(layer.training)
        left = [n for n, t in block.state_dict().items() if t.is_meta]
        if left:
            raise WorkbenchError(f"train.expert_parallel: {name}: no AutoEP counterpart for {', '.join(left)}")
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, block)
        restored += 1
    return restored


def hf_state_dict(model, block_class, config, to_rank: int = 0) -> dict | None:
    """The model's state dict in transformers' layout, every expert gathered to the CPU of process `to_rank` one
    layer at a time (collective); None on the other processes. What a checkpoint's `model.safetensors` holds."""
    with torch.device("meta"):
        block = block_class(config)
    blocks = {}  # gathered first: rank 0 fails nothing of its own while the others wait in a gather
    for _, name, layer in autoep_layers(model):
        if _holds(layer, to_rank):
            blocks[name] = _hf_block_tensors(layer, block, to_rank, device="cpu")
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    if rank != to_rank:
        return None
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    for name, tensors in blocks.items():
        for key in [k for k in state if k.startswith(f"{name}.") and not k.startswith(f"{name}.shared_experts.")]:
            del state[key]
        state.update({f"{name}.{k}": v for k, v in tensors.items()})
    return state


def save_in_hf_layout(trainer, callback) -> None:
    """Checkpoints of a run that saves whole weights hold transformers' layout too (`model.safetensors`), not rank 0's
    AutoEP slice: `trainer.save_model` gathers the experts while the blocks are AutoEP's (all processes call it)."""
    original = trainer.save_model

    def save_model(output_dir=None, _internal_call=False):
        if callback.finished or not autoep_layers(trainer.model):
            return original(output_dir, _internal_call=_internal_call)
        state = hf_state_dict(trainer.model, callback.block_class, callback.config)
        if trainer.args.should_save:
            trainer._save(output_dir or trainer.args.output_dir, state_dict=state)

    trainer.save_model = save_model


def mask_local_experts(model, selection: dict[int, list[int]]) -> int:
    """Full ESFT under expert parallelism: only the selected experts' slices on this process get gradients."""
    masked = 0
    for layer_index, _, layer in autoep_layers(model):
        chosen = set(selection.get(layer_index, []))
        first = layer.ep_rank * layer.num_local_experts
        keep = torch.tensor([float(first + i in chosen) for i in range(layer.num_local_experts)])
        for param in (layer.experts.w1, layer.experts.w2, layer.experts.w3):
            if not param.requires_grad:
                continue
            mask = keep.to(device=param.device, dtype=param.dtype).view(-1, 1, 1)
            param.register_hook(lambda grad, mask=mask: grad * mask)
            masked += 1
    return masked


class ExpertParallelCallback(TrainerCallback):
    """Keeps telemetry, aux-free balancing and ESFT on AutoEP's blocks, and restores transformers' layout at the end."""

    def __init__(self, model, moe_callback=None, esft_selection: dict | None = None):
        from workbench.scale.deepspeed import moe_block_classes

        classes = moe_block_classes(model)
        if len(classes) != 1:
            raise WorkbenchError(f"train.expert_parallel: expected one kind of MoE block, found "
                                 f"{', '.join(c.__name__ for c in classes) or 'none'}")
        self.block_class = classes[0]
        self.config = model.config
        self.expected = sum(isinstance(m, self.block_class) for m in model.modules())
        # a run that saves whole weights (no LoRA: full fine-tuning, ESFT, frozen experts too) gets its experts back
        # whole; a LoRA run saves its adapter and router bias, so its experts stay split (gathering them would cost
        # a full model)
        self.saves_whole = not hasattr(model, "peft_config")
        self.moe_callback, self.esft_selection = moe_callback, esft_selection
        self.restored = 0
        self.finished = False  # set on every process when training ends (rank 0 alone holds whole experts then)
        allow_frozen_experts()

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        layers = autoep_layers(model)
        if len(layers) != self.expected:  # AutoEP missed some blocks: their experts would be whole on every process
            raise WorkbenchError(f"train.expert_parallel: DeepSpeed AutoEP replaced {len(layers)} of the model's "
                                 f"{self.expected} MoE blocks")
        share = getattr(model, "expert_share", None)  # (rank, size, first, end) where workbench.model.shards loaded
        for _, name, layer in layers if share else ():
            local = (layer.ep_rank, layer.ep_size)
            if local != share[:2]:  # DeepSpeed would keep rows this process never read
                raise WorkbenchError(f"train.expert_parallel: this process loaded routed experts {share[2]}..{share[3] - 1} "
                                     f"(expert-parallel rank {share[0]} of {share[1]}) but DeepSpeed AutoEP made it "
                                     f"rank {local[0]} of {local[1]} in {name}")
        if self.moe_callback is not None:
            self.moe_callback.recorder.rebind(model)
        if self.esft_selection:
            mask_local_experts(model, self.esft_selection)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if self.saves_whole:  # rank 0 saves: it alone gets the whole experts
            self.restored = restore_hf_layout(model, self.block_class, self.config)
        self.finished = True
