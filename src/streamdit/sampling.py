"""Streaming generation with a moving buffer (DESIGN.md section 1, "Moving buffer").

The model never knows how it is sampled: it maps (frames, per-frame levels, text) to
velocities. Everything about buffers, schemes, guidance and emission lives here.
Shapes: buffer ``x: [b, B, c, h, w]`` (b parallel streams) in the model's space (latents or pixels),
emitted chunk ``[b, c, 3, H, W]``: the sampler decodes every chunk it emits (``autoencoder.py``), so the
decoder is part of the stream and of every latency figure.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from streamdit.acceleration import autocast, check_precision
from streamdit.autoencoder import PixelSpace
from streamdit.flow import euler_step, interpolate
from streamdit.model import PastFrames
from streamdit.schedule import Scheme, buffer_levels, check_buffer, check_start, nfe_per_call
from streamdit.text import TextEmbedding, cat, null_embedding


def guided_text(model: nn.Module, text: TextEmbedding, cfg_scale: float) -> TextEmbedding:
    """The text rows one (guided) call runs: ``text``, then with guidance (``cfg_scale != 1``) the model's
    null caption for every row."""
    if cfg_scale == 1.0:
        return text
    b = text.tokens.shape[0]
    return cat([text, null_embedding(model, b).to(text.tokens.device, text.tokens.dtype)])


def guided_velocity(
    model: nn.Module,
    x: torch.Tensor,
    levels: torch.Tensor,
    text: TextEmbedding,
    cfg_scale: float,
    past: PastFrames | None = None,
) -> torch.Tensor:
    """Classifier-free guided velocity v = v_null + g * (v_text - v_null).

    ``cfg_scale == 1`` is the plain conditional model and costs one forward pass; any
    other scale runs text and null rows as one batch of 2b (one call, two NFE). ``past``: the clean
    past of a chunk-causal model (``causal.py``), with rows for the text and then the null caption.
    """
    extra = {} if past is None else {"past": past}
    if cfg_scale == 1.0:
        return model(x, levels, text.tokens, text.mask, text.pooled, **extra).to(x.dtype)
    b = x.shape[0]
    both = guided_text(model, text, cfg_scale)
    # .to(x.dtype): under bf16 autocast the guidance arithmetic still runs in the buffer's precision.
    v = model(torch.cat([x, x]), torch.cat([levels, levels]), both.tokens, both.mask, both.pooled, **extra)
    v = v.to(x.dtype)
    v_text, v_null = v[:b], v[b:]
    return v_null + cfg_scale * (v_text - v_null)


def levels_like(
    scheme: Scheme,
    offset: torch.Tensor | float,
    started: torch.Tensor | bool,
    shift: float,
    x: torch.Tensor,
    context: str = "clean",
) -> torch.Tensor:
    """Per-frame levels ``[b, B]`` of buffer ``x [b, B, ...]`` at ``offset`` (a float, or ``[b]`` with
    ``started [b]``), on ``x``'s device and in its dtype. A "noised" ``context`` puts the reference
    frames at the level of the first chunk (``CONTEXTS``)."""
    t = buffer_levels(scheme, offset, shift, started)
    if context == "noised" and scheme.K:
        t = torch.cat(
            [t[..., scheme.K : scheme.K + 1].expand(*t.shape[:-1], scheme.K), t[..., scheme.K :]], -1
        )
    return t.to(x.device, x.dtype).expand(x.shape[0], -1)


def advance(
    model: nn.Module,
    x: torch.Tensor,
    scheme: Scheme,
    offset: torch.Tensor | float,
    started: torch.Tensor | bool,
    text: TextEmbedding,
    cfg_scale: float = 1.0,
    shift: float = 1.0,
    context: str = "clean",
) -> torch.Tensor:
    """One model call on the moving buffer ``x [b, B, c, h, w]``: the buffer at ``offset + 1``.

    ``offset`` and ``started`` are one value for all rows (the sampler) or ``[b]`` tensors, one
    per row (distillation). The sampler and the distillation teacher both call this, so they
    integrate exactly the same way. Nothing is emitted or shifted here. ``context``: the reference
    frames' levels (``CONTEXTS``, ``levels_like``).
    """
    # 1. Advance levels: every chunk moves one grid step towards t = 0.
    t_now = levels_like(scheme, offset, started, shift, x, context)
    t_next = levels_like(scheme, offset + 1, started, shift, x, context)
    # 2. Call the model (with guidance) at the current levels.
    v = guided_velocity(model, x, t_now, text, cfg_scale)
    # 3. Integrate: one Euler step per frame; frames whose level stays put do not move.
    return euler_step(x, v, t_now, t_next)


class Stream:
    """What every endless stream shares: the model and its text, guidance, time shift, precision, noise
    and the space its frames decode through; the loops over emitted frames. A subclass's ``step`` makes
    one step (a model call or a few) and returns the emitted (decoded) frames ``[b, n, 3, H, W]`` or None.
    ``calls`` counts model calls, ``emitted`` frames out."""

    def __init__(
        self,
        model: nn.Module,
        text: TextEmbedding,
        *,
        cfg_scale: float = 1.0,
        shift: float = 1.0,
        generator: torch.Generator | None = None,
        frame_shape: tuple[int, int, int] | None = None,
        precision: str = "fp32",
        space: nn.Module | None = None,
    ):
        cfg = model.cfg
        if cfg_scale < 0:
            raise ValueError(f"cfg_scale must be >= 0 (1 = no guidance), got {cfg_scale}")
        self.model = model
        self.cfg_scale = cfg_scale
        self.shift = shift
        self.precision = check_precision(precision)  # "bf16": the model runs under autocast
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)
        self.frame_shape = frame_shape or (cfg.channels, cfg.resolution, cfg.resolution)  # of the buffer
        param = next(model.parameters())
        self.device, self.dtype = param.device, param.dtype
        # What the buffer's frames are: decoded on emission, encoded on entry (v2v); pixels by default.
        if space is None and cfg.space == "latent":
            raise ValueError(
                "a latent model streams through its space (autoencoder.py): pass space= "
                "(checkpoint.load_space of its model file), or it would emit latents as frames"
            )
        self.space = (space if space is not None else PixelSpace(self.frame_shape[0])).to(self.device)
        self.text = text.to(self.device, self.dtype)
        self.batch = text.tokens.shape[0]
        self.calls = 0
        self.emitted = 0

    @property
    def nfe_per_call(self) -> int:
        """Forward passes per call: two with guidance (text and null rows), one without."""
        return nfe_per_call(self.cfg_scale)

    def _noise(self, frames: int) -> torch.Tensor:
        # Noise is drawn on the CPU from the stream's own generator so that a seed gives
        # the same stream on any device.
        e = torch.randn(self.batch, frames, *self.frame_shape, generator=self.generator)
        return e.to(self.device, self.dtype)

    def set_text(self, text: TextEmbedding) -> None:
        """Switch the prompt from the next call on; frames in the buffer keep what they already hold."""
        if text.tokens.shape[0] != self.batch:
            raise ValueError(f"the stream has {self.batch} rows, the new text has {text.tokens.shape[0]}")
        self.text = text.to(self.device, self.dtype)

    def step(self) -> torch.Tensor | None:
        raise NotImplementedError

    def chunks(self) -> Iterator[torch.Tensor]:
        """Emitted (decoded) chunks ``[b, c, 3, H, W]`` forever (the caller decides when to stop)."""
        while True:
            chunk = self.step()
            if chunk is not None:
                yield chunk

    def frames(self) -> Iterator[torch.Tensor]:
        """Emitted (decoded) frames ``[b, 3, H, W]`` in order, forever."""
        for chunk in self.chunks():
            yield from chunk.unbind(dim=1)

    def take(self, n: int) -> torch.Tensor:
        """The next ``n`` decoded frames as float32 ``[b, n, 3, H, W]`` on the CPU."""
        if n < 1:
            raise ValueError(f"take needs n >= 1 frames, got {n}")
        out = []
        for frame in self.frames():
            out.append(frame.float().cpu())
            if len(out) == n:
                break
        return torch.stack(out, dim=1)


def check_refine(refine: int) -> None:
    """Raise unless ``refine`` (the starter's grid steps per grid step of the stream) is >= 1."""
    if refine < 1:
        raise ValueError(f"refine must be >= 1 (starter grid steps per stream grid step), got {refine}")


class StreamSampler(Stream):
    """An endless stream: each ``step`` is one model call; every ``s`` calls a clean chunk leaves.

    ``startup``: "staggered" starts from a buffer of pure noise whose chunks wait their turn at t = 1
    (schedule.py); "uniform" (the paper's, K = 0) denoises one clip of B frames as a uniform clip model
    would and fills the first buffer with its intermediate frames, chunk j taken at the grid index it
    holds in the steady stream, so every call of the start-up is a plain clip denoising step. Both
    emit the first chunk after T calls. The uniform clip may come from another model, ``starter``
    (``handoff.HandoffSampler``: a distilled student started by its teacher), with guidance
    ``starter_cfg_scale`` on a grid ``refine`` times finer than the stream's; by default it is the
    stream's own model, guidance and grid. ``clip_calls`` counts the clip's calls, ``calls`` all.

    ``context`` (``CONTEXTS``): "clean" reference frames at level 0, or "noised", the training-free
    extension of a uniform clip model (ReuseDiffuse-style, scheme ``[K, 1, c, s]``): every call sees the
    last K emitted frames noised again (with noise drawn once per chunk) to the chunk's level and the
    buffer denoised as one clip; before the first chunk the K frames are denoised with it from noise."""

    def __init__(
        self,
        model: nn.Module,
        scheme: Scheme,
        text: TextEmbedding,
        *,
        startup: str = "staggered",
        context: str = "clean",
        starter: nn.Module | None = None,
        starter_cfg_scale: float | None = None,
        refine: int = 1,
        **stream,
    ):  # stream: Stream's keywords (cfg_scale, shift, generator, frame_shape, precision, space)
        check_buffer(scheme, model.cfg.frames)
        check_refine(refine)
        if startup != "uniform" and (starter is not None or refine != 1):
            raise ValueError(
                "a starter (or a finer grid) makes the uniform start-up's clip: startup='uniform'"
            )
        check_start(scheme, startup, context)
        if getattr(model.cfg, "causal_chunk", 0):  # (stand-in models of the tests have no such field)
            raise ValueError(
                "a chunk-causal model streams chunk by chunk: causal.CausalSampler, not a moving buffer"
            )
        super().__init__(model, text, **stream)
        self.scheme = scheme
        self.context = context
        # The stream starts from pure noise at offset o = s - T (see schedule.py), or from one uniform clip.
        self.x = self._noise(scheme.B)
        self.offset = scheme.s - scheme.T
        self.started = False
        self.startup = startup
        if startup == "uniform":
            # The clip denoised as one chunk of B frames (the uniform scheme on a grid of T refine steps);
            # chunk j of the buffer is its frames at fine index (j + 1) s refine, whose level is that of
            # index (j + 1) s on the stream's grid: the steady buffer at offset 0.
            self.starter = model if starter is None else starter
            self.starter_cfg_scale = self.cfg_scale if starter_cfg_scale is None else starter_cfg_scale
            self.refine = refine
            self.clip, self.clip_calls = self.x.clone(), 0
            self.uniform = Scheme(K=0, N=1, c=scheme.B, s=scheme.T * refine)
            self.offset, self.started = 0, True
            if not self.filling:  # one chunk (N = 1): the clip is the buffer itself
                del self.clip
        self.recent = self.x[:, :0]  # the last (up to K) emitted frames
        self.context_noise = None  # a noised context's noise: drawn at each emission, used once started

    def levels(self, offset: float) -> torch.Tensor:
        """Per-frame levels [b, B] of the buffer at ``offset`` in the model's dtype."""
        return levels_like(self.scheme, float(offset), self.started, self.shift, self.x, self.context)

    def _noised_references(self) -> torch.Tensor:
        """The buffer with its reference frames replaced by the last K emitted frames noised to the
        chunk's current level (a "noised" context once the stream has started)."""
        K = self.scheme.K
        t = self.levels(self.offset)[:, :K]
        x = self.x.clone()
        x[:, :K] = interpolate(self.recent, self.context_noise, t)
        return x

    @property
    def filling(self) -> bool:
        """Whether a uniform start-up is still denoising its clip ((T - s) refine calls, before the steady
        stream)."""
        return self.startup == "uniform" and self.clip_calls < (self.scheme.T - self.scheme.s) * self.refine

    @torch.no_grad()
    def _fill(self) -> None:
        """One call of the uniform start-up (the starter's): the clip one fine grid step down; a chunk that
        reaches its fine index (j + 1) s refine is copied into the buffer (chunk N - 1 is the clip's noise,
        index T refine)."""
        with autocast(self.device, self.precision):
            self.clip = advance(
                self.starter,
                self.clip,
                self.uniform,
                self.clip_calls,
                True,
                self.text,
                self.starter_cfg_scale,
                self.shift,
            )
        self.clip_calls += 1
        self.calls += 1
        c, step = self.scheme.c, self.scheme.s * self.refine
        index = self.uniform.T - self.clip_calls
        if index % step == 0:
            j = index // step - 1
            self.x[:, j * c : (j + 1) * c] = self.clip[:, j * c : (j + 1) * c]
        if not self.filling:
            del self.clip  # the buffer holds all it needs

    @torch.no_grad()
    def step(self) -> torch.Tensor | None:
        """One model call; returns the emitted clean chunk, decoded, ``[b, c, 3, H, W]``, or None."""
        if self.filling:
            self._fill()
            return None
        K, c, s = self.scheme.K, self.scheme.c, self.scheme.s
        if self.context == "noised" and self.started:
            self.x = self._noised_references()
        # 1-3. Advance levels, call the model, integrate one Euler step (see ``advance``).
        with autocast(self.device, self.precision):
            self.x = advance(
                self.model,
                self.x,
                self.scheme,
                self.offset,
                self.started,
                self.text,
                self.cfg_scale,
                self.shift,
                self.context,
            )
        self.offset += 1
        self.calls += 1
        if self.offset < s:
            return None
        # 4. Emit: after s calls the oldest chunk sits at t = 0.
        chunk = self.x[:, K : K + c].clone()
        # 5. Shift: the last K emitted frames become the references (pure noise until K
        #    frames exist), the chunks move one position towards the output end, and
        # 6. a chunk of pure noise enters at the input end.
        self.emitted += c
        self.started = self.emitted >= K
        self.recent = torch.cat([self.recent, chunk], dim=1)[:, max(0, self.recent.shape[1] + c - K) :]
        refs = self.recent if self.started else self._noise(K)
        self.x = torch.cat([refs, self.x[:, K + c :], self._noise(c)], dim=1)
        if self.context == "noised":
            self.context_noise = self._noise(K)  # the next chunk's noise for its references
        self.offset -= s
        # 7. Decode the emitted chunk (frame by frame; the identity for a pixel model).
        with autocast(self.device, self.precision):
            return self.space.decode(chunk).to(self.dtype)
