"""The study's front page: ``reports/README.md``, built from the stages' metrics JSON alone.

Nothing here measures anything. The tables are the rows that the evaluation stages computed
(``streamdit.evaluate``, ``streamdit.methods``), and the figures are the ones they drew. The paper's
claims are checked against the paired bootstrap intervals of the differences (same prompts, same
noise): a difference counts only when its interval excludes 0. Every section says which stage and
file it comes from, so a reader can trace a number back to the code that produced it.
"""

from __future__ import annotations

import math
from pathlib import Path

import yaml

from streamdit.config import load_config
from streamdit.files import read_json
from streamdit.tables import (
    CAPTION_COLUMNS,
    LATENCY_COLUMNS,
    LOWER_IS_BETTER,
    MAIN_COLUMNS,
    MAIN_ROW,
    QUALITY_COLUMNS,
    QUALITY_MEASURES,
    caption_rows,
    latency_row,
    markdown_table,
    paired_rows,
    report_rows,
)

# DESIGN.md section 1, "Baselines": the methods the paper compares StreamDiT with. Every other entry of
# params.yaml `methods` is an ablation of StreamDiT itself.
BASELINES = (
    "uniform_clips",
    "fifo",
    "reuse",
    "uniform_extension",
    "diffusion_forcing",
    "diffusion_forcing_context",
)
# The paper's real-time bar: 16 frames/s (512p, one H100).
PAPER_FPS = 16.0
FIGURES = (
    ("World classifier accuracy on real clips", "evaluators/evaluators.png"),
    ("Autoencoder: real test clips above their reconstructions", "autoencoder/test_reconstruction.png"),
    ("Drift over long streams, teacher", "evaluation/drift.png"),
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
# Drawn by the compare stage when some method measured drift beside StreamDiT (after the quality figure).
DRIFT_FIGURE = (
    "Drift over long streams, every row that measures it (real streams dashed)",
    "comparison/drift_over_length.png",
)


def _read(path: Path) -> dict:
    """A stage's metrics JSON; a missing one names the file and what makes it."""
    return read_json(path, "stage metrics (run its stage first: dvc repro)")


def _interval(d: dict, scale: float = 1.0) -> str:
    """``diff [low, high]`` to 3 significant digits; float residue (a value a millionth of the largest
    of the three or less, e.g. 7e-09 for equal means with an interval of +-0.1) reads 0."""
    values = [scale * d[k] for k in ("diff", "low", "high")]
    tiny = 1e-6 * max(abs(v) for v in values)
    a, low, high = (v if abs(v) > tiny else 0.0 for v in values)
    return f"{a:+.3g} [{low:+.3g}, {high:+.3g}]"


# The measures on which the paper says StreamDiT beats FIFO-Diffusion and ReuseDiffuse.
CLAIM_MEASURES = ("subject_consistency", "background_consistency", "dynamic_degree", "caption_mean", "fvd")


def _claim_cells(differences: dict, ours: str) -> list[str]:
    """Each of ``CLAIM_MEASURES``: a method's paired difference from the main model (``ours``), its
    interval and which side it favours (lower is better for FVD, KID and flicker)."""
    cells = []
    for measure in CLAIM_MEASURES:
        d = differences[measure]
        better_low = measure in LOWER_IS_BETTER
        ours_better = (d["verdict"] == "a > b") if better_low else (d["verdict"] == "a < b")
        ours_worse = (d["verdict"] == "a < b") if better_low else (d["verdict"] == "a > b")
        word = f"{ours} better" if ours_better else f"{ours} worse" if ours_worse else "no difference"
        cells.append(f"{measure} {_interval(d)} (**{word}**)")
    return cells


def _drift_text(drift: dict) -> str:
    """Last window minus first of a drift measurement (``evaluate.drift``), with its verdict on captions."""
    change = drift["change"]
    d = change["caption_mean"]
    word = (
        "drifts"
        if d["verdict"] == "a < b"
        else "improves"
        if d["verdict"] == "a > b"
        else "no drift detected"
    )
    return (
        f"last window - first of {drift['frames']}-frame streams ({drift['prompts']} prompts): caption "
        f"accuracy {_interval(d)}, subject consistency {_interval(change['subject_consistency'])}: **{word}**"
    )


def _drift_pair_text(name: str, drift: dict) -> str:
    """A method's drift minus StreamDiT's on the same long streams (``quality.paired_drift_differences``):
    which of the two loses more along the stream, per measure."""
    cells = []
    for measure, d in drift["minus_main"].items():
        word = (
            f"{name} drifts more"
            if d["verdict"] == "a < b"
            else "StreamDiT drifts more"
            if d["verdict"] == "a > b"
            else "no difference"
        )
        cells.append(f"{measure} {_interval(d)} (**{word}**)")
    return (
        f"Drift (last window - first) of {name} minus StreamDiT's, paired on the same {drift['prompts']} "
        f"streams of {drift['frames']} frames: " + "; ".join(cells)
    )


def drift_lines(comparison: dict) -> list[str]:
    """The drift of every compared row that measured it, set against StreamDiT's on the same streams
    (the chunk-causal rows: in ``causal_lines``)."""
    drift = comparison.get("drift", {})
    lines = []
    for name, d in drift.items():
        if "minus_main" in d and not name.startswith("causal"):
            lines.append(
                f"- Claim: StreamDiT drifts no more than **{name}**. {name} on its own, {_drift_text(d)}. "
                f"{_drift_pair_text(name, d)}."
            )
    return lines


def causal_lines(comparison: dict) -> list[str]:
    """Beyond the paper: each chunk-causal method (``causal*``, ``streamdit.causal``) against StreamDiT,
    paired, with its drift and speed beside StreamDiT's."""
    paired, reference = comparison.get("paired", {}), comparison.get("paired_vs")
    rows = {row["method"]: row for row in comparison.get("rows", [])}
    drift = comparison.get("drift", {})
    lines = []
    for name in (n for n in paired if n.startswith("causal")):
        line = (
            f"- Beyond the paper: chunk-causal autoregression with a KV cache (**{name}**) against "
            f"StreamDiT. {name} - {reference}, paired: " + "; ".join(_claim_cells(paired[name], "StreamDiT"))
        )
        for who in (name, MAIN_ROW):
            if who in drift:
                line += f". Drift, {who}: {_drift_text(drift[who])}"
        if "minus_main" in drift.get(name, {}):
            line += f". {_drift_pair_text(name, drift[name])}"
        ours, theirs = rows.get(MAIN_ROW), rows.get(name)
        if ours and theirs:
            line += (
                f". Speed: {theirs['fps']:.1f} against {ours['fps']:.1f} frames/s, NFE per frame "
                f"{theirs['nfe_per_frame']:g} against {ours['nfe_per_frame']:g}"
            )
        lines.append(line + ".")
    return lines


def claim_lines(comparison: dict, student: dict, teacher: dict, distill: dict) -> list[str]:
    """The paper's claims, each with what this run's paired intervals say (``comparison``: the compare
    stage's JSON; ``student``: its evaluation with ``paired_vs_teacher``; ``teacher``: the main
    evaluation, with its drift)."""
    lines = []
    paired, reference = comparison.get("paired", {}), comparison.get("paired_vs")
    singles = [n for n in paired if n.startswith("single_")]
    if singles:
        for name in singles:
            lines.append(
                f"- Claim: mixed training is at least as good as one scheme. {name} - {reference}, paired: "
                + "; ".join(_claim_cells(paired[name], "mixed"))
                + "."
            )
    else:
        lines.append(
            "- Claim: mixed training is at least as good as the best single scheme. Not tested at this "
            "profile (no `single_*` method ran; the cpu_full and gpu profiles run them)."
        )
    for name in BASELINES:
        if name not in paired:
            continue
        lines.append(
            f"- Claim: StreamDiT beats **{name}**. {name} - {reference}, paired: "
            + "; ".join(_claim_cells(paired[name], "StreamDiT"))
            + "."
        )
    if "drift" in teacher:
        lines.append(f"- Claim: no drift over long streams. Teacher, {_drift_text(teacher['drift'])}.")
    lines += drift_lines(comparison)
    lines += causal_lines(comparison)
    t_m = next(iter(teacher["schemes"].values()))
    s_m = next(iter(student["schemes"].values()))
    t_nfe, s_nfe = t_m["latency"]["nfe_per_frame"], s_m["latency"]["nfe_per_frame"]
    pair = student.get("paired_vs_teacher", {})
    gap = 100 * (s_m["long_stream"]["fvd"] / t_m["long_stream"]["fvd"] - 1)
    caption = f"caption accuracy {_interval(pair['caption_mean'], 100)} points" if pair else ""
    lines.append(
        f"- Claim: distillation keeps quality at far fewer calls. This run: NFE per frame {t_nfe:g} -> "
        f"{s_nfe:g} ({distill['teacher_scheme']} -> {distill['student_scheme']}); student - teacher, paired: "
        f"{caption}, FVD {gap:+.0f}% (DESIGN.md targets: within 3 points and +15%)."
    )
    fps = s_m["latency"]["frames_per_second"]
    lines.append(
        f"- Claim: real-time streaming. This run: the student streams {fps:.1f} frames/s on "
        f"{s_m['latency']['device']} ({'above' if fps >= PAPER_FPS else 'below'} the paper's "
        f"{PAPER_FPS:g} frames/s, which is a 4B model at 512p on an H100; `reports/benchmark/` times that "
        "preset on a GPU)."
    )
    return lines


def robustness_text(evaluators: dict) -> str:
    """How the classifier was trained to look past sharpness, and its shape accuracy on softened and
    halved clips (``evaluator_training.robustness``)."""
    encoder = evaluators["video_encoder"]
    robust, share = encoder["robustness"], encoder["degraded"]
    trained = (
        f"trained with {100 * share:.0f}% of its clips softened or halved"
        if share
        else "trained on exact edges only"
    )
    return (
        f" ({trained}; shape accuracy on softened {robust['softened']['shape']:.3f} and halved "
        f"{robust['halved']['shape']:.3f} {robust['split']} clips)"
    )


def autoencoder_lines(autoencoder: dict) -> list[str]:
    """The latent space section: what decoding loses on real test clips (PSNR, the world classifier's
    per-attribute accuracy on real and on reconstructed clips)."""
    test = autoencoder["test"]
    names = list(test["accuracy_real"])
    lines = [
        "## The latent space",
        "",
        f"`metrics/autoencoder.json` (`autoencoder` stage, {autoencoder['kind']} autoencoder, latents "
        f"{'x'.join(map(str, autoencoder['latent_shape']))} per frame): PSNR of reconstructed test clips "
        f"{test['psnr_db']:.1f} dB (target 32), and the world classifier's accuracy on the {test['clips']} "
        "real test clips and on their reconstructions (target: within 1 point on every attribute).",
        "",
        "| clips | " + " | ".join(names) + " |",
        "|---" * (len(names) + 1) + "|",
        "| real | " + " | ".join(f"{test['accuracy_real'][n]:.3f}" for n in names) + " |",
        "| decoded | " + " | ".join(f"{test['accuracy_decoded'][n]:.3f}" for n in names) + " |",
        "",
    ]
    return lines


def _frames_line(cfg) -> str:
    """What the buffer's frames are: latents of the world's frames, or pixels."""
    m, res = cfg.model, cfg.data.resolution
    if m.space == "pixel":
        return f"{res}x{res} pixels in {m.patch}x{m.patch} patches"
    source = cfg.autoencoder.path or "the world autoencoder"
    return f"{m.resolution}x{m.resolution}x{m.channels} latents of {res}x{res} frames ({source})"


def _machine_line(what: str, machine: dict | None) -> str:
    if not machine:
        return f"- {what}: not recorded"
    gpu = f", GPU {machine['gpu']}" if "gpu" in machine else ""
    return (
        f"- {what}: {machine['cpu']} ({machine['cpu_cores']} cores, {machine['torch_threads']} torch threads)"
        f"{gpu}; device `{machine['device']}`; Python {machine['python']}, PyTorch {machine['torch']}"
    )


# The stages in the order dvc runs them, each with its metrics JSON under metrics/ (where the pipeline
# runner records its wall time, ``stage_seconds``); the methods' stages come after evaluate_student.
STAGE_FILES = (
    ("data", "data.json"),
    ("evaluators", "evaluators.json"),
    ("autoencoder", "autoencoder.json"),
    ("base", "base.json"),
    ("train", "train.json"),
    ("sample", "sample.json"),
    ("distill", "distill.json"),
    ("evaluate", "evaluate.json"),
    ("evaluate_student", "evaluate_student.json"),
)


# The training times a stage's metrics record (``runs.Run``'s elapsed, carried across resumes).
TRAINING_SECONDS = ("seconds", "train_seconds", "distill_seconds")


def training_seconds(metrics: dict) -> float:
    """The training time a stage's metrics record, at any depth (``TRAINING_SECONDS``): every model the
    stage trained, including what earlier runs of the same settings trained before a resume."""
    total = 0.0
    for key, value in metrics.items():
        if isinstance(value, dict):
            total += training_seconds(value)
        elif key in TRAINING_SECONDS and isinstance(value, int | float):
            total += value
    return total


def stage_time_lines(
    metrics_dir: Path, methods: list[str], budget_min: float = 90.0, shared: frozenset[str] = frozenset()
) -> list[str]:
    """The wall time of every stage of the study as its last run recorded it, and their sum. A stage
    whose recorded training outlasts its wall time resumed a training run (``runs/``) that an earlier
    run of the same settings finished: its training time is listed, and a fresh run's sum bounded.
    ``shared``: the methods sampling another method's model (``model_of``), whose training stage finds
    that model trained in every run."""
    files = [(name, metrics_dir / f) for name, f in STAGE_FILES]
    files += [(f"train_method@{m}", metrics_dir / "methods_train" / f"{m}.json") for m in methods]
    files += [(f"evaluate_method@{m}", metrics_dir / "methods" / f"{m}.json") for m in methods]
    files.append(("compare", metrics_dir / "comparison.json"))
    rows, total, missing, resumed = [], 0.0, [], {}
    for name, path in files:
        metrics = _read(path) if path.exists() else {}
        seconds = metrics.get("stage_seconds")
        if seconds is None:
            missing.append(name)
            continue
        total += seconds
        rows.append(f"| {name} | {seconds / 60:.1f} |")
        trained = training_seconds(metrics)
        if trained > seconds and name.removeprefix("train_method@") not in shared:
            resumed[name] = trained
    lines = [
        "## Stage times",
        "",
        "Wall time of each stage's last run (`stage_seconds` in its metrics JSON, recorded by "
        "`streamdit.pipeline run`); set-up (`make install`), `make data`'s check and this report are not "
        f"in the sum. DESIGN.md's budget for `make study`, set-up included: {budget_min:g} min.",
        "",
        "| stage | minutes |",
        "|---|---|",
        *rows,
        f"| **sum** | **{total / 60:.1f}** |",
        "",
    ]
    if missing:
        lines += [f"Not recorded (a run before the runner recorded stage times): {', '.join(missing)}.", ""]
    if resumed:
        listed = ", ".join(
            f"{name} ({seconds / 60:.1f} min of training)" for name, seconds in resumed.items()
        )
        bound = (total + sum(resumed.values())) / 60
        lines += [
            f"Resumed from finished training runs of the same settings (`runs/`), so their training is not "
            f"in their wall time: {listed}. From scratch the sum would be at most {bound:.1f} min.",
            "",
        ]
    return lines


# The measures whose seed-to-seed spread the report sets beside the method differences.
SEED_MEASURES = ("caption_mean", "caption_shape", "subject_consistency", "dynamic_degree", "fvd")


def _streams_another_model(fvd: float, row: dict | None) -> bool:
    """Whether a benchmark's stream of "this run's" StreamDiT, of FVD ``fvd``, is not this run's own
    (``row``: the run's StreamDiT row of the comparison): another model or other settings measured it."""
    return row is not None and not math.isclose(fvd, row["fvd"], rel_tol=1e-6)


def seed_lines(seed_file: Path, train: dict, compared: dict, kernel_file: Path | None = None) -> list[str]:
    """The seed-to-seed spread of StreamDiT (``benchmarks/seed_spread.py``'s JSON) and, where
    ``kernel_file`` holds one for this run's model, its move on other kernels
    (``benchmarks/kernel_spread.py``'s JSON), beside every method's paired difference from it; says so
    when the spread was not measured or measured on another base."""
    lines = ["## Seed-to-seed spread", ""]
    command = "`python benchmarks/seed_spread.py` (after `make study`; then `dvc repro report`)"
    if not seed_file.exists():
        return lines + [f"Not measured for this run: {command} retrains StreamDiT with other seeds.", ""]
    seeds = read_json(seed_file, "seed spread")
    if seeds.get("base") != train.get("finetuned_from"):
        return lines + [
            f"`{seed_file}` was measured on another base model than this run's: rerun {command}.",
            "",
        ]
    main = seeds["models"]["streamdit"]
    # Seed 0 is this run's own fine-tune, streamed as the evaluate stage streams it: the same numbers
    # unless the sampling or evaluation settings changed since the spread was measured.
    own = main.get("per_seed", {}).get("0")
    rows = compared.get("rows", [])
    row = next((r for r in rows if r.get("method") == compared.get("paired_vs")), None)  # StreamDiT's
    if own is not None and _streams_another_model(own["quality"]["fvd"], row):
        return lines + [
            f"`{seed_file}` was measured with other settings than this run's (seed 0, this run's own model, "
            f"streamed FVD {own['quality']['fvd']:.4g} there and {row['fvd']:.4g} here): rerun {command}.",
            "",
        ]
    listed = ", ".join(map(str, seeds["seeds"]))
    lines += [
        f"StreamDiT fine-tuned from this run's base with {len(seeds['seeds'])} training seeds ({listed}; "
        f"`{seed_file}`, {command}), each streamed from the same noise on the same test prompts: "
        "the standard deviation of each measure across seeds and the largest paired difference between two "
        "seeds, beside every method's paired difference from StreamDiT. A method difference no larger than "
        "the seed spread is one retraining StreamDiT alone could produce.",
        "",
    ]
    kernels = None
    if kernel_file is not None and kernel_file.exists() and row is not None:
        kernels = read_json(kernel_file, "kernel spread")
        fvd = kernels["arms"]["study"]["quality"]["fvd"]
        if _streams_another_model(fvd, row):
            lines += [
                f"`{kernel_file}` was measured on another model than this run's (its StreamDiT streamed FVD "
                f"{fvd:.4g} there and {row['fvd']:.4g} here): rerun `python benchmarks/kernel_spread.py`.",
                "",
            ]
            kernels = None
    columns = {f"{m} - StreamDiT": d for m, d in compared.get("paired", {}).items()}
    if kernels is not None:
        variant = kernels["arms"]["variant"]["kernels"]
        columns = {f"StreamDiT on {variant} kernels - StreamDiT": kernels["variant_minus_study"], **columns}
        env = " ".join(f"`{k}={v}`" for k, v in kernels["environment"].items())
        lines += [
            f"The stand-in for this run on another machine (`{kernel_file}`, `python "
            "benchmarks/kernel_spread.py`): the base and StreamDiT trained again with every setting and seed "
            f"of this run under {env}, PyTorch's kernels at {variant} instead of "
            f"{kernels['arms']['study']['kernels']}, streamed from the same noise on the same test prompts.",
            "",
        ]
    lines += [
        "| measure | StreamDiT across seeds (mean, std) | largest seed pair | " + " | ".join(columns) + " |",
        "|---" * (3 + len(columns)) + "|",
    ]
    for m in SEED_MEASURES:
        s = main["spread"][m]
        pair = max(main["seed_pairs"].values(), key=lambda p: abs(p[m]["diff"]))[m]
        cells = [_interval(d[m]) + ("*" if d[m]["holds"] else "") for d in columns.values()]
        lines.append(
            f"| {m} | {s['mean']:.3g}, {s['std']:.2g} | {_interval(pair)}{'*' if pair['holds'] else ''} | "
            + " | ".join(cells)
            + " |"
        )
    return lines + ["", "`*`: the interval excludes 0.", ""]


def write_study_report(
    params_file: str | Path = "params.yaml",
    profile: str | None = None,
    metrics_dir: str | Path = "metrics",
    reports_dir: str | Path = "reports",
) -> Path:
    """Write ``reports_dir/README.md`` from ``metrics_dir``'s JSON; returns its path.

    Reads ``data``, ``train``, ``evaluators``, ``autoencoder``, ``evaluate``, ``distill``,
    ``evaluate_student`` and ``comparison`` JSON (and ``methods_train/<method>.json`` for each method's
    training time)."""
    metrics_dir, reports_dir = Path(metrics_dir), Path(reports_dir)
    cfg = load_config(params_file, profile)
    raw = yaml.safe_load(Path(params_file).read_text())
    data = _read(metrics_dir / "data.json")
    base = _read(metrics_dir / "base.json")
    train = _read(metrics_dir / "train.json")
    evaluators = _read(metrics_dir / "evaluators.json")
    autoencoder = _read(metrics_dir / "autoencoder.json")
    teacher = _read(metrics_dir / "evaluate.json")
    student = _read(metrics_dir / "evaluate_student.json")
    distill = _read(metrics_dir / "distill.json")["distill"]
    compared = _read(metrics_dir / "comparison.json")
    comparison = compared["rows"]
    main_rows = [r for r in comparison if r["method"] in ("real data", "mixed", "streamdit_main", *BASELINES)]
    ablation_rows = [r for r in comparison if r not in main_rows]
    method_names = [r["method"] for r in comparison if r["method"] not in ("real data", "streamdit_main")]
    entries = raw["methods"]["entries"]
    shared = [name for name in method_names if entries.get(name, {}).get("model_of")]  # another's model

    latency_rows = [latency_row("teacher (main model)", teacher), latency_row("student (distilled)", student)]
    method_seconds = []
    for name in method_names:
        m = _read(metrics_dir / "methods" / f"{name}.json")
        latency_rows.append(latency_row(name, m))
        train_file = metrics_dir / "methods_train" / f"{name}.json"
        if train_file.exists() and name not in shared:  # a model_of method samples another's model
            method_seconds.append((name, _read(train_file)["train_seconds"]))

    ev, accuracy = cfg.evaluate, evaluators["video_encoder"]["test"]["accuracy"]
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
        f"{_frames_line(cfg)}.",
        f"- Seeds: `seed` {raw['seed']} (data and training), `sample.seed` {cfg.sample.seed}, "
        f"`evaluate.seed` {ev.seed}. World data hash `{data['hash']}` "
        f"({data['train']['clips']} training clips).",
        f"- Evaluation: {teacher['prompts']} test prompts, streams of {teacher['long_frames']} frames "
        f"scored in windows of {teacher['clip_frames']}, every method from the same noise seeds; caption "
        f"accuracy by the world classifier, FVD and KID on **{teacher['features']}** features, CLIP "
        f"score by **{teacher['clip_model']}**, the VBench analogues of docs/metrics.md; paired bootstrap "
        f"intervals over prompts ({ev.bootstrap} resamples, {100 * ev.bootstrap_level:.0f}%).",
        _machine_line("Training hardware", train.get("machine")),
        _machine_line("Evaluation hardware", teacher.get("machine")),
        f"- Protocol (the paper's): the base T2V model, a uniform clip model, trained {base['steps']} steps "
        f"from scratch in {base['train_seconds'] / 60:.1f} min (loss {base['loss_first']:.3f} -> "
        f"{base['loss_last']:.3f}); StreamDiT (the main model) and every method's model fine-tuned from it "
        f"{train['steps']} steps, the training-free baselines run on the control (the base fine-tuned the "
        "same steps as a uniform model).",
        f"- Main model: {train['steps']} fine-tuning steps in {train['train_seconds'] / 60:.1f} min "
        f"({train['samples_per_second']} samples/s), loss {train['loss_first']:.3f} -> "
        f"{train['loss_last']:.3f}. Distillation: {distill['steps']} steps in "
        f"{distill['distill_seconds'] / 60:.1f} min. Evaluators: the world classifier's accuracy on real "
        "test clips "
        + ", ".join(f"{k} {v:.3f}" for k, v in accuracy.items())
        + robustness_text(evaluators)
        + "; CLIP top-1 retrieval "
        f"{evaluators['clip']['test_retrieval']['top1']:.2f}.",
    ]
    if method_seconds:
        lines.append(
            "- Method models trained: " + ", ".join(f"{n} {s / 60:.1f} min" for n, s in method_seconds) + "."
        )
    lines += [
        "",
        "## What the paper claims, and what this run says",
        "",
        "Each difference is paired (same prompts, same noise) with its bootstrap interval `[low, high]`; "
        "it counts only when the interval excludes 0.",
        "",
        *claim_lines(compared, student, teacher, distill),
        "",
        "## StreamDiT against the baselines",
        "",
        "From `metrics/comparison.json` (`compare` stage): every measure pooled over the windows of the "
        "streams. Every row's model is the base fine-tuned the same steps (training-free rows: the "
        "control's); `streamdit_main` is StreamDiT, the main model of the `train` stage; `nfe_per_frame` "
        "counts the forward passes per frame of one stream (guidance: 2 per call).",
        "",
        *markdown_table(main_rows, MAIN_COLUMNS),
        "",
        f"Paired differences from `{compared.get('paired_vs')}` (`reports/comparison/paired.md`; `*`: the "
        "interval excludes 0):",
        "",
        *markdown_table(paired_rows(compared.get("paired", {})), ("method", *QUALITY_MEASURES)),
        "",
        "## Ablations",
        "",
    ]
    if ablation_rows:
        lines += markdown_table(ablation_rows, MAIN_COLUMNS)
    else:
        lines.append(
            f"None ran at the {cfg.profile} profile (its `methods.run` holds only the baselines). The "
            "cpu_full and gpu profiles run them all; at any profile, `dvc exp run -S 'methods_run=[...]'` "
            "with the same list in the profile's `methods.run` adds them (docs/baselines.md)."
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
        "Paired differences, student - teacher (`*`: the interval excludes 0):",
        "",
        *markdown_table(
            paired_rows({"student - teacher": student.get("paired_vs_teacher", {})}),
            ("method", *QUALITY_MEASURES),
        ),
        "",
        "## Caption accuracy per attribute",
        "",
        "The world classifier's accuracy at recovering each captioned attribute from the streams "
        "(docs/metrics.md), pooled over windows; real clips give the ceiling. The held-out-pair rows are "
        f"{teacher.get('heldout', {}).get('prompts', 0)} prompts of (colour, shape) pairs no training clip "
        "shows (compositional generalisation), one window each.",
        "",
        *markdown_table(
            caption_rows(teacher, "teacher") + caption_rows(student, "student", real=False), CAPTION_COLUMNS
        ),
        "",
        *autoencoder_lines(autoencoder),
        "## Latency",
        "",
        "One stream (batch 1) on the evaluation device; `ttff_s`: time to the first frame (start-up "
        "included). Paper-scale and GPU timings: `reports/benchmark/benchmark.md`.",
        "",
        *markdown_table(latency_rows, LATENCY_COLUMNS),
        "",
        *seed_lines(
            reports_dir / "seed_spread" / "seed_spread.json",
            train,
            compared,
            reports_dir / "kernel_spread" / "kernel_spread.json",
        ),
        *stage_time_lines(metrics_dir, method_names, shared=frozenset(shared)),
        "## Figures",
        "",
    ]
    figures = list(FIGURES)
    if len(compared.get("drift", {})) > 1:  # rows with drift beside StreamDiT's: every drift curve
        after = next(i for i, (_, rel) in enumerate(figures) if rel == "comparison/quality_over_length.png")
        figures.insert(after + 1, DRIFT_FIGURE)
    for title, rel in figures:
        if not (reports_dir / rel).exists():
            raise FileNotFoundError(
                f"{reports_dir / rel} is missing: run the stage that draws it (dvc repro)"
            )
        lines += [f"### {title}", "", f"![{title}]({rel})", ""]
    path = reports_dir / "README.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines).rstrip() + "\n")
    return path
