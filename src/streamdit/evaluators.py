"""The world video encoder (DESIGN.md section 2): attribute classifier and FVD features.

No pretrained video network exists offline, so FVD's features come from our own: ``VideoEncoder``,
a small 3D-conv net classifying scene attributes, whose penultimate features serve FVD under the
name "world-video-encoder". With the standard I3D TorchScript file on disk (``load_i3d_torchscript``)
FVD uses I3D instead, under the name "i3d". The CLIP that gives CLIP scores is in ``clip.py``.
Videos are float ``[b, f, c, h, w]`` in [-1, 1] (``b f c h w`` as everywhere).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from einops import rearrange
from torch import nn

from streamdit.checkpoint import read_evaluator
from streamdit.data import clip_batch
from streamdit.world import BACKGROUNDS, COLOURS, MOTIONS, SHAPES, SIZES, SceneSpec

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


def seeded(build: Callable[[], nn.Module], seed: int) -> nn.Module:
    """``build()`` with parameters initialised from ``seed``, leaving the global RNG state as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


###############################################################################################
#                                 Video encoder (FVD features)                                #
###############################################################################################


@dataclass
class VideoEncoderConfig:
    """A 3D-conv attribute classifier: ``widths`` per stage; the stem cuts f by 2 and h, w by 4, each
    later stage halves all three, so clips need f divisible by 2^len(widths) and h, w by 2^(len + 1)."""

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
        stages = len(self.widths)
        if self.frames % 2**stages or self.resolution % 2 ** (stages + 1):
            raise ValueError(
                f"frames={self.frames} must be divisible by {2**stages} and resolution={self.resolution} "
                f"by {2 ** (stages + 1)} for {stages} stages"
            )


class VideoEncoder(nn.Module):
    """3D convolutions over ``[b, f, c, h, w]`` clips, global pooling, then one head per attribute."""

    def __init__(self, cfg: VideoEncoderConfig):
        super().__init__()
        self.cfg = cfg
        # A patchifying stem (2 frames x 4 x 4 pixels per cell, one matrix product: 3D convolutions over
        # full-resolution clips are slow on a CPU), then stride-2 3D convolutions that halve f, h and w.
        layers: list[nn.Module] = [nn.Conv3d(cfg.channels, cfg.widths[0], (2, 4, 4), stride=(2, 4, 4))]
        layers += [nn.GroupNorm(8 if cfg.widths[0] % 8 == 0 else 1, cfg.widths[0]), nn.SiLU()]
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


def load_video_encoder(path: str | Path, device: str = "cpu") -> VideoEncoder:
    """A ``VideoEncoder`` written by ``checkpoint.save_evaluator``, in eval mode on ``device``."""
    cfg, state = read_evaluator(path, VideoEncoderConfig)
    model = VideoEncoder(cfg)
    model.load_state_dict(state)
    return model.to(device).eval()


###############################################################################################
#                                 FVD feature extractors                                      #
###############################################################################################


@dataclass
class FeatureExtractor:
    """Video features for FVD; ``name`` ("i3d" or "world-video-encoder") goes into every report.

    ``embed`` maps clips ``[b, f, c, h, w]`` in [-1, 1] on ``device`` to features ``[b, d]``.
    """

    name: str
    embed: Callable[[torch.Tensor], torch.Tensor]
    device: str = "cpu"
    batch_size: int = 32

    @torch.no_grad()
    def __call__(self, videos: torch.Tensor) -> torch.Tensor:
        """Features float64 ``[n, d]`` on the CPU of clips ``[n, f, c, h, w]``, in batches."""
        if videos.ndim != 5:
            raise ValueError(f"videos must be [n, f, c, h, w], got shape {tuple(videos.shape)}")
        out = [
            self.embed(videos[i : i + self.batch_size].to(self.device).float()).double().cpu()
            for i in range(0, len(videos), self.batch_size)
        ]
        return torch.cat(out)


def world_feature_extractor(encoder: VideoEncoder) -> FeatureExtractor:
    """FVD features from our trained ``VideoEncoder`` (its penultimate layer)."""
    return FeatureExtractor("world-video-encoder", encoder.features, str(next(encoder.parameters()).device))


def load_i3d_torchscript(path: str | Path, device: str = "cpu") -> FeatureExtractor:
    """FVD features from the standard I3D TorchScript file (``i3d_torchscript.pt``, the Kinetics-400
    I3D ported from the TF-Hub model of the original FVD code, as used by StyleGAN-V's FVD).

    The file's module takes videos ``[b, c, f, h, w]``; we call it as StyleGAN-V does, on uint8-valued
    frames in 0..255 with ``rescale=True`` (it maps them to [-1, 1]), ``resize=True`` (it resizes to
    224 x 224) and ``return_features=True``, which returns the 400-d logits layer before the softmax.
    Our [-1, 1] frames are quantised to 0..255 first, exactly as a written video would be.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"I3D TorchScript file {path} not found; set i3d_path to the file (i3d_torchscript.pt) or "
            "leave it empty to use the world video encoder"
        )
    detector = torch.jit.load(str(path), map_location=device).eval()

    def embed(x: torch.Tensor) -> torch.Tensor:
        video = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        return detector(
            rearrange(video, "b f c h w -> b c f h w"), rescale=True, resize=True, return_features=True
        )

    return FeatureExtractor("i3d", embed, device, batch_size=16)


###############################################################################################
#                                 CLIP (CLIP score)                                           #
###############################################################################################
