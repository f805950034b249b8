"""Is the generator's shape gap a matter of budget or of objective? The base T2V model trained longer,
or predicting the clean latents, on val.

Every teacher of the study draws the captioned colour, size and background but not the captioned
shape (caption shape accuracy about 0.30 against 0.95 for real clips, docs/results.md), and so does
the base T2V model every row fine-tunes from. This trains the base (``methods.entries.base`` of the
profile: the study's settings, its warm-up and cosine schedule stretched to each length) once per arm:
``STEPS`` (that many steps), then any of ``-x`` (``model.prediction: x``: the network outputs the clean
latents, turned into the velocity, docs/method.md), ``-b<batch>``, ``-lr<learning rate>``, ``-d<width>``
(``model.dim``), ``-L<depth>`` (``model.depth``), ``-s<shift>`` (``train.time_shift`` alone: where the
training levels lie), ``-f<2|4>`` (latents of a world autoencoder of that compression), ``-i<steps>`` (an
image phase first: that many steps on single frames in batches of batch x B frames, about the cost of a
video step, then ``STEPS`` video steps from its weights) and ``-g<guidance>`` (sampling only: the model of
the arm without it, streamed with that guidance scale instead of the evaluation's). Each streams with
the base's own scheme (uniform clips, ``[0, 1, 8, 16]``) from the same noise on the first
``--prompts`` val prompts, scored by the study's evaluation (``evaluate.evaluate_model``:
per-attribute caption accuracy from the world classifier, subject consistency, FVD / KID against the
val scenes' real streams). It also measures how well each model denoises in one call (the RMSE of its
clean-latent prediction at level ``t`` against the noisy input's own RMSE, on val clips), how its
prediction answers a changed shape or colour word, where the shape is decided (``shape_from_level``),
and what white noise in the latents does to the decoded attributes. Paired bootstrap intervals of
each arm minus the first (and of a ``-g`` arm minus its own model, and of the ``--pairs``) on
the same prompts and noise. Val only: the study reports on test.

    python benchmarks/base_sweep.py [--arms 1000 2000 3000 1000-x 1000-g6 1000-f4] [--prompts 64]
                                    [--pairs 1000-d96-L8:2000] [--out reports/base_sweep]

Needs the study's data, evaluators and autoencoder (``dvc repro autoencoder``). A run that has finished
(``runs/train/<key>/``, e.g. the study's base at its own length) is not trained again and a killed one
resumes; an arm's evaluation is kept beside its model file (``runs/base_sweep/``) and reused while the
model file, the evaluation settings and the denoising clips are the same. Writes ``OUT/base_sweep.json``,
``OUT/README.md`` (table and verdict), ``OUT/base_sweep.png`` (accuracy against steps) and
``OUT/strip.png``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import torch
from matplotlib.lines import Line2D
from sweep_table import cell, difference_block, evaluate_on_val, load_trained, val_setup

from streamdit.autoencoder_training import autoencoder_stage
from streamdit.checkpoint import atomic_save
from streamdit.config import load_config
from streamdit.data import WorldClips, clip_batch, file_digest, load_split, world_settings
from streamdit.evaluate import render_videos
from streamdit.evaluators import attribute_accuracy
from streamdit.flow import euler_step, interpolate, predict_clean
from streamdit.methods import method_config
from streamdit.plots import plt
from streamdit.quality import CAPTION_MEASURES, paired_differences, read_arrays, write_arrays
from streamdit.sampling import guided_velocity
from streamdit.schedule import time_grid
from streamdit.train import train
from streamdit.video import reference_strip, to_uint8
from streamdit.world import COLOURS, SHAPES, canonical_caption, render, scene_from_dict

MODELS = Path("runs/base_sweep")  # the model files and their evaluations (ignored by git)
SHOWN = ("caption_shape", "caption_motion", "caption_size", "caption_colour", "caption_mean",
         "subject_consistency", "fvd")  # fmt: skip
LEVELS = (0.1, 0.3, 0.5)  # where the one-call denoising error is measured
SENSITIVITY_LEVELS = (0.3, 0.6, 0.9)  # where the response to a changed word is measured
SENSITIVITY_SCENES = 32  # one-object val scenes of the word sensitivity and of shape_from_level
FROM_INDICES = (4, 8, 12)  # grid indices (of T) shape_from_level starts from: t = 0.5, 0.75, 0.9 at shift 3
STRIP_PROMPTS = 4
STRIP_EVERY = 4  # the strip shows every 4th frame of each stream
NOISE_SIGMAS = (0.0, 0.1, 0.2, 0.3, 0.5)  # latent noise of the decoder probe (latents of unit variance)


# An arm: STEPS, then any of -x (x-prediction), -b<batch>, -lr<learning rate>, -d<model width>, -L<depth>,
# -s<time shift of the training levels> (sampling keeps the study's grid: more or less training at high
# noise for the uniform clip model, whose every level pattern any shift covers), and
# -g<guidance> (sampling only: the same model as the arm without it, streamed with that guidance scale),
# -f<factor> (2 or 4: latents of a world autoencoder with that spatial compression instead of the study's
# 8x, its first log2(factor) stages, trained for the arm; the DiT's patch grows to keep 8x8 tokens a frame),
# -i<steps> (text-to-image steps on single frames before the STEPS video steps: image_config, image_phase).
OPTIONS = {
    "x": (r"x", lambda v: {"model": {"prediction": "x"}}, lambda v: "x-prediction"),
    "b": (r"b(\d+)", lambda v: {"train": {"batch_size": int(v)}}, lambda v: f"batch {v}"),
    "lr": (r"lr(\d*\.?\d+)", lambda v: {"train": {"lr": float(v)}}, lambda v: f"lr {v}"),
    "d": (r"d(\d+)", lambda v: {"model": {"dim": int(v)}}, lambda v: f"width {v}"),
    "L": (r"L(\d+)", lambda v: {"model": {"depth": int(v)}}, lambda v: f"depth {v}"),
    "s": (r"s(\d*\.?\d+)", lambda v: {"train": {"time_shift": float(v)}}, lambda v: f"training shift {v}"),
    "g": (r"g(\d*\.?\d+)", lambda v: {}, lambda v: f"guidance {v}"),
    "f": (r"f(2|4)", lambda v: {}, lambda v: f"{v}x latents"),  # set by factor_overrides (needs the config)
    "i": (r"i([1-9]\d*)", lambda v: {}, lambda v: f"after {v} image steps"),  # image_phase
}


def parse_arm(arm: str) -> tuple[int, dict[str, str]]:
    """``(steps, {option: value})`` of an arm such as ``1000``, ``1000-x``, ``2000-b8`` or ``1000-g6``;
    ValueError for anything else (unknown or repeated options, steps < 1)."""
    head, *parts = arm.split("-")
    found: dict[str, str] = {}
    for part in parts:
        for name, (pattern, _, _) in OPTIONS.items():
            if (match := re.fullmatch(pattern, part)) and name not in found:
                found[name] = match.group(match.lastindex or 0)
                break
        else:
            head = ""  # an unknown or repeated option
    if not head.isdigit() or int(head) < 1:
        raise ValueError(
            f"arm {arm!r}: give STEPS then any of -x (x-prediction), -b<batch>, -lr<lr>, -d<width>, "
            "-L<depth>, -s<shift>, -f<2|4>, -i<image steps>, -g<guidance>, each once, e.g. 1000, 1000-x, "
            "500-i500"
        )
    return int(head), found


def arm_overrides(arm: str) -> dict:
    """The training config overrides of an arm (``parse_arm``); ValueError for a malformed one."""
    steps, options = parse_arm(arm)
    out: dict = {"train": {"steps": steps}}
    for name, value in options.items():
        for section, values in OPTIONS[name][1](value).items():
            out[section] = {**out.get(section, {}), **values}
    return out


def factor_overrides(factor: int, cfg) -> dict:
    """The config overrides of ``-f<factor>``: the study's autoencoder cut to its first log2(factor)
    stages, the DiT's frames ``data.resolution / factor`` cells in patches that keep its tokens a frame."""
    stages = factor.bit_length() - 1
    if len(cfg.autoencoder.widths) < stages:
        raise ValueError(f"-f{factor}: the autoencoder has only {len(cfg.autoencoder.widths)} stages")
    tokens = cfg.model.resolution // cfg.model.patch  # per side, as the study's model
    cells = cfg.data.resolution // factor
    if cells % tokens:
        raise ValueError(f"-f{factor}: {cells} latent cells a side do not split into {tokens} tokens")
    return {
        "autoencoder": {"widths": list(cfg.autoencoder.widths[:stages])},
        "model": {"resolution": cells, "patch": cells // tokens},
    }


def arm_config(arm: str, study, profile: str, extra: dict | None = None):
    """The base's run configuration for ``arm`` (``study``: the profile's config, for ``-f``), then the
    sections of ``extra``; ValueError where the settings are not a valid configuration."""
    overrides = arm_overrides(arm)
    factor = parse_arm(arm)[1].get("f")
    if factor is not None:
        for section, values in factor_overrides(int(factor), study).items():
            overrides[section] = {**overrides.get(section, {}), **values}
    for section, values in (extra or {}).items():
        overrides[section] = {**overrides.get(section, {}), **values}
    return method_config("params.yaml", profile, "base", overrides)[0]


def image_config(arm: str, video, study, profile: str):
    """The image phase of an ``-i<steps>`` arm whose video run is ``video`` (``arm_config``): the arm's
    base on buffers of one frame (a text-to-image model of the same weights) for that many steps, in
    batches of the video's batch x buffer length frames, so that a step costs about what a video step
    costs (the same tokens, attention inside a frame only); None for an arm without ``-i``."""
    options = parse_arm(arm)[1]
    if "i" not in options:
        return None
    one = [0, 1, 1, video.sample.parsed_scheme.T]  # one frame through the video's T levels
    return arm_config(arm, study, profile, {
        "model": {"frames": 1},
        "train": {"steps": int(options["i"]), "batch_size": video.train.batch_size * video.model.frames,
                  "schemes": [one], "scheme_probs": [1.0]},
        "sample": {"scheme": one}, "evaluate": {"schemes": [one]}, "distill": {"teacher": one},
    })  # fmt: skip


def image_phase(arm: str, video, study, profile: str, spaces: dict) -> tuple[Path, float]:
    """Train (or resume) the image phase of an ``-i`` arm (``image_config``); its model file widened to
    the video buffer, the video phase's ``train.finetune_from`` (the same weights: the position table is
    fixed and rebuilt from the frame count, whose first row is the image model's; the model settings of
    the video model; rewritten every time, the same bytes), and its training seconds."""
    cfg = image_config(arm, video, study, profile)
    path = MODELS / f"image_{model_arm(arm)}.pt"
    print(f"== image phase, {cfg.train.steps} steps of {cfg.train.batch_size} frames -> {path}", flush=True)
    seconds = train(cfg, path, progress=True, **spaces)["train_seconds"]
    widened = path.with_suffix(".video.pt")
    state = torch.load(path, map_location="cpu", weights_only=False)
    state["model_config"] = {**state["model_config"], "frames": video.model.frames}
    state["config"]["model"] = dict(state["model_config"])
    atomic_save(state, widened)
    return widened, seconds


def arm_space(cfg, factor: int, evaluators_dir: str = "models/evaluators") -> tuple[Path, Path, dict]:
    """The autoencoder file, the latents folder and the metrics of the ``-f<factor>`` arms' world
    autoencoder (``cfg.autoencoder``): trained, normalised and scored by the study's
    ``autoencoder_stage`` into ``runs/base_sweep/``, or kept there while its settings are the same."""
    path, latents = MODELS / f"autoencoder_f{factor}.pt", MODELS / f"latents_f{factor}"
    kept = MODELS / f"autoencoder_f{factor}.json"
    key = json.loads(json.dumps({"world": world_settings(cfg.data_dir), "autoencoder": vars(cfg.autoencoder)},
                                default=str))  # fmt: skip
    if kept.is_file() and path.is_file() and (stored := json.loads(kept.read_text()))["key"] == key:
        return path, latents, stored["metrics"]
    print(f"== the {factor}x world autoencoder -> {path}", flush=True)
    metrics = autoencoder_stage(cfg, path, latents, evaluators_dir, MODELS / f"autoencoder_f{factor}",
                                progress=True)  # fmt: skip
    kept.write_text(json.dumps({"key": key, "metrics": metrics}, indent=1, default=float) + "\n")
    return path, latents, metrics


def arm_guidance(arm: str, default: float) -> float:
    """The guidance scale an arm streams with: its ``-g`` option, else ``default`` (the evaluation's)."""
    value = parse_arm(arm)[1].get("g")
    return default if value is None else float(value)


def model_arm(arm: str) -> str:
    """The arm whose model ``arm`` streams: itself without its ``-g`` (sampling) option, its options in the
    order of ``OPTIONS`` (``1000-b8-x-g6`` -> ``1000-x-b8``)."""
    steps, options = parse_arm(arm)
    return "-".join(
        [str(steps), *(part_of(name, options[name]) for name in OPTIONS if name in options and name != "g")]
    )


def part_of(name: str, value: str) -> str:
    """The text of option ``name`` with ``value`` in an arm (``x`` has none)."""
    return name if name == "x" else f"{name}{value}"


def arm_label(arm: str) -> str:
    steps, options = parse_arm(arm)
    return ", ".join([f"{steps} steps", *(OPTIONS[name][2](value) for name, value in options.items())])


@torch.no_grad()
def denoising_error(
    model, space, encoder, data_dir: Path, clips: int, seed: int, device: str
) -> dict[str, dict[str, float]]:
    """Per level t of ``LEVELS``: the RMSE of the model's one-call clean prediction (in its space) of the
    first ``clips`` val clips noised to t (whole buffer at t, their own captions), and that of the noisy
    input itself (what predicting ``x_t`` would give)."""
    data = WorldClips(data_dir, "val", length=model.cfg.frames, generator_seed=seed)
    items = [data[i] for i in range(clips)]
    x0 = torch.stack([item["frames"] for item in items]).to(device)
    text = encoder([item["caption"] for item in items])
    z0 = space.encode(x0)
    noise = torch.randn(z0.shape, generator=torch.Generator().manual_seed(seed)).to(device)
    out = {}
    for t in LEVELS:
        levels = torch.full(z0.shape[:2], t, device=device)
        x_t = interpolate(z0, noise, levels)
        z0_hat = predict_clean(x_t, model(x_t, levels, text.tokens, text.mask, text.pooled), levels)
        out[str(t)] = {
            "rmse": float(((z0_hat - z0) ** 2).mean().sqrt()),
            "input_rmse": float(((x_t - z0) ** 2).mean().sqrt()),
        }
    return out


def shape_by_caption(hits: np.ndarray, scenes) -> dict[str, float]:
    """Caption shape accuracy (``hits`` ``[n, windows]`` of the evaluation's arrays) over the one-object
    scenes of each captioned shape: which shapes a model draws so that the classifier reads them."""
    return {
        shape: float(np.mean([hits[i].mean() for i in rows]))
        for shape in SHAPES
        if (rows := [i for i, s in enumerate(scenes) if len(s.objects) == 1 and s.objects[0].shape == shape])
    }


def with_next(scene, attribute: str, values: tuple[str, ...]):
    """A one-object scene with its object's ``attribute`` set to the next of ``values`` (all else kept)."""
    obj = scene.objects[0]
    value = values[(values.index(getattr(obj, attribute)) + 1) % len(values)]
    return dataclasses.replace(scene, objects=(dataclasses.replace(obj, **{attribute: value}),))


@torch.no_grad()
def word_sensitivity(model, space, encoder, scenes, resolution: int, seed: int, device: str) -> dict:
    """How much the model's clean prediction moves when one word of the caption changes, against how much
    the clean latents themselves move when the scene changes that way: for ``shape`` and ``colour``,
    the RMS change of the one-call prediction from ``x_t`` (the true scene's latents noised to each level
    of ``SENSITIVITY_LEVELS``) under the caption with the object's attribute set to the next value, and
    the RMS change of the rendered scene's latents (first ``model.cfg.frames`` frames). A model that reads
    the word as the data varies has a ratio near the data's at low noise."""
    frames = model.cfg.frames

    def latents(specs):
        clips = np.stack([render(s, 0, frames, resolution) for s in specs])
        return space.encode(clip_batch(clips, list(range(len(specs)))).to(device))

    z0 = latents(scenes)
    noise = torch.randn(z0.shape, generator=torch.Generator().manual_seed(seed)).to(device)
    swaps = {"shape": SHAPES, "colour": COLOURS}
    captions = {"true": [canonical_caption(s) for s in scenes]}
    captions |= {a: [canonical_caption(with_next(s, a, v)) for s in scenes] for a, v in swaps.items()}
    text = {name: encoder(c) for name, c in captions.items()}
    out = {
        a: {"data": float(((latents([with_next(s, a, v) for s in scenes]) - z0) ** 2).mean().sqrt())}
        for a, v in swaps.items()
    }
    for t in SENSITIVITY_LEVELS:
        levels = torch.full(z0.shape[:2], t, device=device)
        x_t = interpolate(z0, noise, levels)
        pred = {
            name: predict_clean(x_t, model(x_t, levels, e.tokens, e.mask, e.pooled), levels)
            for name, e in text.items()
        }
        for a in swaps:
            out[a][str(t)] = float(((pred[a] - pred["true"]) ** 2).mean().sqrt())
    return out


@torch.no_grad()
def shape_from_level(model, space, encoder, judge, scenes, resolution: int, guidance: float, shift: float,
                     T: int, seed: int, device: str) -> dict[str, dict[str, float]]:  # fmt: skip
    """Where the shape is decided: the real clips of one-object ``scenes`` (16 frames, as two buffers of
    ``model.cfg.frames``) noised to the level of grid index k of ``FROM_INDICES`` (the sampling grid of T
    steps and time shift ``shift``), then denoised by the model from there to 0 on that grid with guidance
    ``guidance``, under their own caption and under the caption with the next shape word. Per level: the
    world classifier's shape (and colour) accuracy on the decoded clips against the captioned scene
    (``own``, ``own_colour``) and, under the other shape word, against the scene it names (``swapped``)."""
    frames, clip = model.cfg.frames, 16
    swapped = [with_next(s, "shape", SHAPES) for s in scenes]
    real = np.stack([render(s, 0, clip, resolution) for s in scenes])
    z0 = space.encode(clip_batch(real, list(range(len(scenes)))).to(device))
    halves = torch.cat([z0[:, i : i + frames] for i in range(0, clip, frames)])  # [2n, B, ...]
    z = torch.cat([halves, halves])  # own captions, then swapped ones
    n, halves_n = len(scenes), clip // frames
    text = encoder([canonical_caption(s) for s in scenes] + [canonical_caption(s) for s in swapped])
    text = text[torch.tensor([w * n + i for w in (0, 1) for _ in range(halves_n) for i in range(n)])]
    noise = torch.randn(z.shape, generator=torch.Generator().manual_seed(seed)).to(device)
    grid = time_grid(T, shift).to(device)
    out = {}
    for k in FROM_INDICES:
        x = interpolate(z, noise, torch.full(z.shape[:2], float(grid[k]), device=device))
        for i in range(k, 0, -1):
            now = torch.full(z.shape[:2], float(grid[i]), device=device)
            later = torch.full(z.shape[:2], float(grid[i - 1]), device=device)
            x = euler_step(x, guided_velocity(model, x, now, text, guidance), now, later)
        decoded = np.stack([to_uint8(v) for v in space.decode(x)])  # rows: (own, swapped) x halves x scenes
        own, other = (
            np.concatenate(
                [decoded[(halves_n * w + h) * n : (halves_n * w + h + 1) * n] for h in range(halves_n)], 1
            )
            for w in (0, 1)
        )
        own_accuracy = attribute_accuracy(judge, own, scenes)
        out[f"{float(grid[k]):.2f}"] = {
            "own": own_accuracy["shape"],
            "own_colour": own_accuracy["colour"],
            "swapped": attribute_accuracy(judge, other, swapped)["shape"],
        }
    return out


@torch.no_grad()
def decoder_under_noise(
    space, judge, data_dir: Path, clips: int, sigmas: tuple[float, ...], device: str
) -> dict[str, dict[str, float]]:
    """What an error in the latents does to the decoded attributes: the world classifier's accuracy on
    the first ``clips`` val clips encoded, plus white noise of std ``sigma`` (latents of unit variance,
    the same draw scaled), decoded."""
    data, records = load_split(data_dir, "val")
    scenes = [scene_from_dict(r["scene"]) for r in records[:clips]]
    latents = torch.cat(
        [
            space.encode(clip_batch(data, list(range(i, min(i + 50, clips)))).to(device))
            for i in range(0, clips, 50)
        ]
    )
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(0)).to(device)
    out = {}
    for sigma in sigmas:
        noisy = latents + sigma * noise
        decoded = np.stack(
            [to_uint8(v) for i in range(0, clips, 50) for v in space.decode(noisy[i : i + 50])]
        )
        out[str(sigma)] = attribute_accuracy(judge, decoded, scenes)
    return out


def kept_measure(path: Path, key: dict, measure):
    """``measure()``, kept in ``path`` and reused while ``key`` (what it depends on) is the same."""
    key = json.loads(json.dumps(key, default=str))
    if path.is_file() and (kept := json.loads(path.read_text()))["key"] == key:
        return kept["value"]
    value = measure()
    path.write_text(json.dumps({"key": key, "value": value}, indent=1, default=float) + "\n")
    return value


def run_arm(arm: str, args, setup) -> tuple[dict, dict[str, np.ndarray]]:
    """Train (or resume) the arm's base, evaluate it (or reuse its kept evaluation) and measure its word
    sensitivity: its results entry and its per-prompt arrays, whose ``strip`` holds its first streams as
    uint8."""
    study, device, ecfg, scenes, encoder, judges, captions = setup
    factor = parse_arm(arm)[1].get("f")
    cfg = arm_config(arm, study, args.profile)
    spaces: dict = {}  # the study's autoencoder and latents, or the arm's own
    if factor is not None:
        spaces["autoencoder_path"], spaces["latents_dir"], autoencoder = arm_space(cfg, int(factor))
    image_steps, image_seconds = int(parse_arm(arm)[1].get("i", 0)), 0.0
    if image_steps:  # the video phase fine-tunes the image phase's model
        start, image_seconds = image_phase(arm, cfg, study, args.profile, spaces)
        cfg = arm_config(arm, study, args.profile, {"train": {"finetune_from": str(start)}})
    ecfg = dataclasses.replace(ecfg, cfg_scale=arm_guidance(arm, ecfg.cfg_scale))
    model_path = MODELS / f"base_{model_arm(arm)}.pt"
    print(f"== base, {arm_label(arm)} -> {model_path}", flush=True)
    summary = train(cfg, model_path, progress=True, **spaces)
    model, space = load_trained(model_path, device)
    digest = file_digest(model_path, "base")  # what the kept measures of this model are keyed on
    one_object = [s for s in scenes["test"] if len(s.objects) == 1][:SENSITIVITY_SCENES]
    sensitivity = word_sensitivity(
        model, space, encoder, one_object, study.data.resolution, study.seed, device
    )
    # An image step (batch x B frames, the same tokens) counts as a step of the video batch.
    samples = (cfg.train.steps + image_steps) * cfg.train.batch_size
    unkept = {"word_sensitivity": sensitivity, "train_samples": samples, "image_seconds": image_seconds}
    if "g" not in parse_arm(arm)[1]:  # a model's own measure, at the evaluation's guidance
        shift, T = cfg.sample.time_shift, cfg.sample.parsed_scheme.T
        key = {"model": digest, "guidance": ecfg.cfg_scale, "shift": shift, "T": T,
               "from": FROM_INDICES, "scenes": len(one_object), "seed": study.seed}  # fmt: skip
        unkept["shape_from_level"] = kept_measure(
            MODELS / f"base_{arm}.from_level.json",
            key,
            lambda: shape_from_level(model, space, encoder, judges.classifier, one_object,
                                     study.data.resolution, ecfg.cfg_scale, shift, T, study.seed, device),
        )  # fmt: skip
    if factor is not None:
        unkept["autoencoder"] = {k: autoencoder[k] for k in ("val", "seconds", "parameters", "latent_shape")}
    stem = f"base_{arm}.eval"  # a -g arm shares its model, not its evaluation
    kept_json, kept_arrays = MODELS / f"{stem}.json", MODELS / f"{stem}.npz"
    # Everything the kept evaluation depends on besides the code: the model's bytes and the settings.
    key = json.loads(json.dumps({
        "model": digest,
        "evaluate": dataclasses.asdict(ecfg),
        "denoise_clips": args.denoise_clips,
    }, default=str))  # fmt: skip
    if kept_json.is_file() and kept_arrays.is_file():
        kept = json.loads(kept_json.read_text())
        if kept["key"] == key:
            print(f"   evaluation kept in {kept_json}", flush=True)
            return kept["entry"] | unkept, read_arrays(kept_arrays)
    metrics, arrays, video = evaluate_on_val(
        model, space, cfg, ecfg, scenes, encoder, judges, device, captions[:STRIP_PROMPTS]
    )
    entry = {
        "label": arm_label(arm),
        "train_seconds": summary["train_seconds"],
        "loss_last": summary["loss_last"],
        "quality": metrics["schemes"][str(cfg.sample.parsed_scheme)]["long_stream"],
        "real": metrics["real"]["long_stream"],
        "denoising": denoising_error(
            model, space, encoder, Path(study.data_dir), args.denoise_clips, study.seed, device
        ),
    }
    arrays["strip"] = np.stack([to_uint8(v) for v in video])
    write_arrays(arrays, kept_arrays)
    kept_json.write_text(json.dumps({"key": key, "entry": entry}, indent=1, default=float) + "\n")
    return entry | unkept, arrays


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="benchmarks/base_sweep.py", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--arms", nargs="+", default=["1000", "2000", "3000", "1000-x"],
        help="STEPS, then any of -x (x-prediction), -b<batch>, -lr<lr>, -d<width>, -L<depth>, "
        "-s<training time shift>, "
        "-f<2|4> (latent compression), -i<image steps first>, -g<guidance> (sampling); "
        "the first arm is the reference of the paired differences",
    )  # fmt: skip
    parser.add_argument(
        "--pairs", nargs="*", default=[], metavar="A:B",
        help="more paired differences, arm A minus arm B (both in --arms), e.g. 1000-d96-L8:2000 for two "
        "arms of about the same training time",
    )  # fmt: skip
    parser.add_argument("--prompts", type=int, default=64, help="val prompts (default 64)")
    parser.add_argument("--denoise-clips", type=int, default=32, help="val clips of the denoising error")
    parser.add_argument("--noise-clips", type=int, default=200, help="val clips of the decoder probe")
    parser.add_argument("--out", type=Path, default=Path("reports/base_sweep"))
    parser.add_argument("--profile", default="cpu")
    args = parser.parse_args(argv)
    try:  # every arm's configuration, before hours of training
        study = load_config("params.yaml", args.profile)
        for arm in args.arms:
            image_config(arm, arm_config(arm, study, args.profile), study, args.profile)
    except ValueError as err:
        parser.error(str(err))
    pairs = [tuple(pair.split(":")) for pair in args.pairs]
    if any(len(pair) != 2 or not set(pair) <= set(args.arms) for pair in pairs):
        parser.error(f"--pairs takes A:B with A and B among --arms, got {args.pairs}")
    same = {(model_arm(arm), parse_arm(arm)[1].get("g")) for arm in args.arms}
    if len(same) != len(args.arms):
        parser.error(f"--arms must be distinct (options in any order count once), got {args.arms}")
    args.out.mkdir(parents=True, exist_ok=True)
    MODELS.mkdir(parents=True, exist_ok=True)
    study, device, ecfg, scenes, encoder, judges = val_setup(args.profile, args.prompts)
    base_cfg, base_spec = method_config("params.yaml", args.profile, "base")
    ecfg = dataclasses.replace(ecfg, schemes=[base_spec.scheme])
    val = scenes["test"][: args.prompts]
    captions = [canonical_caption(s) for s in val]
    setup = (study, device, ecfg, scenes, encoder, judges, captions)
    results, arrays = {"arms": args.arms, "prompts": args.prompts, "runs": {}}, {}
    for arm in args.arms:
        results["runs"][arm], arrays[arm] = run_arm(arm, args, setup)
    results["real"] = results["runs"][args.arms[0]]["real"]
    _, space = load_trained(MODELS / f"base_{model_arm(args.arms[0])}.pt", device)  # the first arm's space
    results["decoder_under_noise"] = decoder_under_noise(
        space, judges.classifier, Path(study.data_dir), args.noise_clips, NOISE_SIGMAS, device
    )
    key, first = str(base_cfg.sample.parsed_scheme), args.arms[0]
    for arm in args.arms:
        results["runs"][arm]["shape_by_caption"] = shape_by_caption(arrays[arm][f"{key}/caption_shape"], val)
    results["real_shape_by_caption"] = shape_by_caption(arrays[first]["real/caption_shape"], val)
    results["minus_first"] = {
        arm: paired_differences(arrays[arm], key, arrays[first], key, ecfg) for arm in args.arms[1:]
    }
    # A -g arm also against its own model at the evaluation's guidance, where that arm ran too.
    results["minus_own_model"] = {
        arm: paired_differences(arrays[arm], key, arrays[model_arm(arm)], key, ecfg)
        for arm in args.arms
        if model_arm(arm) != arm and model_arm(arm) in args.arms and model_arm(arm) != first
    }
    results["pairs"] = {
        f"{a}:{b}": paired_differences(arrays[a], key, arrays[b], key, ecfg) for a, b in pairs
    }
    real_strip = [
        to_uint8(v)[::STRIP_EVERY]
        for v in render_videos(val[:STRIP_PROMPTS], ecfg.long_frames, study.data.resolution)
    ]
    videos = {arm_label(arm): list(arrays[arm]["strip"][:, ::STRIP_EVERY]) for arm in args.arms}
    reference_strip(args.out / "strip.png", captions[:STRIP_PROMPTS], real_strip, videos)
    plot(results, args.out / "base_sweep.png")
    (args.out / "base_sweep.json").write_text(json.dumps(results, indent=1, default=float) + "\n")
    (args.out / "README.md").write_text(readme(results, args))
    print(readme(results, args))
    return results


def plot(results: dict, path: Path) -> None:
    """Caption accuracy per attribute (mean and interval) against training samples (steps x batch): the
    arms without options joined by lines, every other option set its own marker; real clips dashed. One
    legend says the attributes (colours), another the option sets (markers)."""
    fig, ax = plt.subplots(figsize=(9, 4.5))
    groups: dict[tuple, list[str]] = {}
    for arm in results["arms"]:
        groups.setdefault(tuple(sorted(parse_arm(arm)[1].items())), []).append(arm)
    markers = "osD^vP*XhpH<>d"
    names = ("caption_shape", "caption_motion", "caption_size", "caption_colour")
    for i, name in enumerate(names):
        colour = f"C{i}"
        for j, (options, arms) in enumerate(groups.items()):
            runs = [results["runs"][a]["quality"] for a in arms]
            means = [r[name] for r in runs]
            errors = [
                [r[name] - r[f"{name}_ci"][0] for r in runs],
                [r[f"{name}_ci"][1] - r[name] for r in runs],
            ]
            samples = [results["runs"][a]["train_samples"] for a in arms]
            style = {"linestyle": "none", "mfc": "none"} if options else {"linestyle": "-", "mfc": colour}
            style |= {"marker": markers[j % len(markers)], "capsize": 3, "color": colour}
            ax.errorbar(samples, means, yerr=errors, **style)
        ax.axhline(results["real"][name], color=colour, linestyle="--", linewidth=0.8)
    attributes = [
        Line2D([], [], color=f"C{i}", label=name.removeprefix("caption_")) for i, name in enumerate(names)
    ]
    option_sets = [
        Line2D([], [], color="k", marker=markers[j % len(markers)], linestyle="-" if not options else "none",
               mfc="k" if not options else "none",
               label=", ".join(OPTIONS[k][2](v) for k, v in options) if options else "steps alone")
        for j, options in enumerate(groups)
    ]  # fmt: skip
    first = ax.legend(handles=attributes, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=7)
    ax.add_artist(first)
    ax.legend(handles=option_sets, loc="lower left", bbox_to_anchor=(1.02, 0.0), fontsize=7)
    ax.set_xlabel("base training samples (steps x batch; an image step counts as a step)")
    ax.set_ylabel("caption accuracy (val; dashed: real clips)")
    ax.set_ylim(0, 1.02)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def table(intro: str, header: list[str], rows: list[list[str]]) -> list[str]:
    """A markdown table after a blank line, its introduction and another blank line."""
    lines = ["", intro, "", "| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def readme(results: dict, args) -> str:
    """The table (real and each arm; means with intervals), the denoising errors, the word sensitivity,
    shape accuracy by captioned shape, the decoder under noise and the paired differences against the
    first arm."""
    arms, runs = results["arms"], results["runs"]
    labels = [runs[arm]["label"] for arm in arms]
    command = f"python benchmarks/base_sweep.py --arms {' '.join(arms)} --prompts {args.prompts}"
    if args.pairs:
        command += f" --pairs {' '.join(args.pairs)}"
    lines = [
        "# The base T2V model: training length, objective, settings, sampling and latent space (val prompts)",
        "",
        f"`{command}`: the base (`methods.entries.base`, the {args.profile} profile's settings with its "
        "warm-up and cosine schedule stretched to each length; `-x`: `model.prediction: x`, `-b`: batch, "
        "`-lr`: learning rate, `-d`: `model.dim`, `-L`: `model.depth`, `-s`: `train.time_shift`, `-f`: "
        "latents of a world autoencoder of that compression, `-i`: that many text-to-image steps on single "
        "frames (batches of batch x B frames, the tokens of a video step) before the video steps, `-g`: the "
        "guidance scale of sampling) streamed as uniform clips from the same noise on the first val prompts, "
        "scored by the study's evaluation (docs/metrics.md) against the val scenes' real streams. Training "
        "seconds as measured in each run, an image phase's included (runs that shared the machine with "
        "other work are slower).",
        "",
        "![caption accuracy against training steps](base_sweep.png)",
    ]
    lines += table(
        "Caption accuracy and the VBench analogues (95% bootstrap intervals):",
        ["", "train s", "last loss", *SHOWN],
        [["real", "-", "-", *(cell(results["real"], n) for n in SHOWN)]]
        + [
            [label, f"{runs[arm]['train_seconds'] + runs[arm]['image_seconds']:.0f}",
             f"{runs[arm]['loss_last']:.3f}", *(cell(runs[arm]["quality"], n) for n in SHOWN)]
            for arm, label in zip(arms, labels, strict=True)
        ],
    )  # fmt: skip
    lines += table(
        f"One-call denoising error on {args.denoise_clips} val clips (RMSE of the clean-latent prediction "
        "at level t, latents of unit variance; the noisy input's own RMSE in brackets):",
        ["", *(f"t = {t}" for t in LEVELS)],
        [
            [label, *(f"{e[str(t)]['rmse']:.3f} ({e[str(t)]['input_rmse']:.3f})" for t in LEVELS)]
            for label, e in ((label, runs[arm]["denoising"]) for arm, label in zip(arms, labels, strict=True))
        ],
    )
    lines += table(
        f"The response to a changed word ({SENSITIVITY_SCENES} one-object val scenes): RMS change of the "
        "one-call clean prediction at level t when the caption's shape (colour) word is set to the next "
        "value, and, under `data`, the RMS change of the clean latents when the scene itself changes so:",
        ["", "word", "data", *(f"t = {t}" for t in SENSITIVITY_LEVELS)],
        [
            [label, word, f"{row['data']:.3f}", *(f"{row[str(t)]:.3f}" for t in SENSITIVITY_LEVELS)]
            for arm, label in zip(arms, labels, strict=True)
            for word, row in runs[arm]["word_sensitivity"].items()
        ],
    )
    from_level = [(label, runs[arm]["shape_from_level"]) for arm, label in zip(arms, labels, strict=True)
                  if "shape_from_level" in runs[arm]]  # fmt: skip
    if from_level:
        levels = list(from_level[0][1])
        lines += table(
            f"Where the shape is decided ({SENSITIVITY_SCENES} one-object val scenes, 16 frames as two "
            "buffers): the real clips noised to level t and denoised from there by the model (its "
            "sampling grid and guidance), under their own caption (`own`: the classifier's shape accuracy) "
            "and under the caption with the next shape word (`swapped`: shape accuracy against the scene "
            "that caption names). From t = 1 the model draws the shape alone: the caption accuracy above.",
            ["", *(f"t = {t} {which}" for t in levels for which in ("own", "swapped"))],
            [[label, *(f"{row[t][which]:.2f}" for t in levels for which in ("own", "swapped"))]
             for label, row in from_level],
        )  # fmt: skip
    shapes = list(results["real_shape_by_caption"])
    by_caption = [("real", results["real_shape_by_caption"])]
    by_caption += [(label, runs[arm]["shape_by_caption"]) for arm, label in zip(arms, labels, strict=True)]
    lines += table(
        "Caption shape accuracy by the captioned shape (one-object scenes): which shapes come out so that "
        "the classifier reads them:",
        ["", *shapes],
        [[label, *(f"{row[k]:.2f}" for k in shapes)] for label, row in by_caption],
    )
    own = [(label, runs[arm]["autoencoder"]) for arm, label in zip(arms, labels, strict=True)
           if "autoencoder" in runs[arm]]  # fmt: skip
    if own:
        lines += table(
            "The autoencoders of the `-f` arms (the study's first stages, trained as its `autoencoder` "
            "stage; val clips): reconstruction PSNR and the world classifier's shape accuracy on decoded "
            "against real clips:",
            ["", "latent cells", "parameters", "train s", "PSNR dB", "shape decoded", "shape real"],
            [
                [label, "x".join(map(str, a["latent_shape"])), str(a["parameters"]), f"{a['seconds']:.0f}",
                 f"{a['val']['psnr_db']:.2f}", f"{a['val']['accuracy_decoded']['shape']:.3f}",
                 f"{a['val']['accuracy_real']['shape']:.3f}"]
                for label, a in own
            ],
        )  # fmt: skip
    noisy = results["decoder_under_noise"]
    attributes = list(noisy[str(NOISE_SIGMAS[0])])
    lines += table(
        f"The decoder under latent noise: the world classifier's accuracy on {args.noise_clips} val clips "
        "encoded, plus white noise of std sigma, decoded (sigma 0: the autoencoder alone):",
        ["sigma", *attributes],
        [[sigma, *(f"{accuracy[a]:.3f}" for a in attributes)] for sigma, accuracy in noisy.items()],
    )
    measures = (*CAPTION_MEASURES, "subject_consistency", "fvd", "kid")
    for arm, label in zip(arms[1:], labels[1:], strict=True):
        lines += difference_block(
            f"{label} minus {labels[0]}", results["minus_first"][arm], measures, label, labels[0]
        )
    for arm, diff in results["minus_own_model"].items():
        label, own = runs[arm]["label"], runs[model_arm(arm)]["label"]
        lines += difference_block(f"{label} minus {own}", diff, measures, label, own)
    for pair, diff in results["pairs"].items():
        a, b = (runs[arm]["label"] for arm in pair.split(":"))
        lines += difference_block(f"{a} minus {b}", diff, measures, a, b)
    lines += [
        "",
        f"The first {STRIP_PROMPTS} streams of each arm (every {STRIP_EVERY}th frame) under the real clips: "
        "[strip.png](strip.png).",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
