"""Shared test fixtures: a tiny generated world, the config overrides that fit it, a real kill."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from streamdit.data import generate_dataset
from streamdit.world import WorldConfig

# One torch thread here and in every child process the tests start: the tests' models are tiny, and
# two threads each in processes that share 2 cores with other work run many times slower (each
# thread waits for a descheduled partner), which turns a loaded machine into timeouts. Children
# inherit the variable, so a child and its parent reduce in the same order.
os.environ["OMP_NUM_THREADS"] = "1"
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory):
    """A 16-px, 8-frame world of 12 training clips (generated once per test session)."""
    root = tmp_path_factory.mktemp("world")
    generate_dataset(
        WorldConfig(resolution=16, frames_per_clip=8, n_train=12, n_val=2, n_test=2, n_heldout=2), root
    )
    return root


def tiny_overrides(world, **train):
    return {
        "data_dir": str(world),
        "data": {
            "resolution": 16,
            "frames_per_clip": 8,
            "n_train": 12,
            "n_val": 2,
            "n_test": 2,
            "n_heldout": 2,
        },
        # Pixel frames: the unit tests need no autoencoder (tests/test_autoencoder.py tests latents).
        "model": {"preset": "tiny_pixel", "resolution": 16, "patch": 4, "dim": 32, "depth": 1, "heads": 2},
        "evaluate": {"clip_frames": 8},
        "train": {
            "finetune_from": None,  # from scratch: no base model file exists here
            "steps": 6,
            "batch_size": 3,
            "warmup_steps": 2,
            "checkpoint_every": 3,
            "log_every": 2,
            **train,
        },
    }


def kill_when_checkpointed(script: str, args: list[str], checkpoint: Path, timeout: float = 600) -> None:
    """Run ``python -c script *args`` in a child process and SIGKILL it once ``checkpoint`` exists.

    ``timeout`` only bounds a child that never checkpoints: on a loaded machine the child's imports and
    first steps alone took over 2 minutes once, so the bound is far above a normal run's seconds."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    child = subprocess.Popen([sys.executable, "-c", script, *args], env=env)
    try:
        deadline = time.time() + timeout
        while not checkpoint.exists() and time.time() < deadline and child.poll() is None:
            time.sleep(0.05)
    finally:
        # Popen.send_signal does nothing once the child has exited and been reaped (poll above), so
        # a child that ended early is never confused with whatever process reuses its pid.
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert checkpoint.exists(), f"the child never wrote {checkpoint} (exit code {child.returncode})"


@pytest.fixture(scope="session")
def tiny_model_file(tiny_world, tmp_path_factory):
    """A model file in train.py's format: the tiny world's model with its zero-initialised layers
    perturbed enough for the prompt to change the frames clearly, saved with the smoke profile's
    settings and the scheme [0, 2, 4, 8] (guidance 3; its student [0, 2, 4, 1])."""
    from test_model import _trained_like

    from streamdit.autoencoder import PixelSpace
    from streamdit.checkpoint import save_model
    from streamdit.config import load_config

    overrides = {
        **tiny_overrides(tiny_world),
        "sample": {"scheme": [0, 2, 4, 8]},
        "distill": {"teacher": [0, 2, 4, 8]},
    }
    cfg = load_config(Path(__file__).resolve().parents[1] / "params.yaml", "smoke", overrides)
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    save_model(path, _trained_like(cfg.model, std=0.2), cfg.to_dict(), PixelSpace())
    return path
