"""The optimiser side of every gradient loop of StreamDiT (main training and distillation): warm-up +
cosine learning rate, EMA of the weights, gradient clipping and a guard against non-finite losses."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from streamdit.config import LoopConfig


def lr_at(step: int, base_lr: float, warmup_steps: int, total_steps: int) -> float:
    """Linear warm-up to ``base_lr``, then cosine decay to 10% of it at ``total_steps``."""
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return base_lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def ema_decay_at(step: int, decay: float) -> float:
    """EMA decay with a warm-up, min(decay, (1 + step) / (10 + step)): the average starts short
    and lengthens, so early weights of a short run do not linger in it."""
    return min(decay, (1 + step) / (10 + step))


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model, parameter by parameter."""
    for e, p in zip(ema.parameters(), model.parameters(), strict=True):
        e.lerp_(p.detach(), 1 - decay)


def check_finite(
    loss: float, grad_norm: float, step: int, ckpt_path: Path, checkpoint_every: int, section: str
) -> None:
    """Raise before the optimiser step on a NaN/inf loss or gradient: neither weights nor checkpoint see it.

    ``step`` counts finished steps; ``section`` names the params.yaml section whose lr to lower.
    """
    if math.isfinite(loss) and math.isfinite(grad_norm):
        return
    raise FloatingPointError(
        f"non-finite training loss or gradient (loss {loss}, grad norm {grad_norm}) at step "
        f"{step + 1}; stopping. The last good checkpoint is kept at {ckpt_path} (step "
        f"{step - step % checkpoint_every}); lower {section}.lr or check the data before resuming"
    )


def optimiser_step(
    loss: torch.Tensor,
    model: nn.Module,
    ema: nn.Module,
    opt: torch.optim.Optimizer,
    loop: LoopConfig,
    step: int,
    ckpt_path: Path,
    ema_decay: float,
) -> tuple[float, float]:
    """One update: learning rate for ``step``, backward, clipping, NaN guard, AdamW, EMA.

    Returns (lr, gradient norm before clipping). Shared by training and distillation.
    """
    lr = lr_at(step, loop.lr, loop.warmup_steps, loop.steps)
    for group in opt.param_groups:
        group["lr"] = lr
    opt.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = float(nn.utils.clip_grad_norm_(model.parameters(), loop.grad_clip))
    check_finite(loss.detach().item(), grad_norm, step, ckpt_path, loop.checkpoint_every, loop.section)
    opt.step()
    update_ema(ema, model, ema_decay)
    return lr, grad_norm
