import pytest
import torch

from streamdit.schedule import (
    Scheme,
    buffer_levels,
    check_buffer,
    grid_indices,
    independent_levels,
    loss_mask,
    sample_training_levels,
    time_grid,
    time_shift,
)


def test_scheme_sizes_and_costs():
    scheme = Scheme.for_buffer(B=16, c=4, s=4)
    assert (scheme.K, scheme.N, scheme.c, scheme.s) == (0, 4, 4, 4)
    assert scheme.B == 16 and scheme.T == 16
    assert scheme.calls_per_frame == 1.0
    assert Scheme.for_buffer(B=18, c=4, s=1, K=2).N == 4
    assert Scheme.parse("1,3,5,2") == Scheme(K=1, N=3, c=5, s=2)
    assert str(Scheme(0, 2, 4, 8)) == "K0-N2-c4-s8"


@pytest.mark.parametrize(
    "args, message",
    [((0, 0, 4, 4), "N must be an integer >= 1"), ((-1, 2, 4, 4), "K"), ((0, 2, 4, 0), "s must be")],
)
def test_scheme_validation(args, message):
    with pytest.raises(ValueError, match=message):
        Scheme(*args)


def test_buffer_mismatch_names_values():
    with pytest.raises(ValueError, match=r"B = K \+ N\*c = 0 \+ 2\*4 = 8 frames, but the buffer has 16"):
        check_buffer(Scheme(0, 2, 4, 4), 16)
    with pytest.raises(ValueError, match="multiple of chunk size c=3"):
        Scheme.for_buffer(B=16, c=3, s=1)
    with pytest.raises(ValueError, match=r"\[K, N, c, s\]"):
        Scheme.parse([1, 2, 3])


def test_time_grid_and_shift():
    grid = time_grid(4)
    assert torch.allclose(grid, torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0], dtype=torch.float64))
    shifted = time_grid(8, shift=3.0)
    assert shifted[0] == 0 and shifted[-1] == 1
    assert (shifted[1:] > shifted[:-1]).all()
    # SD3 shift: t = 3u / (1 + 2u), so u = 0.5 maps to 0.75 (more steps at high noise).
    assert time_shift(torch.tensor(0.5), 3.0).item() == pytest.approx(0.75)
    with pytest.raises(ValueError):
        time_grid(0)


def test_steady_levels_rise_along_buffer_and_step_by_one():
    scheme = Scheme(K=0, N=4, c=2, s=4)
    index = grid_indices(scheme, torch.tensor(1.0))
    # chunk j sits at (j + 1) * s - o: 3, 7, 11, 15, each repeated for the c = 2 frames of the chunk.
    assert index.tolist() == [3, 3, 7, 7, 11, 11, 15, 15]
    levels = buffer_levels(scheme, torch.arange(0, 4.0))
    assert (levels[:, 1:] >= levels[:, :-1]).all()
    # one call moves every chunk one grid step (1/T) down
    assert torch.allclose(levels[:-1] - levels[1:], torch.full((3, 8), 1 / 16, dtype=torch.float64))


def test_after_s_calls_oldest_chunk_is_clean_and_shift_restores_pattern():
    scheme = Scheme(K=0, N=4, c=2, s=4)
    at_end = grid_indices(scheme, torch.tensor(4.0))
    assert at_end[:2].tolist() == [0, 0]
    # after emitting chunk 0 and shifting, chunks 1..3 occupy positions 0..2 at their new offset 0
    assert at_end[2:].tolist() == grid_indices(scheme, torch.tensor(0.0))[:-2].tolist()
    assert grid_indices(scheme, torch.tensor(0.0))[-1] == scheme.T  # fresh noise enters at t = 1


def test_uniform_and_diagonal_special_cases():
    uniform = Scheme.uniform(B=8, T=10)
    assert (uniform.N, uniform.c, uniform.s) == (1, 8, 10)
    for o in range(10):
        levels = buffer_levels(uniform, float(o))
        assert torch.all(levels == levels[0])  # every frame shares one level
        assert levels[0].item() == pytest.approx((10 - o) / 10)
    diagonal = Scheme.diagonal(B=6)
    assert (diagonal.N, diagonal.c, diagonal.s, diagonal.T) == (6, 1, 1, 6)
    # FIFO-Diffusion: frame i sits at level (i + 1) / B before the call
    assert buffer_levels(diagonal, 0.0).tolist() == pytest.approx([1 / 6, 2 / 6, 3 / 6, 4 / 6, 5 / 6, 1])


def test_stream_start_all_noise_and_reference_frames():
    scheme = Scheme(K=2, N=3, c=2, s=2)
    start = grid_indices(scheme, torch.tensor(float(scheme.s - scheme.T)), started=False)
    assert torch.all(start == scheme.T)  # the stream starts from pure noise, references too
    steady = grid_indices(scheme, torch.tensor(0.0), started=True)
    assert steady[:2].tolist() == [0, 0]
    assert loss_mask(scheme).tolist() == [False, False, True, True, True, True, True, True]


def test_sample_training_levels_mixes_schemes_with_given_probs():
    schemes = [Scheme.for_buffer(8, 1, 2), Scheme.for_buffer(8, 8, 16)]
    g = torch.Generator().manual_seed(0)
    levels, mask, which = sample_training_levels(schemes, [0.75, 0.25], 4000, g, startup_prob=0.0)
    assert levels.shape == (4000, 8) and mask.shape == (4000, 8)
    assert abs((which == 0).float().mean().item() - 0.75) < 0.03
    assert (levels[:, 1:] >= levels[:, :-1]).all()
    uniform_rows = levels[which == 1]
    assert torch.all(uniform_rows == uniform_rows[:, :1])
    diag_rows = levels[which == 0]
    # diagonal with s = 2: adjacent frames are exactly s / T = 1/8 apart
    assert torch.allclose(
        diag_rows[:, 1:] - diag_rows[:, :-1], torch.full_like(diag_rows[:, 1:], 1 / 8), atol=1e-6
    )
    assert levels.min() > 0 and levels.max() <= 1


def test_sample_training_levels_startup_samples_and_determinism():
    schemes = [Scheme.for_buffer(8, 2, 4)]
    a = sample_training_levels(schemes, [1.0], 512, torch.Generator().manual_seed(3), startup_prob=0.5)
    b = sample_training_levels(schemes, [1.0], 512, torch.Generator().manual_seed(3), startup_prob=0.5)
    assert torch.equal(a[0], b[0])
    # start-up samples clamp the newest chunks at t = 1: more than one chunk at pure noise
    saturated = (a[0] == 1.0).sum(dim=1)
    assert (saturated > 2).any() and (saturated <= 2).any()


@pytest.mark.parametrize("probs", [[0.5], [0.7, 0.7], [-0.5, 1.5]])
def test_sample_training_levels_rejects_bad_probs(probs):
    schemes = [Scheme.for_buffer(8, 2, 4), Scheme.for_buffer(8, 4, 8)]
    with pytest.raises(ValueError, match="probabilit"):
        sample_training_levels(schemes, probs, 4, torch.Generator())


def test_independent_levels_are_uniform_per_frame_and_uncorrelated():
    levels, mask = independent_levels(4000, 8, torch.Generator().manual_seed(0))
    assert levels.shape == (4000, 8) and levels.dtype == torch.float32 and mask.all()
    assert levels.min() >= 0 and levels.max() < 1
    # U[0, 1) per frame: mean 1/2, variance 1/12; frames independent: correlations near 0
    assert torch.allclose(levels.mean(dim=0), torch.full((8,), 0.5), atol=0.02)
    assert torch.allclose(levels.var(dim=0), torch.full((8,), 1 / 12), atol=0.005)
    corr = torch.corrcoef(levels.T) - torch.eye(8)
    assert corr.abs().max() < 0.06
    # unlike any scheme, the levels are not sorted along the buffer
    assert (levels.diff(dim=1) < 0).any(dim=1).float().mean() > 0.9


def test_independent_levels_follow_the_time_shift_and_the_generator():
    a, _ = independent_levels(3, 8, torch.Generator().manual_seed(1), shift=3.0)
    b, _ = independent_levels(3, 8, torch.Generator().manual_seed(1))
    assert torch.allclose(a, time_shift(b.double(), 3.0).float(), atol=1e-6)
    with pytest.raises(ValueError, match="B >= 1"):
        independent_levels(2, 0, torch.Generator())
