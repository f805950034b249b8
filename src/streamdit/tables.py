"""Every table the study writes: rows from the metrics dicts, and markdown + CSV files of them.

- the evaluation table of one model (``report_rows``, ``write_report``) and teacher against student
  (``write_teacher_vs_student``);
- the comparison of baselines and ablations (``compare_methods``, ``write_comparison``);
- the column sets of the study's front page (``report.py``) and its latency rows (``latency_row``).
Floats are written to 3 significant digits in markdown and in full in CSV.
"""

from __future__ import annotations

import csv
from pathlib import Path

REPORT_COLUMNS = (
    "method",
    "fvd",
    "clip_score",
    "clip_ratio",
    "fvd_last_clip",
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
            "fvd_last_clip": real["clips"][-1]["fvd"],
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
                "fvd_last_clip": m["clips"][-1]["fvd"],
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
    last = metrics["real"]["clips"][-1]["offset"]
    preamble = [
        "# Evaluation: StreamDiT against the real world",
        "",
        f"{metrics['prompts']} test prompts (canonical captions), clips of {metrics['clip_frames']} frames, "
        f"guidance {metrics['cfg_scale']}. FVD features: **{metrics['features']}**; CLIP score "
        f"(100 max(cos, 0), mean over frames) by **{metrics['clip_model']}**. The floor compares the test "
        f"scenes with as many disjoint val scenes: no generator can be expected to beat it at this sample "
        f"size. `fvd_last_clip` is the FVD of the clip at frame {last} of "
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


COMPARISON_COLUMNS = (
    "method",
    "about",
    "model",
    "train_steps",
    "scheme",
    "long_fvd",
    "long_fvd_low",
    "long_fvd_high",
    "clip_score",
    "clip_score_low",
    "clip_score_high",
    "fvd_first_clip",
    "fvd_last_clip",
    "fps",
    "nfe_per_frame",
)


def comparison_row(name: str, about: str, model: str, train_steps, metrics: dict) -> dict:
    """A comparison row from one scheme's entry of an ``evaluate_model`` dict (or the real data's)."""
    long = metrics["long_stream"]
    latency = metrics.get("latency", {})
    return {
        "method": name,
        "about": about,
        "model": model,
        "train_steps": train_steps,
        "scheme": metrics.get("scheme", ""),
        "long_fvd": long["fvd"],
        "long_fvd_low": long["fvd_ci"][0],
        "long_fvd_high": long["fvd_ci"][1],
        "clip_score": long["clip_score"],
        "clip_score_low": long["clip_score_ci"][0],
        "clip_score_high": long["clip_score_ci"][1],
        "fvd_first_clip": metrics["clips"][0]["fvd"],
        "fvd_last_clip": metrics["clips"][-1]["fvd"],
        "fps": latency.get("frames_per_second", ""),
        "nfe_per_frame": latency.get("nfe_per_frame", ""),
    }


def only_scheme(metrics: dict) -> tuple[str, dict]:
    """The one evaluated scheme of a method's evaluation: its name and metrics."""
    if len(metrics["schemes"]) != 1:
        raise ValueError(f"a method's evaluation holds one scheme, got {sorted(metrics['schemes'])}")
    return next(iter(metrics["schemes"].items()))


def compare_methods(
    names: list[str], method_metrics: dict[str, dict], main_metrics: dict, main_steps: int
) -> list[dict]:
    """Rows of the comparison: the real data, every method of ``names`` (its evaluation JSON in
    ``method_metrics``) and the main StreamDiT model of the ``train`` stage (``main_metrics``, trained
    ``main_steps`` steps), each with long-stream FVD and CLIP score and their bootstrap intervals."""
    rows = [
        comparison_row("real data", "test scenes against as many val scenes", "", "", main_metrics["real"])
    ]
    for name in names:
        metrics = method_metrics[name]
        scheme, scores = only_scheme(metrics)
        about = metrics["method"]
        rows.append(
            comparison_row(
                name, about["about"], about["model_of"], about["train_steps"], {**scores, "scheme": scheme}
            )
        )
    scheme, scores = next(iter(main_metrics["schemes"].items()))
    rows.append(
        comparison_row(
            "streamdit_main",
            "StreamDiT of the train stage (mixed)",
            "main",
            main_steps,
            {**scores, "scheme": scheme},
        )
    )
    return rows


LATENCY_COLUMNS = (
    "model",
    "scheme",
    "device",
    "ttff_s",
    "frame_latency_ms_median",
    "frame_latency_ms_p95",
    "fps",
    "nfe_per_frame",
)


# The comparison's columns without the sampled model's name (it is in `about`) and the first clip.
MAIN_COLUMNS = tuple(c for c in COMPARISON_COLUMNS if c not in ("model", "fvd_first_clip"))


# The evaluation's columns without its latency times, which the latency table gives per model.
QUALITY_COLUMNS = tuple(
    c for c in REPORT_COLUMNS if c not in ("ttff_s", "frame_latency_ms_median", "frame_latency_ms_p95")
)


def latency_row(model: str, metrics: dict) -> dict:
    """One latency row from an ``evaluate_model`` dict of one scheme (its first)."""
    scheme, m = next(iter(metrics["schemes"].items()))
    lat = m["latency"]
    return {
        "model": model,
        "scheme": scheme,
        "device": lat["device"],
        "ttff_s": lat["ttff_s"]["median"],
        "frame_latency_ms_median": 1000 * lat["frame_latency_s"]["median"],
        "frame_latency_ms_p95": 1000 * lat["frame_latency_s"]["p95"],
        "fps": lat["frames_per_second"],
        "nfe_per_frame": lat["nfe_per_frame"],
    }


def write_comparison(rows: list[dict], main: dict, report_dir: str | Path) -> tuple[Path, Path]:
    """``comparison.md`` / ``.csv`` of the comparison ``rows`` (``compare_methods``); ``main`` is the
    main model's evaluation dict, whose settings the preamble states."""
    level = main["real"]["long_stream"]["level"]
    preamble = [
        "# Baselines and ablations",
        "",
        f"{main['prompts']} test prompts, streams of {main['long_frames']} frames. `long_fvd`: FVD "
        f"({main['features']} features) between all clips of {main['clip_frames']} frames at offsets "
        f"{[c['offset'] for c in main['real']['clips']]} of the generated streams, pooled, and those of "
        f"the real streams; `clip_score` ({main['clip_model']}): mean over every frame. `_low` / `_high`: "
        f"{100 * level:.0f}% percentile bootstrap intervals over the prompts "
        f"({main['real']['long_stream']['resamples']} resamples). "
        "Methods train for `train_steps` steps; `model` names the method whose model is sampled. "
        "`fps` and `nfe_per_frame` are for one stream (guidance counts 2 NFE per call).",
    ]
    return write_table(rows, report_dir, "comparison", preamble, columns=COMPARISON_COLUMNS)
