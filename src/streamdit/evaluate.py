"""Evaluation of a trained StreamDiT against the real world (DESIGN.md section 2).

For N test prompts (canonical captions of test clips) the model streams ``long_frames`` frames
per prompt and scheme; the real streams of the same scenes are rendered to the same length.
- FVD and CLIP score of the first ``clip_frames``-frame window (the generated clips), next to the
  real-vs-real floor: FVD between the test scenes and as many disjoint val scenes, and the CLIP
  score of the real clips;
- quality over time: the same two numbers for windows at increasing offsets of the long streams
  (drift), with the floor at every offset;
- prompt-switch responsiveness: stream prompt A, switch to B (``StreamSampler.set_text``) and
  count the frames until B's per-frame CLIP score reaches a fraction of its steady state;
- latency of one interactive stream (``streamdit.latency``).
Videos are float ``[n, f, c, h, w]`` in [-1, 1] on the CPU; per-frame scores are ``[n, f]``.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import torch
from einops import rearrange
from torch import nn

from streamdit.config import EvalConfig
from streamdit.data import SceneSpec, canonical_caption, render
from streamdit.evaluators import ClipScorer, FeatureExtractor
from streamdit.latency import measure_stream_latency
from streamdit.metrics import bootstrap_ci, bootstrap_frechet, frechet_distance
from streamdit.progress import progress_bar
from streamdit.sampling import StreamSampler
from streamdit.schedule import Scheme
from streamdit.text import TextEmbedding
from streamdit.video import from_uint8, save_strip, to_uint8


def text_rows(text: TextEmbedding, rows: slice) -> TextEmbedding:
    """Rows ``rows`` of a batch of encoded captions."""
    return TextEmbedding(text.tokens[rows], text.mask[rows], text.pooled[rows])


def render_videos(scenes: list[SceneSpec], frames: int, resolution: int) -> torch.Tensor:
    """Frames ``0 .. frames - 1`` of each scene's real stream as ``[n, frames, c, h, w]`` in [-1, 1]."""
    return torch.stack([from_uint8(render(scene, 0, frames, resolution)) for scene in scenes])


def generate_videos(
    model: nn.Module,
    scheme: Scheme,
    text: TextEmbedding,
    frames: int,
    *,
    cfg_scale: float,
    shift: float,
    seed: int,
    batch_size: int,
    progress: bool = False,
) -> torch.Tensor:
    """``frames`` frames of one stream per text row, ``batch_size`` streams at a time.

    Batch ``i`` draws its noise from a generator seeded with ``seed + i``. Returns ``[n, frames, c, h, w]``.
    """
    n = text.tokens.shape[0]
    out = []
    bar = progress_bar(n, f"streams {scheme}", progress, unit="stream")
    for i, start in enumerate(range(0, n, batch_size)):
        rows = slice(start, min(start + batch_size, n))
        sampler = StreamSampler(
            model,
            scheme,
            text_rows(text, rows),
            cfg_scale=cfg_scale,
            shift=shift,
            generator=torch.Generator().manual_seed(seed + i),
        )
        out.append(sampler.take(frames))
        bar.update(rows.stop - rows.start)
    bar.close()
    return torch.cat(out)


def frame_scores(scorer: ClipScorer, videos: torch.Tensor, captions: list[str]) -> torch.Tensor:
    """Per-frame CLIP scores ``[n, f]`` of videos ``[n, f, c, h, w]`` against one caption per video."""
    n, f = videos.shape[:2]
    if len(captions) != n:
        raise ValueError(f"need one caption per video: {len(captions)} captions, {n} videos")
    scores = scorer.score(
        rearrange(videos, "n f c h w -> (n f) c h w"), [c for c in captions for _ in range(f)]
    )
    return rearrange(scores, "(n f) -> n f", n=n)


def window_features(
    videos: torch.Tensor, real: torch.Tensor, offsets: list[int], clip_frames: int, features: FeatureExtractor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Features ``[n, windows, d]`` of the ``clip_frames``-frame windows at ``offsets`` of ``videos`` and
    of ``real`` (both ``[n, F, c, h, w]``, streams of the same scenes)."""
    if videos.shape[:2] != real.shape[:2]:
        raise ValueError(f"videos {tuple(videos.shape)} and real {tuple(real.shape)} must share [n, F]")
    if max(offsets) + clip_frames > videos.shape[1]:
        raise ValueError(
            f"window at {max(offsets)} of {clip_frames} frames overruns {videos.shape[1]} frames"
        )
    windows = [slice(o, o + clip_frames) for o in offsets]
    return tuple(torch.stack([features(v[:, w]) for w in windows], dim=1) for v in (videos, real))


def quality_over_time(
    generated: torch.Tensor,
    real: torch.Tensor,
    scores: torch.Tensor,
    offsets: list[int],
    clip_frames: int,
    features: FeatureExtractor,
) -> list[dict]:
    """FVD and CLIP score of the ``clip_frames``-frame windows at ``offsets``.

    ``generated`` and ``real`` are ``[n, F, c, h, w]`` streams of the same scenes, ``scores [n, F]``
    the generated frames' CLIP scores. Returns one dict per window: offset, fvd, clip_score.
    """
    if scores.shape != generated.shape[:2]:
        raise ValueError(f"scores {tuple(scores.shape)} must be [n, F] of generated {tuple(generated.shape)}")
    gen, ref = window_features(generated, real, offsets, clip_frames, features)
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

    ``fvd``: Frechet distance between all windows of all generated streams pooled and those of the
    real streams (``window_features``: ``[n, windows, d]``, same scenes); ``clip_score``: the mean of
    ``scores [n, F]`` over every frame of every stream. Each comes with its percentile interval
    (``*_ci``) from ``n_boot`` resamples of the n prompts (all windows of a prompt together).
    """
    d = gen_feats.shape[-1]
    per_prompt = scores.mean(dim=1)
    return {
        "fvd": frechet_distance(gen_feats.reshape(-1, d), real_feats.reshape(-1, d)),
        "fvd_ci": list(bootstrap_frechet(gen_feats, real_feats, generator, n_boot, level)),
        "clip_score": float(per_prompt.mean()),
        "clip_score_ci": list(bootstrap_ci(per_prompt, generator, n_boot, level)),
        "windows": gen_feats.shape[1],
        "level": level,
        "resamples": n_boot,
    }


def frames_to_reach(scores: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """First frame index at which ``scores [p, f]`` reach ``targets [p]``, and whether they do.

    A row that never reaches its target counts as ``f`` frames (censored at the end of the run).
    Returns ``frames`` (long ``[p]``) and ``reached`` (bool ``[p]``).
    """
    if scores.ndim != 2 or targets.shape != scores.shape[:1]:
        raise ValueError(
            f"need scores [p, f] and targets [p], got {tuple(scores.shape)}, {tuple(targets.shape)}"
        )
    hit = scores >= targets[:, None]
    reached = hit.any(dim=1)
    first = torch.where(
        reached, hit.float().argmax(dim=1), torch.full_like(reached, scores.shape[1], dtype=torch.long)
    )
    return first.long(), reached


def switch_streams(
    model: nn.Module,
    scheme: Scheme,
    text_a: TextEmbedding,
    text_b: TextEmbedding,
    *,
    switch_frame: int,
    after: int,
    cfg_scale: float,
    shift: float,
    seed: int,
) -> tuple[torch.Tensor, int]:
    """Stream ``text_a`` and switch every row to ``text_b`` once ``switch_frame`` frames are out.

    The switch takes effect at the next chunk boundary, so the first frame made under B is
    ``switch_at`` (``switch_frame`` rounded up to a multiple of the chunk size c). Returns the
    frames ``[p, switch_at + after, c, h, w]`` and ``switch_at``.
    """
    sampler = StreamSampler(
        model, scheme, text_a, cfg_scale=cfg_scale, shift=shift, generator=torch.Generator().manual_seed(seed)
    )
    chunks = []
    while sampler.emitted < switch_frame:
        chunk = sampler.step()
        if chunk is not None:
            chunks.append(chunk.float().cpu())
    switch_at = sampler.emitted
    sampler.set_text(text_b)
    while sampler.emitted < switch_at + after:
        chunk = sampler.step()
        if chunk is not None:
            chunks.append(chunk.float().cpu())
    return torch.cat(chunks, dim=1)[:, : switch_at + after], switch_at


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


def evaluate_model(
    model: nn.Module,
    text_encoder: Callable[[list[str]], TextEmbedding],
    test_scenes: list[SceneSpec],
    floor_scenes: list[SceneSpec],
    ecfg: EvalConfig,
    features: FeatureExtractor,
    scorer: ClipScorer,
    *,
    shift: float,
    device: str,
    clip_model_name: str,
    progress: bool = False,
    switch_strip: str | Path | None = None,
) -> dict:
    """The whole evaluation of one model (see the module docstring) as a JSON-able dict.

    ``text_encoder`` maps captions to the model's text embedding (a ``TextEncoder``);
    ``test_scenes`` give the prompts (their canonical captions); ``floor_scenes`` (as many, disjoint)
    give the real-vs-real floor. ``clip_model_name`` says which CLIP scored, for the report.
    ``switch_strip``: where to draw the first scheme's prompt-switch streams (PNG), if anywhere.
    """
    n = ecfg.prompts
    if len(test_scenes) < n or len(floor_scenes) < n:
        raise ValueError(f"need {n} test and floor scenes, got {len(test_scenes)} and {len(floor_scenes)}")
    test_scenes, floor_scenes = test_scenes[:n], floor_scenes[:n]
    captions = [canonical_caption(s) for s in test_scenes]
    resolution = model.cfg.resolution
    real = render_videos(test_scenes, ecfg.long_frames, resolution)
    other = render_videos(floor_scenes, ecfg.long_frames, resolution)
    real_scores = frame_scores(scorer, real, captions)
    # The floor: real test streams against real streams of other scenes, window by window.
    floor = quality_over_time(real, other, real_scores, ecfg.offsets, ecfg.clip_frames, features)
    text = text_encoder(captions)
    result: dict = {
        "features": features.name,
        "clip_model": clip_model_name,
        "prompts": n,
        "clip_frames": ecfg.clip_frames,
        "long_frames": ecfg.long_frames,
        "cfg_scale": ecfg.cfg_scale,
        "real": {
            "fvd_floor": floor[0]["fvd"],
            "clip_score": floor[0]["clip_score"],
            "windows": floor,
            "long_stream": long_stream_quality(
                *window_features(real, other, ecfg.offsets, ecfg.clip_frames, features),
                real_scores,
                torch.Generator().manual_seed(ecfg.seed),
                ecfg.bootstrap,
                ecfg.bootstrap_level,
            ),
        },
        "schemes": {},
    }
    real_clip = result["real"]["clip_score"]
    p = ecfg.switch_pairs
    for k, scheme in enumerate(ecfg.parsed_schemes):
        seed = ecfg.seed + 1000 * k
        generated = generate_videos(
            model,
            scheme,
            text,
            ecfg.long_frames,
            cfg_scale=ecfg.cfg_scale,
            shift=shift,
            seed=seed,
            batch_size=ecfg.batch_size,
            progress=progress,
        )
        scores = frame_scores(scorer, generated, captions)
        windows = quality_over_time(generated, real, scores, ecfg.offsets, ecfg.clip_frames, features)
        long_stream = long_stream_quality(
            *window_features(generated, real, ecfg.offsets, ecfg.clip_frames, features),
            scores,
            torch.Generator().manual_seed(ecfg.seed),
            ecfg.bootstrap,
            ecfg.bootstrap_level,
        )

        # Pair i switches from prompt i to prompt i + 1, whose own stream above gives its steady state.
        switched, switch_at = switch_streams(
            model,
            scheme,
            text_rows(text, slice(0, p)),
            text_rows(text, slice(1, p + 1)),
            switch_frame=ecfg.switch_frame,
            after=ecfg.switch_after,
            cfg_scale=ecfg.cfg_scale,
            shift=shift,
            seed=seed + 500,
        )
        scores_b = frame_scores(scorer, switched[:, switch_at:], captions[1 : p + 1])
        if switch_strip is not None and k == 0:
            save_strip(
                [to_uint8(v) for v in switched],
                switch_strip,
                captions=[
                    f"{scheme}: '{captions[i]}' -> '{captions[i + 1]}' from frame {switch_at}"
                    for i in range(p)
                ],
                scale=3,
            )
        switch = switch_responsiveness(scores_b, scores[1 : p + 1].mean(dim=1), ecfg.switch_threshold)

        latency = measure_stream_latency(
            lambda scheme=scheme, seed=seed: StreamSampler(
                model,
                scheme,
                text_rows(text, slice(0, 1)),
                cfg_scale=ecfg.cfg_scale,
                shift=shift,
                generator=torch.Generator().manual_seed(seed),
            ),
            frames=ecfg.latency_frames,
            warmup_frames=ecfg.latency_warmup_frames,
            repeats=ecfg.latency_repeats,
            device=device,
        )
        result["schemes"][str(scheme)] = {
            "fvd": windows[0]["fvd"],
            "clip_score": windows[0]["clip_score"],
            # None when the real clips score 0 (an untrained CLIP): no ratio exists then
            "clip_score_ratio": windows[0]["clip_score"] / real_clip if real_clip > 0 else None,
            "windows": windows,
            "long_stream": long_stream,
            "switch": {**switch, "switch_at": switch_at, "threshold": ecfg.switch_threshold},
            "latency": latency,
            "finite": bool(torch.isfinite(generated).all()),
        }
    return result


REPORT_COLUMNS = (
    "method",
    "fvd",
    "clip_score",
    "clip_ratio",
    "fvd_last_window",
    "switch_frames",
    "switch_reached",
    "ttff_s",
    "frame_latency_ms_median",
    "frame_latency_ms_p95",
    "fps",
    "nfe_per_frame",
)


def report_rows(metrics: dict, label: str = "StreamDiT", floor: bool = True) -> list[dict]:
    """Table rows from ``evaluate_model``'s dict: the real-data floor (if ``floor``) and one row per
    evaluated scheme, named ``"{label} {scheme}"``."""
    real = metrics["real"]
    rows = [
        {
            "method": "real data (floor)",
            "fvd": real["fvd_floor"],
            "clip_score": real["clip_score"],
            "clip_ratio": 1.0,
            "fvd_last_window": real["windows"][-1]["fvd"],
        }
    ][: int(floor)]
    for name, m in metrics["schemes"].items():
        lat = m["latency"]
        rows.append(
            {
                "method": f"{label} {name}",
                "fvd": m["fvd"],
                "clip_score": m["clip_score"],
                "clip_ratio": m["clip_score_ratio"],
                "fvd_last_window": m["windows"][-1]["fvd"],
                "switch_frames": m["switch"]["frames_mean"],
                "switch_reached": m["switch"]["reached_fraction"],
                "ttff_s": lat["ttff_s"]["median"],
                "frame_latency_ms_median": 1000 * lat["frame_latency_s"]["median"],
                "frame_latency_ms_p95": 1000 * lat["frame_latency_s"]["p95"],
                "fps": lat["frames_per_second"],
                "nfe_per_frame": lat["nfe_per_frame"],
            }
        )
    return [{col: row.get(col, "") for col in REPORT_COLUMNS} for row in rows]


def _cell(value) -> str:
    if value is None:
        return ""
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def markdown_table(rows: list[dict], columns: tuple[str, ...]) -> list[str]:
    """The lines of a markdown table of ``columns`` (floats to 3 significant digits)."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return lines + ["| " + " | ".join(_cell(row[col]) for col in columns) + " |" for row in rows]


def write_table(
    rows: list[dict],
    report_dir: str | Path,
    name: str,
    preamble: list[str],
    columns: tuple[str, ...] = REPORT_COLUMNS,
) -> tuple[Path, Path]:
    """Write rows of ``columns`` as ``{name}.csv`` and as a markdown table after ``preamble``."""
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    csv_path = report_dir / f"{name}.csv"
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    lines = preamble + [""] + markdown_table(rows, columns)
    md_path = report_dir / f"{name}.md"
    md_path.write_text("\n".join(lines) + "\n")
    return md_path, csv_path


def write_report(metrics: dict, report_dir: str | Path, name: str = "evaluation") -> tuple[Path, Path]:
    """Write ``{name}.md`` and ``{name}.csv`` into ``report_dir`` from the metrics dict alone."""
    last = metrics["real"]["windows"][-1]["offset"]
    preamble = [
        "# Evaluation: StreamDiT against the real world",
        "",
        f"{metrics['prompts']} test prompts (canonical captions), clips of {metrics['clip_frames']} frames, "
        f"guidance {metrics['cfg_scale']}. FVD features: **{metrics['features']}**; CLIP score "
        f"(100 max(cos, 0), mean over frames) by **{metrics['clip_model']}**. The floor compares the test "
        f"scenes with as many disjoint val scenes: no generator can be expected to beat it at this sample "
        f"size. `fvd_last_window` is the FVD of the window at frame {last} of "
        f"{metrics['long_frames']}-frame streams (drift); `switch_frames` counts frames after a prompt "
        "switch until the new prompt's CLIP score reaches the threshold (`switch_reached`: fraction of "
        "pairs that got there). Latency is for one stream on the evaluation device.",
    ]
    return write_table(report_rows(metrics), report_dir, name, preamble)


def write_teacher_vs_student(
    teacher: dict, student: dict, distill: dict, report_dir: str | Path, name: str = "teacher_vs_student"
) -> tuple[Path, Path]:
    """The distillation report: floor, teacher and student rows from their evaluations, and the gaps.

    ``teacher`` and ``student`` are ``evaluate_model`` dicts of one scheme each; ``distill`` is the
    distillation summary (steps, NFE reduction).
    """
    rows = report_rows(teacher, "teacher") + report_rows(student, "student", floor=False)
    fvd_t, fvd_s = rows[1]["fvd"], rows[2]["fvd"]
    fps_t, fps_s = rows[1]["fps"], rows[2]["fps"]
    preamble = [
        "# Distillation: teacher against student",
        "",
        f"The student was distilled for {distill['steps']} steps from the teacher's scheme "
        f"{distill['teacher_scheme']} (guidance {teacher['cfg_scale']}) into {distill['student_scheme']} "
        f"without guidance. NFE per frame falls {rows[1]['nfe_per_frame'] / rows[2]['nfe_per_frame']:.1f}x; "
        f"frames/s rise {fps_s / fps_t:.1f}x. Student FVD is {100 * (fvd_s / fvd_t - 1):+.1f}% "
        f"relative to the teacher's (DESIGN.md target: within +15%). Same prompts, evaluators and real "
        f"clips as the main evaluation ({teacher['features']} features, {teacher['clip_model']}).",
    ]
    return write_table(rows, report_dir, name, preamble)
