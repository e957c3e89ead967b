"""Peak memory per process while loading a model for expert parallelism: every process reading the whole checkpoint
(`from_pretrained`, what AutoEP runs did before) against each reading the dense weights and its share of the routed
experts (`workbench.model.shards`, what they do now).

    nice .venv/bin/python benchmarks/expert_loading.py                 # 1, 2 and 4 processes; ~2 min on 2 cores
    nice .venv/bin/python benchmarks/expert_loading.py --processes 1 2 --layers 6

The model is a random-init DeepSeek-V3 layout large enough for the routed experts to dominate, as in the real
models (64 routed experts of 512 x 512 per MoE layer, 2 shared, MLA, bf16), saved with `save_pretrained` in
100 MB safetensors shards with an index, as hub checkpoints are. For each mode and process count N, N processes
start at once (as the N processes of a node do) and each loads as expert-parallel rank r of N. Measured per process
from /proc/self/status: the resident memory after the imports, then the peak while loading (VmHWM, reset after the
imports through /proc/self/clear_refs); the difference is the loading peak.
The expectation for a share is the dense bytes plus 1/N of the expert bytes; the table prints it beside.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MIB = 2**20


def make_checkpoint(folder: Path, layers: int) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, DeepseekV3Config

    config = DeepseekV3Config(vocab_size=8000, hidden_size=512, intermediate_size=1024, moe_intermediate_size=512,
                              num_hidden_layers=layers, first_k_dense_replace=1, n_routed_experts=64,
                              n_shared_experts=2, num_experts_per_tok=4, n_group=8, topk_group=4,
                              num_attention_heads=8, num_key_value_heads=8, q_lora_rank=256, kv_lora_rank=128,
                              qk_nope_head_dim=32, qk_rope_head_dim=16, v_head_dim=32, max_position_embeddings=512)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(folder, max_shard_size="100MB")
    experts = sum(p.numel() for n, p in model.named_parameters() if ".mlp.experts." in n)
    total = sum(p.numel() for p in model.parameters())
    return {"params": total, "expert_params": experts, "dense_params": total - experts,
            "shards": len(list(folder.glob("model-*.safetensors")))}


def _status(key: str) -> int:
    """Bytes of /proc/self/status's `key` (VmRSS: resident now; VmHWM: the peak since the last reset)."""
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith(key + ":"))
    return int(line.split()[1]) * 1024


def child(folder: str, mode: str, rank: int, size: int) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from workbench.model.shards import load_expert_share

    import accelerate  # noqa: F401  (imports happen before the measurement: only the weights count)
    from transformers.models.deepseek_v3 import modeling_deepseek_v3  # noqa: F401

    config = AutoConfig.from_pretrained(folder)
    Path("/proc/self/clear_refs").write_text("5")  # resets the peak (VmHWM) to what is resident now
    imports = _status("VmRSS")
    start = time.perf_counter()
    if mode == "whole":
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16, experts_implementation="eager")
    else:
        model = load_expert_share(folder, config, torch.bfloat16, rank, size, experts_implementation="eager")
    seconds = time.perf_counter() - start
    peak = _status("VmHWM")
    print(json.dumps({"imports": imports, "peak": peak, "seconds": seconds, "params": sum(p.numel() for p in model.parameters())}))


def measure(folder: Path, mode: str, size: int) -> list[dict]:
    procs = [subprocess.Popen([sys.executable, __file__, "child", str(folder), mode, str(rank), str(size)],
                              stdout=subprocess.PIPE, text=True, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin",
                                                                      "HF_HUB_OFFLINE": "1"})
             for rank in range(size)]
    results = []
    for proc in procs:
        out, _ = proc.communicate(timeout=900)
        if proc.returncode != 0:
            raise SystemExit(f"{mode} x{size}: a loading process failed")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results_expert_loading.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "checkpoint"
        facts = make_checkpoint(folder, args.layers)
        dense, experts = 2 * facts["dense_params"], 2 * facts["expert_params"]
        print(f"checkpoint: {facts['params'] / 1e6:.0f}M parameters in bf16 ({(dense + experts) / MIB:.0f} MiB; routed "
              f"experts {experts / MIB:.0f} MiB, the rest {dense / MIB:.0f} MiB) in {facts['shards']} shards")
        rows = []
        for size in args.processes:
            for mode in ("whole", "share"):
                got = measure(folder, mode, size)
                loading = [r["peak"] - r["imports"] for r in got]
                expected = dense + experts / size if mode == "share" else dense + experts
                rows.append({"mode": mode, "processes": size, "loading_peak_mib": [round(v / MIB) for v in loading],
                             "mean_loading_peak_mib": round(sum(loading) / len(loading) / MIB, 1),
                             "peak_rss_mib": round(max(r["peak"] for r in got) / MIB),
                             "expected_mib": round(expected / MIB, 1),
                             "seconds": round(max(r["seconds"] for r in got), 2)})
                print(f"{mode:>5} x{size}: loading peak per process {rows[-1]['mean_loading_peak_mib']:7.1f} MiB "
                      f"(expected {rows[-1]['expected_mib']:7.1f}), peak RSS {rows[-1]['peak_rss_mib']} MiB, "
                      f"{rows[-1]['seconds']} s", flush=True)
    whole = {r["processes"]: r["mean_loading_peak_mib"] for r in rows if r["mode"] == "whole"}
    print("\n| processes | whole model per process (MiB) | its share per process (MiB) | share / whole | expected share |")
    print("|---|---|---|---|---|")
    for r in rows:
        if r["mode"] == "share":
            print(f"| {r['processes']} | {whole[r['processes']]:.0f} | {r['mean_loading_peak_mib']:.0f} | "
                  f"{r['mean_loading_peak_mib'] / whole[r['processes']]:.2f} | {r['expected_mib']:.0f} |")
    args.out.write_text(json.dumps({"checkpoint": facts, "rows": rows}, indent=1))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    else:
        main()
