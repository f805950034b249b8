"""An independent check of the moving buffer's schedule (DESIGN.md section 1).

``reference_stream`` derives, frame by frame and from DESIGN.md's definition alone, the level of
every frame at every model call of a stream and which frames leave at which call; the first test
compares it with what ``StreamSampler`` hands the model. The coverage tests check that every level
pattern the sampler produces for the schemes and time shifts of ``params.yaml`` lies inside what
training draws ("Mixed training": "every level pattern the sampler produces must lie inside the
training distribution"), chunk-causal streams (``causal.CausalSampler``) included.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml
from test_sampling import FakeModel, text

from streamdit.causal import CausalSampler
from streamdit.config import TrainConfig, load_config
from streamdit.fifo import FifoSampler
from streamdit.handoff import HandoffSampler
from streamdit.methods import method_config
from streamdit.sampling import StreamSampler
from streamdit.schedule import (
    FifoScheme,
    Scheme,
    buffer_levels,
    offset_from_unit,
    parse_scheme,
    sample_training_levels,
    segment_levels,
)

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


def shifted(u: float, shift: float) -> float:
    """The SD3 time shift of a grid point u = i / T in [0, 1]: t = shift u / (1 + (shift - 1) u)."""
    return shift * u / (1 + (shift - 1) * u)


@dataclass
class Slot:
    """One frame of the reference buffer."""

    frame: int | None  # stream frame number (0 is emitted first); None: a reference frame of pure noise
    index: int  # grid index i; the frame's level is t(i / T)
    wait: int = 0  # start-up calls this frame's chunk still waits at t = 1 before it moves


@dataclass
class Call:
    """What the reference says about one model call."""

    levels: list[float]  # the level of every frame of the buffer that the model sees, [B]
    frames: list[int | None]  # which frame sits in each buffer slot, [B]
    emitted: list[int]  # the frames that leave after this call (empty: none)


def reference_stream(scheme: tuple[int, int, int, int], shift: float, calls: int) -> list[Call]:
    """The first ``calls`` model calls of a stream with scheme ``(K, N, c, s)``, from DESIGN.md only.

    Steady stream: ``B = K + N c`` frames; chunk j (0 next to the output end) holds c frames; each
    call moves every chunk one grid step towards t = 0; the oldest chunk leaves when it reaches
    index 0 (after s calls in the oldest position), the other chunks move one position towards the
    output end and a chunk of pure noise (index T = N s) enters at the input end. So the buffer right
    after an emission has chunk j at index (j + 1) s.

    Start-up (schedule.py's docstring): the stream starts from a buffer of pure noise and emits its
    first chunk after T calls, in the steady pattern from then on. For chunk j to sit at j s when that
    happens, having moved one step per call once it moves, it must wait j s calls at index T first.

    Reference frames: the K frames at the output end are the last K emitted frames at level 0 once K
    frames have been emitted; before that they are pure noise at level 1 (no clean context exists).
    """
    K, N, c, s = scheme
    T = N * s
    buffer = [Slot(None, T) for _ in range(K)]
    buffer += [Slot(j * c + i, T, wait=j * s) for j in range(N) for i in range(c)]
    entering, emitted, out = N * c, [], []
    for _ in range(calls):
        levels = [shifted(slot.index / T, shift) for slot in buffer]
        frames = [slot.frame for slot in buffer]
        for slot in buffer[K:]:
            if slot.wait > 0:
                slot.wait -= 1
            else:
                slot.index -= 1
        leaving = []
        if buffer[K].index == 0:
            assert all(slot.index == 0 for slot in buffer[K : K + c])  # a chunk shares one level
            leaving = [slot.frame for slot in buffer[K : K + c]]
            emitted += leaving
            if len(emitted) >= K:
                refs = [Slot(frame, 0) for frame in emitted[len(emitted) - K :]]
            else:
                refs = [Slot(None, T) for _ in range(K)]
            buffer = refs + buffer[K + c :] + [Slot(entering + i, T) for i in range(c)]
            entering += c
        out.append(Call(levels, frames, leaving))
    return out


class Recorder:
    """A velocity rule v = 1 that records the buffer and levels of every model call."""

    def __init__(self):
        self.x, self.levels = [], []

    def __call__(self, x, levels, pooled):
        self.x.append(x[0].clone())
        self.levels.append(levels[0].double().clone())
        return torch.ones_like(x)


def record_stream(
    scheme: Scheme, shift: float, calls: int, context: str = "clean"
) -> tuple[Recorder, list[torch.Tensor | None]]:
    """Run ``calls`` calls of a real ``StreamSampler`` (v = 1, no guidance): the recorder and what each
    call emitted (``[c, 1, 2, 2]`` or None)."""
    recorder = Recorder()
    model = FakeModel(recorder, frames=scheme.B)
    generator = torch.Generator().manual_seed(0)
    sampler = StreamSampler(model, scheme, text(), shift=shift, generator=generator, context=context)
    emitted = []
    for _ in range(calls):
        chunk = sampler.step()
        emitted.append(None if chunk is None else chunk[0])
    return recorder, emitted


def calls_to_cover(scheme: Scheme) -> int:
    """Calls enough for start-up, the reference frames turning clean and a few steady cycles."""
    return scheme.T + (math.ceil(scheme.K / scheme.c) + 3) * scheme.s


@pytest.mark.parametrize("shift", [1.0, 3.0])
@pytest.mark.parametrize(
    "scheme",
    [
        (0, 1, 8, 16),  # uniform (params.yaml)
        (0, 1, 8, 3),  # uniform, short
        (0, 8, 1, 1),  # diagonal
        (0, 8, 1, 2),  # c = 1, s = 2 (params.yaml)
        (0, 4, 2, 4),  # params.yaml
        (0, 2, 4, 8),  # params.yaml, the sample scheme
        (4, 1, 4, 16),  # K = c (params.yaml's uniform extension)
        (3, 2, 2, 3),  # K > c: the references stay noise for two emissions
        (1, 3, 2, 2),  # K < c
    ],
    ids=lambda v: "-".join(map(str, v)) if isinstance(v, tuple) else None,
)
def test_sampler_levels_and_emissions_match_the_reference(scheme, shift):
    """Levels the model sees, emission calls and the frame in every slot agree with the reference.

    With v = 1 an Euler step from t to t' adds t' - t, so a frame that entered as noise e sits at
    x = e + t - 1 at every call: from the recorded buffers this checks that each slot holds the
    reference's frame and that the integrator moved it exactly between the levels the model saw.
    """
    calls = calls_to_cover(Scheme(*scheme))
    expected = reference_stream(scheme, shift, calls)
    recorder, emitted = record_stream(Scheme(*scheme), shift, calls)

    assert len(recorder.levels) == calls  # one forward pass per call without guidance
    noise = {}  # frame number -> the noise it entered with
    for n, (ref, x, levels, chunk) in enumerate(
        zip(expected, recorder.x, recorder.levels, emitted, strict=True)
    ):
        want = torch.tensor(ref.levels, dtype=torch.float64)
        assert torch.allclose(levels, want, atol=1e-6), f"call {n}: levels {levels.tolist()} != {ref.levels}"
        for slot, frame in enumerate(ref.frames):
            if frame is None:  # a noise reference: fresh noise, only its level (checked above) is pinned
                continue
            e = noise.setdefault(frame, x[slot] + 1 - levels[slot].float())
            assert torch.allclose(x[slot], e + levels[slot].float() - 1, atol=1e-5), (
                f"call {n}, slot {slot}: not frame {frame}"
            )
        assert (chunk is not None) == bool(ref.emitted), f"call {n}: emitted {chunk is not None}"
        if chunk is not None:
            clean = torch.stack([noise[frame] - 1 for frame in ref.emitted])
            assert torch.allclose(chunk, clean, atol=1e-5), f"call {n}: not frames {ref.emitted}"
    # the stream emits frames 0, 1, 2, ... in order; the first chunk after T calls, then one per s
    K, N, c, s = scheme
    out = [frame for ref in expected for frame in ref.emitted]
    assert out == list(range(len(out))) and len(out) >= 4 * c
    at = [n for n, ref in enumerate(expected) if ref.emitted]
    gaps = {later - n for n, later in zip(at[:-1], at[1:], strict=True)}
    assert at[0] + 1 == N * s and gaps == {s}


def test_reference_start_up_by_hand():
    """The reference on a scheme small enough to write out: K = 1, N = 2, c = 1, s = 2 (T = 4)."""
    stream = reference_stream((1, 2, 1, 2), 1.0, 9)
    assert [[round(t * 4) for t in call.levels] for call in stream] == [
        [4, 4, 4],  # pure noise; chunk 1 waits s = 2 calls
        [4, 3, 4],
        [4, 2, 4],
        [4, 1, 3],  # frame 0 leaves after this call, the T-th: K = 1 frame exists, the reference is clean
        [0, 2, 4],
        [0, 1, 3],  # frame 1 leaves
        [0, 2, 4],
        [0, 1, 3],
        [0, 2, 4],
    ]
    assert [call.emitted for call in stream] == [[], [], [], [0], [], [1], [], [2], []]
    assert [call.frames for call in stream][3:5] == [[None, 0, 1], [0, 1, 2]]


@dataclass(frozen=True)
class TrainingDraw:
    """What a model's training draws levels from (``schedule.sample_training_levels``' arguments)."""

    schemes: tuple[Scheme, ...]
    probs: tuple[float, ...]
    startup_prob: float
    shift: float
    independent: bool = False  # level_mode independent: each frame's level on its own
    segments: bool = False  # level_mode segments: a steady sample's chunks each inside their own segment


def drawable(levels: torch.Tensor, draw: TrainingDraw, prefix: bool = False) -> bool:
    """Whether ``levels [B]`` lies in the support (its closure, to 1e-5) of the training draw; with
    ``prefix`` (a chunk-causal model, whose first frames never see later ones), ``levels [f <= B]``
    need only be the first f levels of a drawable buffer.

    Mixed training draws a scheme (probability > 0), a start flag (started with probability
    1 - startup_prob, start-up with startup_prob) and an offset o in that flag's range
    ``offset_from_unit(u)``, u in [0, 1); the levels are ``buffer_levels(scheme, o, shift, started)``.
    A pattern is drawable when some scheme, flag and o in the closed range give it, for the whole
    buffer at once (not only chunk by chunk). For o, inverting the time shift gives every frame's grid
    index i, and a non-reference frame of chunk j with (j + 1) s - i inside [0, T] fixes
    o = (j + 1) s - i; the range ends cover frames that all sit clamped at 0 or T. Independent
    levels (Diffusion Forcing) draw every frame anywhere in [0, 1].
    """
    t = levels.double()
    if draw.independent:
        return bool(((t >= -1e-5) & (t <= 1 + 1e-5)).all())
    for scheme, prob in zip(draw.schemes, draw.probs, strict=True):
        f = len(t)
        if prob == 0 or (scheme.B != f if not prefix else scheme.B < f):
            continue
        index = t / (draw.shift - (draw.shift - 1) * t) * scheme.T
        if f == scheme.B and draw.segments and draw.startup_prob < 1 and in_segments(index, scheme):
            return True
        chunk = (torch.arange(f) - scheme.K).div(scheme.c, rounding_mode="floor")
        implied = ((chunk + 1) * scheme.s - index)[scheme.K :]
        for started, p in ((True, 1 - draw.startup_prob), (False, draw.startup_prob)):
            if p == 0:
                continue
            unit = torch.tensor([0.0, 1.0], dtype=torch.float64)
            lo, hi = offset_from_unit(scheme, unit, torch.tensor(started))
            offsets = torch.cat([implied, unit * (hi - lo) + lo])
            offsets = offsets[(offsets >= lo - 1e-9) & (offsets <= hi + 1e-9)]
            candidates = buffer_levels(scheme, offsets, draw.shift, started)[..., :f]  # [offsets, f]
            if ((candidates - t).abs() <= 1e-5).all(dim=-1).any():
                return True
    return False


def in_segments(index: torch.Tensor, scheme: Scheme) -> bool:
    """Whether grid indices ``[B]`` are a steady segments draw: reference frames at 0, every chunk's
    frames at one index, chunk j's inside its segment [j s, (j + 1) s] (to 1e-5)."""
    if scheme.K and not (index[: scheme.K].abs() <= 1e-5).all():
        return False
    chunks = index[scheme.K :].view(scheme.N, scheme.c)
    j = torch.arange(scheme.N, dtype=torch.float64)
    one_level = ((chunks - chunks[:, :1]).abs() <= 1e-5).all()
    inside = (chunks[:, 0] >= j * scheme.s - 1e-5) & (chunks[:, 0] <= (j + 1) * scheme.s + 1e-5)
    return bool(one_level and inside.all())


@dataclass(frozen=True)
class Usage:
    """A stream the study runs: a model (by its training draw) sampled with a scheme and time shift."""

    where: str
    draw: TrainingDraw
    scheme: Scheme | FifoScheme
    shift: float
    training_free: bool = False  # a baseline that samples a model with a scheme it was not trained on
    context: str = "clean"  # what the reference frames hold (schedule.CONTEXTS)
    causal: int = 0  # the model's causal chunk: streamed by causal.CausalSampler
    refine: int = 0  # > 0: started by a starter on a grid this many times finer (handoff.HandoffSampler)


# Training-free baselines: a model sampled with a scheme it was never trained on, by definition of the
# method (FIFO-Diffusion: the uniform model denoised diagonally). Their patterns lie outside training.
# The re-noised extension (`reuse`) is training free too, but hands the uniform model uniform levels only.
TRAINING_FREE = {"fifo"}


def train_draw(tc: TrainConfig) -> TrainingDraw:
    """The levels ``train.py`` draws for a ``train`` section."""
    return TrainingDraw(
        tuple(tc.parsed_schemes),
        tuple(tc.scheme_probs),
        tc.startup_prob,
        tc.time_shift,
        tc.level_mode == "independent",
        tc.level_mode == "segments",
    )


@pytest.fixture(scope="module")
def usages(tmp_path_factory) -> list[Usage]:
    """Every (model, scheme, shift) that the stages of ``params.yaml`` stream, over all profiles.

    The main model: ``sample`` (sample.scheme at sample.time_shift), ``evaluate`` (evaluate.schemes at
    sample.time_shift) and the distillation teacher (distill.teacher at distill.time_shift, in
    ``sample_teacher_vs_student``). The student is trained by distillation (its scheme, distill's
    startup_prob and time_shift) and streams at distill.time_shift (teacher vs student) and
    sample.time_shift (its evaluation), each stream started from the teacher's clip on the teacher's
    grid (``stages.teacher_streamer``). Each method of a profile's ``methods.run`` streams its
    scheme at its config's sample.time_shift, with the model ``method_config`` trains for it.
    """
    tmp_path = tmp_path_factory.mktemp("params")
    raw = yaml.safe_load(PARAMS.read_text())
    out = []
    for profile in raw["profiles"]:
        cfg = load_config(PARAMS, profile)
        main, dist = train_draw(cfg.train), cfg.distill
        out += [Usage(f"{profile} sample", main, cfg.sample.parsed_scheme, cfg.sample.time_shift)]
        out += [
            Usage(f"{profile} evaluate", main, scheme, cfg.sample.time_shift)
            for scheme in cfg.evaluate.parsed_schemes
        ]
        out += [Usage(f"{profile} distill teacher", main, dist.teacher_scheme, dist.time_shift)]
        student = dist.teacher_scheme.distilled()
        by_distill = TrainingDraw((student,), (1.0,), dist.startup_prob, dist.time_shift)
        refine = dist.teacher_scheme.T // student.T
        out += [
            Usage(f"{profile} student", by_distill, student, dist.time_shift, refine=refine),
            Usage(f"{profile} student evaluate", by_distill, student, cfg.sample.time_shift, refine=refine),
        ]
        # methods_run must equal the profile's methods.run (resolve_methods): a copy per profile.
        run = (raw["profiles"][profile].get("methods") or {}).get("run", raw["methods"]["run"])
        params = tmp_path / f"params_{profile}.yaml"
        params.write_text(yaml.safe_dump({**raw, "methods_run": run}, sort_keys=False))
        for name in run:
            mcfg, spec = method_config(params, profile, name)
            scheme, free = parse_scheme(spec.scheme), name in TRAINING_FREE
            out += [
                Usage(
                    f"{profile} method {name}",
                    train_draw(mcfg.train),
                    scheme,
                    mcfg.sample.time_shift,
                    free,
                    spec.context,
                    mcfg.model.causal_chunk,
                )  # fmt: skip
            ]
    return out


@functools.cache
def patterns(
    scheme: Scheme | FifoScheme, shift: float, context: str = "clean", causal: int = 0, refine: int = 0
) -> list[tuple[int, torch.Tensor]]:
    """The distinct level patterns ``[B]`` a real stream hands the model, with the first call of each
    (a chunk-causal stream: without its cache, so every call shows the whole buffer it stands for; a
    stream started by another model, ``refine`` > 0: the stream's model's calls only)."""
    if refine:
        recorder = Recorder()
        starter = FakeModel(lambda x, levels, pooled: torch.ones_like(x), frames=scheme.B)
        sampler = HandoffSampler(FakeModel(recorder, frames=scheme.B), scheme, text(), starter=starter,
                                 starter_cfg_scale=1.0, refine=refine, shift=shift,
                                 generator=torch.Generator().manual_seed(0))  # fmt: skip
        for _ in range(calls_to_cover(scheme)):
            sampler.step()
    elif causal:
        recorder = Recorder()
        model = FakeModel(recorder, frames=scheme.B)
        model.cfg.causal_chunk = causal
        sampler = CausalSampler(model, scheme, text(), shift=shift, cache=False)
        for _ in range(scheme.T * (scheme.B // scheme.c + 1)):
            sampler.step()
    elif isinstance(scheme, FifoScheme):
        recorder = Recorder()
        sampler = FifoSampler(FakeModel(recorder, frames=scheme.B), scheme, text(), shift=shift)
        for _ in range(scheme.warmup + 3):
            sampler.step()
    else:
        recorder, _ = record_stream(scheme, shift, calls_to_cover(scheme), context)
    seen = {}
    for n, levels in enumerate(recorder.levels):
        seen.setdefault(tuple(round(v, 6) for v in levels.tolist()), (n, levels))
    return list(seen.values())


def outside_training(usages: list[Usage]) -> list[str]:
    """One line per usage with a pattern that training cannot draw: its first such pattern."""
    lines = []
    for usage in usages:
        for n, levels in patterns(usage.scheme, usage.shift, usage.context, usage.causal, usage.refine):
            if not drawable(levels, usage.draw, prefix=bool(usage.causal)):
                lines.append(
                    f"{usage.where}: {usage.scheme} at shift {usage.shift}, call {n}: levels "
                    f"{[round(v, 4) for v in levels.tolist()]} not drawable by training at shift "
                    f"{usage.draw.shift} with schemes {[str(s) for s in usage.draw.schemes]}"
                )
                break
    return lines


def test_drawable_accepts_training_draws_and_rejects_others():
    """The predicate holds for what ``sample_training_levels`` draws and fails near misses."""
    schemes = [Scheme(0, 8, 1, 2), Scheme(0, 2, 4, 8), Scheme(4, 1, 4, 16), Scheme(2, 3, 2, 2)]
    for scheme in schemes:
        draw = TrainingDraw((scheme,), (1.0,), 0.5, 3.0)
        levels, _, _ = sample_training_levels(
            [scheme], [1.0], 64, torch.Generator().manual_seed(0), startup_prob=0.5, shift=3.0
        )
        assert all(drawable(row, draw) for row in levels)
    draw = TrainingDraw((Scheme(0, 2, 4, 8),), (1.0,), 0.5, 3.0)
    assert drawable(buffer_levels(Scheme(0, 2, 4, 8), 3.5, 3.0), draw)
    assert not drawable(buffer_levels(Scheme(0, 2, 4, 8), 3.0, 1.0), draw)  # the grid of another shift
    assert not drawable(buffer_levels(Scheme(0, 4, 2, 4), 1.0, 3.0), draw)  # another partition
    no_startup = TrainingDraw((Scheme(0, 2, 4, 8),), (1.0,), 0.0, 3.0)
    assert not drawable(buffer_levels(Scheme(0, 2, 4, 8), -2.0, 3.0, started=False), no_startup)


def test_segment_draws_cover_the_stream_and_chunks_apart():
    """Eq. 8/9 draws lie in their support, hold every steady stream pattern of the same shift, and also
    chunks at different places of their segments, which one shared offset never gives."""
    for scheme in (Scheme(0, 2, 4, 8), Scheme(0, 8, 1, 2), Scheme(4, 1, 4, 16), Scheme(2, 3, 2, 2)):
        draw = TrainingDraw((scheme,), (1.0,), 0.5, 1.0, segments=True)
        levels, _, _ = sample_training_levels(
            [scheme], [1.0], 64, torch.Generator().manual_seed(0), startup_prob=0.5, shift=1.0, segments=True
        )
        assert all(drawable(row, draw) for row in levels)
        for _, pattern in patterns(scheme, 1.0):
            assert drawable(pattern, draw)
    scheme = Scheme(0, 2, 4, 8)
    apart = segment_levels(scheme, torch.tensor([0.1, 0.9]))
    assert apart.tolist() == pytest.approx([0.1 * 8 / 16] * 4 + [1.9 * 8 / 16] * 4)
    assert drawable(apart, TrainingDraw((scheme,), (1.0,), 0.5, 1.0, segments=True))
    assert not drawable(apart, TrainingDraw((scheme,), (1.0,), 0.5, 1.0))  # one shared offset
    low = segment_levels(scheme, torch.tensor([0.1, 0.2]))  # chunk 1 at 0.6: on the shift-3 grid, segment 0
    assert not drawable(low, TrainingDraw((scheme,), (1.0,), 0.5, 3.0, segments=True))
    with pytest.raises(ValueError, match="one draw per chunk"):
        segment_levels(scheme, torch.rand(3))


def test_every_sampled_pattern_is_drawable_by_training(usages):
    """Every pattern every stream of the study hands a model lies in that model's training draw
    (``drawable``), training-free baselines (``TRAINING_FREE``) aside."""
    failures = outside_training([u for u in usages if not u.training_free])
    assert not failures, "\n".join(failures)


def test_every_sampled_pattern_is_drawable_when_shifts_match(usages):
    """The same streams, each set to its model's training shift, are all drawable (what the test above
    checks holds whatever the shift, once sampling and training share it); and the training-free
    baselines do lie outside, so their exemption is needed."""
    matched = [dataclasses.replace(u, shift=u.draw.shift) for u in usages]
    trained = [u for u in matched if not u.training_free]
    free = [u for u in matched if u.training_free]
    assert not outside_training(trained), "\n".join(outside_training(trained))
    assert free and len(outside_training(free)) == len(free)


def test_a_causal_streams_first_chunk_is_drawable_as_the_start_of_a_uniform_buffer():
    """The chunk-causal stream's first chunk runs alone (4 frames): under the causal mask it is the first
    chunk of a uniform training buffer; its steady calls are the [4, 1, 4, 16] draw's clean past and chunk."""
    scheme = Scheme(4, 1, 4, 16)
    found = patterns(scheme, 3.0, "clean", 4)
    short = [levels for _, levels in found if len(levels) == 4]
    steady = [levels for _, levels in found if len(levels) == 8]
    assert len(short) == 16 and len(steady) == 16 and all((t[:4] == 0).all() for t in steady)
    uniform = TrainingDraw((Scheme(0, 1, 8, 16),), (1.0,), 0.0, 3.0)
    assert all(drawable(t, uniform, prefix=True) and not drawable(t, uniform) for t in short)
    assert not any(drawable(t, uniform, prefix=True) for t in steady)
    assert all(drawable(t, TrainingDraw((scheme,), (1.0,), 0.0, 3.0)) for t in steady)
