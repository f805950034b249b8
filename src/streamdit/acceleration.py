"""Where and how fast the model runs: device choice, bf16 autocast and ``torch.compile`` (fp32 eager
stays the reference), and what machine ran a stage.

Attention always goes through ``F.scaled_dot_product_attention``, which picks flash or
memory-efficient kernels on CUDA by itself. bf16 autocast runs matrix products in bf16 and keeps
the loss, the flow path and the integrator in float32. ``torch.compile`` fuses the model's
element-wise work; its ``"reduce-overhead"`` mode also captures CUDA graphs, which suits the
streaming loop because a scheme's buffer never changes shape. The tests check each path against
fp32 eager within its precision.
"""

from __future__ import annotations

import contextlib
import os
import platform

import torch
from torch import nn

PRECISIONS = ("fp32", "bf16")
COMPILE_MODES = ("none", "default", "reduce-overhead", "max-autotune")


def machine_info(device: str = "cpu") -> dict:
    """What ran a stage, for the report: CPU model and cores, the accelerator, Python and PyTorch."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cpu_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": device,
    }
    if str(device).startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: choose one of {PRECISIONS}")
    return precision


def check_compile_mode(mode: str) -> str:
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile mode {mode!r}: choose one of {COMPILE_MODES}")
    return mode


def autocast(device: str | torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast on ``device`` for ``precision == "bf16"``, else a no-op context."""
    if check_precision(precision) == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)


def compile_model(model: nn.Module, mode: str) -> nn.Module:
    """``torch.compile(model)`` in ``mode`` (static shapes), or the model itself for ``"none"``.

    The compiled module shares the parameters (and the ``cfg`` and ``null_text`` the sampler needs
    are reached through ``_orig_mod``), so checkpoints and the EMA keep using the plain model.
    """
    if check_compile_mode(mode) == "none":
        return model
    return torch.compile(model, mode=None if mode == "default" else mode, dynamic=False)


def check_device(device: str) -> None:
    """Raise unless ``device`` is 'auto', 'cpu', 'cuda' or 'cuda:N'."""
    if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")


def resolve_device(device: str) -> str:
    """'auto' is CUDA when available, else CPU; asking for CUDA without one is an error."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for but torch sees no CUDA device")
    return device
