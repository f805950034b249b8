import numpy as np
import pytest
import torch
from test_sampling import FakeModel, text

from streamdit.sampling import StreamSampler
from streamdit.schedule import Scheme
from streamdit.streaming import load_streamer
from streamdit.v2v import VideoToVideo, video_frames
from streamdit.video import write_mp4

SCHEME = Scheme(K=0, N=4, c=2, s=2)  # T = 8: grid levels 0, 1/8, ..., 1


def still_model():
    """Velocity zero: nothing is denoised, so a frame leaves the buffer as it was last set."""
    return FakeModel(lambda x, levels, pooled: torch.zeros_like(x), frames=SCHEME.B)


def inputs(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(1, 2, 2, generator=g) * 2 - 1 for _ in range(n)]


def regenerate(model, frames, strength, seed=3):
    sampler = StreamSampler(model, SCHEME, text(), generator=torch.Generator().manual_seed(seed))
    v2v = VideoToVideo(sampler, frames, strength)
    return torch.cat(list(v2v.chunks()), dim=1)[0], v2v


@pytest.mark.parametrize("strength, level", [(0.3, 0.375), (0.375, 0.375), (0.01, 0.125), (1.0, 1.0)])
def test_input_is_noised_to_strength_rounded_up_to_the_grid(strength, level):
    """With zero velocity the output is the input's path at the start level: (1 - t) x_in + t e, where
    e is the noise a plain stream of the same seed emits (it emits its raw noise draws in order)."""
    frames = inputs(12)
    out, v2v = regenerate(still_model(), frames, strength)
    assert v2v.start_level == level
    plain = StreamSampler(still_model(), SCHEME, text(), generator=torch.Generator().manual_seed(3))
    noise = plain.take(12)[0]
    expected = (1 - level) * torch.stack(frames) + level * noise
    torch.testing.assert_close(out, expected)


def test_denoising_starts_from_the_noised_input():
    """The exact velocity towards 0.5 lands every frame on 0.5 wherever it starts, so the model (not
    the input) made the output; and a longer stream gives one output frame per input frame."""
    model = FakeModel(lambda x, levels, pooled: (x - 0.5) / levels.clamp_min(1e-6)[..., None, None, None])
    model.cfg.frames = SCHEME.B
    out, _ = regenerate(model, inputs(7), 0.6)
    assert out.shape == (7, 1, 2, 2)
    torch.testing.assert_close(out, torch.full_like(out, 0.5))


def test_input_is_read_lazily_one_buffer_ahead():
    read = []

    def source():
        for i, frame in enumerate(inputs(20)):
            read.append(i)
            yield frame

    sampler = StreamSampler(still_model(), SCHEME, text(), generator=torch.Generator().manual_seed(0))
    chunks = VideoToVideo(sampler, source(), 0.5).chunks()
    next(chunks)
    assert len(read) == SCHEME.N * SCHEME.c  # the frames of one buffer
    next(chunks)
    assert len(read) == SCHEME.N * SCHEME.c + SCHEME.c  # and those of the chunk that entered since
    assert sum(chunk.shape[1] for chunk in chunks) == 20 - 2 * SCHEME.c


def test_strength_one_is_plain_text_to_video(tiny_model_file):
    streamer = load_streamer(tiny_model_file, device="cpu")
    frames = [torch.zeros(3, 16, 16)] * 10
    v2v = VideoToVideo(streamer.sampler("a red circle", seed=5), frames, 1.0)
    out = torch.cat(list(v2v.chunks()), dim=1)
    torch.testing.assert_close(out, streamer.sampler("a red circle", seed=5).take(10))


def test_bad_strength_shapes_and_empty_inputs_are_clear_errors():
    sampler = StreamSampler(still_model(), SCHEME, text())
    for strength in (0.0, -0.5, 1.5):
        with pytest.raises(ValueError, match=r"strength is the level the input is noised to, in \(0, 1\]"):
            VideoToVideo(sampler, inputs(4), strength)
    with pytest.raises(ValueError, match=r"input frame 0 has shape \(3, 2, 2\); the model needs \(1, 2, 2\)"):
        next(VideoToVideo(sampler, [torch.zeros(3, 2, 2)], 0.5).chunks())
    with pytest.raises(ValueError, match="the input video has no frames"):
        next(VideoToVideo(sampler, [], 0.5).chunks())


def test_video_frames_check_or_resize_the_resolution(tmp_path):
    video = np.zeros((3, 20, 24, 3), dtype=np.uint8)
    video[:, :, 12:] = 255  # right half white
    path = write_mp4(video, tmp_path / "wide.mp4")
    with pytest.raises(ValueError, match="has 20x24 frames but the model makes 16x16: .* --resize"):
        next(video_frames(path, 16))
    frames = list(video_frames(path, 16, resize=True))
    assert len(frames) == 3 and frames[0].shape == (3, 16, 16)
    assert frames[0][:, :, :6].mean() < -0.9 and frames[0][:, :, 10:].mean() > 0.9


def test_unreadable_or_missing_videos_are_clear_errors(tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video" * 10)
    with pytest.raises(ValueError, match="cannot read video .*junk.mp4"):
        next(video_frames(junk, 16))
    with pytest.raises(ValueError, match="cannot read video .*missing.mp4: no such file"):
        next(video_frames(tmp_path / "missing.mp4", 16))


def test_input_frames_enter_a_latent_buffer_encoded():
    """With a latent space the input frames (pixels) are encoded before they ride on their noising path:
    with zero velocity and strength 1e-9 (start level t_1) the output is the decoding of
    (1 - t_1) encode(x_in) + t_1 e."""
    from streamdit.autoencoder import AutoencoderConfig, WorldAutoencoder

    torch.manual_seed(0)
    space = WorldAutoencoder(AutoencoderConfig(resolution=4, latent_channels=1, widths=(8,))).eval()
    frames = [torch.rand(3, 4, 4) * 2 - 1 for _ in range(6)]
    sampler = StreamSampler(
        still_model(), SCHEME, text(), generator=torch.Generator().manual_seed(3), space=space
    )
    out = torch.cat(list(VideoToVideo(sampler, frames, 1e-9).chunks()), dim=1)[0]
    plain = StreamSampler(still_model(), SCHEME, text(), generator=torch.Generator().manual_seed(3))
    noise = plain.take(6)[0]
    with torch.no_grad():
        z = space.encode(torch.stack(frames)[None])[0]
        expected = space.decode(((1 - 0.125) * z + 0.125 * noise)[None])[0]
    assert out.shape == (6, 3, 4, 4)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match=r"needs \(3, 4, 4\)"):
        list(VideoToVideo(StreamSampler(still_model(), SCHEME, text(), space=space), inputs(2), 0.5).chunks())
