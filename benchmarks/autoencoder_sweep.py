"""What would bring the world autoencoder to its targets? The val measurement behind params.yaml's
`autoencoder` section (DESIGN.md section 1, "Latent space"; targets: PSNR >= 32 dB, the world
classifier's accuracy on decoded clips within 1 point of real clips on every attribute, the stage
within 6 min on 2 cores).

Trains one world autoencoder per variant of ``VARIANTS`` (overrides of the profile's `autoencoder`
section; ``default`` is the study's own, whose finished run in ``runs/autoencoder`` is reused), runs
the val clips through each and reports PSNR, the study's classifier's accuracy per attribute on
decoded against real clips, the parameters and the training seconds. Val only: the study reports on
test.

    python benchmarks/autoencoder_sweep.py [--variants default steps3200 ...] [--out DIR]

Needs the study's data and judges (``models/evaluators``). A killed run resumes. Writes
``OUT/autoencoder_sweep.json`` and ``OUT/README.md`` (``--out``, default reports/autoencoder_sweep).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from einops import rearrange

from streamdit.acceleration import machine_info, resolve_device
from streamdit.autoencoder_training import psnr, reconstruct, train_world_autoencoder
from streamdit.config import load_config
from streamdit.data import load_split
from streamdit.evaluators import attribute_accuracy, load_video_encoder
from streamdit.video import from_uint8
from streamdit.world import scene_from_dict

VARIANTS = {
    "default": {},  # the study's autoencoder section
    "steps3200": {"steps": 3200},
    "batch32": {"batch_size": 32},
    "wide": {"widths": [48, 96, 192]},
    "edge8": {"edge_weight": 8.0},
}
SHOWN = ("shape", "size", "colour", "motion", "objects", "background")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        prog="benchmarks/autoencoder_sweep.py", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--out", type=Path, default=Path("reports/autoencoder_sweep"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    cfg = load_config("params.yaml", args.profile)
    device = resolve_device(cfg.autoencoder.device)
    clips, records = load_split(cfg.data_dir, "val")
    scenes = [scene_from_dict(r["scene"]) for r in records]
    real = from_uint8(rearrange(np.array(clips), "n f h w c -> (n f) h w c"))
    classifier = load_video_encoder(Path("models/evaluators") / "video_encoder.pt", device)
    results = {
        "machine": machine_info(device),
        "real": attribute_accuracy(classifier, clips, scenes),
        "variants": {},
    }
    for name in args.variants:
        arm = load_config("params.yaml", args.profile, {"autoencoder": VARIANTS[name]})
        model, run = train_world_autoencoder(arm, progress=True)
        decoded = reconstruct(model.to(device), clips, device)
        frames = from_uint8(rearrange(decoded, "n f h w c -> (n f) h w c"))
        results["variants"][name] = {
            "overrides": VARIANTS[name],
            "psnr_db": round(psnr(real, frames), 3),
            "accuracy_decoded": attribute_accuracy(classifier, decoded, scenes),
            "parameters": sum(p.numel() for p in model.parameters()),
            "steps": run.step,
            "train_seconds": round(run.elapsed, 1),
            "loss_last": run.history[-1],
        }
        (args.out / "autoencoder_sweep.json").write_text(json.dumps(results, indent=1))
    (args.out / "README.md").write_text(readme(results, args, cfg))
    print(readme(results, args, cfg))
    return results


def readme(results: dict, args, cfg) -> str:
    """One row per variant: PSNR, decoded accuracy (and its gap to real clips) per attribute, seconds."""
    real, machine = results["real"], results["machine"]
    lines = [
        "# World autoencoder settings (val clips)",
        "",
        f"`python benchmarks/autoencoder_sweep.py --variants {' '.join(args.variants)}`: world autoencoders "
        f"at the `{cfg.profile}` profile's `autoencoder` section with each variant's overrides, the "
        f"{cfg.data.n_val} val clips encoded and decoded, read by the study's world classifier "
        "(`models/evaluators`). DESIGN.md's targets: PSNR >= 32 dB, decoded accuracy within 1 point of real "
        "on every attribute, the stage within 6 min on 2 cores. Training seconds on "
        f"{machine['cpu']} ({machine['cpu_cores']} cores, torch {machine['torch']}).",
        "",
        "| | overrides | PSNR (dB) | " + " | ".join(SHOWN) + " | parameters | steps | train s |",
        "|---" * (len(SHOWN) + 6) + "|",
        "| real clips | | | " + " | ".join(f"{real[a]:.3f}" for a in SHOWN) + " | | | |",
    ]
    for name, v in results["variants"].items():
        accuracy = " | ".join(
            f"{v['accuracy_decoded'][a]:.3f} ({100 * (v['accuracy_decoded'][a] - real[a]):+.1f})"
            for a in SHOWN
        )
        lines.append(
            f"| {name} | {v['overrides'] or ''} | {v['psnr_db']:.2f} | {accuracy} | {v['parameters']:,} | "
            f"{v['steps']} | {v['train_seconds']:.0f} |"
        )
    lines += ["", "In brackets: decoded minus real, in points."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
