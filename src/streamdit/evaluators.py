"""Learned evaluators (DESIGN.md section 2): video features for FVD and a CLIP for CLIP scores.

No pretrained weights exist offline, so both evaluators can be trained on our own world:
- ``VideoEncoder``, a small 3D-conv net classifying scene attributes; its penultimate features
  serve FVD under the name "world-video-encoder". With the standard I3D TorchScript file on disk
  (``load_i3d_torchscript``) FVD uses I3D instead, under the name "i3d".
- a small ``open_clip.CLIP`` trained with open_clip's ``ClipLoss`` on (frame, caption) pairs; with
  a local pretrained checkpoint (``load_pretrained_clip``) the same ``ClipScorer`` scores with it.
Videos are float ``[b, f, c, h, w]`` in [-1, 1] (``b f c h w`` as everywhere); frames ``[n, c, h, w]``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from einops import rearrange
from open_clip.loss import ClipLoss
from open_clip.model import CLIPTextCfg, CLIPVisionCfg
from torch import nn
from tqdm.auto import tqdm

from streamdit.data import BACKGROUNDS, COLOURS, MOTIONS, SHAPES, SIZES, SceneSpec, scene_from_dict
from streamdit.metrics import retrieval_top1
from streamdit.train import atomic_save
from streamdit.video import from_uint8

# Classification targets of the video encoder: attributes of the first object, the background and
# the number of objects. Values index these vocabularies.
ATTRIBUTES: dict[str, tuple] = {
    "shape": SHAPES,
    "colour": COLOURS,
    "size": SIZES,
    "motion": MOTIONS,
    "background": BACKGROUNDS,
    "objects": (1, 2),
}


def scene_labels(scenes: list[SceneSpec]) -> dict[str, torch.Tensor]:
    """Attribute labels of each scene: ``{attribute: long [n]}`` indexing ``ATTRIBUTES[attribute]``."""
    columns = {
        "shape": [SHAPES.index(s.objects[0].shape) for s in scenes],
        "colour": [COLOURS.index(s.objects[0].colour) for s in scenes],
        "size": [SIZES.index(s.objects[0].size) for s in scenes],
        "motion": [MOTIONS.index(s.objects[0].motion) for s in scenes],
        "background": [BACKGROUNDS.index(s.background) for s in scenes],
        "objects": [len(s.objects) - 1 for s in scenes],
    }
    return {name: torch.tensor(values, dtype=torch.long) for name, values in columns.items()}


def load_split(data_dir: str | Path, split: str) -> tuple[np.ndarray, list[dict]]:
    """Clips uint8 ``[n, f, h, w, 3]`` (memory-mapped) and records of one split of the world."""
    data_dir = Path(data_dir)
    clips_path, records_path = data_dir / f"{split}.npy", data_dir / f"{split}.json"
    for path in (clips_path, records_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found; generate the world with `python -m streamdit.data`")
    return np.load(clips_path, mmap_mode="r"), json.loads(records_path.read_text())


def clip_batch(clips: np.ndarray, index: torch.Tensor | list[int]) -> torch.Tensor:
    """Rows ``index`` of uint8 clips ``[n, f, h, w, 3]`` as float ``[b, f, c, h, w]`` in [-1, 1]."""
    rows = np.asarray(index, dtype=np.int64)
    frames = from_uint8(rearrange(np.asarray(clips[rows]), "b f h w c -> (b f) h w c"))
    return rearrange(frames, "(b f) c h w -> b f c h w", b=len(rows))


###############################################################################################
#                                 Video encoder (FVD features)                                #
###############################################################################################


@dataclass
class VideoEncoderConfig:
    """A 3D-conv attribute classifier: ``widths`` per stage, each stage halving f, h and w."""

    frames: int = 16
    resolution: int = 32
    channels: int = 3
    widths: tuple[int, ...] = (32, 64, 128)
    feature_dim: int = 64

    def __post_init__(self) -> None:
        self.widths = tuple(self.widths)
        if not self.widths or any(w < 1 for w in self.widths):
            raise ValueError(f"widths must be a non-empty list of positive ints, got {self.widths}")
        for name in ("frames", "resolution", "channels", "feature_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


class VideoEncoder(nn.Module):
    """3D convolutions over ``[b, f, c, h, w]`` clips, global pooling, then one head per attribute."""

    def __init__(self, cfg: VideoEncoderConfig):
        super().__init__()
        self.cfg = cfg
        # The stem halves h and w only: motion needs every frame, 32-px shapes need the detail.
        layers: list[nn.Module] = [
            nn.Conv3d(cfg.channels, cfg.widths[0], 3, stride=(1, 2, 2), padding=1),
            nn.GroupNorm(8 if cfg.widths[0] % 8 == 0 else 1, cfg.widths[0]),
            nn.SiLU(),
        ]
        for w_in, w_out in zip(cfg.widths[:-1], cfg.widths[1:], strict=True):
            layers += [
                nn.Conv3d(w_in, w_out, 3, stride=2, padding=1),
                nn.GroupNorm(8 if w_out % 8 == 0 else 1, w_out),
                nn.SiLU(),
            ]
        self.body = nn.Sequential(*layers)
        self.project = nn.Sequential(nn.Linear(cfg.widths[-1], cfg.feature_dim), nn.SiLU())
        self.heads = nn.ModuleDict(
            {name: nn.Linear(cfg.feature_dim, len(values)) for name, values in ATTRIBUTES.items()}
        )

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features ``[b, feature_dim]`` of clips ``[b, f, c, h, w]`` in [-1, 1] (for FVD)."""
        h = self.body(rearrange(x, "b f c h w -> b c f h w"))
        return self.project(h.mean(dim=(2, 3, 4)))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits ``{attribute: [b, classes]}``."""
        feats = self.features(x)
        return {name: head(feats) for name, head in self.heads.items()}


@torch.no_grad()
def attribute_accuracy(
    model: VideoEncoder, clips: np.ndarray, labels: dict[str, torch.Tensor], batch_size: int = 64
) -> dict[str, float]:
    """Fraction of clips whose every attribute is classified correctly, per attribute."""
    model.eval()
    device = next(model.parameters()).device
    correct = {name: 0 for name in ATTRIBUTES}
    for start in range(0, len(clips), batch_size):
        rows = list(range(start, min(start + batch_size, len(clips))))
        logits = model(clip_batch(clips, rows).to(device))
        for name in ATTRIBUTES:
            correct[name] += int((logits[name].argmax(-1).cpu() == labels[name][rows]).sum())
    return {name: correct[name] / len(clips) for name in ATTRIBUTES}


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
) -> tuple[VideoEncoder, dict]:
    """Train a ``VideoEncoder`` with cross-entropy on every attribute of the train split.

    Returns the model (eval mode) and metrics: held-out (val split) accuracy per attribute next to
    the majority-class rate of that split, the last training loss (sum over attributes) and seconds.
    """
    if steps < 1 or batch_size < 1 or lr <= 0:
        raise ValueError(f"need steps >= 1, batch_size >= 1, lr > 0; got {steps}, {batch_size}, {lr}")
    clips, records = load_split(data_dir, "train")
    scenes = [scene_from_dict(r["scene"]) for r in records]
    labels = scene_labels(scenes)
    cfg = cfg or VideoEncoderConfig(frames=clips.shape[1], resolution=clips.shape[2])
    torch.manual_seed(seed)  # parameter initialisation only; batches use their own generator
    model = VideoEncoder(cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    batches = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    model.train()
    loss = torch.zeros(())
    for _ in tqdm(range(steps), desc="video encoder", disable=not progress):
        idx = torch.randint(len(clips), (batch_size,), generator=batches)
        logits = model(clip_batch(clips, idx).to(device))
        loss = sum(F.cross_entropy(logits[name], labels[name][idx].to(device)) for name in ATTRIBUTES)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    seconds = time.perf_counter() - start
    val_clips, val_records = load_split(data_dir, "val")
    val_labels = scene_labels([scene_from_dict(r["scene"]) for r in val_records])
    majority = {
        name: float(torch.bincount(val_labels[name]).max()) / len(val_records) for name in ATTRIBUTES
    }
    metrics = {
        "steps": steps,
        "loss_last": float(loss),
        "seconds": round(seconds, 1),
        "val_accuracy": attribute_accuracy(model, val_clips, val_labels),
        "val_majority": majority,
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    return model.eval(), metrics
