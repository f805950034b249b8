"""Scoring streams per window, summaries with intervals, and paired differences (streamdit.quality)."""

import math

import numpy as np
import pytest
import torch

from streamdit.clip import ClipConfig, build_clip, own_clip_scorer
from streamdit.config import EvalConfig
from streamdit.evaluate import render_videos
from streamdit.evaluators import FeatureExtractor, VideoEncoder, VideoEncoderConfig
from streamdit.quality import (
    DRIFT_MEASURES,
    MEASURES,
    Judges,
    paired_differences,
    paired_drift_differences,
    per_window,
    read_arrays,
    scored,
    summarise,
    window_quality,
    write_arrays,
)
from streamdit.world import ObjectSpec, SceneSpec, canonical_caption


def mean_frame_features():
    """Features = the mean pixel value of each frame, so FVD compares per-frame brightness."""
    return FeatureExtractor("test", lambda x: x.mean(dim=(2, 3, 4)))


def tiny_judges(resolution=16):
    classifier = VideoEncoder(VideoEncoderConfig(resolution=resolution, widths=(8, 8, 8), feature_dim=4))
    clip_cfg = ClipConfig(
        image_size=resolution,
        embed_dim=8,
        vision_width=16,
        vision_layers=1,
        text_width=16,
        text_layers=1,
        heads=2,
    )
    return Judges(classifier, mean_frame_features(), own_clip_scorer(build_clip(clip_cfg), clip_cfg), "tiny")


def scenes(count, motion="right"):
    colours = ("red", "green", "blue", "white", "cyan", "magenta")
    return [
        SceneSpec((ObjectSpec("square", colours[i % 6], "large", motion, 0.1 * i, 0.5, 0.04),), "black")
        for i in range(count)
    ]


def fake_quality(n, windows, drift_at=None, shift=0.0, seed=0):
    """Per-prompt arrays as ``window_quality`` returns them: every measure a prompt effect plus
    ``shift``, features [n, windows, 4] that move by 1 from window ``drift_at`` on."""
    rng = np.random.default_rng(seed)
    prompt = rng.uniform(0.3, 0.7, size=(n, 1))
    out = {name: np.repeat(prompt, windows, axis=1) + shift for name in MEASURES}
    out["clip_score"] = np.repeat(prompt, windows, axis=1) * 100
    feats = rng.standard_normal((n, windows, 4))
    if drift_at is not None:
        feats[:, drift_at:] += 1.0
    out["features"] = feats
    return out


def test_per_window_sees_drift_only_in_late_windows():
    quality = fake_quality(8, 3, drift_at=2)
    real = quality["features"].copy()
    real[:, 2:] -= 1.0  # the real windows without the drift
    rows = per_window(quality, real, [0, 16, 32])
    assert [r["offset"] for r in rows] == [0, 16, 32]
    assert rows[0]["fvd"] == pytest.approx(0.0, abs=1e-9) and rows[1]["fvd"] == pytest.approx(0.0, abs=1e-9)
    assert rows[2]["fvd"] == pytest.approx(4.0)  # 4 features, each mean moved by 1
    # KID of a set against itself is below 0 (its unbiased estimate leaves out the pairs (i, i))
    assert rows[0]["kid"] < 0 < rows[2]["kid"]
    assert rows[2]["caption_mean"] == pytest.approx(float(quality["caption_mean"][:, 2].mean()))


def test_summarise_pools_windows_with_intervals_and_skips_measures_that_do_not_apply():
    quality = fake_quality(20, 3, drift_at=2, seed=1)
    quality["direction_agreement"][:] = np.nan  # no directional caption: nothing to report
    real = quality["features"].copy()
    real[:, 2:] -= 1.0
    out = summarise(quality, real, torch.Generator().manual_seed(0), 100, 0.9)
    mean = float(quality["caption_mean"].mean())
    assert out["caption_mean"] == pytest.approx(mean)
    assert out["caption_mean_ci"][0] < mean < out["caption_mean_ci"][1]
    assert out["direction_agreement"] is None and out["direction_agreement_ci"] is None
    assert out["fvd"] > 0.5 and out["fvd_ci"][0] <= out["fvd"] <= out["fvd_ci"][1]
    assert math.isfinite(out["kid"]) and out["kid_ci"][0] <= out["kid_ci"][1]


def test_window_quality_on_real_streams():
    """Real streams of rightward squares: every measure of every window, finite where it applies, the
    VBench analogues at their real values (moving, consistent, in the captioned direction)."""
    scene_list = scenes(3)
    videos = render_videos(scene_list, 32, 16)
    quality = window_quality(videos, scene_list, [0, 16], 16, tiny_judges())
    assert set(quality) == {*MEASURES, "features"}
    assert all(quality[name].shape == (3, 2) for name in MEASURES) and quality["features"].shape == (3, 2, 16)
    assert np.isfinite(np.stack([quality[n] for n in MEASURES])).all()
    assert (quality["dynamic_degree"] == 1).all() and (quality["direction_agreement"] == 1).all()
    assert (quality["subject_consistency"] > 0.7).all() and (quality["background_consistency"] > 0.99).all()
    with pytest.raises(ValueError, match="overruns"):
        window_quality(videos, scene_list, [20], 16, tiny_judges())
    with pytest.raises(ValueError, match="one scene per video"):
        window_quality(videos, scene_list[:2], [0], 16, tiny_judges())


def test_scored_adds_the_windows_clip_scores():
    scene_list = scenes(2)
    videos = render_videos(scene_list, 16, 16)
    judges = tiny_judges()
    quality = scored(
        videos,
        scene_list,
        [0],
        EvalConfig(prompts=2, switch_pairs=1, long_frames=16, drift_prompts=0, heldout_prompts=0),
        judges,
    )
    expected = judges.scorer.score(
        videos.flatten(0, 1), [canonical_caption(s) for s in scene_list for _ in range(16)]
    )
    assert quality["clip_score"].shape == (2, 1)
    assert quality["clip_score"].mean() == pytest.approx(float(expected.mean()), rel=1e-5)


def arrays(key, quality, captions):
    out = {f"{key}/{k}": v for k, v in quality.items()}
    return out | {
        "captions": np.array(captions),
        "seed": np.array(2),
        "real/features": quality["features"] * 0,
    }


def test_paired_differences_see_a_known_shift_and_refuse_unpaired_evaluations(tmp_path):
    captions = [f"prompt {i}" for i in range(32)]
    a = arrays("A", fake_quality(32, 2, shift=0.1), captions)
    b = arrays("B", fake_quality(32, 2), captions)
    ecfg = EvalConfig(bootstrap=200)
    out = paired_differences(a, "A", b, "B", ecfg)
    assert out["caption_mean"]["diff"] == pytest.approx(0.1) and out["caption_mean"]["verdict"] == "a > b"
    assert out["fvd"]["verdict"] == "no difference" and out["fvd"]["diff"] == pytest.approx(0.0, abs=1e-9)
    assert set(out) == {*MEASURES, "clip_score", "fvd", "kid"}
    other = {**b, "captions": np.array([*captions[:-1], "another prompt"])}
    with pytest.raises(ValueError, match="same prompts and noise"):
        paired_differences(a, "A", other, "B", ecfg)
    path = write_arrays(a, tmp_path / "a.npz")
    back = read_arrays(path)
    assert set(back) == set(a) and np.array_equal(back["A/caption_mean"], a["A/caption_mean"])
    with pytest.raises(FileNotFoundError, match="dvc repro"):
        read_arrays(tmp_path / "missing.npz")


def test_paired_drift_sets_one_streams_loss_against_anothers_and_refuses_unpaired_ones():
    """Drift windows [m, windows]: a loses 0.2 of every measure from its first window to its last, b
    nothing, on top of shared prompt effects; the paired drift difference is -0.2, decided."""
    rng = np.random.default_rng(0)
    prompt = rng.uniform(0.3, 0.7, size=(12, 1))
    steady = np.repeat(prompt, 4, axis=1) + rng.normal(0, 0.01, size=(12, 4))
    losing = steady - np.array([0.0, 0.05, 0.1, 0.2])
    shared = {"captions": np.array([f"prompt {i}" for i in range(12)]), "seed": np.array(3)}
    a = {**shared, **{f"drift/{name}": losing for name in DRIFT_MEASURES}}
    b = {**shared, **{f"drift/{name}": steady for name in DRIFT_MEASURES}}
    ecfg = EvalConfig(bootstrap=200)
    out = paired_drift_differences(a, b, ecfg)
    assert set(out) == set(DRIFT_MEASURES)
    for d in out.values():
        assert d["diff"] == pytest.approx(-0.2) and d["verdict"] == "a < b"
    assert paired_drift_differences(b, b, ecfg)["caption_mean"]["verdict"] == "no difference"
    with pytest.raises(ValueError, match="same prompts and noise"):
        paired_drift_differences(a, {**b, "seed": np.array(4)}, ecfg)
    with pytest.raises(ValueError, match="missing"):
        paired_drift_differences(a, shared, ecfg)
    with pytest.raises(ValueError, match="one length"):
        paired_drift_differences(a, {**b, **{f"drift/{n}": steady[:, :3] for n in DRIFT_MEASURES}}, ecfg)
