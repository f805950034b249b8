"""Every file a run writes and inference reads: model files, evaluator files and training checkpoints.

Inference (sampling, the front-ends, evaluation) reads models through this module, never through a
trainer. Every file is written through a temporary file and a rename (``files.atomic_write``), so a
crash never leaves a torn one.
- a **model file** holds EMA weights, the architecture (``model_config``), the run's config dict and the
  space the model denoises in (``space``: the autoencoder's weights, a pretrained VAE's folder, or pixels);
- an **evaluator file** holds an evaluator's kind, its config dataclass as a dict and its weights;
- a **checkpoint** holds the state of every named object of a run (weights, optimiser, generators,
  data order), the step, the loss history, the seconds trained and the run's key.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from streamdit.autoencoder import space_from_record, space_record
from streamdit.files import atomic_write
from streamdit.model import ModelConfig, StreamDiT, build_model

CHECKPOINT = "checkpoint.pt"  # the file name of a run's checkpoint inside its folder


def atomic_save(obj: object, path: str | Path) -> Path:
    """torch.save through a temporary file and a rename, so a crash never leaves a torn file."""
    return atomic_write(path, lambda f: torch.save(obj, f))


def save_model(path: str | Path, ema: nn.Module, config: dict, space: nn.Module) -> None:
    """Write EMA weights in the format ``load_model`` reads (the architecture is ``config["model"]``),
    with the space the model denoises in (``autoencoder.space_record``), so that a stream needs nothing
    but this file."""
    record = {"ema": ema.state_dict(), "model_config": config["model"], "config": config}
    atomic_save({**record, "space": space_record(space)}, path)


def load_model(path: str | Path, device: str = "cpu") -> tuple[StreamDiT, dict]:
    """The EMA model of a model file, in eval mode on ``device``, and the run's config dict."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no trained model at {path}; run the train stage first (dvc repro train)")
    state = torch.load(path, map_location="cpu", weights_only=False)
    if "model_config" not in state or "ema" not in state:
        raise ValueError(f"{path} is not a StreamDiT model file (keys: {sorted(state)})")
    model = build_model(ModelConfig(**state["model_config"]))
    model.load_state_dict(state["ema"])
    return model.to(device).eval(), state["config"]


def load_space(path: str | Path, device: str = "cpu") -> nn.Module:
    """The space (``autoencoder.py``) the model in the model file ``path`` denoises in, on ``device``."""
    state = torch.load(Path(path), map_location="cpu", weights_only=False)
    if "space" not in state:
        raise ValueError(
            f"{path} records no space (autoencoder), which every model file of save_model has; train it again"
        )
    return space_from_record(state["space"]).to(device)


def save_evaluator(model: nn.Module, cfg: object, path: str | Path) -> Path:
    """Write an evaluator's config dataclass and weights to ``path`` (a ``.pt`` file)."""
    return atomic_save({"kind": type(cfg).__name__, "config": asdict(cfg), "state": model.state_dict()}, path)


def read_evaluator(path: str | Path, cfg_type: type) -> tuple[object, dict]:
    """The config (a ``cfg_type``) and weights of an evaluator file written by ``save_evaluator``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no evaluator at {path}; train it first (the evaluators stage)")
    state = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(state, dict) or state.get("kind") != cfg_type.__name__:
        found = state.get("kind") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"{path} holds {found!r}, not a {cfg_type.__name__} evaluator")
    return cfg_type(**state["config"]), state["state"]


def state_of(obj: object) -> object:
    """The resumable state of a module, optimiser, data order (``state_dict``) or torch.Generator."""
    return obj.get_state() if isinstance(obj, torch.Generator) else obj.state_dict()


def load_state(obj: object, state: object) -> None:
    """Put ``state`` (from ``state_of``) back into ``obj``."""
    if isinstance(obj, torch.Generator):
        obj.set_state(state)
    else:
        obj.load_state_dict(state)


def training_state(
    objects: dict[str, object], step: int, history: list[float], elapsed: float, key: str, **meta
) -> dict:
    """A checkpoint: the state of every named object, the step, loss history, seconds, the run's key
    and any ``meta`` (e.g. the config, for a reader)."""
    return {
        **{name: state_of(obj) for name, obj in objects.items()},
        "step": step,
        "history": history,
        "elapsed": elapsed,
        "run_key": key,
        **meta,
    }


def read_checkpoint(path: Path, expected_key: str, names: list[str]) -> dict:
    """A checkpoint with the states ``names``, with clear errors for a torn/corrupt file, one written by
    another loop, or one of another run."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # torch raises several types for torn or foreign files
        raise ValueError(
            f"checkpoint {path} is unreadable ({err}); delete it to start this run over"
        ) from err
    missing = {*names, "step", "history", "elapsed", "run_key"} - set(state)
    if missing:
        raise ValueError(f"checkpoint {path} lacks {sorted(missing)}; it was not written by this trainer")
    if state["run_key"] != expected_key:
        raise ValueError(
            f"checkpoint {path} belongs to run {state['run_key']}, not {expected_key}; it was moved or "
            "edited by hand: delete it to start over"
        )
    return state


def restore_training_state(state: dict, objects: dict[str, object]) -> tuple[int, list[float], float]:
    """Load a ``training_state`` into the live objects; returns (step, loss history, elapsed seconds)."""
    for name, obj in objects.items():
        load_state(obj, state[name])
    return state["step"], state["history"], state["elapsed"]
