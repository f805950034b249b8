"""Evaluation of a trained StreamDiT against the real world (DESIGN.md section 2).

For N test prompts (canonical captions of test clips) the model streams ``long_frames`` frames
per prompt and scheme; the real streams of the same scenes are rendered to the same length.
- FVD and CLIP score of the first ``clip_frames``-frame clip of each stream, next to the
  real-vs-real floor: FVD between the test scenes and as many disjoint val scenes, and the CLIP
  score of the real clips;
- quality over time: the same two numbers for clips at increasing offsets of the long streams
  (drift), with the floor at every offset;
- prompt-switch responsiveness: stream prompt A, switch to B (``StreamSampler.set_text``) and
  count the frames until B's per-frame CLIP score reaches a fraction of its steady state;
- latency of one interactive stream (``streamdit.latency``).
Videos are float ``[n, f, c, h, w]`` in [-1, 1] on the CPU; per-frame scores are ``[n, f]``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from einops import rearrange
from torch import nn

from streamdit.clip import ClipScorer, load_clip, load_pretrained_clip
from streamdit.config import EvalConfig
from streamdit.evaluators import (
    FeatureExtractor,
    load_i3d_torchscript,
    load_video_encoder,
    world_feature_extractor,
)
from streamdit.latency import measure_stream_latency
from streamdit.metrics import bootstrap_ci, bootstrap_frechet, frames_to_reach, frechet_distance
from streamdit.streaming import Streamer
from streamdit.text import TextEmbedding
from streamdit.video import from_uint8, save_strip, to_uint8
from streamdit.world import SceneSpec, canonical_caption, render


def render_videos(scenes: list[SceneSpec], frames: int, resolution: int) -> torch.Tensor:
    """Frames ``0 .. frames - 1`` of each scene's real stream as ``[n, frames, c, h, w]`` in [-1, 1]."""
    return torch.stack([from_uint8(render(scene, 0, frames, resolution)) for scene in scenes])


def frame_scores(scorer: ClipScorer, videos: torch.Tensor, captions: list[str]) -> torch.Tensor:
    """Per-frame CLIP scores ``[n, f]`` of videos ``[n, f, c, h, w]`` against one caption per video."""
    n, f = videos.shape[:2]
    if len(captions) != n:
        raise ValueError(f"need one caption per video: {len(captions)} captions, {n} videos")
    scores = scorer.score(
        rearrange(videos, "n f c h w -> (n f) c h w"), [c for c in captions for _ in range(f)]
    )
    return rearrange(scores, "(n f) -> n f", n=n)


def clip_features(
    videos: torch.Tensor, real: torch.Tensor, offsets: list[int], clip_frames: int, features: FeatureExtractor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Features ``[n, clips, d]`` of the ``clip_frames``-frame clips at ``offsets`` of ``videos`` and
    of ``real`` (both ``[n, F, c, h, w]``, streams of the same scenes)."""
    if videos.shape[:2] != real.shape[:2]:
        raise ValueError(f"videos {tuple(videos.shape)} and real {tuple(real.shape)} must share [n, F]")
    if max(offsets) + clip_frames > videos.shape[1]:
        raise ValueError(f"clip at {max(offsets)} of {clip_frames} frames overruns {videos.shape[1]} frames")
    spans = [slice(o, o + clip_frames) for o in offsets]
    return tuple(torch.stack([features(v[:, span]) for span in spans], dim=1) for v in (videos, real))


def quality_over_time(
    generated: torch.Tensor,
    real: torch.Tensor,
    scores: torch.Tensor,
    offsets: list[int],
    clip_frames: int,
    features: FeatureExtractor,
) -> list[dict]:
    """FVD and CLIP score of the ``clip_frames``-frame clips at ``offsets``.

    ``generated`` and ``real`` are ``[n, F, c, h, w]`` streams of the same scenes, ``scores [n, F]``
    the generated frames' CLIP scores. Returns one dict per clip: offset, fvd, clip_score.
    """
    if scores.shape != generated.shape[:2]:
        raise ValueError(f"scores {tuple(scores.shape)} must be [n, F] of generated {tuple(generated.shape)}")
    gen, ref = clip_features(generated, real, offsets, clip_frames, features)
    return [
        {
            "offset": o,
            "fvd": frechet_distance(gen[:, i], ref[:, i]),
            "clip_score": float(scores[:, o : o + clip_frames].mean()),
        }
        for i, o in enumerate(offsets)
    ]


def long_stream_quality(
    gen_feats: torch.Tensor,
    real_feats: torch.Tensor,
    scores: torch.Tensor,
    generator: torch.Generator,
    n_boot: int,
    level: float,
) -> dict:
    """Long-stream quality with bootstrap intervals over prompts.

    ``fvd``: Frechet distance between all clips of all generated streams pooled and those of the
    real streams (``clip_features``: ``[n, clips, d]``, same scenes); ``clip_score``: the mean of
    ``scores [n, F]`` over every frame of every stream. Each comes with its percentile interval
    (``*_ci``) from ``n_boot`` resamples of the n prompts (all clips of a prompt together).
    """
    d = gen_feats.shape[-1]
    per_prompt = scores.mean(dim=1)
    return {
        "fvd": frechet_distance(gen_feats.reshape(-1, d), real_feats.reshape(-1, d)),
        "fvd_ci": list(bootstrap_frechet(gen_feats, real_feats, generator, n_boot, level)),
        "clip_score": float(per_prompt.mean()),
        "clip_score_ci": list(bootstrap_ci(per_prompt, generator, n_boot, level)),
        "clips": gen_feats.shape[1],
        "level": level,
        "resamples": n_boot,
    }


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


def stream_quality(
    videos: torch.Tensor,
    real: torch.Tensor,
    scores: torch.Tensor,
    ecfg: EvalConfig,
    features: FeatureExtractor,
) -> tuple[list[dict], dict]:
    """Quality over time (``quality_over_time``) and pooled over the long streams, with bootstrap
    intervals (``long_stream_quality``), of streams ``videos`` against the real streams ``real`` of the
    same scenes; ``scores [n, F]`` are ``videos``' per-frame CLIP scores."""
    clips = quality_over_time(videos, real, scores, ecfg.offsets, ecfg.clip_frames, features)
    long_stream = long_stream_quality(
        *clip_features(videos, real, ecfg.offsets, ecfg.clip_frames, features),
        scores,
        torch.Generator().manual_seed(ecfg.seed),
        ecfg.bootstrap,
        ecfg.bootstrap_level,
    )
    return clips, long_stream


@dataclass
class Judges:
    """What scores generated streams: FVD's video features and the CLIP scorer, with the CLIP's name
    for the reports (the features carry their own)."""

    features: FeatureExtractor
    scorer: ClipScorer
    clip_name: str


def real_floor(
    real: torch.Tensor, other: torch.Tensor, captions: list[str], ecfg: EvalConfig, judges: Judges
):
    """The real-vs-real floor: real test streams ``[n, F, ...]`` against real streams of as many other
    scenes, clip by clip and pooled, with the real clips' CLIP scores. Returns the floor's dict and the
    real frames' per-frame CLIP scores ``[n, F]``."""
    real_scores = frame_scores(judges.scorer, real, captions)
    floor, long_stream = stream_quality(real, other, real_scores, ecfg, judges.features)
    return {
        "fvd_floor": floor[0]["fvd"],
        "clip_score": floor[0]["clip_score"],
        "clips": floor,
        "long_stream": long_stream,
    }, real_scores


def evaluate_scheme(
    streamer: Streamer,
    text: TextEmbedding,
    captions: list[str],
    real: torch.Tensor,
    real_clip: float,
    ecfg: EvalConfig,
    judges: Judges,
    *,
    seed: int,
    device: str,
    progress: bool = False,
    switch_strip: str | Path | None = None,
) -> dict:
    """The evaluation of one scheme (``streamer.scheme``): quality of the first clip and over time,
    prompt-switch responsiveness and latency, on the prompts ``text`` / ``captions`` whose real
    streams are ``real``; ``real_clip`` is the real clips' CLIP score (for the ratio)."""
    generated = streamer.videos(
        text, ecfg.long_frames, seed=seed, batch_size=ecfg.batch_size, progress=progress
    )
    scores = frame_scores(judges.scorer, generated, captions)
    clips, long_stream = stream_quality(generated, real, scores, ecfg, judges.features)

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
    switch = switch_responsiveness(scores_b, scores[1 : p + 1].mean(dim=1), ecfg.switch_threshold)

    latency = measure_stream_latency(
        lambda: streamer.sampler(text[0:1], seed),
        frames=ecfg.latency_frames,
        warmup_frames=ecfg.latency_warmup_frames,
        repeats=ecfg.latency_repeats,
        device=device,
    )
    return {
        "fvd": clips[0]["fvd"],
        "clip_score": clips[0]["clip_score"],
        # None when the real clips score 0 (an untrained CLIP): no ratio exists then
        "clip_score_ratio": clips[0]["clip_score"] / real_clip if real_clip > 0 else None,
        "clips": clips,
        "long_stream": long_stream,
        "switch": {**switch, "switch_at": switch_at, "threshold": ecfg.switch_threshold},
        "latency": latency,
        "finite": bool(torch.isfinite(generated).all()),
    }


def evaluate_model(
    model: nn.Module,
    text_encoder: Callable[[list[str]], TextEmbedding],
    scenes: tuple[list[SceneSpec], list[SceneSpec]],
    ecfg: EvalConfig,
    judges: Judges,
    *,
    shift: float,
    device: str,
    progress: bool = False,
    switch_strip: str | Path | None = None,
) -> dict:
    """The whole evaluation of one model (see the module docstring) as a JSON-able dict.

    ``text_encoder`` maps captions to the model's text embedding (a ``TextEncoder``); ``scenes`` are
    the test scenes, which give the prompts (their canonical captions), and as many disjoint floor
    scenes for the real-vs-real floor. Every scheme of ``ecfg`` streams with guidance
    ``ecfg.cfg_scale`` and time shift ``shift``. ``switch_strip``: where to draw the first scheme's
    prompt-switch streams (PNG), if anywhere.
    """
    n = ecfg.prompts
    test_scenes, floor_scenes = scenes
    if len(test_scenes) < n or len(floor_scenes) < n:
        raise ValueError(f"need {n} test and floor scenes, got {len(test_scenes)} and {len(floor_scenes)}")
    test_scenes, floor_scenes = test_scenes[:n], floor_scenes[:n]
    captions = [canonical_caption(s) for s in test_scenes]
    real = render_videos(test_scenes, ecfg.long_frames, model.cfg.resolution)
    other = render_videos(floor_scenes, ecfg.long_frames, model.cfg.resolution)
    floor, _ = real_floor(real, other, captions, ecfg, judges)
    text = text_encoder(captions)
    schemes = {}
    for k, scheme in enumerate(ecfg.parsed_schemes):
        streamer = Streamer(model, text_encoder, scheme, ecfg.cfg_scale, shift)
        schemes[str(scheme)] = evaluate_scheme(
            streamer, text, captions, real, floor["clip_score"], ecfg, judges,
            seed=ecfg.seed + 1000 * k, device=device, progress=progress,
            switch_strip=switch_strip if k == 0 else None,
        )  # fmt: skip
    return {
        "features": judges.features.name,
        "clip_model": judges.clip_name,
        "prompts": n,
        "clip_frames": ecfg.clip_frames,
        "long_frames": ecfg.long_frames,
        "cfg_scale": ecfg.cfg_scale,
        "real": floor,
        "schemes": schemes,
    }


def load_judges(ecfg: EvalConfig, evaluators_dir: str | Path, device: str) -> Judges:
    """The evaluators ``ecfg`` asks for: FVD features from I3D when ``i3d_path`` is set, else from the
    trained world video encoder; CLIP scores from ``clip_checkpoint`` when set, else from the trained
    world CLIP (both trained ones in ``evaluators_dir``, the evaluators stage's output)."""
    evaluators_dir = Path(evaluators_dir)
    if ecfg.i3d_path:
        features = load_i3d_torchscript(ecfg.i3d_path, device)
    else:
        features = world_feature_extractor(load_video_encoder(evaluators_dir / "video_encoder.pt", device))
    if ecfg.clip_checkpoint:
        return Judges(
            features, load_pretrained_clip(ecfg.clip_model, ecfg.clip_checkpoint, device), ecfg.clip_model
        )
    return Judges(features, load_clip(evaluators_dir / "clip.pt", device), "world-clip")
