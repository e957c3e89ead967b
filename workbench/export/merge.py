"""Export a run as one plain model directory, and prove it computes what the trained run computes.

    workbench export <run id | experiment name | final dir> [--out DIR] [--tolerance 1e-4]
    workbench apply-patch <final dir with expert_patch.json> --out DIR

LoRA (expert LoRA on the 3D routed-expert parameters included) is merged into the base weights; an
ESFT expert patch is applied onto its base model; router biases from aux-free balancing are carried.
The result is saved, reloaded with plain `AutoModelForCausalLM.from_pretrained`, and compared with what the
trained model computed in memory at the end of training (`workbench.export.check`: inputs that reach every
routed expert of every MoE layer); a difference above the tolerance fails. Runs trained before that reference
was stored are compared with their unmerged saved model on sample inputs instead, and the command says so.
"""

import copy
from dataclasses import dataclass
from pathlib import Path

import torch

from workbench.errors import WorkbenchError
from workbench.paths import FINAL_MODEL_INFO

SAMPLES = [
    "The indemnifying party shall defend and hold harmless the other party from third-party claims.",
    "A tenant who withholds rent must usually give written notice of the defect first.",
    "What is the difference between a void and a voidable contract?",
]


@dataclass
class ExportResult:
    out_dir: Path
    max_abs_diff: float
    kind: str  # "lora-merge", "expert-patch" or "full"
    against: str = "trained"  # "trained" (the in-memory reference) or "saved" (older runs: the unmerged saved model)
    facts: dict | None = None  # coverage and routing agreement (against "trained")


def final_dir_of(ref: str) -> tuple[Path, str | None]:
    """(final dir, MLflow run id or None) for a run id, an experiment name or a directory."""
    path = Path(ref)
    if (path / FINAL_MODEL_INFO).is_file():
        return path, None
    if (path / "final" / FINAL_MODEL_INFO).is_file():
        return path / "final", None
    import mlflow

    from workbench.paths import default_tracking_uri
    from workbench.track.lineage import find_run, run_output

    mlflow.set_tracking_uri(default_tracking_uri())  # the store the fine-tunes write to, wherever this runs from
    return run_output(ref, key="export"), find_run(ref, key="export").info.run_id


def sample_logits(model, tokenizer) -> torch.Tensor:
    batch = tokenizer(SAMPLES, return_tensors="pt", padding=True)
    model.eval()
    with torch.no_grad():
        return model(**{k: v.to(model.device) for k, v in batch.items()}).logits.float().cpu()


def export(ref: str, out: str | None = None, tolerance: float = 1e-4) -> ExportResult:
    from transformers import AutoModelForCausalLM

    from workbench.export.patch import apply_patch
    from workbench.model.load import load_unmerged
    from workbench.moe.patch import PATCH_INFO

    final, run_id = final_dir_of(ref)
    out_dir = Path(out) if out else final.parent / "export"
    if out_dir.exists() and (not out_dir.is_dir() or (any(out_dir.iterdir()) and not (out_dir / "config.json").is_file())):
        raise WorkbenchError(f"export: --out {out_dir} exists and is not an empty folder or an earlier export; "
                             "choose another folder")
    tuned, tokenizer = load_unmerged(final)
    if (final / PATCH_INFO).is_file():
        exported, _ = apply_patch(final)
        kind = "expert-patch"
    elif hasattr(tuned, "merge_and_unload"):
        exported, kind = copy.deepcopy(tuned).merge_and_unload(), "lora-merge"
    else:
        exported, kind = tuned, "full"
    from workbench.model import mtp

    exported.save_pretrained(out_dir)
    mtp.write_shared_copies(exported, out_dir)
    tokenizer.save_pretrained(out_dir)
    with mtp.expected_mtp_keys(exported.config.num_hidden_layers):  # the MTP layer's keys are not the main model's
        reloaded = AutoModelForCausalLM.from_pretrained(out_dir, dtype=exported.dtype)
    _route_as_trained(reloaded, final, out_dir)
    from workbench.export.check import compare_with_reference

    facts = compare_with_reference(reloaded, final)
    if facts is not None:
        diff, against = max(facts["max_abs_logit_diff"], facts["max_abs_logsumexp_diff"]), "trained"
    else:
        diff, against = (sample_logits(reloaded, tokenizer) - sample_logits(tuned, tokenizer)).abs().max().item(), "saved"
    mtp_diff = None
    if mtp.mtp_layers(exported):  # the MTP layer as transformers' MtpModel reads it from the export
        mtp.attach(reloaded, str(out_dir), init="checkpoint", key="export")
        saved, now = mtp.mtp_layers(exported)[0].state_dict(), mtp.mtp_layers(reloaded)[0].state_dict()
        mtp_diff = max((saved[k].float() - now[k].float()).abs().max().item() for k in saved)
        if mtp_diff > tolerance:
            raise WorkbenchError(f"export: the exported MTP layer differs from the trained one by {mtp_diff:.3g} "
                                 f"(tolerance {tolerance:g}); not safe to use: {out_dir}")
    if run_id:
        import mlflow

        with mlflow.start_run(run_id=run_id):
            metrics = dict(facts or {"max_abs_logit_diff": diff})
            if mtp_diff is not None:
                metrics["mtp_max_abs_diff"] = mtp_diff
            mlflow.log_metrics({f"export/{k}": v for k, v in metrics.items()})
            mlflow.set_tag("export_dir", str(out_dir))
    if diff > tolerance:
        routing = f"; routing agreed on {facts['routing_agreement']:.2%} of token-layers" if facts else ""
        raise WorkbenchError(f"export: the exported model differs from the trained one by {diff:.3g} "
                             f"(tolerance {tolerance:g}){routing}; not safe to use: {out_dir}")
    return ExportResult(out_dir=out_dir, max_abs_diff=diff, kind=kind, against=against, facts=facts)


def _route_as_trained(reloaded, final: Path, out_dir: Path) -> None:
    """A top-p run (workbench.moe.top_p) is compared routed as it was trained; plain transformers routes the folder
    top-k, which the one-line warning says."""
    from workbench.model.load import final_routing
    from workbench.moe.top_p import apply_routing, describe

    routing = final_routing(final)
    if routing:
        apply_routing(reloaded, routing)
        print(f"warning: export: the run routes {describe(routing)} (moe.routing), which is workbench-only: plain "
              f"transformers loads {out_dir} with DeepSeek-V3's top-k; `workbench eval/generate <run>` routes as trained")


def apply_patch_to_dir(patch_dir: str, out: str) -> Path:
    from workbench.export.patch import apply_patch
    from workbench.moe.patch import PATCH_INFO

    source = Path(patch_dir)
    if Path(out).exists() and not Path(out).is_dir():
        raise WorkbenchError(f"apply-patch: --out {out} exists and is not a folder")
    if not (source / PATCH_INFO).is_file():
        raise WorkbenchError(f"{patch_dir}: no {PATCH_INFO} here (an ESFT run's final/ directory holds one)")
    model, tokenizer = apply_patch(source)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return Path(out)
