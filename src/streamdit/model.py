"""The StreamDiT denoiser: an adaLN-Zero DiT over a buffer of frames, each frame modulated by its own level.

Peebles & Xie's DiT with the changes of StreamDiT (DESIGN.md section 1, "Model"):
- tokens come from a per-frame patch embedding plus a fixed 3D sin-cos table over (frame, row, col);
- the timestep embedding is computed per frame: DiT's scalar t becomes the vector of levels tau, so every
  bias / scale / gate is a [b, f, dim] tensor broadcast over that frame's tokens;
- self-attention runs inside 3D windows, staggered by half a window on odd blocks (Swin), or globally
  (ablation); ``causal_chunk`` makes it chunk-causal (the autoregressive paradigm, beyond the paper): a
  frame attends to its own chunk and earlier ones only, so the clean past's keys and values do not depend
  on the chunk being denoised and are computed once per chunk (``remember``, ``PastFrames``);
- text enters by cross-attention to the encoder's tokens and by its pooled vector added to the conditioning;
- a learned null caption serves classifier-free guidance.
Cross-attention is modulated like the other two branches (9 chunks per block), so every block is exactly
the identity at initialisation and the level of a frame also scales how much text that frame reads.
"""

import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange, repeat

from streamdit.attention import attention_mask, windowed_attention
from streamdit.flow import velocity_from_clean

PREDICTIONS = ("v", "x")
SPACES = ("latent", "pixel")  # what a model's frames are: autoencoder latents (autoencoder.py) or RGB pixels
# x-prediction divides by the level; below this level the division uses it instead (references sit at 0).
X_MIN_LEVEL = 0.05


@dataclass
class ModelConfig:
    """Size and switches of a StreamDiT; window sizes count tokens (patches), not pixels."""

    # What the frames are: "latent" (autoencoder latents, autoencoder.py) or "pixel" (RGB, the ablation).
    space: str = "pixel"
    frames: int = 8  # buffer length B the position table is built for; any F <= frames works (first F rows)
    resolution: int = 32  # frame height = width in pixels (or latent cells)
    channels: int = 3
    patch: int = 4
    dim: int = 128  # multiple of 16: the position table gives 1/4 of it to frames, 3/8 to rows, 3/8 to cols
    depth: int = 4
    heads: int = 4
    mlp_ratio: float = 4.0
    text_dim: int = 384  # width of the text encoder's token embeddings (MiniLM-L6 = 384)
    window: tuple[int, int, int] = (4, 4, 4)  # frames, patch-rows, patch-cols per attention window
    full_attention: bool = False  # ablation switch: plain global self-attention
    per_frame_time: bool = True  # ablation switch: False = one level (the buffer's mean) shared by all frames
    # Chunk-causal self-attention over chunks of this many frames (0: bidirectional, StreamDiT's): frames
    # attend to their own chunk and earlier chunks only (attention.chunk_causal_mask), inside the windows.
    causal_chunk: int = 0
    # What the network's last layer outputs: "v", the velocity itself, or "x", the clean frames x0, turned
    # into the velocity v = (x_t - x0) / max(t, X_MIN_LEVEL) (Li & He 2025, "Back to Basics: Let Denoising
    # Generative Models Denoise"). Either way forward() returns a velocity and the loss stays MSE on v.
    prediction: str = "v"

    def __post_init__(self):
        for name in ("frames", "resolution", "channels", "patch", "dim", "depth", "heads", "text_dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r}: must be a positive int")
        if not self.mlp_ratio > 0:
            raise ValueError(f"mlp_ratio={self.mlp_ratio!r}: must be > 0")
        if self.dim % self.heads:
            raise ValueError(f"dim={self.dim} is not divisible by heads={self.heads}")
        if self.dim % 16:
            raise ValueError(f"dim={self.dim}: must be a multiple of 16 to split the 3D position table")
        if self.resolution % self.patch:
            raise ValueError(f"resolution={self.resolution} is not divisible by patch={self.patch}")
        self.window = tuple(self.window)
        if len(self.window) != 3 or any(not isinstance(w, int) or w < 1 for w in self.window):
            raise ValueError(f"window={self.window}: needs 3 ints >= 1 (frames, patch-rows, patch-cols)")
        if self.space not in SPACES:
            raise ValueError(f"space={self.space!r}: choose one of {SPACES}")
        if self.prediction not in PREDICTIONS:
            raise ValueError(f"prediction={self.prediction!r}: choose one of {PREDICTIONS}")
        chunk = self.causal_chunk
        if (
            isinstance(chunk, bool)
            or not isinstance(chunk, int)
            or chunk < 0
            or (chunk and self.frames % chunk)
        ):
            raise ValueError(
                f"causal_chunk={chunk!r}: must be 0 (bidirectional) or a divisor of frames={self.frames}"
            )


# Settings that change what the same weights compute, not which weights there are: a fine-tune may start
# from a model with other values (the ablations and the chunk-causal model fine-tune from the base).
SWITCHES = ("full_attention", "per_frame_time", "causal_chunk")


def modulate(x: torch.Tensor, bias: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN: scale normalised tokens and add a bias (both broadcast against x; DiT's "shift")."""
    return x * (1 + scale) + bias


def sincos_embedding(positions: torch.Tensor, channels: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal features of real positions: [...] -> [..., channels] float32, sines then cosines."""
    half = channels // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=positions.device) / half)
    angles = positions.float()[..., None] * freqs
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)


def sincos_pos_embed_3d(dim: int, frames: int, rows: int, cols: int) -> torch.Tensor:
    """Fixed position table [frames, rows * cols, dim]: channels 1/4 frame, 3/8 row, 3/8 col index.

    Time gets the smaller share because a buffer holds fewer frames than a frame holds patch rows.
    """
    frame_ch, row_ch = dim // 4, 3 * dim // 8
    by_frame = sincos_embedding(torch.arange(frames), frame_ch)
    by_row = sincos_embedding(torch.arange(rows), row_ch)
    by_col = sincos_embedding(torch.arange(cols), dim - frame_ch - row_ch)
    table = torch.cat(
        [
            repeat(by_frame, "f d -> f h w d", h=rows, w=cols),
            repeat(by_row, "h d -> f h w d", f=frames, w=cols),
            repeat(by_col, "w d -> f h w d", f=frames, h=rows),
        ],
        dim=-1,
    )
    return rearrange(table, "f h w d -> f (h w) d")


class FramePatchEmbed(nn.Module):
    """Embeds each patch x patch square of every frame as a token: [b, f, c, h, w] -> [b, f, p, dim]."""

    def __init__(self, channels: int, dim: int, patch: int):
        super().__init__()
        self.proj = nn.Conv2d(channels, dim, kernel_size=patch, stride=patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.proj(rearrange(x, "b f c h w -> (b f) c h w"))
        return rearrange(tokens, "(b f) d h w -> b f (h w) d", f=x.shape[1])


class TimestepEmbedder(nn.Module):
    """Embeds noise levels t in [0, 1] of any shape into [..., dim]: sinusoid of 1000 t, then an MLP."""

    def __init__(self, dim: int, frequency_dim: int = 256):
        super().__init__()
        self.frequency_dim = frequency_dim
        self.mlp = nn.Sequential(nn.Linear(frequency_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        freqs = sincos_embedding(1000 * t.float(), self.frequency_dim)  # DiT's timestep scale of 0..1000
        return self.mlp(freqs.to(self.mlp[0].weight.dtype))


class TextEmbedder(nn.Module):
    """Projects the text encoder's tokens and pooled vector to the model width; holds the null caption."""

    def __init__(self, text_dim: int, dim: int):
        super().__init__()
        self.token_proj = nn.Linear(text_dim, dim)
        self.pooled_mlp = nn.Sequential(nn.Linear(text_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.null_tokens = nn.Parameter(torch.zeros(1, 1, text_dim))
        self.null_pooled = nn.Parameter(torch.zeros(1, text_dim))

    def forward(self, tokens: torch.Tensor, pooled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens: [b, L, text_dim], pooled: [b, text_dim] -> ([b, L, dim], [b, dim])."""
        return self.token_proj(tokens), self.pooled_mlp(pooled)

    def null(self, batch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Null caption: tokens [batch, 1, text_dim], mask [batch, 1] (True), pooled [batch, text_dim]."""
        mask = torch.ones(batch, 1, dtype=torch.bool, device=self.null_tokens.device)
        return self.null_tokens.expand(batch, -1, -1), mask, self.null_pooled.expand(batch, -1)


@dataclass
class PastFrames:
    """A chunk-causal model's clean past (``StreamDiT.remember``): the keys and values each block computed
    over the first ``frames`` frames of a buffer. Later frames attend to them without recomputing them,
    so a chunk's denoising steps run on the chunk's own tokens alone (the KV cache)."""

    frames: int
    keys: list[torch.Tensor] = field(default_factory=list)  # per block [b, heads, frames * p, head_dim]
    values: list[torch.Tensor] = field(default_factory=list)

    def __post_init__(self) -> None:
        if len(self.keys) != len(self.values):
            raise ValueError(f"{len(self.keys)} blocks of keys but {len(self.values)} of values")

    @property
    def batch(self) -> int:
        return self.keys[0].shape[0] if self.keys else 0


class SelfAttention(nn.Module):
    """Multi-head self-attention over the buffer's tokens, inside 3D windows or global (window None)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, grid, window, stagger, chunk=None, past=None, mask=None):
        """x: [b, n, dim] tokens in `f h w` order on `grid` -> ([b, n, dim], (keys, values) of x's tokens).

        ``mask`` given: dense attention under it ([n, n_past + n] bool) to the keys and values ``past``
        (``[b, heads, n_past, d]`` each, or None) followed by x's own; else windowed attention,
        chunk-causal with ``chunk``, or global attention (``window`` None; a chunk-causal model's global
        attention always comes with its mask).
        """
        q, k, v = rearrange(
            self.qkv(x), "b n (three heads d) -> three b heads n d", three=3, heads=self.heads
        )
        if mask is not None:
            keys, values = (
                (k, v) if past is None else (torch.cat([past[0], k], 2), torch.cat([past[1], v], 2))
            )
            out = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)
        elif window is None:
            out = F.scaled_dot_product_attention(q, k, v)
        else:
            out = windowed_attention(q, k, v, grid, window, stagger, chunk)
        return self.proj(rearrange(out, "b heads n d -> b n (heads d)")), (k, v)


class CrossAttention(nn.Module):
    """Multi-head attention from the video tokens to the text tokens, ignoring padded text tokens."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, context, context_mask) -> torch.Tensor:
        """x: [b, n, dim]; context: [b, L, dim]; context_mask: [b, L], True = real token -> [b, n, dim]."""
        q = rearrange(self.q(x), "b n (heads d) -> b heads n d", heads=self.heads)
        k, v = rearrange(self.kv(context), "b l (two heads d) -> two b heads l d", two=2, heads=self.heads)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=rearrange(context_mask, "b l -> b 1 1 l"))
        return self.proj(rearrange(out, "b heads n d -> b n (heads d)"))


class DiTBlock(nn.Module):
    """Transformer block with per-frame adaLN-Zero modulation of self-attention, cross-attention and MLP."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, window, stagger):
        super().__init__()
        self.window, self.stagger = window, stagger
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = SelfAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.cross_attn = CrossAttention(dim, heads)
        self.norm3 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 9 * dim))

    def forward(self, x, cond, context, context_mask, grid, chunk=None, past=None, mask=None):
        """x: [b, f, p, dim] tokens; cond: [b, f, dim]; context: [b, L, dim]; context_mask: [b, L] -> (as x,
        the self-attention's (keys, values) of x's tokens). ``chunk``, ``past``, ``mask``: SelfAttention's."""
        f = x.shape[1]
        # One modulation per frame, broadcast over that frame's p tokens (frame i: its own level).
        mod = rearrange(self.adaLN_modulation(cond), "b f d -> b f 1 d")
        bias_sa, scale_sa, gate_sa, bias_ca, scale_ca, gate_ca, bias_ff, scale_ff, gate_ff = mod.chunk(9, -1)

        h = rearrange(modulate(self.norm1(x), bias_sa, scale_sa), "b f p d -> b (f p) d")
        h, kv = self.attn(h, grid, self.window, self.stagger, chunk, past, mask)
        x = x + gate_sa * rearrange(h, "b (f p) d -> b f p d", f=f)

        h = rearrange(modulate(self.norm2(x), bias_ca, scale_ca), "b f p d -> b (f p) d")
        h = self.cross_attn(h, context, context_mask)
        x = x + gate_ca * rearrange(h, "b (f p) d -> b f p d", f=f)

        return x + gate_ff * self.mlp(modulate(self.norm3(x), bias_ff, scale_ff)), kv


class FinalLayer(nn.Module):
    """Per-frame adaLN, then a linear map from each token to its patch of pixels."""

    def __init__(self, dim: int, patch: int, channels: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(dim, patch * patch * channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """x: [b, f, p, dim]; cond: [b, f, dim] -> [b, f, p, patch * patch * channels]."""
        bias, scale = rearrange(self.adaLN_modulation(cond), "b f d -> b f 1 d").chunk(2, dim=-1)
        return self.linear(modulate(self.norm_final(x), bias, scale))


class StreamDiT(nn.Module):
    """Denoiser of a frame buffer: (noisy frames, per-frame levels, text) -> velocity of every frame."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.rows = cfg.resolution // cfg.patch  # patch rows = patch cols per frame
        self.x_embedder = FramePatchEmbed(cfg.channels, cfg.dim, cfg.patch)
        pos_embed = sincos_pos_embed_3d(cfg.dim, cfg.frames, self.rows, self.rows)
        self.register_buffer("pos_embed", pos_embed, persistent=False)  # fixed, rebuilt from cfg
        self.t_embedder = TimestepEmbedder(cfg.dim)
        self.text_embedder = TextEmbedder(cfg.text_dim, cfg.dim)
        window = None if cfg.full_attention else cfg.window
        half = tuple(w // 2 for w in cfg.window)  # Swin-style staggered windows on odd blocks
        self.blocks = nn.ModuleList(
            DiTBlock(cfg.dim, cfg.heads, cfg.mlp_ratio, window, half if i % 2 else (0, 0, 0))
            for i in range(cfg.depth)
        )
        self.final_layer = FinalLayer(cfg.dim, cfg.patch, cfg.channels)
        self.initialize_weights()
        self._masks: dict = {}  # chunk-causal attention masks of frame ranges, per block and device

    def initialize_weights(self):
        # Linear layers: xavier-uniform weights, zero biases (as DiT).
        def _basic_init(module):
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

        self.apply(_basic_init)

        # Patch embedding: initialised like a linear layer over the flattened patch.
        w = self.x_embedder.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.x_embedder.proj.bias)

        # Timestep MLP and the null caption: small normal.
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        nn.init.normal_(self.text_embedder.null_tokens, std=0.02)
        nn.init.normal_(self.text_embedder.null_pooled, std=0.02)

        # adaLN-Zero: zero modulation makes every gate zero, so each block starts as the identity.
        for block in self.blocks:
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.adaLN_modulation[-1].bias)

        # Output layer: zero, so the untrained model predicts exactly zero velocity.
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].weight)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.linear.weight)
        nn.init.zeros_(self.final_layer.linear.bias)

    def forward(
        self, x, levels, text_tokens, text_mask, text_pooled, past: PastFrames | None = None
    ) -> torch.Tensor:
        """Predicted velocity [b, f, c, h, w] of a buffer of noisy frames (``cfg.prediction`` says whether
        the network outputs it directly or through its estimate of the clean frames).

        x: [b, f, c, h, w] noisy frames; levels: [b, f] per-frame noise level t in [0, 1] (0 clean, 1 noise);
        text_tokens: [b, L, text_dim]; text_mask: [b, L] bool (True = real token); text_pooled: [b, text_dim].
        ``past`` (a chunk-causal model only, ``remember``): x is the buffer's frames after ``past.frames``
        clean ones, which it attends to through their stored keys and values; the result equals the same
        frames' rows of a call on the whole buffer.
        """
        out, _ = self._run(x, levels, text_tokens, text_mask, text_pooled, past)
        return out

    @torch.no_grad()
    def remember(self, x, text_tokens, text_mask, text_pooled, past: PastFrames | None = None) -> PastFrames:
        """The keys and values of clean frames ``x [b, f, c, h, w]`` (level 0) at the start of a buffer, or
        after ``past``'s frames, for later frames to attend to (``forward(..., past=...)``); a chunk-causal
        model only, whole chunks only."""
        levels = torch.zeros(x.shape[:2], device=x.device, dtype=x.dtype)
        _, kept = self._run(x, levels, text_tokens, text_mask, text_pooled, past, keep=True)
        return kept

    def _attention_mask(self, block: int, start: int, f: int, device) -> torch.Tensor:
        """What frames ``start .. start + f`` may attend to among frames ``0 .. start + f`` in block
        ``block``: rows of the chunk-causal window mask of a whole buffer (so the windows are the ones
        training sees), [f p, (start + f) p] bool."""
        key = (block % 2, start, f, str(device))
        if key not in self._masks:
            p, blk = self.rows * self.rows, self.blocks[block]
            full = attention_mask((self.cfg.frames, self.rows, self.rows), blk.window, blk.stagger,
                                  self.cfg.causal_chunk)  # fmt: skip
            self._masks[key] = full[start * p : (start + f) * p, : (start + f) * p].to(device)
        return self._masks[key]

    def _run(self, x, levels, text_tokens, text_mask, text_pooled, past=None, keep=False):
        cfg = self.cfg
        b, f, c, h, w = x.shape
        start = 0 if past is None else past.frames
        if start + f > cfg.frames or (c, h, w) != (cfg.channels, cfg.resolution, cfg.resolution):
            raise ValueError(
                f"x of shape {tuple(x.shape)} after {start} past frames: expected [b, f <= "
                f"{cfg.frames - start}, {cfg.channels}, {cfg.resolution}, {cfg.resolution}]"
            )
        if levels.shape != (b, f):
            raise ValueError(f"levels of shape {tuple(levels.shape)}: expected [{b}, {f}]")
        chunk = cfg.causal_chunk or None
        if past is not None or keep:
            if chunk is None:
                raise ValueError("past frames need a chunk-causal model (causal_chunk > 0)")
            if start % chunk or (keep and f % chunk):
                raise ValueError(
                    f"past frames come in whole chunks of {chunk}: got {start} + {f if keep else 0}"
                )
            if past is not None and past.batch != b:
                raise ValueError(f"past frames of {past.batch} rows for x of {b}")
        seen = levels  # what the time embedding sees
        if not cfg.per_frame_time:
            seen = levels.mean(dim=1, keepdim=True).expand(b, f)  # ordinary DiT: one level for the clip

        context, pooled = self.text_embedder(text_tokens, text_pooled)
        cond = self.t_embedder(seen) + rearrange(pooled, "b d -> b 1 d")  # [b, f, dim]: frame i's own level
        tokens = self.x_embedder(x) + self.pos_embed[start : start + f]  # [b, f, p, dim]
        grid = (f, self.rows, self.rows)
        # A chunk-causal model on part of a buffer, or with global attention, attends under (the rows of)
        # the whole buffer's mask; with windows over the whole buffer, inside windowed_attention.
        part = start > 0 or f < cfg.frames
        kept = PastFrames(start + f) if keep else None
        for i, block in enumerate(self.blocks):
            dense = chunk is not None and (part or block.window is None)
            mask = self._attention_mask(i, start, f, x.device) if dense else None
            previous = None if past is None else (past.keys[i], past.values[i])
            tokens, (k, v) = block(tokens, cond, context, text_mask, grid, chunk, previous, mask)
            if keep:
                kept.keys.append(k if previous is None else torch.cat([previous[0], k], 2))
                kept.values.append(v if previous is None else torch.cat([previous[1], v], 2))
        if keep:
            return None, kept
        out = rearrange(
            self.final_layer(tokens, cond),
            "b f (h w) (ph pw c) -> b f c (h ph) (w pw)",
            h=self.rows,
            ph=cfg.patch,
            pw=cfg.patch,
        )
        if cfg.prediction == "v":
            return out, None
        # x-prediction: out is x0, turned into velocity at each frame's true level (also without
        # per-frame time).
        return velocity_from_clean(x, out, levels, X_MIN_LEVEL), None

    def null_text(self, batch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The learned null caption for classifier-free guidance: tokens [batch, 1, text_dim], mask [batch, 1]
        (True), pooled [batch, text_dim]."""
        return self.text_embedder.null(batch)


def build_model(cfg: ModelConfig) -> StreamDiT:
    """A freshly initialised StreamDiT (adaLN-Zero: the last layer outputs exactly zero until trained, so
    a v-predicting model predicts zero velocity and an x-predicting one predicts x0 = 0)."""
    return StreamDiT(cfg)


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (the fixed position table is a buffer and not counted)."""
    return sum(p.numel() for p in model.parameters())


#################################################################################
#                                 StreamDiT Configs                             #
#################################################################################

# CPU default: 8 frames of 8x8x8 autoencoder latents (64x64 pixels) = 8x8 tokens each at patch 1, in 2
# windows of 4 frames x 8x8 tokens. Windows span whole frames, so an object never straddles a window
# border within a frame (the 4x4-token alternative: reports/config_sweep/).
TINY = ModelConfig(space="latent", resolution=8, channels=8, patch=1, window=(4, 8, 8))

# The pixel ablation of tiny at the same cost: 64x64 RGB frames in 8x8 patches = the same 8x8 tokens.
TINY_PIXEL = ModelConfig(space="pixel", resolution=64, channels=3, patch=8, window=(4, 8, 8))

# One-GPU model on the same latents as tiny, wider and deeper: 512 tokens per buffer of 8 frames.
SMALL = ModelConfig(
    space="latent", frames=8, resolution=8, channels=8, patch=1, dim=384, depth=12, heads=6, window=(4, 8, 8)
)

# Paper scale (about 3.8B parameters). Assumptions: 512p frames through an 8x VAE give 64x64 latents with 16
# channels; patch 2 gives 32x32 tokens per frame; the buffer holds B = 16 latent frames; heads of width 128;
# text from a T5-XXL-width encoder (4096).
PAPER_4B = ModelConfig(
    space="latent",
    frames=16,
    resolution=64,
    channels=16,
    patch=2,
    dim=3072,
    depth=16,
    heads=24,
    text_dim=4096,
    window=(4, 8, 8),
)

PRESETS: dict[str, ModelConfig] = {
    "tiny": TINY,
    "tiny_pixel": TINY_PIXEL,
    "small": SMALL,
    "paper_4b": PAPER_4B,
}
