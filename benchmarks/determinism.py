"""Where does training stop being bit-identical? Runs of the study's main model and of its autoencoder,
each in its own process, under settings that a different machine could change: the thread count, and the
instruction set that PyTorch's own kernels (``ATEN_CPU_CAPABILITY``), oneDNN (``ONEDNN_MAX_CPU_ISA``) and
MKL (``MKL_ENABLE_INSTRUCTIONS``) dispatch to, which follows the CPU unless capped, and MKL's
conditional numerical reproducibility (``MKL_CBWR=COMPATIBLE``: the code path MKL promises to run alike
on every x86 CPU). A CPU without AVX-512 picks the AVX2 kernels, which sum in other orders; capping them
here shows what that does on one machine. Each variant trains ``--steps`` steps of the cpu profile's
``train`` section (the DiT: the same seed, data and latents; its linear layers call MKL's SGEMM) and
``--autoencoder-steps`` steps of its ``autoencoder`` section (convolutions, which oneDNN runs), and is
compared with the reference run: identical weights or not, the largest weight difference relative to
the weights' scale, and the first step whose loss differs.

    python benchmarks/determinism.py [--steps 40] [--autoencoder-steps 200] [--out reports/determinism]

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
    "MKL in its cross-CPU mode": (2, {"MKL_CBWR": "COMPATIBLE"}, False),
}
MODELS = ("dit", "autoencoder")
# MKL and oneDNN name every call they run (its implementation and, for MKL, whether its cross-CPU mode is
# on): which libraries' kernels a training step depends on.
VERBOSE = {"MKL_VERBOSE": "1", "ONEDNN_VERBOSE": "1"}


def child(model: str, steps: int, threads: int, deterministic: bool, out: Path) -> None:
    """One run (in this process) of ``model`` ("dit" or "autoencoder"): train, then save the weights (the
    DiT's EMA), the loss per step and the training loop's seconds to ``out``."""
    from streamdit.autoencoder_training import train_world_autoencoder
    from streamdit.config import load_config
    from streamdit.runs import read_history
    from streamdit.train import run_key, train

    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic)
    section = "train" if model == "dit" else "autoencoder"
    overrides = {section: {"steps": steps, "checkpoint_every": steps, "device": "cpu"}}
    if model == "dit":
        overrides["train"]["log_every"] = steps
    cfg = load_config("params.yaml", "cpu", overrides)
    with tempfile.TemporaryDirectory() as work:
        if model == "dit":
            summary = train(cfg, Path(work) / "model.pt", work_root=Path(work) / "runs", progress=False)
            state = torch.load(Path(work) / "model.pt", map_location="cpu", weights_only=False)["ema"]
            loss, seconds = read_history(Path(work) / "runs", run_key(cfg)), summary["train_seconds"]
        else:
            autoencoder, run = train_world_autoencoder(cfg, work_root=Path(work) / "runs")
            state, loss, seconds = autoencoder.state_dict(), run.history, run.elapsed
    capability = torch.backends.cpu.get_cpu_capability()
    torch.save({"ema": state, "loss": loss, "capability": capability, "seconds": seconds}, out)


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
    parser.add_argument("--steps", type=int, default=40, help="DiT training steps per run (default 40)")
    parser.add_argument(
        "--autoencoder-steps", type=int, default=200, help="autoencoder steps per run (default 200)"
    )
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--out", type=Path, default=Path("reports/determinism"))
    parser.add_argument(
        "--child",
        nargs=5,
        metavar=("MODEL", "STEPS", "THREADS", "DETERMINISTIC", "OUT"),
        help=argparse.SUPPRESS,
    )
    args = parser.parse_args(argv)
    if args.child:
        model, steps, threads, deterministic, out = args.child
        child(model, int(steps), int(threads), deterministic == "1", Path(out))
        return {}
    args.out.mkdir(parents=True, exist_ok=True)
    results = {"cpu": cpu_name(), "torch": torch.__version__, "models": {}}
    for model in args.models:
        steps = args.steps if model == "dit" else args.autoencoder_steps
        runs = {}
        with tempfile.TemporaryDirectory() as tmp:
            print(f"{model}: the kernels of one training step ...", flush=True)
            threads = str(next(iter(VARIANTS.values()))[0])  # the reference run's
            cmd = [sys.executable, __file__, "--child", model, "1", threads, "0", str(Path(tmp) / "calls.pt")]
            listed = subprocess.run(
                cmd, check=True, env={**os.environ, **VERBOSE}, capture_output=True, text=True
            )
            for i, (name, (threads, env, deterministic)) in enumerate(VARIANTS.items()):
                path = Path(tmp) / f"{i}.pt"
                print(f"{model}: {name} ...", flush=True)
                cmd = [sys.executable, __file__, "--child", model, str(steps), str(threads),
                       "1" if deterministic else "0", str(path)]  # fmt: skip
                subprocess.run(cmd, check=True, env={**os.environ, **env})
                runs[name] = torch.load(path, weights_only=False)
        reference = next(iter(runs.values()))
        results["models"][model] = {
            "steps": steps,
            "kernels_called": kernel_calls(listed.stdout),
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


def kernel_calls(log: str) -> dict[str, int]:
    """Calls per library kernel in MKL's and oneDNN's verbose ``log``: ``{"oneDNN convolution
    forward_training jit:avx512_core": 14, "MKL SGEMM CNR:OFF": 40, ...}`` (oneDNN's reorders left out)."""
    calls: dict[str, int] = {}
    for line in log.splitlines():
        fields = line.split(",")
        if line.startswith("onednn_verbose") and len(fields) > 7 and fields[3] == "exec":
            if fields[5] != "reorder":
                name = f"oneDNN {fields[5]} {fields[7]} {fields[6]}"
                calls[name] = calls.get(name, 0) + 1
        elif line.startswith("MKL_VERBOSE") and "(" in line.split()[1]:
            words = line.split()
            cnr = next((w for w in words if w.startswith("CNR:")), "CNR:?")
            name = f"MKL {words[1].split('(')[0]} {cnr}"
            calls[name] = calls.get(name, 0) + 1
    return dict(sorted(calls.items()))


def cpu_name() -> str:
    """The CPU's model name (Linux), or "unknown"."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return "unknown"
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "unknown")


WHAT = {
    "dit": "the cpu profile's main model (the DiT)",
    "autoencoder": "the cpu profile's world autoencoder",
}


def readme(results: dict) -> str:
    models = results["models"]
    command = "`python benchmarks/determinism.py" + "".join(
        f" --steps {m['steps']}" if name == "dit" else f" --autoencoder-steps {m['steps']}"
        for name, m in models.items()
    )
    lines = [
        "# Bit-identity of training across thread counts and kernel choices",
        "",
        f"{command} --models {' '.join(models)}`: each model trained the given steps per run, each run in "
        f"its own process, on {results['cpu']} (torch {results['torch']}); every run against the first. "
        "`kernels`: the instruction set PyTorch's own kernels ran.",
    ]
    for name, model in models.items():
        lines += [
            "",
            f"## {WHAT[name]}, {model['steps']} steps",
            "",
            "| run | environment | kernels | identical weights | max weight difference (relative) | "
            "first loss step that differs | final loss |",
            "|---|---|---|---|---|---|---|",
        ]
        for run, v in model["variants"].items():
            first = v["first_differing_loss_step"] or "none"
            env = " ".join(f"`{k}={x}`" for k, x in v["environment"].items()) or "-"
            lines.append(
                f"| {run} | {env} | {v['kernels']} | {'yes' if v['identical_weights'] else 'no'} | "
                f"{v['max_weight_difference_relative']:.2e} | {first} | {v['final_loss']:.6f} |"
            )
        lines += [
            "",
            "The library kernels a run of one training step calls, as `MKL_VERBOSE=1 ONEDNN_VERBOSE=1` logs "
            "them (PyTorch's own kernels log nothing; the DiT's attention runs one small SGEMM per window, "
            "head and sample, its linear layers one each):",
            "",
            "| kernel | calls |",
            "|---|---|",
            *(f"| {kernel} | {n} |" for kernel, n in model["kernels_called"].items()),
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
