import copy
import dataclasses

import pytest
import torch
from test_sampling import FakeModel, oracle_towards, text
from test_schedule_reference import Recorder

from streamdit.autoencoder import AutoencoderConfig, PixelSpace, WorldAutoencoder
from streamdit.handoff import HandoffSampler, HandoffStreamer, same_space, started_by
from streamdit.sampling import StreamSampler
from streamdit.schedule import FifoScheme, Scheme, buffer_levels, time_shift
from streamdit.streaming import load_streamer


def emitted(sampler, calls):
    return [sampler.step() for _ in range(calls)]


def wavy(x, levels, pooled):
    """A velocity that depends on the frames, their levels and the text: no path ends at one target."""
    return torch.sin(3 * x) + levels[..., None, None, None] * pooled[:, 0].view(-1, 1, 1, 1, 1)


def test_a_hand_off_by_the_stream_s_own_model_on_its_own_grid_is_the_uniform_start_up():
    scheme = Scheme(0, 2, 4, 4)
    own = StreamSampler(
        FakeModel(wavy),
        scheme,
        text(),
        shift=3.0,
        cfg_scale=2.0,
        startup="uniform",
        generator=torch.Generator().manual_seed(5),
    )
    model = FakeModel(wavy)
    handoff = HandoffSampler(
        model,
        scheme,
        text(),
        starter=model,
        starter_cfg_scale=2.0,
        refine=1,
        shift=3.0,
        cfg_scale=2.0,
        generator=torch.Generator().manual_seed(5),
    )
    out_own, out_handoff = emitted(own, 3 * scheme.T), emitted(handoff, 3 * scheme.T)
    assert sum(chunk is not None for chunk in out_own) == 1 + 2 * scheme.T // scheme.s
    for a, b in zip(out_own, out_handoff, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=0, atol=0)


class Guided(Recorder):
    """v = the text's pooled[0] (the null caption's is 0), so a call guided with scale g moves every
    frame by g times its level step; records levels as ``Recorder`` does."""

    def __call__(self, x, levels, pooled):
        super().__call__(x, levels, pooled)
        return pooled[:, 0].view(-1, 1, 1, 1, 1).expand_as(x).clone()


def test_the_starter_denoises_on_the_finer_grid_with_its_guidance_and_hands_over_a_steady_buffer():
    """Student [0, 2, 4, 2] (T = 4, unguided, v = 1) started by a starter guided with scale 2 (v = 2 with
    guidance) on a 3x finer grid (12 steps, time shift 3): (T - s) * 3 = 6 starter calls at one level each,
    then the student's calls on the steady buffer. Chunk j leaves as its entering noise minus
    2 (1 - t_j) (the starter's part, down to its hand-over level t_j) minus t_j (the student's)."""
    scheme, shift = Scheme(0, 2, 4, 2), 3.0
    starter_rule, student_rule = Guided(), Recorder()
    starter, student = FakeModel(starter_rule), FakeModel(student_rule)
    sampler = HandoffSampler(
        student,
        scheme,
        text(),
        starter=starter,
        starter_cfg_scale=2.0,
        refine=3,
        shift=shift,
        generator=torch.Generator().manual_seed(2),
    )
    noise = sampler.x[0].clone()
    out = emitted(sampler, 6 + 2 * scheme.s)
    assert [n for n, chunk in enumerate(out) if chunk is not None] == [6 + scheme.s - 1, 6 + 2 * scheme.s - 1]
    assert (starter.calls, student.calls, sampler.clip_calls, sampler.calls) == (6, 4, 6, 10)
    for k, levels in enumerate(starter_rule.levels):  # the clip: one level per call on the 12-step grid
        level = time_shift(torch.tensor((12 - k) / 12, dtype=torch.float64), shift)
        assert torch.allclose(levels, level.expand(8))
    handed = buffer_levels(scheme, 0.0, shift)
    torch.testing.assert_close(student_rule.levels[0], handed)
    t0, t1 = handed[0].item(), handed[4].item()
    torch.testing.assert_close(out[6 + scheme.s - 1][0], noise[:4] - 2 * (1 - t0) - t0)
    torch.testing.assert_close(out[-1][0], noise[4:] - 2 * (1 - t1) - t1)


def test_an_oracle_hand_off_emits_clean_frames():
    scheme = Scheme(0, 4, 2, 1)
    sampler = HandoffSampler(
        FakeModel(oracle_towards(0.5)),
        scheme,
        text(batch=2),
        starter=FakeModel(oracle_towards(0.5)),
        starter_cfg_scale=3.0,
        refine=4,
    )
    video = sampler.take(12)
    assert video.shape == (2, 12, 1, 2, 2)
    torch.testing.assert_close(video, torch.full_like(video, 0.5), rtol=0, atol=1e-4)


def test_bad_hand_offs_are_refused():
    model = FakeModel(oracle_towards(0.0))
    with pytest.raises(ValueError, match="refine must be >= 1"):
        HandoffSampler(model, Scheme(0, 4, 2, 1), text(), starter=model, starter_cfg_scale=1.0, refine=0)
    with pytest.raises(ValueError, match="starter_cfg_scale must be >= 0"):
        HandoffSampler(model, Scheme(0, 4, 2, 1), text(), starter=model, starter_cfg_scale=-1.0, refine=1)
    with pytest.raises(ValueError, match="startup='uniform'"):  # a starter only makes a uniform start-up
        StreamSampler(model, Scheme(0, 4, 2, 1), text(), starter=model, refine=4)
    with pytest.raises(ValueError, match="K = 0"):
        HandoffSampler(model, Scheme(4, 1, 4, 1), text(), starter=model, starter_cfg_scale=1.0, refine=1)
    with pytest.raises(ValueError, match="buffer has 4"):
        HandoffSampler(
            model,
            Scheme(0, 4, 2, 1),
            text(),
            starter=FakeModel(oracle_towards(0.0), frames=4),
            starter_cfg_scale=1.0,
            refine=1,
        )
    for field, value in (("space", "latent"), ("resolution", 4)):
        other = FakeModel(oracle_towards(0.0))
        setattr(other.cfg, field, value)
        with pytest.raises(ValueError, match="a buffer cannot pass"):
            HandoffSampler(model, Scheme(0, 4, 2, 1), text(), starter=other, starter_cfg_scale=1.0, refine=1)
    causal = FakeModel(oracle_towards(0.0))
    causal.cfg.causal_chunk = 4
    with pytest.raises(ValueError, match="chunk-causal starter"):
        HandoffSampler(model, Scheme(0, 4, 2, 1), text(), starter=causal, starter_cfg_scale=1.0, refine=1)


def handoff_of(student, teacher, scheme=None, **changes):
    """A HandoffStreamer of the student's model started by the teacher's, with ``changes`` to its fields."""
    fields = {"space": student.space, "starter": teacher.model, "starter_cfg_scale": teacher.cfg_scale,
              "refine": teacher.scheme.s} | changes  # fmt: skip
    return HandoffStreamer(student.model, student.encoder, scheme or student.scheme, student.cfg_scale,
                           student.shift, **fields)  # fmt: skip


def test_a_handoff_streamer_starts_a_student_from_its_teacher(tiny_model_file):
    teacher = load_streamer(tiny_model_file, device="cpu")  # [0, 2, 4, 8], guided
    student = load_streamer(tiny_model_file, distilled=True, device="cpu")  # [0, 2, 4, 1]
    sampler = handoff_of(student, teacher).sampler("a red circle moving left", seed=1)
    assert isinstance(sampler, HandoffSampler)
    video = sampler.take(8)
    assert video.shape == (1, 8, 3, 16, 16) and torch.isfinite(video).all()
    # (T - s) * refine = (2 - 1) * 8 teacher calls, then s = 1 student call per chunk of 4
    assert (sampler.clip_calls, sampler.calls) == (8, 10)
    with pytest.raises(TypeError, match="starter"):
        HandoffStreamer(student.model, student.encoder, student.scheme, 1.0, 1.0, space=student.space)
    with pytest.raises(ValueError, match="refine must be >= 1"):
        handoff_of(student, teacher, refine=0)
    with pytest.raises(ValueError, match="no 'uniform' start-up"):
        handoff_of(student, teacher, startup="uniform")
    with pytest.raises(ValueError, match="K = 0"):
        handoff_of(student, teacher, scheme=Scheme(4, 1, 4, 1))


def test_started_by_takes_the_refinement_from_the_two_grids(tiny_model_file):
    teacher = load_streamer(tiny_model_file, device="cpu")  # [0, 2, 4, 8]: T = 16
    student = load_streamer(tiny_model_file, distilled=True, device="cpu")  # [0, 2, 4, 1]: T = 2
    handoff = started_by(student, teacher)
    assert (handoff.refine, handoff.starter_cfg_scale, handoff.cfg_scale) == (8, teacher.cfg_scale, 1.0)
    assert handoff.starter is teacher.model and handoff.scheme == student.scheme
    other = load_streamer(tiny_model_file, scheme=Scheme(0, 2, 4, 3), device="cpu")  # T = 6
    with pytest.raises(ValueError, match="must refine the stream's"):
        started_by(other, teacher)
    fifo = load_streamer(tiny_model_file, scheme=FifoScheme(8, 2, True), device="cpu")
    with pytest.raises(ValueError, match="FIFO-Diffusion"):
        started_by(student, fifo)

    other_text = dataclasses.replace(teacher, config={**teacher.config, "text": {"encoder": "other"}})
    with pytest.raises(ValueError, match="another encoder"):
        started_by(student, other_text)
    with pytest.raises(ValueError, match="another space"):
        started_by(student, dataclasses.replace(teacher, space=PixelSpace(4)))


def test_spaces_are_the_same_only_with_the_same_kind_settings_and_weights():
    tiny = AutoencoderConfig(resolution=4, latent_channels=1, widths=(8,))
    torch.manual_seed(0)
    world = WorldAutoencoder(tiny)
    assert same_space(world, copy.deepcopy(world)) and same_space(PixelSpace(3), PixelSpace(3))
    assert not same_space(world, PixelSpace(1)) and not same_space(PixelSpace(3), PixelSpace(4))
    other = copy.deepcopy(world)
    with torch.no_grad():
        next(other.parameters()).add_(1e-3)
    assert not same_space(world, other)
    assert not same_space(
        world, WorldAutoencoder(AutoencoderConfig(resolution=4, latent_channels=2, widths=(8,)))
    )
