"""How much distillation does the cpu-profile teacher need? (the sweep behind params.yaml's `distill`)

Distils the trained teacher (models/streamdit.pt) with ``streamdit.distill.distill`` under several
settings and reports, for each student and for the teacher, the FVD of 16-frame streams against the
real val clips (32 val prompts: settings are tuned on val, the study reports on test; the world
classifier's features, as the evaluate stage). It runs on a GPU machine the same way as
``config_sweep.py`` (whose stubs it reuses; ``benchmarks/distill_sweep_gpu.sh VARIANT ...``).
Results: ``reports/distill_sweep/``.

    python benchmarks/distill_sweep.py VARIANT OUT_DIR      (one variant; `summarise OUT_DIR` prints all)
"""

import dataclasses
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import config_sweep as cs  # noqa: E402  (stubs and the caption cache)
import torch  # noqa: E402

import streamdit.distill as distill_mod  # noqa: E402
from streamdit.checkpoint import load_model, load_space  # noqa: E402
from streamdit.config import load_config  # noqa: E402
from streamdit.data import WorldClips  # noqa: E402
from streamdit.distill import distill  # noqa: E402
from streamdit.evaluators import load_video_encoder, world_feature_extractor  # noqa: E402
from streamdit.metrics import frechet_distance  # noqa: E402
from streamdit.streaming import Streamer
from streamdit.video import from_uint8  # noqa: E402
from streamdit.world import render  # noqa: E402

distill_mod.load_text_encoder = cs.cached_encoder

VARIANTS = {
    "check": {"steps": 2, "checkpoint_every": 1},
    "s200": {},
    "s200_lr3e-4": {"lr": 3e-4},
    "s200_lr1e-3": {"lr": 1e-3},
    "s200_lr3e-4_sp05": {"lr": 3e-4, "startup_prob": 0.5},
    "s400_lr3e-4": {"steps": 400, "lr": 3e-4},
    "s400_lr1e-3": {"steps": 400, "lr": 1e-3},
    "s400_lr3e-4_sp05": {"steps": 400, "lr": 3e-4, "startup_prob": 0.5},
    "s200_b8_lr3e-4": {"batch_size": 8, "lr": 3e-4},
    "s600_lr3e-4": {"steps": 600, "lr": 3e-4},
    "s1500": {"steps": 1500},
    "s1500_lr3e-4": {"steps": 1500, "lr": 3e-4},
}


def fvd_of(model_path, scheme, cfg_scale, text, real_feats, features) -> float:
    model, _ = load_model(model_path, cs.DEVICE)
    space = load_space(model_path, cs.DEVICE)
    video = Streamer(model, None, scheme, cfg_scale, 1.0, space=space).videos(text, 16, seed=5, batch_size=32)
    return frechet_distance(real_feats, features(video))


def run(name: str, out: Path) -> None:
    cfg = load_config("params.yaml", "cpu")
    dcfg = dataclasses.replace(cfg.distill, device=cs.DEVICE, **VARIANTS[name])
    path = out / f"{name}.pt"
    summary = distill(
        cfg, dcfg, "models/streamdit.pt", path, work_root=f"/tmp/distill/{name}", progress=False
    )
    val = WorldClips(Path(cfg.data_dir), "val", length=8)
    text = cs.cached_encoder()(val.canonical_captions[:32])
    features = world_feature_extractor(load_video_encoder("models/evaluators/video_encoder.pt", cs.DEVICE))
    real = torch.stack([from_uint8(render(s, 0, 16, cfg.data.resolution)) for s in val.scenes[:32]])
    real_feats = features(real)
    t_scheme = dcfg.teacher_scheme
    result = {
        "variant": name,
        "summary": summary,
        "teacher_fvd": fvd_of("models/streamdit.pt", t_scheme, dcfg.cfg_scale, text, real_feats, features),
        "student_fvd": fvd_of(path, t_scheme.distilled(), 1.0, text, real_feats, features),
    }
    (out / f"{name}.json").write_text(json.dumps(result, indent=1))


def summarise(out: Path) -> None:
    for p in sorted(out.glob("*.json")):
        r = json.loads(p.read_text())
        s = r["summary"]
        print(
            f"{r['variant']:>18}: loss {s['loss_first']:.4f}->{s['loss_last']:.4f} {s['distill_seconds']}s  "
            f"teacher FVD {r['teacher_fvd']:.1f} student FVD {r['student_fvd']:.1f} "
            f"({100 * (r['student_fvd'] / r['teacher_fvd'] - 1):+.1f}%)"
        )


if __name__ == "__main__":
    if sys.argv[1] == "summarise":
        summarise(Path(sys.argv[2]))
    else:
        run(sys.argv[1], Path(sys.argv[2]))
