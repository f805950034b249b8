import numpy as np
import pytest
import torch

from streamdit.data import ObjectSpec, SceneSpec, WorldConfig, generate_dataset
from streamdit.evaluators import (
    ATTRIBUTES,
    ClipConfig,
    FeatureExtractor,
    VideoEncoder,
    VideoEncoderConfig,
    clip_batch,
    load_clip,
    load_i3d_torchscript,
    load_pretrained_clip,
    load_split,
    load_video_encoder,
    save_evaluator,
    scene_labels,
    train_clip,
    train_video_encoder,
    world_feature_extractor,
)
from streamdit.video import from_uint8

TINY_CLIP = ClipConfig(embed_dim=16, vision_width=32, vision_layers=1, text_width=32, text_layers=1, heads=2)
TINY_ENCODER = VideoEncoderConfig(widths=(8, 16, 16), feature_dim=12)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    cfg = WorldConfig(resolution=32, frames_per_clip=16, n_train=24, n_val=12, n_test=10, n_heldout=2)
    generate_dataset(cfg, root)
    return root


def test_scene_labels_index_the_vocabularies():
    a = ObjectSpec("cross", "cyan", "large", "orbit", 0.7, 0.5, 0.05)
    b = ObjectSpec("circle", "red", "small", "left", 0.1, 0.1, 0.05)
    labels = scene_labels([SceneSpec((a,), "navy"), SceneSpec((b, a), "black")])
    assert labels["shape"].tolist() == [4, 0]
    assert labels["colour"].tolist() == [5, 0]
    assert labels["size"].tolist() == [1, 0]
    assert labels["motion"].tolist() == [5, 0]
    assert labels["background"].tolist() == [2, 0]
    assert labels["objects"].tolist() == [0, 1]
    assert set(labels) == set(ATTRIBUTES)


def test_clip_batch_keeps_the_requested_order(world):
    clips, _ = load_split(world, "val")
    video = clip_batch(clips, [3, 1])
    assert video.shape == (2, 16, 3, 32, 32)
    assert torch.equal(video[0], from_uint8(np.array(clips[3])))
    assert torch.equal(video[1], from_uint8(np.array(clips[1])))


def test_video_encoder_features_and_heads_shapes():
    model = VideoEncoder(TINY_ENCODER)
    x = torch.rand(3, 16, 3, 32, 32) * 2 - 1
    assert model.features(x).shape == (3, 12)
    logits = model(x)
    assert {name: out.shape[1] for name, out in logits.items()} == {k: len(v) for k, v in ATTRIBUTES.items()}
    with pytest.raises(ValueError, match="divisible"):
        VideoEncoderConfig(frames=12)


def test_train_video_encoder_reports_val_accuracy_and_round_trips(world, tmp_path):
    model, metrics = train_video_encoder(world, steps=3, batch_size=4, lr=1e-3, seed=0, cfg=TINY_ENCODER)
    assert metrics["steps"] == 3 and np.isfinite(metrics["loss_last"])
    assert set(metrics["val_accuracy"]) == set(ATTRIBUTES)
    # accuracies are fractions of the 12 val clips
    assert all(round(acc * 12) == pytest.approx(acc * 12) for acc in metrics["val_accuracy"].values())
    assert all(1 / 12 <= m <= 1 for m in metrics["val_majority"].values())
    again, _ = train_video_encoder(world, steps=3, batch_size=4, lr=1e-3, seed=0, cfg=TINY_ENCODER)
    x = clip_batch(load_split(world, "test")[0], [0, 1, 2])
    with torch.no_grad():
        assert torch.equal(model.features(x), again.features(x))  # seeded: same weights

    path = save_evaluator(model, model.cfg, tmp_path / "encoder.pt")
    loaded = load_video_encoder(path)
    with torch.no_grad():
        assert torch.equal(loaded.features(x), model.features(x))
    feats = world_feature_extractor(loaded)(x)
    assert feats.shape == (3, 12) and feats.dtype == torch.float64


def test_feature_extractor_batches_give_the_same_features():
    weight = torch.randn(16 * 3 * 4 * 4, 5)
    extractor = FeatureExtractor("test", lambda x: x.flatten(1) @ weight, batch_size=2)
    videos = torch.randn(5, 16, 3, 4, 4)
    torch.testing.assert_close(extractor(videos), (videos.flatten(1) @ weight).double(), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="n, f, c, h, w"):
        extractor(videos[0])


def test_missing_or_foreign_checkpoints_fail_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="i3d_torchscript"):
        load_i3d_torchscript(tmp_path / "i3d_torchscript.pt")
    with pytest.raises(FileNotFoundError, match="CLIP checkpoint"):
        load_pretrained_clip("ViT-B-32", tmp_path / "open_clip_model.safetensors")
    with pytest.raises(FileNotFoundError, match="train it first"):
        load_video_encoder(tmp_path / "encoder.pt")
    path = save_evaluator(VideoEncoder(TINY_ENCODER), TINY_ENCODER, tmp_path / "encoder.pt")
    with pytest.raises(ValueError, match="not a ClipConfig"):
        load_clip(path)


def test_train_clip_scores_and_retrieval_against_chance(world, tmp_path):
    scorer, metrics = train_clip(world, steps=2, batch_size=8, lr=1e-3, seed=0, cfg=TINY_CLIP)
    retrieval = metrics["test_retrieval"]
    assert retrieval["clips"] == 10
    assert retrieval["chance"] == pytest.approx(1 / retrieval["captions"])
    assert 0.0 <= retrieval["top1"] <= 1.0
    frames = torch.rand(4, 3, 32, 32) * 2 - 1
    captions = ["a red circle", "a red circle", "a blue square moving up", "a red circle"]
    cached = len(scorer._text_cache)
    scores = scorer.score(frames, captions)
    assert scores.shape == (4,) and bool(((scores >= 0) & (scores <= 100)).all())
    assert len(scorer._text_cache) == cached + 2  # each distinct caption is encoded once

    loaded = load_clip(save_evaluator(scorer.model, scorer.cfg, tmp_path / "clip.pt"))
    torch.testing.assert_close(loaded.score(frames, captions), scores)
    with pytest.raises(ValueError, match="one caption per frame"):
        scorer.score(frames, captions[:2])
