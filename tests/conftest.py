"""Shared test fixtures: a tiny generated world and the config overrides that fit it."""

import pytest

from streamdit.data import WorldConfig, generate_dataset


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
        "model": {"resolution": 16, "dim": 32, "depth": 1, "heads": 2},
        "evaluate": {"clip_frames": 8},
        "train": {
            "steps": 6,
            "batch_size": 3,
            "warmup_steps": 2,
            "checkpoint_every": 3,
            "log_every": 2,
            **train,
        },
    }
