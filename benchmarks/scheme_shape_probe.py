"""Does sampling draw the shape that a trained model leaves out? (reports/config_sweep/README.md)

Streams 24 frames for the first 16 test prompts from one trained model under several schemes and
guidance scales (more micro-steps per chunk, the uniform clip scheme, stronger guidance) and scores
each with ``metrics.shape_iou`` (the centred colour mask of one-object scenes against the real
frame's). Writes a text table and a strip of three prompts per setting:

    PYTHONPATH=src python benchmarks/scheme_shape_probe.py models/streamdit.pt reports/config_sweep
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import config_sweep  # noqa: E402  (the sweep's text-embedding cache and shape measure)
import torch  # noqa: E402

from streamdit.checkpoint import load_model, load_space  # noqa: E402
from streamdit.data import WorldClips  # noqa: E402
from streamdit.metrics import shape_iou  # noqa: E402
from streamdit.schedule import Scheme  # noqa: E402
from streamdit.streaming import Streamer
from streamdit.video import from_uint8, save_strip, to_uint8  # noqa: E402
from streamdit.world import render  # noqa: E402

SETTINGS = [
    ((0, 2, 4, 8), 3.0),  # the study's teacher: T = 16 steps per frame
    ((0, 2, 4, 16), 3.0),  # T = 32
    ((0, 2, 4, 32), 3.0),  # T = 64
    ((0, 1, 8, 16), 3.0),  # uniform clips, T = 16
    ((0, 1, 8, 64), 3.0),  # uniform clips, T = 64
    ((0, 2, 4, 8), 6.0),  # stronger guidance
]


def main(model_path: str, out_dir: str, n: int = 16, frames: int = 24) -> None:
    model, _ = load_model(model_path, "cpu")
    space = load_space(model_path, "cpu")
    test = WorldClips(Path("data"), "test", length=8)
    scenes = test.scenes[:n]
    text = config_sweep.cached_encoder()(test.canonical_captions[:n])
    resolution = model.cfg.resolution * space.factor  # of the decoded streams (Streamer.resolution)
    real = torch.stack([from_uint8(render(s, 0, frames, resolution)) for s in scenes])
    rows, captions, lines = [], [], []
    for spec, guidance in SETTINGS:
        t0 = time.perf_counter()
        video = Streamer(model, None, Scheme(*spec), guidance, 1.0, space=space).videos(
            text, frames, seed=1, batch_size=n
        )
        iou = shape_iou(video, real, config_sweep.one_object_colours(scenes))
        lines.append(
            f"{Scheme(*spec)} guidance {guidance:g}: iou {iou['iou']:.3f} (disc {iou['disc']:.3f}, "
            f"present {iou['present']:.2f}) {time.perf_counter() - t0:.0f} s"
        )
        print(lines[-1], flush=True)
        for i in range(3):
            rows.append(to_uint8(video[i]))
            captions.append(f"{Scheme(*spec)} guidance {guidance:g}, prompt {i}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "scheme_probe.txt").write_text(
        f"model {model_path}, {n} test prompts, {frames} frames\n" + "\n".join(lines) + "\n"
    )
    save_strip(rows, out / "scheme_probe.png", captions=captions, scale=2)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
