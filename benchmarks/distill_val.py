"""Which distillation settings bring the student closest to its teacher? The val measurement behind
params.yaml's `distill` section in the paper's regime (teacher `distill.teacher`, e.g. [0, 4, 2, 4];
student [0, 4, 2, 1]: several steps per frame, one unguided call per chunk position).

Distils the study's teacher (`models/streamdit.pt`) under each variant of ``VARIANTS`` (overrides of
the `distill` section; the first is the study's own setting, whose finished run is reused), streams the
teacher (its scheme, guided) and every student (unguided) from the same noise on the first
``--prompts`` val prompts, scores them with the study's evaluation against the val scenes' real
streams, and gives every student's paired difference from the teacher (the DESIGN.md targets: caption
accuracy within 3 points, FVD within +15%) and from the study's setting. Val only: the study reports
on test.

    python benchmarks/distill_val.py [--variants default lr1e-3 ...] [--prompts 64] [--start teacher]
        [--teacher runs/seed_spread/streamdit_seed1.pt]

``no_startup`` (the best on val in reports/distill_val/) leaves a stream's start-up patterns out of the
student's training, which the coverage check of tests/test_schedule_reference.py refuses for a stream
that starts from staggered noise; ``startup0.1`` and ``startup0.25`` keep a smaller share of them
(reports/distill_startup/: ``--variants default no_startup startup0.1 startup0.25 --prompts 128 --out
reports/distill_startup``; docs/results.md). A variant's ``start``: how its student's streams fill their
first buffer: "staggered" (from noise) or "teacher" (the paper's start-up and the study's: a uniform clip of
the teacher, guided, on its own grid, whose intermediate states fill the student's buffer,
``handoff.HandoffStreamer``); with it a student never sees a start-up pattern, so ``no_startup`` is
covered (reports/distill_handoff/: ``--variants default teacher_start no_startup
no_startup_teacher_start --prompts 128 --out reports/distill_handoff``). ``--start teacher`` streams every
student as the study's `evaluate_student` stage does (from the teacher's clip) unless its variant names a
start. Variants with the same `distill` overrides share one student. ``--teacher`` distils another
teacher file of the study's settings instead, e.g. one of ``benchmarks/seed_spread.py``'s retrained
teachers: is the student's gap a property of the distillation or of one teacher?

Needs the study's outputs (data, evaluators, autoencoder, the teacher). Writes the students to
``runs/distill_val/``, ``OUT/distill_val.json`` and ``OUT/README.md`` (``--out``, default
reports/distill_val); a killed run resumes.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
from pathlib import Path

import torch
from sweep_table import cell, difference_block, val_setup

from streamdit.checkpoint import load_model, load_space
from streamdit.distill import distill
from streamdit.evaluate import evaluate_model
from streamdit.handoff import starting_with
from streamdit.quality import CAPTION_MEASURES, paired_differences
from streamdit.stages import teacher_streamer
from streamdit.streaming import Streamer

TEACHER = Path("models/streamdit.pt")
MODELS = Path("runs/distill_val")  # the students (ignored by git)
DEFAULT_OUT = Path("reports/distill_val")
VARIANTS = {
    "default": {},  # the study's distill section
    "lr1e-3": {"lr": 1e-3},
    "steps800": {"steps": 800},
    "no_startup": {"startup_prob": 0.0},
    "startup0.1": {"startup_prob": 0.1},
    "startup0.25": {"startup_prob": 0.25},
    "batch8": {"batch_size": 8},
    "steps800_lr1e-3": {"steps": 800, "lr": 1e-3},
    "teacher_start": {"start": "teacher"},
    "no_startup_teacher_start": {"startup_prob": 0.0, "start": "teacher"},
}
STARTS = ("staggered", "teacher")
SHOWN = ("caption_shape", "caption_colour", "caption_size", "caption_motion", "caption_mean",
         "subject_consistency", "dynamic_degree", "fvd")  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="benchmarks/distill_val.py", description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--prompts", type=int, default=64, help="val prompts (default 64)")
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--start", choices=STARTS, default="staggered",
                        help="how every student's streams fill their first buffer unless its variant says "
                        "otherwise (default staggered; the study's evaluate_student: teacher)")  # fmt: skip
    parser.add_argument("--teacher", type=Path, default=TEACHER,
                        help=f"the teacher's model file (default {TEACHER}, the study's)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if not args.teacher.is_file():
        raise SystemExit(f"no teacher at {args.teacher}")
    teacher_path = args.teacher
    # Another teacher's students go to a folder of their own: a student file names its variant only.
    models = MODELS if teacher_path == TEACHER else MODELS / teacher_path.stem
    if args.variants[0] != "default":
        args.variants = ["default", *[v for v in args.variants if v != "default"]]
    args.out.mkdir(parents=True, exist_ok=True)
    base, device, ecfg, scenes, encoder, judges = val_setup(args.profile, args.prompts)
    dcfg = base.distill
    teacher_key, student_scheme = str(dcfg.teacher_scheme), dcfg.teacher_scheme.distilled()

    def evaluate(path: Path, scheme, cfg_scale: float, start: str = "staggered"):
        model, space = load_model(path, device)[0], load_space(path, device)
        e = dataclasses.replace(ecfg, schemes=[dataclasses.astuple(scheme)], cfg_scale=cfg_scale)
        make = streamers(start, dcfg, encoder, device, teacher_path)
        return evaluate_model(model, encoder, scenes, e, judges, shift=dcfg.time_shift, device=device,
                              space=space, progress=True, make_streamer=make)  # fmt: skip

    # The teacher file's md5, as dvc.lock names it: which training of the study the students come from.
    teacher_md5 = hashlib.md5(teacher_path.read_bytes()).hexdigest()
    teacher, teacher_arrays = evaluate(teacher_path, dcfg.teacher_scheme, dcfg.cfg_scale)
    results = {
        "teacher": {"path": str(teacher_path), "scheme": teacher_key, "cfg_scale": dcfg.cfg_scale,
                    "md5": teacher_md5,
                    "quality": teacher["schemes"][teacher_key]["long_stream"]},
        "real": {"quality": teacher["real"]["long_stream"]},
        "students": {},
    }  # fmt: skip
    key, arrays = str(student_scheme), {}
    for name in args.variants:
        overrides = dict(VARIANTS[name])
        start = overrides.pop("start", args.start)
        variant = dataclasses.replace(dcfg, **overrides)
        # Variants that distil alike share the student of the first such variant.
        path = models / f"{next(n for n, o in VARIANTS.items() if o == overrides)}.pt"
        summary = distill(base, variant, teacher_path, path, progress=True)
        metrics, arrays[name] = evaluate(path, student_scheme, 1.0, start)
        quality = metrics["schemes"][key]["long_stream"]
        results["students"][name] = {
            "overrides": VARIANTS[name],
            "start": start,
            "distill_seconds": summary["distill_seconds"],
            "loss_last": summary["loss_last"],
            "quality": quality,
            "fvd_vs_teacher_percent": 100 * (quality["fvd"] / results["teacher"]["quality"]["fvd"] - 1),
            "minus_teacher": paired_differences(arrays[name], key, teacher_arrays, teacher_key, ecfg),
        }
        if name != "default":
            results["students"][name]["minus_default"] = paired_differences(
                arrays[name], key, arrays["default"], key, ecfg
            )
    (args.out / "distill_val.json").write_text(json.dumps(results, indent=1, default=float))
    (args.out / "README.md").write_text(readme(results, args, student_scheme))
    print(readme(results, args, student_scheme))
    return results


def streamers(start: str, dcfg, encoder, device, teacher_path: Path = TEACHER):
    """What builds the evaluation's streamers: for "staggered" plain ``Streamer``s, for "teacher" ones
    whose streams start from the guided uniform clip of the teacher at ``teacher_path`` on the teacher's
    grid (``handoff.starting_with``, as the study's student evaluation does)."""
    if start not in STARTS:
        raise ValueError(f"start must be one of {STARTS}, got {start!r}")
    if start == "staggered":
        return Streamer
    return starting_with(teacher_streamer(dcfg, teacher_path, encoder, device))


def readme(results: dict, args, student_scheme) -> str:
    """The table (real, teacher, every student) and each student's paired differences."""
    t = results["teacher"]
    path = t.get("path", str(TEACHER))  # reports written before --teacher name none: the study's
    whose = "the study's teacher" if path == str(TEACHER) else "the teacher"
    lines = [
        "# Distillation settings (val prompts)",
        "",
        f"`python benchmarks/distill_val.py --variants {' '.join(args.variants)} --prompts {args.prompts}"
        f"{'' if args.start == 'staggered' else f' --start {args.start}'}"
        f"{'' if path == str(TEACHER) else f' --teacher {path}'}"
        f"{'' if args.out == DEFAULT_OUT else f' --out {args.out}'}`: "
        f"{whose} {t['scheme']} (guidance {t['cfg_scale']}; `{path}`, md5 "
        f"`{t['md5'][:8]}...`) distilled into {student_scheme} "
        "(unguided) under each variant of the `distill` section (`default`: the study's), every model "
        "streamed from the same noise on the first val prompts and scored by the study's evaluation "
        "against the val scenes' real streams (docs/metrics.md). DESIGN.md's targets for the student: "
        "caption accuracy within 3 points of the teacher's, FVD within +15%. `start`: how a student's "
        'streams fill their first buffer ("staggered": from noise; "teacher": from the teacher\'s guided '
        "uniform clip, the paper's start-up and the study's, `handoff.HandoffStreamer`); the teacher "
        f"streams as the study's. Every student here starts {args.start!r} unless its variant names a start.",
        "",
        "| | overrides | " + " | ".join(SHOWN) + " | FVD vs teacher |",
        "|---" * (len(SHOWN) + 3) + "|",
        "| real | | " + " | ".join(cell(results["real"]["quality"], n) for n in SHOWN) + " | |",
        "| teacher | | " + " | ".join(cell(t["quality"], n) for n in SHOWN) + " | |",
    ]
    for name, s in results["students"].items():
        lines.append(
            f"| {name} | {s['overrides'] or ''} | "
            + " | ".join(cell(s["quality"], n) for n in SHOWN)
            + f" | {s['fvd_vs_teacher_percent']:+.0f}% |"
        )
    for name, s in results["students"].items():
        for against in ("minus_teacher", "minus_default"):
            if against not in s:
                continue
            other = "teacher" if against == "minus_teacher" else "default"
            measures = (*CAPTION_MEASURES, "subject_consistency", "dynamic_degree", "fvd")
            lines += difference_block(f"{name} minus {other}", s[against], measures, name, other)
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
