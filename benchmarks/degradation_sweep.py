"""Does the judge look past sharpness, and does the edge weight help the autoencoder? The measurement
behind params.yaml's `evaluators.encoder_degraded` and `autoencoder.edge_weight` (docs/metrics.md,
"Training the classifier"; docs/method.md, "Latent space").

Two world classifiers at the cpu profile's `evaluators` settings: trained on exact edges only
(`encoder_degraded: 0`) and with the profile's share of softened or halved clips. Two world
autoencoders at its `autoencoder` settings: plain squared error (`edge_weight: 0`) and the profile's
edge weight. Each classifier reads the val clips as rendered, softened (sigma 0.7), halved, and
through each autoencoder; per-attribute accuracy, and PSNR of each autoencoder. Val only: the study
reports on test.

    python benchmarks/degradation_sweep.py [--out reports/degradation_sweep]

Runs that are finished (the study's own evaluators and autoencoder, ``runs/evaluators``,
``runs/autoencoder``) are not trained again; a killed run resumes. Writes ``OUT/degradation_sweep.json``
and ``OUT/README.md``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from einops import rearrange

from streamdit.acceleration import resolve_device
from streamdit.autoencoder_training import psnr, reconstruct, train_world_autoencoder
from streamdit.config import load_config
from streamdit.data import load_split
from streamdit.evaluator_training import train_video_encoder
from streamdit.evaluators import attribute_accuracy
from streamdit.video import from_uint8
from streamdit.world import scene_from_dict

SHOWN = ("shape", "size", "colour", "motion")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        prog="benchmarks/degradation_sweep.py", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--out", type=Path, default=Path("reports/degradation_sweep"))
    parser.add_argument("--profile", default="cpu")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    cfg = load_config("params.yaml", args.profile)
    ec, device = cfg.evaluators, resolve_device(cfg.evaluators.device)
    clips, records = load_split(cfg.data_dir, "val")
    scenes = [scene_from_dict(r["scene"]) for r in records]
    real = from_uint8(rearrange(np.array(clips), "n f h w c -> (n f) h w c"))

    decoded, results = {}, {"autoencoders": {}, "classifiers": {}}
    for weight in sorted({0.0, cfg.autoencoder.edge_weight}):
        arm = load_config("params.yaml", args.profile, {"autoencoder": {"edge_weight": weight}})
        model, run = train_world_autoencoder(arm, progress=True)
        decoded[weight] = reconstruct(model.to(device), clips, device)
        frames = from_uint8(rearrange(decoded[weight], "n f h w c -> (n f) h w c"))
        results["autoencoders"][str(weight)] = {"psnr_db": round(psnr(real, frames), 3), "steps": run.step}

    for share in sorted({0.0, ec.encoder_degraded}):
        classifier, metrics = train_video_encoder(
            cfg.data_dir, steps=ec.encoder_steps, batch_size=ec.encoder_batch_size, lr=ec.encoder_lr,
            seed=ec.seed, device=device, progress=True, work_root="runs/evaluators", degraded=share,
        )  # fmt: skip
        classifier, robust = classifier.cpu(), metrics["robustness"]
        row = {"real": metrics["val"]["accuracy"], "softened": robust["softened"], "halved": robust["halved"]}
        for weight, videos in decoded.items():
            row[f"decoded (edge_weight {weight:g})"] = attribute_accuracy(classifier, videos, scenes)
        results["classifiers"][str(share)] = row
    (args.out / "degradation_sweep.json").write_text(json.dumps(results, indent=1))
    (args.out / "README.md").write_text(readme(results, cfg))
    print(readme(results, cfg))
    return results


def readme(results: dict, cfg) -> str:
    """One table per classifier: accuracy per attribute on each version of the val clips."""
    lines = [
        "# The judge and the edges (val clips)",
        "",
        f"`python benchmarks/degradation_sweep.py`: world classifiers at the `{cfg.profile}` profile's "
        "evaluator settings, trained on exact edges only or with a share of softened or halved clips "
        f"(`evaluators.encoder_degraded`), reading {cfg.data.n_val} val clips as rendered, softened "
        "(Gaussian, sigma 0.7 px), halved (2x2 means scaled back up) and through world autoencoders trained "
        "with and without the edge weight (`autoencoder.edge_weight`). Accuracy per attribute.",
        "",
        "Autoencoder PSNR on val: "
        + ", ".join(f"edge_weight {w}: {r['psnr_db']:.2f} dB" for w, r in results["autoencoders"].items())
        + ".",
    ]
    for share, row in results["classifiers"].items():
        lines += ["", f"Classifier trained with `encoder_degraded: {share}`:", ""]
        lines += ["| val clips | " + " | ".join(SHOWN) + " |", "|---" * (len(SHOWN) + 1) + "|"]
        lines += [
            f"| {name} | " + " | ".join(f"{acc[a]:.3f}" for a in SHOWN) + " |" for name, acc in row.items()
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
