"""How far does the whole study move when `make study` runs again on a CPU with other kernels? The study's
verdicts set against those of a run of the same code, settings, data and seeds on another machine.

The study is bit-identical on machines that run the same kernels and not on CPUs whose instruction sets
differ (docs/pipeline.md, "Reproducibility across machines"): oneDNN and PyTorch's own kernels are chosen
by instruction set, and so is their rounding. A rerun on such a machine trains every model again from
other rounding, the whole chain from the judges to the student, with the same seeds, data order, prompts
and noise: the study perturbed by rounding alone. This sets two runs side by side from their metrics
files and ``dvc.lock``: the model files' hashes, whether the code and settings are the same, the judges
and the autoencoder, the teacher, the student and every method, and the claims' verdicts as the report
decides them (``report.claim_lines``): every method minus StreamDiT on ``report.CLAIM_MEASURES``, the
teacher's drift on caption accuracy, the student against its targets (caption accuracy within 3 points,
FVD within +15% of the teacher's) and real time (>= 16 frames/s); then the paired differences shown
beside them that decide no claim.

    python benchmarks/machine_spread.py --against REV [--this DIR|REV] [--this-machine "..."]
                                        [--that-machine "..."] [--out DIR]

A run is a git revision or a folder holding its ``metrics/`` and ``dvc.lock`` (``--this`` defaults to the
working tree, "."). The metrics record the CPU's name and core count, not its instruction set: the
``--*-machine`` texts say what ran each. Reads metrics only, no model. Writes ``OUT/machine_spread.json``
and ``OUT/README.md`` (``--out`` defaults to reports/machine_spread).
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

import yaml

from streamdit.report import BASELINES, CLAIM_MEASURES, PAPER_FPS
from streamdit.tables import LOWER_IS_BETTER

METRICS = ("data", "evaluators", "autoencoder", "base", "train", "sample", "distill", "evaluate",
           "evaluate_student", "comparison")  # fmt: skip
STAGE_OF = {"comparison": "compare"}  # the stage of a metrics file where its name differs
MODELS = ("models/evaluators", "models/autoencoder.pt", "models/base.pt", "models/streamdit.pt",
          "models/student.pt")  # fmt: skip
ATTRIBUTES = ("shape", "colour", "size", "motion", "background", "objects")
# What a row of the streams is compared on (pooled over windows; caption accuracy per attribute first).
STREAM_MEASURES = ("caption_shape", "caption_colour", "caption_size", "caption_motion", "caption_mean",
                   "subject_consistency", "dynamic_degree", "direction_agreement", "fvd",
                   "clip_score")  # fmt: skip
# DESIGN.md's targets for the student (report.claim_lines states them).
STUDENT_CAPTION_POINTS, STUDENT_FVD_GAP = 3.0, 0.15


def read_run(run: str) -> tuple[dict[str, dict], dict]:
    """A run's metrics files (``METRICS``; under ``methods`` and ``methods_train`` those of every compared
    method) and its ``dvc.lock``: from folder ``run`` when it is one, else at git revision ``run``."""
    folder = Path(run)

    def text(path: str) -> str:
        if folder.is_dir():
            if not (folder / path).is_file():
                raise FileNotFoundError(f"{folder / path} not found: run the study first (make study)")
            return (folder / path).read_text()
        done = subprocess.run(["git", "show", f"{run}:{path}"], capture_output=True, text=True)
        if done.returncode:
            raise FileNotFoundError(f"{path} at {run}: {done.stderr.strip()}")
        return done.stdout

    metrics = {name: json.loads(text(f"metrics/{name}.json")) for name in METRICS}
    for folder_name in ("methods", "methods_train"):
        metrics[folder_name] = {
            name: json.loads(text(f"metrics/{folder_name}/{name}.json"))
            for name in metrics["comparison"]["paired"]
        }
    return metrics, yaml.safe_load(text("dvc.lock"))


def model_hashes(lock: dict) -> dict[str, str]:
    """The md5 that ``dvc.lock`` records for each of ``MODELS`` (a folder's ends in ``.dir``)."""
    found = {out["path"]: out["md5"] for stage in lock["stages"].values() for out in stage.get("outs", [])}
    return {path: found.get(path, "-") for path in MODELS}


def settings_differences(a: dict, b: dict) -> list[str]:
    """Where two ``dvc.lock`` files record other code or settings for a stage both ran: its command, its
    parameters, or the md5 of a dependency in ``src/`` or ``notebooks/`` (data and models are compared
    elsewhere; their bytes follow the kernels)."""

    def settings(stage: dict) -> tuple:
        code = {
            d["path"]: d.get("md5")
            for d in stage.get("deps", [])
            if d["path"].startswith(("src/", "notebooks/"))
        }
        return stage.get("cmd"), stage.get("params"), code

    both = sorted(a["stages"].keys() & b["stages"].keys())
    return [name for name in both if settings(a["stages"][name]) != settings(b["stages"][name])]


def favours(name: str, d: dict) -> str:
    """Which term of a paired difference a - b (``metrics.paired_difference``) its verdict favours: "a",
    "b", or "none" where the interval holds 0 (lower is better for ``LOWER_IS_BETTER``)."""
    if d["verdict"] == "no difference":
        return "none"
    return "a" if (d["verdict"] == "a > b") == (name not in LOWER_IS_BETTER) else "b"


def interval(d: dict) -> str:
    return f"{d['diff']:+.3g} [{d['low']:+.3g}, {d['high']:+.3g}]"


def claim_pairs(m: dict) -> dict[str, tuple[str, str, str, dict]]:
    """The paired differences the report words a claim by, keyed by text: ``(a, b, measure, difference)``
    for every method (baselines and single-scheme models) minus StreamDiT on ``CLAIM_MEASURES``, and the
    teacher's last window minus its first on caption accuracy (the drift claim)."""
    comparison, pairs = m["comparison"], {}
    main = comparison["paired_vs"]
    methods = [n for n in comparison["paired"] if n.startswith("single_")]
    methods += [n for n in BASELINES if n in comparison["paired"]]
    for method in methods:
        for measure in CLAIM_MEASURES:
            pairs[f"{method} - {main}: {measure}"] = (
                method,
                main,
                measure,
                comparison["paired"][method][measure],
            )
    drift = m["evaluate"]["drift"]["change"]["caption_mean"]
    pairs["teacher drift: caption_mean"] = ("last window", "first window", "caption_mean", drift)
    return pairs


def shown_pairs(m: dict) -> dict[str, tuple[str, str, str, dict]]:
    """Paired differences the report shows beside its claims without deciding one by: the student minus
    the teacher (its claim is decided by ``targets``) and the teacher's drift in subject consistency."""
    student = m["evaluate_student"]["paired_vs_teacher"]
    pairs = {
        f"student - teacher: {measure}": ("student", "teacher", measure, student[measure])
        for measure in ("caption_mean", "subject_consistency", "fvd")
    }
    drift = m["evaluate"]["drift"]["change"]["subject_consistency"]
    pairs["teacher drift: subject_consistency"] = (
        "last window",
        "first window",
        "subject_consistency",
        drift,
    )
    return pairs


def targets(m: dict, rows: dict[str, dict]) -> dict[str, dict]:
    """The claims decided by a target, not an interval: the student's caption accuracy within 3 points of
    the teacher's (paired) and its pooled FVD within +15% of the teacher's; real time at 16 frames/s."""
    student = m["evaluate_student"]
    points = 100 * student["paired_vs_teacher"]["caption_mean"]["diff"]
    gap = rows["student"]["fvd"] / rows["teacher"]["fvd"] - 1
    fps = next(iter(student["schemes"].values()))["latency"]["frames_per_second"]
    return {
        "student caption accuracy within 3 points": {
            "value": points,
            "met": abs(points) <= STUDENT_CAPTION_POINTS,
        },
        "student FVD within +15% of the teacher's": {"value": gap, "met": gap <= STUDENT_FVD_GAP},
        "student at >= 16 frames/s": {"value": fps, "met": fps >= PAPER_FPS},
    }


def stream_rows(m: dict) -> dict[str, dict]:
    """The pooled measures of the real streams, the teacher, the student and every compared method."""
    rows = {
        "real": m["evaluate"]["real"]["long_stream"],
        "teacher": next(iter(m["evaluate"]["schemes"].values()))["long_stream"],
        "student": next(iter(m["evaluate_student"]["schemes"].values()))["long_stream"],
    }
    for name, metrics in m["methods"].items():
        rows[name] = next(iter(metrics["schemes"].values()))["long_stream"]
    return rows


def stage_seconds(m: dict) -> dict[str, float]:
    """Every stage's wall time (``stage_seconds`` of its metrics; the methods' as ``train_method@name`` and
    ``evaluate_method@name``)."""
    out = {STAGE_OF.get(name, name): m[name]["stage_seconds"] for name in METRICS}
    for name in m["methods"]:
        out[f"train_method@{name}"] = m["methods_train"][name]["stage_seconds"]
        out[f"evaluate_method@{name}"] = m["methods"][name]["stage_seconds"]
    return out


def training_seconds(m: dict) -> dict[str, float]:
    """The seconds of training each training stage's run records; a stage that resumed a finished run of the
    same settings (runs/) has a shorter wall time than this."""
    encoder = m["evaluators"]
    return {
        "evaluators": encoder["video_encoder"]["seconds"] + encoder["clip"]["seconds"],
        "autoencoder": m["autoencoder"]["seconds"],
        "base": m["base"]["train_seconds"],
        "train": m["train"]["train_seconds"],
        "distill": m["distill"]["distill"]["distill_seconds"],
    }


def summarise(m: dict, lock: dict) -> dict:
    """What the README shows of one run."""
    encoder = m["evaluators"]["video_encoder"]
    rows = stream_rows(m)
    return {
        "models": model_hashes(lock),
        "prompts": m["evaluate"]["prompts"],
        "judge_clips": encoder["test"]["clips"],
        "judge_test_accuracy": encoder["test"]["accuracy"],
        "clip_top1": m["evaluators"]["clip"]["test_retrieval"]["top1"],
        "autoencoder_psnr": m["autoencoder"]["test"]["psnr_db"],
        "autoencoder_decoded_accuracy": m["autoencoder"]["test"]["accuracy_decoded"],
        "loss_last": {stage: m[stage]["loss_last"] for stage in ("base", "train")},
        "streams": {name: {k: row.get(k) for k in STREAM_MEASURES} for name, row in rows.items()},
        "targets": targets(m, rows),
        "stage_seconds": stage_seconds(m),
        "training_seconds": training_seconds(m),
    }


def side_by_side(this: dict, that: dict) -> dict:
    """Each pair of two runs' ``claim_pairs`` or ``shown_pairs``: both differences, which term each
    favours and whether that is the same. Pairs only one run holds are listed under ``unmatched``."""
    out = {}
    for key in this.keys() & that.keys():
        a, b, measure, d_this = this[key]
        d_that = that[key][3]
        out[key] = {
            "terms": [a, b],
            "this": {k: d_this[k] for k in ("diff", "low", "high")} | {"favours": favours(measure, d_this)},
            "that": {k: d_that[k] for k in ("diff", "low", "high")} | {"favours": favours(measure, d_that)},
        }
        out[key]["agree"] = out[key]["this"]["favours"] == out[key]["that"]["favours"]
    order = list(this)
    return {
        "pairs": dict(sorted(out.items(), key=lambda kv: order.index(kv[0]))),
        "unmatched": sorted(this.keys() ^ that.keys()),
    }


def compare(this: tuple[dict, dict], that: tuple[dict, dict]) -> dict:
    """The JSON of the comparison: each run's summary, the code and settings that differ, the claims'
    paired differences side by side with their counts, the target claims and the pairs shown beside."""
    claims = side_by_side(claim_pairs(this[0]), claim_pairs(that[0]))
    pairs = claims["pairs"].values()
    return {
        "runs": {"this": summarise(*this), "that": summarise(*that)},
        "settings_differ": settings_differences(this[1], that[1]),
        "claims": claims,
        "agree": sum(c["agree"] for c in pairs),
        "compared": len(claims["pairs"]),
        "decided_that": sum(c["that"]["favours"] != "none" for c in pairs),
        "decided_that_kept": sum(c["that"]["favours"] != "none" and c["agree"] for c in pairs),
        "decided_this_only": sum(c["that"]["favours"] == "none" != c["this"]["favours"] for c in pairs),
        "shown": side_by_side(shown_pairs(this[0]), shown_pairs(that[0])),
    }


def fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def minutes(run: dict, stage: str) -> str:
    """A stage's wall time in minutes, with the training its run records in brackets where that is longer
    (the stage resumed a finished run)."""
    wall, trained = run["stage_seconds"][stage], run["training_seconds"].get(stage)
    text = f"{wall / 60:.1f}"
    return text if trained is None or trained <= wall else f"{text} (trained {trained / 60:.1f})"


def pair_table(pairs: dict) -> list[str]:
    """Markdown rows of ``side_by_side``'s pairs: both intervals, the term each favours, the same or not."""
    lines = ["| difference | this | that | same verdict |", "|---|---|---|---|"]
    for key, c in pairs.items():
        cells = [key]
        for side in ("this", "that"):
            won = c[side]["favours"]
            cells.append(interval(c[side]) + ("" if won == "none" else f" ({c['terms'][won == 'b']} better)"))
        lines.append("| " + " | ".join([*cells, "yes" if c["agree"] else "**no**"]) + " |")
    return lines


def readme(result: dict, args) -> str:
    this, that = result["runs"]["this"], result["runs"]["that"]
    flips = [k for k, c in result["claims"]["pairs"].items() if not c["agree"]]
    lines = [
        "# The study rerun on a CPU with other kernels",
        "",
        f'`python benchmarks/machine_spread.py --against {args.against} --this {args.this} --this-machine "'
        f'{args.this_machine}" --that-machine "{args.that_machine}"`: the study as run on **this** machine '
        f"({args.this_machine}; its metrics and `dvc.lock` in `{args.this}`) beside the study committed at "
        f"`{args.against}` (**that**: {args.that_machine}). Code and settings (commands, parameters, `src/` "
        "and notebooks in `dvc.lock`): "
        + (
            "the same in every stage."
            if not result["settings_differ"]
            else f"**differ** in {', '.join(result['settings_differ'])}."
        ),
        "The seeds, data, prompts and noise are the same; the kernels round otherwise, so every model "
        "from the judges on was trained again to other bytes: the study perturbed by rounding alone. "
        "Written by this script from the two runs' metrics; no stage reads it.",
        "",
        "## Model files (md5 in `dvc.lock`)",
        "",
        "| file | this | that |",
        "|---|---|---|",
        *(f"| `{p}` | `{this['models'][p][:8]}` | `{that['models'][p][:8]}` |" for p in MODELS),
        "",
        f"## Judges and autoencoder ({this['judge_clips']} real test clips)",
        "",
        "| | " + " | ".join(ATTRIBUTES) + " | CLIP top-1 | AE PSNR dB |",
        "|---|" + "---|" * (len(ATTRIBUTES) + 2),
    ]
    for key in ("this", "that"):
        run = result["runs"][key]
        acc = run["judge_test_accuracy"]
        lines.append(f"| judge, {key} | " + " | ".join(f"{acc[a]:.3f}" for a in ATTRIBUTES)
                     + f" | {run['clip_top1']:.3f} | {run['autoencoder_psnr']:.2f} |")  # fmt: skip
    for key in ("this", "that"):
        acc = result["runs"][key]["autoencoder_decoded_accuracy"]
        lines.append(f"| judge on decoded clips, {key} | " + " | ".join(f"{acc[a]:.3f}" for a in ATTRIBUTES)
                     + " | | |")  # fmt: skip
    lines += [
        "",
        f"Last training loss: base {this['loss_last']['base']:.5f} (this) and "
        f"{that['loss_last']['base']:.5f} (that); StreamDiT {this['loss_last']['train']:.5f} and "
        f"{that['loss_last']['train']:.5f}.",
        "",
        f"## Streams ({this['prompts']} test prompts, pooled over windows)",
        "",
        "| row | run | " + " | ".join(STREAM_MEASURES) + " |",
        "|---|---|" + "---|" * len(STREAM_MEASURES),
    ]
    for name in this["streams"]:
        for key in ("this", "that"):
            row = result["runs"][key]["streams"].get(name)
            if row is not None:
                lines.append(f"| {name} | {key} | " + " | ".join(fmt(row[k]) for k in STREAM_MEASURES) + " |")
    lines += [
        "",
        "## The claims' paired differences",
        "",
        "The paired differences (95% bootstrap over the prompts) the report words its claims by: every "
        "method minus StreamDiT on subject consistency, background consistency, dynamic degree, caption "
        "accuracy and FVD, and the teacher's drift in caption accuracy over its long streams; a verdict is "
        "the term the interval favours, or none where it holds 0. "
        f"**{result['agree']} of {result['compared']} verdicts are the same**. Intervals that excluded 0 "
        f"in that run: {result['decided_that']}, of which again on the same side in this run: "
        f"{result['decided_that_kept']}; excluding 0 in this run alone: {result['decided_this_only']}"
        + (f". Changed: {', '.join(flips)}." if flips else "."),
        "",
        *pair_table(result["claims"]["pairs"]),
    ]
    if result["claims"]["unmatched"]:
        lines += ["", f"In one run only: {', '.join(result['claims']['unmatched'])}."]
    lines += [
        "",
        "The claims decided by a target (DESIGN.md):",
        "",
        "| claim | this | that |",
        "|---|---|---|",
    ]
    for claim in this["targets"]:
        cells = []
        for key in ("this", "that"):
            t = result["runs"][key]["targets"][claim]
            value = (
                f"{100 * t['value']:+.0f}%"
                if "FVD" in claim
                else f"{t['value']:+.2f}"
                if "points" in claim
                else (f"{t['value']:.1f}")
            )
            cells.append(f"{value} ({'met' if t['met'] else 'missed'})")
        lines.append(f"| {claim} | {cells[0]} | {cells[1]} |")
    lines += [
        "",
        "Paired differences the report shows beside its claims, deciding none:",
        "",
        *pair_table(result["shown"]["pairs"]),
        "",
        "## Stage times",
        "",
        "Minutes of each stage's wall time (`stage_seconds`); in brackets the training its run records where "
        "that is longer: the stage resumed a finished run of the same settings (`runs/`) and left that "
        "training out of its wall time.",
        "",
        "| stage | this | that |",
        "|---|---|---|",
        *(f"| {name} | {minutes(this, name)} | {minutes(that, name)} |" for name in this["stage_seconds"]),
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="benchmarks/machine_spread.py", description=__doc__.splitlines()[0])
    parser.add_argument("--against", required=True, help="the other run: a git revision or a folder")
    parser.add_argument(
        "--this", default=".", help="this run: a folder (default: the working tree) or revision"
    )
    parser.add_argument("--this-machine", default="this machine", help="what ran this run")
    parser.add_argument("--that-machine", default="the committed run's machine", help="what ran the other")
    parser.add_argument("--out", type=Path, default=Path("reports/machine_spread"))
    args = parser.parse_args(argv)
    result = compare(read_run(args.this), read_run(args.against))
    result |= {"this": args.this, "against": args.against, "this_machine": args.this_machine,
               "that_machine": args.that_machine}  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "machine_spread.json").write_text(json.dumps(result, indent=1) + "\n")
    text = readme(result, args)
    (args.out / "README.md").write_text(text)
    print(text)
    return result


if __name__ == "__main__":
    main()
