"""Video I/O: MP4 and GIF writing, frame sinks for streams, decoding any video to frames, tensor
conversion and PNG film strips.

Frames on disk and in numpy are uint8 `[f, h, w, 3]` (RGB); frames in torch are float32 `[f, c, h, w]`
in [-1, 1], the range the flow model is trained on.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import torch
from einops import rearrange
from PIL import Image, ImageDraw, ImageFont


def mp4_codec() -> str:
    """Name of the encoder `write_mp4` uses: H.264 through "libx264" when this PyAV build has it,
    otherwise MPEG-4 Part 2 ("mpeg4", always built into FFmpeg). Both play in browsers and notebooks."""
    return "libx264" if "libx264" in av.codec.codecs_available else "mpeg4"


def _check_frames(frames: np.ndarray) -> None:
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8:
        raise ValueError(
            f"frames must be a uint8 numpy array, got {type(frames).__name__} "
            f"of dtype {getattr(frames, 'dtype', None)}"
        )
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 1:
        raise ValueError(f"frames must have shape [f >= 1, h, w, 3], got {tuple(frames.shape)}")


def _upscale(frames: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour upscale of `[f, h, w, 3]` to `[f, h * scale, w * scale, 3]`."""
    if not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be an integer >= 1, got {scale!r}")
    return frames.repeat(scale, axis=1).repeat(scale, axis=2)


class Mp4Writer:
    """An MP4 file written frame by frame (codec: see `mp4_codec`, pixel format yuv420p), for streams
    whose length is not known in advance. The file is created by the first `write`; `close` flushes
    the encoder. Use as a context manager.

    Frames are upscaled `scale` times (nearest neighbour, since 32-px clips are tiny to look at).
    yuv420p needs even height and width, so an odd dimension is padded by one row/column that repeats
    the last one. Every frame must have the size of the first.
    """

    def __init__(self, path: str | Path, fps: int = 8, scale: int = 1):
        if not isinstance(fps, int) or fps < 1:
            raise ValueError(f"fps must be an integer >= 1, got {fps!r}")
        if not isinstance(scale, int) or scale < 1:
            raise ValueError(f"scale must be an integer >= 1, got {scale!r}")
        self.path, self.fps, self.scale = Path(path), fps, scale
        self.container = None
        self.stream = None
        self.frames = 0

    def _open(self, h: int, w: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.container = av.open(str(self.path), mode="w")
        self.stream = self.container.add_stream(mp4_codec(), rate=self.fps)
        self.stream.width, self.stream.height = w + w % 2, h + h % 2
        self.stream.pix_fmt = "yuv420p"
        if self.stream.codec_context.name == "libx264":
            self.stream.options = {"crf": "12"}
        else:
            self.stream.bit_rate = 4_000_000

    def write(self, frames: np.ndarray) -> None:
        """Append uint8 frames `[f, h, w, 3]`."""
        _check_frames(frames)
        frames = _upscale(frames, self.scale)
        _, h, w, _ = frames.shape
        if self.stream is None:
            self._open(h, w)
        elif (w + w % 2, h + h % 2) != (self.stream.width, self.stream.height):
            raise ValueError(
                f"frames of {h}x{w} pixels (after scale) do not match the stream's first frames "
                f"({self.stream.height}x{self.stream.width})"
            )
        frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        for frame in frames:
            self.container.mux(self.stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        self.frames += len(frames)

    def close(self) -> None:
        """Flush the encoder and close the file (closing before any frame was written is an error)."""
        if self.stream is None:
            raise ValueError(f"no frame was written to {self.path}")
        self.container.mux(self.stream.encode())
        self.container.close()

    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None or self.stream is not None:  # an error before the first frame: no file
            self.close()


def write_mp4(frames: np.ndarray, path: str | Path, fps: int = 8, scale: int = 1) -> Path:
    """Write uint8 frames `[f, h, w, 3]` to an MP4 file (see `Mp4Writer`). Returns the written path."""
    with Mp4Writer(path, fps, scale) as writer:
        writer.write(frames)
    return writer.path


def write_gif(frames: np.ndarray, path: str | Path, fps: int = 8, scale: int = 1) -> Path:
    """Write uint8 frames `[f, h, w, 3]` to a looping GIF (Pillow, adaptive palette per frame).

    The frame duration is rounded to whole milliseconds. Returns the written path.
    """
    _check_frames(frames)
    if not isinstance(fps, int) or fps < 1:
        raise ValueError(f"fps must be an integer >= 1, got {fps!r}")
    images = [Image.fromarray(frame) for frame in _upscale(frames, scale)]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(path, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)
    return path


def iter_video(path: str | Path) -> Iterator[np.ndarray]:
    """Decode a video file (any container/codec FFmpeg reads, GIF included) frame by frame.

    Yields uint8 `[h, w, 3]` RGB frames. A missing, unreadable or empty file raises ValueError naming it.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"cannot read video {path}: no such file")
    frames = 0
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ValueError(f"cannot read video {path}: it has no video stream")
            for frame in container.decode(video=0):
                frames += 1
                yield frame.to_ndarray(format="rgb24")
    except av.FFmpegError as err:
        raise ValueError(f"cannot read video {path}: {err}") from err
    if frames == 0:
        raise ValueError(f"cannot read video {path}: it contains no decodable frames")


def read_video(path: str | Path) -> np.ndarray:
    """Decode every frame of a video file (see `iter_video`) to uint8 `[f, h, w, 3]` RGB."""
    return np.stack(list(iter_video(path)))


def to_uint8(frames: torch.Tensor) -> np.ndarray:
    """Float frames `[f, c, h, w]` in [-1, 1] (values outside are clipped) to uint8 `[f, h, w, c]`."""
    if frames.ndim != 4:
        raise ValueError(f"frames must have shape [f, c, h, w], got {tuple(frames.shape)}")
    scaled = ((frames.detach().float().clamp(-1, 1) + 1) * 127.5).round()
    return rearrange(scaled.to(torch.uint8).cpu(), "f c h w -> f h w c").numpy()


def from_uint8(frames: np.ndarray) -> torch.Tensor:
    """uint8 frames `[f, h, w, c]` to float32 `[f, c, h, w]` in [-1, 1] (0 -> -1, 255 -> 1).

    `to_uint8(from_uint8(x))` returns `x` exactly.
    """
    if frames.ndim != 4:
        raise ValueError(f"frames must have shape [f, h, w, c], got {tuple(frames.shape)}")
    tensor = torch.from_numpy(np.ascontiguousarray(frames)).float() / 127.5 - 1
    return rearrange(tensor, "f h w c -> f c h w").contiguous()


def save_strip(
    rows: list[np.ndarray],
    path: str | Path,
    captions: list[str] | None = None,
    scale: int = 4,
) -> Path:
    """Write a PNG film strip: one row per video `[f, h, w, 3]` (uint8), frames side by side.

    Frames are upscaled `scale` times (nearest neighbour) and separated by `scale` white pixels; each
    row gets its caption above it in Pillow's default font when `captions` is given (the image widens
    to fit long captions). Rows may have different frame counts and sizes. Returns the written path.
    """
    if not rows:
        raise ValueError("rows must hold at least one video, got an empty list")
    if captions is not None and len(captions) != len(rows):
        raise ValueError(
            f"captions must have one entry per row: {len(captions)} captions for {len(rows)} rows"
        )
    for frames in rows:
        _check_frames(frames)
    gap = scale
    font = ImageFont.load_default()
    line_h = font.getbbox("Ag")[3] + 2 * gap if captions is not None else 0
    scaled = [_upscale(frames, scale) for frames in rows]
    row_widths = [f * (w + gap) + gap for f, _, w, _ in (r.shape for r in scaled)]
    text_widths = [font.getbbox(c)[2] + 2 * gap for c in captions] if captions is not None else [0]
    width = max(*row_widths, *text_widths)
    height = sum(line_h + r.shape[1] + gap for r in scaled) + gap
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    y = gap
    for i, frames in enumerate(scaled):
        if captions is not None:
            draw.text((gap, y + gap), captions[i], fill=(0, 0, 0), font=font)
            y += line_h
        for j, frame in enumerate(frames):
            canvas.paste(Image.fromarray(frame), (gap + j * (frame.shape[1] + gap), y))
        y += frames.shape[1] + gap
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path, format="PNG")
    return path


class GifSink:
    """Collects frames and writes a looping GIF on ``close`` (a GIF's palette needs every frame)."""

    def __init__(self, path: Path, fps: int, scale: int):
        self.path, self.fps, self.scale = path, fps, scale
        self.frames: list[np.ndarray] = []

    def write(self, frames: np.ndarray) -> None:
        self.frames.append(frames)

    def close(self) -> None:
        write_gif(np.concatenate(self.frames), self.path, fps=self.fps, scale=self.scale)


class RawSink:
    """Raw uint8 RGB frames, ``h * w * 3`` bytes each, to standard output (for ffplay or a pipe)."""

    def __init__(self, scale: int):
        self.scale = scale
        self.told = False

    def write(self, frames: np.ndarray) -> None:
        frames = frames.repeat(self.scale, axis=1).repeat(self.scale, axis=2)
        if not self.told:
            _, h, w, _ = frames.shape
            print(f"stdout: raw rgb24 frames of {w}x{h} pixels", file=sys.stderr)
            self.told = True
        try:
            sys.stdout.buffer.write(frames.tobytes())
            sys.stdout.buffer.flush()
        except BrokenPipeError:
            # The reader left: point stdout at /dev/null so that Python's exit flush stays quiet.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise

    def close(self) -> None:
        pass


def make_sink(out: str, fps: int, scale: int, endless: bool) -> Mp4Writer | GifSink | RawSink:
    """Where frames go: ``x.mp4`` (written as they come), ``x.gif`` (written at the end) or ``-``."""
    if out == "-":
        return RawSink(scale)
    path = Path(out)
    if path.suffix.lower() == ".mp4":
        return Mp4Writer(path, fps=fps, scale=scale)
    if path.suffix.lower() == ".gif":
        if endless:
            raise ValueError(f"an endless stream cannot go to a GIF ({out}): write .mp4 or - instead")
        return GifSink(path, fps, scale)
    raise ValueError(f"--out must end in .mp4 or .gif, or be - (raw RGB on stdout); got {out!r}")


class FrameList:
    """A ``streaming.write_stream`` sink that keeps the uint8 frames ``[f, h, w, 3]`` it is given."""

    def __init__(self) -> None:
        self.chunks: list[np.ndarray] = []

    def write(self, frames: np.ndarray) -> None:
        self.chunks.append(frames)

    def close(self) -> None:
        pass


def reference_strip(
    path: str | Path, prompts: list[str], real: list[np.ndarray | None], videos: dict[str, np.ndarray]
) -> Path:
    """A strip with, per prompt, its real stream (when there is one) above one row per labelled video:
    ``videos`` maps a label to uint8 frames ``[n, f, h, w, 3]`` (one stream per prompt)."""
    rows, captions = [], []
    for i, prompt in enumerate(prompts):
        if real[i] is not None:
            rows.append(real[i])
            captions.append(f"real: {prompt}")
        for label, video in videos.items():
            rows.append(video[i])
            captions.append(f"{label}: {prompt}")
    return save_strip(rows, path, captions=captions, scale=3)
