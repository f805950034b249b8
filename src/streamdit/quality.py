"""Scoring streams (DESIGN.md section 2, "Metrics", "Statistics"): what is measured per prompt and
window of a stream, how it is summarised with intervals over prompts, and the paired differences
between two methods evaluated on the same prompts with the same noise.

A window is a ``clip_frames``-frame clip of a stream. Per prompt and window: caption accuracy per
attribute from the world classifier (``evaluators.attribute_hits``), the world analogues of VBench's
dimensions (``metrics``; docs/metrics.md), the CLIP score, and the FVD / KID features. Videos are float
``[n, f, c, h, w]`` in [-1, 1] on the CPU; per-prompt arrays are float64 ``[n, windows]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from einops import rearrange

from streamdit.clip import ClipScorer
from streamdit.config import EvalConfig
from streamdit.evaluators import (
    ATTRIBUTES,
    FeatureExtractor,
    VideoEncoder,
    attribute_hits,
    classify,
    scene_labels,
)
from streamdit.files import atomic_write
from streamdit.metrics import (
    background_consistency,
    bootstrap_ci,
    bootstrap_frechet,
    bootstrap_statistics,
    direction_agreement,
    dynamic_degree,
    flicker,
    frechet_distance,
    interval,
    kernel_distance,
    mean_of,
    paired_difference,
    set_distance_of,
    subject_consistency,
)
from streamdit.world import COLOUR_RGB, SceneSpec, canonical_caption

# Per-prompt measures of a window (``window_quality``): caption accuracy per attribute of the world
# classifier (``evaluators.attribute_hits``), their mean, and the world analogues of VBench's
# dimensions (``metrics``; docs/metrics.md). Higher is better except for flicker.
CAPTION_MEASURES = tuple(f"caption_{name}" for name in ATTRIBUTES) + ("caption_mean",)
VBENCH_MEASURES = (
    "subject_consistency",
    "background_consistency",
    "flicker",
    "dynamic_degree",
    "direction_agreement",
)
MEASURES = CAPTION_MEASURES + VBENCH_MEASURES
# What drift is told by: the last window of a long stream minus its first (``evaluate.drift``).
DRIFT_MEASURES = ("caption_mean", "caption_shape", "subject_consistency")


def frame_scores(scorer: ClipScorer, videos: torch.Tensor, captions: list[str]) -> torch.Tensor:
    """Per-frame CLIP scores ``[n, f]`` of videos ``[n, f, c, h, w]`` against one caption per video."""
    n, f = videos.shape[:2]
    if len(captions) != n:
        raise ValueError(f"need one caption per video: {len(captions)} captions, {n} videos")
    scores = scorer.score(
        rearrange(videos, "n f c h w -> (n f) c h w"), [c for c in captions for _ in range(f)]
    )
    return rearrange(scores, "(n f) -> n f", n=n)


@dataclass
class Judges:
    """What scores generated streams: the world classifier (caption accuracy), FVD / KID's video
    features and the CLIP scorer, with the CLIP's name for the reports (the features carry theirs)."""

    classifier: VideoEncoder
    features: FeatureExtractor
    scorer: ClipScorer
    clip_name: str

    @property
    def shared(self) -> bool:
        """Whether the features are the classifier's own (one pass then gives logits and features)."""
        return self.features.embed == self.classifier.features


def window_quality(
    videos: torch.Tensor, scenes: list[SceneSpec], offsets: list[int], clip_frames: int, judges: Judges
) -> dict[str, np.ndarray]:
    """Per prompt and window, every measure of ``MEASURES`` (float ``[n, windows]``, NaN where one does
    not apply: direction agreement of a caption without a direction) and the FVD / KID features
    (``features``: ``[n, windows, d]``) of the ``clip_frames``-frame windows at ``offsets`` of
    ``videos [n, F, c, h, w]``, streams of ``scenes`` (their captions)."""
    if len(scenes) != len(videos):
        raise ValueError(f"need one scene per video: {len(scenes)} scenes, {len(videos)} videos")
    if max(offsets) + clip_frames > videos.shape[1]:
        raise ValueError(
            f"window at {max(offsets)} of {clip_frames} frames overruns {videos.shape[1]} frames"
        )
    labels = scene_labels(scenes)
    rgbs = [COLOUR_RGB[s.objects[0].colour] for s in scenes]
    motions = [s.objects[0].motion for s in scenes]
    columns: dict[str, list] = {name: [] for name in (*MEASURES, "features")}
    for offset in offsets:
        clip = videos[:, offset : offset + clip_frames].float()
        outputs = classify(judges.classifier, clip)
        hits = attribute_hits(outputs, labels)
        for name, value in hits.items():
            columns[f"caption_{name}"].append(value)
        columns["caption_mean"].append(torch.stack(list(hits.values())).mean(dim=0))
        columns["subject_consistency"].append(subject_consistency(clip))
        columns["background_consistency"].append(background_consistency(clip))
        columns["flicker"].append(flicker(clip))
        columns["dynamic_degree"].append(dynamic_degree(clip))
        columns["direction_agreement"].append(direction_agreement(clip, rgbs, motions))
        columns["features"].append(outputs["features"] if judges.shared else judges.features(clip))
    return {name: torch.stack(values, dim=1).double().numpy() for name, values in columns.items()}


def judges_features(videos: torch.Tensor, offsets: list[int], clip_frames: int, judges: Judges) -> np.ndarray:
    """FVD / KID features ``[n, windows, d]`` of the windows at ``offsets`` of ``videos``."""
    return torch.stack([judges.features(videos[:, o : o + clip_frames]) for o in offsets], dim=1).numpy()


def prompt_means(values: np.ndarray) -> np.ndarray:
    """Each prompt's mean over its windows ``[n]`` of ``values [n, windows]``, skipping NaN windows; NaN
    for a prompt with none (a measure that does not apply to its caption)."""
    finite = np.isfinite(values)
    counts = finite.sum(axis=1)
    return np.where(counts > 0, np.where(finite, values, 0.0).sum(axis=1) / np.maximum(counts, 1), np.nan)


def summarise(
    quality: dict[str, np.ndarray],
    real_features: np.ndarray,
    generator: torch.Generator,
    n_boot: int,
    level: float,
) -> dict:
    """Every measure of ``window_quality``'s ``quality`` as its mean over prompts (each prompt's mean
    over its windows) with a percentile bootstrap interval over prompts (``{name}_ci``), and FVD and
    KID of all windows pooled against ``real_features [n, windows, d]`` (the real windows of the same
    scenes, or of other scenes for the real-vs-real floor), FVD's interval shifted down by its
    resampling bias (``metrics.bootstrap_frechet``), KID's plain."""
    out: dict = {}
    for name in MEASURES:
        per_prompt = prompt_means(quality[name]) if np.isfinite(quality[name]).any() else None
        if per_prompt is None or np.isfinite(per_prompt).sum() < 2:
            out[name], out[f"{name}_ci"] = None, None
            continue
        per_prompt = per_prompt[np.isfinite(per_prompt)]
        out[name] = float(per_prompt.mean())
        out[f"{name}_ci"] = list(bootstrap_ci(per_prompt, generator, n_boot, level))
    feats = quality["features"]
    out["fvd"] = set_distance_of(frechet_distance, feats, real_features)(np.arange(len(feats)))
    out["fvd_ci"] = list(bootstrap_frechet(feats, real_features, generator, n_boot, level))
    kid = set_distance_of(kernel_distance, feats, real_features)
    out["kid"] = kid(np.arange(len(feats)))
    out["kid_ci"] = list(interval(bootstrap_statistics(np.arange(len(feats)), generator, n_boot, kid), level))
    return out


def per_window(quality: dict[str, np.ndarray], real_features: np.ndarray, offsets: list[int]) -> list[dict]:
    """Per window: its offset, the mean over prompts of every measure and FVD / KID against the real
    windows at the same offset."""
    rows = []
    for i, offset in enumerate(offsets):
        row = {"offset": offset}
        for name in MEASURES:
            column = quality[name][:, i]
            row[name] = float(np.nanmean(column)) if np.isfinite(column).any() else None
        row["fvd"] = frechet_distance(quality["features"][:, i], real_features[:, i])
        row["kid"] = kernel_distance(quality["features"][:, i], real_features[:, i])
        rows.append(row)
    return rows


def with_intervals(
    quality: dict[str, np.ndarray], real_features: np.ndarray, offsets: list[int], ecfg: EvalConfig
) -> list[dict]:
    """``per_window`` with bootstrap intervals over prompts per window (``{name}_ci``, the caption mean
    and the VBench measures; FVD's bias-shifted): the drift curves."""
    rows = per_window(quality, real_features, offsets)
    generator = torch.Generator().manual_seed(ecfg.seed)
    for i, row in enumerate(rows):
        window = {name: quality[name][:, i : i + 1] for name in MEASURES}
        window["features"] = quality["features"][:, i : i + 1]
        summary = summarise(
            window, real_features[:, i : i + 1], generator, ecfg.bootstrap, ecfg.bootstrap_level
        )
        row.update({k: v for k, v in summary.items() if k.endswith("_ci")})
    return rows


def scored(
    videos: torch.Tensor, scenes: list[SceneSpec], offsets: list[int], ecfg: EvalConfig, judges: Judges
) -> dict[str, np.ndarray]:
    """``window_quality`` of streams ``videos`` of ``scenes`` plus their per-frame CLIP scores
    averaged per window (``clip_score``, ``[n, windows]``)."""
    quality = window_quality(videos, scenes, offsets, ecfg.clip_frames, judges)
    scores = frame_scores(judges.scorer, videos, [canonical_caption(s) for s in scenes])
    quality["clip_score"] = np.stack(
        [scores[:, o : o + ecfg.clip_frames].mean(dim=1).double().numpy() for o in offsets], axis=1
    )
    return quality


def quality_report(quality: dict[str, np.ndarray], reference: np.ndarray, ecfg: EvalConfig) -> dict:
    """The JSON of one set of streams: pooled over windows (``long_stream``: ``summarise`` plus the
    CLIP score and its interval) and per window (``clips``: ``per_window`` plus the CLIP score), with
    FVD and KID against the ``reference`` features ``[n, windows, d]``; the first window's FVD, KID
    and CLIP score at the top."""
    generator = torch.Generator().manual_seed(ecfg.seed)
    pooled = summarise(quality, reference, generator, ecfg.bootstrap, ecfg.bootstrap_level)
    per_prompt = quality["clip_score"].mean(axis=1)
    pooled["clip_score"] = float(per_prompt.mean())
    pooled["clip_score_ci"] = list(bootstrap_ci(per_prompt, generator, ecfg.bootstrap, ecfg.bootstrap_level))
    pooled |= {
        "clips": quality["features"].shape[1],
        "level": ecfg.bootstrap_level,
        "resamples": ecfg.bootstrap,
    }
    windows = per_window(quality, reference, ecfg.offsets[: quality["features"].shape[1]])
    for i, row in enumerate(windows):
        row["clip_score"] = float(quality["clip_score"][:, i].mean())
    first = windows[0]
    return {"fvd": first["fvd"], "kid": first["kid"], "clip_score": first["clip_score"],
            "long_stream": pooled, "clips": windows}  # fmt: skip


def paired_differences(
    arrays_a: dict[str, np.ndarray], key_a: str, arrays_b: dict[str, np.ndarray], key_b: str, ecfg: EvalConfig
) -> dict:
    """Method a minus method b on the same prompts and noise, every measure pooled over windows and
    FVD / KID against the real streams, each as a paired bootstrap (``metrics.paired_difference``).

    ``arrays_a`` / ``arrays_b`` are ``evaluate_model``'s arrays (e.g. read back by
    ``read_arrays``), ``key_a`` / ``key_b`` their schemes. Different prompts or seeds raise."""
    for name in ("captions", "seed"):
        if not np.array_equal(arrays_a[name], arrays_b[name]):
            raise ValueError(f"paired differences need the same prompts and noise: the {name} differ")
    units = len(arrays_a["captions"])
    real = arrays_a["real/features"]
    generator = torch.Generator().manual_seed(ecfg.seed)
    out = {}
    for name in (*MEASURES, "clip_score"):
        a, b = (prompt_means(arr[f"{key}/{name}"]) for arr, key in ((arrays_a, key_a), (arrays_b, key_b)))
        keep = np.isfinite(a) & np.isfinite(b)
        if keep.sum() < 2:
            continue
        out[name] = paired_difference(mean_of(a[keep]), mean_of(b[keep]), int(keep.sum()), generator,
                                      ecfg.bootstrap, ecfg.bootstrap_level)  # fmt: skip
    for name, distance in (("fvd", frechet_distance), ("kid", kernel_distance)):
        out[name] = paired_difference(
            set_distance_of(distance, arrays_a[f"{key_a}/features"], real),
            set_distance_of(distance, arrays_b[f"{key_b}/features"], real),
            units, generator, ecfg.bootstrap, ecfg.bootstrap_level,
        )  # fmt: skip
    return out


def paired_drift_differences(
    arrays_a: dict[str, np.ndarray], arrays_b: dict[str, np.ndarray], ecfg: EvalConfig
) -> dict:
    """Method a's drift minus method b's over the same long streams: for each of ``DRIFT_MEASURES``, the
    paired bootstrap over the drift prompts of (last window - first) of a minus that of b. Negative:
    a loses more of the measure along the stream than b does.

    ``arrays_a`` / ``arrays_b``: ``evaluate_model``'s arrays of two models whose evaluations measured
    drift (``drift/{measure}``, ``[m, windows]``) from the same prompts and noise; else it raises."""
    for name in ("captions", "seed"):
        if not np.array_equal(arrays_a[name], arrays_b[name]):
            raise ValueError(f"paired drift needs the same prompts and noise: the {name} differ")
    missing = [
        f"drift/{n}" for n in DRIFT_MEASURES for arr in (arrays_a, arrays_b) if f"drift/{n}" not in arr
    ]
    if missing:
        raise ValueError(
            f"paired drift needs both evaluations' drift windows, missing {sorted(set(missing))} "
            "(an evaluation without drift, or written before they were stored: rerun it)"
        )
    generator = torch.Generator().manual_seed(ecfg.seed)
    out = {}
    for name in DRIFT_MEASURES:
        a, b = arrays_a[f"drift/{name}"], arrays_b[f"drift/{name}"]
        if a.shape != b.shape:
            raise ValueError(
                f"paired drift needs streams of one length on as many prompts: {a.shape} vs {b.shape}"
            )
        change_a, change_b = (mean_of(v[:, -1] - v[:, 0]) for v in (a, b))
        out[name] = paired_difference(
            change_a, change_b, len(a), generator, ecfg.bootstrap, ecfg.bootstrap_level
        )
    return out


def write_arrays(arrays: dict[str, np.ndarray], path: str | Path) -> Path:
    """``evaluate_model``'s per-prompt arrays as one ``.npz`` file (``files.atomic_write``: written
    whole or not at all)."""
    return atomic_write(path, lambda f: np.savez_compressed(f, **arrays))


def read_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """The arrays ``write_arrays`` wrote."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run the evaluation stage that writes it (dvc repro)")
    with np.load(path) as data:
        return {name: data[name] for name in data.files}
