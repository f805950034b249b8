"""Latent or pixel StreamDiT? The measurement behind params.yaml's `model.preset` (DESIGN.md section 1,
"Latent space").

Both teachers train with ``streamdit.train.train`` at the cpu profile's budget (``train`` section as
the study's main model): ``tiny`` on the autoencoder stage's latents, ``tiny_pixel`` on 64x64 pixels
in 8x8 patches (the same 8x8 tokens per frame, the same DiT). Both stream the first ``--prompts`` val
prompts (canonical captions) with the sample scheme and guidance from the same noise, scored by the
study's evaluation (``evaluate.evaluate_model``: per-attribute caption accuracy from the world
classifier, the VBench analogues, FVD / KID, against the val scenes' real streams; floor: as many
train scenes), plus the shape IoU of one-object scenes (``metrics.shape_iou``, against a plain disc
of the right area). Paired bootstrap intervals of latent minus pixel on the same prompts and noise.
Val only: the study reports on test.

    python benchmarks/space_sweep.py [--prompts 64] [--out reports/space_sweep]

Needs the study's data, evaluators and autoencoder (``dvc repro autoencoder``); a teacher whose run
is finished (``runs/train/<key>/``, e.g. the study's main model) is not trained again, and a killed
run resumes. Writes the two model files to ``runs/space_sweep/``, ``OUT/space_sweep.json`` and
``OUT/README.md`` (table and verdict) and a strip.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from sweep_table import cell, difference_block, evaluate_on_val, load_trained, val_setup

from streamdit.config import load_config
from streamdit.evaluate import render_videos
from streamdit.metrics import shape_iou
from streamdit.quality import CAPTION_MEASURES, paired_differences
from streamdit.train import train
from streamdit.video import reference_strip, to_uint8
from streamdit.world import COLOUR_RGB, canonical_caption

ARMS = {"latent": "tiny", "pixel": "tiny_pixel"}
MODELS = Path("runs/space_sweep")  # the arms' model files (ignored by git)
SHOWN = ("caption_shape", "caption_colour", "caption_size", "caption_motion", "caption_mean",
         "subject_consistency", "fvd", "kid")  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="benchmarks/space_sweep.py", description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=64, help="val prompts (default 64)")
    parser.add_argument("--out", type=Path, default=Path("reports/space_sweep"))
    parser.add_argument("--profile", default="cpu")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    base, device, ecfg, scenes, encoder, judges = val_setup(args.profile, args.prompts)
    val = scenes["test"]
    results, arrays, videos = {}, {}, {}
    for arm, preset in ARMS.items():
        cfg = load_config("params.yaml", args.profile, {"model": {"preset": preset}})
        model_path = MODELS / f"{arm}.pt"
        summary = train(cfg, model_path, progress=True)
        captions = [canonical_caption(s) for s in val[: args.prompts]]
        metrics, arrays[arm], video = evaluate_on_val(
            *load_trained(model_path, device), cfg, ecfg, scenes, encoder, judges, device, captions
        )
        real = render_videos(val[: args.prompts], ecfg.long_frames, base.data.resolution)
        one_object = [
            COLOUR_RGB[s.objects[0].colour] if len(s.objects) == 1 else None for s in val[: args.prompts]
        ]
        results[arm] = {
            "preset": preset,
            "train_seconds": summary["train_seconds"],
            "parameters": summary["parameters"],
            "quality": metrics["schemes"][str(base.sample.parsed_scheme)]["long_stream"],
            "shape_iou": shape_iou(video, real, one_object),
        }
        results.setdefault(
            "real",
            {"quality": metrics["real"]["long_stream"], "shape_iou": shape_iou(real, real, one_object)},
        )
        videos[f"{arm} ({preset})"] = [to_uint8(v) for v in video[:4]]
    key = str(base.sample.parsed_scheme)
    results["latent_minus_pixel"] = paired_differences(arrays["latent"], key, arrays["pixel"], key, ecfg)
    captions = [canonical_caption(s) for s in val[:4]]
    real_strip = [to_uint8(v) for v in render_videos(val[:4], ecfg.long_frames, base.data.resolution)]
    reference_strip(args.out / "strip.png", captions, real_strip, videos)
    (args.out / "space_sweep.json").write_text(json.dumps(results, indent=1, default=float))
    (args.out / "README.md").write_text(readme(results, args))
    print(readme(results, args))
    return results


def readme(results: dict, args) -> str:
    """The table (real, latent, pixel; means with intervals) and the paired differences."""

    lines = [
        "# Latent or pixel StreamDiT (val prompts)",
        "",
        f"`python benchmarks/space_sweep.py --prompts {args.prompts}`: both teachers at the cpu profile's "
        "training budget, the same DiT (8x8 tokens per frame), streamed with the sample scheme from the same "
        "noise on the first val prompts and scored by the study's evaluation against the val scenes' real "
        "streams (docs/metrics.md). Shape IoU: one-object scenes, centred colour masks against the real "
        "frames' (a plain disc of the right area in brackets).",
        "",
        "| | " + " | ".join(SHOWN) + " | shape IoU (disc) |",
        "|---" * (len(SHOWN) + 2) + "|",
    ]
    for arm in ("real", "latent", "pixel"):
        report, iou = results[arm]["quality"], results[arm]["shape_iou"]
        iou_text = f"{iou['iou']:.3f} ({iou['disc']:.3f})" if iou else "-"
        lines.append(f"| {arm} | " + " | ".join(cell(report, n) for n in SHOWN) + f" | {iou_text} |")
    measures = (*CAPTION_MEASURES, "subject_consistency", "fvd", "kid")
    lines += difference_block(
        "Latent minus pixel", results["latent_minus_pixel"], measures, "latent", "pixel"
    )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
