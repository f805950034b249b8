"""Video-to-video (DESIGN.md section 1, "Streaming inference and applications"): SDEdit in a stream.

Input frames at the model's decoded resolution enter the moving buffer encoded into its space (latents
of the model's autoencoder, or pixels) and ride on their noising path
``x_t = (1 - t) x_in + t e`` (each frame with its own noise ``e``) while their level is at or above
``strength``; from the last level where that holds, the model denoises them under the prompt. So
every input frame is re-generated from its own version noised to ``strength``, rounded up to the
time grid (``start_level``, at least ``t_1``: the model always makes the last step). A small
strength keeps the input, ``strength = 1`` ignores it (plain text-to-video). The input is read
lazily: the buffer holds ``N * c`` frames, so that is how far the input runs ahead of the output.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
from einops import rearrange

from streamdit.data import resize_square
from streamdit.flow import interpolate
from streamdit.sampling import StreamSampler
from streamdit.schedule import time_grid
from streamdit.video import from_uint8, iter_video


def video_frames(path: str | Path, resolution: int, resize: bool = False) -> Iterator[torch.Tensor]:
    """The frames of a video file as float32 ``[3, resolution, resolution]`` in [-1, 1], one at a time.

    With ``resize`` every frame is centre-cropped to a square and scaled; without it a frame of
    another size raises ValueError (an unreadable file does too, see ``video.iter_video``).
    """
    for frame in iter_video(path):
        h, w, _ = frame.shape
        x = from_uint8(frame[None])  # [1, c, h, w]
        if resize:
            x = resize_square(x, resolution).clamp(-1, 1)
        elif (h, w) != (resolution, resolution):
            raise ValueError(
                f"video {path} has {h}x{w} frames but the model makes {resolution}x{resolution}: "
                "resize it first, or pass resize=True (streamdit v2v --resize) to centre-crop and scale"
            )
        yield x[0]


class VideoToVideo:
    """Re-generates a video frame by frame under the sampler's prompt (which may switch at any call)."""

    def __init__(self, sampler: StreamSampler, frames: Iterable[torch.Tensor], strength: float):
        if not 0.0 < strength <= 1.0:
            raise ValueError(f"strength is the level the input is noised to, in (0, 1]; got {strength}")
        self.sampler = sampler
        self.strength = strength
        self.source = iter(frames)
        scheme = sampler.scheme
        self.slots = scheme.N * scheme.c  # buffer frames after the K references
        self.inputs: list[torch.Tensor] = []  # the input frame of each slot, oldest first
        self.read = 0  # input frames read so far
        self.length: int | None = None  # input frames in all, once the input has ended
        # The noise e of each slot: the buffer starts as pure noise, and every chunk that
        # enters later is pure noise too (taken from the buffer after each emission).
        self.noise = sampler.x[:, scheme.K :].clone()
        # The first grid level at or above strength (compared in the levels' float32, as in _hold_on_path).
        grid = time_grid(scheme.T, sampler.shift).float()[1:]
        self.start_level = float(grid[grid >= strength][0])

    def _fill_inputs(self) -> None:
        """Read input frames until every slot has one; past the end the last frame repeats."""
        while len(self.inputs) < self.slots:
            frame = next(self.source, None) if self.length is None else None
            if frame is None:
                if self.read == 0:
                    raise ValueError("the input video has no frames")
                self.length = self.read
                self.inputs.append(self.inputs[-1])
                continue
            sampler = self.sampler
            space = sampler.space
            needed = (space.image_channels, *(side * space.factor for side in sampler.frame_shape[1:]))
            if tuple(frame.shape) != needed:
                raise ValueError(
                    f"input frame {self.read} has shape {tuple(frame.shape)}; the model needs "
                    f"{needed} (channels, height, width)"
                )
            # The buffer holds the model's space: the input frame enters encoded (latents or pixels).
            with torch.no_grad():
                z = sampler.space.encode(frame[None, None].to(sampler.device))[0, 0]
            self.inputs.append(z.to(sampler.dtype))
            self.read += 1

    def _hold_on_path(self) -> None:
        """Put every slot whose level is at or above ``strength`` on its input's noising path."""
        sampler, K = self.sampler, self.sampler.scheme.K
        t = sampler.levels(sampler.offset)[:, K:]  # [b, N c]
        x_in = torch.stack(self.inputs).to(sampler.device, sampler.dtype).expand_as(self.noise)
        held = rearrange(t >= self.strength, "b f -> b f 1 1 1")
        sampler.x[:, K:] = torch.where(held, interpolate(x_in, self.noise, t), sampler.x[:, K:])

    def chunks(self) -> Iterator[torch.Tensor]:
        """Re-generated (decoded) chunks ``[b, c, 3, H, W]``: as many frames as the input has, in order
        (the last chunk is cut short where the input ends)."""
        c, out = self.sampler.scheme.c, 0
        while self.length is None or out < self.length:
            self._fill_inputs()
            self._hold_on_path()
            chunk = self.sampler.step()
            if chunk is None:
                continue
            # The emitted slots leave; the chunk of noise that just entered is their successors' e.
            self.inputs = self.inputs[c:]
            self.noise = torch.cat([self.noise[:, c:], self.sampler.x[:, -c:]], dim=1)
            keep = c if self.length is None else min(c, self.length - out)
            out += keep
            yield chunk[:, :keep]
