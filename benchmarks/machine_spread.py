"""How far does the whole study move when `make study` runs again on a CPU of another family? The study's
verdicts set against those of an earlier run of the same code, settings and data on another machine.

The study is bit-identical on machines that run the same kernels and not across CPU families
(docs/pipeline.md, "Reproducibility across machines"): oneDNN and MKL pick their kernels, and so their
rounding, by instruction set. A rerun on another family therefore trains every model again from other
rounding, the whole chain from the judges to the student, and is a full independent replication of the
study on the same prompts and noise. This sets the two side by side from their metrics files: this
working tree's (the pipeline's last run here) and those committed at ``--against`` (a git revision): the
model files' hashes, the judges and the autoencoder, the teacher and the student, and, for every paired
difference the report decides a claim by, both intervals and whether the verdict is the same.

    python benchmarks/machine_spread.py --against REV [--this "machine"] [--that "machine"] [--out DIR]

``--this`` / ``--that`` describe the two machines (the metrics record the CPU's name and core count, not
its instruction set). Reads ``metrics/`` and ``dvc.lock`` only: no model is loaded. Writes
``OUT/machine_spread.json`` and ``OUT/README.md`` (``--out`` defaults to reports/machine_spread).
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

import yaml

from streamdit.tables import LOWER_IS_BETTER

METRICS = (
    "evaluators",
    "autoencoder",
    "base",
    "train",
    "distill",
    "evaluate",
    "evaluate_student",
    "comparison",
)
MODELS = ("models/evaluators", "models/autoencoder.pt", "models/base.pt", "models/streamdit.pt",
          "models/student.pt")  # fmt: skip
ATTRIBUTES = ("shape", "colour", "size", "motion", "background", "objects")
# What a row of the streams is compared on (pooled over windows; caption accuracy per attribute first).
STREAM_MEASURES = ("caption_shape", "caption_colour", "caption_size", "caption_motion", "caption_mean",
                   "subject_consistency", "dynamic_degree", "direction_agreement", "fvd",
                   "clip_score")  # fmt: skip
# The paired differences the report's claims read (report.CLAIM_MEASURES), and the student's.
CLAIM_MEASURES = ("subject_consistency", "background_consistency", "dynamic_degree", "caption_mean", "fvd")
STUDENT_MEASURES = ("caption_mean", "subject_consistency", "fvd")
STAGE_OF = {"comparison": "compare"}  # the stage of a metrics file where its name differs
DRIFT_MEASURES = ("caption_mean", "subject_consistency")  # the report's drift claim (report._drift_text)


def read_tree(rev: str | None) -> tuple[dict[str, dict], dict]:
    """The study's metrics files (``METRICS``, and under ``methods`` and ``methods_train`` those of every
    compared method's evaluation and training) and
    its ``dvc.lock``, at git revision ``rev`` or, for None, in the working tree; a missing file names what
    makes it."""

    def text(path: str) -> str:
        if rev is None:
            if not Path(path).is_file():
                raise FileNotFoundError(f"{path} not found: run the study first (make study)")
            return Path(path).read_text()
        done = subprocess.run(["git", "show", f"{rev}:{path}"], capture_output=True, text=True)
        if done.returncode:
            raise FileNotFoundError(f"{path} at {rev}: {done.stderr.strip()}")
        return done.stdout

    metrics = {name: json.loads(text(f"metrics/{name}.json")) for name in METRICS}
    for folder in ("methods", "methods_train"):
        metrics[folder] = {
            name: json.loads(text(f"metrics/{folder}/{name}.json"))
            for name in metrics["comparison"]["paired"]
        }
    return metrics, yaml.safe_load(text("dvc.lock"))


def model_hashes(lock: dict) -> dict[str, str]:
    """The md5 that ``dvc.lock`` records for each of ``MODELS`` (a folder's ends in ``.dir``)."""
    found = {}
    for stage in lock["stages"].values():
        for out in stage.get("outs", []):
            if out["path"] in MODELS:
                found[out["path"]] = out["md5"]
    return {path: found.get(path, "-") for path in MODELS}


def verdict(name: str, d: dict) -> str:
    """Which side a paired difference a - b favours: "a", "b" or "none" (lower is better for
    ``LOWER_IS_BETTER``)."""
    if d["low"] <= 0 <= d["high"]:
        return "none"
    return "a" if (d["low"] > 0) == (name not in LOWER_IS_BETTER) else "b"


def interval(d: dict) -> str:
    return f"{d['diff']:+.3g} [{d['low']:+.3g}, {d['high']:+.3g}]"


def stage_seconds(m: dict) -> dict[str, float]:
    """Every stage's wall time (``stage_seconds`` of its metrics), the methods' as ``train_method@name`` and
    ``evaluate_method@name``, and their sum under ``total``."""
    out = {STAGE_OF.get(name, name): m[name]["stage_seconds"] for name in METRICS}
    for name in m["methods"]:
        out[f"train_method@{name}"] = m["methods_train"][name]["stage_seconds"]
        out[f"evaluate_method@{name}"] = m["methods"][name]["stage_seconds"]
    return out | {"total": sum(out.values())}


def training_seconds(m: dict) -> dict[str, float]:
    """The seconds of training each training stage's run records; a stage that resumed a finished run
    (runs/) has a shorter wall time than this."""
    encoder = m["evaluators"]
    return {
        "evaluators": encoder["video_encoder"]["seconds"] + encoder["clip"]["seconds"],
        "autoencoder": m["autoencoder"]["seconds"],
        "base": m["base"]["train_seconds"],
        "train": m["train"]["train_seconds"],
        "distill": m["distill"]["distill"]["distill_seconds"],
    }


def claim_pairs(m: dict) -> dict[str, dict]:
    """Every paired difference the report decides a claim by, keyed ``"{a} - {b}: {measure}"``: each
    method of the comparison minus StreamDiT, the student minus the teacher, and the teacher's drift (last
    window minus first)."""
    comparison, pairs = m["comparison"], {}
    for method, diffs in comparison["paired"].items():
        for measure in CLAIM_MEASURES:
            pairs[f"{method} - {comparison['paired_vs']}: {measure}"] = diffs[measure]
    for measure in STUDENT_MEASURES:
        pairs[f"student - teacher: {measure}"] = m["evaluate_student"]["paired_vs_teacher"][measure]
    for measure in DRIFT_MEASURES:
        pairs[f"teacher drift, last window - first: {measure}"] = m["evaluate"]["drift"]["change"][measure]
    return pairs


def stream_rows(m: dict) -> dict[str, dict]:
    """The pooled measures of the real streams, the teacher, the student and every compared method."""
    teacher = next(iter(m["evaluate"]["schemes"].values()))["long_stream"]
    student = next(iter(m["evaluate_student"]["schemes"].values()))["long_stream"]
    rows = {"real": m["evaluate"]["real"]["long_stream"], "teacher": teacher, "student": student}
    for name, metrics in m["methods"].items():
        rows[name] = next(iter(metrics["schemes"].values()))["long_stream"]
    return rows


def compare(this: tuple[dict, dict], that: tuple[dict, dict]) -> dict:
    """The JSON of the comparison: per run its model hashes, judges, autoencoder, losses, streams and
    stage times, and for every claim pair both differences and whether their verdicts agree."""
    runs = {}
    for key, (m, lock) in (("this", this), ("that", that)):
        encoder = m["evaluators"]["video_encoder"]
        runs[key] = {
            "models": model_hashes(lock),
            "judge_test_accuracy": encoder["test"]["accuracy"],
            "clip_top1": m["evaluators"]["clip"]["test_retrieval"]["top1"],
            "autoencoder_psnr": m["autoencoder"]["test"]["psnr_db"],
            "autoencoder_decoded_accuracy": m["autoencoder"]["test"]["accuracy_decoded"],
            "loss_last": {stage: m[stage]["loss_last"] for stage in ("base", "train")},
            "streams": {
                name: {k: row.get(k) for k in STREAM_MEASURES} for name, row in stream_rows(m).items()
            },
            "stage_seconds": stage_seconds(m),
            "training_seconds": training_seconds(m),
            "student_fvd_vs_teacher": stream_rows(m)["student"]["fvd"] / stream_rows(m)["teacher"]["fvd"] - 1,
        }
    pairs_this, pairs_that = claim_pairs(this[0]), claim_pairs(that[0])
    claims = {}
    for key in pairs_this.keys() & pairs_that.keys():
        measure = key.rsplit(": ", 1)[1]
        a, b = pairs_this[key], pairs_that[key]
        claims[key] = {
            "this": {k: a[k] for k in ("diff", "low", "high")} | {"verdict": verdict(measure, a)},
            "that": {k: b[k] for k in ("diff", "low", "high")} | {"verdict": verdict(measure, b)},
            "agree": verdict(measure, a) == verdict(measure, b),
        }
    claims = dict(sorted(claims.items(), key=lambda kv: list(pairs_this).index(kv[0])))
    agree = sum(c["agree"] for c in claims.values())
    return {"runs": runs, "claims": claims, "agree": agree, "pairs": len(claims)}


def minutes(run: dict, stage: str) -> str:
    """A stage's wall time in minutes, and the training its run records in brackets where that is longer."""
    wall, trained = run["stage_seconds"][stage], run["training_seconds"].get(stage)
    text = f"{wall / 60:.1f}"
    return text if trained is None or trained <= wall else f"{text} ({trained / 60:.1f} trained)"


def fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def readme(result: dict, args) -> str:
    this, that = result["runs"]["this"], result["runs"]["that"]
    names = {"this": args.this, "that": args.that}
    lines = [
        "# The study rerun on another CPU family",
        "",
        f'`python benchmarks/machine_spread.py --against {args.against} --this "{args.this}" --that '
        f'"{args.that}"`: the metrics of this tree\'s study (**this**: {args.this}) beside those '
        f"committed at `{args.against}` (**that**: {args.that}), the same code, settings, data, seeds, "
        "thread count and PyTorch. Other kernels round otherwise, so every model was trained again: the "
        "rerun is an independent replication on the same prompts and noise. Written by this script from the "
        "pipeline's metrics files; no stage reads it.",
        "",
        "## Model files (md5 in `dvc.lock`)",
        "",
        "| file | this | that |",
        "|---|---|---|",
        *(f"| `{p}` | `{this['models'][p][:8]}` | `{that['models'][p][:8]}` |" for p in MODELS),
        "",
        "## Judges and autoencoder (200 real test clips)",
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
        f"{that['loss_last']['train']:.5f}. The student's FVD against its teacher's: "
        f"{100 * this['student_fvd_vs_teacher']:+.0f}% (this), "
        f"{100 * that['student_fvd_vs_teacher']:+.0f}% (that).",
        "",
        "## Streams (128 test prompts, pooled over windows)",
        "",
        "| row | run | " + " | ".join(STREAM_MEASURES) + " |",
        "|---|---|" + "---|" * len(STREAM_MEASURES),
    ]
    for name in this["streams"]:
        for key in ("this", "that"):
            row = result["runs"][key]["streams"].get(name)
            if row is not None:
                lines.append(f"| {name} | {key} | " + " | ".join(fmt(row[k]) for k in STREAM_MEASURES) + " |")
    flips = [k for k, c in result["claims"].items() if not c["agree"]]
    lines += [
        "",
        "## The claims' paired differences",
        "",
        f"Every paired difference the report decides a claim by (95% bootstrap over the prompts), in both "
        "runs; the verdict is which side the interval favours, or none where it holds 0. "
        f"**{result['agree']} of {result['pairs']} verdicts agree**"
        + (f"; they differ on: {', '.join(flips)}." if flips else "."),
        "",
        "| difference | this | that | same verdict |",
        "|---|---|---|---|",
    ]
    for key, c in result["claims"].items():
        marks = {
            side: {"a": " (first)", "b": " (second)", "none": ""}[c[side]["verdict"]]
            for side in ("this", "that")
        }
        same = "yes" if c["agree"] else "**no**"
        cells = [key, interval(c["this"]) + marks["this"], interval(c["that"]) + marks["that"], same]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "(first) / (second): the interval excludes 0 and favours the first / second term of the difference.",
        "",
        "## Stage times",
        "",
        "Minutes of each stage's wall time (`stage_seconds`), and in brackets the training its run records "
        "where the two differ (a stage that resumed a finished run of the same settings from `runs/` leaves "
        "that training out of its wall time). Without `data` (seconds) and `report`.",
        "",
        "| stage | this | that |",
        "|---|---|---|",
        *(
            f"| {name} | {minutes(result['runs']['this'], name)} | {minutes(result['runs']['that'], name)} |"
            for name in this["stage_seconds"]
        ),
        "",
        f"this: {names['this']}; that: {names['that']}.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", required=True, help="git revision holding the other run's metrics")
    parser.add_argument("--this", default="this working tree's run", help="what ran this tree's study")
    parser.add_argument("--that", default="the committed run", help="what ran the study at --against")
    parser.add_argument("--out", type=Path, default=Path("reports/machine_spread"))
    args = parser.parse_args(argv)
    result = compare(read_tree(None), read_tree(args.against))
    result |= {"against": args.against, "this_machine": args.this, "that_machine": args.that}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "machine_spread.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / "README.md").write_text(readme(result, args))
    print(f"{result['agree']} of {result['pairs']} verdicts agree; wrote {args.out}/README.md")
    return result


if __name__ == "__main__":
    main()
