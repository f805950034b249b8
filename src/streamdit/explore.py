"""Trying a trained model by hand in JupyterLab (``notebooks/explore.ipynb``).

Thin helpers over the streaming front-end for the notebook: stream a prompt or a prompt timeline with
any scheme and guidance (``streaming.follow_timeline``, timed by ``streaming.write_stream``), turn the
frames into an inline HTML5 video, and an ipywidgets panel that does both at the press of a button.

    streamer = load_streamer("models/streamdit.pt")
    frames, stats = generate(streamer, "0: a red circle moving left\\n24: a blue square bouncing", 48)
    HTML(video_html(frames, fps=8))
"""

from __future__ import annotations

import base64
import dataclasses
import html
import math
import re
import tempfile
from pathlib import Path

import numpy as np

from streamdit.config import Config
from streamdit.schedule import Scheme
from streamdit.streaming import Streamer, follow_timeline, parse_timeline, summary_line, write_stream
from streamdit.text import check_caption
from streamdit.video import FrameList, write_gif, write_mp4

# A line "frame: prompt" (e.g. "0: a red circle") marks the text as a prompt timeline, not one prompt.
TIMELINE_LINE = re.compile(r"^\s*\d+\s*:")


def scheme_choices(streamer: Streamer, cfg: Config) -> list[tuple[str, str]]:
    """Dropdown options ``(label, "K,N,c,s")``: the model's own scheme, then the training and
    evaluation schemes of ``cfg`` that fit its buffer, each once. Labels give chunk size, model calls
    per frame and the calls before the first frame, the latency side of each scheme's trade-off."""
    candidates = [streamer.scheme, *cfg.train.parsed_schemes, *cfg.evaluate.parsed_schemes]
    schemes = list(dict.fromkeys(s for s in candidates if s.B == streamer.model.cfg.frames))
    return [
        (
            f"{s.spec}: c={s.c}, {s.calls_per_frame:g} calls/frame, first frame after {s.T}",
            s.spec,
        )
        for s in schemes
    ]


def read_prompts(text: str) -> list[tuple[int, str]]:
    """A prompt timeline ``[(frame, prompt), ...]`` from ``text``: ``streaming.parse_timeline``'s
    "frame: prompt" lines when its first line looks like one, else the whole text as one prompt from
    frame 0. An empty or blank text raises ValueError."""
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if lines and TIMELINE_LINE.match(lines[0]):
        return parse_timeline(text)
    return [(0, check_caption(text.strip()))]


def generate(
    streamer: Streamer,
    text: str,
    frames: int,
    *,
    scheme: str | Scheme | None = None,
    cfg_scale: float | None = None,
    seed: int | None = None,
) -> tuple[np.ndarray, dict]:
    """Stream ``frames`` frames under ``text``, a prompt or a timeline of "frame: prompt" lines
    (``read_prompts``), with ``scheme`` ("K,N,c,s"), guidance ``cfg_scale`` and noise ``seed``
    (None: the streamer's scheme and guidance, the model's ``sample.seed``).

    Returns uint8 frames ``[frames, h, w, 3]`` and stats: ``cli.write_stream``'s timing (seconds,
    time to first frame, steady frames/s and per-frame latency once two chunks are out), the scheme,
    guidance and seed, model calls (start-up included), NFE per frame (``nfe_per_frame``: the steady
    stream; ``nfe_per_frame_run``: this run, start-up included), ``switches``, the ``[frame, prompt]``
    pairs where a prompt of the timeline took over (a chunk boundary), and a one-line ``summary``.
    A stream stopped with Ctrl-C / the stop button keeps the frames it made.
    """
    if not isinstance(frames, int) or frames < 1:
        raise ValueError(f"frames must be an integer >= 1, got {frames!r}")
    timeline = read_prompts(text)
    if isinstance(scheme, str):
        scheme = Scheme.parse(scheme)
    # Streamer validates the scheme against the model's buffer and the guidance scale.
    streamer = dataclasses.replace(
        streamer,
        scheme=streamer.scheme if scheme is None else scheme,
        cfg_scale=streamer.cfg_scale if cfg_scale is None else float(cfg_scale),
    )
    seed = streamer.config["sample"]["seed"] if seed is None else seed
    sampler = streamer.sampler(timeline[0][1], seed)
    labels: list[str] = []  # the prompt in force at each chunk's emission

    def labelled_chunks():
        for chunk, prompt in follow_timeline(sampler, timeline, streamer.encode):
            labels.append(prompt)
            yield chunk, prompt

    sink = FrameList()
    stats = write_stream(labelled_chunks(), sink, frames, progress=False)
    if not sink.chunks:
        raise KeyboardInterrupt("the stream was stopped before its first chunk")
    c = streamer.scheme.c
    switches = [[i * c, prompt] for i, prompt in enumerate(labels) if i > 0 and prompt != labels[i - 1]]
    nfe = sampler.calls * sampler.nfe_per_call
    stats.update(
        scheme=streamer.scheme.spec,
        cfg_scale=streamer.cfg_scale,
        seed=seed,
        model_calls=sampler.calls,
        nfe_per_frame=streamer.nfe_per_frame,
        nfe_per_frame_run=nfe / stats["frames"],
        switches=switches,
    )
    stats["summary"] = (
        f"{summary_line(stats, streamer)}; {sampler.calls} model calls, {stats['nfe_per_frame']:g} NFE per "
        f"frame steady ({stats['nfe_per_frame_run']:.2f} with the start-up)"
        + "".join(f"; frame {frame}: {prompt!r}" for frame, prompt in stats["switches"])
    )
    return np.concatenate(sink.chunks), stats


def video_html(
    frames: np.ndarray, fps: int = 8, *, size: int = 256, caption: str = "", fmt: str = "mp4"
) -> str:
    """An HTML ``<figure>`` playing uint8 frames ``[f, h, w, 3]`` inline, the file embedded as base64:
    a looping, muted ``<video>`` (``fmt="mp4"``) or an animated ``<img>`` (``fmt="gif"``, for viewers
    without H.264). Frames are upscaled (nearest neighbour) to at least ``size`` pixels high."""
    if fmt not in ("mp4", "gif"):
        raise ValueError(f"fmt must be 'mp4' or 'gif', got {fmt!r}")
    if not isinstance(frames, np.ndarray) or frames.ndim != 4:
        raise ValueError(f"frames must be a uint8 array [f, h, w, 3], got {getattr(frames, 'shape', frames)}")
    scale = max(1, math.ceil(size / frames.shape[1]))
    write = write_mp4 if fmt == "mp4" else write_gif
    with tempfile.TemporaryDirectory() as tmp:
        data = base64.b64encode(write(frames, Path(tmp) / f"v.{fmt}", fps=fps, scale=scale).read_bytes())
    src = f"data:{'video/mp4' if fmt == 'mp4' else 'image/gif'};base64,{data.decode()}"
    width = frames.shape[2] * scale
    player = (
        f'<video src="{src}" width="{width}" controls autoplay loop muted playsinline></video>'
        if fmt == "mp4"
        else f'<img src="{src}" width="{width}" style="image-rendering: pixelated">'
    )
    label = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
    return f'<figure style="display: inline-block; margin: 4px">{player}{label}</figure>'


def side_by_side(figures: list[str]) -> str:
    """The HTML of ``video_html`` figures in one row (wrapping when the notebook is narrow)."""
    return f'<div style="display: flex; flex-wrap: wrap; gap: 8px">{"".join(figures)}</div>'


class Explorer:
    """An ipywidgets panel over one streamer: prompt, timeline, scheme, guidance, frames and seed,
    a Run button, and an output that shows the video and the run's summary (or the input's error)."""

    def __init__(
        self,
        streamer: Streamer,
        schemes: list[tuple[str, str]],
        *,
        prompt: str,
        timeline: str = "",
        frames: int = 48,
        seed: int | None = None,
        fps: int = 8,
    ):
        import ipywidgets as widgets  # only the panel needs it

        self.streamer, self.fps = streamer, fps
        wide = widgets.Layout(width="640px")
        self.prompt = widgets.Text(value=prompt, description="prompt", layout=wide)
        self.timeline = widgets.Textarea(
            value=timeline,
            description="timeline",
            placeholder="frame: prompt lines, e.g.\n0: a red circle moving left\n24: a blue square bouncing\n"
            "(empty: the prompt above)",
            layout=widgets.Layout(width="640px", height="90px"),
        )
        self.scheme = widgets.Dropdown(
            options=schemes, value=streamer.scheme.spec, description="scheme", layout=wide
        )
        self.cfg_scale = widgets.FloatSlider(
            value=streamer.cfg_scale, min=0.0, max=8.0, step=0.5, description="guidance"
        )
        self.frames = widgets.IntSlider(value=frames, min=1, max=max(256, frames), description="frames")
        self.seed = widgets.IntText(
            value=streamer.config["sample"]["seed"] if seed is None else seed, description="seed"
        )
        self.button = widgets.Button(description="Run", button_style="primary", icon="play")
        self.output = widgets.Output()
        self.button.on_click(lambda _: self.run())
        self.widget = widgets.VBox(
            [
                self.prompt,
                self.timeline,
                self.scheme,
                widgets.HBox([self.cfg_scale, self.frames, self.seed]),
                self.button,
                self.output,
            ]
        )

    def show(self, *items) -> None:
        """Replace what the output shows with ``items`` (display objects)."""
        self.output.outputs = ()
        for item in items:
            self.output.append_display_data(item)

    def run(self) -> dict | None:
        """Stream with the panel's settings and show the video and its summary; bad input shows its
        error instead. Returns the run's stats (None after an error)."""
        from IPython.display import HTML

        text = self.timeline.value if self.timeline.value.strip() else self.prompt.value
        self.button.disabled = True
        self.show(HTML("<i>streaming...</i>"))
        try:
            frames, stats = generate(
                self.streamer,
                text,
                self.frames.value,
                scheme=self.scheme.value,
                cfg_scale=self.cfg_scale.value,
                seed=self.seed.value,
            )
        except ValueError as err:
            self.show(HTML(f'<pre style="color: #b00">{html.escape(str(err))}</pre>'))
            return None
        finally:
            self.button.disabled = False
        self.show(HTML(video_html(frames, self.fps)), HTML(f"<pre>{html.escape(stats['summary'])}</pre>"))
        return stats
