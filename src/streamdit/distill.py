"""Segment-wise multistep distillation (DESIGN.md section 1, "Segment-wise multistep distillation").

A teacher runs a scheme (K, N, c, s) with s > 1 micro-steps per chunk position; its student
runs (K, N, c, 1). Student chunk j at student offset o' sits at grid index
clamp((j + 1) - o', 0, N) of a T' = N grid, which is the teacher's index
clamp((j + 1) * s - o' * s, 0, N * s) divided by s: the student at o' and the teacher at
o' * s put every frame at the same level (the time shift maps both grids alike, since it
is applied to index / T). One student call from o' to o' + 1 must therefore land where the
teacher's s guided calls from o' * s to o' * s + s land: a *segment* of the trajectory.

One plain loop, like ``train.py`` and sharing its pieces (``optim.py``, ``runs.Run``): draw clean
clips and captions,
draw a student offset per sample, noise every frame to its student level, run the teacher
segment (with classifier-free guidance), regress the student's velocity onto the segment's
chord. AdamW, warm-up + cosine learning rate, gradient clipping, EMA, atomic checkpoints with
exact resume, NaN guard, dvclive log. Shapes: ``x: [b, B, c, h, w]``, levels ``[b, B]``,
offsets and start flags ``[b]``.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import torch
from einops import rearrange
from torch import nn

from streamdit.acceleration import resolve_device
from streamdit.checkpoint import load_model, load_space, save_model
from streamdit.config import Config, DistillConfig
from streamdit.data import Batches, file_digest, training_clips
from streamdit.flow import flow_matching_loss, interpolate
from streamdit.optim import optimiser_step
from streamdit.runs import Run, config_hash, read_history
from streamdit.sampling import advance, levels_like
from streamdit.schedule import Scheme, check_buffer, draw_positions, loss_mask, offset_from_unit
from streamdit.text import TextEmbedding, load_text_encoder


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
    scheme = teacher_scheme.distilled()
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
    teacher_hash = file_digest(teacher_path, stage="train")
    relevant = {k: d[k] for k in ("seed", "data_dir", "data", "text")}
    return config_hash({**relevant, "distill": dataclasses.asdict(dcfg), "teacher": teacher_hash})


def distill(
    cfg: Config,
    dcfg: DistillConfig,
    teacher_path: str | Path,
    out_path: str | Path,
    *,
    latents_dir: str | Path = "latents",
    work_root: str | Path = "runs/distill",
    cache_dir: str | Path = "cache",
    progress: bool = True,
    stop_after: int | None = None,
) -> dict | None:
    """Distil (or resume distilling) the teacher at ``teacher_path``; write the student's EMA
    weights to ``out_path`` in the model-file format (``checkpoint.load_model`` reads it), with the
    teacher's space. A latent teacher distils on the train split's latents cached in ``latents_dir``.

    ``stop_after`` ends this call after that many steps, as a kill would (None is returned).
    Checkpoints and the dvclive log live in ``work_root/<distill_key>/`` (``runs.Run``), the caption
    embeddings under ``cache_dir/text/``. Returns the summary metrics (also in ``summary.json``
    there): steps, first/last loss, seconds, NFE per frame.
    """
    device = resolve_device(dcfg.device)
    t_scheme = dcfg.teacher_scheme
    s_scheme = t_scheme.distilled()
    teacher, teacher_config = load_model(teacher_path, device)  # the teacher's EMA weights, eval mode
    teacher.requires_grad_(False)
    check_buffer(t_scheme, teacher.cfg.frames)
    if teacher.cfg.space != cfg.model.space:
        raise ValueError(
            f"the teacher {teacher_path} denoises in {teacher.cfg.space!r} space, the config's model in "
            f"{cfg.model.space!r}: distil with the config the teacher was trained with"
        )
    space = load_space(teacher_path)
    dataset = training_clips(cfg, latents_dir, teacher.cfg, generator_seed=cfg.seed + 11)
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
    run = Run(
        work_root,
        distill_key(cfg, dcfg, teacher_path),
        steps=dcfg.steps,
        desc="distill",
        section=dcfg.section,
        batch_size=dcfg.batch_size,
        progress=progress,
        log_every=dcfg.log_every,
        checkpoint_every=dcfg.checkpoint_every,
        meta={"model_config": config["model"], "config": config},
    )
    run.resume(model=student, ema=ema, opt=opt, batches=batches, noise_gen=noise_gen)

    for step in run.steps(stop_after):
        x0, captions = next(batches)
        x0 = x0.to(device)  # [b, B, c, h, w] (latents or pixels)
        b = x0.shape[0]
        text = encoder(captions).to(device)
        # Student offsets o': steady in [0, 1), or a stream's start-up in [1 - N, 1) (schedule.py).
        u, started = draw_positions(b, noise_gen, dcfg.startup_prob)
        offset = offset_from_unit(s_scheme, u, started)
        noise = torch.randn(x0.shape, generator=noise_gen).to(device)
        loss = distillation_loss(
            student, teacher, x0, noise, text, t_scheme, offset, started, dcfg.cfg_scale, dcfg.time_shift
        )
        lr, grad_norm = optimiser_step(loss, student, ema, opt, dcfg, step, run.checkpoint, dcfg.ema_decay)
        run.record(loss.detach().item(), lr, grad_norm)
    if not run.finished:
        return None

    save_model(out_path, ema, config, space)
    loss_first, loss_last = run.loss_ends()
    teacher_nfe, student_nfe = t_scheme.nfe_per_frame(dcfg.cfg_scale), s_scheme.nfe_per_frame(1.0)
    return run.finish(
        {
            "steps": run.step,
            "loss_first": loss_first,
            "loss_last": loss_last,
            "distill_seconds": round(run.elapsed, 1),
            "samples_per_second": round(run.step * dcfg.batch_size / max(run.elapsed, 1e-9), 2),
            "teacher_scheme": str(t_scheme),
            "student_scheme": str(s_scheme),
            "teacher_nfe_per_frame": teacher_nfe,
            "student_nfe_per_frame": student_nfe,
            "nfe_reduction": teacher_nfe / student_nfe,
            "device": device,
        }
    )


def distill_loss_history(
    cfg: Config, dcfg: DistillConfig, teacher_path: str | Path, work_root: str | Path = "runs/distill"
) -> list[float]:
    """The per-step distillation loss of this run (written when distillation finishes)."""
    return read_history(work_root, distill_key(cfg, dcfg, teacher_path))
