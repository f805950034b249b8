import pytest
import torch

from streamdit.latency import measure_stream_latency, time_stream


class Clock:
    """A fake clock that a fake model call advances."""

    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class FakeStream:
    """Counts like ``StreamSampler``: a first chunk after T calls, then c frames every s calls.

    Each call advances the fake clock by ``dt`` seconds."""

    def __init__(self, clock, T=6, s=2, c=3, dt=0.5, nfe_per_call=2):
        self.clock, self.T, self.s, self.c, self.dt = clock, T, s, c, dt
        self.nfe_per_call = nfe_per_call
        self.calls = 0
        self.emitted = 0

    def step(self):
        self.clock.now += self.dt
        self.calls += 1
        if self.calls >= self.T and (self.calls - self.T) % self.s == 0:
            self.emitted += self.c
            return torch.zeros(1, self.c, 3, 2, 2)
        return None


def test_run_stream_records_first_chunk_and_gaps():
    clock = Clock()
    first, gaps, sizes, marks = time_stream(FakeStream(clock), frames=10, clock=clock, sync=lambda: None)
    # 6 calls of 0.5 s to the first chunk, then a chunk of 3 frames every 2 calls (1 s); 12 >= 10 frames
    assert first == pytest.approx(3.0)
    assert gaps == pytest.approx([1.0, 1.0, 1.0]) and sizes == [3, 3, 3]
    assert marks == {"calls_first": 6, "emitted_first": 3, "calls_last": 12, "emitted_last": 12}


def test_latency_bookkeeping_on_a_fake_stream():
    clock = Clock()
    made = []

    def make():
        made.append(FakeStream(clock))
        return made[-1]

    result = measure_stream_latency(make, frames=12, warmup_frames=3, repeats=2, device="cpu", clock=clock)
    assert len(made) == 3  # one warm-up stream, two timed ones
    assert made[0].emitted == 3  # the warm-up stops at its first chunk
    assert result["ttff_s"]["median"] == pytest.approx(3.0)
    assert result["chunk_latency_s"]["median"] == pytest.approx(1.0)
    assert result["frame_latency_s"]["median"] == pytest.approx(1.0 / 3)
    assert result["frames_per_second"] == pytest.approx(3.0)
    # steady state: 2 calls per 3 frames, 2 forward passes per call
    assert result["calls_per_frame"] == pytest.approx(2 / 3)
    assert result["nfe_per_frame"] == pytest.approx(4 / 3)
    assert result["startup_calls"] == 6
    assert result["chunk_gaps_s"] == pytest.approx([1.0] * 6)
    assert result["frame_gaps_s"] == pytest.approx([1 / 3] * 6)


def test_latency_p95_sees_a_slow_chunk():
    clock = Clock()
    streams = iter([FakeStream(clock, dt=0.5), FakeStream(clock, dt=2.0)])
    result = measure_stream_latency(
        lambda: next(streams), frames=9, warmup_frames=0, repeats=2, device="cpu", clock=clock
    )
    # gaps: two of 1 s, two of 4 s -> median 2.5, p95 = 4; fps = 12 frames / 10 s
    assert result["chunk_latency_s"]["median"] == pytest.approx(2.5)
    assert result["chunk_latency_s"]["p95"] == pytest.approx(4.0)
    assert result["frames_per_second"] == pytest.approx(1.2)
    assert result["ttff_s"]["p95"] == pytest.approx(3.0 + 0.95 * 9.0)


def test_latency_rejects_too_few_frames():
    with pytest.raises(ValueError, match="frames >= 2"):
        measure_stream_latency(lambda: None, frames=1, warmup_frames=0, repeats=1, device="cpu")
    clock = Clock()
    with pytest.raises(ValueError, match="single chunk"):
        measure_stream_latency(lambda: FakeStream(clock), 3, 0, 1, "cpu", clock=clock)
