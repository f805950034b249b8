"""Data-parallel training: 2 gloo processes under torchrun train like one process on the same global batch."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import tiny_overrides

from streamdit.distributed import Ranks

REPO = Path(__file__).resolve().parents[1]


def _assignments(overrides: dict, prefix: str = "") -> list[str]:
    """Nested overrides -> ``--set`` KEY=VALUE items (values as JSON, which YAML reads)."""
    items = []
    for key, value in overrides.items():
        if isinstance(value, dict):
            items += _assignments(value, f"{prefix}{key}.")
        else:
            items.append(f"{prefix}{key}={json.dumps(value)}")
    return items


def _train(tmp_path: Path, world, processes: int) -> tuple[list[float], dict]:
    overrides = tiny_overrides(world, steps=4, batch_size=4, checkpoint_every=2, device="cpu")
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    cmd = [sys.executable, *(launcher if processes > 1 else []), "-m", "streamdit.train"]
    cmd += ["--params", str(REPO / "params.yaml"), "--profile", "smoke", "--no-progress"]
    cmd += ["--out", "model.pt", "--work-root", "runs", "--set", *_assignments(overrides)]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    run = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    (loss_file,) = (tmp_path / "runs").glob("*/loss.json")
    summary = json.loads((loss_file.parent / "summary.json").read_text())
    assert summary["processes"] == processes
    return json.loads(loss_file.read_text()), torch.load(tmp_path / "model.pt", weights_only=False)["ema"]


def test_two_gloo_processes_match_one_process(tmp_path, tiny_world):
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    loss_one, ema_one = _train(tmp_path / "one", tiny_world, 1)
    loss_two, ema_two = _train(tmp_path / "two", tiny_world, 2)
    assert len(loss_one) == len(loss_two) == 4
    assert loss_one == pytest.approx(loss_two, rel=1e-4)
    assert loss_one[0] != loss_one[-1]  # the weights moved
    for name, weight in ema_one.items():
        torch.testing.assert_close(ema_two[name], weight, atol=1e-5, rtol=1e-4, msg=name)


def test_rank_rows_split_the_global_batch():
    assert [Ranks(r, 2).rows(8) for r in range(2)] == [slice(0, 4), slice(4, 8)]
    assert Ranks().rows(5) == slice(0, 5)
    with pytest.raises(ValueError, match="batch_size=6 must be divisible by the number of processes \\(4\\)"):
        Ranks(0, 4).rows(6)
