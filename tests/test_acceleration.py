"""Fast paths (bf16 autocast, torch.compile) against fp32 eager, and their settings' validation."""

import dataclasses

import pytest
import torch
from test_model import _inputs, _trained_like

from streamdit.acceleration import autocast, compile_model
from streamdit.autoencoder import AutoencoderConfig, WorldAutoencoder
from streamdit.config import TrainConfig
from streamdit.model import TINY
from streamdit.params import parse_overrides
from streamdit.sampling import StreamSampler
from streamdit.schedule import Scheme
from streamdit.text import TextEmbedding

CFG = dataclasses.replace(TINY, resolution=16, dim=64, depth=2, heads=2)


def _relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    return float((out.float() - ref.float()).norm() / ref.float().norm())


def test_bf16_autocast_forward_is_close_to_fp32():
    model = _trained_like(CFG, std=0.2)
    inputs = _inputs(CFG)
    with torch.no_grad():
        ref = model(*inputs)
        with autocast("cpu", "bf16"):
            out = model(*inputs)
    assert out.dtype == torch.bfloat16  # the fast path really ran
    assert 0 < _relative_error(out, ref) < 3e-2


def test_bf16_stream_is_close_to_fp32_stream():
    """The latent buffer and its decoder both run under autocast; the decoded frames stay close."""
    model = _trained_like(CFG, std=0.2)
    torch.manual_seed(0)
    space = WorldAutoencoder(AutoencoderConfig(resolution=64, latent_channels=CFG.channels, widths=(8, 16)))
    text = TextEmbedding(
        torch.randn(2, 5, CFG.text_dim), torch.ones(2, 5, dtype=torch.bool), torch.randn(2, 384)
    )
    scheme = Scheme(0, 2, 4, 8)
    frames = {
        precision: StreamSampler(
            model,
            scheme,
            text,
            cfg_scale=3.0,
            generator=torch.Generator().manual_seed(0),
            precision=precision,
            space=space.eval(),
        ).take(12)
        for precision in ("fp32", "bf16")
    }
    assert frames["bf16"].dtype == torch.float32 and frames["bf16"].shape == (2, 12, 3, 64, 64)
    assert 0 < _relative_error(frames["bf16"], frames["fp32"]) < 5e-2


def test_compiled_model_equals_eager():
    model = _trained_like(CFG, std=0.2)
    inputs = _inputs(CFG)
    compiled = compile_model(model, "default")
    assert compile_model(model, "none") is model
    with torch.no_grad():
        torch.testing.assert_close(compiled(*inputs), model(*inputs), atol=1e-5, rtol=1e-4)
    assert compiled.cfg is model.cfg  # the sampler reads cfg and null_text through the wrapper


def test_invalid_fast_path_settings_name_the_parameter():
    with pytest.raises(ValueError, match="train.precision 'fp16'"):
        TrainConfig(precision="fp16")
    with pytest.raises(ValueError, match="compile mode 'fast'"):
        TrainConfig(compile="fast")
    with pytest.raises(ValueError, match="precision 'half'"):
        StreamSampler(
            _trained_like(CFG), Scheme(0, 2, 4, 8), TextEmbedding(*_inputs(CFG)[2:]), precision="half"
        )


def test_parse_overrides():
    assert parse_overrides(["train.steps=100", "model.window=[4, 8, 8]", "profile=smoke"]) == {
        "train": {"steps": 100},
        "model": {"window": [4, 8, 8]},
        "profile": "smoke",
    }
    for bad in ("train.steps", "=3", "train..steps=1"):
        with pytest.raises(ValueError, match="KEY=VALUE"):
            parse_overrides([bad])
