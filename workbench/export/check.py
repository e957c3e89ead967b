"""Evidence that an exported model computes what the trained model computed, on inputs that reach every expert.

    from workbench.export.check import save_reference, compare_with_reference
    save_reference(trained_model, tokenizer, final_dir, texts)   # at the end of training, before anything is saved
    compare_with_reference(exported_model, final_dir)            # later, in `workbench export`

At the end of training, with the trained model still in memory, the run picks inputs from its own data
(held-out rows first) until every routed expert of every MoE layer has received tokens, adding seeded random
token sequences when the data alone leaves an expert idle (a few rows always, for a meaningful comparison),
and stores what the in-memory model computed on them beside the final weights (`trained_reference.safetensors`):
per position its 64 largest logits with their token ids and the log-sum-exp of all logits (which moves when any
logit moves), and per MoE layer the experts each token was routed to. The export is then compared with that,
not with a model reloaded from the saved files, so a weight that was saved, merged or reloaded wrongly shows.
"""

from pathlib import Path

import torch

REFERENCE = "trained_reference.safetensors"
TOP_LOGITS = 64
MIN_ROWS, MAX_ROWS, RANDOM_ROWS, RANDOM_LENGTH = 4, 64, 32, 64


class _RouteRecorder:
    """The experts each router picks, per forward, in layer order: [(tokens, k) per MoE layer]."""

    def __init__(self, model):
        from workbench.moe.routing import find_routers

        main = model.config.get_text_config().num_hidden_layers  # an MTP layer's router is not in the main forward
        self.routers = [(layer, router) for layer, router in find_routers(model) if layer < main]
        self.picks: list[torch.Tensor] = []
        self.handles = [r.register_forward_hook(self._hook) for _, r in self.routers]

    def _hook(self, module, args, output):
        self.picks.append(output[2].detach().cpu())  # topk_indices (tokens, k)

    def take(self) -> list[torch.Tensor]:
        picks, self.picks = self.picks, []
        return picks

    def remove(self):
        for handle in self.handles:
            handle.remove()


@torch.no_grad()
def _forward(model, ids: torch.Tensor, recorder: _RouteRecorder):
    """(logits (T, V) in fp32, routes (T, layers, k) or None) for one unpadded sequence."""
    logits = model(input_ids=ids[None].to(model.device)).logits[0].float().cpu()
    picks = recorder.take()
    return logits, (torch.stack(picks, dim=1) if picks else None)


def _sequences(tokenizer, texts: list[str], vocab: int, seed: int = 0):
    for text in texts[:MAX_ROWS]:
        ids = tokenizer(text, add_special_tokens=False, truncation=True, max_length=256, return_tensors="pt").input_ids[0]
        if len(ids) > 1:
            yield ids
    generator = torch.Generator().manual_seed(seed)
    for _ in range(RANDOM_ROWS):
        yield torch.randint(0, vocab, (RANDOM_LENGTH,), generator=generator)


def _coverage(routes: list[torch.Tensor], n_layers: int, n_experts: int) -> torch.Tensor:
    """(layers, experts) token counts over the chosen sequences."""
    counts = torch.zeros(n_layers, n_experts, dtype=torch.long)
    for route in routes:  # (T, layers, k)
        for layer in range(n_layers):
            picks = route[:, layer].reshape(-1)
            counts[layer] += torch.bincount(picks[picks < n_experts], minlength=n_experts)  # top-p: unused slots hold n_experts
    return counts


def save_reference(model, tokenizer, final_dir: Path, texts: list[str]) -> dict:
    """Pick covering inputs, record what the in-memory `model` computes on them, save it; returns the coverage."""
    from safetensors.torch import save_file

    was_training = model.training
    model.eval()
    recorder = _RouteRecorder(model)
    n_layers = len(recorder.routers)
    n_experts = recorder.routers[0][1].e_score_correction_bias.numel() if n_layers else 0
    chosen, logits, routes = [], [], []
    try:
        for ids in _sequences(tokenizer, texts, model.config.vocab_size):
            out, route = _forward(model, ids, recorder)
            chosen.append(ids)
            logits.append(out)
            if route is not None:
                routes.append(route)
            covered = not n_layers or bool((_coverage(routes, n_layers, n_experts) > 0).all())
            if covered and len(chosen) >= MIN_ROWS:
                break
    finally:
        recorder.remove()
        model.train(was_training)
    all_logits = torch.cat(logits)  # (tokens, vocab)
    top = all_logits.topk(min(TOP_LOGITS, all_logits.shape[-1]), dim=-1)
    tensors = {"input_ids": torch.cat(chosen), "lengths": torch.tensor([len(c) for c in chosen]),
               "top_logits": top.values, "top_ids": top.indices, "logsumexp": all_logits.logsumexp(-1)}
    if routes:
        tensors["routes"] = torch.cat(routes).to(torch.int32)  # (tokens, layers, k)
    save_file(tensors, str(final_dir / REFERENCE))
    return _coverage_facts(routes, n_layers, n_experts, len(chosen), len(tensors["input_ids"]))


def _coverage_facts(routes, n_layers, n_experts, rows, tokens) -> dict:
    if not n_layers:
        return {"rows": rows, "tokens": tokens}
    counts = _coverage(routes, n_layers, n_experts)
    return {"rows": rows, "tokens": tokens, "experts_covered": int((counts > 0).sum()), "experts": n_layers * n_experts,
            "fewest_tokens_per_expert": int(counts.min())}


def compare_with_reference(model, final_dir: Path) -> dict | None:
    """Max differences between `model` and the stored in-memory reference, routing agreement and coverage;
    None when the run stored no reference."""
    from safetensors.torch import load_file

    path = final_dir / REFERENCE
    if not path.is_file():
        return None
    ref = load_file(str(path))
    recorder = _RouteRecorder(model)
    model.eval()
    logit_diff = lse_diff = 0.0
    routes, agree, start = [], [], 0
    try:
        for length in ref["lengths"].tolist():
            ids = ref["input_ids"][start:start + length]
            logits, route = _forward(model, ids, recorder)
            span = slice(start, start + length)
            logit_diff = max(logit_diff, (logits.gather(1, ref["top_ids"][span].long()) - ref["top_logits"][span])
                             .abs().max().item())
            lse_diff = max(lse_diff, (logits.logsumexp(-1) - ref["logsumexp"][span]).abs().max().item())
            if route is not None and "routes" in ref:
                routes.append(route)
                same = route.sort(-1).values == ref["routes"][span].long().sort(-1).values  # (T, layers, k)
                agree.append(same.all(-1).float().reshape(-1))
            start += length
    finally:
        recorder.remove()
    n_layers = routes[0].shape[1] if routes else 0
    n_experts = len(recorder.routers) and recorder.routers[0][1].e_score_correction_bias.numel()
    facts = _coverage_facts(routes, n_layers, n_experts, len(ref["lengths"]), start)
    facts.update(max_abs_logit_diff=logit_diff, max_abs_logsumexp_diff=lse_diff,
                 routing_agreement=torch.cat(agree).mean().item() if agree else 1.0)
    return facts
