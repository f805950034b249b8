"""What the val sweeps share (space_sweep.py, levels_sweep.py, base_sweep.py): their evaluation set-up and
runs, and the markdown of a measure with its interval and of a paired difference with its verdict."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from streamdit.acceleration import resolve_device
from streamdit.checkpoint import load_model, load_space
from streamdit.config import load_config
from streamdit.data import WorldClips
from streamdit.evaluate import evaluate_model, load_judges
from streamdit.streaming import Streamer
from streamdit.tables import LOWER_IS_BETTER
from streamdit.text import load_text_encoder


def val_setup(profile: str, prompts: int):
    """The profile's config, device, the study's evaluation cut to ``prompts`` val prompts and the sample
    scheme (no drift, held-out pairs or repeated latency), the val scenes with as many train scenes for the
    floor, the text encoder and the world judges."""
    base = load_config("params.yaml", profile)
    device = resolve_device(base.train.device)
    ecfg = dataclasses.replace(base.evaluate, prompts=prompts, drift_prompts=0, heldout_prompts=0,
                               schemes=[base.sample.scheme], switch_pairs=1, latency_repeats=1)  # fmt: skip
    scenes = {
        "test": WorldClips(Path(base.data_dir), "val", length=1).scenes,
        "floor": WorldClips(Path(base.data_dir), "train", length=1).scenes,
    }
    encoder = load_text_encoder(base.text.encoder, base.text.max_length)
    return base, device, ecfg, scenes, encoder, load_judges(ecfg, "models/evaluators", device)


def load_trained(model_path, device: str):
    """A model file's EMA model and its space (autoencoder or pixels), on ``device``."""
    return load_model(model_path, device)[0], load_space(model_path, device)


def evaluate_on_val(model, space, cfg, ecfg, scenes, encoder, judges, device: str, captions: list[str]):
    """The model's evaluation (``evaluate.evaluate_model`` with ``ecfg`` on ``scenes`` from ``val_setup``;
    sampling time shift of ``cfg``) and its streams of ``captions`` with ``cfg``'s sample scheme, the
    evaluation's guidance, length, seed and batch size: ``(metrics, arrays, videos)``."""
    metrics, arrays = evaluate_model(
        model, encoder, scenes, ecfg, judges, shift=cfg.sample.time_shift, device=device, space=space,
        progress=True,
    )  # fmt: skip
    streamer = Streamer(model, encoder, cfg.sample.parsed_scheme, ecfg.cfg_scale, cfg.sample.time_shift,
                        space=space)  # fmt: skip
    videos = streamer.videos(encoder(captions), ecfg.long_frames, seed=ecfg.seed, batch_size=ecfg.batch_size)
    return metrics, arrays, videos


def cell(report: dict, name: str) -> str:
    """``report[name]`` of a quality report (``quality.quality_report``) with its interval
    ``report[name + "_ci"]`` where there is one, as ``mean [low, high]``; "-" when the report lacks it."""
    value = report.get(name)
    if value is None:
        return "-"
    interval = report.get(f"{name}_ci")
    return f"{value:.3f}" if interval is None else f"{value:.3f} [{interval[0]:.3f}, {interval[1]:.3f}]"


def difference_line(name: str, d: dict, a: str, b: str) -> str:
    """One paired difference a - b (an entry ``d`` of ``quality.paired_differences``) with its verdict:
    which is better where the interval excludes 0 (lower is better for ``tables.LOWER_IS_BETTER``),
    "no difference" where it holds 0."""
    if d["low"] <= 0 <= d["high"]:
        verdict = "no difference"
    else:
        a_higher = d["low"] > 0
        verdict = f"{a if a_higher == (name not in LOWER_IS_BETTER) else b} better"
    return f"- {name}: {d['diff']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}] ({verdict})"


def difference_block(title: str, diff: dict, measures: tuple[str, ...], a: str, b: str) -> list[str]:
    """A paired difference a - b as markdown: ``title`` ("x minus y"), then ``difference_line`` for each
    of ``measures`` that ``diff`` (``quality.paired_differences``) holds."""
    lines = ["", f"{title}, paired over prompts (95% bootstrap interval):", ""]
    return lines + [difference_line(m, diff[m], a, b) for m in measures if m in diff]
