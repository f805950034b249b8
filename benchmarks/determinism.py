"""Where does training stop being bit-identical? Runs of the study's main model, each in its own process,
under settings that a different machine could change: the thread count, and the instruction set that
PyTorch's own kernels (``ATEN_CPU_CAPABILITY``), oneDNN (``ONEDNN_MAX_CPU_ISA``) and MKL
(``MKL_ENABLE_INSTRUCTIONS``) dispatch to, which follows the CPU unless capped. A CPU without AVX-512
picks the AVX2 kernels, which sum in other orders; capping them here shows what that does on one
machine. Each variant trains ``--steps`` steps of the cpu profile's ``train`` section (the same seed,
data and latents) and is compared with the reference run: identical weights or not, the largest
weight difference relative to the weights' scale, and the first step whose loss differs.

    python benchmarks/determinism.py [--steps 40] [--out reports/determinism]

Writes ``OUT/determinism.json`` and ``OUT/README.md``. Needs the study's data and autoencoder stage.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
# name: (threads, environment, deterministic algorithms); the first is the reference.
VARIANTS = {
    "reference (2 threads)": (2, {}, False),
    "the same, another process": (2, {}, False),
    "deterministic algorithms": (2, {}, True),
    "1 thread": (1, {}, False),
    "ATen kernels capped at AVX2": (2, {"ATEN_CPU_CAPABILITY": "avx2"}, False),
    "oneDNN capped at AVX2": (2, {"ONEDNN_MAX_CPU_ISA": "AVX2"}, False),
    "MKL capped at AVX2": (2, {"MKL_ENABLE_INSTRUCTIONS": "AVX2"}, False),
    "all three capped at AVX2": (2, AVX2, False),
}


def child(steps: int, threads: int, deterministic: bool, out: Path) -> None:
    """One run (in this process): train, then save the EMA weights and the loss per step to ``out``."""
    from streamdit.config import load_config
    from streamdit.runs import read_history
    from streamdit.train import run_key, train

    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic)
    overrides = {"train": {"steps": steps, "checkpoint_every": steps, "log_every": steps, "device": "cpu"}}
    cfg = load_config("params.yaml", "cpu", overrides)
    with tempfile.TemporaryDirectory() as work:
        train(cfg, Path(work) / "model.pt", work_root=Path(work) / "runs", progress=False)
        state = torch.load(Path(work) / "model.pt", map_location="cpu", weights_only=False)["ema"]
        loss = read_history(Path(work) / "runs", run_key(cfg))
    torch.save({"ema": state, "loss": loss, "capability": torch.backends.cpu.get_cpu_capability()}, out)


def compare(a: dict, b: dict) -> dict:
    """How far run ``b`` is from the reference ``a``: identical weights, the largest weight difference
    over the largest reference weight, and the first step (1-based) whose loss differs."""
    keys = sorted(a["ema"])
    identical = all(torch.equal(a["ema"][k], b["ema"][k]) for k in keys)
    diff = max(float((a["ema"][k].float() - b["ema"][k].float()).abs().max()) for k in keys)
    scale = max(float(a["ema"][k].float().abs().max()) for k in keys)
    first = next((i + 1 for i, (x, y) in enumerate(zip(a["loss"], b["loss"], strict=True)) if x != y), None)
    return {
        "identical_weights": identical,
        "max_weight_difference_relative": diff / scale,
        "first_differing_loss_step": first,
        "final_loss": b["loss"][-1],
        "final_loss_difference": b["loss"][-1] - a["loss"][-1],
        "kernels": b["capability"],
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="benchmarks/determinism.py", description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40, help="training steps per run (default 40)")
    parser.add_argument("--out", type=Path, default=Path("reports/determinism"))
    parser.add_argument(
        "--child", nargs=3, metavar=("THREADS", "DETERMINISTIC", "OUT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.child:
        child(args.steps, int(args.child[0]), args.child[1] == "1", Path(args.child[2]))
        return {}
    args.out.mkdir(parents=True, exist_ok=True)
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, (threads, env, deterministic)) in enumerate(VARIANTS.items()):
            path = Path(tmp) / f"{i}.pt"
            print(f"{name} ...", flush=True)
            cmd = [sys.executable, __file__, "--steps", str(args.steps), "--child", str(threads),
                   "1" if deterministic else "0", str(path)]  # fmt: skip
            subprocess.run(cmd, check=True, env={**os.environ, **env})
            runs[name] = torch.load(path, weights_only=False)
    reference = next(iter(runs.values()))
    results = {
        "steps": args.steps,
        "cpu": cpu_name(),
        "torch": torch.__version__,
        "variants": {
            name: {
                "threads": VARIANTS[name][0],
                "environment": VARIANTS[name][1],
                "deterministic_algorithms": VARIANTS[name][2],
                **compare(reference, run),
            }  # fmt: skip
            for name, run in runs.items()
        },
    }
    (args.out / "determinism.json").write_text(json.dumps(results, indent=1) + "\n")
    (args.out / "README.md").write_text(readme(results))
    print(readme(results))
    return results


def cpu_name() -> str:
    """The CPU's model name (Linux), or "unknown"."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return "unknown"
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "unknown")


def readme(results: dict) -> str:
    lines = [
        "# Bit-identity of training across thread counts and kernel choices",
        "",
        f"`python benchmarks/determinism.py --steps {results['steps']}`: the cpu profile's main model "
        f"trained {results['steps']} steps per run, each run in its own process, on {results['cpu']} (torch "
        f"{results['torch']}); every run against the first.",
        "",
        "| run | kernels | identical weights | max weight difference (relative) | first loss step that "
        "differs | final loss |",
        "|---|---|---|---|---|---|",
    ]
    for name, v in results["variants"].items():
        first = v["first_differing_loss_step"] or "none"
        lines.append(
            f"| {name} | {v['kernels']} | {'yes' if v['identical_weights'] else 'no'} | "
            f"{v['max_weight_difference_relative']:.2e} | {first} | {v['final_loss']:.6f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
