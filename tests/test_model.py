import dataclasses

import pytest
import torch

from streamdit.model import (
    PRESETS,
    X_MIN_LEVEL,
    ModelConfig,
    build_model,
    count_parameters,
    sincos_pos_embed_3d,
)

TINY = dataclasses.replace(
    PRESETS["tiny_pixel"], frames=4, resolution=16, patch=4, dim=64, depth=2, heads=2, text_dim=24
)


def _inputs(cfg, batch=2, text_len=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, cfg.frames, cfg.channels, cfg.resolution, cfg.resolution, generator=g)
    levels = torch.rand(batch, cfg.frames, generator=g)
    tokens = torch.randn(batch, text_len, cfg.text_dim, generator=g)
    mask = torch.ones(batch, text_len, dtype=torch.bool)
    pooled = torch.randn(batch, cfg.text_dim, generator=g)
    return x, levels, tokens, mask, pooled


def _trained_like(cfg, seed=0, std=0.05):
    """A model whose zero-initialised layers get small random values, so every path reaches the output."""
    torch.manual_seed(seed)
    model = build_model(cfg)
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.normal_(std=std)
    return model.eval()


def test_output_shape_and_zero_init():
    model = build_model(TINY)
    x, *cond = _inputs(TINY)
    out = model(x, *cond)
    assert out.shape == x.shape
    assert torch.equal(out, torch.zeros_like(x))


@pytest.mark.parametrize("per_frame_time", [True, False])
def test_x_prediction_turns_the_networks_x0_into_a_velocity(per_frame_time):
    """prediction="x": the same network's output is read as x0 and returned as v = (x_t - x0) / t, with t
    each frame's true level floored at X_MIN_LEVEL (references at t = 0 included)."""
    v_cfg = dataclasses.replace(TINY, per_frame_time=per_frame_time)
    x_cfg = dataclasses.replace(v_cfg, prediction="x")
    v_model = _trained_like(v_cfg)
    x_model = build_model(x_cfg).eval()
    x_model.load_state_dict(v_model.state_dict())
    x, levels, *text = _inputs(TINY)
    levels[:, 0] = 0.0  # a reference frame
    x0 = v_model(x, levels, *text)  # what the network outputs, whatever it is read as
    t = levels.clamp_min(X_MIN_LEVEL)[:, :, None, None, None]
    torch.testing.assert_close(x_model(x, levels, *text), (x - x0) / t)
    # untrained, an x-predicting model estimates x0 = 0, so its velocity points from 0 to x_t
    fresh = build_model(x_cfg)
    torch.testing.assert_close(fresh(x, levels, *text), x / t)


def test_level_of_a_frame_changes_that_frame():
    model = _trained_like(TINY)
    x, levels, *text = _inputs(TINY)
    base = model(x, levels, *text)
    bumped = levels.clone()
    bumped[:, 2] = 1 - bumped[:, 2]
    out = model(x, bumped, *text)
    assert (out[:, 2] - base[:, 2]).abs().max() > 1e-3


def test_shared_time_depends_only_on_mean_level():
    cfg = dataclasses.replace(TINY, per_frame_time=False)
    model = _trained_like(cfg)
    x, _, *text = _inputs(cfg)
    spread = torch.tensor([[0.0, 0.25, 0.75, 1.0]] * 2)
    flat = torch.full((2, 4), 0.5)
    torch.testing.assert_close(model(x, spread, *text), model(x, flat, *text))
    assert (model(x, flat * 0.5, *text) - model(x, flat, *text)).abs().max() > 1e-3


def test_text_changes_output():
    model = _trained_like(TINY)
    x, levels, tokens, mask, pooled = _inputs(TINY)
    base = model(x, levels, tokens, mask, pooled)
    assert (model(x, levels, tokens + 1, mask, pooled) - base).abs().max() > 1e-3
    assert (model(x, levels, tokens, mask, pooled + 1) - base).abs().max() > 1e-3
    null = model.null_text(2)
    assert [t.shape for t in null] == [(2, 1, TINY.text_dim), (2, 1), (2, TINY.text_dim)]
    assert null[1].all()
    assert (model(x, levels, *null) - base).abs().max() > 1e-3


def test_masked_text_tokens_are_ignored():
    model = _trained_like(TINY)
    x, levels, tokens, mask, pooled = _inputs(TINY)
    padded_tokens = torch.cat([tokens, 100 * torch.randn(2, 3, TINY.text_dim)], dim=1)
    padded_mask = torch.cat([mask, torch.zeros(2, 3, dtype=torch.bool)], dim=1)
    torch.testing.assert_close(
        model(x, levels, padded_tokens, padded_mask, pooled), model(x, levels, tokens, mask, pooled)
    )


def test_full_attention_equals_window_covering_grid():
    cfg = dataclasses.replace(TINY, window=(TINY.frames, 4, 4))  # grid: 4 frames of 4x4 patches
    windowed = _trained_like(cfg)
    full = build_model(dataclasses.replace(cfg, full_attention=True))
    full.load_state_dict(windowed.state_dict())
    inputs = _inputs(cfg)
    torch.testing.assert_close(full(*inputs), windowed(*inputs), atol=1e-5, rtol=1e-5)
    local = build_model(dataclasses.replace(cfg, window=(2, 2, 2)))
    local.load_state_dict(windowed.state_dict())
    assert (local(*inputs) - windowed(*inputs)).abs().max() > 1e-3


def test_window_attention_and_modulation_are_local_in_one_block():
    # One unshifted block with windows of 2 frames: frames 2, 3 can see neither the pixels nor the level of
    # frame 0; frame 1 shares its window and sees both.
    cfg = dataclasses.replace(TINY, depth=1, window=(2, 4, 4))
    model = _trained_like(cfg)
    x, levels, *text = _inputs(cfg)
    base = model(x, levels, *text)
    x2, levels2 = x.clone(), levels.clone()
    x2[:, 0] += 1
    levels2[:, 0] = 1 - levels2[:, 0]
    for out in (model(x2, levels, *text), model(x, levels2, *text)):
        diff = (out - base).abs().amax(dim=(0, 2, 3, 4))
        assert diff[0] > 1e-3 and diff[1] > 1e-5  # frame 1 only through attention to frame 0
        assert torch.equal(diff[2:], torch.zeros(2))


def test_fewer_frames_than_buffer():
    model = _trained_like(TINY)
    x, levels, *text = _inputs(TINY)
    assert model(x[:, :3], levels[:, :3], *text).shape == x[:, :3].shape
    with pytest.raises(ValueError, match="f <= 4"):
        model(torch.cat([x, x], dim=1), torch.cat([levels, levels], dim=1), *text)


def test_pos_embed_distinguishes_every_token():
    table = sincos_pos_embed_3d(64, 4, 3, 3).reshape(36, 64)
    assert table.shape == (36, 64)
    distances = torch.cdist(table, table) + torch.eye(36)
    assert distances.min() > 0.1


def test_backward_gives_finite_grads_everywhere():
    model = build_model(TINY)
    x, levels, *text = _inputs(TINY)
    loss = model(x, levels, *model.null_text(2)).square().mean() + model(x, levels, *text).sum()
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert model.final_layer.linear.weight.grad.abs().max() > 0  # adaLN-Zero still learns


def test_paper_preset_size_on_meta_device():
    with torch.device("meta"):
        model = build_model(PRESETS["paper_4b"])
    assert 3.5e9 <= count_parameters(model) <= 4.5e9


@pytest.mark.parametrize(
    "change, message",
    [
        ({"resolution": 30}, "resolution=30"),
        ({"heads": 3}, "heads=3"),
        ({"dim": 120, "heads": 4}, "dim=120"),
        ({"depth": 0}, "depth=0"),
        ({"window": (4, 0, 4)}, "window"),
        ({"mlp_ratio": 0.0}, "mlp_ratio"),
        ({"prediction": "eps"}, "prediction='eps'"),
    ],
)
def test_config_validation(change, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(ModelConfig(), **change)


def test_presets_are_valid_configs():
    assert set(PRESETS) >= {"tiny", "small", "paper_4b"}
    # tiny: 8x8x8 latents at patch 1, windows spanning whole frames of 8x8 tokens; tiny_pixel: the same
    # tokens from 64x64 RGB frames in 8x8 patches, otherwise the same DiT.
    assert PRESETS["tiny"] == ModelConfig(space="latent", resolution=8, channels=8, patch=1, window=(4, 8, 8))
    pixel = PRESETS["tiny_pixel"]
    assert (pixel.space, pixel.resolution // pixel.patch, pixel.channels) == ("pixel", 8, 3)
    assert dataclasses.replace(pixel, space="latent", resolution=8, channels=8, patch=1) == PRESETS["tiny"]
