"""Interactive generation (DESIGN.md section 1, "Streaming inference and applications").

A trained model streams under a prompt that may change at any model call: frames already in the
buffer keep what they hold, frames entering after the switch follow the new prompt.
- ``Streamer``: a loaded model with its text encoder and sampling settings; makes ``StreamSampler``s.
- Prompt schedules: a text file of ``frame: prompt`` lines, and ``follow_schedule``, which switches
  a sampler's prompt once the scheduled frame is out.
- ``measure_switch``: how many frames a switch takes to show.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from streamdit.config import resolve_device
from streamdit.distill import student_scheme
from streamdit.sampling import StreamSampler
from streamdit.schedule import Scheme, check_buffer
from streamdit.text import TextEmbedding, check_caption, load_text_encoder
from streamdit.train import load_model


@dataclass
class Streamer:
    """A model, the encoder of its captions and how it is sampled (scheme, guidance, time shift)."""

    model: nn.Module
    encoder: Callable[[list[str]], TextEmbedding]
    scheme: Scheme
    cfg_scale: float
    shift: float
    config: dict = field(default_factory=dict)  # the run's settings stored with the model

    def __post_init__(self) -> None:
        check_buffer(self.scheme, self.model.cfg.frames)
        if self.cfg_scale < 0:
            raise ValueError(f"cfg_scale must be >= 0 (1 = no guidance), got {self.cfg_scale}")

    @property
    def resolution(self) -> int:
        """Frame height and width in pixels."""
        return self.model.cfg.resolution

    def encode(self, prompt: str) -> TextEmbedding:
        """One prompt as a batch of one row; an empty or over-long prompt raises ValueError."""
        return self.encoder([check_caption(prompt)])

    def sampler(self, prompt: str, seed: int) -> StreamSampler:
        """A new stream of one row under ``prompt``, its noise drawn from a generator seeded with ``seed``."""
        return StreamSampler(
            self.model,
            self.scheme,
            self.encode(prompt),
            cfg_scale=self.cfg_scale,
            shift=self.shift,
            generator=torch.Generator().manual_seed(seed),
        )


def load_streamer(
    path: str | Path,
    *,
    scheme: Scheme | None = None,
    distilled: bool = False,
    cfg_scale: float | None = None,
    device: str = "auto",
) -> Streamer:
    """The model in ``path`` (``train.save_model``'s format) with the settings stored beside it.

    By default a teacher streams with its config's ``sample`` scheme, guidance and time shift; a
    ``distilled`` student with the student scheme of ``distill.teacher``, without guidance (it is
    baked in). ``scheme`` and ``cfg_scale`` override either.
    """
    model, config = load_model(path, resolve_device(device))
    if distilled:
        default_scheme = student_scheme(Scheme.parse(config["distill"]["teacher"]))
        default_cfg, shift = 1.0, config["distill"]["time_shift"]
    else:
        sample = config["sample"]
        default_scheme, default_cfg, shift = (
            Scheme.parse(sample["scheme"]),
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
    )


def parse_schedule(text: str, source: str = "schedule") -> list[tuple[int, str]]:
    """Parse a prompt schedule: one ``frame: prompt`` per line, e.g.

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


def read_schedule(path: str | Path) -> list[tuple[int, str]]:
    """The prompt schedule in the text file ``path`` (see ``parse_schedule``)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"cannot read the prompt schedule {path}: no such file")
    return parse_schedule(path.read_text(), source=str(path))


def follow_schedule(
    sampler: StreamSampler, schedule: list[tuple[int, str]], encode: Callable[[str], TextEmbedding]
) -> Iterator[tuple[torch.Tensor, str]]:
    """The sampler's emitted chunks ``[b, c, channels, h, w]``, each with the prompt in force at its
    emission, forever.

    Entry ``(frame, prompt)`` takes over once ``frame`` frames are out, i.e. at the first chunk
    boundary at or after ``frame``. Every prompt is encoded (and so validated) before the first call.
    """
    texts = [encode(prompt) for _, prompt in schedule]
    sampler.set_text(texts[0])
    current = 0
    for chunk in sampler.chunks():
        yield chunk, schedule[current][1]
        while current + 1 < len(schedule) and sampler.emitted >= schedule[current + 1][0]:
            current += 1
            sampler.set_text(texts[current])


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
    B alone, and A switched to B once ``switch_frame`` frames are out (``evaluate.switch_streams``,
    which rounds the switch up to a chunk boundary ``switch_at``). For each of the ``after`` frames
    from ``switch_at`` on, ``progress = d_A / (d_A + d_B)`` with ``d_X`` the mean squared pixel
    difference to stream X's frame: 0 while the stream is still A's, 1 once it is B's own. The switch
    takes the frames until ``progress >= threshold`` (``evaluate.frames_to_reach``; ``after`` frames
    and ``reached = False`` if it never does). The CLIP-based measure is in ``evaluate``.
    """
    # evaluate pulls in open_clip (seconds to import): load it only when measuring.
    from streamdit.evaluate import frames_to_reach, generate_videos, switch_streams

    if switch_frame < 1 or after < 1 or not 0 < threshold <= 1:
        raise ValueError(
            f"need switch_frame >= 1, after >= 1 and threshold in (0, 1]; got {switch_frame}, {after}, "
            f"{threshold}"
        )
    text_a, text_b = streamer.encode(prompt_a), streamer.encode(prompt_b)
    settings = {"cfg_scale": streamer.cfg_scale, "shift": streamer.shift, "seed": seed}
    switched, switch_at = switch_streams(
        streamer.model, streamer.scheme, text_a, text_b, switch_frame=switch_frame, after=after, **settings
    )
    total = switch_at + after
    alone = {
        name: generate_videos(streamer.model, streamer.scheme, text, total, batch_size=1, **settings)
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
