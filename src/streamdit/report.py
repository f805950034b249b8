"""The study's front page: ``reports/README.md``, built from the stages' metrics JSON alone.

Nothing here measures anything. The tables are the rows that the evaluation stages computed
(``streamdit.evaluate``, ``streamdit.methods``), and the figures are the ones they drew. The paper's
claims are checked against the bootstrap intervals of those numbers: a difference counts only when
the intervals do not overlap. Every section says which stage and file it comes from, so a reader can
trace a number back to the code that produced it.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from streamdit.config import load_config
from streamdit.files import read_json
from streamdit.tables import (
    LATENCY_COLUMNS,
    MAIN_COLUMNS,
    QUALITY_COLUMNS,
    latency_row,
    markdown_table,
    report_rows,
)

# DESIGN.md section 1, "Baselines": the methods the paper compares StreamDiT with. Every other entry of
# params.yaml `methods` is an ablation of StreamDiT itself.
BASELINES = ("uniform_extension", "uniform_clips", "fifo", "diffusion_forcing")
# The paper's real-time bar: 16 frames/s (512p, one H100).
PAPER_FPS = 16.0
FIGURES = (
    ("Quality over stream length, every method", "comparison/quality_over_length.png"),
    ("Sample strips per method (real clip above each generated row)", "comparison/sample_strips.png"),
    (
        "Prompt switch, teacher (the new prompt takes over from the marked frame)",
        "evaluation/switch_strip.png",
    ),
    ("Latency distributions, teacher", "evaluation/latency.png"),
    ("Latency distributions, distilled student", "distill_evaluation/latency.png"),
    ("Teacher against student streams", "distill/teacher_vs_student.png"),
    ("Training loss, main model", "train/loss.png"),
)


def _read(path: Path) -> dict:
    """A stage's metrics JSON; a missing one names the file and what makes it."""
    return read_json(path, "stage metrics (run its stage first: dvc repro)")


def compare_intervals(a: dict, b: dict, measure: str, lower_is_better: bool) -> str:
    """``"better"``, ``"worse"`` or ``"indistinguishable"``: row ``a`` against row ``b`` by the
    bootstrap intervals ``{measure}_low`` / ``{measure}_high`` (overlapping intervals decide nothing)."""
    a_low, a_high, b_low, b_high = (
        a[f"{measure}_low"],
        a[f"{measure}_high"],
        b[f"{measure}_low"],
        b[f"{measure}_high"],
    )
    if a_high < b_low:
        return "better" if lower_is_better else "worse"
    if a_low > b_high:
        return "worse" if lower_is_better else "better"
    return "indistinguishable"


def claim_lines(rows: dict[str, dict], student: dict, teacher: dict, distill: dict) -> list[str]:
    """The paper's claims, each with what this run's numbers say (rows: comparison rows by method)."""
    lines = []
    ours = rows.get("mixed")
    for name in BASELINES:
        if ours is None or name not in rows:
            continue
        fvd = compare_intervals(ours, rows[name], "long_fvd", lower_is_better=True)
        clip = compare_intervals(ours, rows[name], "clip_score", lower_is_better=False)
        lines.append(
            f"- Claim: StreamDiT beats **{name}**. This run (mixed, same training budget): long-stream FVD "
            f"{ours['long_fvd']:.1f} vs {rows[name]['long_fvd']:.1f} (**{fvd}**), CLIP score "
            f"{ours['clip_score']:.1f} vs {rows[name]['clip_score']:.1f} (**{clip}**)."
        )
    if ours is not None:
        drift = ours["fvd_last_clip"] / ours["fvd_first_clip"]
        lines.append(
            "- Claim: no drift over long streams. This run (mixed): FVD of the last clip / the first "
            f"= {drift:.2f} (1 means none; above 1 means the stream degrades)."
        )
    t_m = next(iter(teacher["schemes"].values()))
    s_m = next(iter(student["schemes"].values()))
    t_nfe, s_nfe = t_m["latency"]["nfe_per_frame"], s_m["latency"]["nfe_per_frame"]
    gap = 100 * (s_m["fvd"] / t_m["fvd"] - 1)
    lines.append(
        f"- Claim: distillation keeps quality at far fewer calls. This run: NFE per frame {t_nfe:g} -> "
        f"{s_nfe:g} ({distill['teacher_scheme']} -> {distill['student_scheme']}), FVD {t_m['fvd']:.1f} -> "
        f"{s_m['fvd']:.1f} (**{gap:+.0f}%**; DESIGN.md's target is within +15%)."
    )
    fps = s_m["latency"]["frames_per_second"]
    lines.append(
        f"- Claim: real-time streaming. This run: the student streams {fps:.1f} frames/s on "
        f"{s_m['latency']['device']} ({'above' if fps >= PAPER_FPS else 'below'} the paper's "
        f"{PAPER_FPS:g} frames/s, which is a 4B model at 512p on an H100; `reports/benchmark/` times that "
        "preset on a GPU)."
    )
    return lines


def _machine_line(what: str, machine: dict | None) -> str:
    if not machine:
        return f"- {what}: not recorded"
    gpu = f", GPU {machine['gpu']}" if "gpu" in machine else ""
    return (
        f"- {what}: {machine['cpu']} ({machine['cpu_cores']} cores, {machine['torch_threads']} torch threads)"
        f"{gpu}; device `{machine['device']}`; Python {machine['python']}, PyTorch {machine['torch']}"
    )


def write_study_report(
    params_file: str | Path = "params.yaml",
    profile: str | None = None,
    metrics_dir: str | Path = "metrics",
    reports_dir: str | Path = "reports",
) -> Path:
    """Write ``reports_dir/README.md`` from ``metrics_dir``'s JSON; returns its path.

    Reads ``data``, ``train``, ``evaluators``, ``evaluate``, ``distill``, ``evaluate_student`` and
    ``comparison`` JSON (and ``methods_train/<method>.json`` for each method's training time)."""
    metrics_dir, reports_dir = Path(metrics_dir), Path(reports_dir)
    cfg = load_config(params_file, profile)
    raw = yaml.safe_load(Path(params_file).read_text())
    data = _read(metrics_dir / "data.json")
    train = _read(metrics_dir / "train.json")
    evaluators = _read(metrics_dir / "evaluators.json")
    teacher = _read(metrics_dir / "evaluate.json")
    student = _read(metrics_dir / "evaluate_student.json")
    distill = _read(metrics_dir / "distill.json")["distill"]
    comparison = _read(metrics_dir / "comparison.json")["rows"]
    by_method = {row["method"]: row for row in comparison}
    main_rows = [r for r in comparison if r["method"] in ("real data", "mixed", "streamdit_main", *BASELINES)]
    ablation_rows = [r for r in comparison if r not in main_rows]
    method_names = [r["method"] for r in comparison if r["method"] not in ("real data", "streamdit_main")]

    latency_rows = [latency_row("teacher (main model)", teacher), latency_row("student (distilled)", student)]
    method_seconds = []
    for name in method_names:
        m = _read(metrics_dir / "methods" / f"{name}.json")
        latency_rows.append(latency_row(name, m))
        train_file = metrics_dir / "methods_train" / f"{name}.json"
        if train_file.exists():
            method_seconds.append((name, _read(train_file)["train_seconds"]))

    ev, accuracy = cfg.evaluate, evaluators["video_encoder"]["val_accuracy"]
    lines = [
        "# StreamDiT-repro: study report",
        "",
        "Generated by the `report` stage (`notebooks/report.ipynb`, `streamdit.report`) from "
        "`metrics/*.json`; do not edit by hand: `dvc repro` rewrites it.",
        "",
        "## Run",
        "",
        f"- Profile: **{cfg.profile}**; model {cfg.model.dim} wide, {cfg.model.depth} blocks, "
        f"{train['parameters']:,} parameters, {cfg.model.frames}-frame buffer of "
        f"{cfg.model.resolution}x{cfg.model.resolution} pixels.",
        f"- Seeds: `seed` {raw['seed']} (data and training), `sample.seed` {cfg.sample.seed}, "
        f"`evaluate.seed` {ev.seed}. World data hash `{data['hash']}` "
        f"({data['train']['clips']} training clips).",
        f"- Evaluation: {teacher['prompts']} test prompts, streams of {teacher['long_frames']} frames, "
        f"FVD on **{teacher['features']}** features, CLIP score by **{teacher['clip_model']}**, "
        f"bootstrap intervals over prompts ({ev.bootstrap} resamples, {100 * ev.bootstrap_level:.0f}%; "
        "FVD's shifted down by the resampling bias, `metrics.bootstrap_frechet`).",
        _machine_line("Training hardware", train.get("machine")),
        _machine_line("Evaluation hardware", teacher.get("machine")),
        f"- Main model: {train['steps']} steps in {train['train_seconds'] / 60:.1f} min "
        f"({train['samples_per_second']} samples/s), loss {train['loss_first']:.3f} -> "
        f"{train['loss_last']:.3f}. Distillation: {distill['steps']} steps in "
        f"{distill['distill_seconds'] / 60:.1f} min. Evaluators: world video encoder colour / shape / "
        f"motion accuracy {accuracy['colour']:.2f} / {accuracy['shape']:.2f} / {accuracy['motion']:.2f}, "
        f"CLIP top-1 retrieval {evaluators['clip']['test_retrieval']['top1']:.2f}.",
    ]
    if method_seconds:
        lines.append(
            "- Method models trained: " + ", ".join(f"{n} {s / 60:.1f} min" for n, s in method_seconds) + "."
        )
    lines += [
        "",
        "## What the paper claims, and what this run says",
        "",
        "A difference counts only when the bootstrap intervals do not overlap.",
        "",
        *claim_lines(by_method, student, teacher, distill),
        "",
        "## StreamDiT against the baselines",
        "",
        "From `metrics/comparison.json` (`compare` stage). `long_fvd` pools every clip of the long "
        "streams; `_low` / `_high` are the bootstrap interval. `mixed` is trained with the baselines' "
        "budget; `streamdit_main` is the main model of the `train` stage.",
        "",
        *markdown_table(main_rows, MAIN_COLUMNS),
        "",
        "## Ablations",
        "",
    ]
    if ablation_rows:
        lines += markdown_table(ablation_rows, MAIN_COLUMNS)
    else:
        lines.append(
            f"None ran at the {cfg.profile} profile (its `methods.run` holds only the baselines). The gpu "
            "profile runs them all; at any profile, `dvc exp run -S 'methods_run=[...]'` with the same list "
            "in the profile's `methods.run` adds them (docs/baselines.md)."
        )
    lines += [
        "",
        "## Teacher against distilled student",
        "",
        f"From `metrics/evaluate.json` and `metrics/evaluate_student.json`. The student was distilled "
        f"{distill['steps']} steps from {distill['teacher_scheme']} into {distill['student_scheme']}.",
        "",
        *markdown_table(
            report_rows(teacher, "teacher") + report_rows(student, "student", floor=False),
            QUALITY_COLUMNS,
        ),
        "",
        "## Latency",
        "",
        "One stream (batch 1) on the evaluation device; `ttff_s`: time to the first frame (start-up "
        "included). Paper-scale and GPU timings: `reports/benchmark/benchmark.md`.",
        "",
        *markdown_table(latency_rows, LATENCY_COLUMNS),
        "",
        "## Figures",
        "",
    ]
    for title, rel in FIGURES:
        if not (reports_dir / rel).exists():
            raise FileNotFoundError(
                f"{reports_dir / rel} is missing: run the stage that draws it (dvc repro)"
            )
        lines += [f"### {title}", "", f"![{title}]({rel})", ""]
    path = reports_dir / "README.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines).rstrip() + "\n")
    return path
