"""The world classifier (DESIGN.md section 2): caption accuracy per attribute, FVD / KID features.

No pretrained video network exists offline, so the judge is our own: ``VideoEncoder``, a classifier of
every captioned attribute (one slot per world colour reads that object's shape, size and motion;
background and object count from the whole scene), trained on freshly rendered scenes
(``evaluator_training``). ``attribute_hits`` scores a clip against its caption; its penultimate
features serve FVD and KID under the name "world-classifier". With the standard I3D TorchScript file
on disk (``load_i3d_torchscript``) FVD uses I3D instead, under the name "i3d". The CLIP that gives
CLIP scores is in ``clip.py``. Videos are float ``[b, f, c, h, w]`` in [-1, 1] (``b f c h w``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange, reduce
from torch import nn

from streamdit.checkpoint import read_evaluator
from streamdit.data import clip_batch
from streamdit.world import BACKGROUNDS, COLOUR_RGB, COLOURS, MOTIONS, SHAPES, SIZES, SceneSpec

# Classification targets: the background, the number of objects, and per colour (two objects of a
# scene always differ in colour, so the colour names an object without an order) whether an object of
# that colour is present and its shape, size and motion.
ATTRIBUTES: dict[str, tuple] = {
    "shape": SHAPES,
    "colour": COLOURS,
    "size": SIZES,
    "motion": MOTIONS,
    "background": BACKGROUNDS,
    "objects": (1, 2),
}


OBJECT_ATTRIBUTES = ("shape", "size", "motion")  # read from the slot of the object's colour


def scene_labels(scenes: list[SceneSpec]) -> dict[str, torch.Tensor]:
    """Attribute labels of each scene.

    ``colour``: float multi-hot ``[n, colours]`` of the colours present; ``shape`` / ``size`` /
    ``motion``: long ``[n, colours]`` indexing ``ATTRIBUTES[name]`` in the slot of each present colour
    and -1 elsewhere; ``background`` and ``objects`` (count - 1): long ``[n]``.
    """
    n, k = len(scenes), len(COLOURS)
    colour = torch.zeros(n, k)
    slots = {name: torch.full((n, k), -1, dtype=torch.long) for name in OBJECT_ATTRIBUTES}
    for i, scene in enumerate(scenes):
        for obj in scene.objects:
            c = COLOURS.index(obj.colour)
            colour[i, c] = 1.0
            for name in OBJECT_ATTRIBUTES:
                slots[name][i, c] = ATTRIBUTES[name].index(getattr(obj, name))
    return {
        "colour": colour,
        **slots,
        "background": torch.tensor([BACKGROUNDS.index(s.background) for s in scenes]),
        "objects": torch.tensor([len(s.objects) - 1 for s in scenes]),
    }


def classifier_loss(logits: dict[str, torch.Tensor], labels: dict[str, torch.Tensor]) -> torch.Tensor:
    """Summed loss over attributes: binary cross-entropy of colour presence, cross-entropy of each
    present object's shape, size and motion (absent slots ignored) and of background and count."""
    loss = F.binary_cross_entropy_with_logits(logits["colour"], labels["colour"])
    for name in OBJECT_ATTRIBUTES:
        loss = loss + F.cross_entropy(logits[name].flatten(0, 1), labels[name].flatten(), ignore_index=-1)
    for name in ("background", "objects"):
        loss = loss + F.cross_entropy(logits[name], labels[name])
    return loss


def attribute_hits(
    logits: dict[str, torch.Tensor], labels: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Per clip and attribute, the fraction of the caption the classifier recovers, float ``[n]``.

    colour: the fraction of captioned colours among the classifier's top-m colours (m = the captioned
    number of objects); shape, size, motion: the fraction of captioned objects whose colour's slot
    predicts the captioned value (so "a red circle" drawn as a blue circle misses colour and shape);
    background and objects: 1 if right. For one-object captions every value is 0 or 1.
    """
    present = labels["colour"] > 0
    m = present.sum(dim=1)
    order = logits["colour"].argsort(dim=1, descending=True).argsort(dim=1)  # rank of each colour
    chosen = order < m[:, None]
    hits = {"colour": (chosen & present).sum(dim=1) / m}
    for name in OBJECT_ATTRIBUTES:
        right = (logits[name].argmax(-1) == labels[name]) & present
        hits[name] = right.sum(dim=1) / m
    for name in ("background", "objects"):
        hits[name] = (logits[name].argmax(-1) == labels[name]).float()
    return {name: hits[name].float() for name in ATTRIBUTES}


def majority_hits(labels: dict[str, torch.Tensor]) -> dict[str, float]:
    """The accuracy (as ``attribute_hits``) of always guessing the most frequent value of each
    attribute (the m most frequent colours) on these labels: the baseline an attribute must beat."""
    present = labels["colour"] > 0
    m = present.sum(dim=1)
    out = {}
    by_count = labels["colour"].sum(dim=0).argsort(descending=True)
    chosen = torch.zeros_like(present)
    for i, count in enumerate(m.tolist()):
        chosen[i, by_count[:count]] = True
    out["colour"] = float(((chosen & present).sum(dim=1) / m).mean())
    for name in OBJECT_ATTRIBUTES:
        values = labels[name][present]
        guess = torch.bincount(values, minlength=len(ATTRIBUTES[name])).argmax()
        out[name] = float((((labels[name] == guess) & present).sum(dim=1) / m).mean())
    for name in ("background", "objects"):
        out[name] = float(torch.bincount(labels[name]).max()) / len(labels[name])
    return {name: out[name] for name in ATTRIBUTES}


def seeded(build: Callable[[], nn.Module], seed: int) -> nn.Module:
    """``build()`` with parameters initialised from ``seed``, leaving the global RNG state as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


###############################################################################################
#                                 Video encoder (FVD features)                                #
###############################################################################################


STEM = (16, 32, 64, 64)  # the stem's widths (VideoEncoderConfig.stem)


@dataclass
class VideoEncoderConfig:
    """The world classifier (``VideoEncoder``).

    A per-frame 2D stem keeps full resolution for its first convolution (edges decide shape; frames
    above 32 px are first folded into channels, ``unshuffle``), then each further convolution halves h
    and w (``stem``: channels of its 3x3 convolutions); a 3D convolution halves f (``widths[0]``),
    giving the feature map that the colour slots read; further 3D convolutions (``widths[1:]``, each
    halving f, h and w) give the scene's global features. Each slot runs ``slot_width`` channels over
    time. ``colour_sigma``: width of the soft colour maps, in [-1, 1] units. Clips need f divisible by
    2^len(widths) and h, w by ``down`` * 2^(len(widths) - 1).
    """

    frames: int = 16
    resolution: int = 64
    channels: int = 3
    # None: (16, 32, 64, 64) cut to as many halvings as bring the (unshuffled) frame to 8x8 (at least one).
    stem: tuple[int, ...] | None = None
    widths: tuple[int, ...] = (64, 128)
    slot_width: int = 64
    feature_dim: int = 128
    colour_sigma: float = 0.3

    def __post_init__(self) -> None:
        if self.stem is None:
            halvings = max(1, min(3, (self.resolution // (8 * self.unshuffle)).bit_length() - 1))
            self.stem = STEM[: halvings + 1]
        self.stem, self.widths = tuple(self.stem), tuple(self.widths)
        if len(self.stem) < 2 or any(w < 1 for w in self.stem):
            raise ValueError(f"stem must be >= 2 positive ints (channels per convolution), got {self.stem}")
        if not self.widths or any(w < 1 for w in self.widths):
            raise ValueError(f"widths must be a non-empty list of positive ints, got {self.widths}")
        for name in ("frames", "resolution", "channels", "feature_dim", "slot_width"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.channels != 3:
            raise ValueError(f"the world classifier reads RGB frames (channels=3), got {self.channels}")
        if self.colour_sigma <= 0:
            raise ValueError(f"colour_sigma must be > 0, got {self.colour_sigma}")
        stages = len(self.widths)
        side = self.down * 2 ** (stages - 1)
        if self.frames % 2**stages or self.resolution % side:
            raise ValueError(
                f"frames={self.frames} must be divisible by {2**stages} and resolution={self.resolution} "
                f"by {side} for a stem of {len(self.stem)} and {stages} 3D stages"
            )

    @property
    def unshuffle(self) -> int:
        """Frames above 32 px enter the stem folded: each u x u pixel square becomes 3 u^2 channels at
        32 px (lossless, and no convolution runs at full resolution)."""
        return max(1, self.resolution // 32)

    @property
    def down(self) -> int:
        """How much the stem (with its unshuffle) shrinks h and w."""
        return self.unshuffle * 2 ** (len(self.stem) - 1)


def _norm(width: int) -> nn.GroupNorm:
    return nn.GroupNorm(8 if width % 8 == 0 else 1, width)


def _conv3d(w_in: int, w_out: int, stride) -> list[nn.Module]:
    return [nn.Conv3d(w_in, w_out, 3, stride=stride, padding=1), _norm(w_out), nn.SiLU()]


SLOT_TRACK = 5  # per slot and time step: the colour map's circular centroid (sin, cos per axis), area


def colour_maps(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Soft maps ``[b, f, colours, h, w]`` in [0, 1]: how close each pixel of ``x [b, f, 3, h, w]`` (in
    [-1, 1]) is to each world colour (a Gaussian of the RGB distance with width ``sigma``)."""
    rgb = torch.tensor([COLOUR_RGB[c] for c in COLOURS], dtype=x.dtype, device=x.device) / 127.5 - 1
    d2 = (x[:, :, None] - rgb[None, None, :, :, None, None]).pow(2).sum(dim=3)
    return torch.exp(-d2 / (2 * sigma**2))


def colour_tracks(maps: torch.Tensor) -> torch.Tensor:
    """Per colour and frame ``[b, colours, f, SLOT_TRACK]``: the circular centroid of its map (sine and
    cosine of the mean angle per axis, scaled by the mean resultant length, so an empty map gives 0)
    and its area (the map's mean, times 10)."""
    b, f, k, h, w = maps.shape
    out = []
    for axis, size in ((3, h), (4, w)):
        weights = maps.sum(dim=7 - axis)  # [b, f, k, size]: summed over the other axis
        angle = torch.arange(size, dtype=maps.dtype, device=maps.device) * (2 * math.pi / size)
        mass = weights.sum(-1).clamp_min(1e-6)
        out += [(weights * torch.sin(angle)).sum(-1) / mass, (weights * torch.cos(angle)).sum(-1) / mass]
    out.append(10 * maps.mean(dim=(3, 4)))
    return rearrange(torch.stack(out, dim=-1), "b f k t -> b k f t")


class VideoEncoder(nn.Module):
    """The world classifier over ``[b, f, c, h, w]`` clips (``VideoEncoderConfig``).

    One slot per world colour: the colour's soft map (``colour_maps``) weights a spatial average of the
    shared feature map per time step, the colour's track (``colour_tracks``) joins it, and 1D
    convolutions over time give the slot's features, from which shared heads read whether an object of
    that colour is present and its shape, size and motion: attributes are bound to their object by
    construction. The scene's global features (3D convolutions, mean and max pooled) with the summed
    slot features are the penultimate ``features`` (FVD, KID), from which the background and count
    heads read.
    """

    def __init__(self, cfg: VideoEncoderConfig):
        super().__init__()
        self.cfg = cfg
        u = cfg.unshuffle
        stem: list[nn.Module] = [nn.PixelUnshuffle(u)] if u > 1 else []
        stem += [nn.Conv2d(cfg.channels * u * u, cfg.stem[0], 3, padding=1), _norm(cfg.stem[0]), nn.SiLU()]
        for w_in, w_out in zip(cfg.stem[:-1], cfg.stem[1:], strict=True):
            stem += [nn.Conv2d(w_in, w_out, 3, stride=2, padding=1), _norm(w_out), nn.SiLU()]
        self.stem = nn.Sequential(*stem)
        self.temporal = nn.Sequential(*_conv3d(cfg.stem[-1], cfg.widths[0], (2, 1, 1)))
        layers: list[nn.Module] = []
        for w_in, w_out in zip(cfg.widths[:-1], cfg.widths[1:], strict=True):
            layers += _conv3d(w_in, w_out, 2)
        self.body = nn.Sequential(*layers)
        ws = cfg.slot_width
        self.slot_time = nn.Sequential(
            nn.Conv1d(cfg.widths[0] + SLOT_TRACK, ws, 3, padding=1), _norm(ws), nn.SiLU(),
            nn.Conv1d(ws, ws, 3, stride=2, padding=1), _norm(ws), nn.SiLU(),
        )  # fmt: skip
        self.slot_project = nn.Sequential(nn.Linear(2 * ws, ws), nn.SiLU())
        self.slot_heads = nn.ModuleDict(
            {"colour": nn.Linear(ws, 1)} | {n: nn.Linear(ws, len(ATTRIBUTES[n])) for n in OBJECT_ATTRIBUTES}
        )
        self.project = nn.Sequential(nn.Linear(2 * cfg.widths[-1] + ws, cfg.feature_dim), nn.SiLU())
        self.heads = nn.ModuleDict(
            {
                "background": nn.Linear(cfg.feature_dim, len(BACKGROUNDS)),
                "objects": nn.Linear(cfg.feature_dim, 2),
            }
        )

    def _encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Slot features ``[b, colours, slot_width]`` and global features ``[b, feature_dim]``."""
        b, f = x.shape[:2]
        h = self.stem(rearrange(x, "b f c h w -> (b f) c h w"))
        h = self.temporal(rearrange(h, "(b f) c h w -> b c f h w", b=b))  # [b, w0, f/2, h/down, w/down]
        maps = colour_maps(x, self.cfg.colour_sigma)  # [b, f, k, h, w]
        track = colour_tracks(maps)  # [b, k, f, SLOT_TRACK]
        track = reduce(track, "b k (f two) t -> b k f t", "mean", two=2)
        down = self.cfg.down
        small = reduce(maps, "b (f two) k (h dy) (w dx) -> b k f h w", "mean", two=2, dy=down, dx=down)
        pooled = torch.einsum("bcfhw,bkfhw->bkcf", h, small) / small.sum(dim=(3, 4))[:, :, None].clamp_min(
            1e-3
        )
        slot_in = torch.cat([pooled, rearrange(track, "b k f t -> b k t f")], dim=2)  # [b, k, w0 + 5, f/2]
        z = self.slot_time(rearrange(slot_in, "b k c f -> (b k) c f"))
        slots = self.slot_project(torch.cat([z.mean(dim=-1), z.amax(dim=-1)], dim=-1))
        slots = rearrange(slots, "(b k) c -> b k c", b=b)
        g = self.body(h)
        scene = torch.cat([g.mean(dim=(2, 3, 4)), g.amax(dim=(2, 3, 4)), slots.sum(dim=1)], dim=1)
        return slots, self.project(scene)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features ``[b, feature_dim]`` of clips ``[b, f, c, h, w]`` in [-1, 1] (FVD, KID)."""
        return self._encode(x)[1]

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits: ``colour [b, colours]`` (presence), ``shape`` / ``size`` / ``motion``
        ``[b, colours, values]`` (per colour slot), ``background [b, 4]``, ``objects [b, 2]``; with
        ``features`` (the penultimate features) besides, so that one pass gives both."""
        slots, feats = self._encode(x)
        out = {name: head(slots) for name, head in self.slot_heads.items()}
        out["colour"] = out["colour"].squeeze(-1)
        return out | {name: head(feats) for name, head in self.heads.items()} | {"features": feats}


@torch.no_grad()
def classify(model: VideoEncoder, videos: torch.Tensor, batch_size: int = 64) -> dict[str, torch.Tensor]:
    """The classifier's outputs (logits and ``features``, on the CPU) of videos ``[n, f, c, h, w]`` in
    [-1, 1], in batches."""
    model.eval()
    device = next(model.parameters()).device
    parts = [model(videos[i : i + batch_size].to(device).float()) for i in range(0, len(videos), batch_size)]
    return {name: torch.cat([p[name] for p in parts]).cpu() for name in parts[0]}


def attribute_accuracy(model: VideoEncoder, clips: np.ndarray, scenes: list[SceneSpec]) -> dict[str, float]:
    """Per attribute, the mean over clips (uint8 ``[n, f, h, w, c]``) of ``attribute_hits``."""
    logits = {}
    for start in range(0, len(clips), 256):
        part = classify(model, clip_batch(clips, list(range(start, min(start + 256, len(clips))))))
        for name, value in part.items():
            logits.setdefault(name, []).append(value)
    hits = attribute_hits({n: torch.cat(v) for n, v in logits.items()}, scene_labels(scenes))
    return {name: float(value.mean()) for name, value in hits.items()}


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
    """Video features for FVD and KID; ``name`` ("i3d" or "world-classifier") goes into every report.

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
    """FVD and KID features from the trained world classifier (its penultimate layer)."""
    return FeatureExtractor("world-classifier", encoder.features, str(next(encoder.parameters()).device))


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
