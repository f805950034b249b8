import pytest
import torch
from test_sampling import FakeModel, oracle_towards, text

from streamdit.fifo import FifoSampler
from streamdit.flow import interpolate
from streamdit.sampling import StreamSampler
from streamdit.schedule import FifoScheme, Scheme, check_stream, parse_scheme


def zero_velocity(x, levels, pooled):
    return torch.zeros_like(x)


def recording(rule, seen):
    """``rule``, also recording the per-frame levels of every call in ``seen``."""

    def recorded(x, levels, pooled):
        seen.append(levels[0].clone())
        return rule(x, levels, pooled)

    return recorded


def sampler(model, fifo, seed=0, **kwargs):
    """A started FIFO stream (its queue made) on ``fifo``."""
    s = FifoSampler(model, fifo, text(), generator=torch.Generator().manual_seed(seed), **kwargs)
    s.start()
    return s


def test_fifo_scheme_sizes_blocks_and_cost():
    plain, ahead = (
        FifoScheme(B=8, partitions=2, lookahead=False),
        FifoScheme(B=8, partitions=2, lookahead=True),
    )
    assert (plain.T, plain.K, plain.frames, plain.warmup) == (16, 0, 16, 8)
    assert (ahead.T, ahead.K, ahead.frames, ahead.warmup) == (16, 4, 20, 8)
    assert plain.blocks == ((0, 0), (8, 8))
    assert ahead.blocks == ((0, 4), (4, 8), (8, 12), (12, 16))
    assert (plain.calls_per_frame, ahead.calls_per_frame) == (2, 4)
    assert (plain.nfe_per_frame(1.0), ahead.nfe_per_frame(3.0)) == (2, 8)
    assert str(ahead) == "FIFO-B8-n2-lookahead" and str(plain) == "FIFO-B8-n2"


@pytest.mark.parametrize("lookahead", [False, True])
def test_the_kept_ranges_tile_the_diagonal_once(lookahead):
    fifo = FifoScheme(B=4, partitions=3, lookahead=lookahead)
    kept = [p for start, keep in fifo.blocks for p in range(keep, start + fifo.B)]
    assert kept == list(range(fifo.K, fifo.frames))
    assert all(start + fifo.B <= fifo.frames for start, _ in fifo.blocks)


def test_each_call_sees_its_block_on_the_diagonal_at_every_step():
    """B = 4, 2 partitions: T = 8 and position p at level (p + 1) / 8; one call per block."""
    seen = []
    model = FakeModel(recording(zero_velocity, seen), frames=4)
    s = sampler(model, FifoScheme(B=4, partitions=2, lookahead=False))
    for _ in range(5):
        seen.clear()
        s.step()
        assert torch.allclose(torch.stack(seen), torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]]) / 8)
    assert torch.allclose(s.levels(1)[0], torch.arange(8) / 8)


def test_with_lookahead_blocks_overlap_by_half_behind_clean_frames():
    """B = 4, 2 partitions, lookahead: 2 clean look-behind frames, then levels 1/8 .. 8/8; 4 calls."""
    seen = []
    model = FakeModel(recording(zero_velocity, seen), frames=4)
    s = sampler(model, FifoScheme(B=4, partitions=2, lookahead=True))
    expected = torch.tensor([[0, 0, 1, 2], [1, 2, 3, 4], [3, 4, 5, 6], [5, 6, 7, 8]]) / 8
    for _ in range(5):
        seen.clear()
        s.step()
        assert torch.allclose(torch.stack(seen), expected)
    assert torch.allclose(s.levels(0)[0], torch.tensor([0, 0, 1, 2, 3, 4, 5, 6, 7, 8]) / 8)
    assert torch.allclose(s.levels(1)[0], torch.tensor([0, 0, 0, 1, 2, 3, 4, 5, 6, 7]) / 8)


def test_the_diagonal_follows_the_time_shift():
    s = sampler(FakeModel(zero_velocity, frames=4), FifoScheme(B=4, partitions=1, lookahead=False), shift=3.0)
    u = torch.arange(1, 5) / 4
    assert torch.allclose(s.levels(0)[0], 3 * u / (1 + 2 * u))


def block_summary(x, levels, pooled):
    """A velocity that says which call made it: the mean of the call's frames plus its mean level."""
    return (x.mean(dim=(1, 2, 3, 4)) + levels.mean(dim=1)).view(-1, 1, 1, 1, 1).expand_as(x)


def test_with_lookahead_a_frame_keeps_the_update_of_the_block_it_ends_from_the_queue_before_the_step():
    fifo = FifoScheme(B=4, partitions=2, lookahead=True)
    s = sampler(FakeModel(block_summary, frames=4), fifo)
    before = s.x.clone()
    t_now, t_next = s.levels(0)[0], s.levels(1)[0]
    s.step()
    after = torch.cat([before[:, :1], s.x[:, :-1]], dim=1)  # undo the shift
    moved = (after - before)[0, :, 0, 0, 0]
    block_of = {2: 0, 3: 0, 4: 1, 5: 1, 6: 2, 7: 2, 8: 3, 9: 3}  # position -> block that keeps it
    for p, r in block_of.items():
        start = fifo.blocks[r][0]
        v = before[:, start : start + fifo.B].mean() + t_now[start : start + fifo.B].mean()
        assert torch.isclose(moved[p], (t_next[p] - t_now[p]) * v, atol=1e-6), p
    assert torch.equal(moved[:2], torch.zeros(2))  # look-behind frames are never updated


@pytest.mark.parametrize("lookahead", [False, True])
@pytest.mark.parametrize("partitions", [1, 2, 3])
def test_oracle_model_emits_exactly_the_clean_frames(partitions, lookahead):
    model = FakeModel(oracle_towards(0.5), frames=4)
    fifo = FifoScheme(B=4, partitions=partitions, lookahead=lookahead)
    s = FifoSampler(model, fifo, text(batch=2), generator=torch.Generator().manual_seed(0))
    video = s.take(3 * fifo.T)
    assert video.shape == (2, 3 * fifo.T, 1, 2, 2)
    assert torch.allclose(video, torch.full_like(video, 0.5), atol=1e-4)


def test_oracle_model_emits_the_clean_frames_from_a_given_clip():
    model = FakeModel(oracle_towards(-0.25), frames=4)
    clip = torch.randn(1, 4, 1, 2, 2, generator=torch.Generator().manual_seed(5))
    s = sampler(model, FifoScheme(B=4, partitions=2, lookahead=True), clip=clip)
    video = s.take(12)
    assert torch.allclose(video, torch.full_like(video, -0.25), atol=1e-4)


@pytest.mark.parametrize("lookahead", [False, True])
def test_warm_up_frames_are_dropped_and_the_clip_and_noise_come_out_in_order(lookahead):
    """With zero velocity nothing is denoised: the stream emits the initial queue from its first position
    after the warm-up on, then the noise that entered, so the clip frames noised to their levels lead."""
    fifo = FifoScheme(B=4, partitions=3, lookahead=lookahead)  # T = 12, warm-up 8
    clip = torch.arange(1.0, 5.0).view(1, 4, 1, 1, 1).expand(1, 4, 1, 2, 2)
    s = sampler(FakeModel(zero_velocity, frames=4), fifo, seed=7, clip=clip)
    first = None
    while first is None:
        first = s.step()
    assert s.steps == fifo.warmup + 1 and s.emitted == 1
    video = torch.cat([first, s.take(19)], dim=1)[0]
    replay = torch.Generator().manual_seed(7)
    queue_noise = torch.randn(1, fifo.frames, 1, 2, 2, generator=replay)[0]
    entered = torch.cat([torch.randn(1, 1, 1, 2, 2, generator=replay)[0] for _ in range(20)])
    t = (torch.arange(fifo.warmup, fifo.T) + 1.0) / fifo.T  # levels of the clip's positions t_9 .. t_12
    clip_part = interpolate(clip, queue_noise[None, fifo.K + fifo.warmup :], t[None])[0]
    assert torch.allclose(video[: fifo.B], clip_part)
    assert torch.equal(video[fifo.B :], entered[: 20 - fifo.B])


def test_one_partition_drops_nothing():
    s = sampler(FakeModel(zero_velocity, frames=4), FifoScheme(B=4, partitions=1, lookahead=True))
    assert s.step() is not None and s.emitted == 1


@pytest.mark.parametrize(("lookahead", "cfg_scale"), [(False, 1.0), (True, 1.0), (True, 4.0)])
def test_calls_and_nfe_per_frame_match_the_count(lookahead, cfg_scale):
    fifo = FifoScheme(B=4, partitions=2, lookahead=lookahead)
    model = FakeModel(oracle_towards(0.0), frames=4)
    s = FifoSampler(model, fifo, text(), cfg_scale=cfg_scale, generator=torch.Generator().manual_seed(0))
    assert model.calls == s.calls == 0  # the clip is made on the first step
    s.start()
    assert model.calls == fifo.T == s.calls  # the uniform clip
    s.take(1)
    assert (
        s.calls == model.calls == s.calls_to_first_frame == fifo.T + (fifo.warmup + 1) * fifo.calls_per_frame
    )
    calls, emitted = s.calls, s.emitted
    s.take(10)
    per_frame = (s.calls - calls) / (s.emitted - emitted)
    assert per_frame == fifo.calls_per_frame == (4 if lookahead else 2)
    assert s.nfe_per_frame == per_frame * (1 if cfg_scale == 1.0 else 2)


def test_a_given_clip_costs_no_calls():
    model = FakeModel(zero_velocity, frames=4)
    s = sampler(model, FifoScheme(B=4, partitions=2, lookahead=False), clip=torch.zeros(1, 4, 1, 2, 2))
    assert s.calls == model.calls == 0
    s.take(1)
    assert s.calls == s.calls_to_first_frame == 5 * 2


def test_the_generated_clip_is_the_uniform_stream_of_the_same_seed():
    model = FakeModel(lambda x, levels, pooled: 0.3 * x - 0.1, frames=4)
    fifo = FifoScheme(B=4, partitions=2, lookahead=True)
    uniform = StreamSampler(
        model, Scheme.uniform(4, fifo.T), text(), generator=torch.Generator().manual_seed(2)
    )
    assert torch.allclose(sampler(model, fifo, seed=2).clip, uniform.take(4))


def test_same_seed_same_frames_and_different_seed_different_frames():
    model = FakeModel(lambda x, levels, pooled: 0.5 * x + 0.2 * levels[..., None, None, None], frames=4)
    fifo = FifoScheme(B=4, partitions=2, lookahead=True)

    def stream(seed):
        return sampler(model, fifo, seed=seed).take(10)

    assert torch.equal(stream(3), stream(3))
    assert not torch.allclose(stream(3), stream(4))


def test_prompt_switch_changes_the_velocity_from_the_next_step():
    model = FakeModel(
        lambda x, levels, pooled: pooled[:, :1, None, None, None].expand_as(x).clone(), frames=4
    )
    s = sampler(model, FifoScheme(B=4, partitions=2, lookahead=False), clip=torch.zeros(1, 4, 1, 2, 2))
    s.set_text(text(value=0.0))
    before = s.x.clone()
    s.step()
    assert torch.equal(s.x[:, :-1], before[:, 1:])  # zero velocity: only the shift
    s.set_text(text(value=1.0))
    before = s.x.clone()
    s.step()
    assert not torch.equal(s.x[:, :-1], before[:, 1:])
    with pytest.raises(ValueError, match="rows"):
        s.set_text(text(batch=2))


def test_a_latent_stream_emits_its_frames_decoded():
    from streamdit.autoencoder import AutoencoderConfig, WorldAutoencoder

    torch.manual_seed(0)
    space = WorldAutoencoder(AutoencoderConfig(resolution=4, latent_channels=1, widths=(8,))).eval()
    model = FakeModel(oracle_towards(0.3), frames=4)
    fifo = FifoScheme(B=4, partitions=2, lookahead=True)
    decoded, latents = (sampler(model, fifo, seed=4, space=sp).take(3) for sp in (space, None))
    assert decoded.shape == (1, 3, 3, 4, 4) and latents.shape == (1, 3, 1, 2, 2)
    with torch.no_grad():
        torch.testing.assert_close(decoded, space.decode(latents))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"B": 4, "partitions": 0, "lookahead": False}, "partitions must be an integer >= 1"),
        ({"B": 4, "partitions": 1.5, "lookahead": False}, "partitions must be an integer >= 1"),
        ({"B": 0, "partitions": 2, "lookahead": False}, "B must be an integer >= 1"),
        ({"B": 5, "partitions": 2, "lookahead": True}, "B must be even, got B=5"),
        ({"B": 4, "partitions": 2, "lookahead": "yes"}, "lookahead must be True or False"),
    ],
)
def test_bad_fifo_schemes_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FifoScheme(**kwargs)


def test_bad_sampler_arguments_raise():
    model = FakeModel(zero_velocity, frames=4)
    with pytest.raises(ValueError, match="model's buffer is 4"):
        sampler(model, FifoScheme(B=8, partitions=2, lookahead=False))
    fifo = FifoScheme(B=4, partitions=2, lookahead=False)
    with pytest.raises(ValueError, match=r"clip must be \[b, B, c, h, w\] = \[1, 4, 1, 2, 2\]"):
        sampler(model, fifo, clip=torch.zeros(1, 3, 1, 2, 2))
    with pytest.raises(ValueError, match="cfg_scale must be >= 0"):
        sampler(model, fifo, cfg_scale=-1.0)
    with pytest.raises(ValueError, match="take needs n >= 1"):
        sampler(model, fifo).take(0)
    model.cfg.space = "latent"
    with pytest.raises(ValueError, match="pass space="):
        sampler(model, fifo)


@pytest.mark.parametrize("lookahead", [False, True])
def test_a_fifo_scheme_reads_back_what_it_writes_and_params_name_either_kind(lookahead):
    fifo = FifoScheme(B=8, partitions=2, lookahead=lookahead)
    assert FifoScheme.parse(str(fifo)) == fifo and parse_scheme(str(fifo)) == fifo
    assert parse_scheme([4, 1, 4, 16]) == Scheme(4, 1, 4, 16) and parse_scheme("0,2,4,8") == Scheme(
        0, 2, 4, 8
    )
    with pytest.raises(ValueError, match="is not 'FIFO-B<B>-n<partitions>"):
        parse_scheme("FIFO-8-2")


def test_a_stream_check_names_what_a_fifo_scheme_cannot_take():
    fifo = FifoScheme(B=8, partitions=2, lookahead=True)
    check_stream(fifo, 8)
    with pytest.raises(ValueError, match="needs a buffer of 8, the model's is 4"):
        check_stream(fifo, 4)
    with pytest.raises(ValueError, match="neither a 'staggered' start-up nor a 'noised' context"):
        check_stream(fifo, 8, context="noised")
    with pytest.raises(ValueError, match="K >= 1 and N = 1"):
        check_stream(Scheme(0, 2, 4, 8), 8, context="noised")
