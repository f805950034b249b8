"""Streaming latency (DESIGN.md section 2, "Latency"): time to first frame, per-frame latency,
frames per second and NFE per frame of a ``StreamSampler``.

A chunk's ``c`` frames leave the buffer together, so the gap between consecutive emissions is
reported per chunk and amortised per frame (gap / c). Times are wall-clock seconds from an
injectable ``clock``; on CUDA every emission is synchronised before the clock is read.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

import numpy as np
import torch


class Steppable(Protocol):
    """What latency needs of a sampler (``StreamSampler`` has all of it)."""

    calls: int
    emitted: int
    nfe_per_call: int

    def step(self) -> torch.Tensor | None: ...


def spread(values: list[float] | np.ndarray) -> dict[str, float]:
    """Median and 95th percentile of ``values``: how every latency figure is summarised."""
    values = np.asarray(values, dtype=np.float64)
    return {"median": float(np.median(values)), "p95": float(np.percentile(values, 95))}


def synchronizer(device: str | torch.device) -> Callable[[], None]:
    """A function that waits for queued work on ``device`` (a no-op on the CPU)."""
    device = torch.device(device)
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def time_stream(
    sampler: Steppable, frames: int, clock: Callable[[], float], sync: Callable[[], None]
) -> tuple[float, list[float], list[int], dict[str, int]]:
    """Step ``sampler`` until it has emitted at least ``frames`` frames.

    Returns the seconds to the first emitted chunk, the gaps (s) between consecutive emissions,
    the frames of each later chunk, and the sampler's counters at the first and the last emission
    (``calls_first``, ``emitted_first``, ``calls_last``, ``emitted_last``).
    """
    start = clock()
    times: list[float] = []
    sizes: list[int] = []
    marks: dict[str, int] = {}
    while sampler.emitted < frames:
        before = sampler.emitted
        chunk = sampler.step()
        if chunk is None:
            continue
        sync()
        times.append(clock())
        sizes.append(sampler.emitted - before)
        if len(times) == 1:
            marks.update(calls_first=sampler.calls, emitted_first=sampler.emitted)
    marks.update(calls_last=sampler.calls, emitted_last=sampler.emitted)
    gaps = list(np.diff(times))
    return times[0] - start, [float(g) for g in gaps], sizes[1:], marks


def measure_stream_latency(
    make_sampler: Callable[[], Steppable],
    frames: int,
    warmup_frames: int,
    repeats: int,
    device: str | torch.device,
    clock: Callable[[], float] = time.perf_counter,
) -> dict:
    """Latency of fresh streams from ``make_sampler`` over ``repeats`` runs of ``frames`` frames each.

    A first stream of ``warmup_frames`` frames is run and discarded (allocator, kernels, caches).
    Each timed run starts its clock once the sampler exists. Returns (seconds, medians and 95th
    percentiles over all repeats):
    - ``ttff_s``: time to first frame, from the all-noise buffer to the first emitted chunk;
    - ``chunk_latency_s`` / ``frame_latency_s``: gap between consecutive emissions, per chunk and
      amortised per frame; ``frames_per_second``: steady-state frames over steady-state time;
    - ``calls_per_frame`` and ``nfe_per_frame`` in the steady stream (start-up excluded), and
      ``startup_calls`` (model calls before the first chunk);
    - ``chunk_gaps_s`` and ``frame_gaps_s``: every measured gap, whole and per frame, for plots.
    """
    if frames < 2 or repeats < 1 or warmup_frames < 0:
        raise ValueError(
            f"need frames >= 2 (two emissions), repeats >= 1 and warmup_frames >= 0; got {frames}, "
            f"{repeats}, {warmup_frames}"
        )
    sync = synchronizer(device)
    if warmup_frames > 0:
        time_stream(make_sampler(), warmup_frames, clock, sync)
    ttff, gaps, sizes, calls, emitted, startup = [], [], [], 0, 0, []
    nfe_per_call = 1
    for _ in range(repeats):
        sampler = make_sampler()
        first, run_gaps, run_sizes, marks = time_stream(sampler, frames, clock, sync)
        if not run_gaps:
            raise ValueError(f"{frames} frames gave a single chunk: raise frames to time chunk gaps")
        ttff.append(first)
        gaps += run_gaps
        sizes += run_sizes
        calls += marks["calls_last"] - marks["calls_first"]
        emitted += marks["emitted_last"] - marks["emitted_first"]
        startup.append(marks["calls_first"])
        nfe_per_call = sampler.nfe_per_call
    gaps_arr = np.array(gaps)
    per_frame = gaps_arr / np.array(sizes)
    return {
        "device": str(device),
        "repeats": repeats,
        "frames": frames,
        "ttff_s": spread(ttff),
        "chunk_latency_s": spread(gaps_arr),
        "frame_latency_s": spread(per_frame),
        "frames_per_second": float(emitted / gaps_arr.sum()),
        "calls_per_frame": calls / emitted,
        "nfe_per_frame": calls * nfe_per_call / emitted,
        "startup_calls": int(np.median(startup)),
        "chunk_gaps_s": [round(g, 6) for g in gaps],
        "frame_gaps_s": [round(float(g), 6) for g in per_frame],
    }
