"""Long-stream benchmark: memory, numerical health and quality over thousands of frames.

Streams ``--frames`` frames from a trained model with bounded memory, and records every
``--every`` frames the process's resident memory, whether all frames so far were finite, and
the mean CLIP score (the world CLIP of the `evaluators` stage) of the last window against the
prompt. Frames are scored and dropped as they come, so only the buffer and one window are held.

    python benchmarks/long_stream.py --model models/student.pt --distilled --frames 10000

Any model file streams as its stored settings say (``streaming.load_streamer``): a teacher with its
``sample`` scheme, a chunk-causal model chunk by chunk with its KV cache (``models/methods/causal.pt``).
Writes ``reports/long_stream/long_stream.json`` and ``long_stream.png`` (run from the repository root
after `dvc repro`).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
from tqdm import tqdm

from streamdit.acceleration import resolve_device
from streamdit.clip import load_clip
from streamdit.config import load_config
from streamdit.stages import prompts_to_sample
from streamdit.streaming import load_streamer


def resident_mib() -> float:
    """This process's resident set size in MiB (Linux /proc)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--profile", default=None)
    parser.add_argument("--model", default="models/student.pt")
    parser.add_argument("--distilled", action="store_true", help="the model is a student: its scheme, no CFG")
    parser.add_argument("--evaluators", default="models/evaluators")
    parser.add_argument("--frames", type=int, default=10_000)
    parser.add_argument("--every", type=int, default=250, help="frames per record (and per CLIP window)")
    parser.add_argument("--out", default="reports/long_stream")
    args = parser.parse_args(argv)
    if args.frames < args.every or args.every < 1:
        raise ValueError(f"need frames >= every >= 1, got frames={args.frames}, every={args.every}")

    cfg = load_config(args.params, args.profile)
    device = resolve_device(cfg.sample.device)
    streamer = load_streamer(args.model, distilled=args.distilled, device=str(device))
    scheme, cfg_scale = streamer.scheme, streamer.cfg_scale
    scorer = load_clip(Path(args.evaluators) / "clip.pt", device)
    prompts, _ = prompts_to_sample(cfg, 1)
    sampler = streamer.sampler(prompts[0], cfg.sample.seed)

    records, window, finite = [], [], True
    start = time.perf_counter()
    for n, frame in enumerate(tqdm(sampler.frames(), total=args.frames, desc="stream"), start=1):
        frame = frame[0].float().cpu()
        finite = finite and bool(torch.isfinite(frame).all())
        window.append(frame)
        if n % args.every == 0:
            scores = scorer.score(torch.stack(window), prompts * len(window))
            records.append(
                {
                    "frame": n,
                    "rss_mib": round(resident_mib(), 1),
                    "all_finite": finite,
                    "clip_score": round(float(scores.mean()), 3),
                    "seconds": round(time.perf_counter() - start, 2),
                }
            )
            window = []
        if n == args.frames:
            break

    rss = [r["rss_mib"] for r in records]
    half = len(rss) // 2
    result = {
        "model": args.model,
        "scheme": str(scheme),
        "cfg_scale": cfg_scale,
        "prompt": prompts[0],
        "frames": args.frames,
        "model_calls": sampler.calls,
        "frames_per_second": round(args.frames / (time.perf_counter() - start), 1),
        "all_finite": finite,
        # Flat memory: the second half of the stream may not grow beyond the first half's peak.
        "rss_mib_first_half_max": max(rss[:half]) if half else rss[0],
        "rss_mib_second_half_max": max(rss[half:]),
        "records": records,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "long_stream.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result, out / "long_stream.png")
    print(json.dumps({k: v for k, v in result.items() if k != "records"}, indent=2))
    return result


def plot(result: dict, path: Path) -> None:
    """Resident memory and windowed CLIP score against the stream position."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frames = [r["frame"] for r in result["records"]]
    fig, (ax_mem, ax_clip) = plt.subplots(1, 2, figsize=(10, 3.5))
    ax_mem.plot(frames, [r["rss_mib"] for r in result["records"]], marker=".")
    ax_mem.set_xlabel("frames streamed")
    ax_mem.set_ylabel("resident memory (MiB)")
    ax_clip.plot(frames, [r["clip_score"] for r in result["records"]], marker=".")
    ax_clip.set_xlabel("frames streamed")
    ax_clip.set_ylabel("CLIP score of the window")
    for ax in (ax_mem, ax_clip):
        ax.grid(alpha=0.3)
    fig.suptitle(f"{result['frames']} frames, {result['scheme']}: {result['prompt']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
