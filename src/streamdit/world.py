"""The procedural text-video world (DESIGN.md section 2, "Dataset"): attributes, scenes, renderer, captions.

A scene is one or two coloured shapes moving over a background. `render` draws any frame range of the
scene's endless stream, so clips, long ground-truth streams and prompt switches come from one function.

Units: positions and speeds are fractions of the frame side (x to the right, y downwards, (0, 0) is the
top-left corner), so a scene looks the same at every resolution; `speed` is frame sides per frame
(0.03 is about one pixel per frame at 32 px). Rendering is bit-exact across machines: object positions
are computed per frame with Python `math` on scalars and quantised to 1/64 pixel, and rasterisation
is integer arithmetic on sub-pixels (4x4 per pixel up to 32 px, 2x2 at 64 px). The datasets built from it
are in `data.py`.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass

import numpy as np

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


SUBSAMPLES = 4  # anti-aliasing: up to SUBSAMPLES x SUBSAMPLES sub-pixels per pixel (``subsamples``)


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
    """Background frames, int32 `[frames, resolution, resolution, 3]` with values in 0..255."""
    top, bottom = (np.array(c, dtype=np.int64) for c in BACKGROUND_RGB[name])
    rows = np.arange(resolution, dtype=np.int64)[:, None]
    denom = max(resolution - 1, 1)
    column = (top * (denom - rows) + bottom * rows + denom // 2) // denom
    return np.broadcast_to(
        column[None, :, None, :].astype(np.int32), (frames, resolution, resolution, 3)
    ).copy()


def subsamples(resolution: int) -> int:
    """Sub-pixels per pixel side: 4 up to 32 px, fewer above (2 at 64 px): the largest power of two (a
    divisor of QUANT, so sub-pixel centres stay exact) up to 128 / resolution, which leaves every frame
    side at least 64 sub-pixels and stops rendering cost from growing with the square of 4 x resolution."""
    return min(SUBSAMPLES, 1 << max(0, (128 // resolution).bit_length() - 1))


def _render_chunk(scene: SceneSpec, start: int, frames: int, resolution: int) -> np.ndarray:
    """`render` for one chunk of frames that fits in memory."""
    image = _background(scene.background, frames, resolution)
    side = resolution * QUANT
    sub = subsamples(resolution)
    # Sub-pixel centres in 1/QUANT pixel: (i + 1/2) / sub pixels for sub-pixel index i.
    step = QUANT // sub
    grid = np.arange(resolution * sub, dtype=np.int64) * step + step // 2
    full = sub * sub
    for obj in scene.objects:
        states = [object_state(obj, t) for t in range(start, start + frames)]
        cx, cy, r = (np.array([round(s[k] * side) for s in states], dtype=np.int64) for k in range(3))
        # Signed offsets wrapped onto the torus [-side / 2, side / 2): copies across borders come free.
        u = (grid[None, :] - cx[:, None] + side // 2) % side - side // 2
        v = (grid[None, :] - cy[:, None] + side // 2) % side - side // 2
        inside = _inside(obj.shape, u[:, None, :], v[:, :, None], r[:, None, None])
        # Covered sub-pixels per pixel (int32 is exact: at most 16 per pixel, 255 * 16 after blending).
        count = inside.reshape(frames, resolution, sub, resolution, sub).sum(axis=(2, 4), dtype=np.int32)
        count = count[..., None]
        colour = np.array(COLOUR_RGB[obj.colour], dtype=np.int32)
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
    chunk = max(1, 2**22 // (resolution * subsamples(resolution)) ** 2)
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
