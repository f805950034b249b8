"""How much do the study's numbers move when a model is trained again with another seed? The yardstick for
the paired differences between methods in reports/README.md (issue: reproducibility across seeds).

StreamDiT (the `train` section: the base fine-tuned on mixed schemes) is fine-tuned again from the study's
base (`models/base.pt`) with each training seed of ``--seeds`` (the top-level `seed`: the order of the
clips, the levels, the noise and the caption dropout of the fine-tune), and every model streams the
study's test prompts from the study's noise (`evaluate.seed`) with its sample scheme, scored by the
study's evaluation (no drift, held-out pairs or repeated latency). ``--methods`` adds methods of
`methods.entries` that train a model of their own (e.g. `uniform_clips`, the control). Seed 0 is the
study's own run (finished: not trained again), so its row repeats the study's numbers.

For every measure the table gives each seed's value, the mean, the standard deviation across seeds and
the largest paired difference between two seeds (same prompts and noise, 95% bootstrap interval), and
beside it every method's paired difference from StreamDiT in `metrics/comparison.json`: a method
difference within the seed-to-seed spread is not one a retraining would keep.

    python benchmarks/seed_spread.py [--seeds 0 1 2] [--methods uniform_clips] [--shift 1] [--out DIR]

(``--out`` defaults to reports/seed_spread, the file the report stage reads.)

Needs the study's outputs (`make study`): data, evaluators, autoencoder, base and comparison. Writes
the model files to ``runs/seed_spread/``, ``OUT/seed_spread.json`` and ``OUT/README.md``; a killed run
resumes.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import statistics
from pathlib import Path

import torch
from sweep_table import cell

from streamdit.acceleration import resolve_device
from streamdit.checkpoint import load_model, load_space
from streamdit.config import load_config
from streamdit.data import WorldClips
from streamdit.evaluate import evaluate_model, load_judges
from streamdit.methods import method_config
from streamdit.quality import CAPTION_MEASURES, paired_differences
from streamdit.text import load_text_encoder
from streamdit.train import train

MODELS = Path("runs/seed_spread")  # the retrained models (ignored by git)
SHOWN = (*CAPTION_MEASURES, "subject_consistency", "background_consistency", "flicker", "dynamic_degree",
         "fvd", "clip_score")  # fmt: skip


def config_for(name: str, seed: int, profile: str):
    """The run configuration of ``name`` ("streamdit": the train section; else a method) at ``seed``."""
    if name == "streamdit":
        return load_config("params.yaml", profile, {"seed": seed})
    cfg, spec = method_config("params.yaml", profile, name, {"seed": seed})
    if spec.model_of is not None:
        raise ValueError(f"{name} samples {spec.model_of}'s model: give {spec.model_of} instead")
    return cfg


def study_scenes(cfg) -> dict:
    """The scenes the study's evaluation streams: the test prompts, and as many val scenes for the FVD
    floor."""
    return {key: WorldClips(Path(cfg.data_dir), split, length=1).scenes
            for key, split in (("test", "test"), ("floor", "val"))}  # fmt: skip


def quick_evaluation(cfg):
    """``cfg.evaluate`` without drift, held-out pairs, prompt switches past the first or repeated latency:
    the streams of the study's test prompts and their scores, which these runs compare."""
    return dataclasses.replace(cfg.evaluate, drift_prompts=0, heldout_prompts=0, switch_pairs=1,
                               latency_repeats=1)  # fmt: skip


def stream_and_score(path, cfg, scenes: dict, encoder, shift: float, device: str) -> tuple[dict, dict, str]:
    """Stream ``scenes``' test prompts from the study's noise with the model file at ``path`` (its sample
    scheme) and score them with the study's judges (``quick_evaluation``): ``evaluate_model``'s metrics
    and arrays, and the scheme's key in them."""
    ecfg = quick_evaluation(cfg)
    model, space = load_model(path, device)[0], load_space(path, device)
    metrics, arrays = evaluate_model(
        model, encoder, scenes, ecfg, load_judges(ecfg, "models/evaluators", device),
        shift=shift, device=device, space=space, progress=True,
    )  # fmt: skip
    return metrics, arrays, next(iter(metrics["schemes"]))


def spread(values: list[float]) -> dict:
    """Mean, standard deviation across seeds (n - 1) and range of one measure."""
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "range": max(values) - min(values),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="benchmarks/seed_spread.py", description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="*", default=[], help="trained methods to retrain too")
    parser.add_argument("--profile", default="cpu")
    parser.add_argument(
        "--shift", type=float, default=None, help="time shift to stream with (default: sample's)"
    )
    parser.add_argument("--out", type=Path, default=Path("reports/seed_spread"))
    args = parser.parse_args(argv)
    if len(args.seeds) < 2 or len(set(args.seeds)) != len(args.seeds):
        raise SystemExit(f"--seeds needs at least 2 distinct seeds, got {args.seeds}")
    args.out.mkdir(parents=True, exist_ok=True)
    base = load_config("params.yaml", args.profile)
    device = resolve_device(base.train.device)
    scenes = study_scenes(base)
    encoder = load_text_encoder(base.text.encoder, base.text.max_length)
    shift = base.sample.time_shift if args.shift is None else args.shift
    results = {"seeds": args.seeds, "shift": shift, "models": {}}
    for name in ["streamdit", *args.methods]:
        per_seed, arrays = {}, {}
        for seed in args.seeds:
            cfg = config_for(name, seed, args.profile)
            path = MODELS / f"{name}_seed{seed}.pt"
            summary = train(cfg, path, progress=True)
            metrics, arrays[seed], key = stream_and_score(path, cfg, scenes, encoder, shift, device)
            results.setdefault("base", summary["finetuned_from"])  # the base every seed fine-tunes
            per_seed[seed] = {
                "quality": metrics["schemes"][key]["long_stream"],
                "loss_last": summary["loss_last"],
                "train_seconds": summary["train_seconds"],
            }
            results.setdefault("real", metrics["real"]["long_stream"])
        pairs = {
            f"{a} - {b}": paired_differences(arrays[a], key, arrays[b], key, quick_evaluation(cfg))
            for b, a in itertools.combinations(args.seeds, 2)
        }
        results["models"][name] = {
            "scheme": key,
            "per_seed": per_seed,
            "spread": {m: spread([per_seed[s]["quality"][m] for s in args.seeds]) for m in SHOWN},
            "seed_pairs": pairs,
        }
    comparison = Path("metrics/comparison.json")
    results["methods_minus_streamdit"] = json.loads(comparison.read_text()).get("paired", {})
    (args.out / "seed_spread.json").write_text(json.dumps(results, indent=1, default=float))
    (args.out / "README.md").write_text(readme(results, args))
    print(readme(results, args))
    return results


def largest_pair(pairs: dict, measure: str) -> str:
    """The seed pair whose paired difference of ``measure`` is largest in size, with its interval."""
    name, d = max(((n, p[measure]) for n, p in pairs.items()), key=lambda item: abs(item[1]["diff"]))
    star = "*" if not d["low"] <= 0 <= d["high"] else ""
    return f"{d['diff']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]{star} ({name})"


def readme(results: dict, args) -> str:
    """Per model: every seed's row, the spread and the largest seed-to-seed paired difference per
    measure; then the method differences of the study beside StreamDiT's seed spread."""
    seeds = results["seeds"]
    lines = [
        "# Seed-to-seed spread",
        "",
        f"`python benchmarks/seed_spread.py --seeds {' '.join(map(str, seeds))}"
        + (f" --methods {' '.join(args.methods)}" if args.methods else "")
        + (f" --shift {args.shift:g}" if args.shift is not None else "")
        + "`: each model fine-tuned from the study's base with every training seed (seed 0: the study's own "
        f"run), streamed from the study's noise on its test prompts at time shift {results['shift']:g} and "
        "scored by the study's evaluation. "
        "`std`: the standard deviation across seeds; `largest seed pair`: the largest paired difference "
        "between two seeds (same prompts and noise; `*`: the interval excludes 0).",
        "",
    ]
    for name, entry in results["models"].items():
        lines += [
            f"## {name} ({entry['scheme']})",
            "",
            "| measure | real | "
            + " | ".join(f"seed {s}" for s in seeds)
            + " | mean | std | largest seed pair |",
            "|---" * (len(seeds) + 5) + "|",
        ]
        for m in SHOWN:
            s = entry["spread"][m]
            values = " | ".join(cell(entry["per_seed"][seed]["quality"], m) for seed in seeds)
            lines.append(
                f"| {m} | {results['real'].get(m, float('nan')):.3f} | {values} | {s['mean']:.3f} | "
                f"{s['std']:.3f} | {largest_pair(entry['seed_pairs'], m)} |"
            )
        lines.append("")
    main = results["models"]["streamdit"]
    lines += [
        "## The study's method differences beside StreamDiT's seed spread",
        "",
        "Each method minus StreamDiT (`metrics/comparison.json`, paired over the same prompts and noise) "
        "next to StreamDiT's standard deviation across seeds and its largest seed-to-seed difference: a "
        "method difference no larger than these is within what retraining StreamDiT alone moves.",
        "",
        "| method | measure | method - StreamDiT | StreamDiT seed std | largest seed pair |",
        "|---|---|---|---|---|",
    ]
    for method, diffs in results["methods_minus_streamdit"].items():
        for m in ("caption_mean", "caption_shape", "subject_consistency", "dynamic_degree", "fvd"):
            d = diffs[m]
            star = "*" if not d["low"] <= 0 <= d["high"] else ""
            lines.append(
                f"| {method} | {m} | {d['diff']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]{star} | "
                f"{main['spread'][m]['std']:.3f} | {largest_pair(main['seed_pairs'], m)} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
