"""Chunk-causal attention, the KV cache and the chunk-causal stream (streamdit.causal)."""

import pytest
import torch
import torch.nn.functional as F

from streamdit.attention import attention_mask, chunk_causal_mask, windowed_attention
from streamdit.causal import CausalSampler
from streamdit.model import ModelConfig, build_model
from streamdit.sampling import StreamSampler
from streamdit.schedule import Scheme
from streamdit.streaming import Streamer
from streamdit.text import TextEmbedding


def causal_model(chunk=4, frames=8, seed=0, **changes):
    """A tiny pixel StreamDiT with random (not adaLN-Zero) weights, so every path shows in its output."""
    torch.manual_seed(seed)
    cfg = ModelConfig(frames=frames, resolution=16, patch=4, dim=32, depth=2, heads=2, window=(4, 4, 4),
                      causal_chunk=chunk, **changes)  # fmt: skip
    model = build_model(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.1)
    return model.eval()


def text(batch=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    return TextEmbedding(
        torch.randn(batch, 5, 384, generator=g),
        torch.ones(batch, 5, dtype=torch.bool),
        torch.randn(batch, 384, generator=g),
    )


def inputs(batch=2, frames=8, seed=2):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, frames, 3, 16, 16, generator=g), torch.rand(batch, frames, generator=g)


@pytest.mark.parametrize(
    "grid, window, stagger, chunk",
    [((8, 4, 4), (4, 4, 4), (2, 2, 2), 4), ((8, 4, 4), (4, 4, 4), (2, 2, 2), 2),
     ((6, 3, 3), (4, 2, 2), (2, 1, 1), 3), ((8, 2, 2), (3, 2, 2), (1, 0, 0), 2),
     ((4, 2, 2), (8, 8, 8), (0, 0, 0), 1)],
)  # fmt: skip
def test_chunk_causal_windows_equal_dense_attention_under_the_reference_mask(grid, window, stagger, chunk):
    n = grid[0] * grid[1] * grid[2]
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, n, 8, generator=g, requires_grad=True) for _ in range(3))
    out = windowed_attention(q, k, v, grid, window, stagger, chunk)
    dense = F.scaled_dot_product_attention(q, k, v, attn_mask=attention_mask(grid, window, stagger, chunk))
    torch.testing.assert_close(out, dense, atol=1e-6, rtol=0)
    out.sum().backward()  # front-padded windows: every row of the mask keeps a key, so no NaN flows back
    assert all(torch.isfinite(t.grad).all() for t in (q, k, v))


def test_the_causal_mask_lets_a_frame_see_its_chunk_and_earlier_ones_only():
    mask = chunk_causal_mask((6, 1, 1), 2)  # one token per frame: chunks {0, 1}, {2, 3}, {4, 5}
    expected = torch.tensor([[j // 2 <= i // 2 for j in range(6)] for i in range(6)])
    assert torch.equal(mask, expected)
    with pytest.raises(ValueError, match="chunk=0"):
        chunk_causal_mask((6, 1, 1), 0)


def test_a_causal_chunk_must_divide_the_buffer():
    with pytest.raises(ValueError, match="causal_chunk=3"):
        ModelConfig(frames=8, causal_chunk=3)
    with pytest.raises(ValueError, match="causal_chunk=True"):
        ModelConfig(frames=8, causal_chunk=True)


@pytest.mark.parametrize("chunk", [4, 2])
@pytest.mark.parametrize("full_attention", [False, True])
def test_the_kv_cache_gives_the_rows_of_a_call_on_the_whole_buffer(chunk, full_attention):
    model, t = causal_model(chunk, full_attention=full_attention), text()
    x, levels = inputs()
    with torch.no_grad():
        whole = model(x, levels, t.tokens, t.mask, t.pooled)
        # Past frames: later frames never change them (causal), and a chunk alone is the buffer's first rows.
        later = x.clone()
        later[:, chunk:] = torch.randn_like(later[:, chunk:])
        assert torch.equal(model(later, levels, t.tokens, t.mask, t.pooled)[:, :chunk], whole[:, :chunk])
        first = model(x[:, :chunk], levels[:, :chunk], t.tokens, t.mask, t.pooled)
        torch.testing.assert_close(first, whole[:, :chunk], atol=1e-5, rtol=0)
        # The past remembered at level 0, in one call or chunk by chunk; the rest through the cache.
        clean = levels.clone()
        clean[:, : 8 - chunk] = 0
        whole = model(x, clean, t.tokens, t.mask, t.pooled)
        past = model.remember(x[:, : 8 - chunk], t.tokens, t.mask, t.pooled)
        cached = model(x[:, 8 - chunk :], clean[:, 8 - chunk :], t.tokens, t.mask, t.pooled, past=past)
        torch.testing.assert_close(cached, whole[:, 8 - chunk :], atol=1e-5, rtol=0)
        step = model.remember(x[:, :chunk], t.tokens, t.mask, t.pooled)
        for start in range(chunk, 8 - chunk, chunk):
            step = model.remember(x[:, start : start + chunk], t.tokens, t.mask, t.pooled, past=step)
        assert step.frames == 8 - chunk
        again = model(x[:, 8 - chunk :], clean[:, 8 - chunk :], t.tokens, t.mask, t.pooled, past=step)
        torch.testing.assert_close(again, cached, atol=1e-5, rtol=0)
    assert (whole - model(x, levels, t.tokens, t.mask, t.pooled)).abs().max() > 1e-3  # level 0 matters


def test_past_frames_need_a_causal_model_and_whole_chunks():
    t = text()
    x, levels = inputs()
    with pytest.raises(ValueError, match="chunk-causal model"):
        causal_model(0).remember(x[:, :4], t.tokens, t.mask, t.pooled)
    model = causal_model(4)
    with pytest.raises(ValueError, match="whole chunks of 4"):
        model.remember(x[:, :2], t.tokens, t.mask, t.pooled)
    past = model.remember(x[:, :4], t.tokens, t.mask, t.pooled)
    with pytest.raises(ValueError, match="after 4 past frames"):
        model(x[:, :6], levels[:, :6], t.tokens, t.mask, t.pooled, past=past)


@pytest.mark.parametrize(
    "scheme, sink", [(Scheme(4, 1, 4, 6), False), (Scheme(6, 1, 2, 5), False), (Scheme(6, 1, 2, 5), True)]
)
@pytest.mark.parametrize("cfg_scale", [1.0, 2.5])
def test_the_cached_stream_equals_the_uncached_one(scheme, sink, cfg_scale):
    model = causal_model(scheme.c)
    streams = [
        CausalSampler(
            model,
            scheme,
            text(),
            cfg_scale=cfg_scale,
            shift=3.0,
            sink=sink,
            cache=cache,
            generator=torch.Generator().manual_seed(5),
        )  # fmt: skip
        for cache in (True, False)
    ]
    cached, uncached = (s.take(5 * scheme.B) for s in streams)
    torch.testing.assert_close(cached, uncached, atol=1e-4, rtol=0)
    assert cached.abs().max() > 0 and torch.isfinite(cached).all()
    # The uncached stream calls the model T times per chunk; the cached one adds a cache call whenever
    # there is a past, i.e. from the second chunk on.
    chunks = 5 * scheme.B // scheme.c
    assert streams[1].calls == chunks * scheme.T
    assert streams[0].calls == chunks * scheme.T + chunks - 1
    assert scheme.causal_calls_per_frame == (scheme.T + 1) / scheme.c


def test_memory_stays_bounded_and_a_sink_keeps_the_first_chunk():
    scheme = Scheme(6, 1, 2, 2)
    stream = CausalSampler(causal_model(2), scheme, text(batch=1), sink=True)
    for chunk in range(12):
        for _ in range(scheme.T + (1 if chunk else 0)):
            stream.step()
        assert stream.past.shape[1] == min(2 * (chunk + 1), 6)
    context = stream.context()
    assert context.shape[1] == 6 and torch.equal(context[:, :2], stream.first)
    assert torch.equal(context[:, 2:], stream.past[:, 2:])
    assert not torch.equal(stream.first, stream.past[:, :2])  # the first chunk is long gone from the window


def test_a_prompt_switch_reaches_the_next_chunk_and_its_cache():
    scheme = Scheme(4, 1, 4, 3)
    model = causal_model(4)
    a, b = text(batch=1, seed=1), text(batch=1, seed=9)

    def stream(switch: bool):
        s = CausalSampler(model, scheme, a, cfg_scale=2.0, generator=torch.Generator().manual_seed(0))
        first = s.take(4)
        if switch:
            s.set_text(b)
        return first, s.take(8)

    (first_a, rest_a), (first_b, rest_b) = stream(False), stream(True)
    assert torch.equal(first_a, first_b) and (rest_a - rest_b).abs().max() > 1e-3


def test_streamer_runs_a_causal_model_with_its_kv_cache_and_refuses_what_does_not_fit():
    model = causal_model(4)
    streamer = Streamer(model, None, Scheme(4, 1, 4, 4), 2.0, 3.0)
    stream = streamer.sampler(text(batch=1), seed=0)
    assert isinstance(stream, CausalSampler) and stream.cache
    assert streamer.nfe_per_frame == 2 * 5 / 4
    assert stream.take(12).shape == (1, 12, 3, 16, 16)
    for scheme in (Scheme(0, 4, 2, 4), Scheme(4, 2, 2, 2), Scheme(2, 1, 4, 4)):
        with pytest.raises(ValueError):
            Streamer(model, None, scheme, 2.0, 3.0)
    with pytest.raises(ValueError, match="noised"):
        Streamer(model, None, Scheme(4, 1, 4, 4), 2.0, 3.0, context="noised")
    with pytest.raises(ValueError, match="K >= 8"):
        Streamer(model, None, Scheme(4, 1, 4, 4), 2.0, 3.0, sink=True)
    with pytest.raises(ValueError, match="chunk-causal model"):
        Streamer(causal_model(0), None, Scheme(4, 1, 4, 4), 2.0, 3.0, sink=True)
    with pytest.raises(ValueError, match="CausalSampler"):
        StreamSampler(model, Scheme(4, 1, 4, 4), text(batch=1))
