"""The pipeline's stages as plain functions: the notebooks call these, the tests call them too.

Each stage reads the validated ``Config``, calls the library, writes its artefacts and returns a
small dict of metrics that the notebook stores as JSON (``files.write_json``) for ``dvc metrics``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from streamdit.acceleration import machine_info, resolve_device
from streamdit.checkpoint import load_model, load_space
from streamdit.config import Config, DistillConfig, load_config
from streamdit.data import WorldClips, reference_prompts
from streamdit.evaluate import evaluate_model, load_judges
from streamdit.files import read_json
from streamdit.handoff import started_by, starting_with
from streamdit.methods import resolve_methods
from streamdit.plots import (
    plot_drift,
    plot_latency,
    plot_methods_over_time,
    plot_quality_over_time,
    stack_images,
)
from streamdit.quality import paired_differences, paired_drift_differences, read_arrays, write_arrays
from streamdit.streaming import Streamer, timed_stream
from streamdit.tables import (
    MAIN_ROW,
    compare_methods,
    only_scheme,
    write_comparison,
    write_paired,
    write_report,
    write_teacher_vs_student,
)
from streamdit.text import load_text_encoder
from streamdit.video import reference_strip, to_uint8, write_gif, write_mp4

# The row every method is compared with, pair by pair: StreamDiT trained with the methods' budget.
REFERENCE_METHOD = "mixed"


def prompts_to_sample(cfg: Config, count: int) -> tuple[list[str], list]:
    """``sample.prompts`` when given (no ground truth), else the first test clips' captions with their
    real streams of ``sample.frames`` frames."""
    if cfg.sample.prompts:
        return list(cfg.sample.prompts), [None] * len(cfg.sample.prompts)
    return reference_prompts(cfg.data_dir, count, cfg.sample.frames, cfg.data.resolution)


def sample_streams(
    cfg: Config, model_path: str | Path, out_dir: str | Path, report_dir: str | Path, count: int = 4
) -> dict:
    """Stream ``sample.frames`` frames for each prompt (``prompts_to_sample``) with the sample scheme.

    Writes an MP4 and a GIF per prompt to ``out_dir`` and a strip (real row above each generated
    row) to ``report_dir``. Returns calls, NFE and wall-clock speed."""
    device = resolve_device(cfg.sample.device)
    model, _ = load_model(model_path, device)
    encoder = load_text_encoder(cfg.text.encoder, cfg.text.max_length)
    sample = cfg.sample
    streamer = Streamer(model, encoder, sample.parsed_scheme, sample.cfg_scale, sample.time_shift,
                        space=load_space(model_path, device), context=sample.context)  # fmt: skip
    prompts, real = prompts_to_sample(cfg, count)
    video, stats = timed_stream(streamer, encoder(prompts), cfg.sample.frames, cfg.sample.seed)
    frames = [to_uint8(v) for v in video]
    for i, stream in enumerate(frames):
        write_mp4(stream, Path(out_dir) / f"stream_{i}.mp4", fps=cfg.sample.fps, scale=2)
        write_gif(stream, Path(out_dir) / f"stream_{i}.gif", fps=cfg.sample.fps, scale=2)
    label = f"generated ({streamer.scheme}, cfg {streamer.cfg_scale})"
    reference_strip(Path(report_dir) / "sample_strip.png", prompts, real, {label: frames})
    return {**stats, "streams": len(prompts), "frames_per_stream": cfg.sample.frames, "device": device}


def sample_teacher_vs_student(
    cfg: Config,
    dcfg: DistillConfig,
    teacher_path: str | Path,
    student_path: str | Path,
    report_dir: str | Path,
    count: int = 4,
) -> dict:
    """Stream the prompts with the teacher (its scheme, guided) and the distilled student (s = 1,
    unguided) from the same seed, and draw real / teacher / student rows in one strip.

    Both buffers have the same shape and take in chunks of the same size, so they draw the same
    noise: the rows differ only by the model. The student's streams start from the teacher's clip
    (``teacher_streamer``). Returns, per model, the scheme, model calls, NFE per frame in the steady
    stream and rough frames per second (``latency.py`` measures properly)."""
    device = resolve_device(cfg.sample.device)
    encoder = load_text_encoder(cfg.text.encoder, cfg.text.max_length)
    prompts, real = prompts_to_sample(cfg, count)
    text = encoder(prompts)
    teacher = teacher_streamer(dcfg, teacher_path, encoder, device)
    student, _ = load_model(student_path, device)
    student = started_by(
        Streamer(student, encoder, dcfg.teacher_scheme.distilled(), 1.0, dcfg.time_shift,
                 space=load_space(student_path, device)), teacher
    )  # fmt: skip
    videos, metrics = {}, {}
    for name, streamer in {"teacher": teacher, "student": student}.items():
        scheme, cfg_scale = streamer.scheme, streamer.cfg_scale
        video, metrics[name] = timed_stream(streamer, text, cfg.sample.frames, cfg.sample.seed)
        videos[f"{name} ({scheme}, cfg {cfg_scale})"] = [to_uint8(v) for v in video]
    metrics["nfe_reduction"] = metrics["teacher"]["nfe_per_frame"] / metrics["student"]["nfe_per_frame"]
    reference_strip(Path(report_dir) / "teacher_vs_student.png", prompts, real, videos)
    return metrics


def teacher_streamer(dcfg: DistillConfig, teacher_path: str | Path, encoder, device: str) -> Streamer:
    """The distillation teacher as it streams: ``distill.teacher`` with guidance ``distill.cfg_scale``
    on the grid of ``distill.time_shift``. It also starts every stream of its student: the paper's
    start-up (``handoff.started_by``), so the student, distilled without start-up buffers
    (``distill.startup_prob`` 0), only ever meets steady buffers."""
    model, _ = load_model(teacher_path, device)
    return Streamer(model, encoder, dcfg.teacher_scheme, dcfg.cfg_scale, dcfg.time_shift,
                    space=load_space(teacher_path, device))  # fmt: skip


def evaluate_streamdit(
    cfg: Config,
    model_path: str | Path,
    evaluators_dir: str | Path,
    report_dir: str | Path,
    arrays_file: str | Path,
    progress=False,
    distilled: bool = False,
    teacher_path: str | Path | None = None,
) -> dict:
    """Evaluate a trained StreamDiT against the real world (``streamdit.evaluate``), with the
    evaluators ``evaluate.load_judges`` picks. A ``distilled`` student runs the student scheme of
    ``distill.teacher`` without guidance instead of ``evaluate.schemes``, each stream started from the
    clip of its teacher at ``teacher_path`` (``teacher_streamer``; None: from noise). Writes
    ``evaluation.md`` / ``.csv`` and figures to ``report_dir`` and the per-prompt arrays of the paired
    comparisons to ``arrays_file``; returns the metrics dict."""
    ecfg, report_dir = cfg.evaluate, Path(report_dir)
    if distilled:
        student = cfg.distill.teacher_scheme.distilled()
        ecfg = dataclasses.replace(ecfg, schemes=[dataclasses.astuple(student)], cfg_scale=1.0)
    if teacher_path is not None and not distilled:
        raise ValueError("teacher_path starts a distilled student's streams: pass distilled=True too")
    device = resolve_device(cfg.sample.device)
    model, _ = load_model(model_path, device)
    encoder = load_text_encoder(cfg.text.encoder, cfg.text.max_length)
    make_streamer = Streamer
    if teacher_path is not None:
        make_streamer = starting_with(teacher_streamer(cfg.distill, teacher_path, encoder, device))
    splits = {"test": "test", "floor": "val", "heldout": "heldout"}
    scenes = {key: WorldClips(Path(cfg.data_dir), split, length=1).scenes for key, split in splits.items()}
    metrics, arrays = evaluate_model(
        model,
        encoder,
        scenes,
        ecfg,
        load_judges(ecfg, evaluators_dir, device),
        shift=cfg.sample.time_shift,
        device=device,
        space=load_space(model_path, device),
        progress=progress,
        switch_strip=report_dir / "switch_strip.png",
        make_streamer=make_streamer,
    )
    if distilled:
        metrics["started_by"] = None if teacher_path is None else str(teacher_path)
    metrics["machine"] = machine_info(device)
    write_arrays(arrays, arrays_file)
    write_report(metrics, report_dir)
    plot_quality_over_time(metrics, report_dir / "quality_over_time.png")
    plot_latency(metrics, report_dir / "latency.png")
    if "drift" in metrics:
        plot_drift(metrics, report_dir / "drift.png")
    return metrics


def compare_teacher_student(
    cfg: Config,
    teacher_metrics_file: str | Path,
    student_metrics: dict,
    distill_metrics_file: str | Path,
    arrays_files: tuple[str | Path, str | Path],
    report_dir,
) -> Path:
    """Write the teacher-vs-student table from the teacher's evaluation JSON, the student's metrics
    and the distillation JSON, with the paired differences student - teacher from their per-prompt
    ``arrays_files`` (teacher's, student's; same prompts and noise); returns the markdown file and
    stores the differences in ``student_metrics["paired_vs_teacher"]``."""
    teacher = read_json(teacher_metrics_file, "teacher evaluation")
    distill = read_json(distill_metrics_file, "distillation metrics")["distill"]
    teacher_arrays, student_arrays = (read_arrays(f) for f in arrays_files)
    student_key, teacher_key = next(iter(student_metrics["schemes"])), next(iter(teacher["schemes"]))
    paired = paired_differences(student_arrays, student_key, teacher_arrays, teacher_key, cfg.evaluate)
    student_metrics["paired_vs_teacher"] = paired
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
    arrays_dir: str | Path = "evaluations/methods",
    main_arrays_file: str | Path = "evaluations/streamdit.npz",
) -> dict:
    """The comparison of the profile's methods (``streamdit.methods``) and the main model.

    Reads each method's evaluation ``metrics_dir/<method>.json`` (its strip in
    ``methods_reports_dir/<method>/evaluation``) and the main model's ``main_metrics_file``; writes
    ``comparison.md`` / ``.csv``, quality over stream length of every method and the stacked sample
    strips to ``report_dir``; the drift over long streams of the methods that measure it (and of the
    main model beside them) goes to the returned ``drift``. Every method's paired differences
    (``evaluate.paired_differences``, from the per-prompt arrays in ``arrays_dir``) from StreamDiT go to
    ``paired.md``: from ``REFERENCE_METHOD``
    when the methods include it, else from the main model (``main_arrays_file``), which every method
    matches in budget when ``methods.train`` adds nothing to the train section. Returns the rows and the
    differences."""
    methods = resolve_methods(params_file, profile)
    method_metrics = {
        name: read_json(Path(metrics_dir) / f"{name}.json", "method evaluation") for name in methods.run
    }
    main = read_json(main_metrics_file, "main evaluation")
    rows = compare_methods(
        methods.run, method_metrics, main, read_json(main_train_file, "training metrics")["steps"]
    )
    write_comparison(rows, main, report_dir)
    paired = {}
    arrays = {name: read_arrays(Path(arrays_dir) / f"{name}.npz") for name in methods.run}
    if REFERENCE_METHOD in methods.run:
        reference, ref, ref_key = (REFERENCE_METHOD, arrays[REFERENCE_METHOD],
                                   only_scheme(method_metrics[REFERENCE_METHOD])[0])  # fmt: skip
    elif methods.train:
        reference = None  # the main model trained on another budget than the methods: nothing to pair
    else:
        reference, ref, ref_key = MAIN_ROW, read_arrays(main_arrays_file), next(iter(main["schemes"]))
    if reference is not None:
        cfg = load_config(params_file, profile)
        for name in methods.run:
            if name != reference:
                key = only_scheme(method_metrics[name])[0]
                paired[name] = paired_differences(arrays[name], key, ref, ref_key, cfg.evaluate)
        write_paired(paired, reference, main, report_dir)
    clips = {name: only_scheme(method_metrics[name])[1]["clips"] for name in methods.run}
    clips[MAIN_ROW] = next(iter(main["schemes"].values()))["clips"]
    plot_methods_over_time(clips, main["real"]["clips"], Path(report_dir) / "quality_over_length.png")
    strips = {
        f"{n}: {method_metrics[n]['method']['about']}": Path(methods_reports_dir)
        / n
        / "evaluation"
        / "sample_strip.png"
        for n in methods.run
    }
    stack_images(strips, Path(report_dir) / "sample_strips.png")
    drift = {name: method_metrics[name]["drift"] for name in methods.run if "drift" in method_metrics[name]}
    if drift and "drift" in main:
        drift[MAIN_ROW] = main["drift"]
    if len(drift) > 1:  # every drift curve against StreamDiT's real streams (the same scenes for all)
        curves = {name: d["generated"] for name, d in drift.items()}
        plot_methods_over_time(curves, drift[MAIN_ROW]["real"], Path(report_dir) / "drift_over_length.png")
    drift = {name: {k: d[k] for k in ("prompts", "frames", "change")} for name, d in drift.items()}
    if reference is not None and MAIN_ROW in drift:  # every drift row paired with StreamDiT's on its streams
        main_arrays, ecfg = read_arrays(main_arrays_file), load_config(params_file, profile).evaluate
        for name in (n for n in drift if n != MAIN_ROW):
            drift[name]["minus_main"] = paired_drift_differences(arrays[name], main_arrays, ecfg)
    return {"rows": rows, "paired_vs": reference, "paired": paired, "drift": drift}
