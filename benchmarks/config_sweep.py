"""Which cpu-profile training config draws the captioned object? (the sweep behind params.yaml's `train`)

Each variant overrides the cpu profile, trains with ``streamdit.train.train`` exactly as the study does,
streams 48 frames for 64 val prompts (scheme [0, 2, 4, 8], guidance 1 / 3 / 6, sampling time shift 1 / 3;
settings are tuned on val, the study reports on test) and scores them against the val scenes' real
clips with two measures that need no human eye: the share of pixels within 48 (uint8, L-inf) of the
captioned object's colour per 16-frame window, and the trained world video encoder's colour / shape /
motion / object-count accuracy on the generated windows (``evaluators.attribute_hits``, mean over
clips).

It runs on a GPU machine whose image has no dvclive, PyAV or MiniLM wheel
(``benchmarks/config_sweep_gpu.sh VARIANT ...``, all variants at once): hence the stubs below and the
text encoder read from an fp16 cache of every needed caption's MiniLM embeddings (``CAPTIONS``; from
``TextEncoder._cache`` for the train captions and the first 64 val canonical captions).

    python benchmarks/config_sweep.py VARIANT OUT_DIR      (one variant; `summarise OUT_DIR` prints all)

Results: ``reports/config_sweep/`` (README.md, summary.txt, and strips of two prompts per variant).
"""

import importlib.machinery  # noqa: E402
import json
import os
import sys
import types
from pathlib import Path

sys.modules.setdefault("av", types.ModuleType("av"))
sys.modules["av"].__spec__ = importlib.machinery.ModuleSpec("av", None)


class _Live:
    def __init__(self, *a, **k):
        pass

    def log_metric(self, *a, **k):
        pass

    def next_step(self):
        pass

    def end(self):
        pass


_dvclive = types.ModuleType("dvclive")
_dvclive.Live = _Live
_dvclive.__spec__ = importlib.machinery.ModuleSpec("dvclive", None)
sys.modules["dvclive"] = _dvclive

import numpy as np  # noqa: E402
import torch  # noqa: E402

import streamdit.text as text_mod  # noqa: E402
from streamdit.streaming import Streamer  # noqa: E402
from streamdit.text import TextEncoder  # noqa: E402

DEVICE = os.environ.get("SWEEP_DEVICE", "cuda")
CAPTIONS = Path(os.environ.get("CAPTIONS", "scratch/captions_fp16.pt"))


def cached_encoder(*_a, **_k):
    stored = torch.load(CAPTIONS, weights_only=True)
    enc = TextEncoder.__new__(TextEncoder)
    enc.path = Path(stored["path_name"])
    enc.max_length = 32
    enc.device = torch.device("cpu")
    enc.dim = stored["dim"]
    enc._cache = {k: (v[0].float(), v[1].float()) for k, v in stored["items"].items()}

    def no_encode(captions):
        raise KeyError(f"caption not in the caption cache: {captions[:2]}")

    enc._encode_batch = no_encode
    return enc


text_mod.load_text_encoder = cached_encoder

import streamdit.train as train_mod  # noqa: E402

train_mod.load_text_encoder = cached_encoder

from streamdit.checkpoint import load_model, load_space  # noqa: E402
from streamdit.config import load_config  # noqa: E402
from streamdit.data import WorldClips  # noqa: E402
from streamdit.evaluators import attribute_hits, classify, load_video_encoder, scene_labels  # noqa: E402
from streamdit.metrics import colour_fraction, shape_iou  # noqa: E402
from streamdit.schedule import Scheme  # noqa: E402
from streamdit.train import train  # noqa: E402
from streamdit.video import from_uint8, to_uint8  # noqa: E402
from streamdit.world import COLOUR_RGB, render  # noqa: E402

S = {"train": {"startup_prob": 0.5, "time_shift": 3.0, "lr": 0.002}}
VARIANTS = {
    "base": {},
    "startup05": {"train": {"startup_prob": 0.5}},
    "shift3": {"train": {"time_shift": 3.0}},
    "startup05_shift3": {"train": {"startup_prob": 0.5, "time_shift": 3.0}},
    "lr2e-3": {"train": {"lr": 0.002}},
    "wide192": {"model": {"dim": 192, "heads": 6}},
    "startup05_shift3_lr2e-3": {"train": {"startup_prob": 0.5, "time_shift": 3.0, "lr": 0.002}},
    "base_4000": {"train": {"steps": 4000}},
    "startup05_shift3_4000": {"train": {"startup_prob": 0.5, "time_shift": 3.0, "steps": 4000}},
    "S_seed1": {"seed": 1, **S},
    "S_full": {"train": S["train"], "model": {"full_attention": True}},
    "S_lr3e-3": {"train": {**S["train"], "lr": 0.003}},
    "S_wide192": {"train": S["train"], "model": {"dim": 192, "heads": 6}},
    "S_depth6": {"train": S["train"], "model": {"depth": 6}},
    "S_clip5": {"train": {**S["train"], "grad_clip": 5.0}},
    "S_shift5": {"train": {**S["train"], "time_shift": 5.0}},
    "S_ema995": {"train": {**S["train"], "ema_decay": 0.995}},
    "S_win488": {"train": S["train"], "model": {"window": [4, 8, 8]}},
    "S_full_seed1": {"seed": 1, "train": S["train"], "model": {"full_attention": True}},
    "uniform_only": {"train": {"schemes": [[0, 1, 8, 16]], "scheme_probs": [1.0]}},
    # Round 4: over params.yaml's cpu profile, which holds the S settings; longer training, x-prediction.
    "cur": {},
    "cur_3000": {"train": {"steps": 3000}},
    "xpred": {"model": {"prediction": "x"}},
    "xpred_3000": {"model": {"prediction": "x"}, "train": {"steps": 3000}},
    "xpred_shift1": {"model": {"prediction": "x"}, "train": {"time_shift": 1.0}},
    "xpred_lr1e-3": {"model": {"prediction": "x"}, "train": {"lr": 0.001}},
    "xpred_b32": {"model": {"prediction": "x"}, "train": {"batch_size": 32, "steps": 1000}},
    "xpred_4000": {"model": {"prediction": "x"}, "train": {"steps": 4000}},
    "cur_4000": {"train": {"steps": 4000}},
    # Round 5: how much compute shapes need (the same world and data budget per step).
    "cur_6000": {"train": {"steps": 6000}},
    "small_3000": {"model": {"preset": "small"}, "train": {"steps": 3000, "precision": "bf16"}},
}


def one_object_colours(scenes) -> list:
    """The RGB colour of each one-object scene's object, None for a scene of two (``metrics.shape_iou``)."""
    return [COLOUR_RGB[s.objects[0].colour] if len(s.objects) == 1 else None for s in scenes]


def run_variant(name: str, out: Path) -> None:
    torch.set_num_threads(1)
    over = json.loads(json.dumps(VARIANTS[name]))
    if os.environ.get("SWEEP_STEPS"):
        over.setdefault("train", {})["steps"] = int(os.environ["SWEEP_STEPS"])
    cfg = load_config("params.yaml", "cpu", over)
    cfg.train.device = DEVICE
    model_path = out / f"{name}.pt"
    summary = train(cfg, model_path, work_root=f"/tmp/runs/{name}", progress=False)
    model, _ = load_model(model_path, DEVICE)
    space = load_space(model_path, DEVICE)
    val = WorldClips(Path(cfg.data_dir), "val", length=8)
    n = int(os.environ.get("SWEEP_N", 64))
    scenes = val.scenes[:n]
    prompts = val.canonical_captions[:n]
    enc = cached_encoder()
    text = enc(prompts)
    frames = 48
    real = torch.stack([from_uint8(render(s, 0, frames, cfg.data.resolution)) for s in scenes])
    colours = [COLOUR_RGB[s.objects[0].colour] for s in scenes]
    one_object = one_object_colours(scenes)
    labels = scene_labels(scenes)
    venc = load_video_encoder("models/evaluators/video_encoder.pt", DEVICE)
    result = {"variant": name, "summary": summary, "combos": {}}

    def attr_acc(video):
        """Per 16-frame window (from frame 0, 16, 32), the mean over clips of ``attribute_hits``."""
        accs = {}
        for w0 in (0, 16, 32):
            hits = attribute_hits(classify(venc, video[:, w0 : w0 + 16]), labels)
            accs[w0] = {a: float(hits[a].mean()) for a in ("shape", "colour", "motion", "objects")}
        return accs

    result["real"] = {
        "colour_fraction": colour_fraction(real, colours).mean(0).reshape(3, 16).mean(1).tolist(),
        "attr": attr_acc(real),
    }
    result["real"]["shape_iou"] = shape_iou(real, real, one_object)
    scales = [float(x) for x in os.environ.get("SWEEP_CFG", "1,3,6").split(",")]
    shifts = [float(x) for x in os.environ.get("SWEEP_SHIFT", "1,3").split(",")]
    for cfg_scale in scales:
        for shift in shifts:
            video = Streamer(model, None, Scheme(0, 2, 4, 8), cfg_scale, shift, space=space).videos(
                text, frames, seed=1, batch_size=64
            )
            key = f"cfg{cfg_scale:g}_shift{shift:g}"
            result["combos"][key] = {
                "colour_fraction": colour_fraction(video, colours).mean(0).reshape(3, 16).mean(1).tolist(),
                "attr": attr_acc(video),
                "shape_iou": shape_iou(video, real, one_object),
            }
            if cfg_scale == 3.0:
                np.save(out / f"{name}_{key}.npy", np.stack([to_uint8(v) for v in video[:4]]))
    (out / f"{name}.json").write_text(json.dumps(result, indent=1))


def summarise(out: Path) -> None:
    from streamdit.video import save_strip

    lines = []
    rows, caps = [], []
    results = [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]
    if results:
        r = results[0]["real"]
        lines.append(f"real: colour frac {[round(x, 3) for x in r['colour_fraction']]} attr {r['attr']}")
    for res in results:
        s = res["summary"]
        lines.append(
            f"== {res['variant']}: loss {s['loss_first']:.3f}->{s['loss_last']:.3f} {s['train_seconds']}s"
        )
        for key, c in res["combos"].items():
            att = " ".join(
                f"w{w}:" + ",".join(f"{a[0]}{v:.2f}" for a, v in acc.items()) for w, acc in c["attr"].items()
            )
            iou = c.get("shape_iou")
            iou = (
                f" iou {iou['iou']:.3f} (disc {iou['disc']:.3f}, present {iou['present']:.2f})" if iou else ""
            )
            lines.append(f"  {key}: colour frac {[round(x, 3) for x in c['colour_fraction']]} {att}{iou}")
        arr = np.load(out / f"{res['variant']}_cfg3_shift1.npy")
        for i in range(2):
            rows.append(arr[i][::2])
            caps.append(f"{res['variant']} prompt {i}")
    print("\n".join(lines))
    (out / "summary.txt").write_text("\n".join(lines) + "\n")
    if rows:
        save_strip(rows, out / "strips.png", captions=caps, scale=2)


if __name__ == "__main__":
    if sys.argv[1] == "summarise":
        summarise(Path(sys.argv[2]))
    else:
        run_variant(sys.argv[1], Path(sys.argv[2]))
