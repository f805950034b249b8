"""Run configuration: dataclasses filled from ``params.yaml``, the one source of every number.

``params.yaml`` holds shared sections (``seed``, ``data``, ``text``, ...) and a table
``profiles`` whose entries (``smoke``, ``cpu``, ``gpu``) override them; ``profile``
picks one. ``load_config`` merges shared sections, the chosen profile, then explicit
overrides (a notebook's papermill parameters), and validates every field.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import yaml

from streamdit.acceleration import check_compile_mode, check_device, check_precision
from streamdit.autoencoder import AutoencoderConfig
from streamdit.model import PRESETS, ModelConfig
from streamdit.params import build_dataclass, check_type, dataclass_defaults, deep_merge
from streamdit.schedule import FifoScheme, Scheme, check_buffer, check_stream, parse_scheme
from streamdit.world import WorldConfig


@dataclass
class TextConfig:
    """Which frozen text encoder embeds captions."""

    encoder: str = "minilm"
    max_length: int = 32

    def __post_init__(self) -> None:
        if self.max_length < 2:
            raise ValueError(f"text.max_length must be >= 2, got {self.max_length}")


@dataclass
class LoopConfig:
    """What every training loop shares: length, batch, optimiser, EMA, checkpoints, start-up mix."""

    section: ClassVar[str] = "loop"  # the params.yaml section, named in error messages

    steps: int = 1000
    batch_size: int = 16
    lr: float = 3e-4
    weight_decay: float = 0.0
    warmup_steps: int = 100
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    startup_prob: float = 0.1
    time_shift: float = 1.0
    checkpoint_every: int = 200
    log_every: int = 10
    device: str = "auto"

    def __post_init__(self) -> None:
        name = self.section
        for field_name in ("steps", "batch_size", "checkpoint_every", "log_every"):
            if getattr(self, field_name) < 1:
                raise ValueError(f"{name}.{field_name} must be >= 1, got {getattr(self, field_name)}")
        if self.warmup_steps < 0:
            raise ValueError(f"{name}.warmup_steps must be >= 0, got {self.warmup_steps}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"{name}.ema_decay must be in [0, 1), got {self.ema_decay}")
        if not 0.0 <= self.startup_prob <= 1.0:
            raise ValueError(f"{name}.startup_prob must be in [0, 1], got {self.startup_prob}")
        if self.lr <= 0 or self.grad_clip <= 0 or self.time_shift <= 0:
            raise ValueError(
                f"{name}.lr, {name}.grad_clip and {name}.time_shift must be > 0, "
                f"got {self.lr}, {self.grad_clip}, {self.time_shift}"
            )
        check_device(self.device)


LEVEL_MODES = ("schemes", "segments", "independent")


@dataclass
class TrainConfig(LoopConfig):
    """Buffered flow-matching training with mixed partition schemes."""

    section: ClassVar[str] = "train"

    caption_dropout: float = 0.1
    schemes: list[list[int]] = field(
        default_factory=lambda: [[0, 8, 1, 2], [0, 4, 2, 4], [0, 2, 4, 8], [0, 1, 8, 16]]
    )
    scheme_probs: list[float] | None = None
    # "schemes": levels of a scheme drawn from `schemes` at one offset (mixed training); "segments": each
    # chunk's level drawn inside its own segment (the paper's Eq. 8/9); "independent": every frame's
    # level drawn on its own (Diffusion Forcing); `schemes` then only sets the buffer (B = K + N * c, K = 0).
    level_mode: str = "schemes"
    precision: str = "fp32"  # or "bf16" autocast of the model (acceleration.py)
    compile: str = "none"  # torch.compile mode: none, default, reduce-overhead, max-autotune
    # A model file (the base T2V model) whose EMA weights start this run: a fine-tune; None: from scratch.
    finetune_from: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        try:
            check_precision(self.precision)
            check_compile_mode(self.compile)
        except ValueError as err:
            raise ValueError(f"train.{err}") from None
        if not 0.0 <= self.caption_dropout < 1.0:
            raise ValueError(f"train.caption_dropout must be in [0, 1), got {self.caption_dropout}")
        if not self.schemes:
            raise ValueError("train.schemes must list at least one [K, N, c, s] scheme")
        if self.level_mode not in LEVEL_MODES:
            raise ValueError(f"train.level_mode must be one of {LEVEL_MODES}, got {self.level_mode!r}")
        if self.level_mode == "independent" and any(s.K for s in self.parsed_schemes):
            raise ValueError(
                "train.level_mode 'independent' regresses every frame: its schemes need K = 0, "
                f"got {self.schemes}"
            )
        if self.scheme_probs is None:
            self.scheme_probs = [1.0 / len(self.schemes)] * len(self.schemes)
        if len(self.scheme_probs) != len(self.schemes):
            raise ValueError(
                f"train.scheme_probs has {len(self.scheme_probs)} entries for {len(self.schemes)} schemes"
            )

    @property
    def parsed_schemes(self) -> list[Scheme]:
        return [Scheme.parse(s) for s in self.schemes]


@dataclass
class DistillConfig(LoopConfig):
    """Segment-wise distillation of a guided teacher scheme into a one-step-per-segment student."""

    section: ClassVar[str] = "distill"

    teacher: list[int] = field(default_factory=lambda: [0, 2, 4, 8])  # teacher scheme [K, N, c, s], s > 1
    cfg_scale: float = 3.0  # the teacher's guidance, baked into the student

    def __post_init__(self) -> None:
        super().__post_init__()
        scheme = Scheme.parse(self.teacher)
        if scheme.s < 2:
            raise ValueError(
                f"distill.teacher {list(self.teacher)} has s={scheme.s}; distillation needs s >= 2 "
                "micro-steps per chunk position (the student covers them in one call)"
            )
        if self.cfg_scale < 0:
            raise ValueError(f"distill.cfg_scale must be >= 0 (1 = no guidance), got {self.cfg_scale}")

    @property
    def teacher_scheme(self) -> Scheme:
        return Scheme.parse(self.teacher)


@dataclass
class SampleConfig:
    """Streaming generation: which scheme, how much guidance, what to write."""

    scheme: list[int] | str = field(default_factory=lambda: [0, 2, 4, 8])  # or a FIFO one, "FIFO-B8-n2"
    cfg_scale: float = 3.0
    time_shift: float = 1.0
    context: str = "clean"  # the reference frames (schedule.CONTEXTS)
    frames: int = 48
    prompts: list[str] = field(default_factory=list)
    fps: int = 8
    seed: int = 1
    device: str = "auto"

    def __post_init__(self) -> None:
        check_stream(self.parsed_scheme, None, context=self.context)
        if self.cfg_scale < 0:
            raise ValueError(f"sample.cfg_scale must be >= 0 (1 = no guidance), got {self.cfg_scale}")
        if self.frames < 1 or self.fps < 1:
            raise ValueError(f"sample.frames and sample.fps must be >= 1, got {self.frames}, {self.fps}")
        check_device(self.device)

    @property
    def parsed_scheme(self) -> Scheme | FifoScheme:
        return parse_scheme(self.scheme)


@dataclass
class EvalConfig:
    """What the evaluation measures and on how many prompts (``evaluate`` in params.yaml)."""

    prompts: int = 64  # test prompts (and as many val scenes for the real-vs-real floor)
    clip_frames: int = 16  # frames per clip for FVD (the evaluators see clips of this length)
    long_frames: int = 32  # frames per generated stream, scored in windows
    clip_every: int = 16  # offset between the clips of quality over time
    batch_size: int = 32  # streams generated in parallel
    cfg_scale: float = 3.0
    schemes: list[list[int] | str] = field(default_factory=lambda: [[0, 2, 4, 8]])  # [K, N, c, s] or FIFO
    switch_pairs: int = 8  # prompt pairs (A, B) for the switch test
    switch_frame: int = 16  # frames of A before the switch
    switch_after: int = 24  # frames of B scored after it
    switch_threshold: float = 0.9  # fraction of B's steady-state CLIP score that counts as reached
    latency_frames: int = 32
    latency_warmup_frames: int = 8
    latency_repeats: int = 3
    i3d_path: str | None = None  # i3d_torchscript.pt: FVD with I3D features instead of the world encoder
    clip_model: str = "ViT-B-32"  # open_clip architecture of clip_checkpoint
    clip_checkpoint: str | None = None  # local pretrained CLIP weights instead of the trained CLIP
    bootstrap: int = 200  # resamples of the prompts for every interval (paired ones included)
    bootstrap_level: float = 0.95  # their confidence level (percentile intervals)
    drift_prompts: int = 12  # long streams for drift (0: none), the first test prompts
    drift_frames: int = 256  # their length, scored in non-overlapping clip_frames windows
    heldout_prompts: int = 32  # prompts of the held-out attribute pairs (0: none), one window each
    startup: str = "staggered"  # how each stream fills its first buffer (schedule.STARTUPS)
    context: str = "clean"  # what its reference frames hold (schedule.CONTEXTS)
    seed: int = 2

    def __post_init__(self) -> None:
        for name in ("prompts", "clip_frames", "clip_every", "batch_size", "switch_pairs", "switch_after"):
            if getattr(self, name) < 1:
                raise ValueError(f"evaluate.{name} must be >= 1, got {getattr(self, name)}")
        if self.latency_repeats < 1 or self.bootstrap < 1:
            raise ValueError("evaluate.latency_repeats and evaluate.bootstrap must be >= 1")
        if self.prompts < 2:
            raise ValueError(f"evaluate.prompts must be >= 2 (FVD needs 2 clips), got {self.prompts}")
        if self.long_frames < self.clip_frames:
            raise ValueError(
                f"evaluate.long_frames={self.long_frames} must be >= clip_frames={self.clip_frames}"
            )
        if not 1 <= self.switch_pairs <= self.prompts - 1:
            raise ValueError(
                f"evaluate.switch_pairs must be in [1, prompts - 1 = {self.prompts - 1}], "
                f"got {self.switch_pairs}"
            )
        if self.switch_frame < 0 or self.latency_warmup_frames < 0:
            raise ValueError("evaluate.switch_frame and evaluate.latency_warmup_frames must be >= 0")
        if self.latency_frames < 2:
            raise ValueError(f"evaluate.latency_frames must be >= 2, got {self.latency_frames}")
        if not 0.0 < self.switch_threshold <= 1.0:
            raise ValueError(f"evaluate.switch_threshold must be in (0, 1], got {self.switch_threshold}")
        if self.cfg_scale < 0:
            raise ValueError(f"evaluate.cfg_scale must be >= 0 (1 = no guidance), got {self.cfg_scale}")
        if not 0.0 < self.bootstrap_level < 1.0:
            raise ValueError(f"evaluate.bootstrap_level must be in (0, 1), got {self.bootstrap_level}")
        if not self.schemes:
            raise ValueError("evaluate.schemes must list at least one [K, N, c, s] scheme")
        if self.drift_prompts < 0 or self.heldout_prompts < 0:
            raise ValueError("evaluate.drift_prompts and evaluate.heldout_prompts must be >= 0 (0: none)")
        if self.drift_prompts and not 2 <= self.drift_prompts <= self.prompts:
            raise ValueError(
                f"evaluate.drift_prompts must be 0 or in [2, prompts={self.prompts}], "
                f"got {self.drift_prompts}"
            )
        if self.drift_prompts and self.drift_frames < 2 * self.clip_frames:
            raise ValueError(
                f"evaluate.drift_frames={self.drift_frames} must hold at least 2 windows of "
                f"{self.clip_frames} frames"
            )
        if self.heldout_prompts and not 2 <= self.heldout_prompts <= self.prompts:
            raise ValueError(
                f"evaluate.heldout_prompts must be 0 or in [2, prompts={self.prompts}] (FVD needs 2 clips; "
                f"the real held-out clips are compared with as many test clips), got {self.heldout_prompts}"
            )
        for scheme in self.parsed_schemes:
            check_stream(scheme, None, self.startup, self.context)

    @property
    def parsed_schemes(self) -> list[Scheme | FifoScheme]:
        return [parse_scheme(s) for s in self.schemes]

    @property
    def offsets(self) -> list[int]:
        """Start frames of the clips of quality over time."""
        return clip_offsets(self.long_frames, self.clip_frames, self.clip_every)


def clip_offsets(long_frames: int, clip_frames: int, every: int) -> list[int]:
    """Starts 0, every, 2 * every, ... of the ``clip_frames``-frame clips that fit in ``long_frames``."""
    if long_frames < clip_frames or every < 1:
        raise ValueError(
            f"need long_frames >= clip_frames and every >= 1, got {long_frames}, {clip_frames}, {every}"
        )
    return list(range(0, long_frames - clip_frames + 1, every))


@dataclass
class EvaluatorConfig:
    """How the world evaluators are trained (``evaluators`` in params.yaml): the video encoder (FVD
    features) and the world CLIP (CLIP scores)."""

    encoder_steps: int = 1200
    encoder_batch_size: int = 32
    encoder_lr: float = 0.002
    encoder_degraded: float = 0.75  # fraction of the classifier's clips softened or halved, and noised
    clip_steps: int = 1000
    clip_batch_size: int = 64
    clip_lr: float = 0.001
    seed: int = 2
    device: str = "auto"

    def __post_init__(self) -> None:
        for name in ("encoder_steps", "encoder_batch_size", "clip_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"evaluators.{name} must be >= 1, got {getattr(self, name)}")
        if self.clip_batch_size < 2:
            raise ValueError(
                f"evaluators.clip_batch_size must be >= 2 (contrastive), got {self.clip_batch_size}"
            )
        if not 0 <= self.encoder_degraded <= 1:
            raise ValueError(f"evaluators.encoder_degraded must be in [0, 1], got {self.encoder_degraded}")
        if self.encoder_lr <= 0 or self.clip_lr <= 0:
            raise ValueError(
                f"evaluators.encoder_lr and clip_lr must be > 0, got {self.encoder_lr}, {self.clip_lr}"
            )
        check_device(self.device)


@dataclass
class AutoencoderTrainConfig:
    """The latent space (``autoencoder`` in params.yaml): the world autoencoder and how it is trained, or
    ``path``, a local pretrained VAE folder (diffusers ``AutoencoderKL``) used instead of training one."""

    path: str | None = None
    latent_channels: int = 8
    widths: list[int] = field(default_factory=lambda: [32, 64, 128])  # a stage each, halving h and w: 8x
    steps: int = 1600
    batch_size: int = 16  # frames per step
    lr: float = 0.002
    warmup_steps: int = 50
    latent_penalty: float = 0.0001  # weight of the mean squared raw latent: keeps latents well scaled
    edge_weight: float = 4.0  # extra weight of the squared error at edge pixels (shapes live there)
    checkpoint_every: int = 100
    seed: int = 3
    device: str = "auto"

    def __post_init__(self) -> None:
        for name in ("latent_channels", "steps", "batch_size", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"autoencoder.{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0 or self.latent_penalty < 0 or self.warmup_steps < 0 or self.edge_weight < 0:
            raise ValueError(
                f"autoencoder.lr must be > 0, latent_penalty, warmup_steps and edge_weight >= 0; got "
                f"{self.lr}, {self.latent_penalty}, {self.warmup_steps}, {self.edge_weight}"
            )
        check_device(self.device)

    def architecture(self, resolution: int) -> AutoencoderConfig:
        """The world autoencoder's architecture for frames of ``resolution`` pixels."""
        return AutoencoderConfig(resolution, self.latent_channels, tuple(self.widths))


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
    distill: DistillConfig
    evaluate: EvalConfig
    evaluators: EvaluatorConfig
    autoencoder: AutoencoderTrainConfig

    def __post_init__(self) -> None:
        for scheme in self.train.parsed_schemes + [self.distill.teacher_scheme]:
            check_buffer(scheme, self.model.frames)
        check_stream(self.sample.parsed_scheme, self.model.frames, context=self.sample.context)
        for scheme in self.evaluate.parsed_schemes:
            check_stream(scheme, self.model.frames, self.evaluate.startup, self.evaluate.context)
        if not self.evaluate.i3d_path and self.evaluate.clip_frames != self.data.frames_per_clip:
            raise ValueError(
                f"evaluate.clip_frames={self.evaluate.clip_frames} must equal data.frames_per_clip="
                f"{self.data.frames_per_clip}: the world video encoder is trained on whole clips"
            )
        self.check_space()
        if self.model.frames > self.data.frames_per_clip:
            raise ValueError(
                f"the buffer (model.frames={self.model.frames}) must fit in a clip "
                f"(data.frames_per_clip={self.data.frames_per_clip})"
            )

    def check_space(self) -> None:
        """The model's frames must be what its space makes of the world's frames."""
        m, res = self.model, self.data.resolution
        if m.space == "pixel":
            expected, where = (res, 3), f"data.resolution={res} RGB frames"
        elif self.autoencoder.path is not None:
            return  # a pretrained VAE's shape is known once it is loaded (the train stage checks it)
        else:
            ae = self.autoencoder.architecture(res)  # raises if res does not divide
            expected = (res // ae.factor, ae.latent_channels)
            where = f"the autoencoder's latents of {res}x{res} frames"
        if (m.resolution, m.channels) != expected:
            raise ValueError(
                f"model.space={m.space!r}: model.resolution={m.resolution} and model.channels={m.channels} "
                f"must be {expected[0]} and {expected[1]} ({where}); presets: tiny (latent), tiny_pixel"
            )

    @property
    def latent(self) -> bool:
        """Whether the model denoises autoencoder latents (else pixels)."""
        return self.model.space == "latent"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# The params.yaml sections read into their own dataclass (the model section merges flat, see load_config).
SECTIONS = {
    "data": WorldConfig,
    "text": TextConfig,
    "train": TrainConfig,
    "sample": SampleConfig,
    "distill": DistillConfig,
    "evaluate": EvalConfig,
    "evaluators": EvaluatorConfig,
    "autoencoder": AutoencoderTrainConfig,
}


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
    # A field params.yaml leaves at its default (e.g. train.precision) is still a known key, so a profile,
    # an override or `dvc exp run -S profiles.gpu.train.precision=bf16` may set it.
    for section, cls in SECTIONS.items():
        if isinstance(base.get(section), dict):
            base[section] = {**dataclass_defaults(cls), **base[section]}
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
        seed=check_type(merged["seed"], int, "seed"),
        data_dir=check_type(merged["data_dir"], str, "data_dir"),
        model=build_dataclass(ModelConfig, model_kwargs, "model"),
        **{section: build_dataclass(cls, merged[section], section) for section, cls in SECTIONS.items()},
    )
