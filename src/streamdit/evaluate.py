"""Evaluation of a trained StreamDiT against the real world (DESIGN.md section 2).

For N test prompts (canonical captions of test clips) the model streams ``long_frames`` frames per
prompt and scheme, every scheme from the same noise seeds; the real streams of the same scenes are
rendered to the same length. Scored per window (``streamdit.quality``): caption accuracy per
attribute, the world analogues of VBench (subject and background consistency, flicker, dynamic
degree, direction agreement), CLIP score, FVD and KID against the real windows; the real streams give
the ceiling of each measure, and their FVD / KID against as many val scenes the floor. Besides:
- drift: ``drift_prompts`` streams of ``drift_frames`` frames, every measure per window;
- compositional generalisation: ``heldout_prompts`` streams of the held-out attribute pairs;
- prompt-switch responsiveness: stream prompt A, switch to B (``StreamSampler.set_text``) and
  count the frames until B's per-frame CLIP score reaches a fraction of its steady state;
- latency of one interactive stream (``streamdit.latency``).
Videos are float ``[n, f, c, h, w]`` in [-1, 1] on the CPU; per-frame scores are ``[n, f]``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from streamdit.clip import load_clip, load_pretrained_clip
from streamdit.config import EvalConfig, clip_offsets
from streamdit.evaluators import (
    load_i3d_torchscript,
    load_video_encoder,
    world_feature_extractor,
)
from streamdit.latency import measure_stream_latency
from streamdit.metrics import (
    frames_to_reach,
    mean_of,
    paired_difference,
)
from streamdit.quality import (
    DRIFT_MEASURES,
    Judges,
    frame_scores,
    judges_features,
    quality_report,
    scored,
    window_quality,
    with_intervals,
)
from streamdit.streaming import Streamer
from streamdit.text import TextEmbedding
from streamdit.video import from_uint8, save_strip, to_uint8
from streamdit.world import SceneSpec, canonical_caption, render


def render_videos(scenes: list[SceneSpec], frames: int, resolution: int) -> torch.Tensor:
    """Frames ``0 .. frames - 1`` of each scene's real stream as ``[n, frames, c, h, w]`` in [-1, 1]."""
    return torch.stack([from_uint8(render(scene, 0, frames, resolution)) for scene in scenes])


def switch_responsiveness(scores_b: torch.Tensor, steady_b: torch.Tensor, threshold: float) -> dict:
    """Frames until prompt B's CLIP score reaches ``threshold * steady_b`` after a switch.

    ``scores_b [p, f]``: per-frame CLIP scores for B of the frames made after the switch;
    ``steady_b [p]``: B's mean per-frame score on a stream of B alone. Returns the mean and
    median frames (censored rows count as ``f``), the fraction of pairs that reached it and the
    mean score relative to steady state per frame after the switch (the response curve).
    """
    frames, reached = frames_to_reach(scores_b, threshold * steady_b)
    relative = scores_b / steady_b.clamp_min(1e-6)[:, None]
    return {
        "frames_mean": float(frames.float().mean()),
        "frames_median": float(frames.float().median()),
        "reached_fraction": float(reached.float().mean()),
        "relative_curve": [round(float(v), 4) for v in relative.mean(dim=0)],
        "pairs": int(scores_b.shape[0]),
    }


def evaluate_scheme(
    streamer: Streamer,
    text: TextEmbedding,
    scenes: list[SceneSpec],
    real: dict[str, np.ndarray],
    real_clip: float,
    ecfg: EvalConfig,
    judges: Judges,
    *,
    seed: int,
    device: str,
    progress: bool = False,
    switch_strip: str | Path | None = None,
) -> tuple[dict, dict[str, np.ndarray]]:
    """The evaluation of one scheme (``streamer.scheme``) on the prompts ``text`` (canonical captions of
    ``scenes``): every measure per window and pooled, against the real streams' features of ``real``
    (``scored`` of the same scenes); prompt-switch responsiveness and latency. ``real_clip`` is the real
    clips' CLIP score (for the ratio). Returns the JSON and the per-prompt arrays (``scored``)."""
    captions = [canonical_caption(s) for s in scenes]
    generated = streamer.videos(
        text, ecfg.long_frames, seed=seed, batch_size=ecfg.batch_size, progress=progress
    )
    quality = scored(generated, scenes, ecfg.offsets, ecfg, judges)
    report = quality_report(quality, real["features"], ecfg)

    # Pair i switches from prompt i to prompt i + 1, whose own stream above gives its steady state.
    p = ecfg.switch_pairs
    switched, switch_at = streamer.switched(
        text[0:p], text[1 : p + 1], switch_frame=ecfg.switch_frame, after=ecfg.switch_after, seed=seed + 500
    )
    scores_b = frame_scores(judges.scorer, switched[:, switch_at:], captions[1 : p + 1])
    if switch_strip is not None:
        labels = [
            f"{streamer.scheme}: '{captions[i]}' -> '{captions[i + 1]}' from frame {switch_at}"
            for i in range(p)
        ]
        save_strip([to_uint8(v) for v in switched], switch_strip, captions=labels, scale=3)
    steady = torch.from_numpy(quality["clip_score"][1 : p + 1].mean(axis=1)).float()
    switch = switch_responsiveness(scores_b, steady, ecfg.switch_threshold)

    latency = measure_stream_latency(
        lambda: streamer.sampler(text[0:1], seed),
        frames=ecfg.latency_frames,
        warmup_frames=ecfg.latency_warmup_frames,
        repeats=ecfg.latency_repeats,
        device=device,
    )
    return {
        **report,
        # None when the real clips score 0 (an untrained CLIP): no ratio exists then
        "clip_score_ratio": report["clip_score"] / real_clip if real_clip > 0 else None,
        "switch": {**switch, "switch_at": switch_at, "threshold": ecfg.switch_threshold},
        "latency": latency,
        "finite": bool(torch.isfinite(generated).all()),
    }, quality


def drift(
    streamer: Streamer,
    text: TextEmbedding,
    scenes: tuple[list[SceneSpec], list[SceneSpec]],
    resolution: int,
    ecfg: EvalConfig,
    judges: Judges,
    *,
    seed: int,
    progress: bool = False,
) -> dict:
    """Quality over long streams: ``ecfg.drift_prompts`` streams of ``ecfg.drift_frames`` frames (the
    first prompts of ``text`` / test scenes), every measure per non-overlapping window with intervals
    over prompts (``with_intervals``), the real streams of the same scenes beside them (FVD / KID
    against as many other scenes: the floor), and the paired difference of the caption mean and
    the subject consistency between the last window and the first (``change``: 0 means no drift).
    Also returns the per-prompt windows of those measures (``DRIFT_MEASURES``: ``drift/{measure}``,
    ``[m, windows]``), whose last-minus-first a method's drift is paired with another's on."""
    m, frames = ecfg.drift_prompts, ecfg.drift_frames
    test, other = (s[:m] for s in scenes)
    offsets = clip_offsets(frames, ecfg.clip_frames, ecfg.clip_frames)
    generated = streamer.videos(text[0:m], frames, seed=seed, batch_size=ecfg.batch_size, progress=progress)
    quality = window_quality(generated, test, offsets, ecfg.clip_frames, judges)
    real = window_quality(render_videos(test, frames, resolution), test, offsets, ecfg.clip_frames, judges)
    floor = judges_features(render_videos(other, frames, resolution), offsets, ecfg.clip_frames, judges)
    generator = torch.Generator().manual_seed(ecfg.seed)
    change = {
        name: paired_difference(
            mean_of(quality[name][:, -1]), mean_of(quality[name][:, 0]), m, generator,
            ecfg.bootstrap, ecfg.bootstrap_level,
        )
        for name in DRIFT_MEASURES
    }  # fmt: skip
    return {
        "prompts": m,
        "frames": frames,
        "generated": with_intervals(quality, real["features"], offsets, ecfg),
        "real": with_intervals(real, floor, offsets, ecfg),
        "change": change,
    }, {f"drift/{name}": quality[name] for name in DRIFT_MEASURES}


def evaluate_model(
    model: nn.Module,
    text_encoder: Callable[[list[str]], TextEmbedding],
    scenes: dict[str, list[SceneSpec]],
    ecfg: EvalConfig,
    judges: Judges,
    *,
    shift: float,
    device: str,
    space: nn.Module | None = None,
    progress: bool = False,
    switch_strip: str | Path | None = None,
    make_streamer: Callable[..., Streamer] = Streamer,
) -> tuple[dict, dict[str, np.ndarray]]:
    """The whole evaluation of one model (see the module docstring) as a JSON-able dict, and the
    per-prompt arrays of the paired comparisons (``paired_differences``): ``{scheme}/{measure}`` and
    ``real/{measure}`` (``[n, windows]``), their ``/features``, and the ``captions`` and ``seed``.

    ``text_encoder`` maps captions to the model's text embedding (a ``TextEncoder``); ``scenes`` holds
    the ``test`` scenes, which give the prompts (their canonical captions), as many disjoint ``floor``
    scenes for the real-vs-real floor and, when ``ecfg.heldout_prompts`` > 0, the ``heldout`` scenes of
    the held-out attribute pairs. Every scheme of ``ecfg`` streams with guidance ``ecfg.cfg_scale`` and
    time shift ``shift`` and the same noise seeds; the first also gives the drift over long streams
    and the held-out-pair row. ``space``: what the model denoises in (``autoencoder.py``; None: pixels);
    every stream is scored decoded. ``switch_strip``: where to draw the first scheme's prompt switches.
    ``make_streamer`` builds each scheme's streamer from ``Streamer``'s arguments (e.g.
    ``handoff.starting_with(teacher)``: a student's streams start from its teacher's clip).
    """
    n, resolution = ecfg.prompts, model.cfg.resolution * (1 if space is None else space.factor)
    test_scenes, floor_scenes = scenes["test"], scenes["floor"]
    if len(test_scenes) < n or len(floor_scenes) < n:
        raise ValueError(f"need {n} test and floor scenes, got {len(test_scenes)} and {len(floor_scenes)}")
    test_scenes, floor_scenes = test_scenes[:n], floor_scenes[:n]
    captions = [canonical_caption(s) for s in test_scenes]
    real = scored(
        render_videos(test_scenes, ecfg.long_frames, resolution), test_scenes, ecfg.offsets, ecfg, judges
    )
    floor = judges_features(render_videos(floor_scenes, ecfg.long_frames, resolution), ecfg.offsets,
                            ecfg.clip_frames, judges)  # fmt: skip
    real_report = quality_report(real, floor, ecfg)
    arrays = {"captions": np.array(captions), "seed": np.array(ecfg.seed)}
    arrays |= {f"real/{k}": v for k, v in real.items()} | {"floor/features": floor}
    text = text_encoder(captions)
    schemes, extra = {}, {}
    for k, scheme in enumerate(ecfg.parsed_schemes):
        streamer = make_streamer(
            model,
            text_encoder,
            scheme,
            ecfg.cfg_scale,
            shift,
            space=space,
            startup=ecfg.startup,
            context=ecfg.context,
        )
        schemes[str(scheme)], quality = evaluate_scheme(
            streamer, text, test_scenes, real, real_report["clip_score"], ecfg, judges,
            seed=ecfg.seed + 1000 * k, device=device, progress=progress,
            switch_strip=switch_strip if k == 0 else None,
        )  # fmt: skip
        arrays |= {f"{scheme}/{name}": v for name, v in quality.items()}
        if k > 0:
            continue
        if ecfg.drift_prompts:
            extra["drift"], drift_arrays = drift(
                streamer, text, (test_scenes, floor_scenes), resolution, ecfg, judges,
                seed=ecfg.seed + 7000, progress=progress,
            )  # fmt: skip
            arrays |= drift_arrays
        if ecfg.heldout_prompts:
            reference = real["features"][: ecfg.heldout_prompts, :1]
            extra["heldout"] = heldout_quality(
                streamer, scenes["heldout"], resolution, ecfg, judges, reference
            )
    return {
        "features": judges.features.name,
        "clip_model": judges.clip_name,
        "prompts": n,
        "clip_frames": ecfg.clip_frames,
        "long_frames": ecfg.long_frames,
        "cfg_scale": ecfg.cfg_scale,
        "real": real_report,
        "schemes": schemes,
        **extra,
    }, arrays


def heldout_quality(
    streamer: Streamer,
    scenes: list[SceneSpec],
    resolution: int,
    ecfg: EvalConfig,
    judges: Judges,
    test_features: np.ndarray,
) -> dict:
    """Compositional generalisation: the first window of streams of ``ecfg.heldout_prompts`` scenes of
    the held-out (colour, shape) pairs, which no training clip shows, scored as ``quality_report``
    against the real streams of the same scenes, and those real streams beside them (their ceiling;
    their FVD / KID against ``test_features`` ``[heldout_prompts, 1, d]``, the first window of as many
    real test streams: how far the held-out pairs lie from the test split)."""
    h = ecfg.heldout_prompts
    if len(scenes) < h:
        raise ValueError(f"need {h} held-out scenes, got {len(scenes)}")
    scenes = scenes[:h]
    one = dataclasses.replace(ecfg, long_frames=ecfg.clip_frames)
    text = streamer.encoder([canonical_caption(s) for s in scenes])
    generated = streamer.videos(text, ecfg.clip_frames, seed=ecfg.seed + 9000, batch_size=ecfg.batch_size)
    real = scored(render_videos(scenes, ecfg.clip_frames, resolution), scenes, [0], one, judges)
    quality = scored(generated, scenes, [0], one, judges)
    report = quality_report(quality, real["features"], one)
    return {
        "prompts": h,
        "generated": report["long_stream"],
        "real": quality_report(real, test_features, one)["long_stream"],
    }


def load_judges(ecfg: EvalConfig, evaluators_dir: str | Path, device: str) -> Judges:
    """The evaluators ``ecfg`` asks for: FVD features from I3D when ``i3d_path`` is set, else from the
    trained world video encoder; CLIP scores from ``clip_checkpoint`` when set, else from the trained
    world CLIP (both trained ones in ``evaluators_dir``, the evaluators stage's output)."""
    evaluators_dir = Path(evaluators_dir)
    classifier = load_video_encoder(evaluators_dir / "video_encoder.pt", device)
    if ecfg.i3d_path:
        features = load_i3d_torchscript(ecfg.i3d_path, device)
    else:
        features = world_feature_extractor(classifier)
    if ecfg.clip_checkpoint:
        scorer = load_pretrained_clip(ecfg.clip_model, ecfg.clip_checkpoint, device)
        return Judges(classifier, features, scorer, ecfg.clip_model)
    return Judges(classifier, features, load_clip(evaluators_dir / "clip.pt", device), "world-clip")
