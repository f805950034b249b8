"""How far do the teacher's numbers move on a CPU that runs other floating-point kernels? The stand-in, on
one machine, for the study rerun on another CPU (issue: reproducibility across machines).

Two arms, each in its own process:
- ``study``: the study's own model file (`models/streamdit.pt`), streamed and scored in the environment
  this script runs in (the study's kernels, when it runs where the study ran);
- ``variant``: the same environment plus ``--env`` (default ``ATEN_CPU_CAPABILITY=avx2``: PyTorch's own
  kernels at AVX2, what a CPU without AVX-512 runs): the base (`methods.entries.base`) trained from
  scratch and StreamDiT fine-tuned from it (the `train` section), every setting and seed the study's,
  then streamed and scored in that environment.

Both arms stream the study's test prompts from the study's noise with the sample scheme and are scored by
the study's judges (`models/evaluators`, as `benchmarks/seed_spread.py` scores: no drift, held-out pairs
or repeated latency). The table sets the variant minus the study, paired over the same prompts and noise
(95% bootstrap), beside StreamDiT's seed-to-seed spread (`reports/seed_spread/seed_spread.json`): a
machine that moves the teacher less than a retraining with another seed does is within the study's noise.

    python benchmarks/kernel_spread.py [--env ATEN_CPU_CAPABILITY=avx2 ...] [--profile cpu] [--out DIR]

(``--out`` defaults to reports/kernel_spread.) Needs the study's outputs (`make study`): data,
evaluators, autoencoder and the main model. Writes the variant's model files to ``runs/kernel_spread/``
(a killed run resumes), ``OUT/kernel_spread.json`` and ``OUT/README.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from seed_spread import SHOWN, largest_pair, quick_evaluation, stream_and_score, study_scenes
from sweep_table import cell

from streamdit.acceleration import resolve_device
from streamdit.config import load_config
from streamdit.files import read_json
from streamdit.methods import method_config
from streamdit.quality import paired_differences
from streamdit.text import load_text_encoder
from streamdit.train import train

RUNS = Path("runs/kernel_spread")  # the variant's models and training runs (ignored by git)
STUDY_MODEL = Path("models/streamdit.pt")
THREADS = 2  # the study's thread count on its 2 cores: a thread count of its own would be a third change


def variant_model(profile: str) -> tuple[Path, dict]:
    """Train the base and StreamDiT from it as the study does (resumes a killed run): the model file and
    the final training losses."""
    base_cfg, _ = method_config("params.yaml", profile, "base")
    base = train(base_cfg, RUNS / "base.pt", work_root=RUNS / "base", progress=True)
    cfg = load_config("params.yaml", profile, {"train": {"finetune_from": str(RUNS / "base.pt")}})
    main = train(cfg, RUNS / "streamdit.pt", work_root=RUNS / "train", progress=True)
    return RUNS / "streamdit.pt", {"base_loss_last": base["loss_last"], "loss_last": main["loss_last"]}


def child(arm: str, profile: str, out: Path) -> None:
    """One arm (in this process): its model file, streamed and scored; saved to ``out``."""
    torch.set_num_threads(THREADS)
    cfg = load_config("params.yaml", profile)
    device = resolve_device(cfg.train.device)
    if arm == "study":
        path = STUDY_MODEL
        losses = {"base_loss_last": read_json("metrics/base.json", "base metrics")["loss_last"],
                  "loss_last": read_json("metrics/train.json", "training metrics")["loss_last"]}  # fmt: skip
    else:
        path, losses = variant_model(profile)
    encoder = load_text_encoder(cfg.text.encoder, cfg.text.max_length)
    metrics, arrays, key = stream_and_score(
        path, cfg, study_scenes(cfg), encoder, cfg.sample.time_shift, device
    )
    torch.save(
        {
            "quality": metrics["schemes"][key]["long_stream"],
            "arrays": arrays,
            "key": key,
            "kernels": torch.backends.cpu.get_cpu_capability(),
            **losses,
        },
        out,
    )


def parse_env(pairs: list[str]) -> dict:
    """``["NAME=VALUE", ...]`` as a dict; a pair without ``=`` raises."""
    env = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise SystemExit(f"--env takes NAME=VALUE pairs, got {pair!r}")
        env[name] = value
    return env


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="benchmarks/kernel_spread.py", description=__doc__.splitlines()[0])
    parser.add_argument("--env", nargs="+", default=["ATEN_CPU_CAPABILITY=avx2"], metavar="NAME=VALUE")
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--seed-spread", type=Path, default=Path("reports/seed_spread/seed_spread.json"))
    parser.add_argument("--out", type=Path, default=Path("reports/kernel_spread"))
    parser.add_argument("--child", nargs=2, metavar=("ARM", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child[0], args.profile, Path(args.child[1]))
        return {}
    env = parse_env(args.env)
    if not STUDY_MODEL.is_file():
        raise SystemExit(f"{STUDY_MODEL} is missing: run the study first (make study)")
    args.out.mkdir(parents=True, exist_ok=True)
    RUNS.mkdir(parents=True, exist_ok=True)
    arms = {}
    for arm, extra in (("study", {}), ("variant", env)):
        path = RUNS / f"{arm}_scores.pt"
        print(
            f"{arm} ({' '.join(f'{k}={v}' for k, v in extra.items()) or 'this environment'}) ...", flush=True
        )
        cmd = [sys.executable, __file__, "--profile", args.profile, "--child", arm, str(path)]
        subprocess.run(cmd, check=True, env={**os.environ, **extra})
        arms[arm] = torch.load(path, weights_only=False)
    study, variant = arms["study"], arms["variant"]
    ecfg = quick_evaluation(load_config("params.yaml", args.profile))
    seed_spread = read_json(args.seed_spread, "seed spread (python benchmarks/seed_spread.py)")
    seeds = seed_spread["models"]["streamdit"]
    results = {
        "environment": env,
        "scheme": study["key"],
        "arms": {arm: {k: v for k, v in a.items() if k != "arrays"} for arm, a in arms.items()},
        "variant_minus_study": paired_differences(
            variant["arrays"], variant["key"], study["arrays"], study["key"], ecfg
        ),  # fmt: skip
        "seed_spread": {m: seeds["spread"][m] for m in SHOWN},
        "seed_pairs": seeds["seed_pairs"],
    }
    (args.out / "kernel_spread.json").write_text(json.dumps(results, indent=1, default=float))
    (args.out / "README.md").write_text(readme(results))
    print(readme(results))
    return results


def readme(results: dict) -> str:
    """The variant beside the study per measure, their paired difference and StreamDiT's seed spread."""
    env = " ".join(f"{k}={v}" for k, v in results["environment"].items())
    study, variant = results["arms"]["study"], results["arms"]["variant"]
    lines = [
        "# The teacher on other kernels",
        "",
        f"`python benchmarks/kernel_spread.py --env {env}`: the study's StreamDiT ({results['scheme']}, "
        f"kernels {study['kernels']}) against the base and StreamDiT trained again, with every setting and "
        f"seed of the study, under `{env}` (kernels {variant['kernels']}), both streamed from the study's "
        "noise on its test prompts and scored by the study's judges. `variant - study`: paired over the "
        "same prompts and noise, 95% bootstrap (`*`: the interval excludes 0); beside it StreamDiT's "
        "standard deviation across training seeds and its largest seed-to-seed difference "
        "(`benchmarks/seed_spread.py`).",
        "",
        f"Final training loss, study and variant: base {study['base_loss_last']:.5f} and "
        f"{variant['base_loss_last']:.5f}; StreamDiT {study['loss_last']:.5f} and "
        f"{variant['loss_last']:.5f}.",
        "",
        "| measure | study | variant | variant - study | seed std | largest seed pair |",
        "|---|---|---|---|---|---|",
    ]
    for m in SHOWN:
        d = results["variant_minus_study"][m]
        star = "*" if not d["low"] <= 0 <= d["high"] else ""
        lines.append(
            f"| {m} | {cell(study['quality'], m)} | {cell(variant['quality'], m)} | "
            f"{d['diff']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]{star} | "
            f"{results['seed_spread'][m]['std']:.3f} | {largest_pair(results['seed_pairs'], m)} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
