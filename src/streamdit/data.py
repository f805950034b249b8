"""The procedural text-video world (DESIGN.md section 2, "Dataset") and the datasets that serve clips.

A scene is one or two coloured shapes moving over a background. `render` draws any frame range of the
scene's endless stream, so clips, long ground-truth streams and prompt switches come from one function.

Units: positions and speeds are fractions of the frame side (x to the right, y downwards, (0, 0) is the
top-left corner), so a scene looks the same at every resolution; `speed` is frame sides per frame
(0.03 is about one pixel per frame at 32 px). Rendering is bit-exact across machines: object positions
are computed per frame with Python `math` on scalars and quantised to 1/64 pixel, and rasterisation
is integer arithmetic on 4x4 sub-pixels.

Create the dataset with `python -m streamdit.data --out data --config params.yaml`; check it against
the hash that data.dvc pins with `python -m streamdit.data --out data --check data.dvc`.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from einops import reduce
from tqdm import tqdm

from streamdit.video import from_uint8, read_video

SHAPES = ("circle", "square", "triangle", "diamond", "cross")
COLOURS = ("red", "green", "blue", "yellow", "magenta", "cyan", "white")
COLOUR_RGB = {
    "red": (230, 40, 40),
    "green": (40, 200, 60),
    "blue": (50, 80, 250),
    "yellow": (240, 220, 40),
    "magenta": (220, 50, 220),
    "cyan": (40, 220, 220),
    "white": (245, 245, 245),
}
SIZES = ("small", "large")
# Half-extent of a shape (circle radius) as a fraction of the frame side.
SIZE_EXTENT = {"small": 0.11, "large": 0.18}
MOTIONS = ("left", "right", "up", "down", "bounce", "orbit", "grow")
BACKGROUNDS = ("black", "grey", "navy", "twilight")
# (top row, bottom row) colours; rows in between interpolate linearly, so equal pairs are solid.
BACKGROUND_RGB = {
    "black": ((0, 0, 0), (0, 0, 0)),
    "grey": ((110, 110, 110), (110, 110, 110)),
    "navy": ((15, 25, 75), (15, 25, 75)),
    "twilight": ((5, 5, 30), (110, 50, 90)),
}
SPLITS = ("train", "val", "test", "heldout")

SUBSAMPLES = 4  # anti-aliasing: SUBSAMPLES x SUBSAMPLES sub-pixels per pixel
QUANT = 64  # object centres and sizes are quantised to 1/QUANT pixel
# Largest drawn half-extent over all shapes relative to the size's extent (the triangle's apex).
SHAPE_MARGIN = 1.2
BOUNCE_Y_RATIO = 0.75  # bounce moves with velocity (speed, BOUNCE_Y_RATIO * speed)
GROW_AMPLITUDE = 0.4  # grow scales the extent by 1 + GROW_AMPLITUDE * sin(GROW_RATE * speed * t)
GROW_RATE = 25.0
MIN_ORBIT_RADIUS = 0.1

MOTION_PHRASES = {
    "left": ("moving left", "drifting to the left", "sliding leftwards", "travelling left"),
    "right": ("moving right", "drifting to the right", "sliding rightwards", "travelling right"),
    "up": ("moving up", "drifting upwards", "rising", "floating up"),
    "down": ("moving down", "drifting downwards", "sinking", "falling down"),
    "bounce": ("bouncing around", "bouncing off the walls", "ricocheting around the frame"),
    "orbit": ("orbiting the centre", "circling around the middle", "going round in a circle"),
    "grow": ("growing and shrinking", "pulsing in size", "swelling and shrinking"),
}
# Caption templates; the first is the canonical one used for evaluation prompts.
TEMPLATES = (
    "{objects} on a {background} background",
    "{objects} over {background}",
    "a {background} background with {objects}",
    "{objects}",
    "video of {objects} on {background}",
)


@dataclass(frozen=True)
class ObjectSpec:
    """One moving shape. `x0, y0` is its centre at frame 0 (fractions of the frame side) and `speed`
    is in frame sides per frame; for "orbit" the start point also sets the orbit radius around the
    centre (0.5, 0.5), and for "grow" `speed` sets the pulse rate."""

    shape: str
    colour: str
    size: str
    motion: str
    x0: float
    y0: float
    speed: float

    def __post_init__(self):
        for name, value, allowed in (
            ("shape", self.shape, SHAPES),
            ("colour", self.colour, COLOURS),
            ("size", self.size, SIZES),
            ("motion", self.motion, MOTIONS),
        ):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        for name, value in (("x0", self.x0), ("y0", self.y0)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1] (fraction of the frame side), got {value}")
        if not 0.0 < self.speed <= 0.25:
            raise ValueError(f"speed must be in (0, 0.25] frame sides per frame, got {self.speed}")
        margin = self.margin
        if self.motion == "bounce" and not (
            margin <= self.x0 <= 1 - margin and margin <= self.y0 <= 1 - margin
        ):
            raise ValueError(
                f"a bouncing {self.size} object must start inside [{margin:.3f}, {1 - margin:.3f}] "
                f"on both axes, got ({self.x0}, {self.y0})"
            )
        radius = math.hypot(self.x0 - 0.5, self.y0 - 0.5)
        if self.motion == "orbit" and not MIN_ORBIT_RADIUS <= radius <= 0.5 - margin:
            raise ValueError(
                f"a {self.size} orbiting object needs an orbit radius in [{MIN_ORBIT_RADIUS}, "
                f"{0.5 - margin:.3f}], got {radius:.4f} from start ({self.x0}, {self.y0})"
            )

    @property
    def margin(self) -> float:
        """Largest distance from the centre to the drawn shape's edge, in frame sides."""
        return SIZE_EXTENT[self.size] * SHAPE_MARGIN


@dataclass(frozen=True)
class SceneSpec:
    """One or two objects over a named background; later objects are drawn on top."""

    objects: tuple[ObjectSpec, ...]
    background: str

    def __post_init__(self):
        if not 1 <= len(self.objects) <= 2:
            raise ValueError(f"a scene holds 1 or 2 objects, got {len(self.objects)}")
        if not all(isinstance(o, ObjectSpec) for o in self.objects):
            raise ValueError(f"objects must be ObjectSpec instances, got {self.objects!r}")
        if self.background not in BACKGROUNDS:
            raise ValueError(f"background must be one of {BACKGROUNDS}, got {self.background!r}")


def scene_to_dict(scene: SceneSpec) -> dict:
    """Plain JSON-able dict of a scene: {"background": str, "objects": [ObjectSpec fields, ...]}."""
    return {"background": scene.background, "objects": [asdict(o) for o in scene.objects]}


def scene_from_dict(d: dict) -> SceneSpec:
    """Inverse of `scene_to_dict`."""
    return SceneSpec(objects=tuple(ObjectSpec(**o) for o in d["objects"]), background=d["background"])


def _reflect(p: float, lo: float, hi: float) -> float:
    """Position of a point moving freely to `p` while bouncing between the walls `lo` and `hi`."""
    span = hi - lo
    u = (p - lo) % (2 * span)
    return lo + (u if u <= span else 2 * span - u)


def object_state(obj: ObjectSpec, t: int) -> tuple[float, float, float]:
    """Centre (x, y) and half-extent of `obj` at absolute frame `t`, all in frame sides.

    left/right/up/down positions may leave [0, 1); the renderer wraps them around (torus).
    """
    x, y, extent = obj.x0, obj.y0, SIZE_EXTENT[obj.size]
    step = obj.speed * t
    if obj.motion == "left":
        x -= step
    elif obj.motion == "right":
        x += step
    elif obj.motion == "up":
        y -= step
    elif obj.motion == "down":
        y += step
    elif obj.motion == "bounce":
        x = _reflect(obj.x0 + step, obj.margin, 1 - obj.margin)
        y = _reflect(obj.y0 + BOUNCE_Y_RATIO * step, obj.margin, 1 - obj.margin)
    elif obj.motion == "orbit":
        radius = math.hypot(obj.x0 - 0.5, obj.y0 - 0.5)
        # Constant linear speed along the circle; increasing angle is clockwise on screen (y down).
        angle = math.atan2(obj.y0 - 0.5, obj.x0 - 0.5) + step / radius
        x, y = 0.5 + radius * math.cos(angle), 0.5 + radius * math.sin(angle)
    elif obj.motion == "grow":
        extent *= 1 + GROW_AMPLITUDE * math.sin(GROW_RATE * step)
    return x, y, extent


def _inside(shape: str, u: np.ndarray, v: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Which sub-pixels lie inside the shape. `u` `[f, 1, W]` and `v` `[f, H, 1]` are signed sub-pixel
    offsets from the centre and `r` `[f, 1, 1]` the half-extent, all integers in 1/QUANT pixel.
    Returns bool `[f, H, W]`."""
    au, av = np.abs(u), np.abs(v)
    if shape == "circle":
        return u * u + v * v <= r * r
    if shape == "square":
        half = r * 4 // 5  # same area as the circle within a few percent
        return (au <= half) & (av <= half)
    if shape == "diamond":
        return au + av <= r
    if shape == "triangle":
        # Equilateral, pointing up, centroid at the centre: apex at v = -R, base at v = R / 2, and the
        # sides |u| = (v + R) / sqrt(3) tested squared to stay in integers.
        big = r * 6 // 5
        return (2 * v <= big) & (v + big >= 0) & (3 * u * u <= (v + big) * (v + big))
    if shape == "cross":
        arm = r // 3
        return ((au <= r) & (av <= arm)) | ((au <= arm) & (av <= r))
    raise ValueError(f"shape must be one of {SHAPES}, got {shape!r}")


def _background(name: str, frames: int, resolution: int) -> np.ndarray:
    """Background frames, int64 `[frames, resolution, resolution, 3]` with values in 0..255."""
    top, bottom = (np.array(c, dtype=np.int64) for c in BACKGROUND_RGB[name])
    rows = np.arange(resolution, dtype=np.int64)[:, None]
    denom = max(resolution - 1, 1)
    column = (top * (denom - rows) + bottom * rows + denom // 2) // denom
    return np.broadcast_to(column[None, :, None, :], (frames, resolution, resolution, 3)).copy()


def _render_chunk(scene: SceneSpec, start: int, frames: int, resolution: int) -> np.ndarray:
    """`render` for one chunk of frames that fits in memory."""
    image = _background(scene.background, frames, resolution)
    side = resolution * QUANT
    # Sub-pixel centres in 1/QUANT pixel: (i + 1/2) / SUBSAMPLES pixels for sub-pixel index i.
    step = QUANT // SUBSAMPLES
    grid = np.arange(resolution * SUBSAMPLES, dtype=np.int64) * step + step // 2
    full = SUBSAMPLES * SUBSAMPLES
    for obj in scene.objects:
        states = [object_state(obj, t) for t in range(start, start + frames)]
        cx, cy, r = (np.array([round(s[k] * side) for s in states], dtype=np.int64) for k in range(3))
        # Signed offsets wrapped onto the torus [-side / 2, side / 2): copies across borders come free.
        u = (grid[None, :] - cx[:, None] + side // 2) % side - side // 2
        v = (grid[None, :] - cy[:, None] + side // 2) % side - side // 2
        inside = _inside(obj.shape, u[:, None, :], v[:, :, None], r[:, None, None])
        count = reduce(
            inside.astype(np.int64), "f (h sy) (w sx) -> f h w 1", "sum", sy=SUBSAMPLES, sx=SUBSAMPLES
        )
        colour = np.array(COLOUR_RGB[obj.colour], dtype=np.int64)
        image = (image * (full - count) + colour * count + full // 2) // full
    return image.astype(np.uint8)


def render(scene: SceneSpec, start: int, frames: int, resolution: int) -> np.ndarray:
    """Frames `start .. start + frames - 1` of the scene's endless stream.

    Returns uint8 `[frames, resolution, resolution, 3]` (RGB). Identical bytes on every machine.
    """
    if not isinstance(start, (int, np.integer)) or start < 0:
        raise ValueError(f"start must be an integer >= 0, got {start!r}")
    if not isinstance(frames, (int, np.integer)) or frames < 1:
        raise ValueError(f"frames must be an integer >= 1, got {frames!r}")
    if not isinstance(resolution, (int, np.integer)) or not 4 <= resolution <= 1024:
        raise ValueError(f"resolution must be an integer in [4, 1024], got {resolution!r}")
    chunk = max(1, 2**22 // (resolution * resolution * SUBSAMPLES * SUBSAMPLES))
    return np.concatenate(
        [_render_chunk(scene, start + i, min(chunk, frames - i), resolution) for i in range(0, frames, chunk)]
    )


def render_stream(segments: list[tuple[int, SceneSpec]], frames: int, resolution: int) -> np.ndarray:
    """A ground-truth stream with prompt switches: segment `(start_frame, scene)` is shown from
    `start_frame` until the next segment starts. A switch is a hard cut to the new scene's own frame 0.

    Start frames must begin at 0, increase strictly and be < `frames`.
    Returns uint8 `[frames, resolution, resolution, 3]`.
    """
    if not segments:
        raise ValueError("segments must hold at least one (start_frame, scene) pair, got none")
    starts = [s for s, _ in segments]
    if (
        starts[0] != 0
        or any(b <= a for a, b in zip(starts, starts[1:], strict=False))
        or starts[-1] >= frames
    ):
        raise ValueError(
            "segment start frames must begin at 0, increase strictly and stay below "
            f"frames={frames}, got {starts}"
        )
    ends = starts[1:] + [frames]
    return np.concatenate(
        [
            render(scene, 0, end - begin, resolution)
            for (begin, scene), end in zip(segments, ends, strict=True)
        ]
    )


def _object_phrase(obj: ObjectSpec, rng: random.Random | None) -> str:
    """ "a [size] colour shape motion"; with `rng=None` the canonical form (size, first motion phrase)."""
    phrases = MOTION_PHRASES[obj.motion]
    if rng is None:
        return f"a {obj.size} {obj.colour} {obj.shape} {phrases[0]}"
    size = f"{obj.size} " if rng.random() < 0.5 else ""
    return f"a {size}{obj.colour} {obj.shape} {rng.choice(phrases)}"


def caption(scene: SceneSpec, rng: random.Random) -> str:
    """A random caption: a random template, size mentioned or not, a random motion paraphrase per
    object; objects joined with "and". Always names each object's colour, shape and motion."""
    objects = " and ".join(_object_phrase(o, rng) for o in scene.objects)
    return rng.choice(TEMPLATES).format(objects=objects, background=scene.background)


def canonical_caption(scene: SceneSpec) -> str:
    """The fixed evaluation caption, e.g. "a small red circle moving left on a black background"."""
    objects = " and ".join(_object_phrase(o, None) for o in scene.objects)
    return TEMPLATES[0].format(objects=objects, background=scene.background)


@dataclass
class WorldConfig:
    """How many clips of which size to generate; `heldout_pairs` are (colour, shape) pairs kept out of
    train/val/test and present in every clip of the "heldout" split."""

    resolution: int = 32
    frames_per_clip: int = 16
    n_train: int = 2000
    n_val: int = 200
    n_test: int = 200
    n_heldout: int = 200
    two_object_prob: float = 0.3
    heldout_pairs: tuple[tuple[str, str], ...] = (
        ("red", "triangle"),
        ("blue", "circle"),
        ("green", "square"),
        ("yellow", "diamond"),
    )
    seed: int = 0

    def __post_init__(self):
        # YAML gives lists; store tuples so the config is hashable and compares equal after a round trip.
        self.heldout_pairs = tuple(tuple(p) for p in self.heldout_pairs)
        if not isinstance(self.resolution, int) or not 4 <= self.resolution <= 1024:
            raise ValueError(f"resolution must be an integer in [4, 1024], got {self.resolution!r}")
        if not isinstance(self.frames_per_clip, int) or self.frames_per_clip < 1:
            raise ValueError(f"frames_per_clip must be an integer >= 1, got {self.frames_per_clip!r}")
        for split in SPLITS:
            n = getattr(self, f"n_{split}")
            if not isinstance(n, int) or n < 0:
                raise ValueError(f"n_{split} must be an integer >= 0, got {n!r}")
        if not 0.0 <= self.two_object_prob <= 1.0:
            raise ValueError(f"two_object_prob must be in [0, 1], got {self.two_object_prob}")
        if not self.heldout_pairs:
            raise ValueError("heldout_pairs must hold at least one (colour, shape) pair, got none")
        for pair in self.heldout_pairs:
            if len(pair) != 2 or pair[0] not in COLOURS or pair[1] not in SHAPES:
                raise ValueError(
                    f"heldout pairs must be (colour in {COLOURS}, shape in {SHAPES}), got {pair!r}"
                )
        if len({c for c, s in self.seen_pairs}) < 2:
            raise ValueError(f"heldout_pairs {self.heldout_pairs} leave fewer than 2 colours for training")
        if not isinstance(self.seed, int):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")

    @property
    def seen_pairs(self) -> tuple[tuple[str, str], ...]:
        """The (colour, shape) pairs allowed in train/val/test."""
        return tuple((c, s) for c in COLOURS for s in SHAPES if (c, s) not in self.heldout_pairs)


def _uniform_grid(rng: random.Random, lo: float, hi: float) -> float:
    """A uniform draw from [lo, hi] on the 1/256 grid (exact in binary, short in JSON)."""
    return rng.randint(math.ceil(lo * 256), math.floor(hi * 256)) / 256


def sample_object(rng: random.Random, pairs: tuple[tuple[str, str], ...]) -> ObjectSpec:
    """A random object whose (colour, shape) is drawn from `pairs`, placed so that bounce, orbit and
    grow stay inside the frame. Speeds are 10/512 .. 26/512 frame sides per frame."""
    colour, shape = rng.choice(pairs)
    size, motion = rng.choice(SIZES), rng.choice(MOTIONS)
    speed = rng.randint(10, 26) / 512
    margin = SIZE_EXTENT[size] * SHAPE_MARGIN
    if motion == "bounce":
        x0, y0 = _uniform_grid(rng, margin, 1 - margin), _uniform_grid(rng, margin, 1 - margin)
    elif motion == "orbit":
        # Rejection keeps the draw free of transcendental functions (bit-exact on every platform).
        while True:
            x0, y0 = _uniform_grid(rng, 0, 1), _uniform_grid(rng, 0, 1)
            if (MIN_ORBIT_RADIUS + 0.02) ** 2 <= (x0 - 0.5) ** 2 + (y0 - 0.5) ** 2 <= (0.5 - margin) ** 2:
                break
    elif motion == "grow":
        reach = margin * (1 + GROW_AMPLITUDE)
        x0, y0 = _uniform_grid(rng, reach, 1 - reach), _uniform_grid(rng, reach, 1 - reach)
    else:
        x0, y0 = _uniform_grid(rng, 0, 1 - 1 / 256), _uniform_grid(rng, 0, 1 - 1 / 256)
    return ObjectSpec(shape=shape, colour=colour, size=size, motion=motion, x0=x0, y0=y0, speed=speed)


def sample_scene(rng: random.Random, cfg: WorldConfig, heldout: bool) -> SceneSpec:
    """A random scene. With `heldout=False` every object uses a seen (colour, shape) pair; with
    `heldout=True` at least one object uses a held-out pair. Two objects always differ in colour."""
    first = sample_object(rng, cfg.heldout_pairs if heldout else cfg.seen_pairs)
    objects = [first]
    if rng.random() < cfg.two_object_prob:
        pool = cfg.seen_pairs + cfg.heldout_pairs if heldout else cfg.seen_pairs
        objects.append(sample_object(rng, tuple(p for p in pool if p[0] != first.colour)))
        if heldout and rng.random() < 0.5:
            objects.reverse()
    return SceneSpec(objects=tuple(objects), background=rng.choice(BACKGROUNDS))


def write_atomic(path: Path, write) -> None:
    """Write through `path.tmp` and rename, so an interrupted run never leaves a half-written file."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        write(f)
    os.replace(tmp, path)


def _write_json(path: Path, obj) -> None:
    write_atomic(path, lambda f: f.write((json.dumps(obj, sort_keys=True, indent=1) + "\n").encode()))


def generate_dataset(cfg: WorldConfig, out_dir: Path, progress: bool = False) -> dict:
    """Render every split into `out_dir`: `{split}.npy` (uint8 `[n, frames_per_clip, H, W, 3]`),
    `{split}.json` (records with caption, canonical caption and scene) and `world.json` (the config).

    Byte-identical for equal configs. Returns {"clips": {split: n}, "bytes": total bytes written}.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    total = sum(getattr(cfg, f"n_{split}") for split in SPLITS)
    bar = tqdm(total=total, desc="rendering clips", unit="clip", disable=not progress)
    written = []
    for split in SPLITS:
        n = getattr(cfg, f"n_{split}")
        # One generator per split, seeded from a string (SHA-512 based, independent of PYTHONHASHSEED).
        rng = random.Random(f"streamdit-world:{cfg.seed}:{split}")
        clips = np.zeros((n, cfg.frames_per_clip, cfg.resolution, cfg.resolution, 3), dtype=np.uint8)
        records = []
        for i in range(n):
            scene = sample_scene(rng, cfg, heldout=split == "heldout")
            clips[i] = render(scene, 0, cfg.frames_per_clip, cfg.resolution)
            records.append(
                {
                    "index": i,
                    "caption": caption(scene, rng),
                    "canonical_caption": canonical_caption(scene),
                    "scene": scene_to_dict(scene),
                }
            )
            bar.update()
        write_atomic(out_dir / f"{split}.npy", lambda f, clips=clips: np.save(f, clips))
        _write_json(out_dir / f"{split}.json", records)
        written += [out_dir / f"{split}.npy", out_dir / f"{split}.json"]
    bar.close()
    _write_json(out_dir / "world.json", asdict(cfg))
    written.append(out_dir / "world.json")
    return {
        "clips": {split: getattr(cfg, f"n_{split}") for split in SPLITS},
        "bytes": sum(p.stat().st_size for p in written),
    }


def _random_offset(generator: torch.Generator, length: int, window: int) -> int:
    """Uniform start of a `window`-frame window inside `length` frames."""
    return int(torch.randint(0, length - window + 1, (1,), generator=generator))


def _make_generator(seed: int | None) -> torch.Generator:
    generator = torch.Generator()
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator


class WorldClips(torch.utils.data.Dataset):
    """Clips of one split of the generated world, each cut to a random window of `window` frames.

    Items: {"frames": float32 `[window, 3, H, W]` in [-1, 1], "caption": str, "index": int}. The window
    offsets come from a generator owned by the dataset (seeded with `generator_seed`, or from the OS when
    None); DataLoader workers each get a copy of it, so give every worker its own seed if that matters.
    """

    def __init__(self, root: Path, split: str, window: int, generator_seed: int | None = None):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        root = Path(root)
        clips_path, records_path = root / f"{split}.npy", root / f"{split}.json"
        for path in (clips_path, records_path):
            if not path.is_file():
                raise FileNotFoundError(
                    f"{path} not found; create the dataset with `python -m streamdit.data --out {root}`"
                )
        self.clips = np.load(clips_path, mmap_mode="r")
        self.records = json.loads(records_path.read_text())
        if len(self.records) != len(self.clips):
            raise ValueError(
                f"{records_path} holds {len(self.records)} records but {clips_path} holds {len(self.clips)} "
                "clips; regenerate with `python -m streamdit.data`"
            )
        frames_per_clip = self.clips.shape[1]
        if not isinstance(window, int) or not 1 <= window <= frames_per_clip:
            raise ValueError(f"window must be in [1, frames_per_clip={frames_per_clip}], got {window!r}")
        self.window = window
        self.generator = _make_generator(generator_seed)

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> dict:
        if not 0 <= i < len(self):
            raise IndexError(f"index must be in [0, {len(self)}), got {i}")
        offset = _random_offset(self.generator, self.clips.shape[1], self.window)
        frames = from_uint8(np.array(self.clips[i, offset : offset + self.window]))
        return {"frames": frames, "caption": self.records[i]["caption"], "index": i}

    @property
    def captions(self) -> list[str]:
        """The training caption of every clip, in index order."""
        return [r["caption"] for r in self.records]

    @property
    def canonical_captions(self) -> list[str]:
        """The canonical (evaluation) caption of every clip, in index order."""
        return [r["canonical_caption"] for r in self.records]

    @property
    def scenes(self) -> list[SceneSpec]:
        """The scene of every clip, in index order (attribute labels for evaluators)."""
        return [scene_from_dict(r["scene"]) for r in self.records]


def resize_square(frames: torch.Tensor, resolution: int) -> torch.Tensor:
    """Centre-crop `[f, c, h, w]` frames to a square and resize to `[f, c, resolution, resolution]`
    (bilinear with antialiasing)."""
    _, _, h, w = frames.shape
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = frames[:, :, top : top + side, left : left + side]
    return F.interpolate(
        square, size=(resolution, resolution), mode="bilinear", antialias=True, align_corners=False
    )


class VideoFolderClips(torch.utils.data.Dataset):
    """Real videos: `root/captions.csv` with columns `path,caption` (paths relative to `root`).

    Items have the same format as `WorldClips`: a random `window`-frame window of each video,
    centre-cropped to a square and resized to `resolution`, as float32 `[window, 3, res, res]` in [-1, 1].
    """

    def __init__(self, root: Path, window: int, resolution: int, generator_seed: int | None = None):
        root = Path(root)
        index = root / "captions.csv"
        if not index.is_file():
            raise FileNotFoundError(
                f"{index} not found; a video folder needs a captions.csv with columns path,caption"
            )
        with open(index, newline="") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None or not {"path", "caption"} <= set(reader.fieldnames):
                raise ValueError(f"{index} must have columns path,caption, got {reader.fieldnames}")
            self.items = [(root / row["path"], row["caption"]) for row in reader]
        for path, _ in self.items:
            if not path.is_file():
                raise FileNotFoundError(f"video {path} listed in {index} does not exist")
        if not isinstance(window, int) or window < 1:
            raise ValueError(f"window must be an integer >= 1, got {window!r}")
        if not isinstance(resolution, int) or resolution < 1:
            raise ValueError(f"resolution must be an integer >= 1, got {resolution!r}")
        self.window, self.resolution = window, resolution
        self.generator = _make_generator(generator_seed)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        if not 0 <= i < len(self):
            raise IndexError(f"index must be in [0, {len(self)}), got {i}")
        path, text = self.items[i]
        video = read_video(path)
        if len(video) < self.window:
            raise ValueError(f"video {path} has {len(video)} frames, fewer than window={self.window}")
        offset = _random_offset(self.generator, len(video), self.window)
        frames = resize_square(from_uint8(video[offset : offset + self.window]), self.resolution)
        return {"frames": frames.clamp(-1, 1), "caption": text, "index": i}

    @property
    def captions(self) -> list[str]:
        """The caption of every video, in index order."""
        return [text for _, text in self.items]


def directory_hash(path: Path) -> str:
    """DVC's content hash of a folder ("<md5>.dir"), computed with DVC's own hashing code."""
    import tempfile

    from dvc_data.hashfile.build import build
    from dvc_data.hashfile.db import HashFileDB
    from dvc_objects.fs.local import LocalFileSystem

    fs = LocalFileSystem()
    with tempfile.TemporaryDirectory() as tmp:
        _, _, obj = build(HashFileDB(fs, tmp), str(path), fs, "md5")
    return obj.hash_info.value


def pinned_hash(dvc_file: Path) -> str:
    """The hash that ``dvc_file`` pins, as committed in git (HEAD) when the file is tracked there.

    The committed version is the truth: ``dvc repro`` silently rewrites a .dvc file whose data
    changed, so only the committed pin can reveal altered data.
    """
    import subprocess

    dvc_file = Path(dvc_file)
    shown = subprocess.run(
        ["git", "show", f"HEAD:./{dvc_file.name}"], cwd=dvc_file.parent, capture_output=True, text=True
    )
    text = shown.stdout if shown.returncode == 0 else dvc_file.read_text()
    outs = (yaml.safe_load(text) or {}).get("outs") or []
    if len(outs) != 1 or "md5" not in outs[0]:
        raise ValueError(f"{dvc_file} must pin exactly one output with an md5, got {outs}")
    return outs[0]["md5"]


def check_pinned(data_dir: Path, dvc_file: Path) -> str:
    """Raise unless ``data_dir`` hashes to what ``dvc_file`` pins; returns the hash."""
    if not Path(data_dir).is_dir():
        raise FileNotFoundError(
            f"{data_dir} does not exist; create it with "
            f"`python -m streamdit.data --out {data_dir} --config params.yaml`"
        )
    expected, actual = pinned_hash(dvc_file), directory_hash(data_dir)
    if actual != expected:
        raise ValueError(
            f"{data_dir} hashes to {actual} but {dvc_file} pins {expected}: the data was altered or "
            "generated with other settings. Regenerate with `python -m streamdit.data --out "
            f"{data_dir} --config params.yaml` (data section unchanged) and restore data.dvc from git"
        )
    return actual


def main(argv: list[str] | None = None) -> dict:
    """CLI: generate the world into --out from the `data` section of --config (its profile, or
    --profile), or with --check verify --out against the hash a .dvc file pins."""
    parser = argparse.ArgumentParser(prog="python -m streamdit.data", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="the data folder, e.g. data")
    parser.add_argument("--config", type=Path, help="params.yaml; without it the WorldConfig defaults")
    parser.add_argument("--profile", help="the profile of --config to use (default: its `profile` key)")
    parser.add_argument("--check", type=Path, metavar="DVC_FILE", help="verify --out against this pin")
    args = parser.parse_args(argv)
    if args.check is not None:
        digest = check_pinned(args.out, args.check)
        print(f"{args.out} matches {args.check}: {digest}")
        return {"hash": digest}
    if args.profile is not None and args.config is None:
        raise ValueError("--profile needs --config")
    if args.config is not None:
        from streamdit.config import load_config

        world = load_config(args.config, args.profile).data
    else:
        world = WorldConfig()
    summary = generate_dataset(world, args.out, progress=True)
    print(json.dumps(summary, indent=1))
    return summary


if __name__ == "__main__":
    main()
