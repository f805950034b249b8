"""The latent spaces (autoencoder.py) and the autoencoder stage's loop (autoencoder_training.py)."""

import dataclasses
import math

import numpy as np
import pytest
import torch

from streamdit.autoencoder import (
    AutoencoderConfig,
    PixelSpace,
    PretrainedVAE,
    WorldAutoencoder,
    read_autoencoder,
    space_from_record,
    space_record,
)
from streamdit.autoencoder_training import encode_split, psnr, reconstruct, train_world_autoencoder
from streamdit.checkpoint import atomic_save
from streamdit.config import load_config
from streamdit.data import LatentClips, load_split, training_clips

TINY = AutoencoderConfig(resolution=16, latent_channels=4, widths=(8, 16))


def tiny_autoencoder(seed: int = 0) -> WorldAutoencoder:
    torch.manual_seed(seed)
    return WorldAutoencoder(TINY).eval()


def test_world_autoencoder_maps_frames_to_latents_of_the_factor_and_back():
    ae = tiny_autoencoder()
    x = torch.rand(2, 3, 3, 16, 16) * 2 - 1
    z = ae.encode(x)
    assert TINY.factor == 4 and z.shape == (2, 3, 4, 4, 4)
    y = ae.decode(z)
    assert y.shape == x.shape and y.abs().max() <= 1


def test_frames_are_coded_one_by_one():
    ae = tiny_autoencoder()
    x = torch.rand(1, 4, 3, 16, 16) * 2 - 1
    z = ae.encode(x)
    torch.testing.assert_close(ae.encode(x[:, 2:3]), z[:, 2:3])
    torch.testing.assert_close(ae.decode(z[:, 1:2]), ae.decode(z)[:, 1:2])


def test_normalisation_gives_zero_mean_and_unit_variance_per_channel():
    ae = tiny_autoencoder()
    x = torch.rand(4, 6, 3, 16, 16) * 2 - 1
    raw = ae.raw_encode(x.flatten(0, 1))
    ae.fit_normalisation(raw)
    z = ae.encode(x).detach()
    torch.testing.assert_close(z.mean(dim=(0, 1, 3, 4)), torch.zeros(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.std(dim=(0, 1, 3, 4)), torch.ones(4), atol=1e-4, rtol=0)
    # decode undoes the normalisation: the same frames as decoding the raw latents directly
    torch.testing.assert_close(ae.decode(z), ae.raw_decode(raw).clamp(-1, 1).view_as(x), atol=1e-5, rtol=0)


def test_records_round_trip_weights_statistics_and_kind(tmp_path):
    ae = tiny_autoencoder(seed=3)
    ae.fit_normalisation(torch.randn(10, 4, 4, 4) * 3 + 1)
    back = space_from_record(space_record(ae))
    x = torch.rand(1, 2, 3, 16, 16) * 2 - 1
    torch.testing.assert_close(back.encode(x), ae.encode(x))
    pixel = space_from_record(space_record(PixelSpace(3)))
    assert isinstance(pixel, PixelSpace) and torch.equal(pixel.decode(x), x)
    atomic_save(space_record(ae), tmp_path / "ae.pt")
    torch.testing.assert_close(
        read_autoencoder(tmp_path / "ae.pt").decode(back.encode(x)), ae.decode(ae.encode(x))
    )


def test_bad_settings_and_files_fail_with_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="not divisible by the autoencoder's factor 8"):
        AutoencoderConfig(resolution=20)
    with pytest.raises(ValueError, match="multiples of 8"):
        AutoencoderConfig(widths=(12, 16))
    with pytest.raises(FileNotFoundError, match="dvc repro autoencoder"):
        read_autoencoder(tmp_path / "missing.pt")
    torch.save({"ema": {}}, tmp_path / "model.pt")
    with pytest.raises(ValueError, match="not an autoencoder file"):
        read_autoencoder(tmp_path / "model.pt")
    with pytest.raises(ValueError, match="unknown space kind"):
        space_from_record({"kind": "jpeg"})
    with pytest.raises(FileNotFoundError, match="AutoencoderKL folder"):
        PretrainedVAE(tmp_path)


def test_a_local_diffusers_vae_plugs_in_by_path(tmp_path):
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    vae = diffusers.AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(8, 8, 16),
        latent_channels=4,
        norm_num_groups=4,
        layers_per_block=1,
        sample_size=16,
    )
    vae.save_pretrained(tmp_path / "vae")
    space = read_autoencoder(tmp_path / "vae")  # a folder: the pretrained VAE
    assert isinstance(space, PretrainedVAE) and (space.factor, space.latent_channels) == (4, 4)
    x = torch.rand(2, 3, 3, 16, 16) * 2 - 1
    z = space.encode(x)
    assert z.shape == (2, 3, 4, 4, 4)
    expected = vae.encode(x[0]).latent_dist.mean * vae.config.scaling_factor
    torch.testing.assert_close(z[0], expected)
    assert space.decode(z).shape == x.shape
    back = space_from_record(space_record(space))  # a model file records the folder
    torch.testing.assert_close(back.encode(x), z)


def test_psnr_of_known_errors():
    x = torch.zeros(2, 3, 4, 4)
    assert psnr(x, x) == math.inf
    # an error of 0.2 in [-1, 1] is 0.1 on the [0, 1] scale: 10 log10(1 / 0.01) = 20 dB
    assert psnr(x, x + 0.2) == pytest.approx(20.0)


def test_edges_mark_both_sides_of_a_colour_change_and_weigh_the_loss():
    from streamdit.autoencoder_training import edge_map, reconstruction_loss

    x = torch.full((1, 3, 6, 6), -1.0)
    assert edge_map(x).sum() == 0
    x[:, 0, 2:4, 2:4] = 1.0  # a red 2x2 square
    edges = edge_map(x)[0, 0]
    assert edges.shape == (6, 6) and edges[2:4, 2:4].all() and edges[1, 2] and edges[2, 1]
    assert edges.sum() == 12  # the 4 pixels inside and the 8 that share a side with them
    assert edges[0, 0] == 0 and edges[1, 1] == 0  # diagonal neighbours do not count
    decoded = x.clone()
    decoded[:, :, 0, 0] += 0.5  # an error on a flat pixel ...
    flat = reconstruction_loss(decoded, x, 4.0)
    decoded = x.clone()
    decoded[:, :, 2, 2] += 0.5  # ... weighs less than the same error on an edge pixel
    assert reconstruction_loss(decoded, x, 4.0).item() == pytest.approx(5 * flat.item())
    assert reconstruction_loss(decoded, x, 0.0) == pytest.approx((decoded - x).pow(2).mean().item())


def ae_config(world, **autoencoder):
    from conftest import tiny_overrides

    overrides = tiny_overrides(world)
    overrides["model"] = {"preset": "tiny", "resolution": 4, "channels": 4, "dim": 32, "depth": 1, "heads": 2}
    overrides["autoencoder"] = {"latent_channels": 4, "widths": [8, 16], "steps": 4, "batch_size": 4,
                                "warmup_steps": 1, "checkpoint_every": 2, **autoencoder}  # fmt: skip
    return load_config("params.yaml", "smoke", overrides)


def test_training_resumes_where_it_stopped(tiny_world, tmp_path):
    cfg = ae_config(tiny_world)
    assert train_world_autoencoder(cfg, work_root=tmp_path / "a", stop_after=2) is None
    resumed, run = train_world_autoencoder(cfg, work_root=tmp_path / "a")
    whole, whole_run = train_world_autoencoder(cfg, work_root=tmp_path / "b")
    assert run.step == whole_run.step == 4
    assert run.history == pytest.approx(whole_run.history)
    for a, b in zip(resumed.state_dict().values(), whole.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)


def test_training_lowers_the_reconstruction_error(tiny_world):
    cfg = ae_config(tiny_world, steps=60, batch_size=8, lr=0.003)
    model, run = train_world_autoencoder(cfg, work_root=None)
    assert np.mean(run.history[-5:]) < 0.5 * np.mean(run.history[:5])
    clips, _ = load_split(tiny_world, "test")
    assert reconstruct(model, clips, "cpu").shape == clips.shape


def test_latent_clips_serve_cached_latents_with_their_captions(tiny_world, tmp_path):
    cfg = ae_config(tiny_world)
    clips, _ = load_split(tiny_world, "train")
    latents = encode_split(tiny_autoencoder(), clips, "cpu")
    assert latents.shape == (12, 8, 4, 4, 4) and latents.dtype == np.float32
    np.save(tmp_path / "train.npy", latents)
    data = training_clips(cfg, tmp_path, dataclasses.replace(cfg.model, frames=4), generator_seed=0)
    assert isinstance(data, LatentClips) and data.frame_shape == (4, 4, 4)
    item = data[5]
    assert item["frames"].shape == (4, 4, 4, 4) and item["caption"] == data.captions[5]
    starts = [s for s in range(5) if np.array_equal(latents[5, s : s + 4], item["frames"].numpy())]
    assert starts, "an item is a run of consecutive cached frames"
    np.save(tmp_path / "train.npy", latents[:, :, :2])
    with pytest.raises(ValueError, match="model expects"):
        training_clips(cfg, tmp_path, dataclasses.replace(cfg.model, frames=4), generator_seed=0)
    np.save(tmp_path / "train.npy", latents[:5])
    with pytest.raises(ValueError, match="rerun the autoencoder stage"):
        training_clips(cfg, tmp_path, dataclasses.replace(cfg.model, frames=4), generator_seed=0)


def test_config_insists_that_the_model_sees_the_spaces_frames(tiny_world):
    from conftest import tiny_overrides

    overrides = tiny_overrides(tiny_world)
    overrides["autoencoder"] = {"latent_channels": 4, "widths": [8, 16]}
    overrides["model"] = {"preset": "tiny", "resolution": 8, "dim": 32, "depth": 1, "heads": 2}
    with pytest.raises(
        ValueError, match=r"model.space='latent'.*must be 4 and 4 \(the autoencoder's latents"
    ):
        load_config("params.yaml", "smoke", overrides)
    overrides["model"] = {"preset": "tiny_pixel", "resolution": 8, "dim": 32, "depth": 1, "heads": 2}
    with pytest.raises(ValueError, match=r"model.space='pixel'.*must be 16 and 3"):
        load_config("params.yaml", "smoke", overrides)


def test_the_stage_caches_what_its_autoencoder_encodes(tiny_world, tmp_path):
    from streamdit.autoencoder_training import autoencoder_stage
    from streamdit.checkpoint import save_evaluator
    from streamdit.data import clip_batch, file_digest
    from streamdit.evaluators import VideoEncoder, VideoEncoderConfig
    from streamdit.train import train

    cfg = ae_config(tiny_world)
    judge = VideoEncoderConfig(frames=8, resolution=16)
    save_evaluator(VideoEncoder(judge), judge, tmp_path / "evaluators" / "video_encoder.pt")
    out, latents_dir = tmp_path / "autoencoder.pt", tmp_path / "latents"
    metrics = autoencoder_stage(cfg, out, latents_dir, tmp_path / "evaluators", tmp_path / "report",
                                work_root=tmp_path / "runs")  # fmt: skip
    latents = np.load(latents_dir / "train.npy")
    clips, _ = load_split(tiny_world, "train")
    space = read_autoencoder(out)
    with torch.no_grad():
        torch.testing.assert_close(
            torch.from_numpy(latents[:2]), space.encode(clip_batch(clips, [0, 1])), atol=1e-5, rtol=0
        )
    assert (latents_dir / "autoencoder.sha1").read_text().strip() == file_digest(out)
    assert metrics["latent_shape"] == [4, 4, 4] and metrics["test"]["clips"] == 2
    assert (tmp_path / "report" / "test_reconstruction.png").is_file()
    # latents of another autoencoder: training refuses them
    (latents_dir / "autoencoder.sha1").write_text("0" * 40)
    with pytest.raises(ValueError, match="encoded by another autoencoder"):
        train(cfg, tmp_path / "m.pt", autoencoder_path=out, latents_dir=latents_dir, work_root=tmp_path / "t",
              progress=False)  # fmt: skip


def test_a_latent_model_without_its_space_fails_instead_of_emitting_latents():
    from test_sampling import text

    from streamdit.model import ModelConfig, build_model
    from streamdit.sampling import StreamSampler
    from streamdit.schedule import Scheme
    from streamdit.streaming import Streamer

    cfg = ModelConfig(space="latent", frames=8, resolution=4, channels=4, patch=1, dim=32, depth=1, heads=2,
                      text_dim=4, window=(4, 4, 4))  # fmt: skip
    model = build_model(cfg)
    with pytest.raises(ValueError, match="through its space"):
        StreamSampler(model, Scheme(0, 2, 4, 8), text())
    with pytest.raises(ValueError, match="through its space"):
        Streamer(model, None, Scheme(0, 2, 4, 8), 1.0, 1.0)
    sampler = StreamSampler(model, Scheme(0, 2, 4, 8), text(), space=tiny_autoencoder())
    assert sampler.take(4).shape == (1, 4, 3, 16, 16)
