import pytest
import torch
from test_sampling import FakeModel

from streamdit.fifo import FifoSampler
from streamdit.sampling import StreamSampler
from streamdit.schedule import FifoScheme, Scheme
from streamdit.streaming import (
    Streamer,
    follow_timeline,
    load_streamer,
    measure_switch,
    parse_timeline,
    read_timeline,
)
from streamdit.text import TextEmbedding


def towards_pooled(x, levels, pooled):
    """The exact velocity towards a constant frame whose value is the text's pooled[0]."""
    return (x - pooled[:, 0].view(-1, 1, 1, 1, 1)) / levels.clamp_min(1e-6)[..., None, None, None]


TARGETS = {"red": 0.5, "blue": -0.25, "green": 0.75}


def constant_encode(prompt):
    return TextEmbedding(
        torch.ones(1, 2, 4), torch.ones(1, 2, dtype=torch.bool), torch.full((1, 4), TARGETS[prompt])
    )


def test_timeline_file_format(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text(
        '# a red start\n\n0: a red circle moving left\n  64: "a blue square bouncing"\n100:it\'s: fine\n'
    )
    assert read_timeline(path) == [
        (0, "a red circle moving left"),
        (64, "a blue square bouncing"),
        (100, "it's: fine"),
    ]


@pytest.mark.parametrize(
    "text, message",
    [
        ("5: late start", "line 1: the first prompt must start at frame 0, got 5"),
        ("0: a\n8: b\n8: c", "line 3: frame 8 must come after frame 8"),
        ("0: a\n8: b\n4: c", "line 3: frame 4 must come after frame 8"),
        ("0: a\nten: b", "line 2: the frame 'ten' is not an integer"),
        ("0: a\njust a prompt", "line 2: expected 'frame: prompt'"),
        ("0: a\n4:   ", "line 2: captions must be non-empty strings"),
        ('0: ""', "line 1: captions must be non-empty strings"),
        ("0: " + "x" * 1001, "line 1: a caption has 1001 characters; at most 1000"),
        ("# only a comment\n", "holds no 'frame: prompt' line"),
    ],
)
def test_bad_timelines_name_the_line_and_the_problem(text, message):
    with pytest.raises(ValueError, match=message):
        parse_timeline(text)


def test_missing_timeline_file_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        read_timeline(tmp_path / "nope.txt")


def test_timeline_switches_at_the_next_chunk_boundary():
    """An exact velocity lands every frame on the target of the text in force at its last call, so
    frames show which prompt made them: the switch at frame 6 takes over with chunk 8..11."""
    scheme = Scheme(K=0, N=2, c=4, s=2)
    sampler = StreamSampler(FakeModel(towards_pooled, frames=scheme.B), scheme, constant_encode("green"))
    timeline = [(0, "red"), (6, "blue"), (12, "green")]
    chunks = follow_timeline(sampler, timeline, constant_encode)
    got = [next(chunks) for _ in range(5)]
    assert [prompt for _, prompt in got] == ["red", "red", "blue", "green", "green"]
    values = torch.cat([chunk for chunk, _ in got], dim=1)[0, :, 0, 0, 0]
    expected = [0.5] * 8 + [-0.25] * 4 + [0.75] * 8
    torch.testing.assert_close(values, torch.tensor(expected), atol=1e-5, rtol=0)


def test_timeline_prompts_are_all_validated_before_the_first_call():
    scheme = Scheme(K=0, N=2, c=4, s=2)
    model = FakeModel(towards_pooled, frames=scheme.B)
    sampler = StreamSampler(model, scheme, constant_encode("red"))
    with pytest.raises(KeyError, match="purple"):
        next(follow_timeline(sampler, [(0, "red"), (64, "purple")], constant_encode))
    assert model.calls == 0


@pytest.fixture(scope="module")
def streamer(tiny_model_file):
    return load_streamer(tiny_model_file, device="cpu")


def test_streamer_takes_its_settings_from_the_model_file(tiny_model_file, streamer):
    assert (streamer.scheme, streamer.cfg_scale, streamer.resolution) == (Scheme(0, 2, 4, 8), 3.0, 16)
    student = load_streamer(tiny_model_file, distilled=True, device="cpu")
    assert (student.scheme, student.cfg_scale) == (Scheme(0, 2, 4, 1), 1.0)
    custom = load_streamer(tiny_model_file, scheme=Scheme(0, 8, 1, 2), cfg_scale=1.5, device="cpu")
    assert (custom.scheme, custom.cfg_scale) == (Scheme(0, 8, 1, 2), 1.5)


def test_streamer_rejects_bad_settings_and_prompts(streamer):
    with pytest.raises(
        ValueError, match=r"covers B = K \+ N\*c = 0 \+ 3\*4 = 12 frames, but the buffer has 8"
    ):
        Streamer(streamer.model, streamer.encoder, Scheme(0, 3, 4, 2), 1.0, 1.0)
    with pytest.raises(ValueError, match="cfg_scale must be >= 0"):
        Streamer(streamer.model, streamer.encoder, streamer.scheme, -1.0, 1.0)
    with pytest.raises(ValueError, match="non-empty strings"):
        streamer.sampler("   ", seed=0)
    with pytest.raises(ValueError, match="1001 characters"):
        streamer.sampler("y" * 1001, seed=0)


def test_a_streamer_runs_fifo_diffusion_and_the_uniform_start_up_on_the_same_model(streamer):
    fifo = Streamer(streamer.model, streamer.encoder, FifoScheme(B=8, partitions=2, lookahead=True), 3.0, 1.0)
    sampler = fifo.sampler("a red circle moving left", seed=1)
    assert isinstance(sampler, FifoSampler)
    video = sampler.take(3)
    assert video.shape == (1, 3, 3, 16, 16) and torch.isfinite(video).all()
    assert sampler.calls == sampler.calls_to_first_frame + 2 * 4  # the clip, the warm-up, 4 calls a frame
    uniform = Streamer(streamer.model, streamer.encoder, streamer.scheme, 3.0, 1.0, startup="uniform")
    start = uniform.sampler("a red circle moving left", seed=1)
    assert start.startup == "uniform" and start.take(4).shape == (1, 4, 3, 16, 16)
    assert start.calls == streamer.scheme.T  # the first chunk leaves after T calls, as staggered
    with pytest.raises(ValueError, match="a clip of its own"):
        Streamer(streamer.model, None, FifoScheme(8, 2, False), 3.0, 1.0, startup="uniform")
    with pytest.raises(ValueError, match="needs a buffer of 4"):
        Streamer(streamer.model, None, FifoScheme(4, 2, False), 3.0, 1.0)


def test_a_switch_changes_only_the_frames_after_it(streamer):
    a, b = "a red circle moving left", "a yellow square moving up on a black background"
    alone = streamer.sampler(a, seed=4).take(24)
    sampler = streamer.sampler(a, seed=4)
    chunks = follow_timeline(sampler, [(0, a), (8, b)], streamer.encode)
    switched = torch.cat([next(chunks)[0].float() for _ in range(6)], dim=1)
    assert torch.equal(switched[:, :8], alone[:, :8])
    later = (switched[:, 12:] - alone[:, 12:]).abs().mean(dim=(0, 2, 3, 4))
    assert (later > 0.05).all(), later


def test_measure_switch_counts_frames_until_the_stream_is_the_new_prompts(streamer):
    a, b = "a red circle moving left", "a yellow square moving up on a black background"
    result = measure_switch(streamer, a, b, switch_frame=6, after=16, seed=2, threshold=0.9)
    assert result["switch_at"] == 8 and result["identical_before_switch"]
    progress = torch.tensor(result["progress"])
    # d_A / (d_A + d_B) by hand, from the streams the library's sampler gives (6 chunks of 4 frames)
    chunks = follow_timeline(streamer.sampler(a, seed=2), [(0, a), (6, b)], streamer.encode)
    switched = torch.cat([next(chunks)[0].float() for _ in range(6)], dim=1)[0, 8:]
    d_a, d_b = (
        (switched - streamer.sampler(p, seed=2).take(24)[0, 8:]).pow(2).mean(dim=(1, 2, 3)) for p in (a, b)
    )
    assert progress.tolist() == pytest.approx((d_a / (d_a + d_b)).tolist(), abs=1e-4)
    # frames in the buffer at the switch keep part of A; frames entering after it are B's
    assert progress[0] < 0.9 < progress[-1], progress
    first = int((progress >= 0.9).nonzero()[0])
    assert (result["frames"], result["reached"]) == (first, True)


def test_measure_switch_between_equal_prompts_is_an_error(streamer):
    with pytest.raises(ValueError, match="give identical frames"):
        measure_switch(streamer, "a red circle", "a red circle", switch_frame=4, after=4, seed=0)
    with pytest.raises(ValueError, match="need switch_frame >= 1"):
        measure_switch(streamer, "a", "b", switch_frame=0, after=4, seed=0)
