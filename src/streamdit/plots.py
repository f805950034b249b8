"""Figures for the reports (matplotlib, written as PNG; no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_loss_curve(
    history: list[float], path: str | Path, smooth: int = 25, ylabel: str = "flow-matching loss (MSE on v)"
) -> Path:
    """Per-step training loss (light) and its running mean over ``smooth`` steps, log y axis ``ylabel``.

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
    ax.set_ylabel(ylabel)
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
    """Accuracy of the world classifier per attribute on the real test and held-out-pair clips next to
    the majority baseline, and the CLIP's top-1 caption retrieval next to chance (from the evaluators
    stage's metrics dict)."""
    encoder, clip = metrics["video_encoder"], metrics["clip"]["test_retrieval"]
    names = list(encoder["test"]["accuracy"])
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5), gridspec_kw={"width_ratios": [3, 1]})
    x = range(len(names))
    bars = (("test", "accuracy", "test clips"), ("heldout", "accuracy", "held-out pairs"),
            ("test", "majority", "majority baseline (test)"))  # fmt: skip
    for k, (split, key, label) in enumerate(bars):
        left.bar([i + 0.27 * (k - 1) for i in x], [encoder[split][key][n] for n in names], 0.27, label=label)
    left.axhline(0.95, color="k", ls=":", lw=1, label="target 0.95")
    left.set_xticks(list(x), names)
    left.set_ylabel("accuracy (real clips)")
    left.set_ylim(0, 1.05)
    left.legend(fontsize=7, loc="lower right")
    right.bar(["CLIP", "chance"], [clip["top1"], clip["chance"]], color=["C2", "C7"])
    right.set_ylabel(f"top-1 retrieval ({clip['captions']} captions)")
    right.set_ylim(0, 1)
    return _save(fig, path)


# The measures drawn over stream length: (key, axis label).
OVER_TIME = (
    ("caption_mean", "caption accuracy (mean over attributes)"),
    ("subject_consistency", "subject consistency"),
    ("fvd", "FVD (lower is better)"),
)


def plot_quality_over_time(metrics: dict, path: str | Path) -> Path:
    """Caption accuracy, subject consistency and FVD per window of the streams, per scheme, with the
    real data (ceiling; FVD: the real-vs-real floor) dashed."""
    fig, axes = plt.subplots(1, len(OVER_TIME), figsize=(13, 3.5))
    real = metrics["real"]["clips"]
    offsets = [w["offset"] for w in real]
    for ax, (key, label) in zip(axes, OVER_TIME, strict=True):
        ax.plot(offsets, [w[key] for w in real], "k--", label="real data")
        for name, m in metrics["schemes"].items():
            ax.plot(offsets, [w[key] for w in m["clips"]], "o-", label=name)
        ax.set_xlabel(f"window start frame ({metrics['clip_frames']}-frame windows)")
        ax.set_ylabel(label if key != "fvd" else f"FVD ({metrics['features']})")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    return _save(fig, path)


def plot_drift(metrics: dict, path: str | Path) -> Path:
    """Drift over long streams (``metrics["drift"]``): caption accuracy (mean and shape), subject
    consistency, flicker and FVD per window with their bootstrap intervals, generated against real."""
    drift = metrics["drift"]
    keys = (("caption_mean", "caption accuracy, mean"), ("caption_shape", "caption accuracy, shape"),
            ("subject_consistency", "subject consistency"), ("flicker", "flicker (lower is smoother)"),
            ("fvd", "FVD (lower is better)"))  # fmt: skip
    fig, axes = plt.subplots(1, len(keys), figsize=(18, 3.6))
    for ax, (key, label) in zip(axes, keys, strict=True):
        for who, style in (("real", "k"), ("generated", "C0")):
            rows = drift[who]
            offsets = [r["offset"] for r in rows]
            ax.plot(offsets, [r[key] for r in rows], color=style, marker="o", ms=3, label=who)
            lows = [r[f"{key}_ci"][0] if r.get(f"{key}_ci") else r[key] for r in rows]
            highs = [r[f"{key}_ci"][1] if r.get(f"{key}_ci") else r[key] for r in rows]
            ax.fill_between(offsets, lows, highs, color=style, alpha=0.15)
        ax.set_xlabel("window start frame")
        ax.set_title(label, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(
        f"{drift['prompts']} streams of {drift['frames']} frames; bands: bootstrap intervals", fontsize=9
    )
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


def plot_methods_over_time(clips: dict[str, list[dict]], real: list[dict], path: str | Path) -> Path:
    """Caption accuracy, subject consistency and FVD per window of every method's streams (``clips``:
    label -> the per-window rows of its evaluation), with the real data dashed."""
    fig, axes = plt.subplots(1, len(OVER_TIME), figsize=(14, 4))
    for ax, (key, label) in zip(axes, OVER_TIME, strict=True):
        for name, rows in clips.items():
            ax.plot([r["offset"] for r in rows], [r[key] for r in rows], marker="o", label=name)
        ax.plot([r["offset"] for r in real], [r[key] for r in real], "k--", label="real data")
        ax.set_xlabel("window start (frame of the stream)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
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
