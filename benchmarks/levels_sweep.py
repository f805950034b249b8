"""Which noise levels should StreamDiT train on, and how should a stream start? The measurement behind
params.yaml's `train.level_mode`, `train.time_shift`, `train.startup_prob` and `evaluate.startup`
(docs/method.md, "Mixed training" and "Start-up").

Two teachers at the cpu profile's training budget (the study's `train` section):
- ``offset``: the study's main model: every chunk of a steady sample at one shared offset, levels on
  the grid shifted by ``train.time_shift`` (3), half the samples staggered start-up buffers;
- ``segments``: the paper's Eq. 8/9 on the sampling grid: each chunk's level drawn inside its own
  segment (``train.level_mode: segments``), ``time_shift`` 1 as the sampler's, no start-up buffers
  (``startup_prob`` 0), since its streams start from a uniform clip.
Each is streamed with the sample scheme and guidance from the same noise on the first ``--prompts``
val prompts, with the start-ups of ``schedule.STARTUPS`` (staggered pure noise; one uniform clip whose
intermediate frames fill the first buffer, the paper's) and, for ``offset``, also on its own training
grid (sampling shift 3), and scored by the study's evaluation (``evaluate.evaluate_model``) against
the val scenes' real streams. Paired bootstrap intervals of every row minus the study's setting
(``offset``, shift 1, staggered). Val only: the study reports on test.

    python benchmarks/levels_sweep.py [--prompts 64] [--out reports/levels_sweep]

Needs the study's data, evaluators and autoencoder; a teacher whose run is finished (the study's main
model) is not trained again, and a killed run resumes. Writes the model files to ``runs/levels_sweep/``,
``OUT/levels_sweep.json`` and ``OUT/README.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import torch
from sweep_table import cell, difference_block, val_setup

from streamdit.checkpoint import load_model, load_space
from streamdit.config import load_config
from streamdit.evaluate import evaluate_model
from streamdit.quality import CAPTION_MEASURES, paired_differences
from streamdit.train import train

TEACHERS = {
    "offset": {},
    "segments": {"train": {"level_mode": "segments", "time_shift": 1.0, "startup_prob": 0.0}},
}
# row: (teacher, sampling time shift, start-up); the first row is the study's setting.
ROWS = {
    "offset, shift 1, staggered": ("offset", 1.0, "staggered"),
    "offset, shift 1, uniform": ("offset", 1.0, "uniform"),
    "offset, shift 3, staggered": ("offset", 3.0, "staggered"),
    "segments, shift 1, uniform": ("segments", 1.0, "uniform"),
    "segments, shift 1, staggered": ("segments", 1.0, "staggered"),
}
MODELS = Path("runs/levels_sweep")  # the teachers' model files (ignored by git)
SHOWN = ("caption_shape", "caption_colour", "caption_size", "caption_motion", "caption_mean",
         "subject_consistency", "dynamic_degree", "fvd")  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="benchmarks/levels_sweep.py", description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=64, help="val prompts (default 64)")
    parser.add_argument("--out", type=Path, default=Path("reports/levels_sweep"))
    parser.add_argument("--profile", default="cpu")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    base, device, ecfg, scenes, encoder, judges = val_setup(args.profile, args.prompts)
    teachers, results, arrays = {}, {"teachers": {}, "rows": {}}, {}
    for name, overrides in TEACHERS.items():
        cfg = load_config("params.yaml", args.profile, overrides)
        path = MODELS / f"{name}.pt"
        summary = train(cfg, path, progress=True)
        teachers[name] = (load_model(path, device)[0], load_space(path, device))
        results["teachers"][name] = {
            "train": {k: cfg.to_dict()["train"][k] for k in ("level_mode", "time_shift", "startup_prob")},
            "train_seconds": summary["train_seconds"],
        }
    key = str(base.sample.parsed_scheme)
    for row, (teacher, shift, startup) in ROWS.items():
        model, space = teachers[teacher]
        metrics, arrays[row] = evaluate_model(
            model, encoder, scenes, dataclasses.replace(ecfg, startup=startup), judges, shift=shift,
            device=device, space=space, progress=True,
        )  # fmt: skip
        results["rows"][row] = {"quality": metrics["schemes"][key]["long_stream"]}
        results.setdefault("real", {"quality": metrics["real"]["long_stream"]})
    study = next(iter(ROWS))
    results["minus_study"] = {
        row: paired_differences(arrays[row], key, arrays[study], key, ecfg) for row in list(ROWS)[1:]
    }
    (args.out / "levels_sweep.json").write_text(json.dumps(results, indent=1, default=float))
    (args.out / "README.md").write_text(readme(results, args))
    print(readme(results, args))
    return results


def readme(results: dict, args) -> str:
    """The table (real and every row; means with intervals) and each row's paired differences from the
    study's setting."""
    lines = [
        "# Training levels and start-up (val prompts)",
        "",
        f"`python benchmarks/levels_sweep.py --prompts {args.prompts}`: two teachers at the cpu profile's "
        "training budget (`offset`: the study's main model, chunks at one shared offset on the grid of "
        "shift 3, half the samples start-up buffers; `segments`: each chunk's level inside its own segment, "
        "the paper's Eq. 8/9, on the sampling grid, no start-up buffers), streamed with the sample scheme "
        "from the same noise on the first val prompts at a sampling time shift and start-up (`staggered`: "
        "pure noise; `uniform`: one uniform clip fills the first buffer), scored by the study's evaluation "
        "against the val scenes' real streams (docs/metrics.md).",
        "",
        "| | " + " | ".join(SHOWN) + " |",
        "|---" * (len(SHOWN) + 1) + "|",
        "| real | " + " | ".join(cell(results["real"]["quality"], n) for n in SHOWN) + " |",
    ]
    for row, entry in results["rows"].items():
        lines.append(f"| {row} | " + " | ".join(cell(entry["quality"], n) for n in SHOWN) + " |")
    study = next(iter(results["rows"]))
    measures = (*CAPTION_MEASURES, "subject_consistency", "dynamic_degree", "flicker", "fvd")
    for row, diff in results["minus_study"].items():
        lines += difference_block(f"{row} minus {study}", diff, measures, "row", "study")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
