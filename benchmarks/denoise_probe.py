"""One-step denoising probe: what does a trained model predict as the clean clip at each level?

Noises the first ``--clips`` test clips in the model's space (the latents of its model file's
autoencoder, or pixels; whole buffer at one level t, their own training captions), predicts
x0 = x_t - t v in one call, decodes it, and reports the mean squared error against the real clip
next to the error of predicting each clip's mean colour. A model whose text conditioning is too weak
at high noise predicts only the background there, which a stream started from noise then keeps.

    python benchmarks/denoise_probe.py --model models/streamdit.pt

writes ``reports/denoise_probe/denoise_probe.{json,png}``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from streamdit.checkpoint import load_model, load_space
from streamdit.config import load_config
from streamdit.data import WorldClips
from streamdit.flow import interpolate, predict_clean
from streamdit.text import load_text_encoder
from streamdit.video import save_strip, to_uint8


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--profile", default=None)
    parser.add_argument("--model", default="models/streamdit.pt")
    parser.add_argument("--clips", type=int, default=3)
    parser.add_argument("--levels", type=float, nargs="+", default=[0.3, 0.6, 0.9])
    parser.add_argument("--out", default="reports/denoise_probe")
    args = parser.parse_args(argv)
    if any(not 0.0 < t <= 1.0 for t in args.levels):
        raise ValueError(f"levels must be in (0, 1], got {args.levels}")

    cfg = load_config(args.params, args.profile)
    model, _ = load_model(args.model)
    space = load_space(args.model)
    clips = WorldClips(Path(cfg.data_dir), "test", length=cfg.model.frames, generator_seed=cfg.seed)
    items = [clips[i] for i in range(args.clips)]
    x0 = torch.stack([item["frames"] for item in items])  # [b, f, c, h, w]
    captions = [item["caption"] for item in items]
    text = load_text_encoder(cfg.text.encoder, cfg.text.max_length)(captions)
    with torch.no_grad():
        z0 = space.encode(x0)  # what the model denoises: x0 itself for a pixel model
    noise = torch.randn(z0.shape, generator=torch.Generator().manual_seed(cfg.seed))
    mean_colour_mse = float(((x0.mean(dim=(1, 3, 4), keepdim=True) - x0) ** 2).mean())

    rows = [to_uint8(clip) for clip in x0]
    labels = [f"real: {caption}" for caption in captions]
    result = {"model": args.model, "clips": args.clips, "mean_colour_mse": mean_colour_mse, "levels": {}}
    with torch.no_grad():
        for t in args.levels:
            levels = torch.full(z0.shape[:2], t)
            x_t = interpolate(z0, noise, levels)
            z0_hat = predict_clean(x_t, model(x_t, levels, text.tokens, text.mask, text.pooled), levels)
            x0_hat = space.decode(z0_hat)
            result["levels"][str(t)] = float(((x0_hat - x0) ** 2).mean())
            rows += [to_uint8(clip) for clip in x0_hat]
            labels += [f"x0 predicted in one call from t = {t}"] * args.clips

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "denoise_probe.json").write_text(json.dumps(result, indent=2) + "\n")
    save_strip(rows, out / "denoise_probe.png", captions=labels, scale=3)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
