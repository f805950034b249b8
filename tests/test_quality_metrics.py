"""KID, paired bootstrap and the world analogues of VBench's dimensions on clips with known answers."""

import random

import numpy as np
import pytest
import torch

from streamdit.metrics import (
    background_consistency,
    circular_centroids,
    direction_agreement,
    dynamic_degree,
    flicker,
    foreground_masks,
    kernel_distance,
    mean_of,
    paired_difference,
    set_distance_of,
    subject_consistency,
)
from streamdit.video import from_uint8
from streamdit.world import COLOUR_RGB, ObjectSpec, SceneSpec, render

RES, FRAMES = 32, 16


def clip(*objects, background="black", start=0, frames=FRAMES):
    return from_uint8(render(SceneSpec(tuple(objects), background), start, frames, RES))


def obj(shape="square", colour="red", motion="right", x0=0.5, y0=0.5, speed=0.04, size="large"):
    return ObjectSpec(shape, colour, size, motion, x0, y0, speed)


STATIC = clip(obj(speed=1e-6))
MOVING = clip(obj())


def jittering():
    """The same square at a random place every frame."""
    rng = random.Random(0)
    frames = [clip(obj(x0=rng.random(), y0=rng.random(), speed=1e-6), frames=1) for _ in range(FRAMES)]
    return torch.cat(frames)


def colour_swap():
    """A moving red square that turns blue (same place, same shape) half-way through."""
    red, blue = clip(obj()), clip(obj(colour="blue"))
    return torch.cat([red[: FRAMES // 2], blue[FRAMES // 2 :]])


def background_flicker():
    """A moving square over a background that alternates between black and grey every frame."""
    black, grey = clip(obj()), clip(obj(), background="grey")
    return torch.stack([(black if t % 2 else grey)[t] for t in range(FRAMES)])


def test_kid_is_unbiased_near_zero_for_one_distribution_and_grows_with_a_shift():
    rng = np.random.default_rng(0)
    same = [kernel_distance(rng.standard_normal((32, 8)), rng.standard_normal((32, 8))) for _ in range(40)]
    # Unbiased: the mean over draws of two samples of one distribution is ~0 (both signs occur).
    assert abs(np.mean(same)) < 3 * np.std(same) / np.sqrt(len(same))
    assert min(same) < 0 < max(same)
    shifted = kernel_distance(rng.standard_normal((32, 8)), rng.standard_normal((32, 8)) + 1.0)
    assert shifted > max(same)
    with pytest.raises(ValueError, match="widths differ"):
        kernel_distance(np.zeros((4, 3)), np.zeros((4, 2)))


def test_kid_matches_a_direct_sum():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((5, 3)), rng.standard_normal((6, 3))

    def k(x, y):
        return (x @ y / 3 + 1) ** 3

    aa = sum(k(a[i], a[j]) for i in range(5) for j in range(5) if i != j) / 20
    bb = sum(k(b[i], b[j]) for i in range(6) for j in range(6) if i != j) / 30
    ab = sum(k(x, y) for x in a for y in b) / 30
    assert kernel_distance(a, b) == pytest.approx(aa + bb - 2 * ab, rel=1e-10)


def test_paired_bootstrap_finds_a_known_effect_that_an_unpaired_view_would_drown():
    """Per-prompt scores vary a lot between prompts (sd 1) but method a beats b by 0.1 on every prompt
    up to small noise: the paired interval excludes 0 and brackets 0.1."""
    rng = np.random.default_rng(0)
    prompt = rng.standard_normal(64)
    a, b = prompt + 0.1 + 0.02 * rng.standard_normal(64), prompt + 0.02 * rng.standard_normal(64)
    out = paired_difference(mean_of(a), mean_of(b), 64, torch.Generator().manual_seed(0), 500)
    assert out["holds"] and out["verdict"] == "a > b"
    assert out["low"] < 0.1 < out["high"] and out["low"] > 0.05
    flipped = paired_difference(mean_of(b), mean_of(a), 64, torch.Generator().manual_seed(0), 500)
    assert flipped["verdict"] == "a < b" and flipped["diff"] == pytest.approx(-out["diff"])


def test_paired_bootstrap_finds_no_effect_where_there_is_none():
    """Two methods with the same per-prompt distribution: over 20 independent draws of the data the
    95% interval excludes 0 at most 3 times (expected once)."""
    rng = np.random.default_rng(1)
    holds = 0
    for seed in range(20):
        prompt = rng.standard_normal(64)
        a, b = prompt + 0.3 * rng.standard_normal(64), prompt + 0.3 * rng.standard_normal(64)
        holds += paired_difference(mean_of(a), mean_of(b), 64, torch.Generator().manual_seed(seed), 300)[
            "holds"
        ]
    assert holds <= 3


def test_paired_bootstrap_of_a_set_distance():
    """KID of a method whose features are shifted from the real ones against one that matches them."""
    rng = np.random.default_rng(2)
    real = rng.standard_normal((64, 2, 4))
    good, bad = real + 0.1 * rng.standard_normal(real.shape), real + 1.0
    out = paired_difference(
        set_distance_of(kernel_distance, bad, real), set_distance_of(kernel_distance, good, real),
        64, torch.Generator().manual_seed(0), 200,
    )  # fmt: skip
    assert out["verdict"] == "a > b"
    with pytest.raises(ValueError, match="at least 2 units"):
        paired_difference(mean_of([1.0]), mean_of([1.0]), 1, torch.Generator(), 10)


def test_foreground_and_centroids_find_the_object_on_every_background():
    for background in ("black", "grey", "navy", "twilight"):
        video = clip(obj(speed=1e-6, x0=0.25, y0=0.75), background=background)
        mask = foreground_masks(video[None])[0]
        assert mask.any(dim=(1, 2)).all()
        centroid = circular_centroids(mask)[0]
        assert centroid.tolist() == pytest.approx([0.75, 0.25], abs=0.03)
    # An object across the right border: the circular centroid stays at the border, not the middle.
    wrapped = foreground_masks(clip(obj(x0=0.99, speed=1e-6))[None])[0]
    assert circular_centroids(wrapped)[0, 1] > 0.9 or circular_centroids(wrapped)[0, 1] < 0.1
    assert circular_centroids(torch.zeros(1, 4, 4, dtype=torch.bool)).isnan().all()


def test_subject_consistency_sees_a_colour_swap_but_not_motion():
    scores = subject_consistency(torch.stack([STATIC, MOVING, colour_swap()]))
    assert scores[0] == pytest.approx(1.0, abs=1e-6)
    assert scores[1] > 0.85  # motion matters little (sub-pixel positions change the mask: 0.885)
    assert scores[2] < scores[1] - 0.1


def test_background_consistency_sees_a_flickering_background():
    scores = background_consistency(torch.stack([MOVING, background_flicker()]))
    assert scores[0] > 0.999  # antialiased rims just below the foreground threshold differ a little
    assert scores[1] < 0.9


def test_flicker_is_zero_when_static_small_for_steady_motion_and_large_for_jitter():
    scores = flicker(torch.stack([STATIC, MOVING, jittering()]))
    assert scores[0] == 0.0
    assert scores[1] < scores[2] / 3


def test_dynamic_degree_separates_static_from_moving_and_growing():
    grow = clip(obj(motion="grow", speed=0.03))
    assert dynamic_degree(torch.stack([STATIC, MOVING, grow])).tolist() == [0.0, 1.0, 1.0]


def test_direction_agreement_reads_the_captioned_direction():
    red = COLOUR_RGB["red"]
    moves = [obj(motion=m) for m in ("left", "right", "up", "down")]
    videos = torch.stack([clip(o) for o in moves] + [clip(obj(motion="orbit", x0=0.7))])
    right = direction_agreement(videos, [red] * 5, ["left", "right", "up", "down", "orbit"])
    assert right[:4].tolist() == [1.0] * 4 and right[4].isnan()
    wrong = direction_agreement(videos[:4], [red] * 4, ["right", "left", "down", "up"])
    assert wrong.tolist() == [0.0] * 4
