"""The `gpu` profile's main model cut to STEPS training steps, then its evaluation, without DVC.

The whole gpu profile takes hours (docs/pipeline.md, "Profiles"). For a GPU machine without DVC or
papermill, this runs its first stages with the pipeline's own functions:
``streamdit.train.train`` on the gpu profile with ``train.steps`` cut to STEPS (the learning-rate
schedule is the profile's own, cosine over STEPS), then ``stages.evaluate_streamdit`` with the gpu
profile's evaluation (128 prompts, 96-frame streams) and the world evaluators of the cpu study.
The text encoder is read from the MiniLM caption cache, as in ``config_sweep.py``.

    python benchmarks/gpu_profile_run.py STEPS OUT_DIR [DEVICE]
"""

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import config_sweep as cs  # noqa: E402  (stubs and the caption cache)

import streamdit.stages as stages  # noqa: E402
from streamdit.config import load_config  # noqa: E402
from streamdit.streaming import Streamer
from streamdit.train import train  # noqa: E402

stages.load_text_encoder = cs.cached_encoder


def fvd_only(cfg, model_path: Path, device: str, why: str) -> dict:
    """FVD of the gpu profile's 128 test prompts (16-frame clips, its scheme and guidance) against the
    real clips, on the world video encoder's features: the part of the evaluation without CLIP."""
    from streamdit.checkpoint import load_model, load_space
    from streamdit.data import WorldClips
    from streamdit.evaluate import render_videos
    from streamdit.evaluators import load_video_encoder, world_feature_extractor
    from streamdit.metrics import frechet_distance
    from streamdit.world import canonical_caption

    ecfg = cfg.evaluate
    test = WorldClips(Path(cfg.data_dir), "test", length=8).scenes[: ecfg.prompts]
    val = WorldClips(Path(cfg.data_dir), "val", length=8).scenes[: ecfg.prompts]
    features = world_feature_extractor(load_video_encoder("models/evaluators/video_encoder.pt", device))
    model, _ = load_model(model_path, device)
    space = load_space(model_path, device)
    text = cs.cached_encoder()([canonical_caption(s) for s in test])
    real = features(render_videos(test, ecfg.clip_frames, cfg.data.resolution))
    floor = frechet_distance(real, features(render_videos(val, ecfg.clip_frames, cfg.data.resolution)))
    result = {"clip_score": f"not measured: {why}", "fvd_floor": floor, "schemes": {}}
    for scheme in ecfg.parsed_schemes:
        video = Streamer(model, None, scheme, ecfg.cfg_scale, cfg.sample.time_shift, space=space).videos(
            text, ecfg.clip_frames, seed=ecfg.seed, batch_size=ecfg.batch_size
        )
        result["schemes"][str(scheme)] = {"fvd": frechet_distance(real, features(video))}
    return result


def main(steps: int, out: Path, device: str = "cuda", prompts: int | None = None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    overrides = {
        "train": {"steps": steps, "device": device, "checkpoint_every": steps, "warmup_steps": steps // 10},
        "sample": {"device": device},
    }
    if prompts is not None:  # a quick check on the CPU
        overrides["evaluate"] = {"prompts": prompts, "batch_size": prompts, "long_frames": 32}
        overrides["train"]["batch_size"] = 2
    cfg = load_config("params.yaml", "gpu", overrides)
    start = time.perf_counter()
    summary = train(cfg, out / "streamdit_gpu.pt", work_root=str(out / "runs"), progress=False)
    print("trained", json.dumps(summary), flush=True)
    try:
        metrics = stages.evaluate_streamdit(cfg, out / "streamdit_gpu.pt", "models/evaluators", out)
    except ImportError as err:  # open_clip's dependencies may be missing on the GPU image: say so
        print(f"full evaluation impossible here ({err!r}); FVD only", flush=True)
        metrics = fvd_only(cfg, out / "streamdit_gpu.pt", device, repr(err))
    result = {
        "profile": "gpu",
        "steps_run": steps,
        "steps_of_profile": load_config("params.yaml", "gpu").train.steps,
        "batch_size": cfg.train.batch_size,
        "train": summary,
        "evaluate_seconds": round(time.perf_counter() - start - summary["train_seconds"], 1),
    }
    (out / "gpu_profile_run.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "metrics_evaluate.json").write_text(json.dumps(metrics, indent=2) + "\n")
    report = out / "evaluation.md"
    print(report.read_text() if report.exists() else json.dumps(metrics, indent=1))


if __name__ == "__main__":
    main(
        int(sys.argv[1]),
        Path(sys.argv[2]),
        sys.argv[3] if len(sys.argv) > 3 else "cuda",
        int(sys.argv[4]) if len(sys.argv) > 4 else None,
    )
