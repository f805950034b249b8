from types import SimpleNamespace

import pytest
import torch
from torch import nn

from streamdit.sampling import StreamSampler, guided_velocity
from streamdit.schedule import Scheme
from streamdit.text import TextEmbedding


class FakeModel(nn.Module):
    """A stand-in with the model's interface: velocity = ``rule(x, levels, pooled)``."""

    def __init__(self, rule, frames=8):
        super().__init__()
        self.cfg = SimpleNamespace(space="pixel", frames=frames, channels=1, resolution=2)
        self.weight = nn.Parameter(torch.zeros(()))
        self.rule = rule
        self.calls = 0

    def forward(self, x, levels, tokens, mask, pooled):
        self.calls += 1
        return self.rule(x, levels, pooled)

    def null_text(self, batch):
        return torch.zeros(batch, 1, 4), torch.ones(batch, 1, dtype=torch.bool), torch.zeros(batch, 4)


def text(batch=1, value=1.0):
    return TextEmbedding(
        torch.ones(batch, 3, 4), torch.ones(batch, 3, dtype=torch.bool), torch.full((batch, 4), value)
    )


def oracle_towards(target):
    """The exact flow-matching velocity towards a constant clean frame: v = (x_t - x0) / t."""
    return lambda x, levels, pooled: (x - target) / levels.clamp_min(1e-6)[..., None, None, None]


@pytest.mark.parametrize(
    "scheme", [Scheme(0, 8, 1, 1), Scheme(0, 4, 2, 3), Scheme(0, 1, 8, 5), Scheme(2, 3, 2, 2)]
)
def test_oracle_stream_emits_exactly_clean_frames(scheme):
    model = FakeModel(oracle_towards(0.5), frames=scheme.B)
    sampler = StreamSampler(model, scheme, text(batch=2), generator=torch.Generator().manual_seed(0))
    video = sampler.take(3 * scheme.B)
    assert video.shape == (2, 3 * scheme.B, 1, 2, 2)
    assert torch.allclose(video, torch.full_like(video, 0.5), atol=1e-4)
    # first chunk after T calls, then s calls per chunk of c frames
    chunks = sampler.emitted // scheme.c
    assert sampler.calls == scheme.T + (chunks - 1) * scheme.s


def test_frames_leave_in_the_order_they_entered():
    """With zero velocity nothing is denoised, so the stream must emit the raw noise draws in entry order."""
    scheme = Scheme(0, 4, 2, 2)
    model = FakeModel(lambda x, levels, pooled: torch.zeros_like(x), frames=scheme.B)
    sampler = StreamSampler(model, scheme, text(), generator=torch.Generator().manual_seed(7))
    video = sampler.take(20)[0]
    replay = torch.Generator().manual_seed(7)
    first = torch.randn(1, scheme.B, 1, 2, 2, generator=replay)[0]
    entered = [torch.randn(1, scheme.c, 1, 2, 2, generator=replay)[0] for _ in range(6)]
    expected = torch.cat([first, *entered])[:20]
    assert torch.equal(video, expected)


def test_reference_frames_are_the_last_emitted_and_memory_is_bounded():
    scheme = Scheme(K=3, N=2, c=2, s=2)
    model = FakeModel(oracle_towards(0.0), frames=scheme.B)
    sampler = StreamSampler(model, scheme, text(), generator=torch.Generator().manual_seed(1))
    emitted = []
    for _ in range(50):
        chunk = sampler.step()
        if chunk is not None:
            emitted.append(chunk)
        assert sampler.x.shape == (1, scheme.B, 1, 2, 2)
        assert sampler.recent.shape[1] <= scheme.K
    history = torch.cat(emitted, dim=1)
    assert sampler.started
    assert torch.equal(sampler.x[:, : scheme.K], history[:, -scheme.K :])


def test_guidance_combines_text_and_null_in_one_call():
    model = FakeModel(lambda x, levels, pooled: x * pooled[:, :1, None, None, None])
    x, levels = torch.randn(2, 8, 1, 2, 2), torch.rand(2, 8)
    v = guided_velocity(model, x, levels, text(batch=2, value=2.0), cfg_scale=3.0)
    assert model.calls == 1
    # v_text = 2x, v_null = 0: guided = 0 + 3 * (2x - 0)
    assert torch.allclose(v, 6 * x)
    assert torch.allclose(guided_velocity(model, x, levels, text(batch=2, value=2.0), cfg_scale=1.0), 2 * x)


def test_prompt_switch_changes_the_velocity_from_the_next_call():
    model = FakeModel(lambda x, levels, pooled: pooled[:, :1, None, None, None].expand_as(x).clone())
    sampler = StreamSampler(
        model, Scheme(0, 8, 1, 1), text(value=0.0), generator=torch.Generator().manual_seed(0)
    )
    before = sampler.x.clone()
    sampler.step()
    assert torch.equal(sampler.x[:, :-1], before[:, :-1])  # zero velocity under the first prompt
    sampler.set_text(text(value=1.0))
    snapshot = sampler.x.clone()
    sampler.step()
    assert not torch.equal(sampler.x, snapshot)
    with pytest.raises(ValueError, match="rows"):
        sampler.set_text(text(batch=2))


def test_same_seed_same_stream_and_different_seed_different_stream():
    scheme = Scheme(0, 4, 2, 2)
    model = FakeModel(oracle_towards(0.25), frames=scheme.B)

    def stream(seed):
        sampler = StreamSampler(model, scheme, text(), generator=torch.Generator().manual_seed(seed))
        sampler.take(12)
        return sampler.x  # the buffer still holds seed-dependent partly denoised frames

    assert torch.equal(stream(3), stream(3))
    assert not torch.allclose(stream(3), stream(4))


def test_a_latent_stream_emits_its_chunks_decoded():
    """The buffer holds latents; every emitted chunk is the autoencoder's decoding of the clean chunk, so
    a latent stream equals the pixel stream of the same buffer, decoded chunk by chunk."""
    from streamdit.autoencoder import AutoencoderConfig, WorldAutoencoder

    torch.manual_seed(0)
    space = WorldAutoencoder(AutoencoderConfig(resolution=4, latent_channels=1, widths=(8,))).eval()
    scheme = Scheme(0, 4, 2, 2)
    model = FakeModel(oracle_towards(0.3), frames=scheme.B)  # latents [1, 2, 2]

    def stream(space):
        sampler = StreamSampler(
            model, scheme, text(), generator=torch.Generator().manual_seed(4), space=space
        )
        return sampler.take(6)

    decoded, latents = stream(space), stream(None)
    assert decoded.shape == (1, 6, 3, 4, 4) and latents.shape == (1, 6, 1, 2, 2)
    with torch.no_grad():
        torch.testing.assert_close(decoded, space.decode(latents))


def test_a_uniform_start_up_fills_the_steady_buffer_from_one_clip():
    """The paper's start-up: T - s calls of plain clip denoising (one level for all B frames), then the
    steady stream at offset 0; the first chunk after T calls, each frame the clip's own (v = 1: the
    frame that entered as noise e leaves as e - 1)."""
    from test_schedule_reference import Recorder

    from streamdit.schedule import buffer_levels

    scheme = Scheme(0, 2, 4, 8)  # T = 16
    recorder = Recorder()
    sampler = StreamSampler(
        FakeModel(recorder, frames=8), scheme, text(), generator=torch.Generator().manual_seed(3)
    )
    noise = sampler.x[0].clone()
    uniform = StreamSampler(
        FakeModel(recorder, frames=8),
        scheme,
        text(),
        generator=torch.Generator().manual_seed(3),
        startup="uniform",
    )
    assert torch.equal(uniform.x[0], noise)  # the same noise as the staggered stream's
    emitted = [uniform.step() for _ in range(scheme.T + scheme.s)]
    assert [n for n, chunk in enumerate(emitted) if chunk is not None] == [
        scheme.T - 1,
        scheme.T + scheme.s - 1,
    ]
    for k, levels in enumerate(recorder.levels[: scheme.T - scheme.s]):  # the clip: one level per call
        assert torch.allclose(levels, torch.full((8,), (scheme.T - k) / scheme.T, dtype=torch.float64))
    steady = recorder.levels[scheme.T - scheme.s]
    assert torch.allclose(steady, buffer_levels(scheme, 0.0))  # then chunk j at (j + 1) s
    torch.testing.assert_close(emitted[scheme.T - 1][0], noise[:4] - 1)
    torch.testing.assert_close(emitted[-1][0], noise[4:] - 1)
    with pytest.raises(ValueError, match="K = 0"):
        StreamSampler(FakeModel(recorder, frames=8), Scheme(4, 1, 4, 16), text(), startup="uniform")
    with pytest.raises(ValueError, match="startup must be one of"):
        StreamSampler(FakeModel(recorder, frames=8), scheme, text(), startup="noise")


def test_a_noised_context_denoises_the_last_frames_again_with_the_chunk():
    """ReuseDiffuse-style extension: every call sees the K reference frames at the chunk's level, holding
    the last K emitted frames noised along the path with one noise draw per chunk."""
    scheme = Scheme(2, 1, 2, 3)
    seen = []

    def rule(x, levels, pooled):
        seen.append((x.clone(), levels.clone()))
        return (x - 0.5) / levels.clamp_min(1e-6)[..., None, None, None]

    sampler = StreamSampler(FakeModel(rule, frames=4), scheme, text(), context="noised",
                            generator=torch.Generator().manual_seed(3))  # fmt: skip
    video = sampler.take(6)
    assert torch.allclose(
        video, torch.full_like(video, 0.5), atol=1e-4
    )  # the oracle's frames, context or not
    for _, levels in seen:  # one level per call for the whole buffer: the model sees one uniform clip
        assert torch.equal(levels, levels[:, :1].expand_as(levels)) and levels.min() > 0
    x, _ = seen[scheme.T]  # the first call of the second chunk: its references are noised, not clean
    assert not torch.allclose(x[:, :2], torch.full_like(x[:, :2], 0.5), atol=1e-2)


def test_a_clean_context_keeps_the_references_at_level_zero_and_a_noised_one_needs_k_and_one_chunk():
    scheme = Scheme(2, 1, 2, 3)
    levels = []
    sampler = StreamSampler(FakeModel(lambda x, lv, p: levels.append(lv) or torch.zeros_like(x), frames=4),
                            scheme, text())  # fmt: skip
    sampler.take(4)
    assert levels[-1][0, :2].tolist() == [0.0, 0.0] and levels[-1][0, 2] > 0
    for bad in (Scheme(0, 1, 4, 3), Scheme(2, 2, 1, 2)):
        with pytest.raises(ValueError, match="K >= 1 and N = 1"):
            StreamSampler(FakeModel(lambda x, lv, p: x, frames=4), bad, text(), context="noised")
    with pytest.raises(ValueError, match="context must be one of"):
        StreamSampler(FakeModel(lambda x, lv, p: x, frames=4), scheme, text(), context="dirty")


def test_the_noised_references_are_the_emitted_frames_on_the_path():
    """The reference frames a call sees are exactly (1 - t) x_emitted + t e for the chunk's level t."""
    scheme = Scheme(2, 1, 2, 2)
    seen = []
    model = FakeModel(lambda x, lv, p: seen.append((x.clone(), lv.clone())) or torch.ones_like(x), frames=4)
    sampler = StreamSampler(
        model, scheme, text(), context="noised", generator=torch.Generator().manual_seed(1)
    )
    first = sampler.take(2)  # the first chunk (decoded: the identity for pixels)
    noise = sampler.context_noise.clone()
    sampler.step()
    x, lv = seen[-1]
    t = lv[0, 0]
    assert torch.allclose(x[:, :2], (1 - t) * first + t * noise)
