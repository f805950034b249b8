"""Does the Makefile's allocator setting speed the study up without changing what it computes?

glibc serves an allocation above its mmap threshold (128 KiB, rising to at most 32 MiB as blocks are
freed) with a fresh ``mmap`` and unmaps it on free, so every large tensor of a training step is paged in
anew, each page a fault. ``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` at 4 GiB keep such
blocks on the heap and reuse them (``ALLOCATOR``, exported by the Makefile for `make study` and
`make test`). Where a page costs much to fault in (a virtual machine's), tensors of tens of MB, as the
world classifier's colour maps, take several times longer to fill than to compute.

Trains ``--steps`` steps of the study's three trained networks (the world classifier of the
`evaluators` stage, the world autoencoder, the main model), each in its own process, with glibc's
default allocation and with ``ALLOCATOR``, ``--repeats`` times in alternating order; reports the
seconds per step (median over repeats) and whether the weights are identical.

    python benchmarks/allocator.py [--steps 30] [--repeats 2] [--out reports/allocator]

Writes ``OUT/allocator.json`` and ``OUT/README.md``. Needs the study's data and latents (the
autoencoder stage) for the main model.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import determinism
import torch

ALLOCATOR = {"MALLOC_MMAP_THRESHOLD_": "4294967296", "MALLOC_TRIM_THRESHOLD_": "4294967296"}
MODELS = {
    "classifier": "the world classifier (`evaluators` stage), batch 32, 3 of 4 clips degraded",
    "autoencoder": "the world autoencoder (`autoencoder` stage)",
    "dit": "the main model (`train` stage)",
}


def weights_digest(state: dict) -> str:
    """md5 of every tensor's bytes in key order: equal digests, identical weights."""
    digest = hashlib.md5()
    for key in sorted(state):
        digest.update(state[key].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def child(model: str, steps: int, out: Path) -> None:
    """Train ``model`` ``steps`` steps of the cpu profile on 2 threads; save seconds per step (the
    training loop's own time) and the weights' digest to ``out``. The autoencoder and the DiT train as
    ``determinism.child`` trains them."""
    from streamdit.config import load_config
    from streamdit.evaluator_training import train_video_encoder

    torch.set_num_threads(2)
    if model == "classifier":
        full = load_config("params.yaml", "cpu")
        ec = full.evaluators
        net, metrics = train_video_encoder(
            full.data_dir, steps=steps, batch_size=ec.encoder_batch_size, lr=ec.encoder_lr, seed=ec.seed,
            degraded=ec.encoder_degraded,
        )  # fmt: skip
        seconds, state = metrics["seconds"], net.state_dict()
    else:
        determinism.child(model, steps, 2, False, out)
        run = torch.load(out, weights_only=False)
        seconds, state = run["seconds"], run["ema"]
    torch.save({"seconds_per_step": seconds / steps, "digest": weights_digest(state)}, out)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="benchmarks/allocator.py", description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="training steps per run (default 30)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per model and setting (default 2)")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--out", type=Path, default=Path("reports/allocator"))
    parser.add_argument("--child", nargs=3, metavar=("MODEL", "STEPS", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child[0], int(args.child[1]), Path(args.child[2]))
        return {}
    if args.steps < 1 or args.repeats < 1:
        parser.error("--steps and --repeats must be >= 1")
    default_env = {k: v for k, v in os.environ.items() if k not in ALLOCATOR}
    settings = {"glibc default": default_env, "heap (the Makefile's)": {**default_env, **ALLOCATOR}}
    results = {"cpu": determinism.cpu_name(), "torch": torch.__version__, "steps": args.steps, "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            runs: dict[str, list[dict]] = {name: [] for name in settings}
            for repeat in range(args.repeats):
                order = list(settings) if repeat % 2 == 0 else list(settings)[::-1]
                for name in order:
                    print(f"{model}: {name}, run {repeat + 1} ...", flush=True)
                    path = Path(tmp) / "run.pt"
                    cmd = [sys.executable, __file__, "--child", model, str(args.steps), str(path)]
                    subprocess.run(cmd, check=True, env=settings[name])
                    runs[name].append(torch.load(path, weights_only=False))
            digests = {r["digest"] for rs in runs.values() for r in rs}
            seconds = {name: [r["seconds_per_step"] for r in rs] for name, rs in runs.items()}
            results["models"][model] = {
                "seconds_per_step": {name: statistics.median(s) for name, s in seconds.items()},
                "all_runs_seconds_per_step": seconds,
                "identical_weights": len(digests) == 1,
            }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "allocator.json").write_text(json.dumps(results, indent=1) + "\n")
    (args.out / "README.md").write_text(readme(results, args))
    print(readme(results, args))
    return results


def readme(results: dict, args) -> str:
    default, heap = "glibc default", "heap (the Makefile's)"
    lines = [
        "# The allocator setting: speed and bytes",
        "",
        f"`python benchmarks/allocator.py --steps {results['steps']} --repeats {args.repeats}`: each network "
        f"trained {results['steps']} steps of the cpu profile on 2 threads, each run in its own process, "
        f"{args.repeats} runs per setting in alternating order, on {results['cpu']} "
        f"(torch {results['torch']}). "
        f"The heap setting: {' '.join(f'`{k}={v}`' for k, v in ALLOCATOR.items())}.",
        "",
        "| network | s/step, glibc default | s/step, heap | speed-up | identical weights (every run) |",
        "|---|---|---|---|---|",
    ]
    for model, r in results["models"].items():
        s = r["seconds_per_step"]
        lines.append(
            f"| {MODELS[model]} | {s[default]:.3f} | {s[heap]:.3f} | {s[default] / s[heap]:.2f}x | "
            f"{'yes' if r['identical_weights'] else 'no'} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
