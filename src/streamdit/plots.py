"""Figures for the reports (matplotlib, written as PNG; no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_loss_curve(history: list[float], path: str | Path, smooth: int = 25) -> Path:
    """Per-step training loss (light) and its running mean over ``smooth`` steps, log y axis."""
    if not history:
        raise ValueError("the loss history is empty: nothing to plot")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    steps = range(1, len(history) + 1)
    window = max(1, min(smooth, len(history)))
    running = [
        sum(history[max(0, i - window + 1) : i + 1]) / (i - max(0, i - window + 1) + 1)
        for i in range(len(history))
    ]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, history, alpha=0.3, lw=0.8, label="per step")
    ax.plot(steps, running, lw=1.8, label=f"running mean ({window} steps)")
    ax.set_xlabel("training step")
    ax.set_ylabel("flow-matching loss (MSE on v)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
