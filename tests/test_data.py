import csv
import hashlib
import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from streamdit.data import VideoFolderClips, WorldClips, generate_dataset, main
from streamdit.video import write_mp4
from streamdit.world import (
    BACKGROUND_RGB,
    COLOUR_RGB,
    COLOURS,
    MOTION_PHRASES,
    QUANT,
    SHAPES,
    SIZE_EXTENT,
    SPLITS,
    ObjectSpec,
    SceneSpec,
    WorldConfig,
    canonical_caption,
    caption,
    render,
    render_stream,
    sample_scene,
    scene_from_dict,
    scene_to_dict,
    subsamples,
)

RES = 32


def one(shape="circle", colour="red", size="large", motion="right", x0=0.5, y0=0.5, speed=0.03, bg="black"):
    return SceneSpec(objects=(ObjectSpec(shape, colour, size, motion, x0, y0, speed),), background=bg)


def mask(frames, bg=(0, 0, 0)):
    """Pixels that differ from a solid background, `[f, h, w]` bool."""
    return np.any(frames != np.array(bg, dtype=np.uint8), axis=-1)


def centroid(frames, colour):
    """Coverage-weighted centre (x, y) in pixels per frame, for one object on black."""
    weight = frames[..., 0].astype(np.float64) / colour[0]
    ys, xs = np.mgrid[0 : frames.shape[1], 0 : frames.shape[2]] + 0.5
    total = weight.sum(axis=(1, 2))
    return (weight * xs).sum(axis=(1, 2)) / total, (weight * ys).sum(axis=(1, 2)) / total


def tiny_config(**kw):
    base = dict(
        resolution=16, frames_per_clip=6, n_train=12, n_val=4, n_test=4, n_heldout=6, two_object_prob=0.5
    )
    return WorldConfig(**(base | kw))


def test_render_shape_dtype_background_and_exact_colour():
    frames = render(one(bg="grey"), 0, 3, RES)
    assert frames.shape == (3, RES, RES, 3) and frames.dtype == np.uint8
    assert tuple(frames[0, 0, 0]) == BACKGROUND_RGB["grey"][0]
    assert tuple(frames[0, 16, 16]) == COLOUR_RGB["red"]  # the centre pixel is fully covered


def test_twilight_gradient_runs_from_top_to_bottom_colour():
    frames = render(one(x0=0.25, y0=0.5, bg="twilight"), 0, 1, RES)
    top, bottom = BACKGROUND_RGB["twilight"]
    assert tuple(frames[0, 0, -1]) == top and tuple(frames[0, -1, -1]) == bottom


def test_render_is_deterministic_and_start_offsets_agree():
    scene = SceneSpec(
        objects=(
            ObjectSpec("triangle", "green", "small", "orbit", 0.75, 0.5, 0.04),
            ObjectSpec("cross", "cyan", "large", "bounce", 0.3, 0.6, 0.05),
        ),
        background="twilight",
    )
    long = render(scene, 0, 40, RES)
    assert np.array_equal(long, render(scene, 0, 40, RES))
    assert np.array_equal(long[25:], render(scene, 25, 15, RES))


def test_render_bytes_are_pinned():
    # Cross-machine determinism (data.dvc pins the dataset's hash): this digest must hold on every platform.
    scene = SceneSpec(
        objects=(
            ObjectSpec("diamond", "yellow", "small", "orbit", 0.7, 0.3, 0.03),
            ObjectSpec("circle", "magenta", "large", "grow", 0.5, 0.5, 0.04),
        ),
        background="twilight",
    )
    digest = hashlib.sha256(render(scene, 100, 8, RES).tobytes()).hexdigest()
    assert digest == "4637e9eab6df9f51a1bb2f7e22dfb92619d25c269464dedbb1d35a877ab61d9a"


def test_antialiasing_gives_partial_edge_pixels():
    frames = render(one(shape="circle"), 0, 1, RES)
    red = frames[0, ..., 0]
    partial = (red > 0) & (red < COLOUR_RGB["red"][0])
    assert partial.sum() >= 8


@pytest.mark.parametrize(
    ("shape", "area"),
    [
        ("circle", math.pi),
        ("square", 4 * 0.8**2),
        ("diamond", 2.0),
        ("triangle", 3 * math.sqrt(3) / 4 * 1.2**2),
        ("cross", 8 / 3 - 4 / 9),  # two 2 x 2/3 bars minus their overlap
    ],
)
def test_shape_area_matches_geometry(shape, area):
    frames = render(one(shape=shape), 0, 1, RES)
    coverage = frames[0, ..., 0].astype(np.float64) / COLOUR_RGB["red"][0]
    r_px = SIZE_EXTENT["large"] * RES
    assert coverage.sum() == pytest.approx(area * r_px**2, rel=0.06)


@pytest.mark.parametrize(
    ("motion", "dx", "dy"), [("left", -1, 0), ("right", 1, 0), ("up", 0, -1), ("down", 0, 1)]
)
def test_linear_motion_moves_speed_pixels_per_frame(motion, dx, dy):
    speed = 0.03
    frames = render(one(motion=motion, speed=speed), 0, 6, RES)
    cx, cy = centroid(frames, COLOUR_RGB["red"])
    step = speed * RES
    assert np.diff(cx) == pytest.approx(np.full(5, dx * step), abs=0.05)
    assert np.diff(cy) == pytest.approx(np.full(5, dy * step), abs=0.05)


def test_linear_motion_wraps_around_the_border():
    # A large object centred 1 px left of the right border is drawn on both sides of the frame.
    frames = render(one(motion="right", x0=31 / 32, speed=0.01), 0, 1, RES)
    m = mask(frames)[0]
    assert m[:, 0].any() and m[:, -1].any()
    # After one full turn (100 frames at 0.01) the frame repeats exactly.
    assert np.array_equal(render(one(motion="right", x0=31 / 32, speed=0.01), 100, 1, RES), frames)


def test_bounce_stays_inside_and_reverses():
    frames = render(one(motion="bounce", x0=0.5, y0=0.5, speed=0.05), 0, 120, RES)
    m = mask(frames)
    assert not m[:, :, 0].any() and not m[:, :, -1].any() and not m[:, 0, :].any() and not m[:, -1, :].any()
    cx, _ = centroid(frames, COLOUR_RGB["red"])
    signs = np.sign(np.diff(cx))
    assert (signs > 0).sum() > 20 and (signs < 0).sum() > 20


def test_orbit_keeps_its_radius_and_goes_round():
    radius = 0.25
    frames = render(one(motion="orbit", x0=0.5 + radius, y0=0.5, speed=0.04), 0, 40, RES)
    cx, cy = centroid(frames, COLOUR_RGB["red"])
    dist = np.hypot(cx - RES / 2, cy - RES / 2)
    assert dist == pytest.approx(np.full(40, radius * RES), abs=0.25)
    # 39 steps of 0.04 / 0.25 rad = 6.24 rad (clockwise on screen, so the angle grows): nearly a full turn.
    angles = np.unwrap(np.arctan2(cy - RES / 2, cx - RES / 2))
    assert angles[-1] - angles[0] == pytest.approx(6.24, abs=0.05)


def test_grow_pulses_the_area():
    frames = render(one(motion="grow", speed=0.04), 0, 20, RES)
    area = (frames[..., 0].astype(np.float64) / COLOUR_RGB["red"][0]).sum(axis=(1, 2))
    # Extent scales between 0.6 and 1.4, so area between 0.36 and 1.96 of the base area.
    assert area.max() / area.min() > 4


def test_spec_validation_names_the_bad_value():
    with pytest.raises(ValueError, match="purple"):
        ObjectSpec("circle", "purple", "large", "left", 0.5, 0.5, 0.03)
    with pytest.raises(ValueError, match="1.5"):
        ObjectSpec("circle", "red", "large", "left", 1.5, 0.5, 0.03)
    with pytest.raises(ValueError, match="speed"):
        ObjectSpec("circle", "red", "large", "left", 0.5, 0.5, 0.0)
    with pytest.raises(ValueError, match="bouncing"):
        ObjectSpec("circle", "red", "large", "bounce", 0.05, 0.5, 0.03)
    with pytest.raises(ValueError, match="orbit radius"):
        ObjectSpec("circle", "red", "large", "orbit", 0.5, 0.52, 0.03)
    with pytest.raises(ValueError, match="1 or 2 objects"):
        SceneSpec(objects=(), background="black")
    with pytest.raises(ValueError, match="sky"):
        SceneSpec(objects=one().objects, background="sky")
    with pytest.raises(ValueError, match="resolution"):
        render(one(), 0, 1, 2)
    with pytest.raises(ValueError, match="two_object_prob"):
        WorldConfig(two_object_prob=1.5)
    with pytest.raises(ValueError, match="pink"):
        WorldConfig(heldout_pairs=(("pink", "circle"),))


def test_captions_mention_every_attribute_and_vary():
    cfg = WorldConfig()
    rng = random.Random(1)
    seen = set()
    for _ in range(200):
        scene = sample_scene(rng, cfg, heldout=False)
        text = caption(scene, rng)
        seen.add(text.replace(scene.background, "BG"))
        for obj in scene.objects:
            assert obj.colour in text and obj.shape in text
            assert any(p in text for p in MOTION_PHRASES[obj.motion])
        if len(scene.objects) == 2:
            assert " and " in text
    assert len(seen) > 100


def test_canonical_caption_is_fixed():
    scene = SceneSpec(
        objects=(
            ObjectSpec("circle", "red", "small", "left", 0.5, 0.5, 0.03),
            ObjectSpec("square", "blue", "large", "orbit", 0.75, 0.5, 0.03),
        ),
        background="black",
    )
    assert canonical_caption(scene) == (
        "a small red circle moving left and a large blue square orbiting the centre on a black background"
    )


def test_scene_dict_round_trip():
    scene = sample_scene(random.Random(5), WorldConfig(two_object_prob=1.0), heldout=True)
    assert scene_from_dict(json.loads(json.dumps(scene_to_dict(scene)))) == scene


def test_render_stream_cuts_to_the_new_scene_at_its_frame_zero():
    a, b = one(motion="left"), one(shape="square", colour="blue", motion="orbit", x0=0.75)
    stream = render_stream([(0, a), (7, b)], 12, RES)
    assert stream.shape == (12, RES, RES, 3)
    assert np.array_equal(stream[:7], render(a, 0, 7, RES))
    assert np.array_equal(stream[7:], render(b, 0, 5, RES))
    with pytest.raises(ValueError, match=r"\[0, 7, 7\]"):
        render_stream([(0, a), (7, b), (7, a)], 12, RES)


def test_generate_dataset_is_byte_identical_and_respects_heldout(tmp_path):
    cfg = tiny_config()
    first, second = tmp_path / "a", tmp_path / "b"
    summary = generate_dataset(cfg, first)
    generate_dataset(cfg, second)
    names = sorted(p.name for p in first.iterdir())
    assert names == sorted([f"{s}.npy" for s in SPLITS] + [f"{s}.json" for s in SPLITS] + ["world.json"])
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    assert summary["clips"] == {"train": 12, "val": 4, "test": 4, "heldout": 6}
    assert summary["bytes"] == sum(p.stat().st_size for p in first.iterdir())
    assert np.load(first / "train.npy").shape == (12, 6, 16, 16, 3)
    heldout = set(cfg.heldout_pairs)
    for split in SPLITS:
        for record in json.loads((first / f"{split}.json").read_text()):
            pairs = {(o["colour"], o["shape"]) for o in record["scene"]["objects"]}
            assert bool(pairs & heldout) == (split == "heldout")
    # The stored clip is exactly the render of the stored scene.
    record = json.loads((first / "val.json").read_text())[2]
    assert np.array_equal(np.load(first / "val.npy")[2], render(scene_from_dict(record["scene"]), 0, 6, 16))
    assert WorldConfig(**json.loads((first / "world.json").read_text())) == cfg
    other = generate_dataset(tiny_config(seed=1), tmp_path / "c")
    assert other["bytes"] == sum(p.stat().st_size for p in (tmp_path / "c").iterdir())
    assert (tmp_path / "c" / "train.npy").read_bytes() != (first / "train.npy").read_bytes()


def test_world_clips_items_and_errors(tmp_path):
    generate_dataset(tiny_config(), tmp_path)
    data = WorldClips(tmp_path, "train", length=4, generator_seed=3)
    assert len(data) == 12 and len(data.captions) == 12 and len(data.scenes) == 12
    item = data[5]
    assert item["frames"].shape == (4, 3, 16, 16) and item["frames"].dtype == torch.float32
    assert item["caption"] == data.captions[5] and item["index"] == 5
    assert item["frames"].min() >= -1 and item["frames"].max() <= 1
    clip = np.load(tmp_path / "train.npy")[5]
    as_uint8 = ((item["frames"].permute(0, 2, 3, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    assert any(np.array_equal(as_uint8, clip[o : o + 4]) for o in range(3))
    fresh, again = (WorldClips(tmp_path, "train", length=4, generator_seed=3) for _ in range(2))
    windows = [fresh[i]["frames"] for i in range(12)]
    assert all(torch.equal(w, again[i]["frames"]) for i, w in enumerate(windows))
    other = WorldClips(tmp_path, "train", length=4, generator_seed=4)
    assert not all(torch.equal(w, other[i]["frames"]) for i, w in enumerate(windows))
    with pytest.raises(ValueError, match=r"frames_per_clip=6.*7"):
        WorldClips(tmp_path, "train", length=7)
    with pytest.raises(ValueError, match="trian"):
        WorldClips(tmp_path, "trian", length=4)
    with pytest.raises(FileNotFoundError, match="python -m streamdit.data"):
        WorldClips(tmp_path / "missing", "train", length=4)
    with pytest.raises(IndexError):
        data[12]


def test_video_folder_clips(tmp_path):
    gradient = np.linspace(0, 255, 48, dtype=np.uint8)
    long = np.broadcast_to(gradient[None, None, :, None], (12, 40, 48, 3)).copy()
    long[:, :, :, 1] = np.arange(12, dtype=np.uint8)[:, None, None] * 20
    write_mp4(long, tmp_path / "long.mp4")
    write_mp4(long[:3], tmp_path / "clips" / "short.mp4")
    with open(tmp_path / "captions.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "caption"])
        writer.writerow(["long.mp4", "a horizontal gradient, getting greener"])
        writer.writerow(["clips/short.mp4", "too short"])
    data = VideoFolderClips(tmp_path, length=8, resolution=16, generator_seed=0)
    assert len(data) == 2 and data.captions[1] == "too short"
    item = data[0]
    assert item["frames"].shape == (8, 3, 16, 16) and item["caption"].startswith("a horizontal")
    red = item["frames"][:, 0]
    # The centre crop keeps columns 4..43 of the gradient, so red rises left to right.
    assert float(red[:, :, -1].mean() - red[:, :, 0].mean()) > 1.2
    green = item["frames"][:, 1].mean(dim=(1, 2))
    assert torch.all(torch.diff(green) > 0.1)  # consecutive frames of the window, in order
    with pytest.raises(ValueError, match=r"short\.mp4 has 3 frames.*length=8"):
        data[1]
    (tmp_path / "captions.csv").write_text("path,caption\nnope.mp4,x\n")
    with pytest.raises(FileNotFoundError, match="nope.mp4"):
        VideoFolderClips(tmp_path, length=4, resolution=16)


def test_cli_generates_from_the_params_profile(tmp_path, capsys):
    import yaml

    params = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    params["data"].update(resolution=8, frames_per_clip=8, n_train=3, n_val=1, n_test=1, n_heldout=2)
    params["model"].update(preset="tiny_pixel", resolution=8, patch=4)
    params["evaluate"].update(clip_frames=8)
    config = tmp_path / "params.yaml"
    config.write_text(yaml.safe_dump(params))
    summary = main(["--out", str(tmp_path / "w"), "--config", str(config), "--profile", "smoke"])
    assert summary["clips"] == {"train": 3, "val": 1, "test": 1, "heldout": 2}
    assert np.load(tmp_path / "w" / "train.npy").shape == (3, 8, 8, 8, 3)
    assert '"train": 3' in capsys.readouterr().out
    with pytest.raises(ValueError, match="--profile needs --config"):
        main(["--out", str(tmp_path / "x"), "--profile", "smoke"])


def test_colours_are_distinct():
    rgb = np.array([COLOUR_RGB[c] for c in COLOURS], dtype=np.float64)
    gaps = np.linalg.norm(rgb[:, None] - rgb[None], axis=-1) + np.eye(len(COLOURS)) * 1e9
    assert gaps.min() > 140
    assert len(SHAPES) >= 4


def test_pinned_hash_check_catches_altered_data_even_after_a_silent_repin(tmp_path):
    import subprocess

    from streamdit.data import check_pinned, directory_hash

    world = tmp_path / "data"
    generate_dataset(
        WorldConfig(resolution=8, frames_per_clip=2, n_train=2, n_val=1, n_test=1, n_heldout=1), world
    )
    pin = tmp_path / "data.dvc"
    pin.write_text(f"outs:\n- md5: {directory_hash(world)}\n  path: data\n")
    assert check_pinned(world, pin) == directory_hash(world)

    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(git + ["add", "data.dvc"], cwd=tmp_path, check=True)
    subprocess.run(git + ["commit", "-qm", "pin"], cwd=tmp_path, check=True)
    clips = np.load(world / "train.npy")
    clips[0, 0, 0, 0, 0] ^= 1
    np.save(world / "train.npy", clips)
    # what `dvc repro` does to a .dvc file whose data changed: re-pin it in the working tree
    pin.write_text(f"outs:\n- md5: {directory_hash(world)}\n  path: data\n")
    with pytest.raises(ValueError, match="hashes to .* but .* pins"):
        check_pinned(world, pin)
    with pytest.raises(FileNotFoundError, match="python -m streamdit.data"):
        check_pinned(tmp_path / "missing", pin)


def test_sub_pixels_are_exact_and_at_least_64_per_frame_side():
    for resolution in range(4, 300):
        sub = subsamples(resolution)
        assert QUANT % (2 * sub) == 0, resolution  # sub-pixel centres land on the 1/QUANT grid
        assert resolution * sub >= min(64, 4 * resolution) and sub <= 4
    assert (subsamples(32), subsamples(64), subsamples(128)) == (4, 2, 1)
    # a 64-px object covers about 4x the pixels of the same object at 32 px
    scene = SceneSpec(
        objects=(ObjectSpec("circle", "red", "large", "left", 0.5, 0.5, 0.03),), background="black"
    )
    small, large = (render(scene, 0, 1, r)[0, ..., 0].astype(float).sum() / 230 for r in (32, 64))
    assert large / small == pytest.approx(4, rel=0.03)
