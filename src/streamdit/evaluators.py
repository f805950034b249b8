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

from streamdit.data import (
    BACKGROUNDS,
    COLOURS,
    MOTIONS,
    SHAPES,
    SIZES,
    SceneSpec,
    scene_from_dict,
    write_atomic,
)
from streamdit.metrics import retrieval_top1
from streamdit.progress import progress_bar
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


def _seeded(build: Callable[[], nn.Module], seed: int) -> nn.Module:
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
    model = _seeded(lambda: VideoEncoder(cfg), seed).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    batches = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    model.train()
    loss = torch.zeros(())
    for _ in progress_bar(steps, "video encoder", progress, iterable=range(steps)):
        idx = torch.randint(len(clips), (batch_size,), generator=batches)
        logits = model(clip_batch(clips, idx).to(device))
        loss = sum(F.cross_entropy(logits[name], labels[name][idx].to(device)) for name in ATTRIBUTES)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    seconds = time.perf_counter() - start
    val_clips, val_records = load_split(data_dir, "val")
    val_labels = scene_labels([scene_from_dict(r["scene"]) for r in val_records])
    majority = {name: float(torch.bincount(val_labels[name]).max()) / len(val_records) for name in ATTRIBUTES}
    metrics = {
        "steps": steps,
        "loss_last": float(loss.detach()),
        "seconds": round(seconds, 1),
        "val_accuracy": attribute_accuracy(model, val_clips, val_labels),
        "val_majority": majority,
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    return model.eval(), metrics


###############################################################################################
#                                 Saving and loading evaluators                               #
###############################################################################################


def save_evaluator(model: VideoEncoder | open_clip.CLIP, cfg: VideoEncoderConfig | ClipConfig, path) -> Path:
    """Write an evaluator's config and weights atomically to ``path`` (a ``.pt`` file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"kind": type(cfg).__name__, "config": asdict(cfg), "state": model.state_dict()}
    write_atomic(path, lambda f: torch.save(state, f))
    return path


def _read_evaluator(path: str | Path, cfg_type: type) -> tuple:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no evaluator at {path}; train it first (the evaluators stage)")
    state = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(state, dict) or state.get("kind") != cfg_type.__name__:
        found = state.get("kind") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"{path} holds {found!r}, not a {cfg_type.__name__} evaluator")
    return cfg_type(**state["config"]), state["state"]


def load_video_encoder(path: str | Path, device: str = "cpu") -> VideoEncoder:
    """A ``VideoEncoder`` written by ``save_evaluator``, in eval mode on ``device``."""
    cfg, state = _read_evaluator(path, VideoEncoderConfig)
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


@dataclass
class ClipConfig:
    """A small open_clip CLIP for 32-px frames: a ViT vision tower and a causal text transformer."""

    image_size: int = 32
    patch: int = 8
    embed_dim: int = 64
    vision_width: int = 64
    vision_layers: int = 2
    text_width: int = 64
    text_layers: int = 2
    heads: int = 4
    context_length: int = 32

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if value < 1:
                raise ValueError(f"clip {name} must be >= 1, got {value}")
        if self.image_size % self.patch:
            raise ValueError(f"clip image_size={self.image_size} is not divisible by patch={self.patch}")
        for width in (self.vision_width, self.text_width):
            if width % self.heads:
                raise ValueError(f"clip width {width} is not divisible by heads={self.heads}")


def build_clip(cfg: ClipConfig) -> open_clip.CLIP:
    """An untrained ``open_clip.CLIP`` of the given size (open_clip's BPE vocabulary, bundled offline)."""
    vision = CLIPVisionCfg(
        layers=cfg.vision_layers,
        width=cfg.vision_width,
        head_width=cfg.vision_width // cfg.heads,
        patch_size=cfg.patch,
        image_size=cfg.image_size,
    )
    text = CLIPTextCfg(
        context_length=cfg.context_length, width=cfg.text_width, heads=cfg.heads, layers=cfg.text_layers
    )
    return open_clip.CLIP(cfg.embed_dim, vision, text)


class ClipScorer:
    """Scores frames against captions with a CLIP: preprocessing, tokenising and the embedding cache.

    Frames ``[n, c, h, w]`` in [-1, 1] are mapped to [0, 1], resized to the model's image size and
    normalised with its mean and std (our own CLIP uses mean = std = 0.5, i.e. the raw [-1, 1]).
    """

    def __init__(
        self,
        model: open_clip.CLIP,
        tokenizer: Callable[[list[str]], torch.Tensor],
        image_size: int,
        mean: tuple[float, float, float] = (0.5, 0.5, 0.5),
        std: tuple[float, float, float] = (0.5, 0.5, 0.5),
        batch_size: int = 256,
        cfg: ClipConfig | None = None,
    ):
        self.model = model.eval()
        self.cfg = cfg  # the architecture of a CLIP we trained (saved with it); None for pretrained ones
        self.tokenizer = tokenizer
        self.image_size = image_size
        self.device = next(model.parameters()).device
        self.mean = torch.tensor(mean).view(1, 3, 1, 1)
        self.std = torch.tensor(std).view(1, 3, 1, 1)
        self.batch_size = batch_size
        self._text_cache: dict[str, torch.Tensor] = {}

    def preprocess(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames ``[n, c, h, w]`` in [-1, 1] to the model's normalised input ``[n, c, size, size]``."""
        x = (frames.float().clamp(-1, 1) + 1) / 2
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bicubic", align_corners=False)
        return (x - self.mean) / self.std

    @torch.no_grad()
    def image_embeddings(self, frames: torch.Tensor) -> torch.Tensor:
        """Unit-norm image embeddings ``[n, embed_dim]`` (CPU, float32) of frames ``[n, c, h, w]``."""
        out = [
            self.model.encode_image(self.preprocess(frames[i : i + self.batch_size]).to(self.device), True)
            for i in range(0, len(frames), self.batch_size)
        ]
        return torch.cat(out).float().cpu()

    @torch.no_grad()
    def text_embeddings(self, captions: list[str]) -> torch.Tensor:
        """Unit-norm caption embeddings ``[n, embed_dim]`` (CPU, float32); each caption is encoded once."""
        todo = sorted({c for c in captions if c not in self._text_cache})
        for i in range(0, len(todo), self.batch_size):
            chunk = todo[i : i + self.batch_size]
            emb = self.model.encode_text(self.tokenizer(chunk).to(self.device), True).float().cpu()
            self._text_cache.update(zip(chunk, emb, strict=True))
        return torch.stack([self._text_cache[c] for c in captions])

    def score(self, frames: torch.Tensor, captions: list[str]) -> torch.Tensor:
        """Per-frame CLIP scores ``[n]``, ``100 * max(cos, 0)``, of frames ``[n, c, h, w]`` and captions."""
        if len(captions) != len(frames):
            raise ValueError(f"need one caption per frame: {len(captions)} captions, {len(frames)} frames")
        cos = (self.image_embeddings(frames) * self.text_embeddings(captions)).sum(-1)
        return 100 * cos.clamp_min(0)


def own_clip_scorer(model: open_clip.CLIP, cfg: ClipConfig) -> ClipScorer:
    """A ``ClipScorer`` for a CLIP trained by ``train_clip`` (its frames stay in [-1, 1])."""
    return ClipScorer(
        model, lambda texts: open_clip.tokenize(texts, cfg.context_length), cfg.image_size, cfg=cfg
    )


def load_clip(path: str | Path, device: str = "cpu") -> ClipScorer:
    """The scorer of a CLIP written by ``save_evaluator`` after ``train_clip``."""
    cfg, state = _read_evaluator(path, ClipConfig)
    model = build_clip(cfg)
    model.load_state_dict(state)
    return own_clip_scorer(model.to(device), cfg)


def load_pretrained_clip(name: str, checkpoint_path: str | Path, device: str = "cpu") -> ClipScorer:
    """A scorer from a local open_clip checkpoint, e.g. ``("ViT-B-32", "open_clip_model.safetensors")``.

    Nothing is downloaded: ``name`` picks open_clip's architecture and tokenizer (both bundled), the
    weights come from ``checkpoint_path``; images use the model's own size, mean and std.
    """
    path = Path(checkpoint_path)
    if not path.is_file():
        raise FileNotFoundError(
            f"CLIP checkpoint {path} not found; set clip_checkpoint to a local {name} weights file or "
            "leave it empty to train a CLIP on the world"
        )
    model = open_clip.create_model(name, pretrained=str(path), device=device)
    pre = open_clip.get_model_preprocess_cfg(model)
    size = pre["size"] if isinstance(pre["size"], int) else pre["size"][0]
    return ClipScorer(model, open_clip.get_tokenizer(name), size, tuple(pre["mean"]), tuple(pre["std"]))


def middle_frames(clips: np.ndarray) -> torch.Tensor:
    """The middle frame of each uint8 clip ``[n, f, h, w, 3]`` as float ``[n, c, h, w]`` in [-1, 1]."""
    return from_uint8(np.array(clips[:, clips.shape[1] // 2]))


def clip_retrieval(scorer: ClipScorer, clips: np.ndarray, captions: list[str]) -> dict:
    """Top-1 retrieval of each clip's caption (middle frame vs all distinct captions) and chance."""
    distinct = sorted(set(captions))
    labels = [distinct.index(c) for c in captions]
    top1, chance = retrieval_top1(
        scorer.image_embeddings(middle_frames(clips)), scorer.text_embeddings(distinct), labels
    )
    return {"top1": top1, "chance": chance, "captions": len(distinct), "clips": len(captions)}


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
) -> tuple[ClipScorer, dict]:
    """Train a small CLIP with open_clip's ``ClipLoss`` on (frame, caption) pairs of the train split:
    a random frame of a random clip with that clip's (paraphrased) training caption.

    Returns its scorer and metrics: top-1 retrieval on the test split (each clip's middle frame vs
    all distinct canonical captions) against chance, the last loss and seconds.
    """
    if steps < 1 or batch_size < 2 or lr <= 0:
        raise ValueError(f"need steps >= 1, batch_size >= 2, lr > 0; got {steps}, {batch_size}, {lr}")
    clips, records = load_split(data_dir, "train")
    cfg = cfg or ClipConfig(image_size=clips.shape[2])
    model = _seeded(lambda: build_clip(cfg), seed).to(device)
    scorer = own_clip_scorer(model, cfg)
    loss_fn = ClipLoss()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.1)
    draws = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    model.train()
    loss = torch.zeros(())
    for _ in progress_bar(steps, "world clip", progress, iterable=range(steps)):
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
    seconds = time.perf_counter() - start
    model.eval()
    test_clips, test_records = load_split(data_dir, "test")
    metrics = {
        "steps": steps,
        "loss_last": float(loss.detach()),
        "seconds": round(seconds, 1),
        "test_retrieval": clip_retrieval(scorer, test_clips, [r["canonical_caption"] for r in test_records]),
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    return scorer, metrics
