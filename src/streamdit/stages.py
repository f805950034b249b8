"""The pipeline's stages as plain functions: the notebooks call these, the tests call them too.

Each stage reads the validated ``Config``, writes its artefacts and returns a small dict
of metrics that the notebook stores as JSON for ``dvc metrics``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from streamdit.config import Config, resolve_device
from streamdit.data import SPLITS, WorldClips, check_pinned, render
from streamdit.sampling import StreamSampler
from streamdit.text import load_text_encoder
from streamdit.train import load_model
from streamdit.video import save_strip, to_uint8, write_gif, write_mp4


def write_json(obj: dict, path: str | Path) -> Path:
    """Write ``obj`` as indented JSON (the format every stage's metrics use)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    return path


def describe_data(
    cfg: Config, report_dir: str | Path, dvc_file: str | Path = "data.dvc", rows_per_split: int = 3
) -> dict:
    """Check the world against its pin and that every split loads with the configured buffer;
    draw a strip per split. Returns the hash, per-split clip counts and caption statistics.
    """
    report_dir = Path(report_dir)
    stats: dict[str, dict | str] = {"hash": check_pinned(Path(cfg.data_dir), Path(dvc_file))}
    for split in SPLITS:
        clips = WorldClips(Path(cfg.data_dir), split, window=cfg.model.frames, generator_seed=cfg.seed)
        captions = clips.captions
        stats[split] = {
            "clips": len(clips),
            "unique_captions": len(set(captions)),
            "mean_caption_words": round(float(np.mean([len(c.split()) for c in captions])), 2),
        }
        shown = range(min(rows_per_split, len(clips)))
        save_strip(
            [np.asarray(clips.clips[i]) for i in shown],
            report_dir / f"{split}_strip.png",
            captions=[captions[i] for i in shown],
        )
    return stats


def evaluation_prompts(cfg: Config, count: int) -> tuple[list[str], list[np.ndarray | None]]:
    """Prompts to sample and, for each, a real reference clip (None for a user prompt).

    ``sample.prompts`` when given; otherwise the canonical captions of the first test clips,
    whose ground truth is rendered to the same length as the stream for side-by-side strips.
    """
    if cfg.sample.prompts:
        return list(cfg.sample.prompts), [None] * len(cfg.sample.prompts)
    test = WorldClips(Path(cfg.data_dir), "test", window=cfg.model.frames)
    scenes = test.scenes[:count]
    real = [render(scene, 0, cfg.sample.frames, cfg.data.resolution) for scene in scenes]
    return test.canonical_captions[:count], real


def sample_streams(
    cfg: Config, model_path: str | Path, out_dir: str | Path, report_dir: str | Path, count: int = 4
) -> dict:
    """Stream ``sample.frames`` frames for each evaluation prompt with the sample scheme.

    Writes an MP4 and a GIF per prompt to ``out_dir`` and a strip (real row above each
    generated row) to ``report_dir``. Returns calls, NFE and wall-clock speed.
    """
    out_dir, report_dir = Path(out_dir), Path(report_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.sample.device)
    model, _ = load_model(model_path, device)
    encoder = load_text_encoder(cfg.text.encoder, cfg.text.max_length)
    prompts, real = evaluation_prompts(cfg, count)
    scheme = cfg.sample.parsed_scheme
    sampler = StreamSampler(
        model,
        scheme,
        encoder(prompts),
        cfg_scale=cfg.sample.cfg_scale,
        shift=cfg.sample.time_shift,
        generator=torch.Generator().manual_seed(cfg.sample.seed),
    )
    start = time.perf_counter()
    video = sampler.take(cfg.sample.frames)  # [b, f, c, h, w]
    seconds = time.perf_counter() - start

    rows, captions = [], []
    for i, prompt in enumerate(prompts):
        frames = to_uint8(video[i])
        write_mp4(frames, out_dir / f"stream_{i}.mp4", fps=cfg.sample.fps, scale=4)
        write_gif(frames, out_dir / f"stream_{i}.gif", fps=cfg.sample.fps, scale=4)
        if real[i] is not None:
            rows.append(real[i])
            captions.append(f"real: {prompt}")
        rows.append(frames)
        captions.append(f"generated ({scheme}, cfg {cfg.sample.cfg_scale}): {prompt}")
    save_strip(rows, report_dir / "sample_strip.png", captions=captions, scale=3)
    return {
        "scheme": str(scheme),
        "streams": len(prompts),
        "frames_per_stream": cfg.sample.frames,
        "model_calls": sampler.calls,
        "nfe_per_frame": sampler.calls * sampler.nfe_per_call / sampler.emitted,
        "frames_per_second": round(len(prompts) * cfg.sample.frames / seconds, 2),
        "device": device,
        "finite": bool(torch.isfinite(video).all()),
    }
