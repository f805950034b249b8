"""Chunk-causal autoregression with a KV cache (beyond the paper: CausVid, Self-Forcing, LongLive).

The paradigm most streaming video systems since StreamDiT use, in this repository's framework (same data,
backbone, time grid and guidance): a model with chunk-causal attention (``ModelConfig.causal_chunk = c``,
a frame attends to its own chunk and earlier ones) generates one chunk of c frames at a time, denoising
it over all T grid steps from pure noise to clean while it attends to the clean frames generated
before it; the clean chunk leaves, decoded, and joins the past.

Scheme: ``[K, 1, c, T]`` in the moving buffer's notation (``schedule.Scheme``): K past frames (a multiple
of c, at most B - c) and one chunk of c frames that takes all T = s steps, so the model's buffer B = K + c.
Training is teacher forcing: the trainer's ``[K, 1, c, s]`` draw with clean reference frames (the
past as the data has it, level 0) and one noised chunk, with ``[0, 1, B, s]`` draws for the first chunk
(under the causal mask the first c frames of a uniform clip are a first chunk alone).

The KV cache. Under the causal mask the past frames' keys and values in every block do not depend on
the chunk being denoised, so they are computed once per chunk (``StreamDiT.remember``, one call over
the K past frames) and each of the T denoising calls runs on the chunk's c frames alone, attending to
them (``StreamDiT.forward(..., past=...)``). The position table is absolute (frames 0..B-1 of a buffer),
so as the window of past frames rolls, the cache is rebuilt at the start of every chunk with the past
at positions 0..K-1, the chunk at K..K+c-1: the same positions the model was trained on. Without the
cache (``cache=False``) every call runs on the whole buffer [past, chunk]; both give the same frames up
to float rounding (tested).

Bounded memory: the past holds at most K frames (a rolling window); ``sink=True`` keeps the stream's
first chunk in front of the K - c most recent frames as an attention sink (Rolling Forcing, LongLive;
needs K >= 2c). Start-up: the first chunk attends to nothing, the second to the first, until K frames
exist; the past always starts at position 0.

Prompt switches take effect at the next call (``set_text``), as in every stream; the cache of the past is
rebuilt with the prompt in force at the start of each chunk.

NFE: T calls per chunk on c frames (two NFE each with guidance) plus one cache call on the past, so
``Scheme.causal_calls_per_frame = (T + 1) / c`` once a past exists; each call runs c (or K) frames, not B.
Shapes: chunk ``[b, c, channels, h, w]`` in the model's space, emitted decoded ``[b, c, 3, H, W]``.
"""

from __future__ import annotations

import torch
from torch import nn

from streamdit.acceleration import autocast
from streamdit.flow import euler_step
from streamdit.model import PastFrames
from streamdit.sampling import Stream, guided_text, guided_velocity
from streamdit.schedule import Scheme, time_grid
from streamdit.text import TextEmbedding


def check_causal(scheme: Scheme, model_cfg, sink: bool = False) -> None:
    """Raise unless a chunk-causal stream of ``scheme`` runs on a model of config ``model_cfg``."""
    chunk = model_cfg.causal_chunk
    if not chunk:
        raise ValueError(f"{scheme}: a KV-cache stream needs a chunk-causal model (causal_chunk > 0)")
    if scheme.N != 1 or scheme.c != chunk:
        raise ValueError(
            f"{scheme}: a chunk-causal model of chunk {chunk} streams one chunk at a time, [K, 1, {chunk}, T]"
        )
    if scheme.K % chunk or scheme.B != model_cfg.frames:
        raise ValueError(
            f"{scheme}: the past K must be whole chunks of {chunk} and K + c the model's buffer "
            f"{model_cfg.frames}"
        )
    if sink and scheme.K < 2 * chunk:
        raise ValueError(
            f"{scheme}: an attention sink needs room for it and a recent chunk, K >= {2 * chunk}"
        )


class CausalSampler(Stream):
    """An endless chunk-causal stream (module docstring): each ``step`` is one model call; every T + 1
    calls (the cache call and T denoising calls) a clean chunk leaves. ``cache=False``: no KV cache, every
    call on the whole buffer (the reference the cached path is tested against)."""

    def __init__(
        self,
        model: nn.Module,
        scheme: Scheme,
        text: TextEmbedding,
        *,
        sink: bool = False,
        cache: bool = True,
        **stream,
    ):  # stream: Stream's keywords (cfg_scale, shift, generator, frame_shape, precision, space)
        check_causal(scheme, model.cfg, sink)
        super().__init__(model, text, **stream)
        self.scheme, self.sink, self.cache = scheme, sink, cache
        self.levels = time_grid(scheme.T, self.shift).flip(0)  # t_T = 1 .. t_0 = 0: the chunk's path
        self.past = self._noise(0)  # the most recent (up to K) clean frames, oldest first
        self.first = self._noise(0)  # the stream's first chunk, with a sink
        self.x = self._noise(scheme.c)
        self.index = 0  # denoising calls made on the current chunk
        self.memory: PastFrames | None = None

    def context(self) -> torch.Tensor:
        """The clean frames the current chunk attends to ``[b, <= K, ...]``, at positions 0.. in order."""
        if not self.sink or self.emitted <= self.scheme.K:
            return self.past
        recent = self.scheme.K - self.scheme.c
        return torch.cat([self.first, self.past[:, self.past.shape[1] - recent :]], dim=1)

    def _remember(self, frames: torch.Tensor) -> PastFrames:
        """The cache of ``frames``, with rows for the text and (with guidance) the null caption."""
        text = guided_text(self.model, self.text, self.cfg_scale)
        rows = frames if self.cfg_scale == 1.0 else torch.cat([frames, frames])
        return self.model.remember(rows, text.tokens, text.mask, text.pooled)

    def _velocity(self, levels: torch.Tensor) -> torch.Tensor:
        """The guided velocity of the chunk at ``levels [b, c]``, through the cache or the whole buffer."""
        if self.cache:
            return guided_velocity(self.model, self.x, levels, self.text, self.cfg_scale, past=self.memory)
        past = self.context()
        k = past.shape[1]
        zeros = torch.zeros(self.batch, k, device=self.device, dtype=self.dtype)
        buffer = torch.cat([past, self.x], dim=1)
        v = guided_velocity(self.model, buffer, torch.cat([zeros, levels], 1), self.text, self.cfg_scale)
        return v[:, k:]

    @torch.no_grad()
    def step(self) -> torch.Tensor | None:
        """One model call; returns the emitted clean chunk, decoded, ``[b, c, 3, H, W]``, or None."""
        with autocast(self.device, self.precision):
            if self.index == 0 and self.cache:
                past = self.context()
                if past.shape[1] and self.memory is None:
                    self.memory = self._remember(past)  # the cache call of this chunk
                    self.calls += 1
                    return None
            t_now, t_next = (
                self.levels[i].to(self.device, self.dtype).expand(self.batch, self.scheme.c)
                for i in (self.index, self.index + 1)
            )
            self.x = euler_step(self.x, self._velocity(t_now), t_now, t_next)
        self.index += 1
        self.calls += 1
        if self.index < self.scheme.T:
            return None
        chunk, c, K = self.x, self.scheme.c, self.scheme.K
        if self.sink and not self.emitted:
            self.first = chunk
        self.past = torch.cat([self.past, chunk], dim=1)[:, -K:] if K else self.past
        self.emitted += c
        self.x, self.index, self.memory = self._noise(c), 0, None
        with autocast(self.device, self.precision):
            return self.space.decode(chunk).to(self.dtype)
