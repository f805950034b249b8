"""The pipeline's stages as plain functions: the notebooks call these, the tests call them too.

Each stage reads the validated ``Config``, writes its artefacts and returns a small dict
of metrics that the notebook stores as JSON for ``dvc metrics``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

from streamdit.acceleration import machine_info
from streamdit.config import Config, DistillConfig, resolve_device
from streamdit.data import SPLITS, WorldClips, check_pinned, render
from streamdit.distill import nfe_per_frame, student_scheme
from streamdit.evaluate import evaluate_model, write_report, write_table, write_teacher_vs_student
from streamdit.evaluators import (
    load_clip,
    load_i3d_torchscript,
    load_pretrained_clip,
    load_video_encoder,
    save_evaluator,
    train_clip,
    train_video_encoder,
    world_feature_extractor,
)
from streamdit.methods import COMPARISON_COLUMNS, compare_methods, only_scheme, resolve_methods
from streamdit.plots import (
    plot_evaluators,
    plot_latency,
    plot_methods_over_time,
    plot_quality_over_time,
    stack_images,
)
from streamdit.sampling import StreamSampler
from streamdit.schedule import Scheme
from streamdit.text import TextEmbedding, load_text_encoder
from streamdit.train import load_model
from streamdit.video import save_strip, to_uint8, write_gif, write_mp4


def write_json(obj: dict, path: str | Path) -> Path:
    """Write ``obj`` as indented JSON (the format every stage's metrics use)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    return path


def describe_data(
    cfg: Config, report_dir: str | Path, dvc_file: str | Path = "data.dvc", rows_per_split: int = 3
) -> dict:
    """Check the world against its pin and that every split loads with the configured buffer;
    draw a strip per split. Returns the hash, per-split clip counts and caption statistics.
    """
    report_dir = Path(report_dir)
    stats: dict[str, dict | str] = {"hash": check_pinned(Path(cfg.data_dir), Path(dvc_file))}
    for split in SPLITS:
        clips = WorldClips(Path(cfg.data_dir), split, window=cfg.model.frames, generator_seed=cfg.seed)
        captions = clips.captions
        stats[split] = {
            "clips": len(clips),
            "unique_captions": len(set(captions)),
            "mean_caption_words": round(float(np.mean([len(c.split()) for c in captions])), 2),
        }
        shown = range(min(rows_per_split, len(clips)))
        save_strip(
            [np.asarray(clips.clips[i]) for i in shown],
            report_dir / f"{split}_strip.png",
            captions=[captions[i] for i in shown],
        )
    return stats


def evaluation_prompts(cfg: Config, count: int) -> tuple[list[str], list[np.ndarray | None]]:
    """Prompts to sample and, for each, a real reference clip (None for a user prompt).

    ``sample.prompts`` when given; otherwise the canonical captions of the first test clips,
    whose ground truth is rendered to the same length as the stream for side-by-side strips.
    """
    if cfg.sample.prompts:
        return list(cfg.sample.prompts), [None] * len(cfg.sample.prompts)
    test = WorldClips(Path(cfg.data_dir), "test", window=cfg.model.frames)
    scenes = test.scenes[:count]
    real = [render(scene, 0, cfg.sample.frames, cfg.data.resolution) for scene in scenes]
    return test.canonical_captions[:count], real


def timed_stream(
    model, scheme: Scheme, text: TextEmbedding, cfg_scale: float, shift: float, seed: int, frames: int
) -> tuple[torch.Tensor, dict]:
    """``frames`` frames of one stream per text row from ``seed``: the video ``[b, f, c, h, w]`` and its
    scheme, guidance, model calls (start-up included), steady NFE per frame and rough frames/s
    (``latency.py`` measures speed properly)."""
    sampler = StreamSampler(
        model, scheme, text, cfg_scale=cfg_scale, shift=shift, generator=torch.Generator().manual_seed(seed)
    )
    start = time.perf_counter()
    video = sampler.take(frames)
    seconds = time.perf_counter() - start
    return video, {
        "scheme": str(scheme),
        "cfg_scale": cfg_scale,
        "model_calls": sampler.calls,
        "nfe_per_frame": nfe_per_frame(scheme, cfg_scale),  # in the steady stream
        "frames_per_second": round(video.shape[0] * frames / seconds, 2),
        "finite": bool(torch.isfinite(video).all()),
    }


def sample_streams(
    cfg: Config, model_path: str | Path, out_dir: str | Path, report_dir: str | Path, count: int = 4
) -> dict:
    """Stream ``sample.frames`` frames for each evaluation prompt with the sample scheme.

    Writes an MP4 and a GIF per prompt to ``out_dir`` and a strip (real row above each
    generated row) to ``report_dir``. Returns calls, NFE and wall-clock speed.
    """
    out_dir, report_dir = Path(out_dir), Path(report_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.sample.device)
    model, _ = load_model(model_path, device)
    encoder = load_text_encoder(cfg.text.encoder, cfg.text.max_length)
    prompts, real = evaluation_prompts(cfg, count)
    scheme = cfg.sample.parsed_scheme
    video, stats = timed_stream(
        model,
        scheme,
        encoder(prompts),
        cfg.sample.cfg_scale,
        cfg.sample.time_shift,
        cfg.sample.seed,
        cfg.sample.frames,
    )

    rows, captions = [], []
    for i, prompt in enumerate(prompts):
        frames = to_uint8(video[i])
        write_mp4(frames, out_dir / f"stream_{i}.mp4", fps=cfg.sample.fps, scale=4)
        write_gif(frames, out_dir / f"stream_{i}.gif", fps=cfg.sample.fps, scale=4)
        if real[i] is not None:
            rows.append(real[i])
            captions.append(f"real: {prompt}")
        rows.append(frames)
        captions.append(f"generated ({scheme}, cfg {cfg.sample.cfg_scale}): {prompt}")
    save_strip(rows, report_dir / "sample_strip.png", captions=captions, scale=3)
    return {**stats, "streams": len(prompts), "frames_per_stream": cfg.sample.frames, "device": device}


def sample_teacher_vs_student(
    cfg: Config,
    dcfg: DistillConfig,
    teacher_path: str | Path,
    student_path: str | Path,
    report_dir: str | Path,
    count: int = 4,
) -> dict:
    """Stream the evaluation prompts with the teacher (its scheme, guided) and the distilled student
    (s = 1, unguided) from the same seed, and draw real / teacher / student rows in one strip.

    Both buffers have the same shape and take in chunks of the same size, so they draw the same
    noise: the rows differ only by the model. Returns, per model, the scheme, model calls, NFE
    per frame in the steady stream and rough frames per second (``latency.py`` measures properly).
    """
    report_dir = Path(report_dir)
    device = resolve_device(cfg.sample.device)
    encoder = load_text_encoder(cfg.text.encoder, cfg.text.max_length)
    prompts, real = evaluation_prompts(cfg, count)
    text = encoder(prompts)
    runs = {
        "teacher": (teacher_path, dcfg.teacher_scheme, dcfg.cfg_scale),
        "student": (student_path, student_scheme(dcfg.teacher_scheme), 1.0),
    }
    videos, metrics = {}, {}
    for name, (path, scheme, cfg_scale) in runs.items():
        model, _ = load_model(path, device)
        videos[name], metrics[name] = timed_stream(
            model, scheme, text, cfg_scale, dcfg.time_shift, cfg.sample.seed, cfg.sample.frames
        )
    metrics["nfe_reduction"] = metrics["teacher"]["nfe_per_frame"] / metrics["student"]["nfe_per_frame"]

    rows, captions = [], []
    for i, prompt in enumerate(prompts):
        if real[i] is not None:
            rows.append(real[i])
            captions.append(f"real: {prompt}")
        for name in runs:
            rows.append(to_uint8(videos[name][i]))
            captions.append(f"{name} ({metrics[name]['scheme']}, cfg {metrics[name]['cfg_scale']}): {prompt}")
    save_strip(rows, report_dir / "teacher_vs_student.png", captions=captions, scale=3)
    return metrics


def train_evaluators(
    cfg: Config, out_dir: str | Path, report_dir: str | Path, progress: bool = False
) -> dict:
    """Train the world video encoder (FVD features) and the world CLIP (``evaluate`` section).

    Writes ``video_encoder.pt`` and ``clip.pt`` to ``out_dir`` and a figure to ``report_dir``.
    Returns their metrics: held-out attribute accuracies and caption retrieval against chance.
    """
    ecfg, out_dir = cfg.evaluate, Path(out_dir)
    device = resolve_device(cfg.sample.device)
    encoder, encoder_metrics = train_video_encoder(
        cfg.data_dir,
        steps=ecfg.encoder_steps,
        batch_size=ecfg.encoder_batch_size,
        lr=ecfg.encoder_lr,
        seed=ecfg.seed,
        device=device,
        progress=progress,
    )
    save_evaluator(encoder, encoder.cfg, out_dir / "video_encoder.pt")
    scorer, clip_metrics = train_clip(
        cfg.data_dir,
        steps=ecfg.clip_steps,
        batch_size=ecfg.clip_batch_size,
        lr=ecfg.clip_lr,
        seed=ecfg.seed,
        device=device,
        progress=progress,
    )
    save_evaluator(scorer.model, scorer.cfg, out_dir / "clip.pt")
    metrics = {"video_encoder": encoder_metrics, "clip": clip_metrics, "device": device}
    plot_evaluators(metrics, Path(report_dir) / "evaluators.png")
    return metrics


def evaluate_streamdit(
    cfg: Config,
    model_path: str | Path,
    evaluators_dir: str | Path,
    report_dir: str | Path,
    progress=False,
    distilled: bool = False,
) -> dict:
    """Evaluate a trained StreamDiT against the real world (``streamdit.evaluate``).

    FVD uses I3D when ``evaluate.i3d_path`` is set, else the trained world video encoder; CLIP
    scores use ``evaluate.clip_checkpoint`` when set, else the trained world CLIP. A ``distilled``
    student runs the student scheme of ``distill.teacher`` without guidance instead of
    ``evaluate.schemes``. Writes ``evaluation.md`` / ``.csv`` and figures to ``report_dir`` and
    returns the metrics dict.
    """
    ecfg, evaluators_dir, report_dir = cfg.evaluate, Path(evaluators_dir), Path(report_dir)
    if distilled:
        ecfg = dataclasses.replace(
            ecfg, schemes=[dataclasses.astuple(student_scheme(cfg.distill.teacher_scheme))], cfg_scale=1.0
        )
    device = resolve_device(cfg.sample.device)
    model, _ = load_model(model_path, device)
    if ecfg.i3d_path:
        features = load_i3d_torchscript(ecfg.i3d_path, device)
    else:
        features = world_feature_extractor(load_video_encoder(evaluators_dir / "video_encoder.pt", device))
    if ecfg.clip_checkpoint:
        scorer, clip_name = (
            load_pretrained_clip(ecfg.clip_model, ecfg.clip_checkpoint, device),
            ecfg.clip_model,
        )
    else:
        scorer, clip_name = load_clip(evaluators_dir / "clip.pt", device), "world-clip"
    scenes = {
        split: WorldClips(Path(cfg.data_dir), split, window=cfg.model.frames).scenes
        for split in ("test", "val")
    }
    metrics = evaluate_model(
        model,
        load_text_encoder(cfg.text.encoder, cfg.text.max_length),
        scenes["test"],
        scenes["val"],
        ecfg,
        features,
        scorer,
        shift=cfg.sample.time_shift,
        device=device,
        clip_model_name=clip_name,
        progress=progress,
        switch_strip=report_dir / "switch_strip.png",
    )
    metrics["machine"] = machine_info(device)
    write_report(metrics, report_dir)
    plot_quality_over_time(metrics, report_dir / "quality_over_time.png")
    plot_latency(metrics, report_dir / "latency.png")
    return metrics


def compare_teacher_student(
    teacher_metrics_file: str | Path, student_metrics: dict, distill_metrics_file: str | Path, report_dir
) -> Path:
    """Write the teacher-vs-student table from the teacher's evaluation JSON, the student's metrics
    and the distillation JSON; returns the markdown file."""
    teacher = json.loads(Path(teacher_metrics_file).read_text())
    distill = json.loads(Path(distill_metrics_file).read_text())["distill"]
    md_path, _ = write_teacher_vs_student(teacher, student_metrics, distill, report_dir)
    return md_path


def compare_methods_report(
    params_file: str | Path,
    profile: str | None,
    metrics_dir: str | Path,
    main_metrics_file: str | Path,
    main_train_file: str | Path,
    methods_reports_dir: str | Path,
    report_dir: str | Path,
) -> dict:
    """The comparison of the profile's methods (``streamdit.methods``) and the main model.

    Reads each method's evaluation ``metrics_dir/<method>.json`` (its strip in
    ``methods_reports_dir/<method>/evaluation``) and the main model's ``main_metrics_file``; writes
    ``comparison.md`` / ``.csv``, quality over stream length of every method and the stacked sample
    strips to ``report_dir``. Returns the table's rows."""
    methods = resolve_methods(params_file, profile)
    method_metrics = {
        name: json.loads((Path(metrics_dir) / f"{name}.json").read_text()) for name in methods.run
    }
    main = json.loads(Path(main_metrics_file).read_text())
    main_steps = json.loads(Path(main_train_file).read_text())["steps"]
    rows = compare_methods(methods.run, method_metrics, main, main_steps)
    level = main["real"]["long_stream"]["level"]
    preamble = [
        "# Baselines and ablations",
        "",
        f"{main['prompts']} test prompts, streams of {main['long_frames']} frames. `long_fvd`: FVD "
        f"({main['features']} features) between all windows of {main['clip_frames']} frames at offsets "
        f"{[w['offset'] for w in main['real']['windows']]} of the generated streams, pooled, and those of "
        f"the real streams; `clip_score` ({main['clip_model']}): mean over every frame. `_low` / `_high`: "
        f"{100 * level:.0f}% percentile bootstrap intervals over the prompts "
        f"({main['real']['long_stream']['resamples']} resamples). "
        "Methods train for `train_steps` steps; `model` names the method whose model is sampled. "
        "`fps` and `nfe_per_frame` are for one stream (guidance counts 2 NFE per call).",
    ]
    write_table(rows, report_dir, "comparison", preamble, columns=COMPARISON_COLUMNS)
    windows = {name: only_scheme(method_metrics[name])[1]["windows"] for name in methods.run}
    windows["streamdit_main"] = next(iter(main["schemes"].values()))["windows"]
    plot_methods_over_time(windows, main["real"]["windows"], Path(report_dir) / "quality_over_length.png")
    strip_dirs = {name: Path(methods_reports_dir) / name / "evaluation" for name in methods.run}
    strips = {
        f"{n}: {method_metrics[n]['method']['about']}": d / "sample_strip.png" for n, d in strip_dirs.items()
    }
    stack_images(strips, Path(report_dir) / "sample_strips.png")
    return {"rows": rows}
