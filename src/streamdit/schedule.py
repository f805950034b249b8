"""Partition schemes and per-frame noise levels of the moving buffer (DESIGN.md section 1).

Notation (fixed across the repository):
    B  frames in the buffer, B = K + N * c
    K  clean reference frames at the output end (level 0, no loss)
    N  chunks of c frames each; all frames of a chunk share one level
    s  micro-steps a chunk spends in each chunk position
    T  grid steps a frame goes through, T = N * s, on the grid 0 = t_0 < t_1 < ... < t_T = 1

Everything here is a pure function of the scheme and an *offset* ``o`` (a float):
chunk ``j`` (0 = oldest, next to the output end) sits at grid index

    i_j(o) = clamp((j + 1) * s - o, 0, T)

and has level ``t(i_j / T)`` where ``t(u)`` is the (shifted) time grid. In the steady
stream ``o`` runs over ``[0, s)``: one model call moves it by one, and after ``s``
calls chunk 0 is clean, is emitted, the chunks shift and ``o`` wraps to 0.

A stream *starts* from a buffer of pure noise at ``o = s - T`` (every index clamps to
T) and emits its first chunk when ``o`` reaches ``s``, after T calls. Until that first
emission no clean frame exists, so the K reference frames are pure noise (index T);
afterwards they hold the last K emitted frames (index 0). ``started`` says which.
Training draws ``o`` and ``started`` at random from the same ranges, so the model sees
exactly the level patterns the sampler produces (and the continuum between grid points).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch

# How a stream fills its first buffer (sampling.StreamSampler): "staggered" from pure noise, chunks
# waiting their turn at t = 1; "uniform" from one clip denoised as a uniform clip model would (K = 0).
STARTUPS = ("staggered", "uniform")


@dataclass(frozen=True)
class Scheme:
    """A partition scheme (K, N, c, s) of a buffer of B = K + N * c frames."""

    K: int
    N: int
    c: int
    s: int

    def __post_init__(self) -> None:
        for name in ("N", "c", "s"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"scheme {name} must be an integer >= 1, got {value!r}")
        if not isinstance(self.K, int) or self.K < 0:
            raise ValueError(f"scheme K (reference frames) must be an integer >= 0, got {self.K!r}")

    @property
    def B(self) -> int:
        """Frames in the buffer."""
        return self.K + self.N * self.c

    @property
    def T(self) -> int:
        """Denoising steps each frame goes through."""
        return self.N * self.s

    @property
    def calls_to_first_chunk(self) -> int:
        """Model calls from an all-noise buffer to the first emitted chunk."""
        return self.T

    @property
    def calls_per_frame(self) -> float:
        """Model calls per emitted frame in the steady stream."""
        return self.s / self.c

    def nfe_per_frame(self, cfg_scale: float) -> float:
        """Forward passes per emitted frame in the steady stream: s / c calls, times 2 with guidance."""
        return self.calls_per_frame * nfe_per_call(cfg_scale)

    @property
    def causal_calls_per_frame(self) -> float:
        """Model calls per emitted frame of a chunk-causal stream of this ``[K, 1, c, T]`` scheme
        (``causal.CausalSampler``): T calls on the chunk and, with a past, one cache call per chunk."""
        return (self.T + (1 if self.K else 0)) / self.c

    def distilled(self) -> Scheme:
        """The student (K, N, c, 1) of this teacher scheme (K, N, c, s): T' = N steps on the teacher's
        grid points t_{j s}, one call per segment of s teacher calls (``distill.py``)."""
        if self.s < 2:
            raise ValueError(f"a teacher scheme needs s >= 2 micro-steps to distil, got {self} (s={self.s})")
        return Scheme(K=self.K, N=self.N, c=self.c, s=1)

    @property
    def spec(self) -> str:
        """The scheme written "K,N,c,s", the form ``parse`` reads."""
        return f"{self.K},{self.N},{self.c},{self.s}"

    @classmethod
    def for_buffer(cls, B: int, c: int, s: int, K: int = 0) -> Scheme:
        """The scheme with chunk size c and s micro-steps that fills a buffer of B frames."""
        if B - K <= 0 or (B - K) % c != 0:
            raise ValueError(
                f"buffer B={B} minus K={K} reference frames must be a positive multiple of chunk size c={c}"
            )
        return cls(K=K, N=(B - K) // c, c=c, s=s)

    @classmethod
    def uniform(cls, B: int, T: int, K: int = 0) -> Scheme:
        """Ordinary clip diffusion: one chunk of all non-reference frames, T steps."""
        return cls(K=K, N=1, c=B - K, s=T)

    @classmethod
    def diagonal(cls, B: int, K: int = 0) -> Scheme:
        """FIFO-Diffusion: one frame per chunk, one step per position, T = N = B - K."""
        return cls(K=K, N=B - K, c=1, s=1)

    @classmethod
    def parse(cls, spec: list[int] | tuple[int, ...] | str) -> Scheme:
        """A scheme from ``[K, N, c, s]`` (a list, or the string "K,N,c,s")."""
        written = f"scheme {spec!r} is not 'K,N,c,s' (four integers such as '0,2,4,8')"
        try:
            values = [int(v) for v in spec.split(",")] if isinstance(spec, str) else list(spec)
        except ValueError as err:
            raise ValueError(f"{written}: {err}") from None
        if len(values) != 4:
            raise ValueError(f"{written}: a scheme is written [K, N, c, s]")
        return cls(*values)

    def __str__(self) -> str:
        return f"K{self.K}-N{self.N}-c{self.c}-s{self.s}"


def nfe_per_call(cfg_scale: float) -> int:
    """Forward passes per model call: two with guidance (text and null rows), one without."""
    return 1 if cfg_scale == 1.0 else 2


def check_buffer(scheme: Scheme, B: int) -> None:
    """Raise if ``scheme`` does not partition a buffer of ``B`` frames."""
    if scheme.B != B:
        raise ValueError(
            f"scheme {scheme} covers B = K + N*c = {scheme.K} + {scheme.N}*{scheme.c} = {scheme.B} "
            f"frames, but the buffer has {B}"
        )


def time_shift(u: torch.Tensor, shift: float) -> torch.Tensor:
    """SD3/Flux time shift t = shift * u / (1 + (shift - 1) * u); shift = 1 is the identity.

    A shift > 1 spends more of the grid at high noise, as SD3 does for larger images.
    """
    if shift <= 0:
        raise ValueError(f"time shift must be > 0, got {shift}")
    return shift * u / (1 + (shift - 1) * u)


def time_grid(T: int, shift: float = 1.0) -> torch.Tensor:
    """The grid t_0 = 0 < t_1 < ... < t_T = 1 as a float64 tensor [T + 1]."""
    if T < 1:
        raise ValueError(f"the grid needs T >= 1 steps, got {T}")
    return time_shift(torch.linspace(0.0, 1.0, T + 1, dtype=torch.float64), shift)


def grid_indices(scheme: Scheme, offset: torch.Tensor, started: torch.Tensor | bool = True) -> torch.Tensor:
    """Continuous grid index of every frame, ``[..., B]`` for offsets ``[...]``.

    Reference frames get index 0 once the stream has ``started`` (emitted a chunk) and
    T (pure noise) before, when no clean frame exists yet to serve as context.
    """
    offset = torch.as_tensor(offset, dtype=torch.float64)
    started = torch.as_tensor(started, dtype=torch.bool).expand(offset.shape)
    j = torch.arange(scheme.N, dtype=torch.float64)
    chunk = ((j + 1) * scheme.s - offset[..., None]).clamp(0, scheme.T)  # [..., N]
    frames = chunk.repeat_interleave(scheme.c, dim=-1)  # [..., N * c]
    ref_index = torch.where(started, 0.0, float(scheme.T)).to(torch.float64)[..., None]
    refs = ref_index.expand(*offset.shape, scheme.K)
    return torch.cat([refs, frames], dim=-1)


def buffer_levels(
    scheme: Scheme, offset: torch.Tensor | float, shift: float = 1.0, started: torch.Tensor | bool = True
) -> torch.Tensor:
    """Per-frame noise levels ``[..., B]`` (float64, non-decreasing along the buffer) at ``offset``."""
    index = grid_indices(scheme, torch.as_tensor(offset, dtype=torch.float64), started)
    return time_shift(index / scheme.T, shift)


def loss_mask(scheme: Scheme) -> torch.Tensor:
    """Which frames are regressed: ``[B]`` bool, False for the K reference frames."""
    return torch.arange(scheme.B) >= scheme.K


def offset_from_unit(scheme: Scheme, u: torch.Tensor, started: torch.Tensor) -> torch.Tensor:
    """Map ``u [...]`` in [0, 1) to offsets: the steady range [0, s) where ``started [...]``, else the
    start-up range [s - T, s) (see the module docstring)."""
    lo = torch.where(started, 0.0, float(scheme.s - scheme.T)).to(torch.float64)
    return lo + u * (scheme.s - lo)


def draw_positions(
    batch: int, generator: torch.Generator, startup_prob: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Where along a stream each training sample sits: ``u [batch]`` uniform in [0, 1) (float64) and
    ``started [batch]``, False with probability ``startup_prob`` (a stream's start-up). ``offset_from_unit``
    turns them into a scheme's offsets; training and distillation both draw through here."""
    if not 0.0 <= startup_prob <= 1.0:
        raise ValueError(f"startup_prob must be in [0, 1], got {startup_prob}")
    u = torch.rand(batch, generator=generator, dtype=torch.float64)
    started = torch.rand(batch, generator=generator, dtype=torch.float64) >= startup_prob
    return u, started


def sample_training_levels(
    schemes: list[Scheme],
    probs: list[float],
    batch: int,
    generator: torch.Generator,
    startup_prob: float = 0.1,
    shift: float = 1.0,
    segments: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mixed training (DESIGN.md "Mixed training"): draw a scheme and an offset per sample.

    Returns ``levels [batch, B]`` (float32), ``mask [batch, B]`` (frames with a loss) and
    the drawn scheme index ``[batch]``. With probability ``startup_prob`` the sample is a
    stream's start-up (see the module docstring), so the model also learns to start a
    stream from pure noise. ``segments``: a steady sample's chunks each draw their own level inside
    their own segment (``segment_levels``, the paper's Eq. 8/9) instead of sharing one offset.
    """
    if len(schemes) == 0 or len(schemes) != len(probs):
        raise ValueError(
            f"need one probability per scheme, got {len(schemes)} schemes and {len(probs)} probs"
        )
    if any(p < 0 for p in probs) or not math.isclose(sum(probs), 1.0, abs_tol=1e-6):
        raise ValueError(f"scheme probabilities must be >= 0 and sum to 1, got {probs}")
    B = schemes[0].B
    for scheme in schemes:
        check_buffer(scheme, B)

    which = torch.multinomial(
        torch.tensor(probs, dtype=torch.float64), batch, replacement=True, generator=generator
    )
    u, started = draw_positions(batch, generator, startup_prob)
    if segments:  # one more draw per chunk: its own place inside its own segment
        per_chunk = torch.rand(batch, max(s.N for s in schemes), generator=generator, dtype=torch.float64)
    levels = torch.empty(batch, B, dtype=torch.float64)
    mask = torch.empty(batch, B, dtype=torch.bool)
    for k, scheme in enumerate(schemes):
        rows = which == k
        offset = offset_from_unit(scheme, u[rows], started[rows])
        levels[rows] = buffer_levels(scheme, offset, shift, started[rows])
        if segments:
            steady = rows & started
            levels[steady] = segment_levels(scheme, per_chunk[steady, : scheme.N], shift)
        mask[rows] = loss_mask(scheme)
    return levels.float(), mask, which


def segment_levels(scheme: Scheme, u: torch.Tensor, shift: float = 1.0) -> torch.Tensor:
    """The paper's Eq. 8/9: chunk j's level at grid index (j + u_j) s, i.e. uniform inside its own
    segment [j / N, (j + 1) / N] of the grid, independently of the other chunks; reference frames
    clean. ``u [..., N]`` in [0, 1) -> levels ``[..., B]`` (float64) on the grid of ``shift``.

    The steady stream puts every chunk at (j + 1) s - o for one offset o in [0, s), the special case
    u_j = 1 - o / s for all j, so every steady pattern the sampler produces is drawn, and so is every
    pattern with chunks at different places of their segments."""
    if u.shape[-1] != scheme.N:
        raise ValueError(f"need one draw per chunk ({scheme.N} for {scheme}), got shape {tuple(u.shape)}")
    j = torch.arange(scheme.N, dtype=torch.float64)
    index = ((j + u.double()) * scheme.s).repeat_interleave(scheme.c, dim=-1)  # [..., N * c]
    refs = torch.zeros(*u.shape[:-1], scheme.K, dtype=torch.float64)
    return time_shift(torch.cat([refs, index], dim=-1) / scheme.T, shift)


def independent_levels(
    batch: int, B: int, generator: torch.Generator, shift: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Diffusion-Forcing-style levels: every frame's level drawn on its own, ``t = shift(u)`` with
    ``u ~ U[0, 1)`` independent across frames and samples (no scheme, no ordering along the buffer).

    Returns ``levels [batch, B]`` (float32) and ``mask [batch, B]`` (every frame has a loss).
    """
    if batch < 1 or B < 1:
        raise ValueError(f"independent levels need batch >= 1 and B >= 1 frames, got {batch}, {B}")
    u = torch.rand(batch, B, generator=generator, dtype=torch.float64)
    return time_shift(u, shift).float(), torch.ones(batch, B, dtype=torch.bool)


# What a moving buffer's K reference frames hold: the clean last frames of the stream at level 0 (a model
# trained with clean context), or those frames noised again to the level of the one chunk after them, so
# that a uniform clip model that never saw clean context denoises them with the chunk as one clip and
# the sampler puts the known frames back after every call (ReuseDiffuse-style training-free extension).
CONTEXTS = ("clean", "noised")


def check_start(scheme: Scheme, startup: str, context: str) -> None:
    """Raise unless ``startup`` (``STARTUPS``) and ``context`` (``CONTEXTS``) suit ``scheme``."""
    if startup not in STARTUPS:
        raise ValueError(f"startup must be one of {STARTUPS}, got {startup!r}")
    if startup == "uniform" and scheme.K:
        raise ValueError(f"a uniform start-up fills a buffer without reference frames (K = 0), got {scheme}")
    if context not in CONTEXTS:
        raise ValueError(f"context must be one of {CONTEXTS}, got {context!r}")
    if context == "noised" and (scheme.K == 0 or scheme.N != 1):
        raise ValueError(
            "a noised context re-noises the K reference frames to the level of the one chunk after them: "
            f"it needs K >= 1 and N = 1, got {scheme}"
        )


@dataclass(frozen=True)
class FifoScheme:
    """FIFO-Diffusion on a model of buffer ``B``: ``partitions`` blocks of B frames on the diagonal,
    T = partitions * B steps per frame, with or without lookahead denoising."""

    B: int
    partitions: int
    lookahead: bool

    def __post_init__(self) -> None:
        for name in ("B", "partitions"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"FIFO {name} must be an integer >= 1, got {value!r}")
        if not isinstance(self.lookahead, bool):
            raise ValueError(f"FIFO lookahead must be True or False, got {self.lookahead!r}")
        if self.lookahead and self.B % 2:
            raise ValueError(
                f"lookahead denoising keeps half of each block of B frames: B must be even, got B={self.B}"
            )

    @property
    def T(self) -> int:
        """Denoising steps each frame goes through: one per queue position of the diagonal."""
        return self.partitions * self.B

    @property
    def K(self) -> int:
        """Look-behind frames at the output end (clean, level 0): B / 2 with lookahead, else 0."""
        return self.B // 2 if self.lookahead else 0

    @property
    def c(self) -> int:
        """Frames emitted together: one per step."""
        return 1

    @property
    def frames(self) -> int:
        """Frames in the queue: K look-behind frames and the T frames of the diagonal."""
        return self.K + self.T

    @property
    def queue(self) -> Scheme:
        """The moving-buffer scheme whose levels at offset 0 (before a step) and 1 (after) are the queue's."""
        return Scheme(K=self.K, N=self.T, c=1, s=1)

    @property
    def warmup(self) -> int:
        """Steps whose head frame is dropped: the T - B positions initialised with copies of clip frame 0."""
        return self.T - self.B

    @property
    def blocks(self) -> tuple[tuple[int, int], ...]:
        """One ``(start, keep)`` per model call of a step: the call sees queue frames ``[start, start + B)``
        and its update is kept on ``[keep, start + B)``, head first. The kept ranges tile the diagonal."""
        if self.lookahead:
            half = self.B // 2
            return tuple((r * half, (r + 1) * half) for r in range(2 * self.partitions))
        return tuple((r * self.B, r * self.B) for r in range(self.partitions))

    @property
    def calls_per_frame(self) -> int:
        """Model calls per emitted frame after the warm-up: partitions, twice that with lookahead."""
        return len(self.blocks)

    def nfe_per_frame(self, cfg_scale: float) -> int:
        """Forward passes per emitted frame after the warm-up, times 2 with guidance."""
        return self.calls_per_frame * nfe_per_call(cfg_scale)

    def __str__(self) -> str:
        return f"FIFO-B{self.B}-n{self.partitions}" + ("-lookahead" if self.lookahead else "")

    @classmethod
    def parse(cls, spec: str) -> FifoScheme:
        """The scheme its ``str`` writes: "FIFO-B<B>-n<partitions>", optionally "-lookahead"."""
        match = re.fullmatch(r"FIFO-B(\d+)-n(\d+)(-lookahead)?", spec.strip())
        if match is None:
            raise ValueError(
                f"FIFO scheme {spec!r} is not 'FIFO-B<B>-n<partitions>[-lookahead]' "
                "(e.g. 'FIFO-B8-n2-lookahead')"
            )
        return cls(B=int(match[1]), partitions=int(match[2]), lookahead=match[3] is not None)


def stream_nfe_per_frame(scheme: Scheme | FifoScheme, cfg_scale: float, causal: bool = False) -> float:
    """Forward passes per frame of the steady stream of ``scheme`` (guidance counts two per call); a
    chunk-causal model's (``causal``) adds its cache call per chunk (``Scheme.causal_calls_per_frame``)."""
    if causal:
        return scheme.causal_calls_per_frame * nfe_per_call(cfg_scale)
    return scheme.nfe_per_frame(cfg_scale)


def parse_scheme(spec: list[int] | tuple[int, ...] | str) -> Scheme | FifoScheme:
    """A stream's scheme from params: ``[K, N, c, s]`` (or "K,N,c,s") for the moving buffer, or a
    ``FifoScheme`` written as its ``str`` ("FIFO-B8-n2-lookahead")."""
    if isinstance(spec, str) and spec.strip().upper().startswith("FIFO"):
        return FifoScheme.parse(spec)
    return Scheme.parse(spec)


def check_stream(
    scheme: Scheme | FifoScheme, B: int | None, startup: str = "staggered", context: str = "clean"
) -> None:
    """Raise unless a stream of ``scheme`` with ``startup`` and ``context`` runs on a model of buffer ``B``
    (FIFO-Diffusion starts from a clip of its own, with clean look-behind frames); ``B = None``: the
    checks that need no model."""
    if isinstance(scheme, FifoScheme):
        if B is not None and scheme.B != B:
            raise ValueError(f"{scheme} needs a buffer of {scheme.B}, the model's is {B}")
        if startup != "staggered" or context != "clean":
            raise ValueError(
                f"{scheme} starts from a clip of its own with clean look-behind frames: it takes neither "
                f"a {startup!r} start-up nor a {context!r} context"
            )
        return
    if B is not None:
        check_buffer(scheme, B)
    check_start(scheme, startup, context)
