"""Baselines and ablations (DESIGN.md section 1, "Baselines"): every method is a training config plus a
sampling scheme, run through the same ``train``, ``StreamSampler`` and ``evaluate_model`` as StreamDiT.

``params.yaml`` holds a ``methods`` section: ``train`` (the training budget of every method's model),
``run`` (which methods a profile trains and evaluates; profiles override it) and ``entries``, one per
method: its scheme and guidance, the train / model overrides of its model, or ``model_of`` another
method whose model it samples without training (FIFO-Diffusion on the uniform model). A method's
``Config`` is ``load_config`` with these as overrides, so its training run (``runs/train/<run key>``)
is shared with every method that trains the same model.

DVC cannot select a list by the value of ``profile``, so ``dvc.yaml``'s ``foreach`` stages read the
top-level ``methods_run``; ``resolve_methods`` insists that it equals the profile's ``methods.run``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from streamdit.config import Config, load_config
from streamdit.params import build_dataclass, deep_merge
from streamdit.schedule import parse_scheme, stream_nfe_per_frame


@dataclass
class MethodSpec:
    """One entry of ``methods.entries``: what the method samples with and how its model is trained."""

    about: str  # one line for the comparison table
    scheme: list[int] | str  # the sampling scheme [K, N, c, s], or FIFO-Diffusion's ("FIFO-B8-n2-lookahead")
    cfg_scale: float | None = None  # guidance; None: evaluate.cfg_scale
    context: str = "clean"  # the reference frames (schedule.CONTEXTS): "noised" extends training free
    model_of: str | None = None  # sample the model of this other method (training free)
    train: dict[str, Any] = field(default_factory=dict)  # overrides of the train section
    model: dict[str, Any] = field(default_factory=dict)  # overrides of the model section
    drift: bool = False  # also measure drift over long streams (evaluate.drift_prompts x drift_frames)

    def __post_init__(self) -> None:
        if self.model_of is not None and (self.train or self.model):
            raise ValueError(
                f"a method with model_of={self.model_of!r} samples that method's model: it cannot set "
                f"train {self.train} or model {self.model} overrides"
            )


@dataclass
class Methods:
    """The resolved ``methods`` section of one profile."""

    train: dict[str, Any]
    run: list[str]
    entries: dict[str, MethodSpec]


def resolve_methods(params_file: str | Path, profile: str | None = None) -> Methods:
    """The ``methods`` section merged with ``profiles.<profile>.methods``, every entry validated.

    Raises if ``run`` names an unknown method, a ``model_of`` points to a missing or training-free
    method, or the top-level ``methods_run`` (what dvc.yaml iterates) differs from ``run``.
    """
    raw = yaml.safe_load(Path(params_file).read_text())
    profile = profile or raw["profile"]
    if profile not in raw["profiles"]:
        raise ValueError(
            f"unknown profile {profile!r} in {params_file}; choose one of {sorted(raw['profiles'])}"
        )
    layer = dict((raw["profiles"][profile] or {}).get("methods", {}))
    # methods.train holds train-section keys (load_config checks them), so a profile may add any
    train = {**raw["methods"]["train"], **layer.pop("train", {})}
    section = {**deep_merge(raw["methods"], layer, f"profiles.{profile}.methods."), "train": train}
    entries = {
        name: build_dataclass(MethodSpec, values, f"methods.entries.{name}")
        for name, values in section["entries"].items()
    }
    for name, spec in entries.items():
        base = entries.get(spec.model_of) if spec.model_of else spec
        if base is None or base.model_of is not None:
            raise ValueError(
                f"methods.entries.{name}.model_of={spec.model_of!r} must name a method that trains its own "
                f"model, one of {sorted(n for n, s in entries.items() if s.model_of is None)}"
            )
    run = list(section["run"])
    unknown = [name for name in run if name not in entries]
    if unknown or len(set(run)) != len(run):
        raise ValueError(
            f"methods.run {run} must list distinct methods of {sorted(entries)}; unknown: {unknown}"
        )
    if raw.get("methods_run") != run:
        raise ValueError(
            f"methods_run in {params_file} is {raw.get('methods_run')} but profile {profile!r} runs {run}: "
            f"dvc.yaml iterates methods_run, so set it to the profile's list "
            f"(e.g. dvc exp run -S profile={profile} -S 'methods_run=[{', '.join(run)}]')"
        )
    return Methods(train=dict(section["train"]), run=run, entries=entries)


def method_config(
    params_file: str | Path, profile: str | None, name: str, overrides: dict | None = None
) -> tuple[Config, MethodSpec]:
    """The run configuration of method ``name`` (then ``overrides``) and its entry.

    Its model is trained with ``methods.train`` and the entry's (or its ``model_of``'s) train and model
    overrides; sampling and evaluation use its scheme and guidance.
    """
    methods = resolve_methods(params_file, profile)
    if name not in methods.entries:
        raise ValueError(f"unknown method {name!r}; methods.entries has {sorted(methods.entries)}")
    spec = methods.entries[name]
    trained = methods.entries[spec.model_of] if spec.model_of else spec
    base = load_config(params_file, profile)
    cfg_scale = base.evaluate.cfg_scale if spec.cfg_scale is None else spec.cfg_scale
    method_layer = {
        "train": {**methods.train, **trained.train},
        "model": trained.model,
        "sample": {"scheme": spec.scheme, "cfg_scale": cfg_scale, "context": spec.context},
        # The held-out pairs are measured for the main model and its student only, drift also for the
        # methods that ask for it (`drift: true`).
        "evaluate": {
            "schemes": [spec.scheme],
            "cfg_scale": cfg_scale,
            "context": spec.context,
            "heldout_prompts": 0,
            **({} if spec.drift else {"drift_prompts": 0}),
        },
    }
    layer = dict(overrides or {})
    for section, values in method_layer.items():
        layer[section] = {**values, **layer.get(section, {})}
    return load_config(params_file, profile, layer), spec


def method_summary(name: str, cfg: Config, spec: MethodSpec) -> dict:
    """What the comparison table says about a method besides its scores."""
    return {
        "name": name,
        "about": spec.about,
        "model_of": spec.model_of or name,
        "scheme": spec.scheme if isinstance(spec.scheme, str) else list(spec.scheme),
        "context": spec.context,
        "nfe_per_frame": stream_nfe_per_frame(
            parse_scheme(spec.scheme), cfg.evaluate.cfg_scale, bool(cfg.model.causal_chunk)
        ),
        "cfg_scale": cfg.evaluate.cfg_scale,
        "train_steps": cfg.train.steps,
        "finetune_from": cfg.train.finetune_from,
        "train_batch_size": cfg.train.batch_size,
        "level_mode": cfg.train.level_mode,
        "train_schemes": [list(s) for s in cfg.train.schemes],
        "full_attention": cfg.model.full_attention,
        "per_frame_time": cfg.model.per_frame_time,
        "causal_chunk": cfg.model.causal_chunk,
    }
