"""Run configuration: dataclasses filled from ``params.yaml``, the one source of every number.

``params.yaml`` holds shared sections (``seed``, ``data``, ``text``, ...) and a table
``profiles`` whose entries (``smoke``, ``cpu``, ``gpu``) override them; ``profile``
picks one. ``load_config`` merges shared sections, the chosen profile, then explicit
overrides (a notebook's papermill parameters), and validates every field.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from streamdit.data import WorldConfig
from streamdit.model import PRESETS, ModelConfig
from streamdit.schedule import Scheme, check_buffer


@dataclass
class TextConfig:
    """Which frozen text encoder embeds captions."""

    encoder: str = "minilm"
    max_length: int = 32

    def __post_init__(self) -> None:
        if self.max_length < 2:
            raise ValueError(f"text.max_length must be >= 2, got {self.max_length}")


@dataclass
class TrainConfig:
    """Buffered flow-matching training with mixed partition schemes."""

    steps: int = 1000
    batch_size: int = 16
    lr: float = 3e-4
    weight_decay: float = 0.0
    warmup_steps: int = 100
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    caption_dropout: float = 0.1
    schemes: list[list[int]] = field(
        default_factory=lambda: [[0, 8, 1, 2], [0, 4, 2, 4], [0, 2, 4, 8], [0, 1, 8, 16]]
    )
    scheme_probs: list[float] | None = None
    startup_prob: float = 0.1
    time_shift: float = 1.0
    checkpoint_every: int = 200
    log_every: int = 10
    device: str = "auto"

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        if self.warmup_steps < 0:
            raise ValueError(f"train.warmup_steps must be >= 0, got {self.warmup_steps}")
        if not 0.0 <= self.caption_dropout < 1.0:
            raise ValueError(f"train.caption_dropout must be in [0, 1), got {self.caption_dropout}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"train.ema_decay must be in [0, 1), got {self.ema_decay}")
        if not 0.0 <= self.startup_prob <= 1.0:
            raise ValueError(f"train.startup_prob must be in [0, 1], got {self.startup_prob}")
        if self.lr <= 0 or self.grad_clip <= 0 or self.time_shift <= 0:
            raise ValueError("train.lr, train.grad_clip and train.time_shift must be > 0")
        if not self.schemes:
            raise ValueError("train.schemes must list at least one [K, N, c, s] scheme")
        if self.scheme_probs is None:
            self.scheme_probs = [1.0 / len(self.schemes)] * len(self.schemes)
        if len(self.scheme_probs) != len(self.schemes):
            raise ValueError(
                f"train.scheme_probs has {len(self.scheme_probs)} entries for {len(self.schemes)} schemes"
            )
        check_device(self.device)

    @property
    def parsed_schemes(self) -> list[Scheme]:
        return [Scheme.parse(s) for s in self.schemes]


@dataclass
class SampleConfig:
    """Streaming generation: which scheme, how much guidance, what to write."""

    scheme: list[int] = field(default_factory=lambda: [0, 2, 4, 8])
    cfg_scale: float = 3.0
    time_shift: float = 1.0
    frames: int = 48
    prompts: list[str] = field(default_factory=list)
    fps: int = 8
    seed: int = 1
    device: str = "auto"

    def __post_init__(self) -> None:
        Scheme.parse(self.scheme)
        if self.cfg_scale < 0:
            raise ValueError(f"sample.cfg_scale must be >= 0 (1 = no guidance), got {self.cfg_scale}")
        if self.frames < 1 or self.fps < 1:
            raise ValueError(f"sample.frames and sample.fps must be >= 1, got {self.frames}, {self.fps}")
        check_device(self.device)

    @property
    def parsed_scheme(self) -> Scheme:
        return Scheme.parse(self.scheme)


@dataclass
class Config:
    """Everything one run of the study needs."""

    profile: str
    seed: int
    data_dir: str
    data: WorldConfig
    text: TextConfig
    model: ModelConfig
    train: TrainConfig
    sample: SampleConfig

    def __post_init__(self) -> None:
        for scheme in self.train.parsed_schemes + [self.sample.parsed_scheme]:
            check_buffer(scheme, self.model.frames)
        if self.model.resolution != self.data.resolution:
            raise ValueError(
                f"model.resolution={self.model.resolution} must equal data.resolution={self.data.resolution}"
            )
        if self.model.frames > self.data.frames_per_clip:
            raise ValueError(
                f"the buffer (model.frames={self.model.frames}) must fit in a clip "
                f"(data.frames_per_clip={self.data.frames_per_clip})"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def check_device(device: str) -> None:
    if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")


def resolve_device(device: str) -> str:
    """'auto' is CUDA when available, else CPU; asking for CUDA without one is an error."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for but torch sees no CUDA device")
    return device


def deep_merge(base: dict, override: dict, where: str = "") -> dict:
    """``base`` updated by ``override`` recursively; a key absent from ``base`` is an error (typo guard)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if key not in out:
            raise ValueError(f"unknown parameter {where}{key!r}; known here: {sorted(out)}")
        if isinstance(value, dict) and isinstance(out[key], dict):
            out[key] = deep_merge(out[key], value, f"{where}{key}.")
        else:
            out[key] = value
    return out


def _build(cls: type, values: dict, section: str) -> Any:
    """A dataclass from a dict, with type checks that name the parameter (YAML lists become tuples)."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise ValueError(f"unknown parameter(s) {sorted(unknown)} in {section!r}; allowed: {sorted(names)}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in values.items():
        kwargs[name] = _check_type(value, hints[name], f"{section}.{name}")
    return cls(**kwargs)


def _check_type(value: Any, hint: Any, where: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        return _check_type(value, next(a for a in args if a is not type(None)), where)
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ValueError(f"{where} must be a list, got {value!r}")
        inner = (
            [_check_type(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)] if args else list(value)
        )
        return tuple(inner) if origin is tuple else inner
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool) and not (
        isinstance(value, hint) and not (hint is int and value is True)
    ):
        raise ValueError(f"{where} must be of type {hint.__name__}, got {value!r} ({type(value).__name__})")
    return value


def load_config(
    path: str | Path = "params.yaml", profile: str | None = None, overrides: dict | None = None
) -> Config:
    """The validated run configuration for ``profile`` (default: the file's ``profile`` key)."""
    raw = yaml.safe_load(Path(path).read_text())
    if not isinstance(raw, dict) or "profiles" not in raw:
        raise ValueError(f"{path} must be a mapping with a 'profiles' table")
    profile = profile or raw.get("profile")
    profiles = raw["profiles"]
    if profile not in profiles:
        raise ValueError(f"unknown profile {profile!r} in {path}; choose one of {sorted(profiles)}")
    layers = [profiles[profile] or {}, overrides or {}]
    base = {k: v for k, v in raw.items() if k not in ("profiles", "profile")}
    # The model section is a preset name plus any ModelConfig fields, so it merges flat
    # (ModelConfig itself rejects unknown names); every other section must exist in the base.
    model_values = dict(base.pop("model", {}))
    merged = base
    for where, layer in zip((f"profiles.{profile}.", "overrides."), layers, strict=True):
        layer = dict(layer)
        model_values.update(layer.pop("model", {}) or {})
        merged = deep_merge(merged, layer, where)

    preset = model_values.pop("preset", "tiny")
    if preset not in PRESETS:
        raise ValueError(f"unknown model preset {preset!r}; choose one of {sorted(PRESETS)}")
    model_kwargs = {**dataclasses.asdict(PRESETS[preset]), **model_values}
    return Config(
        profile=profile,
        seed=_check_type(merged["seed"], int, "seed"),
        data_dir=_check_type(merged["data_dir"], str, "data_dir"),
        data=_build(WorldConfig, merged["data"], "data"),
        text=_build(TextConfig, merged["text"], "text"),
        model=_build(ModelConfig, model_kwargs, "model"),
        train=_build(TrainConfig, merged["train"], "train"),
        sample=_build(SampleConfig, merged["sample"], "sample"),
    )
