import dataclasses
import json
import math
import re
from pathlib import Path

import pytest
import torch
from conftest import kill_when_checkpointed, tiny_overrides
from test_model import _trained_like as perturbed_model  # zero-init layers perturbed: non-zero velocity
from test_sampling import FakeModel, oracle_towards, text
from test_train import make_one_clip_world

from streamdit.autoencoder import PixelSpace
from streamdit.checkpoint import CHECKPOINT, load_model, save_model
from streamdit.config import DistillConfig, load_config
from streamdit.distill import (
    distill,
    distill_key,
    distill_loss_history,
    distillation_loss,
    segment_target,
    teacher_segment,
)
from streamdit.flow import euler_step, interpolate
from streamdit.model import ModelConfig
from streamdit.sampling import StreamSampler, guided_velocity
from streamdit.schedule import Scheme, buffer_levels, time_grid
from streamdit.stages import sample_teacher_vs_student
from streamdit.text import TextEmbedding

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"
TEACHERS = [Scheme(0, 2, 4, 8), Scheme(0, 4, 2, 4), Scheme(2, 3, 2, 3), Scheme(0, 1, 8, 16)]


def random_text(batch, dim, seed=0):
    g = torch.Generator().manual_seed(seed)
    return TextEmbedding(
        torch.randn(batch, 5, dim, generator=g),
        torch.ones(batch, 5, dtype=torch.bool),
        torch.randn(batch, dim, generator=g),
    )


@pytest.mark.parametrize("teacher", TEACHERS)
@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_student_grid_is_the_teachers_grid_points(teacher, shift):
    student = teacher.distilled()
    assert student == Scheme(teacher.K, teacher.N, teacher.c, 1) and student.T == teacher.N
    assert torch.allclose(time_grid(student.T, shift), time_grid(teacher.T, shift)[:: teacher.s])
    # Student offset o' and teacher offset o' * s give every frame the same level, start-up included.
    offsets = torch.linspace(1 - student.N, 1, 23, dtype=torch.float64)
    for started in (True, False):
        assert torch.allclose(
            buffer_levels(student, offsets, shift, started),
            buffer_levels(teacher, offsets * teacher.s, shift, started),
        )


def test_schemes_that_cannot_be_distilled_are_rejected():
    with pytest.raises(ValueError, match="s=1"):
        Scheme(0, 8, 1, 1).distilled()
    with pytest.raises(ValueError, match=r"distill.teacher \[0, 8, 1, 1\] has s=1"):
        DistillConfig(teacher=[0, 8, 1, 1])
    with pytest.raises(ValueError, match="startup_prob must be in"):
        DistillConfig(startup_prob=1.5)


def test_regression_target_is_the_teachers_multistep_result():
    teacher_scheme, shift, cfg_scale = Scheme(1, 3, 2, 4), 2.0, 3.0
    cfg = ModelConfig(frames=7, resolution=16, dim=32, depth=1, heads=2, text_dim=24, window=(4, 2, 2))
    teacher = perturbed_model(cfg)
    g = torch.Generator().manual_seed(1)
    x0, noise = torch.randn(4, 7, 3, 16, 16, generator=g), torch.randn(4, 7, 3, 16, 16, generator=g)
    offset = torch.tensor([0.0, 0.6, -1.5, -2.0], dtype=torch.float64)  # two steady, two start-up rows
    started = torch.tensor([True, True, False, False])
    txt = random_text(4, 24)
    student = teacher_scheme.distilled()
    t_now = buffer_levels(student, offset, shift, started).float()
    t_next = buffer_levels(student, offset + 1, shift, started).float()
    x_t = interpolate(x0, noise, t_now)

    x_end = teacher_segment(teacher, x_t, offset, started, teacher_scheme, txt, cfg_scale, shift)
    by_hand = x_t
    with torch.no_grad():
        for k in range(teacher_scheme.s):
            a = buffer_levels(teacher_scheme, offset * teacher_scheme.s + k, shift, started).float()
            b = buffer_levels(teacher_scheme, offset * teacher_scheme.s + k + 1, shift, started).float()
            by_hand = euler_step(by_hand, guided_velocity(teacher, by_hand, a, txt, cfg_scale), a, b)
    assert torch.allclose(x_end, by_hand, atol=1e-6)
    assert not torch.allclose(x_end, x_t)

    target, mask = segment_target(x_t, x_end, t_now, t_next, student)
    # Frames with a loss: non-references whose level moves. Row 3 (o' = -2) is a fresh start:
    # only the oldest chunk leaves t = 1; row 2 (o' = -1.5) also moves the second chunk half a step.
    expected = torch.tensor(
        [
            [False, True, True, True, True, True, True],
            [False, True, True, True, True, True, True],
            [False, True, True, True, True, False, False],
            [False, True, True, False, False, False, False],
        ]
    )
    assert torch.equal(mask, expected)
    # One student Euler step with the target velocity lands on the teacher's result on every frame.
    assert torch.allclose(euler_step(x_t, target, t_now, t_next), x_end, atol=1e-5)


def test_an_exact_student_has_zero_loss_and_an_inexact_one_does_not():
    """Towards a constant clip the oracle velocity makes Euler exact, so s teacher steps equal one step."""
    teacher_scheme = Scheme(0, 2, 4, 8)
    oracle = FakeModel(oracle_towards(0.5))
    x0, noise = torch.full((3, 8, 1, 2, 2), 0.5), torch.randn(3, 8, 1, 2, 2, generator=torch.Generator())
    offset = torch.tensor([0.0, 0.3, -0.7], dtype=torch.float64)
    started = torch.tensor([True, True, False])
    args = (x0, noise, text(batch=3), teacher_scheme, offset, started, 3.0, 1.0)
    assert distillation_loss(oracle, oracle, *args).item() < 1e-10
    lazy = FakeModel(lambda x, levels, pooled: torch.zeros_like(x))
    assert distillation_loss(lazy, oracle, *args).item() > 0.1


@pytest.mark.parametrize(
    "scheme",
    [Scheme(0, 2, 4, 8), Scheme(0, 4, 2, 4), Scheme.uniform(8, 16), Scheme.diagonal(8), Scheme(2, 3, 2, 3)],
)
@pytest.mark.parametrize("cfg_scale", [1.0, 3.0])
def test_nfe_per_frame_matches_a_long_stream(scheme, cfg_scale):
    rows = []

    def counting(x, levels, pooled):
        rows.append(x.shape[0])  # forward passes x stream rows
        return torch.zeros_like(x)

    sampler = StreamSampler(FakeModel(counting, frames=scheme.B), scheme, text(batch=2), cfg_scale=cfg_scale)
    sampler.take(scheme.c)  # start-up: the first chunk
    rows.clear()
    emitted = sampler.emitted
    sampler.take(6 * scheme.B)
    assert sum(rows) / 2 / (sampler.emitted - emitted) == pytest.approx(scheme.nfe_per_frame(cfg_scale))
    assert scheme.nfe_per_frame(cfg_scale) == scheme.s / scheme.c * (1 if cfg_scale == 1.0 else 2)


def test_student_stream_emits_a_chunk_every_call():
    """With s = 1 the first chunk leaves after N calls, then one chunk of c frames per call: a frame
    crosses the buffer in N calls, and N calls emit a buffer's worth (N * c) of frames."""
    student = Scheme(1, 3, 2, 4).distilled()
    sampler = StreamSampler(FakeModel(oracle_towards(0.0), frames=student.B), student, text())
    emitted_at = []
    for _ in range(4 * student.N):
        if sampler.step() is not None:
            emitted_at.append(sampler.calls)
    assert emitted_at == list(range(student.N, 4 * student.N + 1))
    assert sampler.emitted == len(emitted_at) * student.c


@pytest.fixture
def tiny_setup(tiny_world, tmp_path, monkeypatch):
    """A config for the tiny world and a (perturbed, untrained) teacher file in train.py's format."""
    monkeypatch.chdir(tmp_path)  # the text cache and nothing else land in the test's folder
    return distill_setup(tiny_world, tmp_path, steps=4, warmup_steps=1, checkpoint_every=2, log_every=2)


def distill_setup(world, tmp_path, **loop):
    """The smoke config for ``world``, a perturbed untrained teacher saved in train.py's format, and
    a distillation of it with the ``[0, 4, 2, 2]`` teacher scheme and the loop settings ``loop``."""
    cfg = load_config(PARAMS, "smoke", tiny_overrides(world))
    teacher_path = tmp_path / "teacher.pt"
    save_model(teacher_path, perturbed_model(cfg.model), cfg.to_dict(), PixelSpace())
    dcfg = DistillConfig(teacher=[0, 4, 2, 2], batch_size=2, device="cpu", **loop)
    return cfg, dcfg, teacher_path


def test_interrupted_distillation_resumes_to_the_same_student(tiny_setup, tmp_path):
    cfg, dcfg, teacher_path = tiny_setup
    summary = distill(
        cfg, dcfg, teacher_path, tmp_path / "a.pt", work_root=tmp_path / "straight", progress=False
    )
    history = distill_loss_history(cfg, dcfg, teacher_path, tmp_path / "straight")
    # the summary averages max(1, min(50, 4 // 10)) = 1 step at either end of the logged history
    assert summary["steps"] == 4 and (summary["loss_first"], summary["loss_last"]) == (
        history[0],
        history[-1],
    )
    assert summary["teacher_nfe_per_frame"] == 2.0 and summary["nfe_reduction"] == 4.0
    key = distill_key(cfg, dcfg, teacher_path)
    assert (
        distill(
            cfg,
            dcfg,
            teacher_path,
            tmp_path / "b.pt",
            work_root=tmp_path / "resumed",
            progress=False,
            stop_after=2,
        )
        is None
    )
    assert (tmp_path / "resumed" / key / CHECKPOINT).is_file() and not (tmp_path / "b.pt").exists()
    distill(cfg, dcfg, teacher_path, tmp_path / "b.pt", work_root=tmp_path / "resumed", progress=False)
    a, b = torch.load(tmp_path / "a.pt")["ema"], torch.load(tmp_path / "b.pt")["ema"]
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert len(history) == 4 and history == distill_loss_history(
        cfg, dcfg, teacher_path, tmp_path / "resumed"
    )

    student, saved = load_model(tmp_path / "a.pt")
    teacher, _ = load_model(teacher_path)
    assert saved["distill"]["teacher"] == [0, 4, 2, 2] and saved["model"]["dim"] == 32
    changed = [n for n, p in student.state_dict().items() if not torch.equal(p, teacher.state_dict()[n])]
    assert changed  # the student moved away from its teacher

    metrics = sample_teacher_vs_student(
        cfg, dcfg, teacher_path, tmp_path / "a.pt", tmp_path / "report", count=2
    )
    assert (tmp_path / "report" / "teacher_vs_student.png").is_file()
    # 16 frames in chunks of 2: the teacher (T = 8, s = 2) needs 8 + 7 * 2 calls; the student (T = 4),
    # started by the teacher on its twice finer grid, (4 - 1) * 2 teacher calls, then one call per chunk.
    assert (metrics["teacher"]["model_calls"], metrics["student"]["model_calls"]) == (22, 6 + 8)
    assert metrics["nfe_reduction"] == 4.0 and metrics["student"]["finite"]


def test_a_new_teacher_never_resumes_an_old_student(tiny_setup, tmp_path):
    cfg, dcfg, teacher_path = tiny_setup
    before = distill_key(cfg, dcfg, teacher_path)
    save_model(teacher_path, perturbed_model(cfg.model, seed=1), cfg.to_dict(), PixelSpace())
    assert distill_key(cfg, dcfg, teacher_path) != before


def test_sigkill_mid_distillation_resumes_to_the_same_student(tiny_world, tiny_setup, tmp_path):
    cfg, dcfg, teacher_path = tiny_setup
    dcfg = dataclasses.replace(dcfg, steps=12, checkpoint_every=2)
    script = (
        "import json, sys; from streamdit.config import DistillConfig, load_config; "
        "from streamdit.distill import distill; "
        f"cfg = load_config({str(PARAMS)!r}, 'smoke', json.loads(sys.argv[1])); "
        "distill(cfg, DistillConfig(**json.loads(sys.argv[2])), sys.argv[3], sys.argv[4], "
        "work_root=sys.argv[5], progress=False)"
    )
    ckpt = tmp_path / "killed" / distill_key(cfg, dcfg, teacher_path) / CHECKPOINT
    args = [json.dumps(tiny_overrides(tiny_world)), json.dumps(dataclasses.asdict(dcfg)), str(teacher_path)]
    kill_when_checkpointed(script, [*args, str(tmp_path / "k.pt"), str(tmp_path / "killed")], ckpt)
    assert 0 < torch.load(ckpt, weights_only=False)["step"] < 12 and not (tmp_path / "k.pt").exists()
    distill(cfg, dcfg, teacher_path, tmp_path / "k.pt", work_root=tmp_path / "killed", progress=False)
    distill(cfg, dcfg, teacher_path, tmp_path / "s.pt", work_root=tmp_path / "straight", progress=False)
    a, b = torch.load(tmp_path / "k.pt")["ema"], torch.load(tmp_path / "s.pt")["ema"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_non_finite_distillation_loss_stops_with_the_last_checkpoint_kept(tiny_setup, tmp_path):
    cfg, dcfg, teacher_path = tiny_setup
    dcfg = dataclasses.replace(dcfg, lr=1e30, grad_clip=1e30, warmup_steps=0, checkpoint_every=1, steps=20)
    with pytest.raises(FloatingPointError, match="last good checkpoint is kept") as error:
        distill(cfg, dcfg, teacher_path, tmp_path / "m.pt", work_root=tmp_path / "runs", progress=False)
    state = torch.load(
        tmp_path / "runs" / distill_key(cfg, dcfg, teacher_path) / CHECKPOINT, weights_only=False
    )
    # the kept checkpoint is the one the message names: every step before the failing one, all finite
    failed, kept = map(int, re.search(r"at step (\d+);.*\(step (\d+)\)", str(error.value)).groups())
    assert kept == failed - 1 == state["step"] and len(state["history"]) == kept
    assert all(math.isfinite(loss) for loss in state["history"])
    assert all(torch.isfinite(p).all() for p in state["model"].values())


@pytest.fixture(scope="module")
def one_clip_world(tmp_path_factory):
    return make_one_clip_world(tmp_path_factory.mktemp("one_clip_world"))


def test_distillation_overfits_one_clip(one_clip_world, tmp_path, monkeypatch):
    """60 steps on one clip: the student's loss against its teacher's segments, mean of the last 6
    steps against the first 6, falls at least 10x (measured 43x at seed 0; 35-49x over seeds 0-2)."""
    monkeypatch.chdir(tmp_path)  # the text cache and nothing else land in the test's folder
    cfg, dcfg, teacher_path = distill_setup(
        one_clip_world, tmp_path, steps=60, lr=3e-3, warmup_steps=5, checkpoint_every=60, log_every=60
    )
    summary = distill(cfg, dcfg, teacher_path, tmp_path / "s.pt", work_root=tmp_path / "runs", progress=False)
    first, last = summary["loss_first"], summary["loss_last"]
    assert last < first / 10, f"distillation loss {first:.2e} -> {last:.2e}: expected a fall of at least 10x"
