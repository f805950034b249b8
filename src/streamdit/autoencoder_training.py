"""The autoencoder stage (DESIGN.md section 1, "Latent space"): train the world autoencoder, fit its latent
normalisation, cache the training split's latents, and measure what decoding loses.

One plain loop (random frames of the train split, squared error weighted up at edges plus a light
penalty on the raw latents' mean square, AdamW with warm-up + cosine learning rate) inside a
``runs.Run`` (progress, dvclive, checkpoints, resume). The models live in ``autoencoder.py``, which
inference imports without this module.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from einops import rearrange

from streamdit.acceleration import resolve_device
from streamdit.autoencoder import PretrainedVAE, WorldAutoencoder, read_autoencoder, space_record
from streamdit.checkpoint import atomic_save
from streamdit.data import AUTOENCODER_RECORD, clip_batch, file_digest, load_split, world_settings
from streamdit.evaluators import attribute_accuracy, load_video_encoder, seeded
from streamdit.files import atomic_write
from streamdit.optim import lr_at
from streamdit.plots import plot_loss_curve
from streamdit.progress import progress_bar
from streamdit.runs import Run, config_hash
from streamdit.video import from_uint8, save_strip, to_uint8
from streamdit.world import scene_from_dict

LATENTS = "train.npy"  # the cached latents of the train split, inside the stage's latents folder


def psnr(real: torch.Tensor, decoded: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB of frames in [-1, 1] (peak 2, i.e. 1 on the [0, 1] scale)."""
    mse = (real.float() - decoded.float()).pow(2).mean().item()
    return float("inf") if mse == 0 else 10 * math.log10(4.0 / mse)


def edge_map(x: torch.Tensor, threshold: float = 0.02) -> torch.Tensor:
    """1 where a pixel of frames ``[n, c, h, w]`` differs (any channel, by more than ``threshold``) from
    one of its 4 neighbours, else 0: ``[n, 1, h, w]``. Edges are few and hold a frame's shapes; a plain
    squared error spends its effort on the flat rest. The threshold (in [-1, 1] units) lies above the
    step between rows of the world's background gradients at 64 px (at most 2 of 255 levels); at 32 px
    and below those steps are larger and count as edges too."""
    dy = ((x[:, :, 1:] - x[:, :, :-1]).abs().amax(dim=1, keepdim=True) > threshold).float()
    dx = ((x[:, :, :, 1:] - x[:, :, :, :-1]).abs().amax(dim=1, keepdim=True) > threshold).float()
    edges = torch.zeros_like(x[:, :1])
    edges[:, :, 1:] += dy
    edges[:, :, :-1] += dy
    edges[:, :, :, 1:] += dx
    edges[:, :, :, :-1] += dx
    return (edges > 0).float()


def reconstruction_loss(decoded: torch.Tensor, x: torch.Tensor, edge_weight: float) -> torch.Tensor:
    """Squared error of ``decoded`` against frames ``x``, each pixel weighted ``1 + edge_weight`` at
    edges (``edge_map``) and 1 elsewhere, the weights normalised to mean 1 per batch."""
    error = (decoded - x).pow(2)
    if edge_weight:
        weight = 1 + edge_weight * edge_map(x)
        error = error * (weight / weight.mean())
    return error.mean()


def train_world_autoencoder(
    cfg, *, work_root: str | Path | None = "runs/autoencoder", progress: bool = False, stop_after=None
) -> tuple[WorldAutoencoder, Run] | None:
    """Train the world autoencoder of ``cfg`` (a ``config.Config``) on random frames of the train split.

    Returns the model (normalisation not yet fitted) and its finished run, or None when ``stop_after``
    ended the call early (the last checkpoint stays, as after a kill)."""
    ac = cfg.autoencoder
    device = resolve_device(ac.device)
    clips, _ = load_split(cfg.data_dir, "train")
    model = seeded(lambda: WorldAutoencoder(ac.architecture(cfg.data.resolution)), ac.seed).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=ac.lr, weight_decay=0.0)
    draws = torch.Generator().manual_seed(ac.seed)
    key = config_hash({"world": world_settings(cfg.data_dir), "autoencoder": {**vars(ac), "device": None}})
    run = Run(work_root, key, steps=ac.steps, desc="autoencoder", section="autoencoder",
              batch_size=ac.batch_size, progress=progress, checkpoint_every=ac.checkpoint_every)  # fmt: skip
    run.resume(model=model, opt=opt, draws=draws)
    model.train()
    for step in run.steps(stop_after):
        clip = torch.randint(len(clips), (ac.batch_size,), generator=draws).numpy()
        frame = torch.randint(clips.shape[1], (ac.batch_size,), generator=draws).numpy()
        x = from_uint8(np.asarray(clips[clip, frame])).to(device)  # [n, 3, H, W]
        z = model.raw_encode(x)
        loss = (
            reconstruction_loss(model.raw_decode(z), x, ac.edge_weight) + ac.latent_penalty * z.pow(2).mean()
        )
        lr = lr_at(step, ac.lr, ac.warmup_steps, ac.steps)
        for group in opt.param_groups:
            group["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        run.record(loss.detach().item(), lr)
    if not run.finished:
        return None
    return model.eval(), run


@torch.no_grad()
def encode_split(
    space, clips: np.ndarray, device: str, batch: int = 32, progress: bool = False
) -> np.ndarray:
    """Latents float32 ``[n, f, C, h, w]`` of uint8 clips ``[n, f, H, W, 3]`` (``space.encode``)."""
    out = []
    bar = progress_bar(len(clips), "encoding", progress, unit="clip")
    for start in range(0, len(clips), batch):
        rows = list(range(start, min(start + batch, len(clips))))
        out.append(space.encode(clip_batch(clips, rows).to(device)).float().cpu().numpy())
        bar.update(len(rows))
    bar.close()
    return np.concatenate(out)


@torch.no_grad()
def reconstruct(space, clips: np.ndarray, device: str, batch: int = 32) -> np.ndarray:
    """uint8 clips ``[n, f, H, W, 3]`` through ``space.encode`` and ``space.decode``."""
    out = []
    for start in range(0, len(clips), batch):
        x = clip_batch(clips, list(range(start, min(start + batch, len(clips))))).to(device)
        decoded = space.decode(space.encode(x)).cpu()
        out.append(np.stack([to_uint8(v) for v in decoded]))
    return np.concatenate(out)


def reconstruction_quality(space, data_dir, split: str, classifier, device: str) -> dict:
    """What decoding loses on the real clips of ``split``: PSNR (dB) of the reconstructions, and the world
    classifier's per-attribute accuracy on real and on reconstructed clips."""
    clips, records = load_split(data_dir, split)
    scenes = [scene_from_dict(r["scene"]) for r in records]
    decoded = reconstruct(space, clips, device)
    real = from_uint8(rearrange(np.array(clips), "n f h w c -> (n f) h w c"))  # a writable copy
    return {
        "psnr_db": round(psnr(real, from_uint8(rearrange(decoded, "n f h w c -> (n f) h w c"))), 3),
        "accuracy_real": attribute_accuracy(classifier, clips, scenes),
        "accuracy_decoded": attribute_accuracy(classifier, decoded, scenes),
        "clips": len(clips),
        "decoded": decoded,
    }


def autoencoder_stage(
    cfg,
    out_path: str | Path,
    latents_dir: str | Path,
    evaluators_dir: str | Path,
    report_dir: str | Path,
    *,
    work_root: str | Path | None = "runs/autoencoder",
    progress: bool = False,
) -> dict:
    """The ``autoencoder`` stage: train the world autoencoder (or load ``autoencoder.path``), fit the
    latent normalisation on the train split, write the space to ``out_path`` and the train split's
    latents to ``latents_dir/train.npy`` (with the autoencoder file's SHA-1 beside them); measure PSNR
    and the classifier's accuracy on reconstructed val and test clips; draw real-vs-decoded strips and
    the loss curve into ``report_dir``."""
    ac, report_dir = cfg.autoencoder, Path(report_dir)
    device = resolve_device(ac.device)
    clips, _ = load_split(cfg.data_dir, "train")
    metrics: dict = {"device": device}
    if ac.path is not None:
        space = PretrainedVAE(ac.path).to(device)
        metrics["kind"] = "pretrained"
        latents = encode_split(space, clips, device, progress=progress)
    else:
        model, run = train_world_autoencoder(cfg, work_root=work_root, progress=progress)
        model = model.to(device)
        # Normalisation: per-channel mean and std of the whole train split's raw latents.
        raw = encode_split(model, clips, device, progress=progress)  # statistics still 0 / 1: raw latents
        model.fit_normalisation(torch.from_numpy(rearrange(raw, "n f c h w -> (n f) c h w")))
        mean, std = (
            rearrange(v.cpu().numpy(), "c -> 1 1 c 1 1") for v in (model.latent_mean, model.latent_std)
        )
        latents = (raw - mean) / std  # = encode_split(model, clips, device), without a second pass
        space = model
        metrics.update(
            kind="world",
            steps=run.step,
            loss_last=run.history[-1],
            seconds=round(run.elapsed, 1),
            parameters=sum(p.numel() for p in model.parameters()),
        )
        ylabel = "reconstruction loss (edge-weighted MSE + latent penalty)"
        plot_loss_curve(run.history, report_dir / "loss.png", ylabel=ylabel)
        run.finish({k: metrics[k] for k in ("steps", "loss_last", "seconds")})
    atomic_save(space_record(space), out_path)
    latents_path = Path(latents_dir) / LATENTS
    atomic_write(latents_path, lambda f: np.save(f, latents.astype(np.float32)))
    (Path(latents_dir) / AUTOENCODER_RECORD).write_text(file_digest(out_path) + "\n")  # who encoded them
    metrics["latent_shape"] = list(latents.shape[2:])
    metrics["latent_std"] = round(float(latents.std()), 4)
    classifier = load_video_encoder(Path(evaluators_dir) / "video_encoder.pt", device)
    space = read_autoencoder(out_path).to(device)  # what every model file will record
    for split in ("val", "test"):
        quality = reconstruction_quality(space, cfg.data_dir, split, classifier, device)
        decoded = quality.pop("decoded")
        real, _ = load_split(cfg.data_dir, split)
        rows = range(min(3, len(decoded)))
        shown = [np.asarray(real[i]) for i in rows] + [decoded[i] for i in rows]
        save_strip(shown, report_dir / f"{split}_reconstruction.png",
                   captions=[f"real {i}" for i in rows] + [f"decoded {i}" for i in rows])  # fmt: skip
        quality["accuracy_gap"] = {
            name: round(quality["accuracy_real"][name] - quality["accuracy_decoded"][name], 4)
            for name in quality["accuracy_real"]
        }
        metrics[split] = quality
    return metrics
