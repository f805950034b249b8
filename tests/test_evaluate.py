import csv
import math

import numpy as np
import pytest
import torch
from torch import nn

from streamdit.clip import ClipConfig, build_clip, own_clip_scorer
from streamdit.config import EvalConfig, clip_offsets
from streamdit.evaluate import evaluate_model, render_videos, switch_responsiveness
from streamdit.evaluators import VideoEncoder, VideoEncoderConfig, world_feature_extractor
from streamdit.metrics import frames_to_reach
from streamdit.model import ModelConfig, build_model
from streamdit.quality import MEASURES, Judges, frame_scores
from streamdit.schedule import Scheme
from streamdit.streaming import Streamer
from streamdit.tables import write_report, write_teacher_vs_student
from streamdit.text import TextEmbedding
from streamdit.world import ObjectSpec, SceneSpec, canonical_caption


def test_clip_offsets():
    assert clip_offsets(64, 16, 16) == [0, 16, 32, 48]
    assert clip_offsets(40, 16, 16) == [0, 16]
    assert clip_offsets(16, 16, 5) == [0]
    with pytest.raises(ValueError, match="long_frames >= clip_frames"):
        clip_offsets(8, 16, 4)


def test_eval_config_validation():
    assert EvalConfig(long_frames=48, clip_every=16).offsets == [0, 16, 32]
    with pytest.raises(ValueError, match="switch_pairs"):
        EvalConfig(prompts=4, switch_pairs=4)
    with pytest.raises(ValueError, match="long_frames"):
        EvalConfig(long_frames=8)
    with pytest.raises(ValueError, match="scheme"):
        EvalConfig(schemes=[[0, 2, 4]])


def test_frames_to_reach_counts_the_first_hit_and_censors_misses():
    scores = torch.tensor([[1.0, 5.0, 9.0, 9.5], [8.0, 1.0, 1.0, 1.0], [1.0, 2.0, 3.0, 4.0]])
    frames, reached = frames_to_reach(scores, torch.tensor([9.0, 7.0, 10.0]))
    assert frames.tolist() == [2, 0, 4] and reached.tolist() == [True, True, False]


def test_switch_responsiveness_summary():
    scores_b = torch.tensor([[0.0, 10.0, 20.0], [0.0, 0.0, 5.0]])
    result = switch_responsiveness(scores_b, steady_b=torch.tensor([20.0, 40.0]), threshold=0.9)
    # targets 18 and 36: row 0 reaches at frame 2, row 1 never (counts as 3)
    assert result["frames_mean"] == pytest.approx(2.5)
    assert result["reached_fraction"] == pytest.approx(0.5)
    assert result["relative_curve"] == pytest.approx([0.0, 0.25, 0.5625])


class ConstantTargetModel(nn.Module):
    """Exact flow-matching velocity towards a clean frame whose every pixel is the caption's pooled[0]."""

    def __init__(self, frames=8):
        super().__init__()
        self.cfg = ModelConfig(frames=frames, resolution=4, channels=1, patch=2, dim=16, depth=1, heads=1)
        self.weight = nn.Parameter(torch.zeros(()))

    def forward(self, x, levels, tokens, mask, pooled):
        target = pooled[:, 0].view(-1, 1, 1, 1, 1)
        return (x - target) / levels.clamp_min(1e-6)[..., None, None, None]

    def null_text(self, batch):
        return torch.zeros(batch, 1, 4), torch.ones(batch, 1, dtype=torch.bool), torch.zeros(batch, 4)


def constant_text(values):
    n = len(values)
    pooled = torch.tensor(values, dtype=torch.float32)[:, None].expand(n, 4).contiguous()
    return TextEmbedding(torch.ones(n, 2, 4), torch.ones(n, 2, dtype=torch.bool), pooled)


def test_switch_streams_follow_the_new_prompt_from_the_next_chunk():
    scheme = Scheme(K=0, N=2, c=4, s=2)
    frames, switch_at = Streamer(ConstantTargetModel(), None, scheme, 1.0, 1.0).switched(
        constant_text([0.5, -0.5]), constant_text([-0.25, 0.75]), switch_frame=6, after=8, seed=0
    )
    assert switch_at == 8  # 6 frames rounded up to whole chunks of 4
    assert frames.shape == (2, 16, 1, 4, 4)
    # an exact velocity lands every frame on the target of the text in effect at its last step
    torch.testing.assert_close(
        frames[:, :8], torch.tensor([0.5, -0.5]).view(2, 1, 1, 1, 1).expand(2, 8, 1, 4, 4)
    )
    torch.testing.assert_close(
        frames[:, 8:], torch.tensor([-0.25, 0.75]).view(2, 1, 1, 1, 1).expand(2, 8, 1, 4, 4)
    )


def fake_text_encoder(dim):
    def encode(captions):
        g = torch.Generator().manual_seed(len(captions))
        tokens = torch.randn(len(captions), 3, dim, generator=g)
        return TextEmbedding(tokens, torch.ones(len(captions), 3, dtype=torch.bool), tokens.mean(1))

    return encode


def scenes(count, background):
    colours = ("red", "green", "blue", "white", "cyan", "magenta")
    return [
        SceneSpec((ObjectSpec("circle", colours[i % 6], "small", "right", 0.1 * i, 0.5, 0.04),), background)
        for i in range(count)
    ]


def tiny_evaluation():
    """evaluate_model on a tiny untrained StreamDiT and evaluators: (metrics, ecfg, scorer, scenes)."""
    torch.manual_seed(0)
    tiny = ModelConfig(frames=8, resolution=16, dim=16, depth=1, heads=1, text_dim=8, window=(4, 4, 4))
    model = build_model(tiny).eval()
    ecfg = EvalConfig(
        prompts=3,
        long_frames=20,
        clip_every=4,
        batch_size=2,
        schemes=[[0, 4, 2, 2], [0, 8, 1, 1]],
        switch_pairs=2,
        switch_frame=4,
        switch_after=4,
        latency_frames=4,
        latency_warmup_frames=0,
        latency_repeats=1,
        drift_prompts=2,
        drift_frames=32,
        heldout_prompts=2,
    )
    encoder = VideoEncoder(VideoEncoderConfig(resolution=16, widths=(8, 8, 8), feature_dim=4))
    features = world_feature_extractor(encoder)
    clip_cfg = ClipConfig(
        image_size=16, embed_dim=8, vision_width=16, vision_layers=1, text_width=16, text_layers=1, heads=2
    )
    scorer = own_clip_scorer(build_clip(clip_cfg), clip_cfg)
    test_scenes = scenes(3, "black")
    metrics, arrays = evaluate_model(
        model,
        fake_text_encoder(8),
        {"test": test_scenes, "floor": scenes(4, "grey"), "heldout": scenes(2, "navy")},
        ecfg,
        Judges(encoder, features, scorer, "tiny untrained"),
        shift=1.0,
        device="cpu",
    )
    return metrics, ecfg, scorer, test_scenes, arrays


def test_evaluate_model_on_a_tiny_untrained_streamdit(tmp_path):
    metrics, ecfg, scorer, test_scenes, arrays = tiny_evaluation()
    assert metrics["features"] == "world-classifier" and metrics["prompts"] == 3
    assert [w["offset"] for w in metrics["real"]["clips"]] == [0, 4]
    assert set(metrics["schemes"]) == {"K0-N4-c2-s2", "K0-N8-c1-s1"}
    real = render_videos(test_scenes, 16, 16)
    expected_real = frame_scores(scorer, real, [canonical_caption(s) for s in test_scenes]).mean()
    assert metrics["real"]["clip_score"] == pytest.approx(float(expected_real), rel=1e-5)
    for scheme in ecfg.parsed_schemes:
        m = metrics["schemes"][str(scheme)]
        # the reported FVD is the first window's (the generated clips), as the module docstring says
        assert m["finite"] and math.isfinite(m["fvd"]) and m["fvd"] == m["clips"][0]["fvd"]
        assert [w["offset"] for w in m["clips"]] == [0, 4]
        low, high = m["long_stream"]["fvd_ci"]
        # the bias-corrected interval brackets the pooled estimate (measured: 1.4e-4 <= 2.5e-4 <= 4.1e-4
        # and 0 <= 4.4e-5 <= 1.7e-4 for the two schemes)
        assert low <= m["long_stream"]["fvd"] <= high and m["long_stream"]["clips"] == 2
        real_clip = metrics["real"]["clip_score"]
        assert m["clip_score_ratio"] == (
            pytest.approx(m["clip_score"] / real_clip) if real_clip > 0 else None
        )
        assert all(name in m["long_stream"] for name in MEASURES) and math.isfinite(m["kid"])
        assert arrays[f"{scheme}/caption_mean"].shape == (3, 2) and arrays[f"{scheme}/features"].shape == (
            3,
            2,
            4,
        )
        assert m["switch"]["pairs"] == 2 and len(m["switch"]["relative_curve"]) == 4
        assert m["switch"]["switch_at"] == 4  # both chunk sizes (2 and 1) divide the switch frame
        # s / c = 1 call per frame in the steady stream, and guidance (cfg 3) runs 2 passes per call
        assert m["latency"]["calls_per_frame"] == pytest.approx(1.0)
        assert m["latency"]["nfe_per_frame"] == pytest.approx(2.0)

    assert arrays["real/caption_mean"].shape == (3, 2) and list(arrays["captions"]) == [
        canonical_caption(s) for s in test_scenes
    ]
    # drift: 2 prompts, 32 frames in windows of 16, generated and real; the held-out pairs: 2 prompts
    drift = metrics["drift"]
    assert [r["offset"] for r in drift["generated"]] == [0, 16] and len(drift["real"]) == 2
    assert set(drift["change"]) == {"caption_mean", "caption_shape", "subject_consistency"}
    # and its per-prompt windows go with the arrays, to pair one model's drift with another's
    assert {arrays[f"drift/{name}"].shape for name in drift["change"]} == {(2, 2)}
    assert metrics["heldout"]["prompts"] == 2 and "caption_shape" in metrics["heldout"]["generated"]

    md, table = write_report(metrics, tmp_path)
    rows = list(csv.DictReader(open(table)))
    assert [r["method"] for r in rows] == [
        "real data",
        "StreamDiT K0-N4-c2-s2",
        "StreamDiT K0-N8-c1-s1",
        "StreamDiT, held-out pairs",
        "real data, held-out pairs",
    ]
    assert float(rows[1]["fvd"]) == pytest.approx(metrics["schemes"]["K0-N4-c2-s2"]["long_stream"]["fvd"])
    text = md.read_text()
    assert "world-classifier" in text and "tiny untrained" in text and "## Caption accuracy" in text


def fake_eval_metrics(fvd, fps, nfe, cfg_scale, scheme, caption=0.5):
    """A minimal ``evaluate_model`` dict with one scheme, for the report writers."""
    window = {"offset": 0, "fvd": fvd, "clip_score": 20.0}
    pooled = {"fvd": fvd, "caption_mean": caption, "clip_score": 20.0}
    latency = {
        "ttff_s": {"median": 0.5},
        "frame_latency_s": {"median": 1 / fps, "p95": 1.2 / fps},
        "frames_per_second": fps,
        "nfe_per_frame": nfe,
    }
    scheme_metrics = {
        "fvd": fvd,
        "clip_score": 20.0,
        "clip_score_ratio": 0.8,
        "clips": [window],
        "long_stream": pooled,
        "switch": {"frames_mean": 3.0, "reached_fraction": 1.0},
        "latency": latency,
    }
    return {
        "features": "world-video-encoder",
        "clip_model": "world-clip",
        "cfg_scale": cfg_scale,
        "real": {
            "fvd": 0.1,
            "long_stream": {"fvd": 0.1, "caption_mean": 0.9},
            "clips": [{"offset": 0, "fvd": 0.1}],
        },
        "schemes": {scheme: scheme_metrics},
    }


def test_teacher_vs_student_report_states_the_gaps(tmp_path):
    teacher = fake_eval_metrics(fvd=2.0, fps=10.0, nfe=4.0, cfg_scale=3.0, scheme="K0-N2-c4-s8")
    student = fake_eval_metrics(
        fvd=2.5, fps=80.0, nfe=0.25, cfg_scale=1.0, scheme="K0-N2-c4-s1", caption=0.47
    )
    distill = {"steps": 200, "teacher_scheme": "K0-N2-c4-s8", "student_scheme": "K0-N2-c4-s1"}
    md, table = write_teacher_vs_student(teacher, student, distill, tmp_path)
    rows = list(csv.DictReader(open(table)))
    assert [r["method"] for r in rows] == ["real data", "teacher K0-N2-c4-s8", "student K0-N2-c4-s1"]
    text = md.read_text()
    assert "falls 16.0x" in text and "rise 8.0x" in text and "+25.0%" in text and "-3.0 points" in text


def test_same_seeds_give_the_same_metrics():
    def quality(metrics):
        """Everything but wall-clock latency."""
        return {
            "real": metrics["real"],
            "schemes": {
                name: {k: v for k, v in m.items() if k != "latency"} for name, m in metrics["schemes"].items()
            },
        }

    first, second = tiny_evaluation(), tiny_evaluation()
    assert quality(first[0]) == quality(second[0])
    assert all(np.array_equal(first[4][k], second[4][k]) for k in first[4])
