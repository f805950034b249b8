"""The datasets of the world (``world.py``) and of real videos: generation, clips, batches, the DVC pin.

- ``generate_dataset`` renders every split of the world into a folder (what ``data.dvc`` pins);
- ``WorldClips`` / ``VideoFolderClips`` serve runs of consecutive frames of clips from random starts,
  ``Batches`` random batches,
  ``load_split`` / ``clip_batch`` whole splits for the evaluators;
- ``check_pinned`` compares a data folder with the hash its ``.dvc`` file pins.

Create the dataset with `python -m streamdit.data --out data --config params.yaml`; check it against
the hash that data.dvc pins with `python -m streamdit.data --out data --check data.dvc`.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import random
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from einops import rearrange

from streamdit.files import atomic_write, write_json
from streamdit.progress import progress_bar
from streamdit.video import from_uint8, read_video, save_strip
from streamdit.world import (
    SPLITS,
    SceneSpec,
    WorldConfig,
    canonical_caption,
    caption,
    render,
    sample_scene,
    scene_from_dict,
    scene_to_dict,
)


def generate_dataset(cfg: WorldConfig, out_dir: Path, progress: bool = False) -> dict:
    """Render every split into `out_dir`: `{split}.npy` (uint8 `[n, frames_per_clip, H, W, 3]`),
    `{split}.json` (records with caption, canonical caption and scene) and `world.json` (the config).

    Byte-identical for equal configs. Returns {"clips": {split: n}, "bytes": total bytes written}.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    total = sum(getattr(cfg, f"n_{split}") for split in SPLITS)
    bar = progress_bar(total, "rendering clips", progress, unit="clip")
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
        atomic_write(out_dir / f"{split}.npy", lambda f, clips=clips: np.save(f, clips))
        write_json(records, out_dir / f"{split}.json", indent=1)
        written += [out_dir / f"{split}.npy", out_dir / f"{split}.json"]
    bar.close()
    write_json(asdict(cfg), out_dir / "world.json", indent=1)
    written.append(out_dir / "world.json")
    return {
        "clips": {split: getattr(cfg, f"n_{split}") for split in SPLITS},
        "bytes": sum(p.stat().st_size for p in written),
    }


def _random_start(generator: torch.Generator, total: int, length: int) -> int:
    """Uniform start of `length` consecutive frames inside `total` frames."""
    return int(torch.randint(0, total - length + 1, (1,), generator=generator))


def _make_generator(seed: int | None) -> torch.Generator:
    generator = torch.Generator()
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator


class WorldClips(torch.utils.data.Dataset):
    """Clips of one split of the generated world, each cut to `length` consecutive frames from a random start.

    Items: {"frames": float32 `[length, 3, H, W]` in [-1, 1], "caption": str, "index": int}. The
    starts come from a generator owned by the dataset (seeded with `generator_seed`, or from the OS when
    None); DataLoader workers each get a copy of it, so give every worker its own seed if that matters.
    """

    def __init__(self, root: Path, split: str, length: int, generator_seed: int | None = None):
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
        if not isinstance(length, int) or not 1 <= length <= frames_per_clip:
            raise ValueError(f"length must be in [1, frames_per_clip={frames_per_clip}], got {length!r}")
        self.length = length
        self.generator = _make_generator(generator_seed)

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> dict:
        if not 0 <= i < len(self):
            raise IndexError(f"index must be in [0, {len(self)}), got {i}")
        start = _random_start(self.generator, self.clips.shape[1], self.length)
        return {"frames": self._frames(i, start), "caption": self.records[i]["caption"], "index": i}

    def _frames(self, i: int, start: int) -> torch.Tensor:
        return from_uint8(np.array(self.clips[i, start : start + self.length]))

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


class LatentClips(WorldClips):
    """A split's clips as cached latents (the autoencoder stage's ``latents_dir/{split}.npy``, float32
    ``[n, frames_per_clip, C, h, w]``) with the split's captions and scenes: items as ``WorldClips``',
    ``frames`` being latents ``[length, C, h, w]``."""

    def __init__(
        self, latents_dir: Path, root: Path, split: str, length: int, generator_seed: int | None = None
    ):
        super().__init__(root, split, length, generator_seed)
        path = Path(latents_dir) / f"{split}.npy"
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found; cache the latents first (dvc repro autoencoder)")
        latents = np.load(path, mmap_mode="r")
        if latents.ndim != 5 or latents.shape[:2] != self.clips.shape[:2]:
            raise ValueError(
                f"{path} holds latents of shape {latents.shape}, not [{len(self.clips)}, "
                f"{self.clips.shape[1]}, C, h, w] for the clips of {root}; rerun the autoencoder stage"
            )
        self.clips = latents

    def _frames(self, i: int, start: int) -> torch.Tensor:
        return torch.from_numpy(np.array(self.clips[i, start : start + self.length]))

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        """(C, h, w) of one latent frame."""
        return tuple(self.clips.shape[2:])


AUTOENCODER_RECORD = "autoencoder.sha1"  # beside the cached latents: the SHA-1 of the autoencoder file


def file_digest(path: str | Path, stage: str = "autoencoder") -> str:
    """SHA-1 of a file's bytes (an autoencoder or model file): what identifies it in a run's key, and
    the autoencoder behind cached latents. ``stage``: the dvc stage that writes the file (the error's
    hint when it is missing)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no file at {path}; write it first (dvc repro {stage})")
    return hashlib.sha1(path.read_bytes()).hexdigest()


def autoencoder_record(latents_dir: str | Path) -> str:
    """The SHA-1 of the autoencoder file that encoded the latents in ``latents_dir``."""
    path = Path(latents_dir) / AUTOENCODER_RECORD
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; cache the latents first (dvc repro autoencoder)")
    return path.read_text().strip()


def training_clips(cfg, latents_dir: str | Path, model, generator_seed: int) -> WorldClips:
    """The train split of ``cfg`` (a ``config.Config``) as ``model`` (a ``ModelConfig``) denoises it, in
    runs of ``model.frames`` frames: cached latents when ``model.space`` is latent, pixels otherwise."""
    if model.space != "latent":
        return WorldClips(Path(cfg.data_dir), "train", length=model.frames, generator_seed=generator_seed)
    clips = LatentClips(Path(latents_dir), Path(cfg.data_dir), "train", model.frames, generator_seed)
    expected = (model.channels, model.resolution, model.resolution)
    if clips.frame_shape != expected:
        raise ValueError(
            f"the cached latents are {clips.frame_shape} (C, h, w) per frame but the model expects "
            f"{expected}: set model.channels and model.resolution to the autoencoder's latents"
        )
    return clips


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

    Items have the same format as `WorldClips`: `length` consecutive frames of each video from a random start,
    centre-cropped to a square and resized to `resolution`, as float32 `[length, 3, res, res]` in [-1, 1].
    """

    def __init__(self, root: Path, length: int, resolution: int, generator_seed: int | None = None):
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
        if not isinstance(length, int) or length < 1:
            raise ValueError(f"length must be an integer >= 1, got {length!r}")
        if not isinstance(resolution, int) or resolution < 1:
            raise ValueError(f"resolution must be an integer >= 1, got {resolution!r}")
        self.length, self.resolution = length, resolution
        self.generator = _make_generator(generator_seed)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        if not 0 <= i < len(self):
            raise IndexError(f"index must be in [0, {len(self)}), got {i}")
        path, text = self.items[i]
        video = read_video(path)
        if len(video) < self.length:
            raise ValueError(f"video {path} has {len(video)} frames, fewer than length={self.length}")
        start = _random_start(self.generator, len(video), self.length)
        frames = resize_square(from_uint8(video[start : start + self.length]), self.resolution)
        return {"frames": frames.clamp(-1, 1), "caption": text, "index": i}

    @property
    def captions(self) -> list[str]:
        """The caption of every video, in index order."""
        return [text for _, text in self.items]


def reference_prompts(
    data_dir: str | Path, count: int, frames: int, resolution: int
) -> tuple[list[str], list[np.ndarray]]:
    """The canonical captions of the first ``count`` test clips and each scene's real stream of
    ``frames`` frames (uint8 ``[frames, h, w, 3]``): prompts with a ground truth to show beside them."""
    test = WorldClips(Path(data_dir), "test", length=1)
    real = [render(scene, 0, frames, resolution) for scene in test.scenes[:count]]
    return test.canonical_captions[:count], real


def describe_splits(
    data_dir: str | Path, length: int, seed: int, report_dir: str | Path, rows: int = 3
) -> dict:
    """Load every split with clips of ``length`` frames and draw a strip of its first ``rows`` clips
    into ``report_dir``. Returns per split: clip count, distinct captions, mean caption words."""
    stats = {}
    for split in SPLITS:
        clips = WorldClips(Path(data_dir), split, length=length, generator_seed=seed)
        captions = clips.captions
        stats[split] = {
            "clips": len(clips),
            "unique_captions": len(set(captions)),
            "mean_caption_words": round(float(np.mean([len(c.split()) for c in captions])), 2),
        }
        shown = range(min(rows, len(clips)))
        save_strip(
            [np.asarray(clips.clips[i]) for i in shown],
            Path(report_dir) / f"{split}_strip.png",
            captions=[captions[i] for i in shown],
        )
    return stats


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


class Batches:
    """Random training batches with every random draw on an explicit generator (so resume is exact)."""

    def __init__(self, dataset: WorldClips, batch_size: int, seed: int):
        self.dataset = dataset
        self.batch_size = batch_size
        self.generator = torch.Generator().manual_seed(seed)

    def __next__(self) -> tuple[torch.Tensor, list[str]]:
        idx = torch.randint(len(self.dataset), (self.batch_size,), generator=self.generator)
        items = [self.dataset[int(i)] for i in idx]
        return torch.stack([it["frames"] for it in items]), [it["caption"] for it in items]

    def state_dict(self) -> dict:
        return {"batches": self.generator.get_state(), "starts": self.dataset.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["batches"])
        self.dataset.generator.set_state(state["starts"])


def load_split(data_dir: str | Path, split: str) -> tuple[np.ndarray, list[dict]]:
    """Clips uint8 ``[n, f, h, w, 3]`` (memory-mapped) and records of one split of the world."""
    data_dir = Path(data_dir)
    clips_path, records_path = data_dir / f"{split}.npy", data_dir / f"{split}.json"
    for path in (clips_path, records_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found; generate the world with `python -m streamdit.data`")
    return np.load(clips_path, mmap_mode="r"), json.loads(records_path.read_text())


def world_settings(data_dir: str | Path) -> dict:
    """The world config a data folder was generated with (its ``world.json``): what makes two
    folders' clips the same, for the keys of runs trained on them."""
    path = Path(data_dir) / "world.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; generate the world with `python -m streamdit.data`")
    return json.loads(path.read_text())


def clip_batch(clips: np.ndarray, index: torch.Tensor | list[int]) -> torch.Tensor:
    """Rows ``index`` of uint8 clips ``[n, f, h, w, 3]`` as float ``[b, f, c, h, w]`` in [-1, 1]."""
    rows = np.asarray(index, dtype=np.int64)
    frames = from_uint8(rearrange(np.asarray(clips[rows]), "b f h w c -> (b f) h w c"))
    return rearrange(frames, "(b f) c h w -> b f c h w", b=len(rows))


def describe_data(cfg, report_dir: str | Path, dvc_file: str | Path = "data.dvc") -> dict:
    """The data stage: check the world of ``cfg`` (a ``config.Config``) against its pin and that every
    split loads with the configured buffer; draw a strip per split. Returns the hash, per-split clip
    counts and caption statistics."""
    digest = check_pinned(Path(cfg.data_dir), Path(dvc_file))
    return {"hash": digest, **describe_splits(cfg.data_dir, cfg.model.frames, cfg.seed, report_dir)}
