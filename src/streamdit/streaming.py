"""The streaming front-end every user-facing path shares (DESIGN.md section 1, "Streaming inference").

The CLI, the web demo, the exploration notebook and the evaluation all start streams here:
- ``Streamer``: a loaded model with its text encoder and how it is sampled (scheme, guidance, time
  shift); ``Streamer.sampler(prompt, seed)`` is the one place a ``StreamSampler`` is set up, and
  ``videos`` / ``switched`` generate whole batches of streams from it;
- prompt timelines: a text file of ``frame: prompt`` lines, and ``follow_timeline``, which switches a
  sampler's prompt once the given frame is out (frames already in the buffer keep what they hold);
- ``write_stream``: the loop that hands emitted chunks to a frame sink (``video.py``) with a progress
  line and latency statistics;
- ``measure_switch``: how many frames a prompt switch takes to show.
Shapes: emitted (decoded) chunks ``[b, c, 3, H, W]``, videos ``[n, f, 3, H, W]`` in [-1, 1].
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from streamdit.acceleration import resolve_device
from streamdit.autoencoder import PixelSpace
from streamdit.causal import CausalSampler, check_causal
from streamdit.checkpoint import load_model, load_space
from streamdit.fifo import FifoSampler
from streamdit.latency import spread
from streamdit.metrics import frames_to_reach
from streamdit.progress import progress_bar, show
from streamdit.sampling import Stream, StreamSampler
from streamdit.schedule import FifoScheme, Scheme, check_stream, parse_scheme, stream_nfe_per_frame
from streamdit.text import TextEmbedding, check_caption, load_text_encoder
from streamdit.video import to_uint8


@dataclass
class Streamer:
    """A model, the encoder of its captions, how it is sampled (scheme, guidance, time shift) and the
    space it denoises in (``autoencoder.py``: its streams decode to pixels; None: pixels).

    ``scheme``: a moving-buffer ``Scheme`` (``StreamSampler``, started as ``startup`` says) or a
    ``FifoScheme`` (FIFO-Diffusion on the same model, ``fifo.FifoSampler``; its queue starts from a
    clip of the model's own). A chunk-causal model (``causal_chunk > 0``) streams a ``[K, 1, c, T]``
    scheme chunk by chunk with its KV cache (``causal.CausalSampler``; ``sink``: keep the first chunk).

    ``encoder`` may be None for a streamer that is only ever given encoded text (``TextEmbedding``)."""

    model: nn.Module
    encoder: Callable[[list[str]], TextEmbedding] | None
    scheme: Scheme | FifoScheme
    cfg_scale: float
    shift: float
    config: dict = field(default_factory=dict)  # the run's settings stored with the model
    space: nn.Module | None = None
    startup: str = "staggered"  # how a stream fills its first buffer (schedule.STARTUPS)
    context: str = "clean"  # what its reference frames hold (schedule.CONTEXTS)
    sink: bool = False  # a chunk-causal stream keeps its first chunk as an attention sink

    def __post_init__(self) -> None:
        check_stream(self.scheme, self.model.cfg.frames, self.startup, self.context)
        if self.causal:
            if isinstance(self.scheme, FifoScheme) or self.context != "clean" or self.startup != "staggered":
                raise ValueError(
                    f"{self.scheme}: a chunk-causal model streams chunk by chunk from its clean past "
                    f"(causal.CausalSampler), not with {self.context!r} context or {self.startup!r} start-up"
                )
            check_causal(self.scheme, self.model.cfg, self.sink)
        elif self.sink:
            raise ValueError("an attention sink needs a chunk-causal model (causal_chunk > 0)")
        if self.cfg_scale < 0:
            raise ValueError(f"cfg_scale must be >= 0 (1 = no guidance), got {self.cfg_scale}")
        if self.space is None:
            if self.model.cfg.space == "latent":
                raise ValueError(
                    "a latent model streams through its space: pass space= (checkpoint.load_space)"
                )
            self.space = PixelSpace(self.model.cfg.channels)

    @property
    def causal(self) -> bool:
        """Whether the model is chunk-causal (streamed by ``causal.CausalSampler``)."""
        return bool(getattr(self.model.cfg, "causal_chunk", 0))  # (the tests' stand-in models lack it)

    @property
    def nfe_per_frame(self) -> float:
        """Forward passes per emitted frame in the steady stream (guidance counts two)."""
        return stream_nfe_per_frame(self.scheme, self.cfg_scale, self.causal)

    @property
    def resolution(self) -> int:
        """Decoded frame height and width in pixels."""
        return self.model.cfg.resolution * self.space.factor

    def encode(self, prompt: str) -> TextEmbedding:
        """One prompt as a batch of one row; an empty or over-long prompt raises ValueError."""
        if self.encoder is None:
            raise ValueError("this Streamer has no text encoder: give it encoded text (a TextEmbedding)")
        return self.encoder([check_caption(prompt)])

    def sampler(self, prompt: str | TextEmbedding, seed: int) -> Stream:
        """A new stream under ``prompt`` (one row, or one per row of an encoded batch), its noise drawn
        from a generator seeded with ``seed``."""
        text = self.encode(prompt) if isinstance(prompt, str) else prompt
        generator = torch.Generator().manual_seed(seed)
        if isinstance(self.scheme, FifoScheme):
            return FifoSampler(self.model, self.scheme, text, cfg_scale=self.cfg_scale, shift=self.shift,
                               generator=generator, space=self.space)  # fmt: skip
        if self.causal:
            return CausalSampler(self.model, self.scheme, text, cfg_scale=self.cfg_scale, shift=self.shift,
                                 generator=generator, space=self.space, sink=self.sink)  # fmt: skip
        return StreamSampler(self.model, self.scheme, text, cfg_scale=self.cfg_scale, shift=self.shift,
                             generator=generator, space=self.space, startup=self.startup,
                             context=self.context)  # fmt: skip

    def videos(
        self, text: TextEmbedding, frames: int, *, seed: int, batch_size: int, progress: bool = False
    ) -> torch.Tensor:
        """``frames`` frames of one stream per text row, ``batch_size`` streams at a time; batch ``i``
        draws its noise from ``seed + i``. Returns decoded frames ``[n, frames, 3, H, W]`` on the CPU."""
        n = text.tokens.shape[0]
        out = []
        bar = progress_bar(n, f"streams {self.scheme}", progress, unit="stream")
        for i, start in enumerate(range(0, n, batch_size)):
            rows = slice(start, min(start + batch_size, n))
            out.append(self.sampler(text[rows], seed + i).take(frames))
            bar.update(rows.stop - rows.start)
        bar.close()
        return torch.cat(out)

    def switched(
        self, text_a: TextEmbedding, text_b: TextEmbedding, *, switch_frame: int, after: int, seed: int
    ) -> tuple[torch.Tensor, int]:
        """Stream ``text_a`` and switch every row to ``text_b`` once ``switch_frame`` frames are out.

        The switch takes effect at the next chunk boundary, so the first frame made under B is
        ``switch_at`` (``switch_frame`` rounded up to a multiple of the chunk size c). Returns the
        decoded frames ``[p, switch_at + after, 3, H, W]`` and ``switch_at``.
        """
        sampler = self.sampler(text_a, seed)
        chunks = []
        while sampler.emitted < switch_frame:
            chunk = sampler.step()
            if chunk is not None:
                chunks.append(chunk.float().cpu())
        switch_at = sampler.emitted
        sampler.set_text(text_b)
        while sampler.emitted < switch_at + after:
            chunk = sampler.step()
            if chunk is not None:
                chunks.append(chunk.float().cpu())
        return torch.cat(chunks, dim=1)[:, : switch_at + after], switch_at


def timed_stream(
    streamer: Streamer, text: TextEmbedding, frames: int, seed: int
) -> tuple[torch.Tensor, dict]:
    """``frames`` frames of one stream per text row from ``seed``: the decoded video ``[b, f, 3, H, W]``
    and its scheme, guidance, model calls (start-up included), steady NFE per frame and rough
    frames/s (``latency.py`` measures speed properly)."""
    sampler = streamer.sampler(text, seed)
    start = time.perf_counter()
    video = sampler.take(frames)
    seconds = time.perf_counter() - start
    return video, {
        "scheme": str(streamer.scheme),
        "cfg_scale": streamer.cfg_scale,
        "model_calls": sampler.calls,
        "nfe_per_frame": streamer.nfe_per_frame,  # in the steady stream
        "frames_per_second": round(video.shape[0] * frames / seconds, 2),
        "finite": bool(torch.isfinite(video).all()),
    }


def load_streamer(
    path: str | Path,
    *,
    scheme: Scheme | FifoScheme | None = None,
    distilled: bool = False,
    cfg_scale: float | None = None,
    startup: str = "staggered",
    context: str | None = None,
    device: str = "auto",
) -> Streamer:
    """The model in ``path`` (a model file, ``checkpoint.save_model``) with the settings stored beside it.

    By default a teacher streams with its config's ``sample`` scheme, guidance and time shift; a
    ``distilled`` student with the student scheme of ``distill.teacher``, without guidance (it is
    baked in). ``scheme`` and ``cfg_scale`` override either; ``startup``: how streams fill their first
    buffer (``schedule.STARTUPS``); ``context``: what the reference frames hold (``schedule.CONTEXTS``;
    None: the stored ``sample.context`` with the stored scheme, else clean).
    """
    device = resolve_device(device)
    model, config = load_model(path, device)
    if distilled:
        default_scheme = Scheme.parse(config["distill"]["teacher"]).distilled()
        default_cfg, shift = 1.0, config["distill"]["time_shift"]
    else:
        sample = config["sample"]
        default_scheme, default_cfg, shift = (
            parse_scheme(sample["scheme"]),
            sample["cfg_scale"],
            sample["time_shift"],
        )
    encoder = load_text_encoder(config["text"]["encoder"], config["text"]["max_length"])
    if encoder.dim != model.cfg.text_dim:
        raise ValueError(f"{path} expects {model.cfg.text_dim}-d text, its encoder gives {encoder.dim}-d")
    return Streamer(
        model,
        encoder,
        default_scheme if scheme is None else scheme,
        default_cfg if cfg_scale is None else cfg_scale,
        shift,
        config,
        load_space(path, device),
        startup,
        context
        or (config["sample"].get("context", "clean") if scheme is None and not distilled else "clean"),
    )


def parse_timeline(text: str, source: str = "timeline") -> list[tuple[int, str]]:
    """Parse a prompt timeline: one ``frame: prompt`` per line, e.g.

        0: a red circle moving left
        64: "a blue square bouncing"

    Blank lines and lines starting with ``#`` are skipped; quotes around a prompt are dropped.
    The first entry must be at frame 0, frames must increase and prompts must be valid captions.
    Returns ``[(frame, prompt), ...]``; errors name ``source`` and the line.
    """
    entries: list[tuple[int, str]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{source}, line {number}"
        frame_text, colon, prompt = line.partition(":")
        if not colon:
            raise ValueError(f"{where}: expected 'frame: prompt', got {line!r}")
        try:
            frame = int(frame_text)
        except ValueError:
            raise ValueError(f"{where}: the frame {frame_text.strip()!r} is not an integer") from None
        if not entries and frame != 0:
            raise ValueError(f"{where}: the first prompt must start at frame 0, got {frame}")
        if entries and frame <= entries[-1][0]:
            raise ValueError(f"{where}: frame {frame} must come after frame {entries[-1][0]}")
        prompt = prompt.strip()
        if len(prompt) >= 2 and prompt[0] == prompt[-1] and prompt[0] in "\"'":
            prompt = prompt[1:-1]
        try:
            entries.append((frame, check_caption(prompt)))
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from None
    if not entries:
        raise ValueError(f"{source} holds no 'frame: prompt' line")
    return entries


def read_timeline(path: str | Path) -> list[tuple[int, str]]:
    """The prompt timeline in the text file ``path`` (see ``parse_timeline``)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"cannot read the prompt timeline {path}: no such file")
    return parse_timeline(path.read_text(), source=str(path))


def follow_timeline(
    sampler: StreamSampler, timeline: list[tuple[int, str]], encode: Callable[[str], TextEmbedding]
) -> Iterator[tuple[torch.Tensor, str]]:
    """The sampler's emitted chunks ``[b, c, channels, h, w]``, each with the prompt in force at its
    emission, forever.

    Entry ``(frame, prompt)`` takes over once ``frame`` frames are out, i.e. at the first chunk
    boundary at or after ``frame``. Every prompt is encoded (and so validated) before the first call.
    """
    texts = [encode(prompt) for _, prompt in timeline]
    sampler.set_text(texts[0])
    current = 0
    for chunk in sampler.chunks():
        yield chunk, timeline[current][1]
        while current + 1 < len(timeline) and sampler.emitted >= timeline[current + 1][0]:
            current += 1
            sampler.set_text(texts[current])


def write_stream(
    chunks: Iterator[tuple[torch.Tensor, str]], sink, frames: int | None, progress: bool = True
) -> dict:
    """Write the first row of each chunk ``[b, c, channels, h, w]`` to ``sink`` (``video.make_sink``)
    until ``frames`` frames (None: until the chunks end or Ctrl-C), with a progress line of per-frame
    latency and the prompt on stderr. Returns frames, seconds, time to first frame, frames/s and
    per-frame latency (median and p95 of the gaps between emissions divided by the chunk's frames,
    as ``latency.py`` measures them)."""
    bar = progress_bar(frames, "stream", progress, unit="frame")
    # Sinks create their file on the first frame, so a stream that fails before it leaves nothing.
    start = last = time.perf_counter()
    written, ttff, per_frame = 0, None, []
    try:
        for chunk, prompt in chunks:
            now = time.perf_counter()
            if ttff is None:
                ttff = now - start
            else:
                per_frame.append((now - last) / chunk.shape[1])
            last = now
            video = to_uint8(chunk[0])[: None if frames is None else frames - written]
            sink.write(video)
            written += len(video)
            latency = f"{1000 * np.median(per_frame[-16:]):.1f} ms" if per_frame else "-"
            show(bar, latency_per_frame=latency, prompt=prompt[:40])
            bar.update(len(video))
            if frames is not None and written >= frames:
                break
    except (KeyboardInterrupt, BrokenPipeError):
        pass  # an endless stream ends here; what was written is kept
    finally:
        bar.close()
        if written:
            sink.close()
    stats = {"frames": written, "seconds": round(time.perf_counter() - start, 3), "ttff_s": ttff}
    if per_frame:
        gaps = spread(per_frame)
        stats.update(
            frames_per_second=1 / float(np.mean(per_frame)),
            frame_latency_ms_median=1000 * gaps["median"],
            frame_latency_ms_p95=1000 * gaps["p95"],
        )
    return stats


def summary_line(stats: dict, streamer: Streamer) -> str:
    """One line of what a ``write_stream`` run did and how fast."""
    line = f"{stats['frames']} frames in {stats['seconds']:.2f} s"
    line += f", scheme {streamer.scheme}, guidance {streamer.cfg_scale}"
    if stats["ttff_s"] is not None:
        line += f"; time to first frame {stats['ttff_s']:.3f} s"
    if "frames_per_second" in stats:
        line += (
            f"; steady {stats['frames_per_second']:.1f} frames/s, latency per frame "
            f"{stats['frame_latency_ms_median']:.1f} ms median, {stats['frame_latency_ms_p95']:.1f} ms p95"
        )
    return line


def measure_switch(
    streamer: Streamer,
    prompt_a: str,
    prompt_b: str,
    *,
    switch_frame: int,
    after: int,
    seed: int,
    threshold: float = 0.5,
) -> dict:
    """How many frames a switch from ``prompt_a`` to ``prompt_b`` takes to show, without a CLIP model.

    Three streams share every noise draw (same seed; the draws do not depend on the text): A alone,
    B alone, and A switched to B once ``switch_frame`` frames are out (``Streamer.switched``, which
    rounds the switch up to a chunk boundary ``switch_at``). For each of the ``after`` frames from
    ``switch_at`` on, ``progress = d_A / (d_A + d_B)`` with ``d_X`` the mean squared pixel difference
    to stream X's frame: 0 while the stream is still A's, 1 once it is B's own. The switch takes the
    frames until ``progress >= threshold`` (``metrics.frames_to_reach``; ``after`` frames and
    ``reached = False`` if it never does). The CLIP-based measure is in ``evaluate``.
    """
    if switch_frame < 1 or after < 1 or not 0 < threshold <= 1:
        raise ValueError(
            f"need switch_frame >= 1, after >= 1 and threshold in (0, 1]; got {switch_frame}, {after}, "
            f"{threshold}"
        )
    text_a, text_b = streamer.encode(prompt_a), streamer.encode(prompt_b)
    switched, switch_at = streamer.switched(text_a, text_b, switch_frame=switch_frame, after=after, seed=seed)
    total = switch_at + after
    alone = {
        name: streamer.videos(text, total, seed=seed, batch_size=1)
        for name, text in (("a", text_a), ("b", text_b))
    }
    later = slice(switch_at, total)
    d_a, d_b = (
        (switched[0, later] - alone[name][0, later]).pow(2).mean(dim=(1, 2, 3)) for name in ("a", "b")
    )
    if not (d_a + d_b).gt(0).all():
        raise ValueError(
            f"prompts {prompt_a!r} and {prompt_b!r} give identical frames: the model ignores its prompt"
        )
    progress = d_a / (d_a + d_b)
    frames, reached = frames_to_reach(progress[None], torch.tensor([threshold]))
    return {
        "switch_at": switch_at,
        "frames": int(frames[0]),
        "reached": bool(reached[0]),
        "threshold": threshold,
        "progress": [round(float(p), 4) for p in progress],
        "identical_before_switch": bool(torch.equal(switched[0, :switch_at], alone["a"][0, :switch_at])),
    }
