"""Throughput benchmark: training samples/s, streaming frames/s and latency, peak memory, FLOP floor.

For each model preset it measures, on every device present (the CPU; CUDA when there is one):
training samples/s of a full step (forward, backward, AdamW) with peak memory, and the streaming
speed of the teacher scheme (guided) and of its distilled student scheme (unguided) with
`streamdit.latency`. Weights are random: speed does not depend on them. For every preset it also
counts the FLOPs of one model call (torch's FlopCounterMode on the meta device, so the 4B preset
costs no memory) and gives the FLOP floor: the frames/s a GPU would reach at its peak bf16 rate
(the H100 SXM data-sheet figure, 989 TFLOP/s dense, not measured here). Rows that need a device
this machine does not have are written as "not measured". On the CPU the peak memory is the
process's peak resident set so far (presets run in order in one process), on CUDA the allocator's
peak for that training run.

    python benchmarks/benchmark.py --presets tiny small paper_4b

writes ``reports/benchmark/benchmark.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from streamdit.latency import measure_stream_latency
from streamdit.model import PRESETS, ModelConfig, build_model, count_parameters
from streamdit.sampling import StreamSampler
from streamdit.schedule import Scheme
from streamdit.text import TextEmbedding

H100_BF16_DENSE_TFLOPS = 989.0  # NVIDIA H100 SXM data sheet, dense bf16 tensor-core peak
TEXT_TOKENS = 16


def text_batch(cfg: ModelConfig, batch: int, device: str) -> TextEmbedding:
    """Random caption embeddings of the preset's text width (the speed does not depend on the text)."""
    return TextEmbedding(
        torch.randn(batch, TEXT_TOKENS, cfg.text_dim, device=device),
        torch.ones(batch, TEXT_TOKENS, dtype=torch.bool, device=device),
        torch.randn(batch, cfg.text_dim, device=device),
    )


def schemes_for(cfg: ModelConfig) -> tuple[Scheme, Scheme]:
    """Teacher (chunks of B/2 frames, s = B) and its distilled student (s = 1) for the preset's buffer."""
    teacher = Scheme.for_buffer(cfg.frames, c=cfg.frames // 2, s=cfg.frames)
    return teacher, Scheme(teacher.K, teacher.N, teacher.c, 1)


def flops_per_call(cfg: ModelConfig, batch: int = 1) -> float:
    """FLOPs of one forward pass on a full buffer, counted on the meta device."""
    with torch.device("meta"):
        model = build_model(cfg)
        text = text_batch(cfg, batch, "meta")
        x = torch.randn(batch, cfg.frames, cfg.channels, cfg.resolution, cfg.resolution)
        with FlopCounterMode(display=False) as counter:
            model(x, torch.rand(batch, cfg.frames), text.tokens, text.mask, text.pooled)
    return float(counter.get_total_flops())


def peak_memory_mib(device: str) -> float:
    """Peak memory so far: CUDA's allocator peak, or the process's peak resident set (VmHWM) on the CPU."""
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def train_throughput(cfg: ModelConfig, device: str, batch: int, steps: int, dtype: torch.dtype) -> dict:
    """Samples/s of full training steps (after one warm-up step) and the peak memory they needed."""
    model = build_model(cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    text = text_batch(cfg, batch, device)
    x = torch.randn(batch, cfg.frames, cfg.channels, cfg.resolution, cfg.resolution, device=device)
    levels = torch.rand(batch, cfg.frames, device=device)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(steps + 1):
        sync(device)
        start = time.perf_counter()
        with torch.autocast(device.split(":")[0], dtype=dtype, enabled=dtype != torch.float32):
            loss = model(x, levels, text.tokens, text.mask, text.pooled).float().pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sync(device)
        times.append(time.perf_counter() - start)
    seconds = sorted(times[1:])[len(times[1:]) // 2]
    return {
        "batch": batch,
        "step_s": round(seconds, 4),
        "samples_per_s": round(batch / seconds, 2),
        "peak_memory_mib": round(peak_memory_mib(device), 1),
    }


def stream_speed(cfg: ModelConfig, device: str, scheme: Scheme, cfg_scale: float, frames: int) -> dict:
    """Frames/s, time to first frame and per-frame latency of one stream (``streamdit.latency``)."""
    model = build_model(cfg).to(device).eval()
    text = text_batch(cfg, 1, device)

    def make_sampler() -> StreamSampler:
        return StreamSampler(
            model, scheme, text, cfg_scale=cfg_scale, generator=torch.Generator().manual_seed(0)
        )

    result = measure_stream_latency(
        make_sampler, frames=frames, warmup_frames=scheme.c, repeats=2, device=device
    )
    return {
        "scheme": str(scheme),
        "cfg_scale": cfg_scale,
        "frames_per_s": round(result["frames_per_second"], 2),
        "ttff_s": round(result["ttff_s"]["median"], 4),
        "frame_latency_ms": round(1000 * result["frame_latency_s"]["median"], 2),
        "nfe_per_frame": result["nfe_per_frame"],
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--presets", nargs="+", default=["tiny", "small", "paper_4b"], choices=sorted(PRESETS)
    )
    parser.add_argument("--cpu-max-params", type=float, default=1e8, help="skip CPU runs of larger presets")
    parser.add_argument("--out", default="reports/benchmark")
    args = parser.parse_args(argv)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = []
    for name in args.presets:
        cfg = PRESETS[name]
        with torch.device("meta"):
            params = count_parameters(build_model(cfg))
        teacher, student = schemes_for(cfg)
        flops = flops_per_call(cfg)
        floor = {
            f"{label}_flop_floor_fps": round(
                H100_BF16_DENSE_TFLOPS * 1e12 / (flops * scheme.calls_per_frame * (2 if guided else 1)), 2
            )
            for label, scheme, guided in (("teacher", teacher, True), ("student", student, False))
        }
        for device in ("cpu", "cuda"):
            row = {
                "preset": name,
                "parameters": params,
                "device": device,
                "gflop_per_call": round(flops / 1e9, 2),
            }
            row.update(floor)
            if device not in devices or (device == "cpu" and params > args.cpu_max_params):
                rows.append({**row, "measured": False})
                continue
            dtype = torch.bfloat16 if device == "cuda" else torch.float32
            batch = 16 if params < 1e7 else (2 if device == "cpu" else 8)
            row["train"] = train_throughput(cfg, device, batch, steps=3, dtype=dtype)
            frames = 4 * cfg.frames
            row["teacher"] = stream_speed(cfg, device, teacher, 3.0, frames)
            row["student"] = stream_speed(cfg, device, student, 1.0, frames)
            rows.append({**row, "measured": True})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {"h100_bf16_dense_tflops": H100_BF16_DENSE_TFLOPS, "rows": rows}
    (out / "benchmark.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "benchmark.md").write_text(markdown(rows))
    print(markdown(rows))
    return result


def markdown(rows: list[dict]) -> str:
    """One line per (preset, device): measured figures or "not measured", and the FLOP floors."""
    head = (
        "| preset | params | device | train samples/s | peak MiB (CPU: process so far) | teacher fps | "
        "student fps | student frame latency ms | GFLOP/call | H100 floor fps teacher / student |\n"
        "|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for r in rows:
        floor = f"{r['teacher_flop_floor_fps']} / {r['student_flop_floor_fps']}"
        if r["measured"]:
            t, te, st = r["train"], r["teacher"], r["student"]
            cells = [
                t["samples_per_s"],
                t["peak_memory_mib"],
                te["frames_per_s"],
                st["frames_per_s"],
                st["frame_latency_ms"],
            ]
        else:
            cells = ["not measured"] * 5
        lines.append(
            f"| {r['preset']} | {r['parameters'] / 1e6:.1f}M | {r['device']} | "
            + " | ".join(str(c) for c in cells)
            + f" | {r['gflop_per_call']} | {floor} |"
        )
    return head + "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
