"""GPU proof: does the workbench work on this CUDA node? One command, a few minutes, one JSON report.

    make gpu-wheels PYTHON_VERSION=3.12   # on a machine with PyPI: wheels/py3.12/{stack,columnar,bitsandbytes}/
    make gpu-proof                        # on the GPU node, with those folders: nothing comes from the network
    make gpu-proof DRY=1                  # the same wiring on a CPU machine (small model, fp32, CUDA checks skipped)

Three steps, each a subcommand (the Makefile runs them; the first two use only the standard library):
  wheels  downloads gpu_wheels.txt's sections for a target Python into one folder each (pip download, binary
          wheels for manylinux x86_64; deepspeed, which PyPI has only as an sdist, built into a pure-Python wheel)
  setup   makes a fresh virtual environment on the node's Python with --system-site-packages (so the node's CUDA
          torch is used as it is) and installs the carried folders with `pip install --no-index`; the dry run's
          environment is clean instead and takes torch from this machine's local wheel ($PIP_FIND_LINKS)
  run     runs the checks of benchmarks/gpu_checks.py, each group in its own process with a time limit (one that
          fails, hangs or crashes never stops the others), writes <out>/report.json and prints one screen
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WHEEL_LIST = ROOT / "benchmarks" / "gpu_wheels.txt"
# pip matches no manylinux tag below the one it is given, so every glibc from 2.17 (manylinux2014) to 2.28 is named
PLATFORMS = [f"manylinux_2_{minor}_x86_64" for minor in range(28, 16, -1)] + ["manylinux2014_x86_64"]
FROM_SDIST = {"deepspeed"}  # no wheel on PyPI: built here with --no-deps into a py3-none-any wheel
GPU_GROUPS = ("stack", "columnar", "bitsandbytes")
DRY_GROUPS = ("stack", "columnar", "node")
# seconds each group may take before it counts as failed (the GPU proof as a whole aims at ~6 minutes)
TIME_LIMITS = {"train": 900, "kernels": 300, "qlora": 300, "zero2": 600, "zero3": 600, "autoep": 600, "bench": 900}
ORDER = ("train", "kernels", "qlora", "zero2", "zero3", "autoep", "bench")


def wheel_groups(path: Path = WHEEL_LIST) -> dict[str, list[str]]:
    """gpu_wheels.txt's sections: `# [name]` headers, then `package==version` lines."""
    groups, current = {}, None
    for line in path.read_text().splitlines():
        header = re.match(r"#\s*\[(\w+)\]", line)
        if header:
            current = groups.setdefault(header.group(1), [])
        elif line.strip() and not line.startswith("#"):
            current.append(line.strip())
    return groups


def _name(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", requirement.split("==")[0]).lower()


def _wheel_name(filename: str) -> tuple[str, str]:
    """(normalised name, version) of a wheel file."""
    name, version = filename.split("-")[:2]
    return re.sub(r"[-_.]+", "-", name).lower(), version


def folder_sizes(root: Path) -> dict:
    """Per group folder: MiB and the number of wheels."""
    sizes = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        wheels = list(folder.glob("*.whl"))
        sizes[folder.name] = {"mib": round(sum(w.stat().st_size for w in wheels) / 2**20, 1), "wheels": len(wheels)}
    return sizes


def download(python_version: str, out: Path, groups: list[str]) -> dict:
    """Download each group's pinned wheels for `python_version` into out/<group>/, dropping any other wheel there."""
    sections = wheel_groups()
    for group in groups:
        folder = out / group
        folder.mkdir(parents=True, exist_ok=True)
        wanted = {(_name(r), r.split("==")[1]) for r in sections[group]}
        for stale in folder.glob("*.whl"):
            if _wheel_name(stale.name) not in wanted:
                stale.unlink()
        binary = [r for r in sections[group] if _name(r) not in FROM_SDIST]
        platforms = [arg for platform in PLATFORMS for arg in ("--platform", platform)]
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                        "--python-version", python_version, "--implementation", "cp", *platforms, "-d", str(folder),
                        *binary], check=True)
        for requirement in [r for r in sections[group] if _name(r) in FROM_SDIST]:
            if not any(_wheel_name(w.name) == (_name(requirement), requirement.split("==")[1]) for w in folder.glob("*.whl")):
                subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                                "-w", str(folder), requirement], check=True)
    return folder_sizes(out)


def setup(wheels: Path, venv: Path, dry: bool) -> dict:
    """A fresh environment with the carried groups installed from their folders, never from an index."""
    groups = [g for g in (DRY_GROUPS if dry else GPU_GROUPS) if (wheels / g).is_dir()]
    # a node that has numpy, pandas and pyarrow needs no columnar folder (pip says so where it lacks them)
    missing = [g for g in ("stack", *(["columnar", "node"] if dry else [])) if g not in groups]
    if missing:
        raise SystemExit(f"gpu-proof: {wheels} has no {', '.join(missing)}/ folder: run `make gpu-wheels "
                         f"PYTHON_VERSION={sys.version_info[0]}.{sys.version_info[1]}` where PyPI is reachable")
    if not dry:
        probe = subprocess.run([sys.executable, "-c", "import torch; print(torch.__version__)"], capture_output=True,
                               text=True)
        if probe.returncode != 0:
            raise SystemExit(f"gpu-proof: {sys.executable} cannot import torch; run it with the node's Python that has "
                             "its CUDA torch (make gpu-proof GPU_PYTHON=/path/to/python)")
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", *([] if dry else ["--system-site-packages"]), str(venv)], check=True)
    sections = wheel_groups()
    requirements = venv / "carried-requirements.txt"
    requirements.write_text("".join(f"{r}\n" for g in groups for r in sections[g]))
    links = [arg for g in groups for arg in ("--find-links", str(wheels / g))]
    extra = []
    if dry:  # torch from this machine's local wheel, standing in for the node's own torch
        links += [arg for path in os.environ.get("PIP_FIND_LINKS", "").split() for arg in ("--find-links", path)]
        extra = ["torch==2.13.0"]
    command = [str(venv / "bin" / "python"), "-m", "pip", "install", "--no-index", "--no-compile", *links, "-r", str(requirements), *extra]
    start = time.perf_counter()
    out = subprocess.run(command, capture_output=True, text=True)
    record = {"command": command, "groups": groups, "seconds": round(time.perf_counter() - start, 1),
              "returncode": out.returncode, "output_tail": (out.stdout + out.stderr)[-4000:], "dry": dry,
              "wheels": str(wheels), "sizes": folder_sizes(wheels)}
    (venv / "install.json").write_text(json.dumps(record, indent=1))
    if out.returncode != 0:
        raise SystemExit(f"gpu-proof: pip install --no-index failed:\n{record['output_tail']}")
    return record


# ---------------------------------------------------------------- running the checks

def install_check(venv: Path) -> dict:
    """The environment holds exactly the carried pins (or the node's own copy at the pinned version), transformers
    is the pinned one, and pip ran with --no-index."""
    import importlib.metadata as metadata

    record = json.loads((venv / "install.json").read_text())
    if "--no-index" not in record["command"]:
        return _result("failed", "pip install ran without --no-index")
    sections = wheel_groups()
    pins = {_name(r): r.split("==")[1] for g in record["groups"] for r in sections[g]}
    allowed = {"pip", "setuptools", "wheel", *(("torch",) if record["dry"] else ())}
    inside, problems = {}, []
    for dist in metadata.distributions():
        name = re.sub(r"[-_.]+", "-", dist.metadata["Name"]).lower()
        where = Path(dist.locate_file("")).resolve()
        if str(where).startswith(str(venv.resolve())):
            inside[name] = dist.version
            if name not in pins and name not in allowed:
                problems.append(f"{name} {dist.version} is not in the carried list")
    for name, version in pins.items():
        try:
            found = metadata.version(name)
        except metadata.PackageNotFoundError:
            found = None
        if found != version:
            problems.append(f"{name}: {found} installed, {version} carried")
    import transformers

    if not str(Path(transformers.__file__).resolve()).startswith(str(venv.resolve())):
        problems.append(f"transformers is imported from {transformers.__file__}, not the environment")
    if problems:
        return _result("failed", "; ".join(problems[:3]) + (f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""))
    import torch

    own = "environment" if str(Path(torch.__file__).resolve()).startswith(str(venv.resolve())) else "node"
    return _result("passed", figures={"installed": len(inside), "carried": len(pins), "install_s": record["seconds"],
                                      "groups": record["groups"], "sizes_mib": record["sizes"],
                                      "torch": f"{torch.__version__} ({own})", "transformers": transformers.__version__})


def _result(status: str, reason: str | None = None, figures: dict | None = None, seconds: float = 0.0,
            cpu_s: float | None = None) -> dict:
    """One check's verdict; seconds of wall time and, where a child measured it, of its process's CPU time (on a
    shared machine the steadier figure)."""
    return {"status": status, "reason": reason, "figures": figures or {}, "seconds": round(seconds, 1),
            "cpu_s": None if cpu_s is None else round(cpu_s, 1)}


def child(group: str, out: Path, dry: bool) -> None:
    """Run one group's checks in this process, writing each result as soon as it is known."""
    import traceback

    import torch

    from benchmarks import gpu_checks as checks

    ctx = checks.Context(out=out, dry=dry, cuda=torch.cuda.is_available() and not dry)
    results, path = {}, out / "results" / f"{group}.json"
    try:
        checks.prepare_models(ctx)
    except Exception as exc:  # no models: every check of the group fails with the same reason
        traceback.print_exc()
        ctx.models = None
        reason = f"preparing the models: {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
    for name, check in checks.GROUPS[group]:
        start, cpu = time.perf_counter(), time.process_time()
        try:
            if ctx.models is None:
                raise checks.Fail(reason)
            status, why, figures = "passed", None, check(ctx)
        except checks.Skip as skip:
            status, why, figures = "skipped", str(skip), None
        except Exception as exc:  # a failed check is a result, never the end of the group
            traceback.print_exc()
            first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
            status, why, figures = "failed", first if isinstance(exc, checks.Fail) else f"{type(exc).__name__}: {first}", None
        results[name] = _result(status, why, figures, time.perf_counter() - start, time.process_time() - cpu)
        print(f"[gpu-proof] {name}: {results[name]['status']} {results[name]['reason'] or ''}", flush=True)
        path.write_text(json.dumps(results, indent=1, default=str))


def run_group(group: str, out: Path, dry: bool, names: list[str]) -> dict:
    """A group's checks in a child process; a check it did not report on failed with the child's last words."""
    path = out / "results" / f"{group}.json"
    # DeepSpeed's JIT-compiled ops go to the proof's own folder: built against this environment's torch headers,
    # they would otherwise make the project's .venv rebuild its own (ninja sees other headers), and the reverse
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "TRL_EXPERIMENTAL_SILENCE": "1", "DISABLE_MLFLOW_INTEGRATION": "TRUE",
           "HF_HUB_DISABLE_TELEMETRY": "1", "TORCH_EXTENSIONS_DIR": str(out / "torch_extensions")}
    if dry:  # the tiny model gains nothing from a second thread, and on a shared 2-core machine loses much to waiting
        env.setdefault("OMP_NUM_THREADS", "1")
    start = time.perf_counter()
    with open(out / "logs" / f"{group}.log", "w") as log:
        try:
            code = subprocess.run([sys.executable, __file__, "child", group, "--out", str(out), *(["--dry"] if dry else [])],
                                  stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
                                  timeout=TIME_LIMITS[group]).returncode
            why = f"the {group} process died (exit {code})"
        except subprocess.TimeoutExpired:
            why = f"timed out: the {group} group ran past {TIME_LIMITS[group]} s"
    results = json.loads(path.read_text()) if path.is_file() else {}
    tail = [line for line in (out / "logs" / f"{group}.log").read_text().splitlines() if line.strip()][-1:]
    for name in names:
        if name not in results:
            results[name] = _result("failed", f"{why}: {tail[0][:200] if tail else ''}", seconds=time.perf_counter() - start)
    return results


def device_facts(dry: bool) -> dict:
    import platform

    import torch

    facts = {"python": platform.python_version(), "torch": torch.__version__, "dry_run": dry,
             "cuda": torch.cuda.is_available() and not dry}
    if facts["cuda"]:
        facts.update(gpu=torch.cuda.get_device_name(0), gpus=torch.cuda.device_count(), cuda_version=torch.version.cuda,
                     gpu_memory_gib=round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1))
    else:  # what each check's process gets (run_group sets one thread for the dry run unless OMP_NUM_THREADS says)
        facts["cpu_threads"] = int(os.environ.get("OMP_NUM_THREADS") or (1 if dry else torch.get_num_threads()))
    return facts


def run(out: Path, venv: Path, dry: bool, zero: bool = False) -> int:
    from benchmarks import gpu_checks as checks

    started = time.perf_counter()
    for leftover in ("results", "runs", "logs", "mlflow.db", "report.json", "bench.json"):
        target = out / leftover
        shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    (out / "results").mkdir(parents=True)
    (out / "logs").mkdir()
    facts = device_facts(dry)
    report = {"device": facts, "checks": {"install": install_check(venv)}}
    for group in ORDER:
        names = [name for name, _ in checks.GROUPS[group]]
        if not facts["cuda"] and group in checks.NEEDS_CUDA:
            where = "the dry run is CPU-only" if dry else "no CUDA device"
            report["checks"].update({n: _result("skipped", f"needs CUDA ({checks.NEEDS_CUDA[group]}); {where}")
                                     for n in names})
            continue
        if dry and group in checks.DRY_OPT_IN and not zero:
            report["checks"].update({n: _result("skipped", checks.DRY_OPT_IN[group]) for n in names})
            continue
        print(f"[gpu-proof] {group} ...", flush=True)
        report["checks"].update(run_group(group, out, dry, names))
    report["wall_s"] = round(time.perf_counter() - started, 1)
    (out / "report.json").write_text(json.dumps(report, indent=1, default=str))
    print(summary(report, out))
    return 0 if all(c["status"] != "failed" for c in report["checks"].values()) else 1


def summary(report: dict, out: Path) -> str:
    """One screen: the machine, every check with its figures or its reason, the count."""
    facts, checks = report["device"], report["checks"]
    where = (f"{facts['gpu']} x{facts['gpus']} ({facts['gpu_memory_gib']} GiB), CUDA {facts['cuda_version']}"
             if facts["cuda"] else f"CPU ({facts['cpu_threads']} thread(s) a check){', dry run: small model, fp32' if facts['dry_run'] else ''}")
    lines = [f"GPU proof on {where}; torch {facts['torch']}, Python {facts['python']}"]
    sizes = checks["install"]["figures"].get("sizes_mib", {})
    if sizes:
        lines.append("wheels: " + ", ".join(f"{g} {s['mib']} MiB ({s['wheels']})" for g, s in sizes.items()))
    lines.append(f"{'check':<19} {'result':<7} {'wall s':>6} {'cpu s':>6}  figures / reason")
    for name, result in checks.items():
        text = result["reason"] if result["status"] != "passed" else _figures(name, result["figures"])
        cpu = "" if result.get("cpu_s") is None else f"{result['cpu_s']:.1f}"
        lines.append(f"{name:<19} {result['status']:<7} {result['seconds']:>6.1f} {cpu:>6}  {text}"[:170])
    counts = {s: sum(c["status"] == s for c in checks.values()) for s in ("passed", "failed", "skipped")}
    lines.append(f"gpu-proof: {counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped in "
                 f"{report['wall_s'] / 60:.1f} min; report {out / 'report.json'}")
    return "\n".join(lines)


def _figures(name: str, f: dict) -> str:
    if "loss_first" in f:
        text = f"loss {f['loss_first']:.3f} -> {f['loss_last']:.3f} in {f['steps']} steps ({f.get('dtype', '')}"
        text += f", {f['train_s']} s)" if "train_s" in f else ")"
        extra = {k: f[k] for k in ("mtp_loss_last", "replay_applied", "backend", "export_max_abs_diff") if k in f}
        return text + "".join(f", {k} {v:.3g}" if isinstance(v, float) else f", {k} {v}" for k, v in extra.items())
    if name == "install":
        return (f"{f['installed']} packages from the folders (pip --no-index, {f['install_s']} s), torch {f['torch']}, "
                f"transformers {f['transformers']}")
    if name == "speculative":
        return (f"acceptance {f['acceptance_rate']:.2f}, {f['tokens_per_forward']:.2f} tokens/forward, "
                f"identical to greedy on {f['identical']:.0%} of {f['prompts']} prompts ({f['dtype']})")
    if name.startswith("kernels/"):
        errors = {k[4:]: v for k, v in f.items() if k.startswith("err_")}
        worst = max(errors, key=errors.get)
        return f"{f['dtype']}: worst rel. error {errors[worst]:.1e} ({worst}; eager {f['eager_err_' + worst]:.1e})"
    if name == "bench":
        row = f["workbench"]
        return (f"workbench {row['tokens_per_s']:,} tok/s, MFU {row['mfu']:.1%} of a {f['matmul_peak_tflops']} TFLOP/s "
                f"bf16 matmul")
    return ", ".join(f"{k} {v}" for k, v in f.items())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    wheels = sub.add_parser("wheels", help="download the carried wheels for a Python version")
    wheels.add_argument("--python-version", required=True)
    wheels.add_argument("--out", type=Path, required=True)
    wheels.add_argument("--groups", default=",".join(GPU_GROUPS))
    for name in ("setup", "run"):
        step = sub.add_parser(name)
        step.add_argument("--wheels", type=Path)
        step.add_argument("--venv", type=Path, required=True)
        step.add_argument("--out", type=Path)
        step.add_argument("--dry", action="store_true")
        step.add_argument("--zero", action="store_true", help="dry run: ZeRO-2/3 on CPU too (+2-4 min of op builds)")
    inner = sub.add_parser("child")
    inner.add_argument("group")
    inner.add_argument("--out", type=Path, required=True)
    inner.add_argument("--dry", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "wheels":
        sizes = download(args.python_version, args.out, args.groups.split(","))
        print("\n".join(f"{args.out / g}: {s['wheels']} wheels, {s['mib']} MiB" for g, s in sizes.items()))
        return 0
    if args.command == "setup":
        record = setup(args.wheels, args.venv, args.dry)
        print(f"gpu-proof: {args.venv} installed from {', '.join(record['groups'])} with --no-index in {record['seconds']} s")
        return 0
    sys.path.insert(0, str(ROOT))
    if args.command == "child":
        child(args.group, args.out.resolve(), args.dry)
        return 0
    return run(args.out.resolve(), args.venv, args.dry, args.zero)


if __name__ == "__main__":
    sys.exit(main())
