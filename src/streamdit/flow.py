"""Flow matching: the noising path, the regression target, x0 <-> velocity and the Euler integrator.

Kept apart as in SiT's ``transport/`` so the sampler, the baselines and distillation
reuse them. Shapes: ``x0, noise, x_t: [b, f, c, h, w]``; ``t: [b, f]`` per-frame levels.
"""

from __future__ import annotations

import torch
from einops import rearrange


def _per_frame(t: torch.Tensor) -> torch.Tensor:
    """Broadcast per-frame levels [b, f] against frames [b, f, c, h, w]."""
    return rearrange(t, "b f -> b f 1 1 1")


def interpolate(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The path x_t = (1 - t) * x0 + t * e (DESIGN.md section 1), frame by frame."""
    t = _per_frame(t).to(x0.dtype)
    return (1 - t) * x0 + t * noise


def velocity_target(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """The velocity v = dx_t/dt = e - x0 that the model regresses."""
    return noise - x0


def flow_matching_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error on v over the frames where ``mask [b, f]`` is True (references have no loss)."""
    per_frame = (pred.float() - target.float()).pow(2).mean(dim=(2, 3, 4))  # [b, f]
    weight = mask.to(per_frame.dtype)
    return (per_frame * weight).sum() / weight.sum().clamp_min(1.0)


def euler_step(x: torch.Tensor, v: torch.Tensor, t_now: torch.Tensor, t_next: torch.Tensor) -> torch.Tensor:
    """One Euler step of dx/dt = v from levels ``t_now`` to ``t_next`` ([b, f] each).

    Frames whose level does not move (reference frames, warm-up chunks still at
    t = 1) are returned unchanged because their step size is zero.
    """
    dt = _per_frame(t_next - t_now).to(x.dtype)
    return x + dt * v


def predict_clean(x_t: torch.Tensor, v: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The model's estimate of x0 from x_t and v: x0 = x_t - t * v."""
    return x_t - _per_frame(t).to(x_t.dtype) * v


def velocity_from_clean(
    x_t: torch.Tensor, x0: torch.Tensor, t: torch.Tensor, min_level: float
) -> torch.Tensor:
    """The velocity of the path through ``x_t`` that ends at the estimate ``x0``: v = (x_t - x0) / t,
    frame by frame, with ``t`` floored at ``min_level`` so clean frames (t = 0) stay finite. The inverse
    of ``predict_clean`` wherever t >= min_level; x-predicting models output x0 through it."""
    return (x_t - x0) / _per_frame(t).clamp_min(min_level).to(x_t.dtype)
