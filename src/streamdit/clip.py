"""The world CLIP (DESIGN.md section 2): CLIP scores of generated frames against their captions.

No pretrained CLIP exists offline, so a small ``open_clip.CLIP`` is trained with open_clip's
``ClipLoss`` on (frame, caption) pairs of the world; with a local pretrained checkpoint
(``load_pretrained_clip``) the same ``ClipScorer`` scores with it. Frames are ``[n, c, h, w]`` in [-1, 1].
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from open_clip.model import CLIPTextCfg, CLIPVisionCfg

from streamdit.checkpoint import read_evaluator
from streamdit.metrics import retrieval_top1
from streamdit.video import from_uint8


@dataclass
class ClipConfig:
    """A small open_clip CLIP for the world's frames: a ViT vision tower (a 4x4 grid of patches of 64-px
    frames) and a causal text transformer."""

    image_size: int = 64
    patch: int = 16
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
    cfg, state = read_evaluator(path, ClipConfig)
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
