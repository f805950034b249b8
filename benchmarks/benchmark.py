"""Throughput benchmark: training samples/s and MFU, streaming frames/s and latency, peak memory, FLOP floor.

Each model preset runs in its own process (so its peak memory is its own), on every device present:
the CPU (presets up to --cpu-max-params) and CUDA when there is one. Per (preset, device):
- training: samples/s of full steps (forward, backward, AdamW; bf16 autocast on CUDA), the peak
  memory they needed, and on CUDA the model FLOP utilisation (3x the forward FLOPs per sample over
  the step time, divided by the measured matmul peak);
- streaming (``streamdit.latency``): the teacher scheme (guided) and its distilled student (unguided);
  on CUDA with bf16 weights, and the student once more through ``torch.compile(mode="reduce-overhead")``
  (CUDA graphs) for presets up to 100M parameters;
- the FLOP floor: frames/s if every FLOP of a call ran at the device's measured matmul peak (a
  square bf16 matmul on CUDA, fp32 on the CPU), next to the H100 SXM data-sheet figure.
Weights are random: speed does not depend on them. FLOPs per call are counted with torch's
FlopCounterMode on the meta device, so the 4B preset costs no memory to count. Rows for a device
this machine lacks are written as "not measured".

    python benchmarks/benchmark.py --presets tiny small paper_4b

writes ``reports/benchmark/benchmark.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from streamdit.acceleration import autocast, compile_model
from streamdit.autoencoder import AutoencoderConfig, WorldAutoencoder
from streamdit.config import AutoencoderTrainConfig
from streamdit.latency import measure_stream_latency
from streamdit.model import PRESETS, ModelConfig, build_model, count_parameters
from streamdit.sampling import StreamSampler
from streamdit.schedule import Scheme
from streamdit.text import TextEmbedding

H100_BF16_DENSE_TFLOPS = 989.0  # NVIDIA H100 SXM data sheet, dense bf16 tensor-core peak
PAPER_FPS = 16.0  # StreamDiT: 16 frames/s at 512p on one H100 (4B model, distilled)
PAPER_MS_PER_CALL = 482.0  # StreamDiT: one call of that model, emitting 2 latent (8 video) frames
PAPER_TEMPORAL = 4  # the paper's TAE compresses time 4x: a latent frame decodes to 4 video frames
TEXT_TOKENS = 16
COMPILE_MAX_PARAMS = 1e8


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
    """Peak memory of this process: CUDA's allocator peak, or the peak resident set (VmHWM) on the CPU."""
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def matmul_peak_tflops(device: str) -> float:
    """Measured dense matmul TFLOP/s: median of timed square products (bf16 8192^3 / CPU fp32 2048^3)."""
    n, dtype, reps = (8192, torch.bfloat16, 10) if device.startswith("cuda") else (2048, torch.float32, 5)
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    for _ in range(3):
        a @ b
    times = []
    for _ in range(reps):
        sync(device)
        start = time.perf_counter()
        a @ b
        sync(device)
        times.append(time.perf_counter() - start)
    return 2 * n**3 / sorted(times)[reps // 2] / 1e12


def train_throughput(cfg: ModelConfig, device: str, batch: int, steps: int, flops_per_sample: float) -> dict:
    """Samples/s of full training steps (after one warm-up step), their peak memory and model FLOPs/s."""
    precision = "bf16" if device.startswith("cuda") else "fp32"
    with torch.device(device):
        model = build_model(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    text = text_batch(cfg, batch, device)
    x = torch.randn(batch, cfg.frames, cfg.channels, cfg.resolution, cfg.resolution, device=device)
    levels = torch.rand(batch, cfg.frames, device=device)
    times = []
    for _ in range(steps + 1):
        sync(device)
        start = time.perf_counter()
        with autocast(device, precision):
            loss = model(x, levels, text.tokens, text.mask, text.pooled).float().pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sync(device)
        times.append(time.perf_counter() - start)
    seconds = sorted(times[1:])[len(times[1:]) // 2]
    result = {
        "batch": batch,
        "precision": precision,
        "step_s": round(seconds, 4),
        "samples_per_s": round(batch / seconds, 2),
        "model_tflops_per_s": round(3 * flops_per_sample * batch / seconds / 1e12, 3),
        "peak_memory_mib": round(peak_memory_mib(device), 1),
    }
    del model, opt
    return result


def decoder_for(cfg: ModelConfig) -> WorldAutoencoder | None:
    """For a latent preset, the world autoencoder's architecture (params.yaml's widths; random weights:
    speed does not depend on them) at the preset's latent channels and frame size, so that every stream
    is timed with its decoder; None for a pixel preset."""
    if cfg.space != "latent":
        return None
    widths = tuple(AutoencoderTrainConfig().widths)
    factor = AutoencoderConfig(latent_channels=cfg.channels, widths=widths).factor
    ae = AutoencoderConfig(resolution=cfg.resolution * factor, latent_channels=cfg.channels, widths=widths)
    return WorldAutoencoder(ae).eval()


def stream_speed(
    model: torch.nn.Module,
    device: str,
    scheme: Scheme,
    cfg_scale: float,
    frames: int,
    label: str,
    space: torch.nn.Module | None = None,
) -> dict:
    """Frames/s, time to first frame and per-frame latency of one stream (``streamdit.latency``), with
    every emitted chunk decoded by ``space`` (None: not decoded)."""
    text = text_batch(model.cfg, 1, device)

    def make_sampler() -> StreamSampler:
        return StreamSampler(
            model, scheme, text, cfg_scale=cfg_scale, generator=torch.Generator().manual_seed(0), space=space
        )

    # Warm-up covers a whole start-up and one steady chunk, so compilation and graph capture are done.
    result = measure_stream_latency(
        make_sampler, frames=frames, warmup_frames=2 * scheme.c, repeats=2, device=device
    )
    return {
        "label": label,
        "scheme": str(scheme),
        "cfg_scale": cfg_scale,
        "frames_per_s": round(result["frames_per_second"], 2),
        "ttff_s": round(result["ttff_s"]["median"], 4),
        "frame_latency_ms": round(1000 * result["frame_latency_s"]["median"], 2),
        "nfe_per_frame": result["nfe_per_frame"],
    }


@torch.no_grad()
def fast_path_errors(cfg: ModelConfig, device: str, scheme: Scheme, frames: int) -> dict:
    """Relative error of bf16 weights against fp32, and of the compiled bf16 model against eager bf16,
    on the frames of one unguided stream (zero-initialised layers perturbed so every path matters)."""
    torch.manual_seed(0)
    with torch.device(device):
        model = build_model(cfg).eval()
    for p in model.parameters():
        if not p.any():
            p.normal_(std=0.05)
    text = text_batch(cfg, 1, device)

    def stream(m: torch.nn.Module) -> torch.Tensor:
        sampler = StreamSampler(m, scheme, text, generator=torch.Generator().manual_seed(0))
        return sampler.take(frames)

    fp32 = stream(model)
    bf16_model = model.to(torch.bfloat16)
    bf16 = stream(bf16_model)
    compiled = stream(compile_model(bf16_model, "reduce-overhead"))

    def rel(a: torch.Tensor, b: torch.Tensor) -> float:
        return float((a - b).norm() / b.norm())

    return {
        "bf16_vs_fp32": round(rel(bf16, fp32), 5),
        "compiled_vs_eager_bf16": round(rel(compiled, bf16), 5),
    }


def floor_fps(peak_tflops: float, flops: float, scheme: Scheme, guided: bool) -> float:
    """Frames/s if each of the scheme's calls per frame ran at ``peak_tflops``."""
    return round(peak_tflops * 1e12 / (flops * scheme.calls_per_frame * (2 if guided else 1)), 2)


def run_preset(name: str, device: str) -> dict:
    """Every measurement of one preset on one device (run in a fresh process by ``main``)."""
    cfg = PRESETS[name]
    with torch.device("meta"):
        params = count_parameters(build_model(cfg))
    teacher, student = schemes_for(cfg)
    flops = flops_per_call(cfg)
    peak = matmul_peak_tflops(device)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    batch = 16 if params < 1e7 else (2 if device == "cpu" else 8 if params < 1e9 else 1)
    row = {
        "preset": name,
        "parameters": params,
        "device": device,
        "device_name": torch.cuda.get_device_name(device) if device.startswith("cuda") else "cpu",
        "gflop_per_call": round(flops / 1e9, 2),
        "matmul_peak_tflops": round(peak, 1),
        "teacher_floor_fps": floor_fps(peak, flops, teacher, True),
        "student_floor_fps": floor_fps(peak, flops, student, False),
        "measured": True,
    }
    try:
        row["train"] = train_throughput(cfg, device, batch, steps=3, flops_per_sample=flops)
        row["train"]["mfu"] = round(row["train"]["model_tflops_per_s"] / peak, 4)
    except torch.OutOfMemoryError as err:
        row["train"] = {"batch": batch, "error": f"out of memory: {str(err).splitlines()[0]}"}
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    # Inference: bf16 weights on CUDA (as a deployment would), fp32 on the CPU.
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    with torch.device(device):
        model = build_model(cfg).to(dtype).eval()
    frames = (4 if params < 1e9 else 2) * cfg.frames
    space = decoder_for(cfg)
    if space is not None:
        space = space.to(device, dtype)
    row["decoder"] = "world autoencoder" if space is not None else "none timed"
    row["streams"] = [
        stream_speed(model, device, teacher, 3.0, frames, "teacher", space),
        stream_speed(model, device, student, 1.0, frames, "student", space),
    ]
    if device.startswith("cuda") and params <= COMPILE_MAX_PARAMS:
        compiled = compile_model(model, "reduce-overhead")
        row["streams"].append(
            stream_speed(compiled, device, student, 1.0, frames, "student, compiled", space)
        )
        row["fast_path_errors"] = fast_path_errors(cfg, device, student, 2 * cfg.frames)
    row["stream_peak_memory_mib"] = round(peak_memory_mib(device), 1)
    return row


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--presets", nargs="+", default=["tiny", "small", "paper_4b"], choices=sorted(PRESETS)
    )
    parser.add_argument("--cpu-max-params", type=float, default=1e8, help="skip CPU runs of larger presets")
    parser.add_argument("--devices", nargs="+", default=["cpu", "cuda"], choices=["cpu", "cuda"])
    parser.add_argument("--out", default="reports/benchmark")
    parser.add_argument(
        "--include",
        type=Path,
        help="a benchmark.json measured elsewhere (a GPU machine): its measured rows fill this run's gaps",
    )
    parser.add_argument(
        "--render",
        action="store_true",
        help="rewrite OUT/benchmark.md from OUT/benchmark.json, measuring nothing",
    )
    parser.add_argument("--one", nargs=3, metavar=("PRESET", "DEVICE", "JSON"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.render:
        return write_results(
            json.loads((Path(args.out) / "benchmark.json").read_text())["rows"], Path(args.out)
        )
    if args.one:  # the child process of one (preset, device)
        name, device, path = args.one
        Path(path).write_text(json.dumps(run_preset(name, device)))
        return {}
    rows = []
    for name in args.presets:
        cfg = PRESETS[name]
        with torch.device("meta"):
            params = count_parameters(build_model(cfg))
        for device in args.devices:
            absent = device == "cuda" and not torch.cuda.is_available()
            if absent or (device == "cpu" and params > args.cpu_max_params):
                rows.append({"preset": name, "parameters": params, "device": device, "measured": False})
                continue
            with tempfile.NamedTemporaryFile(suffix=".json") as tmp:
                cmd = [sys.executable, __file__, "--one", name, device, tmp.name]
                print(f"benchmarking {name} on {device} ...", flush=True)
                subprocess.run(cmd, check=True)
                rows.append(json.loads(Path(tmp.name).read_text()))
    if args.include is not None:
        other = {(r["preset"], r["device"]): r for r in json.loads(args.include.read_text())["rows"]}
        rows = [r if r["measured"] else other.get((r["preset"], r["device"]), r) for r in rows]
    return write_results(rows, Path(args.out))


def write_results(rows: list[dict], out: Path) -> dict:
    """``out/benchmark.json`` (the rows and the paper-scheme figures) and ``out/benchmark.md``."""
    out.mkdir(parents=True, exist_ok=True)
    paper = paper_scheme(rows)
    result = {"h100_bf16_dense_tflops": H100_BF16_DENSE_TFLOPS, "paper_fps": PAPER_FPS, "rows": rows,
              "paper_scheme": paper}  # fmt: skip
    (out / "benchmark.json").write_text(json.dumps(result, indent=2) + "\n")
    text = markdown(rows) + paper_markdown(paper)
    (out / "benchmark.md").write_text(text)
    print(text)
    return result


def paper_scheme(rows: list[dict]) -> dict:
    """The paper-scale preset in the paper's student scheme (chunks of c = 2 latent frames, N = 8, one
    step per chunk position: 8 steps per frame), per call and per frame, like for like with the paper's
    figures: the FLOP floor at the H100's data-sheet peak, and the call time measured on each CUDA device
    this benchmark ran on. A call denoises the whole buffer whatever the scheme, so its time is the one
    of the measured student streams (unguided; ``1 / (frames/s * calls per frame)``), and only the calls
    per frame change with the scheme."""
    cfg = PRESETS["paper_4b"]
    scheme = Scheme.for_buffer(cfg.frames, c=2, s=1)
    calls_per_frame = scheme.calls_per_frame
    flops = flops_per_call(cfg)

    def figures(what: str, ms_per_call: float) -> dict:
        latent_fps = 1000.0 / ms_per_call / calls_per_frame
        return {
            "what": what,
            "ms_per_call": round(ms_per_call, 1),
            "latent_frames_per_s": round(latent_fps, 2),
            "video_frames_per_s": round(latent_fps * PAPER_TEMPORAL, 1),
        }

    lines = [figures(f"FLOP floor at {H100_BF16_DENSE_TFLOPS:g} TFLOP/s (H100 data sheet)",
                     flops / (H100_BF16_DENSE_TFLOPS * 1e12) * 1e3)]  # fmt: skip
    for r in rows:
        if r["preset"] != "paper_4b" or not r["measured"] or not r["device"].startswith("cuda"):
            continue
        for st in r["streams"]:
            if st["label"] == "student":  # unguided: NFE per frame = calls per frame
                ms = 1000.0 / (st["frames_per_s"] * st["nfe_per_frame"])
                lines.append(figures(f"measured, {r['device_name']}, bf16, {st['scheme']} calls", ms))
    return {
        "scheme": str(scheme),
        "steps_per_frame": scheme.T,
        "calls_per_latent_frame": calls_per_frame,
        "video_frames_per_call": scheme.c * PAPER_TEMPORAL,
        "gflop_per_call": round(flops / 1e9, 2),
        "paper": {"ms_per_call": PAPER_MS_PER_CALL, "video_frames_per_s": PAPER_FPS},
        "rows": lines,
    }


def paper_markdown(paper: dict) -> str:
    """The paper-scheme table: per call and per frame beside the paper's figures."""
    p, ours = paper["paper"], paper["rows"]
    lines = [
        "",
        f"## The paper's scheme at paper scale ({paper['scheme']}: {paper['steps_per_frame']} steps per "
        f"frame, {paper['calls_per_latent_frame']:g} calls per latent frame, "
        f"{paper['video_frames_per_call']} video frames per call through a {PAPER_TEMPORAL}x temporal VAE; "
        f"{paper['gflop_per_call']} GFLOP per call; the DiT only, no decoder timed)",
        "",
        "| | ms per call | latent frames/s | video frames/s |",
        "|---|---|---|---|",
        f"| paper (StreamDiT, distilled 4B, one H100) | {p['ms_per_call']:g} | "
        f"{p['video_frames_per_s'] / PAPER_TEMPORAL:g} | {p['video_frames_per_s']:g} |",
    ]
    for r in ours:
        lines.append(
            f"| {r['what']} | {r['ms_per_call']} | {r['latent_frames_per_s']} | {r['video_frames_per_s']} |"
        )
    return "\n".join(lines) + "\n"


def markdown(rows: list[dict]) -> str:
    """A training table and a streaming table, one line per (preset, device[, stream])."""
    lines = [
        "## Training (full steps: forward, backward, AdamW; bf16 autocast on CUDA)",
        "",
        "| preset | params | device | batch | samples/s | model TFLOP/s | MFU | peak MiB | "
        "matmul peak TFLOP/s (measured) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        head = f"| {r['preset']} | {r['parameters'] / 1e6:.1f}M | {r['device']} |"
        if not r["measured"]:
            lines.append(head + " not measured |" * 6)
            continue
        t = r["train"]
        if "error" in t:
            lines.append(head + f" {t['batch']} | {t['error']} | | | | {r['matmul_peak_tflops']} |")
            continue
        lines.append(
            head + f" {t['batch']} | {t['samples_per_s']} | {t['model_tflops_per_s']} | {t['mfu']:.1%} | "
            f"{t['peak_memory_mib']} | {r['matmul_peak_tflops']} |"
        )
    lines += [
        "",
        f"## Streaming (CUDA: bf16 weights; paper: {PAPER_FPS:g} frames/s at 512p on one H100)",
        "",
        "| preset | device | stream | decoder | scheme | NFE/frame | frames/s | frame latency ms | "
        "first frame s | floor fps at measured peak (DiT only) | peak MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if not r["measured"]:
            lines.append(f"| {r['preset']} | {r['device']} |" + " not measured |" * 9)
            continue
        for st in r["streams"]:
            floor = r["teacher_floor_fps"] if st["label"] == "teacher" else r["student_floor_fps"]
            decoder = r.get("decoder", "not recorded")
            lines.append(
                f"| {r['preset']} | {r['device']} | {st['label']} | {decoder} | {st['scheme']} | "
                f"{st['nfe_per_frame']:g} | {st['frames_per_s']} | {st['frame_latency_ms']} | "
                f"{st['ttff_s']} | {floor} | {r['stream_peak_memory_mib']} |"
            )
    for r in rows:
        if "fast_path_errors" in r:
            e = r["fast_path_errors"]
            lines.append(
                f"\n{r['preset']} on {r['device']}: stream frames with bf16 weights differ from fp32 by "
                f"{e['bf16_vs_fp32']:.2%} (relative L2); the compiled bf16 model differs from eager bf16 by "
                f"{e['compiled_vs_eager_bf16']:.2%}."
            )
    devices = sorted({r.get("device_name", "") for r in rows if r["measured"]} - {""})
    lines += [
        "",
        f"Devices: {', '.join(devices)}. GFLOP per call: "
        + ", ".join(sorted({f"{r['preset']} {r['gflop_per_call']}" for r in rows if r["measured"]}))
        + ".",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
