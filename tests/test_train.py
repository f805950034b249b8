import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import kill_when_checkpointed, tiny_overrides

import streamdit.train as train_module
from streamdit.checkpoint import CHECKPOINT, load_model
from streamdit.config import load_config
from streamdit.data import generate_dataset
from streamdit.optim import lr_at, update_ema
from streamdit.schedule import Scheme, loss_mask
from streamdit.train import loss_history, run_key, train
from streamdit.world import WorldConfig

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


def tiny_config(world, **train):
    return load_config(PARAMS, "smoke", tiny_overrides(world, **train))


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path, monkeypatch):
    """train() writes its text-embedding cache under the working directory: keep it in the test's folder."""
    monkeypatch.chdir(tmp_path)


def record_training_batches(monkeypatch) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Record (levels [b, B], loss mask [b, B]) of every batch that ``train`` noises and regresses."""
    levels, batches = [], []
    interpolate, loss = train_module.interpolate, train_module.flow_matching_loss

    def noised(x0, noise, t):
        levels.append(t.detach().clone())
        return interpolate(x0, noise, t)

    def regressed(v, target, mask):
        batches.append((levels[-1], mask.detach().clone()))
        return loss(v, target, mask)

    monkeypatch.setattr(train_module, "interpolate", noised)
    monkeypatch.setattr(train_module, "flow_matching_loss", regressed)
    return batches


def fits_scheme(levels: torch.Tensor, mask: torch.Tensor, scheme: Scheme, shift: float) -> bool:
    """Whether one training row (levels [B], mask [B]) is a buffer of ``scheme`` (schedule.py): K
    references at grid index 0 or T, then N chunks of c frames at one index each, chunk j at
    min(i_0 + j * s, T), and a loss on the non-references only."""
    u = levels.double() / (shift - (shift - 1) * levels.double())  # the inverse of the time shift
    index = u * scheme.T
    refs, chunks = index[: scheme.K], index[scheme.K :].reshape(scheme.N, scheme.c)
    expected = (chunks[0, 0] + scheme.s * torch.arange(scheme.N, dtype=torch.float64)).clamp(max=scheme.T)
    return (
        torch.equal(mask, loss_mask(scheme))
        and all(torch.isclose(r, refs[0]) for r in refs)
        and (scheme.K == 0 or min(abs(refs[0]), abs(refs[0] - scheme.T)) < 1e-3)
        and torch.allclose(chunks, expected[:, None].expand_as(chunks), atol=1e-3)
    )


def test_lr_schedule_warms_up_then_decays_to_a_tenth():
    assert lr_at(0, 1.0, 10, 100) == pytest.approx(0.1)
    assert lr_at(9, 1.0, 10, 100) == pytest.approx(1.0)
    assert lr_at(100, 1.0, 10, 100) == pytest.approx(0.1)
    assert lr_at(55, 1.0, 10, 100) == pytest.approx(0.55)


def test_ema_moves_towards_the_model():
    ema, model = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    before = ema.weight.detach().clone()
    update_ema(ema, model, decay=0.75)
    assert torch.allclose(ema.weight, 0.75 * before + 0.25 * model.weight)


def test_training_writes_a_loadable_model_and_summary(tiny_world, tmp_path):
    cfg = tiny_config(tiny_world)
    summary = train(cfg, tmp_path / "model.pt", work_root=tmp_path / "runs", progress=False)
    history = loss_history(cfg, tmp_path / "runs")
    assert summary["steps"] == 6 and len(history) == 6
    # the summary averages max(1, min(50, 6 // 10)) = 1 step at either end of the logged history
    assert (summary["loss_first"], summary["loss_last"]) == (history[0], history[-1])
    model, saved = load_model(tmp_path / "model.pt")
    assert saved["model"]["dim"] == 32
    out = model(
        torch.zeros(1, 8, 3, 16, 16),
        torch.rand(1, 8),
        torch.zeros(1, 2, 384),
        torch.ones(1, 2, dtype=torch.bool),
        torch.zeros(1, 384),
    )
    assert out.shape == (1, 8, 3, 16, 16) and out.abs().sum() > 0  # trained: no longer the zero init


def test_interrupted_training_resumes_to_the_same_weights(tiny_world, tmp_path):
    cfg = tiny_config(tiny_world)
    train(cfg, tmp_path / "a.pt", work_root=tmp_path / "straight", progress=False)
    assert train(cfg, tmp_path / "b.pt", work_root=tmp_path / "resumed", progress=False, stop_after=3) is None
    assert (tmp_path / "resumed" / run_key(cfg) / CHECKPOINT).is_file() and not (tmp_path / "b.pt").exists()
    train(cfg, tmp_path / "b.pt", work_root=tmp_path / "resumed", progress=False)
    a, b = torch.load(tmp_path / "a.pt")["ema"], torch.load(tmp_path / "b.pt")["ema"]
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert loss_history(cfg, tmp_path / "straight") == loss_history(cfg, tmp_path / "resumed")


def test_runs_of_different_configs_never_share_a_checkpoint(tiny_world):
    assert run_key(tiny_config(tiny_world)) != run_key(tiny_config(tiny_world, lr=3e-3))
    assert run_key(tiny_config(tiny_world)) == run_key(tiny_config(tiny_world))


def test_missing_model_file_says_what_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="run the train stage"):
        load_model(tmp_path / "nope.pt")


def test_corrupt_or_foreign_checkpoint_is_a_clear_error(tiny_world, tmp_path):
    cfg = tiny_config(tiny_world)
    ckpt = tmp_path / "runs" / run_key(cfg) / CHECKPOINT
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="unreadable"):
        train(cfg, tmp_path / "m.pt", work_root=tmp_path / "runs", progress=False)
    torch.save({"step": 1}, ckpt)
    with pytest.raises(ValueError, match="not written by this trainer"):
        train(cfg, tmp_path / "m.pt", work_root=tmp_path / "runs", progress=False)


def test_non_finite_loss_stops_with_the_last_checkpoint_kept(tiny_world, tmp_path):
    cfg = tiny_config(tiny_world, lr=1e30, grad_clip=1e30, warmup_steps=0, checkpoint_every=1)
    with pytest.raises(FloatingPointError, match="last good checkpoint is kept") as error:
        train(cfg, tmp_path / "m.pt", work_root=tmp_path / "runs", progress=False)
    state = torch.load(tmp_path / "runs" / run_key(cfg) / CHECKPOINT, weights_only=False)
    # the kept checkpoint is the one the message names: every step before the failing one, all finite
    failed, kept = map(int, re.search(r"at step (\d+);.*\(step (\d+)\)", str(error.value)).groups())
    assert kept == failed - 1 == state["step"] and len(state["history"]) == kept
    assert all(math.isfinite(loss) for loss in state["history"])
    assert all(torch.isfinite(p).all() for p in state["model"].values())


def test_sigkill_mid_run_resumes_to_the_same_weights(tiny_world, tmp_path):
    """A real kill: the trainer runs in a child process that gets SIGKILL once a checkpoint exists."""
    overrides = tiny_overrides(tiny_world, steps=16, checkpoint_every=2)
    cfg = load_config(PARAMS, "smoke", overrides)
    script = (
        "import json, sys; from streamdit.config import load_config; from streamdit.train import train; "
        f"train(load_config({str(PARAMS)!r}, 'smoke', json.loads(sys.argv[1])), sys.argv[2], "
        "work_root=sys.argv[3], progress=False)"
    )
    ckpt = tmp_path / "killed" / run_key(cfg) / CHECKPOINT
    kill_when_checkpointed(
        script, [json.dumps(overrides), str(tmp_path / "k.pt"), str(tmp_path / "killed")], ckpt
    )
    killed_at = torch.load(ckpt, weights_only=False)["step"]
    assert 0 < killed_at < 16 and not (tmp_path / "k.pt").exists()

    train(cfg, tmp_path / "k.pt", work_root=tmp_path / "killed", progress=False)
    train(cfg, tmp_path / "s.pt", work_root=tmp_path / "straight", progress=False)
    a, b = torch.load(tmp_path / "k.pt")["ema"], torch.load(tmp_path / "s.pt")["ema"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_two_processes_with_one_seed_and_thread_count_train_the_same_weights(tiny_world, tmp_path):
    """Training is a function of its settings on one machine: two fresh processes (2 threads each)
    write identical weights. Across machines: benchmarks/determinism.py, docs/pipeline.md."""
    overrides = tiny_overrides(tiny_world, steps=4)
    script = (
        "import json, sys, torch; from streamdit.config import load_config; "
        "from streamdit.train import train; torch.set_num_threads(2); "
        f"train(load_config({str(PARAMS)!r}, 'smoke', json.loads(sys.argv[1])), sys.argv[2], "
        "work_root=sys.argv[3], progress=False)"
    )
    env = {**os.environ, "PYTHONPATH": str(PARAMS.parent / "src")}
    for name in ("a", "b"):
        args = [json.dumps(overrides), str(tmp_path / f"{name}.pt"), str(tmp_path / name)]
        subprocess.run([sys.executable, "-c", script, *args], env=env, check=True, timeout=300)
    a, b = torch.load(tmp_path / "a.pt")["ema"], torch.load(tmp_path / "b.pt")["ema"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_independent_levels_train_and_get_their_own_run_key(tiny_world, tmp_path, monkeypatch):
    mixed = tiny_config(tiny_world, steps=2)
    forcing = tiny_config(
        tiny_world, steps=2, level_mode="independent", schemes=[[0, 8, 1, 2]], scheme_probs=[1.0]
    )
    assert "level_mode" in mixed.to_dict()["train"] and run_key(forcing) != run_key(mixed)
    batches = record_training_batches(monkeypatch)
    summary = train(forcing, tmp_path / "df.pt", work_root=tmp_path / "runs", progress=False)
    assert summary["steps"] == 2 and math.isfinite(summary["loss_last"])
    # Diffusion Forcing: every frame has a loss and its own level, so no row is a buffer of the scheme
    # (or of any scheme: scheme levels never fall along the buffer)
    rows = [(t, m) for levels, mask in batches for t, m in zip(levels, mask, strict=True)]
    assert len(rows) == 2 * 3 and all(m.all() for _, m in rows)
    diagonal = forcing.train.parsed_schemes[0]
    assert not any(fits_scheme(t, m, diagonal, forcing.train.time_shift) for t, m in rows)
    assert all((t.diff() < 0).any() for t, _ in rows)
    # the same run with the default level_mode draws buffers of its schemes
    batches.clear()
    train(mixed, tmp_path / "mixed.pt", work_root=tmp_path / "runs", progress=False)
    rows = [(t, m) for levels, mask in batches for t, m in zip(levels, mask, strict=True)]
    assert len(rows) == 2 * 3
    for t, m in rows:
        assert any(fits_scheme(t, m, sc, mixed.train.time_shift) for sc in mixed.train.parsed_schemes), t
    with pytest.raises(ValueError, match="level_mode must be one of"):
        tiny_config(tiny_world, level_mode="diagonal")
    with pytest.raises(ValueError, match="need K = 0"):
        tiny_config(tiny_world, level_mode="independent", schemes=[[4, 1, 4, 16]], scheme_probs=[1.0])


def make_one_clip_world(root: Path) -> Path:
    """A world whose train split is one 16-px, 8-frame clip: every batch is that clip, repeated."""
    generate_dataset(
        WorldConfig(resolution=16, frames_per_clip=8, n_train=1, n_val=1, n_test=1, n_heldout=1), root
    )
    return root


@pytest.fixture(scope="module")
def one_clip_world(tmp_path_factory):
    return make_one_clip_world(tmp_path_factory.mktemp("one_clip_world"))


def test_training_overfits_one_clip(one_clip_world, tmp_path):
    """80 steps on one clip: the mean loss of the last 8 steps is below the first 8's by at least
    1.5x (measured 2.32x at seed 0; 2.28-2.38x over seeds 0-2). The noise and levels change every
    step, so the loss keeps a floor; a model that did not learn stays at the first steps' loss."""
    cfg = tiny_config(one_clip_world, steps=80, lr=5e-3, warmup_steps=5, checkpoint_every=80, log_every=80)
    summary = train(cfg, tmp_path / "m.pt", work_root=tmp_path / "runs", progress=False)
    first, last = summary["loss_first"], summary["loss_last"]
    assert last < first / 1.5, f"loss {first:.3f} -> {last:.3f}: expected a fall of at least 1.5x"


def test_a_fine_tune_starts_from_its_base_and_keys_on_its_bytes(tiny_world, tmp_path):
    import copy

    from streamdit.model import build_model
    from streamdit.train import model_space, start_from

    base_cfg = tiny_config(tiny_world)
    train(base_cfg, tmp_path / "base.pt", work_root=tmp_path / "runs", progress=False)
    cfg = tiny_config(tiny_world, finetune_from=str(tmp_path / "base.pt"), steps=3)
    model = build_model(cfg.model)
    ema = copy.deepcopy(model)
    start_from(model, ema, tmp_path / "base.pt", cfg, model_space(cfg, "unused"))
    base = torch.load(tmp_path / "base.pt", weights_only=False)["ema"]
    assert all(
        torch.equal(model.state_dict()[k], v) and torch.equal(ema.state_dict()[k], v) for k, v in base.items()
    )

    summary = train(cfg, tmp_path / "tuned.pt", work_root=tmp_path / "runs", progress=False)
    assert summary["steps"] == 3 and summary["finetuned_from"]["path"] == str(tmp_path / "base.pt")
    assert torch.load(tmp_path / "tuned.pt", weights_only=False)["config"]["train"]["finetune_from"]
    key = run_key(cfg)
    assert key != run_key(tiny_config(tiny_world, steps=3))  # not the from-scratch run
    train(tiny_config(tiny_world, lr=3e-3), tmp_path / "base.pt", work_root=tmp_path / "runs", progress=False)
    assert run_key(cfg) != key  # another base file: another run

    other = tiny_config(tiny_world, finetune_from=str(tmp_path / "base.pt"))
    other.model.dim = 64  # another architecture
    with pytest.raises(ValueError, match=r"another architecture \(model settings \['dim'\]"):
        start_from(build_model(other.model), build_model(other.model), tmp_path / "base.pt", other,
                   model_space(other, "unused"))  # fmt: skip
    with pytest.raises(FileNotFoundError, match="dvc repro base"):
        run_key(tiny_config(tiny_world, finetune_from=str(tmp_path / "missing.pt")))


def test_a_fine_tune_may_switch_how_the_bases_weights_attend(tiny_world, tmp_path):
    """Full attention, one time embedding and chunk-causal attention change what the same weights compute
    (``model.SWITCHES``): the ablations and the chunk-causal model start from the bidirectional base."""
    import copy

    from streamdit.model import build_model
    from streamdit.train import model_space, start_from

    train(tiny_config(tiny_world), tmp_path / "base.pt", work_root=tmp_path / "runs", progress=False)
    cfg = tiny_config(tiny_world, finetune_from=str(tmp_path / "base.pt"))
    cfg.model.causal_chunk, cfg.model.full_attention, cfg.model.per_frame_time = 4, True, False
    model = build_model(cfg.model)
    start_from(model, copy.deepcopy(model), tmp_path / "base.pt", cfg, model_space(cfg, "unused"))
    base = torch.load(tmp_path / "base.pt", weights_only=False)["ema"]
    assert all(torch.equal(model.state_dict()[k], v) for k, v in base.items())
