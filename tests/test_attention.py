import math

import pytest
import torch
import torch.nn.functional as F

from streamdit.attention import window_mask, windowed_attention


def _qkv(grid, batch=2, heads=2, head_dim=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    shape = (batch, heads, math.prod(grid), head_dim)
    return [torch.randn(shape, generator=g) for _ in range(3)]


@pytest.mark.parametrize(
    "grid, window, stagger",
    [
        ((4, 4, 4), (2, 2, 2), (0, 0, 0)),
        ((4, 4, 4), (2, 2, 2), (1, 1, 1)),
        ((5, 6, 7), (2, 4, 3), (1, 2, 1)),  # no axis divisible by its window
        ((3, 5, 4), (4, 4, 4), (2, 2, 2)),  # frames and cols covered whole, rows split and staggered
        ((8, 2, 2), (4, 1, 2), (3, 0, 1)),
        ((1, 3, 3), (1, 2, 2), (0, 1, 0)),
    ],
)
def test_windowed_matches_dense_mask(grid, window, stagger):
    q, k, v = _qkv(grid)
    dense = F.scaled_dot_product_attention(q, k, v, attn_mask=window_mask(grid, window, stagger))
    torch.testing.assert_close(
        windowed_attention(q, k, v, grid, window, stagger), dense, atol=1e-5, rtol=1e-5
    )


def test_mask_counts_tokens_per_window():
    # grid 5 frames, window 2, stagger 1: frame windows {0}, {1, 2}, {3, 4}; rows/cols split 3 -> {0, 1}, {2}.
    mask = window_mask((5, 3, 3), (2, 2, 2), (1, 0, 0))
    frame_sizes = torch.tensor([1, 2, 2, 2, 2])
    row_sizes = torch.tensor([2, 2, 1])
    expected = frame_sizes[:, None, None] * row_sizes[None, :, None] * row_sizes[None, None, :]
    assert torch.equal(mask.sum(dim=1), expected.flatten())
    assert torch.equal(mask, mask.T)


@pytest.mark.parametrize("window", [(4, 3, 5), (9, 9, 9)])
def test_window_covering_everything_is_full_attention(window):
    grid = (4, 3, 5)
    q, k, v = _qkv(grid)
    assert window_mask(grid, window, tuple(w // 2 for w in window)).all()
    full = F.scaled_dot_product_attention(q, k, v)
    out = windowed_attention(q, k, v, grid, window, tuple(w // 2 for w in window))
    torch.testing.assert_close(out, full, atol=1e-5, rtol=1e-5)


def test_shifted_windows_never_wrap_around():
    grid = (8, 2, 2)
    first, last = slice(0, 4), slice(28, 32)  # tokens of the oldest and the newest frame
    for stagger in range(4):
        mask = window_mask(grid, (4, 2, 2), (stagger, 0, 0))
        assert not mask[first, last].any()
    # A stagger of 2 with windows of 4 frames groups frames {0, 1}, {2..5}, {6, 7}.
    mask = window_mask(grid, (4, 2, 2), (2, 0, 0))
    assert mask[0, 4 * 1].item() and not mask[0, 4 * 2].item() and mask[4 * 2, 4 * 5].item()


def test_output_depends_only_on_keys_in_window():
    grid, window, stagger = (4, 4, 4), (2, 2, 2), (1, 1, 1)
    q, k, v = _qkv(grid, batch=1)
    mask = window_mask(grid, window, stagger)
    token = 21  # frame 1, row 1, col 1
    inside = int(mask[token].nonzero()[-1])
    outside = int((~mask[token]).nonzero()[0])
    assert inside != token
    base = windowed_attention(q, k, v, grid, window, stagger)[..., token, :]
    for key, should_change in [(inside, True), (outside, False)]:
        k2, v2 = k.clone(), v.clone()
        k2[..., key, :] += 1.0
        v2[..., key, :] += 1.0
        out = windowed_attention(q, k2, v2, grid, window, stagger)[..., token, :]
        assert (not torch.allclose(out, base, atol=1e-4)) == should_change


@pytest.mark.parametrize(
    "window, stagger, message",
    [((0, 2, 2), (0, 0, 0), "window"), ((2, 2, 2), (2, 0, 0), "stagger"), ((2, 2), (0, 0), "3 entries")],
)
def test_invalid_windows_raise(window, stagger, message):
    with pytest.raises(ValueError, match=message):
        window_mask((4, 4, 4), window, stagger)


def test_token_count_must_match_grid():
    q, k, v = _qkv((2, 2, 2))
    with pytest.raises(ValueError, match="holds 12 tokens"):
        windowed_attention(q, k, v, (3, 2, 2), (2, 2, 2), (0, 0, 0))
