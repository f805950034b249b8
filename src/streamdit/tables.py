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

MAIN_ROW = "streamdit_main"  # the comparison's row of the main model (compare_methods)
# The measures on which lower is better; every other one is better higher.
LOWER_IS_BETTER = frozenset({"flicker", "fvd", "kid"})

# Quality columns: pooled over the windows of the long streams (``quality.quality_report``), except
# `fvd_first_clip`; caption accuracy per attribute has its own table (``CAPTION_COLUMNS``).
QUALITY_MEASURES = (
    "caption_mean",
    "caption_shape",
    "subject_consistency",
    "background_consistency",
    "flicker",
    "dynamic_degree",
    "direction_agreement",
    "fvd",
    "kid",
    "clip_score",
)
REPORT_COLUMNS = (
    "method",
    *QUALITY_MEASURES,
    "fvd_first_clip",
    "switch_frames",
    "ttff_s",
    "frame_latency_ms_median",
    "frame_latency_ms_p95",
    "fps",
    "nfe_per_frame",
)
CAPTION_COLUMNS = ("method", "shape", "colour", "size", "motion", "background", "objects", "mean")


def quality_cells(summary: dict) -> dict:
    """The ``QUALITY_MEASURES`` of a pooled summary (``long_stream``)."""
    return {name: summary.get(name) for name in QUALITY_MEASURES}


def report_rows(metrics: dict, label: str = "StreamDiT", floor: bool = True) -> list[dict]:
    """Table rows from ``evaluate_model``'s dict: the real data (if ``floor``: each measure's ceiling,
    FVD / KID the real-vs-real floor) and one row per evaluated scheme, named ``"{label} {scheme}"``,
    then the held-out-pair rows when evaluated."""
    real = metrics["real"]
    rows = [{"method": "real data", **quality_cells(real["long_stream"]), "fvd_first_clip": real["fvd"]}][
        : int(floor)
    ]
    for name, m in metrics["schemes"].items():
        lat = m["latency"]
        rows.append(
            {
                "method": f"{label} {name}",
                **quality_cells(m["long_stream"]),
                "fvd_first_clip": m["fvd"],
                "switch_frames": m["switch"]["frames_mean"],
                "ttff_s": lat["ttff_s"]["median"],
                "frame_latency_ms_median": 1000 * lat["frame_latency_s"]["median"],
                "frame_latency_ms_p95": 1000 * lat["frame_latency_s"]["p95"],
                "fps": lat["frames_per_second"],
                "nfe_per_frame": lat["nfe_per_frame"],
            }
        )
    if "heldout" in metrics:
        held = metrics["heldout"]
        rows.append({"method": f"{label}, held-out pairs", **quality_cells(held["generated"])})
        if floor:
            rows.append({"method": "real data, held-out pairs", **quality_cells(held["real"])})
    return [{col: row.get(col, "") for col in REPORT_COLUMNS} for row in rows]


def caption_rows(metrics: dict, label: str = "StreamDiT", real: bool = True) -> list[dict]:
    """Caption accuracy per attribute (pooled over windows): the real clips' (the ceiling, if
    ``real``), every scheme's and the held-out pairs'."""
    entries = [("real data", metrics["real"]["long_stream"])][: int(real)]
    entries += [(f"{label} {name}", m["long_stream"]) for name, m in metrics["schemes"].items()]
    if "heldout" in metrics:
        entries.append((f"{label}, held-out pairs", metrics["heldout"]["generated"]))
        if real:
            entries.append(("real data, held-out pairs", metrics["heldout"]["real"]))
    return [
        {"method": name, **{c: summary.get(f"caption_{c}") for c in CAPTION_COLUMNS[1:]}}
        for name, summary in entries
    ]


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
    """Write ``{name}.md`` and ``{name}.csv`` into ``report_dir`` from the metrics dict alone, with the
    caption accuracy per attribute in ``{name}_captions.csv`` and a second table of the markdown."""
    offsets = [c["offset"] for c in metrics["real"]["clips"]]
    preamble = [
        "# Evaluation: StreamDiT against the real world",
        "",
        f"{metrics['prompts']} test prompts (canonical captions), streams of {metrics['long_frames']} frames "
        f"scored in windows of {metrics['clip_frames']} frames at {offsets}, pooled (each prompt's mean "
        f"over its windows, then the mean over prompts), guidance {metrics['cfg_scale']}. Caption accuracy "
        "by the world classifier; consistency, flicker, dynamic degree and direction agreement as "
        "docs/metrics.md defines them; FVD and KID on **"
        f"{metrics['features']}** features against the real windows of the same scenes (for the real "
        "row: against as many val scenes, the floor); CLIP score by "
        f"**{metrics['clip_model']}**. `switch_frames`: frames after a prompt switch until the new "
        "prompt's CLIP score reaches the threshold. Latency is for one stream on the evaluation device.",
    ]
    captions = caption_rows(metrics)
    cap_md, _ = write_table(captions, report_dir, f"{name}_captions", ["# Caption accuracy per attribute"],
                            CAPTION_COLUMNS)  # fmt: skip
    md_path, csv_path = write_table(report_rows(metrics), report_dir, name, preamble)
    md_path.write_text(md_path.read_text() + "\n" + cap_md.read_text().replace("# Caption", "## Caption"))
    return md_path, csv_path


def paired_rows(paired: dict[str, dict], measures: tuple[str, ...] = QUALITY_MEASURES) -> list[dict]:
    """One row per compared method: each measure's paired difference as ``diff [low, high]``, starred
    where the interval excludes 0."""
    rows = []
    for name, diffs in paired.items():
        row = {"method": name}
        for measure in measures:
            d = diffs.get(measure)
            row[measure] = (
                "" if d is None else f"{d['diff']:+.3g} [{d['low']:+.3g}, {d['high']:+.3g}]{'*' * d['holds']}"
            )
        rows.append(row)
    return rows


def write_paired(
    paired: dict[str, dict], reference: str, main: dict, report_dir: str | Path
) -> tuple[Path, Path]:
    """``paired.md`` / ``.csv``: every method's paired difference from ``reference`` per measure."""
    some = next(iter(next(iter(paired.values())).values())) if paired else {"level": 0.95, "resamples": 0}
    preamble = [
        f"# Paired differences from {reference}",
        "",
        f"Method minus `{reference}` on the same {main['prompts']} test prompts with the same noise seeds, "
        "pooled over windows; `[low, high]`: the "
        f"{100 * some['level']:.0f}% paired bootstrap interval over prompts ({some['resamples']} resamples, "
        "`metrics.paired_difference`); `*`: the interval excludes 0, the difference holds. Lower is better "
        "for flicker, FVD and KID, higher for the rest.",
    ]
    return write_table(paired_rows(paired), report_dir, "paired", preamble, ("method", *QUALITY_MEASURES))


def write_teacher_vs_student(
    teacher: dict, student: dict, distill: dict, report_dir: str | Path, name: str = "teacher_vs_student"
) -> tuple[Path, Path]:
    """The distillation report: real, teacher and student rows from their evaluations, the gaps, and
    the paired differences student - teacher (``student["paired_vs_teacher"]``) as a second table.

    ``teacher`` and ``student`` are ``evaluate_model`` dicts of one scheme each; ``distill`` is the
    distillation summary (steps, NFE reduction).
    """
    rows = report_rows(teacher, "teacher") + report_rows(student, "student", floor=False)
    t, st = next(iter(teacher["schemes"].values())), next(iter(student["schemes"].values()))
    fvd_t, fvd_s = t["long_stream"]["fvd"], st["long_stream"]["fvd"]
    cap_t, cap_s = t["long_stream"]["caption_mean"], st["long_stream"]["caption_mean"]
    nfe_t, nfe_s = t["latency"]["nfe_per_frame"], st["latency"]["nfe_per_frame"]
    fps_t, fps_s = t["latency"]["frames_per_second"], st["latency"]["frames_per_second"]
    started = ""
    if student.get("started_by"):  # the paper's start-up: each stream from the teacher's uniform clip
        started = f"; each of its streams starts from the teacher's uniform clip (`{student['started_by']}`)"
    preamble = [
        "# Distillation: teacher against student",
        "",
        f"The student was distilled for {distill['steps']} steps from the teacher's scheme "
        f"{distill['teacher_scheme']} (guidance {teacher['cfg_scale']}) into {distill['student_scheme']} "
        f"without guidance{started}. NFE per frame falls {nfe_t / nfe_s:.1f}x; frames/s rise "
        f"{fps_s / fps_t:.1f}x. Student FVD (pooled over windows) is {100 * (fvd_s / fvd_t - 1):+.1f}% "
        f"relative to the teacher's and its mean caption accuracy {100 * (cap_s - cap_t):+.1f} points "
        "(DESIGN.md targets: within +15% and 3 points). Same prompts, noise seeds, evaluators and real "
        f"clips as the main evaluation ({teacher['features']} features, {teacher['clip_model']}).",
    ]
    md_path, csv_path = write_table(rows, report_dir, name, preamble)
    if "paired_vs_teacher" in student:
        paired = {"student - teacher": student["paired_vs_teacher"]}
        note = (
            "Same prompts and noise; `[low, high]`: paired bootstrap interval over prompts; `*`: excludes 0."
        )
        table = markdown_table(paired_rows(paired), ("method", *QUALITY_MEASURES))
        lines = ["", "## Paired differences, student - teacher", "", note, "", *table]
        md_path.write_text(md_path.read_text() + "\n".join(lines) + "\n")
    return md_path, csv_path


COMPARISON_COLUMNS = (
    "method",
    "about",
    "model",
    "train_steps",
    "scheme",
    *QUALITY_MEASURES,
    "fvd_first_clip",
    "fvd_last_clip",
    "fps",
    "nfe_per_frame",
    "ttff_s",
    "switch_frames",
)


def comparison_row(name: str, about: str, model: str, train_steps, metrics: dict) -> dict:
    """A comparison row from one scheme's entry of an ``evaluate_model`` dict (or the real data's)."""
    latency = metrics.get("latency", {})
    return {
        "method": name,
        "about": about,
        "model": model,
        "train_steps": train_steps,
        "scheme": metrics.get("scheme", ""),
        **quality_cells(metrics["long_stream"]),
        "fvd_first_clip": metrics["clips"][0]["fvd"],
        "fvd_last_clip": metrics["clips"][-1]["fvd"],
        "fps": latency.get("frames_per_second", ""),
        "nfe_per_frame": latency.get("nfe_per_frame", ""),
        "ttff_s": latency.get("ttff_s", {}).get("median", ""),
        "switch_frames": metrics.get("switch", {}).get("frames_median", ""),
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
    ``main_steps`` steps), each with every measure pooled over the windows of its long streams."""
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
            MAIN_ROW,
            "StreamDiT of the train stage: mixed schemes c = 1, 2, 4, 8",
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
MAIN_COLUMNS = tuple(
    c for c in COMPARISON_COLUMNS if c not in ("model", "fvd_first_clip", "ttff_s", "switch_frames")
)


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
    preamble = [
        "# Baselines and ablations",
        "",
        f"{main['prompts']} test prompts, streams of {main['long_frames']} frames, every method from the "
        f"same noise seeds. Every measure is pooled over the {main['clip_frames']}-frame windows at "
        f"{[c['offset'] for c in main['real']['clips']]} (FVD and KID on {main['features']} features "
        f"against the real windows of the same scenes; CLIP score by {main['clip_model']}); "
        "`fvd_first_clip` / `fvd_last_clip`: the first and last window alone. Paired intervals of each "
        "method's difference from StreamDiT at the same budget: `paired.md`. Methods train for "
        "`train_steps` steps; `model` names the method whose model is sampled. `fps` and "
        "`nfe_per_frame` are for one stream (guidance counts 2 NFE per call), `ttff_s` its time to the "
        "first frame (median), `switch_frames` the frames a prompt switch takes to show (median over "
        "pairs).",
    ]
    return write_table(rows, report_dir, "comparison", preamble, columns=COMPARISON_COLUMNS)
