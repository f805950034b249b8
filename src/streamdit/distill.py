"""Segment-wise multistep distillation (DESIGN.md section 1, "Segment-wise multistep distillation").

A teacher runs a scheme (K, N, c, s) with s > 1 micro-steps per chunk position; its student
runs (K, N, c, 1). Student chunk j at student offset o' sits at grid index
clamp((j + 1) - o', 0, N) of a T' = N grid, which is the teacher's index
clamp((j + 1) * s - o' * s, 0, N * s) divided by s: the student at o' and the teacher at
o' * s put every frame at the same level (the time shift maps both grids alike, since it
is applied to index / T). One student call from o' to o' + 1 must therefore land where the
teacher's s guided calls from o' * s to o' * s + s land: a *segment* of the trajectory.

One plain loop, like ``train.py`` and reusing its pieces: draw clean windows and captions,
draw a student offset per sample, noise every frame to its student level, run the teacher
segment (with classifier-free guidance), regress the student's velocity onto the segment's
chord. AdamW, warm-up + cosine learning rate, gradient clipping, EMA, atomic checkpoints with
exact resume, NaN guard, dvclive log. Shapes: ``x: [b, B, c, h, w]``, levels ``[b, B]``,
offsets and start flags ``[b]``.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import time
from pathlib import Path

import torch
from einops import rearrange
from torch import nn

from streamdit.config import Config, DistillConfig, resolve_device
from streamdit.data import WorldClips
from streamdit.flow import flow_matching_loss, interpolate
from streamdit.progress import progress_bar
from streamdit.sampling import advance, levels_like, nfe_per_call
from streamdit.schedule import Scheme, check_buffer, loss_mask, offset_from_unit
from streamdit.text import TextEmbedding, load_text_encoder
from streamdit.train import (
    CHECKPOINT,
    Batches,
    atomic_save,
    load_model,
    log_step,
    optimiser_step,
    read_checkpoint,
    restore_training_state,
    save_model,
    short_hash,
    training_state,
)


def student_scheme(teacher: Scheme) -> Scheme:
    """Student (K, N, c, 1) of a teacher (K, N, c, s): T' = N steps on the teacher's grid points t_{j s}."""
    if teacher.s < 2:
        raise ValueError(
            f"a teacher scheme needs s >= 2 micro-steps to distil, got {teacher} (s={teacher.s})"
        )
    return Scheme(K=teacher.K, N=teacher.N, c=teacher.c, s=1)


def nfe_per_frame(scheme: Scheme, cfg_scale: float) -> float:
    """Forward passes per emitted frame in the steady stream: s / c calls, times 2 with guidance."""
    return scheme.calls_per_frame * nfe_per_call(cfg_scale)


@torch.no_grad()
def teacher_segment(
    teacher: nn.Module,
    x: torch.Tensor,
    offset: torch.Tensor,
    started: torch.Tensor,
    scheme: Scheme,
    text: TextEmbedding,
    cfg_scale: float,
    shift: float,
) -> torch.Tensor:
    """The teacher's ``s`` guided calls over one segment: buffer ``x [b, B, ...]`` at teacher offset
    ``offset * s`` to the buffer at ``offset * s + s``.

    ``offset [b]`` is the *student's* offset o' (one student call = one segment), ``started [b]``
    the start flags, ``scheme`` the teacher's. Each call is exactly a sampler call (``advance``).
    """
    for k in range(scheme.s):
        x = advance(teacher, x, scheme, offset * scheme.s + k, started, text, cfg_scale, shift)
    return x


def segment_target(
    x_t: torch.Tensor, x_end: torch.Tensor, t_now: torch.Tensor, t_next: torch.Tensor, scheme: Scheme
) -> tuple[torch.Tensor, torch.Tensor]:
    """The velocity whose one Euler step from ``x_t`` at ``t_now`` lands on ``x_end`` at ``t_next``.

    Returns ``v [b, B, c, h, w]`` = (x_end - x_t) / (t_next - t_now) per frame and the loss mask
    ``[b, B]``: frames whose level moves in this call and that are not references. Frames that
    stay put (references, start-up chunks still at t = 1) have no target and get v = 0.
    """
    dt = t_next - t_now
    mask = (dt != 0) & loss_mask(scheme).to(dt.device)
    safe_dt = torch.where(mask, dt, torch.ones_like(dt))
    return (x_end - x_t) / rearrange(safe_dt, "b f -> b f 1 1 1"), mask


def distillation_loss(
    student: nn.Module,
    teacher: nn.Module,
    x0: torch.Tensor,
    noise: torch.Tensor,
    text: TextEmbedding,
    teacher_scheme: Scheme,
    offset: torch.Tensor,
    started: torch.Tensor,
    cfg_scale: float,
    shift: float,
) -> torch.Tensor:
    """One batch of the distillation objective (a scalar): clips ``x0``, noise ``[b, B, c, h, w]``,
    student offsets ``offset [b]`` and start flags ``started [b]``.
    """
    scheme = student_scheme(teacher_scheme)
    # The segment starts with every frame on the flow path at its student level at o'
    # (DESIGN.md "Flow matching"); the student's call moves it to the levels at o' + 1.
    t_now = levels_like(scheme, offset, started, shift, x0)
    t_next = levels_like(scheme, offset + 1, started, shift, x0)
    x_t = interpolate(x0, noise, t_now)
    x_end = teacher_segment(teacher, x_t, offset, started, teacher_scheme, text, cfg_scale, shift)
    # "Its one Euler step from the segment's start must land where the teacher's s guided steps
    # land" (DESIGN.md section 1). We regress the velocity of that step rather than its end point:
    # both have the same minimiser on every moving frame, ||x_t + dt v - x_end||^2 = dt^2 ||v - target||^2,
    # but the end-point loss weights frames by dt^2 and so nearly ignores small steps (the last
    # steps near t = 0, partial start-up steps, a shifted grid). The velocity loss weights every
    # moving frame alike and has the scale of the pretraining loss, so lr and clipping carry over.
    target, mask = segment_target(x_t, x_end, t_now, t_next, scheme)
    # Text conditioning only: the student runs without guidance, so the null caption is never
    # queried and needs no caption dropout; it stays the teacher's.
    v = student(x_t, t_now, text.tokens, text.mask, text.pooled)
    return flow_matching_loss(v, target, mask)


def distill_key(cfg: Config, dcfg: DistillConfig, teacher_path: str | Path) -> str:
    """A short hash of what determines the student: data, text, seed, distillation settings and the
    teacher file's bytes (a retrained teacher never resumes a stale student)."""
    d = cfg.to_dict()
    teacher_hash = hashlib.sha1(Path(teacher_path).read_bytes()).hexdigest()
    relevant = {k: d[k] for k in ("seed", "data_dir", "data", "text")}
    return short_hash({**relevant, "distill": dataclasses.asdict(dcfg), "teacher": teacher_hash})


def distill(
    cfg: Config,
    dcfg: DistillConfig,
    teacher_path: str | Path,
    out_path: str | Path,
    *,
    work_root: str | Path = "runs/distill",
    cache_dir: str | Path = "cache",
    progress: bool = True,
    stop_after: int | None = None,
) -> dict | None:
    """Distil (or resume distilling) the teacher at ``teacher_path``; write the student's EMA
    weights to ``out_path`` in ``train.load_model``'s format.

    ``stop_after`` ends this call after that many steps, as a kill would (None is returned).
    Checkpoints and the dvclive log live in ``work_root/<distill_key>/``, the caption embeddings
    under ``cache_dir/text/``. Returns the summary
    metrics (also in ``summary.json`` there): steps, first/last loss, seconds, NFE per frame.
    """
    from dvclive import Live

    key = distill_key(cfg, dcfg, teacher_path)
    out_dir = Path(work_root) / key
    out_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(dcfg.device)
    t_scheme = dcfg.teacher_scheme
    s_scheme = student_scheme(t_scheme)

    teacher, teacher_config = load_model(teacher_path, device)  # the teacher's EMA weights, eval mode
    teacher.requires_grad_(False)
    check_buffer(t_scheme, teacher.cfg.frames)
    dataset = WorldClips(Path(cfg.data_dir), "train", window=teacher.cfg.frames, generator_seed=cfg.seed + 11)
    batches = Batches(dataset, dcfg.batch_size, seed=cfg.seed + 12)
    encoder = load_text_encoder(cfg.text.encoder, cfg.text.max_length)
    encoder.warm(dataset.captions, cache_file=Path(cache_dir) / "text" / f"{encoder.cache_key}.pt")

    # The student and its EMA start at the teacher's weights, so the EMA needs no warm-up.
    student = copy.deepcopy(teacher).train().requires_grad_(True)
    ema = copy.deepcopy(teacher)
    # No weight decay: it would pull the student away from the teacher it starts at.
    opt = torch.optim.AdamW(student.parameters(), lr=dcfg.lr, weight_decay=0.0, betas=(0.9, 0.99))
    noise_gen = torch.Generator().manual_seed(cfg.seed + 13)  # offsets, start flags, noise
    config = {**cfg.to_dict(), "model": teacher_config["model"], "distill": dataclasses.asdict(dcfg)}

    step, history, elapsed = 0, [], 0.0
    ckpt_path = out_dir / CHECKPOINT
    if ckpt_path.is_file():
        state = read_checkpoint(ckpt_path, key)
        step, history, elapsed = restore_training_state(state, student, ema, opt, batches, noise_gen)

    live = Live(str(out_dir / "dvclive"), resume=step > 0, save_dvc_exp=False, dvcyaml=None)
    bar = progress_bar(dcfg.steps, "distill", progress, initial=step)
    last_step = dcfg.steps if stop_after is None else min(dcfg.steps, step + stop_after)
    while step < last_step:
        t0 = time.perf_counter()
        x0, captions = next(batches)
        x0 = x0.to(device)  # [b, B, c, h, w]
        b = x0.shape[0]
        text = encoder(captions).to(device)
        # Student offsets o': steady in [0, 1), or a stream's start-up in [1 - N, 1) (schedule.py).
        u = torch.rand(b, generator=noise_gen, dtype=torch.float64)
        started = torch.rand(b, generator=noise_gen, dtype=torch.float64) >= dcfg.startup_prob
        offset = offset_from_unit(s_scheme, u, started)
        noise = torch.randn(x0.shape, generator=noise_gen).to(device)
        loss = distillation_loss(
            student, teacher, x0, noise, text, t_scheme, offset, started, dcfg.cfg_scale, dcfg.time_shift
        )

        lr, grad_norm = optimiser_step(loss, student, ema, opt, dcfg, step, ckpt_path, dcfg.ema_decay)
        step += 1
        elapsed += time.perf_counter() - t0
        history.append(loss.detach().item())
        log_step(live, bar, history, step, lr, grad_norm, dcfg)
        if step % dcfg.checkpoint_every == 0 or step == dcfg.steps:
            state = training_state(student, ema, opt, batches, noise_gen, step, history, elapsed, config, key)
            atomic_save(state, ckpt_path)
    bar.close()
    if step < dcfg.steps:
        live.end()
        return None

    save_model(out_path, ema, config)
    k = max(1, min(50, len(history) // 10))
    teacher_nfe, student_nfe = nfe_per_frame(t_scheme, dcfg.cfg_scale), nfe_per_frame(s_scheme, 1.0)
    summary = {
        "steps": step,
        "loss_first": sum(history[:k]) / k,
        "loss_last": sum(history[-k:]) / k,
        "distill_seconds": round(elapsed, 1),
        "samples_per_second": round(step * dcfg.batch_size / max(elapsed, 1e-9), 2),
        "teacher_scheme": str(t_scheme),
        "student_scheme": str(s_scheme),
        "teacher_nfe_per_frame": teacher_nfe,
        "student_nfe_per_frame": student_nfe,
        "nfe_reduction": teacher_nfe / student_nfe,
        "device": device,
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out_dir / "loss.json").write_text(json.dumps(history) + "\n")
    live.end()
    return summary


def distill_loss_history(
    cfg: Config, dcfg: DistillConfig, teacher_path: str | Path, work_root: str | Path = "runs/distill"
) -> list[float]:
    """The per-step distillation loss of this run (written when distillation finishes)."""
    path = Path(work_root) / distill_key(cfg, dcfg, teacher_path) / "loss.json"
    if not path.is_file():
        raise FileNotFoundError(f"no finished distillation run for this config and teacher at {path.parent}")
    return json.loads(path.read_text())
