import pytest
import torch
from test_sampling import FakeModel, oracle_towards, text
from test_schedule_reference import Recorder

from streamdit.handoff import HandoffSampler, HandoffStreamer, started_by
from streamdit.sampling import StreamSampler
from streamdit.schedule import FifoScheme, Scheme, buffer_levels, time_shift
from streamdit.streaming import load_streamer


def emitted(sampler, calls):
    return [sampler.step() for _ in range(calls)]


def test_a_hand_off_by_the_stream_s_own_model_on_its_own_grid_is_the_uniform_start_up():
    scheme = Scheme(0, 2, 4, 4)
    own = StreamSampler(
        FakeModel(oracle_towards(0.3)),
        scheme,
        text(),
        shift=3.0,
        cfg_scale=2.0,
        startup="uniform",
        generator=torch.Generator().manual_seed(5),
    )
    model = FakeModel(oracle_towards(0.3))
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
    for a, b in zip(emitted(own, 3 * scheme.T), emitted(handoff, 3 * scheme.T), strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_the_starter_denoises_on_the_finer_grid_and_hands_over_a_steady_buffer():
    """Student [0, 2, 4, 2] (T = 4) started by a starter on a 3x finer grid (12 steps, time shift 3):
    (T - s) * 3 = 6 starter calls at one level each, then the student's calls on the steady buffer;
    with v = 1 everywhere each frame leaves as its entering noise minus 1, whichever model moved it."""
    scheme, shift = Scheme(0, 2, 4, 2), 3.0
    starter_rule, student_rule = Recorder(), Recorder()
    starter, student = FakeModel(starter_rule), FakeModel(student_rule)
    sampler = HandoffSampler(
        student,
        scheme,
        text(),
        starter=starter,
        starter_cfg_scale=1.0,
        refine=3,
        shift=shift,
        generator=torch.Generator().manual_seed(2),
    )
    noise = sampler.x[0].clone()
    out = emitted(sampler, 6 + 2 * scheme.s)
    assert [n for n, chunk in enumerate(out) if chunk is not None] == [6 + scheme.s - 1, 6 + 2 * scheme.s - 1]
    assert (starter.calls, student.calls, sampler.starter_calls, sampler.calls) == (6, 4, 6, 10)
    for k, levels in enumerate(starter_rule.levels):  # the clip: one level per call on the 12-step grid
        level = time_shift(torch.tensor((12 - k) / 12, dtype=torch.float64), shift)
        assert torch.allclose(levels, level.expand(8))
    torch.testing.assert_close(student_rule.levels[0], buffer_levels(scheme, 0.0, shift))
    torch.testing.assert_close(out[6 + scheme.s - 1][0], noise[:4] - 1)
    torch.testing.assert_close(out[-1][0], noise[4:] - 1)


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
    pixels = FakeModel(oracle_towards(0.0))
    pixels.cfg.space = "latent"
    with pytest.raises(ValueError, match="a buffer cannot pass"):
        HandoffSampler(model, Scheme(0, 4, 2, 1), text(), starter=pixels, starter_cfg_scale=1.0, refine=1)


def test_a_handoff_streamer_starts_a_student_from_its_teacher(tiny_model_file):
    teacher = load_streamer(tiny_model_file, device="cpu")  # [0, 2, 4, 8], guided
    student = load_streamer(tiny_model_file, distilled=True, device="cpu")  # [0, 2, 4, 1]
    handoff = HandoffStreamer(
        student.model,
        student.encoder,
        student.scheme,
        student.cfg_scale,
        student.shift,
        space=student.space,
        starter=teacher.model,
        starter_cfg_scale=teacher.cfg_scale,
        refine=teacher.scheme.s,
    )
    sampler = handoff.sampler("a red circle moving left", seed=1)
    assert isinstance(sampler, HandoffSampler)
    video = sampler.take(8)
    assert video.shape == (1, 8, 3, 16, 16) and torch.isfinite(video).all()
    # (T - s) * refine = (2 - 1) * 8 teacher calls, then s = 1 student call per chunk of 4
    assert (sampler.starter_calls, sampler.calls) == (8, 10)
    with pytest.raises(ValueError, match="needs a starter"):
        HandoffStreamer(student.model, student.encoder, student.scheme, 1.0, 1.0, space=student.space)
    with pytest.raises(ValueError, match="K = 0"):
        HandoffStreamer(
            student.model,
            student.encoder,
            Scheme(4, 1, 4, 1),
            1.0,
            1.0,
            space=student.space,
            starter=teacher.model,
        )


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
