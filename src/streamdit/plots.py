"""Figures for the reports (matplotlib, written as PNG; no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_loss_curve(history: list[float], path: str | Path, smooth: int = 25) -> Path:
    """Per-step training loss (light) and its running mean over ``smooth`` steps, log y axis.

    The numbers go next to the PNG as CSV (``step,loss,running_mean``), which ``dvc plots`` draws."""
    if not history:
        raise ValueError("the loss history is empty: nothing to plot")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    steps = range(1, len(history) + 1)
    span = max(1, min(smooth, len(history)))
    running = [
        sum(history[max(0, i - span + 1) : i + 1]) / (i - max(0, i - span + 1) + 1)
        for i in range(len(history))
    ]
    rows = [f"{s},{loss:.6g},{mean:.6g}" for s, loss, mean in zip(steps, history, running, strict=True)]
    path.with_suffix(".csv").write_text("\n".join(["step,loss,running_mean", *rows]) + "\n")
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, history, alpha=0.3, lw=0.8, label="per step")
    ax.plot(steps, running, lw=1.8, label=f"running mean ({span} steps)")
    ax.set_xlabel("training step")
    ax.set_ylabel("flow-matching loss (MSE on v)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_evaluators(metrics: dict, path: str | Path) -> Path:
    """Held-out accuracy of the video encoder per attribute next to the majority-class rate, and the
    CLIP's top-1 caption retrieval next to chance (from the evaluators stage's metrics dict)."""
    encoder, clip = metrics["video_encoder"], metrics["clip"]["test_retrieval"]
    names = list(encoder["val_accuracy"])
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5), gridspec_kw={"width_ratios": [3, 1]})
    x = range(len(names))
    left.bar([i - 0.2 for i in x], [encoder["val_accuracy"][n] for n in names], 0.4, label="video encoder")
    left.bar([i + 0.2 for i in x], [encoder["val_majority"][n] for n in names], 0.4, label="majority class")
    left.set_xticks(list(x), names)
    left.set_ylabel("val accuracy")
    left.set_ylim(0, 1)
    left.legend()
    right.bar(["CLIP", "chance"], [clip["top1"], clip["chance"]], color=["C2", "C7"])
    right.set_ylabel(f"top-1 retrieval ({clip['captions']} captions)")
    right.set_ylim(0, 1)
    return _save(fig, path)


def plot_quality_over_time(metrics: dict, path: str | Path) -> Path:
    """FVD and CLIP score per clip offset of the long streams, per scheme, with the real-data floor."""
    fig, (fvd_ax, clip_ax) = plt.subplots(1, 2, figsize=(10, 3.5))
    real = metrics["real"]["clips"]
    offsets = [w["offset"] for w in real]
    fvd_ax.plot(offsets, [w["fvd"] for w in real], "k--", label="real vs real (floor)")
    clip_ax.plot(offsets, [w["clip_score"] for w in real], "k--", label="real clips")
    for name, m in metrics["schemes"].items():
        fvd_ax.plot(offsets, [w["fvd"] for w in m["clips"]], "o-", label=name)
        clip_ax.plot(offsets, [w["clip_score"] for w in m["clips"]], "o-", label=name)
    fvd_ax.set_ylabel(f"FVD ({metrics['features']})")
    clip_ax.set_ylabel("CLIP score")
    for ax in (fvd_ax, clip_ax):
        ax.set_xlabel(f"clip start frame ({metrics['clip_frames']}-frame clips)")
        ax.grid(alpha=0.3)
    fvd_ax.legend(fontsize=8)
    return _save(fig, path)


def plot_latency(metrics: dict, path: str | Path) -> Path:
    """Distribution of the amortised per-frame latency (chunk gap / chunk size) per scheme, in ms."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, m in metrics["schemes"].items():
        lat = m["latency"]
        per_frame_ms = [1000 * g for g in lat["frame_gaps_s"]]
        ax.hist(per_frame_ms, bins=20, alpha=0.6, label=f"{name} ({lat['device']})")
    ax.set_xlabel("per-frame latency (ms, chunk gap / frames per chunk)")
    ax.set_ylabel("chunks")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_methods_over_time(clips: dict[str, list[dict]], floor: list[dict], path: str | Path) -> Path:
    """FVD and CLIP score per clip offset of every method's long streams (``clips``: label -> the
    ``quality_over_time`` rows of its evaluation), with the real-vs-real floor dashed."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for label, rows in clips.items():
        offsets = [r["offset"] for r in rows]
        left.plot(offsets, [r["fvd"] for r in rows], marker="o", label=label)
        right.plot(offsets, [r["clip_score"] for r in rows], marker="o", label=label)
    offsets = [r["offset"] for r in floor]
    left.plot(offsets, [r["fvd"] for r in floor], "k--", label="real data (floor)")
    right.plot(offsets, [r["clip_score"] for r in floor], "k--", label="real data")
    for ax, name in ((left, "FVD (lower is better)"), (right, "CLIP score (higher is better)")):
        ax.set_xlabel("clip start (frame of the stream)")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    left.legend(fontsize=7)
    return _save(fig, path)


def stack_images(images: dict[str, str | Path], path: str | Path) -> Path:
    """The PNGs ``images`` (label -> file) one above the other, each under its label."""
    if not images:
        raise ValueError("no images to stack")
    fig, axes = plt.subplots(len(images), 1, figsize=(10, 2.6 * len(images)), squeeze=False)
    for ax, (label, file) in zip(axes[:, 0], images.items(), strict=True):
        ax.imshow(plt.imread(file))
        ax.set_title(label, fontsize=9, loc="left")
        ax.axis("off")
    return _save(fig, path)
