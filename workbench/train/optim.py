"""`train.optimizer: muon`: Muon for the hidden matrices, each routed expert's on its own; AdamW for the rest.

    from workbench.train.optim import use_optimizer, split_parameters
    use_optimizer(trainer, recipe.train)     # the trainer builds Muon + AdamW where it would have built AdamW
    split = split_parameters(model)          # which trainable tensor goes to which optimizer, and how it is sliced

Which parameter goes where (`split_parameters`):
- Muon: every trainable 2-D weight of the hidden layers (the MLA projections, the dense and shared-expert MLPs,
  the router's gate weight, LoRA's A and B matrices, the MTP layer's projection) and the routed experts' fused 3-D
  tensors `experts.gate_up_proj` (E, 2I, H) and `experts.down_proj` (E, H, I).
- AdamW: the embeddings, the LM head (and PEFT's trained copies of them, `modules_to_save`), norms and biases.
- Neither: the router's `e_score_correction_bias` is a buffer, not a parameter; `moe.balance` moves it.
- The router's gate weight (n_experts, hidden) goes to Muon: it is a hidden linear map like any other. Moonlight's
  reference picks Muon's parameters as every matrix but the embeddings and the head, which puts its router there,
  and DeepSpeed's Muon tags parameters the same way, so the split is the same with and without ZeRO-2.

Per expert: `torch.optim.Muon` refuses 3-D parameters. `ExpertMuon` extends it: torch's own update
(`torch.optim.Muon.step`, its Newton-Schulz iteration, momentum and learning-rate adjustment) runs unchanged on
2-D views, one per expert (`Layout.matrices`): the parameter's, its gradient's and its momentum's slice. Each
expert's matrix is orthogonalised alone and its step sized by its own shape; the state stays one momentum tensor
of the parameter's shape. PEFT's per-expert LoRA (`peft.target_modules: [routed_experts]`) stacks the experts'
adapters too: A is (E*r, in), E blocks of rows; B is (out, r*E), E interleaved column blocks (PEFT's layout); each
expert's A and B are orthogonalised as that expert's own pair.

Learning rate: `adjust_lr_fn="match_rms_adamw"` (Moonlight, arXiv 2502.16982): a matrix of shape (A, B) moves by
lr * 0.2 * sqrt(max(A, B)) * O, where O is the orthogonalised momentum, so its update RMS is about 0.2 * lr, the
scale of AdamW's updates; one `train.lr` (and its schedule, and `train.weight_decay`) serves both optimizers.

DeepSpeed (ZeRO-2): DeepSpeed flattens the parameters into partitions, so a torch optimizer would see 1-D shards.
There DeepSpeed's own Muon runs (`"optimizer": {"type": "Muon"}`, workbench.scale.deepspeed): it orthogonalises
whole gradients as it fills the partitions, a 3-D tensor slice by slice (its Newton-Schulz is batched). Its step
size is Keller Jordan's sqrt(max(1, rows/cols)); `deepspeed_groups` gives the Muon matrices groups by fan-in with
lr x 0.2 * sqrt(cols) (and weight decay / the same factor), which makes the step Moonlight's above. DeepSpeed tags
parameters itself; `SplitCheck` compares its tags with this split when training starts.
"""

import math
from dataclasses import dataclass

import torch
from transformers import TrainerCallback

from workbench.errors import WorkbenchError

MUON_MOMENTUM = 0.95  # torch's and Moonlight's default
RMS_MATCH = 0.2  # Moonlight: the update RMS of AdamW that Muon's step is matched to


@dataclass(frozen=True)
class Layout:
    """How one parameter splits into the matrices Muon orthogonalises: `matrices(t)` is a (count, rows, cols) view."""
    kind: str = "matrix"  # matrix (2-D) | stack (3-D, one matrix per leading index) | lora_A | lora_B (per-expert LoRA)
    count: int = 1

    def matrices(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.kind == "stack":
            return tensor  # (experts, rows, cols)
        if self.kind == "lora_A":
            return tensor.view(self.count, -1, tensor.shape[-1])  # (experts*r, in) -> (experts, r, in)
        if self.kind == "lora_B":
            return tensor.view(tensor.shape[0], -1, self.count).permute(2, 0, 1)  # (out, r*experts) -> (experts, out, r)
        return tensor.unsqueeze(0)


MATRIX, STACK = Layout(), Layout("stack")


@dataclass
class Split:
    muon: list  # [(name, parameter)]
    adamw: list  # [(name, parameter)]
    layouts: dict  # parameter -> Layout, for every Muon parameter


def split_parameters(model) -> Split:
    """Every trainable parameter in exactly one of the two lists (the module docstring says which)."""
    adamw_only = {id(p) for module in _embedding_modules(model) for p in module.parameters()}
    lora_layouts = _expert_lora_layouts(model)
    split = Split([], [], {})
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if id(param) in adamw_only or param.ndim < 2:
            split.adamw.append((name, param))
        elif param.ndim in (2, 3):
            split.muon.append((name, param))
            split.layouts[param] = STACK if param.ndim == 3 else lora_layouts.get(id(param), MATRIX)
        else:
            raise WorkbenchError(f"train.optimizer: muon: {name} is {param.ndim}-D {tuple(param.shape)}; Muon takes "
                                 "matrices and stacks of matrices only")
    return split


def _embedding_modules(model) -> list:
    """The input embeddings, the LM head and any other embedding table (PEFT's wrappers included)."""
    found = [m for m in model.modules() if isinstance(m, torch.nn.Embedding)]
    for getter in ("get_input_embeddings", "get_output_embeddings"):
        module = getattr(model, getter, lambda: None)()
        if module is not None:
            found.append(module)
    return found


def _expert_lora_layouts(model) -> dict:
    """{id(LoRA weight): Layout} for PEFT adapters on 3-D expert parameters (`ParamWrapper` with num_experts > 1)."""
    layouts = {}
    for module in model.modules():
        experts = getattr(module, "num_experts", 1)
        if experts > 1 and hasattr(module, "lora_A") and hasattr(module, "lora_B"):
            for adapter in module.lora_A:
                layouts[id(module.lora_A[adapter].weight)] = Layout("lora_A", experts)
                layouts[id(module.lora_B[adapter].weight)] = Layout("lora_B", experts)
    return layouts


class ExpertMuon(torch.optim.Muon):
    """torch.optim.Muon that also takes stacks of matrices: each (parameter, gradient, momentum) is handed to torch's
    update as one 2-D view per matrix of its `Layout` (a 2-D parameter without one is a single matrix)."""

    def __init__(self, params, layouts: dict | None = None, **hyper):
        defaults = torch.optim.Muon([torch.nn.Parameter(torch.zeros(1, 1))], **hyper).defaults  # torch checks them
        torch.optim.Optimizer.__init__(self, params, defaults)  # skips Muon.__init__'s refusal of 3-D parameters
        self.layouts = dict(layouts or {})
        for group in self.param_groups:
            for p in group["params"]:
                if p.ndim != 2 and p not in self.layouts:
                    raise ValueError(f"ExpertMuon: a {p.ndim}-D parameter {tuple(p.shape)} needs a Layout")

    def _init_group(self, group, params_with_grad, grads, muon_momentum_bufs) -> bool:
        for p in group["params"]:
            if p.grad is None:
                continue
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(p.grad, memory_format=torch.preserve_format)
            layout = self.layouts.get(p, MATRIX)
            params_with_grad.extend(layout.matrices(p).unbind(0))  # views: torch's in-place update writes through
            grads.extend(layout.matrices(p.grad).unbind(0))
            muon_momentum_bufs.extend(layout.matrices(state["momentum_buffer"]).unbind(0))
        return False  # no complex parameters


class MuonWithAdamW(torch.optim.Optimizer):
    """One optimizer object for the Trainer (its scheduler, clipping and checkpoints see one), holding Muon's groups
    and AdamW's; each half is stepped by its own torch optimizer over the same group dicts and the same state."""

    def __init__(self, split: Split, lr: float, weight_decay: float, decay_names=None, betas=(0.9, 0.999),
                 eps: float = 1e-8, momentum: float = MUON_MOMENTUM):
        decay_names = set(decay_names) if decay_names is not None else {n for n, p in split.adamw if p.ndim >= 2}
        muon_groups = [{"params": [p for _, p in split.muon], "param_names": [n for n, _ in split.muon], "muon": True}]
        adamw_groups = [{"params": [p for n, p in split.adamw if (n in decay_names) == decay],
                         "param_names": [n for n, _ in split.adamw if (n in decay_names) == decay],
                         "weight_decay": weight_decay if decay else 0.0, "muon": False} for decay in (True, False)]
        muon_groups = [g for g in muon_groups if g["params"]]
        adamw_groups = [g for g in adamw_groups if g["params"]]
        self.muon = ExpertMuon(muon_groups, split.layouts, lr=lr, weight_decay=weight_decay, momentum=momentum,
                               adjust_lr_fn="match_rms_adamw") if muon_groups else None
        self.adamw = torch.optim.AdamW(adamw_groups, lr=lr, betas=betas, eps=eps,
                                       weight_decay=weight_decay) if adamw_groups else None
        halves = [half for half in (self.muon, self.adamw) if half is not None]
        # AdamW's groups first: the Trainer logs the first group's learning rate
        super().__init__([g for half in reversed(halves) for g in half.param_groups], {"lr": lr})
        self._link()

    def _link(self) -> None:
        """Both halves read the group dicts and the state this object holds (also after load_state_dict)."""
        for half, is_muon in ((self.muon, True), (self.adamw, False)):
            if half is not None:
                half.param_groups = [g for g in self.param_groups if g["muon"] is is_muon]
                half.state = self.state

    def load_state_dict(self, state_dict) -> None:
        super().load_state_dict(state_dict)
        self._link()

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for half in (self.muon, self.adamw):
            if half is not None:
                half.step()
        return loss


def state_bytes(optimizer) -> int:
    """Bytes held in the optimizer's state tensors (momentum, AdamW's moments), under any wrapper."""
    while hasattr(optimizer, "optimizer"):  # accelerate's AcceleratedOptimizer, DeepSpeed's ZeRO optimizer
        optimizer = optimizer.optimizer
    return sum(v.numel() * v.element_size() for s in optimizer.state.values() for v in s.values()
               if torch.is_tensor(v) and v.ndim > 0)


def describe(split: Split) -> str:
    matrices = sum(split.layouts[p].matrices(p).shape[0] for _, p in split.muon)
    stacks = sum(1 for _, p in split.muon if split.layouts[p].kind != "matrix")
    return (f"optimizer: Muon on {len(split.muon)} tensors ({matrices} matrices; {stacks} stacked per expert), "
            f"AdamW on {len(split.adamw)} (embeddings, LM head, norms, biases); one lr, Moonlight's RMS matching")


def deepspeed_groups(split: Split, lr: float, weight_decay: float, decay_names) -> list[dict]:
    """Parameter groups for DeepSpeed's Muon (ZeRO-2): AdamW's as they are, Muon's by fan-in with the learning rate
    that turns DeepSpeed's step size sqrt(max(1, rows/cols)) into Moonlight's 0.2 * sqrt(max(rows, cols)): the ratio
    is 0.2 * sqrt(cols) for either shape. Weight decay is divided by it, so lr x decay stays train.lr x decay."""
    decay_names = set(decay_names)
    groups = [{"params": [p for n, p in split.adamw if (n in decay_names) == decay], "name": f"adamw-{label}",
               "weight_decay": weight_decay if decay else 0.0} for decay, label in ((True, "decay"), (False, "no-decay"))]
    by_fan_in = {}
    for _, p in split.muon:
        by_fan_in.setdefault(p.shape[-1], []).append(p)
    for cols, params in sorted(by_fan_in.items()):
        factor = RMS_MATCH * math.sqrt(cols)
        groups.append({"params": params, "name": f"muon-in{cols}", "lr": lr * factor,
                       "weight_decay": weight_decay / factor})
    return [g for g in groups if g["params"]]


class SplitCheck(TrainerCallback):
    """DeepSpeed: when training starts, every trainable parameter's `use_muon` tag, set by DeepSpeed, must match this
    split, or the run stops naming the first that differs."""

    def __init__(self, split: Split):
        self.split = split

    def on_train_begin(self, args, state, control, **kwargs):
        for names, want in ((self.split.muon, True), (self.split.adamw, False)):
            for name, p in names:
                if getattr(p, "use_muon", None) is not want:
                    raise WorkbenchError(f"train.optimizer: muon: DeepSpeed put {name} under "
                                         f"{'Muon' if getattr(p, 'use_muon', False) else 'Adam'}, this workbench's "
                                         f"split under {'Muon' if want else 'AdamW'}")


def use_optimizer(trainer, train) -> None:
    """`train.optimizer: muon`: the trainer builds MuonWithAdamW where it would build AdamW, or under DeepSpeed hands
    DeepSpeed's Muon the groups above. The learning-rate schedule stays the trainer's (train.lr_scheduler)."""
    if train.optimizer != "muon":
        return
    create = trainer.create_optimizer

    def create_optimizer(model=None):
        model = trainer.model if model is None else model
        split = split_parameters(model)
        decay = trainer.get_decay_parameter_names(model)
        if trainer.optimizer is None:
            trainer.optimizer = MuonWithAdamW(split, lr=train.lr, weight_decay=train.weight_decay, decay_names=decay,
                                              betas=(trainer.args.adam_beta1, trainer.args.adam_beta2),
                                              eps=trainer.args.adam_epsilon)
        elif type(trainer.optimizer).__name__ == "DummyOptim":  # DeepSpeed builds its own Muon from these groups
            trainer.optimizer.params = deepspeed_groups(split, train.lr, train.weight_decay, decay)
            trainer.add_callback(SplitCheck(split))
        if trainer.args.should_log:
            print(describe(split))
        return create(model)

    trainer.create_optimizer = create_optimizer
