"""The training loops of the world evaluators (DESIGN.md section 2): the video encoder whose
features give FVD (``evaluators.py``) and the small CLIP that gives CLIP scores (``clip.py``).

Two plain loops, each with a ``runs.Run`` for progress, dvclive, checkpoints and resume; the models,
their loading and scoring live in the evaluator modules, which evaluation imports without this one.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict
from pathlib import Path

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from einops import rearrange
from open_clip.loss import ClipLoss

from streamdit.acceleration import resolve_device
from streamdit.checkpoint import save_evaluator
from streamdit.clip import ClipConfig, ClipScorer, build_clip, clip_retrieval, own_clip_scorer
from streamdit.data import clip_batch, load_split, world_settings
from streamdit.evaluators import (
    VideoEncoder,
    VideoEncoderConfig,
    attribute_accuracy,
    classifier_loss,
    majority_hits,
    scene_labels,
    seeded,
)
from streamdit.plots import plot_evaluators
from streamdit.runs import Run, config_hash
from streamdit.video import from_uint8, to_uint8
from streamdit.world import SceneSpec, WorldConfig, render, sample_scene, scene_from_dict


def evaluator_run(
    work_root,
    desc: str,
    data_dir,
    cfg,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    progress: bool,
    checkpoint_every: int = 100,
    **extra,
) -> Run:
    """The ``runs.Run`` of one evaluator's training, keyed by the world it trains on and its settings
    (``extra``: further settings of that evaluator's loop)."""
    settings = {"world": world_settings(data_dir), "cfg": asdict(cfg), "steps": steps, "lr": lr, "seed": seed}
    settings.update(extra)
    key = config_hash({**settings, "batch_size": batch_size, "evaluator": desc})
    return Run(work_root, key, steps=steps, desc=desc, section="evaluators", batch_size=batch_size,
               progress=progress, checkpoint_every=checkpoint_every)  # fmt: skip


class FreshScenes:
    """An endless stream of newly drawn scenes of a data folder's world, rendered at random offsets of
    their streams: the classifier trains on clips no split holds, never the same one twice.

    Every (colour, shape) pair is drawn, the held-out ones included (a ``heldout`` fraction of the
    scenes): the classifier judges generated streams of the held-out split too, and it is a judge of
    the world, not a model under test. Its state (``state_dict``) makes a resumed run draw on exactly.
    """

    def __init__(self, data_dir: str | Path, seed: int, max_start: int = 256, heldout: float = 0.2):
        self.world = WorldConfig(**world_settings(data_dir))
        self.rng = random.Random(seed)
        self.max_start, self.heldout = max_start, heldout

    def draw(self, n: int) -> tuple[torch.Tensor, list[SceneSpec]]:
        """``n`` new clips ``[n, f, c, h, w]`` in [-1, 1] and their scenes."""
        scenes = [sample_scene(self.rng, self.world, self.rng.random() < self.heldout) for _ in range(n)]
        f, res = self.world.frames_per_clip, self.world.resolution
        clips = [from_uint8(render(s, self.rng.randrange(self.max_start), f, res)) for s in scenes]
        return torch.stack(clips), scenes

    def state_dict(self) -> dict:
        return {"rng": self.rng.getstate()}

    def load_state_dict(self, state: dict) -> None:
        self.rng.setstate(state["rng"])


def soften(clips: torch.Tensor, sigma: float) -> torch.Tensor:
    """Clips ``[b, f, c, h, w]`` blurred per frame by a Gaussian of ``sigma`` pixels truncated to 5 taps
    (separable, edges replicated): the soft edges of decoded or generated frames."""
    taps = torch.arange(-2, 3, dtype=clips.dtype, device=clips.device)
    kernel = torch.exp(-(taps**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    b, c = clips.shape[0], clips.shape[2]
    x = rearrange(clips, "b f c h w -> (b f) c h w")
    x = F.conv2d(
        F.pad(x, (2, 2, 0, 0), mode="replicate"), kernel.view(1, 1, 1, 5).expand(c, 1, 1, 5), groups=c
    )
    x = F.conv2d(
        F.pad(x, (0, 0, 2, 2), mode="replicate"), kernel.view(1, 1, 5, 1).expand(c, 1, 5, 1), groups=c
    )
    return rearrange(x, "(b f) c h w -> b f c h w", b=b)


def halve(clips: torch.Tensor) -> torch.Tensor:
    """Clips ``[b, f, c, h, w]`` at half resolution (2x2 means; an odd last row or column is dropped)
    scaled back up bilinearly to ``h x w``: detail lost below two pixels, as a decoder that draws at a
    coarser grid loses it."""
    b, size = clips.shape[0], clips.shape[-2:]
    x = F.avg_pool2d(rearrange(clips, "b f c h w -> (b f) c h w"), 2)
    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    return rearrange(x, "(b f) c h w -> b f c h w", b=b)


def degrade(clips: torch.Tensor, rng: random.Random, prob: float) -> torch.Tensor:
    """Each clip ``[f, c, h, w]`` of ``clips``, with probability ``prob``, softened (sigma drawn in
    [0.3, 1.2] px) or, a third of those times, halved, then given light Gaussian noise (std drawn in
    [0, 0.05]); the same to every frame of a clip. Rendered frames have exact edges; generated and
    decoded ones do not, and the classifier must judge their attributes, not their sharpness.
    Deterministic given the state of ``rng``."""
    out = []
    for clip in clips:
        if rng.random() >= prob:
            out.append(clip)
            continue
        soft = halve(clip[None]) if rng.random() < 1 / 3 else soften(clip[None], rng.uniform(0.3, 1.2))
        noise = torch.Generator().manual_seed(rng.getrandbits(62))
        std = rng.uniform(0.0, 0.05)
        out.append((soft[0] + std * torch.randn(clip.shape, generator=noise)).clamp(-1, 1))
    return torch.stack(out)


SOFTENED_SIGMA = 0.7  # the robustness check's blur: about a 1-2-1 kernel


def robustness(model: VideoEncoder, data_dir: str | Path, split: str = "val") -> dict:
    """``attribute_accuracy`` on the real clips of ``split`` softened (sigma ``SOFTENED_SIGMA``) and
    halved (``halve``), each clip quantised back to uint8: what a judge of generated frames must
    survive."""
    clips, records = load_split(data_dir, split)
    scenes = [scene_from_dict(r["scene"]) for r in records]
    out = {}
    for name, change in (("softened", lambda x: soften(x, SOFTENED_SIGMA)), ("halved", halve)):
        changed = []
        for start in range(0, len(clips), 64):
            x = clip_batch(clips, list(range(start, min(start + 64, len(clips)))))
            changed += [to_uint8(v) for v in change(x)]
        out[name] = attribute_accuracy(model, np.stack(changed), scenes)
    return {"split": split, "clips": len(scenes), **out}


def heldout_accuracy(model: VideoEncoder, data_dir: str | Path, splits: tuple[str, ...]) -> dict:
    """``attribute_accuracy`` and the majority baseline on each of the real ``splits``."""
    out = {}
    for split in splits:
        clips, records = load_split(data_dir, split)
        scenes = [scene_from_dict(r["scene"]) for r in records]
        out[split] = {
            "accuracy": attribute_accuracy(model, clips, scenes),
            "majority": majority_hits(scene_labels(scenes)),
            "clips": len(scenes),
        }
    return out


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
    checkpoint_every: int = 100,
    stop_after: int | None = None,
    degraded: float = 0.0,
) -> tuple[VideoEncoder, dict] | None:
    """Train the world classifier (``VideoEncoder``) on ``FreshScenes`` of the data folder's world with
    ``classifier_loss``, AdamW and a cosine learning rate; a ``degraded`` fraction of its clips softened
    or halved and noised (``degrade``).

    ``work_root``: where the run's checkpoints go (``runs.Run``: a killed run resumes), every
    ``checkpoint_every`` steps; None keeps nothing on disk. ``stop_after`` ends this call after that
    many steps, as a kill would (None is returned). Returns the model (eval mode) and metrics:
    per-attribute accuracy
    (``attribute_hits``) next to the majority baseline on the real val, test and held-out-pair splits,
    none of which it trained on, its accuracy on softened and halved val clips (``robustness``), the
    last loss (sum over attributes) and seconds.
    """
    if steps < 1 or batch_size < 1 or lr <= 0 or not 0 <= degraded <= 1:
        raise ValueError(
            f"need steps >= 1, batch_size >= 1, lr > 0, 0 <= degraded <= 1; got {steps}, {batch_size}, {lr}, "
            f"{degraded}"
        )
    scenes = FreshScenes(data_dir, seed)
    world = scenes.world
    cfg = cfg or VideoEncoderConfig(frames=world.frames_per_clip, resolution=world.resolution)
    model = seeded(lambda: VideoEncoder(cfg), seed).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    lr_decay = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, steps) / steps))
    )
    extra = {"degraded": degraded} if degraded else {}  # 0: the key of a run without degradation
    run = evaluator_run(
        work_root, "world classifier", data_dir, cfg, steps=steps, batch_size=batch_size, lr=lr, seed=seed,
        progress=progress, checkpoint_every=checkpoint_every, **extra,
    )  # fmt: skip
    run.resume(model=model, opt=opt, lr_decay=lr_decay, scenes=scenes)
    model.train()
    for _ in run.steps(stop_after):
        clips, batch = scenes.draw(batch_size)
        if degraded:
            clips = degrade(clips, scenes.rng, degraded)
        labels = {name: value.to(device) for name, value in scene_labels(batch).items()}
        loss = classifier_loss(model(clips.to(device)), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        lr_decay.step()
        run.record(loss.detach().item())
    if not run.finished:
        return None
    model.eval().cpu()
    metrics = {
        "steps": steps,
        "clips_seen": steps * batch_size,
        "loss_last": run.history[-1],
        "seconds": round(run.elapsed, 1),
        **heldout_accuracy(model, data_dir, ("val", "test", "heldout")),
        "degraded": degraded,
        "robustness": robustness(model, data_dir),
        "features": f"world-classifier-{cfg.feature_dim}",
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    return model.to(device), run.finish(metrics)


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
    cfg = cfg or ClipConfig(image_size=clips.shape[2], patch=max(1, clips.shape[2] // 4))  # 4x4 patches
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
        cfg.data_dir, steps=ec.encoder_steps, batch_size=ec.encoder_batch_size, lr=ec.encoder_lr,
        degraded=ec.encoder_degraded, **common,
    )  # fmt: skip
    save_evaluator(encoder, encoder.cfg, out_dir / "video_encoder.pt")
    scorer, clip_metrics = train_clip(
        cfg.data_dir, steps=ec.clip_steps, batch_size=ec.clip_batch_size, lr=ec.clip_lr, **common
    )
    save_evaluator(scorer.model, scorer.cfg, out_dir / "clip.pt")
    metrics = {"video_encoder": encoder_metrics, "clip": clip_metrics, "device": device}
    plot_evaluators(metrics, Path(report_dir) / "evaluators.png")
    return metrics
