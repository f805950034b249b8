"""The training loops of the world evaluators (DESIGN.md section 2): the video encoder whose
features give FVD (``evaluators.py``) and the small CLIP that gives CLIP scores (``clip.py``).

Two plain loops, each with a ``runs.Run`` for progress, dvclive, checkpoints and resume; the models,
their loading and scoring live in the evaluator modules, which evaluation imports without this one.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from open_clip.loss import ClipLoss

from streamdit.acceleration import resolve_device
from streamdit.checkpoint import save_evaluator
from streamdit.clip import ClipConfig, ClipScorer, build_clip, clip_retrieval, own_clip_scorer
from streamdit.data import clip_batch, load_split, world_settings
from streamdit.evaluators import (
    ATTRIBUTES,
    VideoEncoder,
    VideoEncoderConfig,
    attribute_accuracy,
    scene_labels,
    seeded,
)
from streamdit.plots import plot_evaluators
from streamdit.runs import Run, config_hash
from streamdit.video import from_uint8
from streamdit.world import scene_from_dict


def evaluator_run(
    work_root, desc: str, data_dir, cfg, steps: int, batch_size: int, lr: float, seed: int, progress: bool
) -> Run:
    """The ``runs.Run`` of one evaluator's training, keyed by the world it trains on and its settings."""
    settings = {"world": world_settings(data_dir), "cfg": asdict(cfg), "steps": steps, "lr": lr, "seed": seed}
    key = config_hash({**settings, "batch_size": batch_size, "evaluator": desc})
    return Run(
        work_root, key, steps=steps, desc=desc, section="evaluators", batch_size=batch_size, progress=progress
    )


def train_video_encoder(
    data_dir: str | Path,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    cfg: VideoEncoderConfig | None = None,
    device: str = "cpu",
    progress: bool = False,
    work_root: str | Path | None = None,
) -> tuple[VideoEncoder, dict]:
    """Train a ``VideoEncoder`` with cross-entropy on every attribute of the train split.

    ``work_root``: where the run's checkpoints go (``runs.Run``: a killed run resumes); None keeps
    nothing on disk. Returns the model (eval mode) and metrics: held-out (val split) accuracy per
    attribute next to the majority-class rate of that split, the last training loss (sum over
    attributes) and seconds.
    """
    if steps < 1 or batch_size < 1 or lr <= 0:
        raise ValueError(f"need steps >= 1, batch_size >= 1, lr > 0; got {steps}, {batch_size}, {lr}")
    clips, records = load_split(data_dir, "train")
    labels = scene_labels([scene_from_dict(r["scene"]) for r in records])
    cfg = cfg or VideoEncoderConfig(frames=clips.shape[1], resolution=clips.shape[2])
    model = seeded(lambda: VideoEncoder(cfg), seed).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    batches = torch.Generator().manual_seed(seed)
    run = evaluator_run(work_root, "video encoder", data_dir, cfg, steps, batch_size, lr, seed, progress)
    run.resume(model=model, opt=opt, batches=batches)
    model.train()
    for _ in run.steps():
        idx = torch.randint(len(clips), (batch_size,), generator=batches)
        logits = model(clip_batch(clips, idx).to(device))
        loss = sum(F.cross_entropy(logits[name], labels[name][idx].to(device)) for name in ATTRIBUTES)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        run.record(loss.detach().item())
    val_clips, val_records = load_split(data_dir, "val")
    val_labels = scene_labels([scene_from_dict(r["scene"]) for r in val_records])
    majority = {name: float(torch.bincount(val_labels[name]).max()) / len(val_records) for name in ATTRIBUTES}
    metrics = {
        "steps": steps,
        "loss_last": run.history[-1],
        "seconds": round(run.elapsed, 1),
        "val_accuracy": attribute_accuracy(model, val_clips, val_labels),
        "val_majority": majority,
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    return model.eval(), run.finish(metrics)


def train_clip(
    data_dir: str | Path,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    cfg: ClipConfig | None = None,
    device: str = "cpu",
    progress: bool = False,
    work_root: str | Path | None = None,
) -> tuple[ClipScorer, dict]:
    """Train a small CLIP with open_clip's ``ClipLoss`` on (frame, caption) pairs of the train split:
    a random frame of a random clip with that clip's (paraphrased) training caption.

    Returns its scorer and metrics: top-1 retrieval on the test split (each clip's middle frame vs
    all distinct canonical captions) against chance, the last loss and seconds. ``work_root``: where
    the run's checkpoints go (``runs.Run``: a killed run resumes); None keeps nothing on disk.
    """
    if steps < 1 or batch_size < 2 or lr <= 0:
        raise ValueError(f"need steps >= 1, batch_size >= 2, lr > 0; got {steps}, {batch_size}, {lr}")
    clips, records = load_split(data_dir, "train")
    cfg = cfg or ClipConfig(image_size=clips.shape[2])
    model = seeded(lambda: build_clip(cfg), seed).to(device)
    scorer = own_clip_scorer(model, cfg)
    loss_fn = ClipLoss()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.1)
    draws = torch.Generator().manual_seed(seed)
    run = evaluator_run(work_root, "world clip", data_dir, cfg, steps, batch_size, lr, seed, progress)
    run.resume(model=model, opt=opt, draws=draws)
    model.train()
    for _ in run.steps():
        idx = torch.randint(len(clips), (batch_size,), generator=draws).numpy()
        frame = torch.randint(clips.shape[1], (batch_size,), generator=draws).numpy()
        images = from_uint8(np.asarray(clips[idx, frame]))
        tokens = open_clip.tokenize([records[i]["caption"] for i in idx], cfg.context_length)
        image_emb = model.encode_image(scorer.preprocess(images).to(device), normalize=True)
        text_emb = model.encode_text(tokens.to(device), normalize=True)
        loss = loss_fn(image_emb, text_emb, model.logit_scale.exp())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():  # CLIP's clamp of the learned temperature at 100
            model.logit_scale.clamp_(0, np.log(100))
        run.record(loss.detach().item())
    model.eval()
    test_clips, test_records = load_split(data_dir, "test")
    metrics = {
        "steps": steps,
        "loss_last": run.history[-1],
        "seconds": round(run.elapsed, 1),
        "test_retrieval": clip_retrieval(scorer, test_clips, [r["canonical_caption"] for r in test_records]),
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    return scorer, run.finish(metrics)


def train_evaluators(
    cfg,
    out_dir: str | Path,
    report_dir: str | Path,
    progress: bool = False,
    work_root: str | Path | None = "runs/evaluators",
) -> dict:
    """The evaluators stage: train the world video encoder (FVD features) and the world CLIP (the
    ``evaluators`` section of ``cfg``, a ``config.Config``).

    Writes ``video_encoder.pt`` and ``clip.pt`` to ``out_dir`` and a figure to ``report_dir``; their
    runs resume from ``work_root``. Returns their metrics: held-out attribute accuracies and caption
    retrieval against chance."""
    ec, out_dir = cfg.evaluators, Path(out_dir)
    device = resolve_device(ec.device)
    common = {"seed": ec.seed, "device": device, "progress": progress, "work_root": work_root}
    encoder, encoder_metrics = train_video_encoder(
        cfg.data_dir, steps=ec.encoder_steps, batch_size=ec.encoder_batch_size, lr=ec.encoder_lr, **common
    )
    save_evaluator(encoder, encoder.cfg, out_dir / "video_encoder.pt")
    scorer, clip_metrics = train_clip(
        cfg.data_dir, steps=ec.clip_steps, batch_size=ec.clip_batch_size, lr=ec.clip_lr, **common
    )
    save_evaluator(scorer.model, scorer.cfg, out_dir / "clip.pt")
    metrics = {"video_encoder": encoder_metrics, "clip": clip_metrics, "device": device}
    plot_evaluators(metrics, Path(report_dir) / "evaluators.png")
    return metrics
