import av
import numpy as np
import pytest
import torch
from PIL import Image

from streamdit.video import from_uint8, mp4_codec, read_video, save_strip, to_uint8, write_gif, write_mp4


def smooth_frames(f=6, h=16, w=20):
    """Slowly varying RGB content that survives lossy coding well, uint8 `[f, h, w, 3]`."""
    t, y, x = np.meshgrid(np.arange(f), np.arange(h), np.arange(w), indexing="ij")
    return np.stack([x * 255 // (w - 1), y * 255 // (h - 1), t * 255 // (f - 1) + 0 * x], axis=-1).astype(
        np.uint8
    )


def test_uint8_round_trip_is_exact_and_ranges_are_right():
    frames = np.random.default_rng(0).integers(0, 256, size=(3, 5, 7, 3), dtype=np.uint8)
    tensor = from_uint8(frames)
    assert tensor.shape == (3, 3, 5, 7) and tensor.dtype == torch.float32
    assert torch.equal(
        from_uint8(np.array([[[[0, 255, 0]]]], dtype=np.uint8)).flatten(), torch.tensor([-1.0, 1, -1])
    )
    assert np.array_equal(to_uint8(tensor), frames)
    assert to_uint8(torch.full((1, 3, 1, 1), 5.0)).flatten().tolist() == [255, 255, 255]


def test_mp4_round_trip_pads_odd_sizes_and_scales(tmp_path):
    frames = smooth_frames(h=15, w=21)
    path = write_mp4(frames, tmp_path / "sub" / "clip.mp4", fps=8, scale=2)
    decoded = read_video(path)
    # 2x upscale gives 30 x 42, already even.
    assert decoded.shape == (6, 30, 42, 3)
    expected = frames.repeat(2, axis=1).repeat(2, axis=2).astype(np.float64)
    assert np.abs(decoded - expected).mean() < 4
    odd = read_video(write_mp4(frames, tmp_path / "odd.mp4"))
    assert odd.shape == (6, 16, 22, 3)
    # Padding repeats the last row/column.
    assert np.abs(odd[:, 15].astype(int) - odd[:, 14].astype(int)).mean() < 6
    # the file is coded by the encoder mp4_codec names (libx264 writes an H.264 stream)
    assert stream_codec(path) == {"libx264": "h264", "mpeg4": "mpeg4"}[mp4_codec()]


def stream_codec(path):
    """The codec of a file's video stream, as FFmpeg's decoder names it."""
    with av.open(str(path)) as container:
        return container.streams.video[0].codec_context.name


def test_without_libx264_mp4_falls_back_to_mpeg4(tmp_path, monkeypatch):
    monkeypatch.setattr(av.codec, "codecs_available", av.codec.codecs_available - {"libx264"})
    assert mp4_codec() == "mpeg4"
    frames = smooth_frames()
    path = write_mp4(frames, tmp_path / "fallback.mp4")
    assert stream_codec(path) == "mpeg4"
    # MPEG-4 Part 2 is lossier than H.264 on these 16 x 20 frames: mean error 4.5 measured
    assert np.abs(read_video(path).astype(np.float64) - frames).mean() < 9


def test_gif_round_trip(tmp_path):
    frames = np.zeros((4, 8, 8, 3), dtype=np.uint8)
    frames[np.arange(4), :, np.arange(4) * 2] = (255, 0, 0)  # a red column moving right
    decoded = read_video(write_gif(frames, tmp_path / "clip.gif", fps=10, scale=3))
    assert decoded.shape == (4, 24, 24, 3)
    assert np.array_equal(decoded[:, ::3, ::3], frames)
    assert Image.open(tmp_path / "clip.gif").info["duration"] == 100


def test_read_video_errors_name_the_path(tmp_path):
    with pytest.raises(ValueError, match="missing.mp4.*no such file"):
        read_video(tmp_path / "missing.mp4")
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"not a video at all" * 10)
    with pytest.raises(ValueError, match="garbage.mp4"):
        read_video(garbage)


def test_write_rejects_bad_frames(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        write_mp4(np.zeros((2, 4, 4, 3), dtype=np.float32), tmp_path / "x.mp4")
    with pytest.raises(ValueError, match=r"\(2, 4, 4\)"):
        write_gif(np.zeros((2, 4, 4), dtype=np.uint8), tmp_path / "x.gif")
    with pytest.raises(ValueError, match="scale"):
        write_gif(np.zeros((2, 4, 4, 3), dtype=np.uint8), tmp_path / "x.gif", scale=0)


def test_save_strip_layout(tmp_path):
    rows = [np.full((3, 8, 8, 3), 200, dtype=np.uint8), np.full((2, 8, 8, 3), 50, dtype=np.uint8)]
    plain = Image.open(save_strip(rows, tmp_path / "plain.png", scale=2))
    # Width: 3 frames of 16 px plus 4 gaps of 2 px; height: 2 rows of 16 px plus 3 gaps.
    assert plain.size == (3 * 16 + 4 * 2, 2 * 16 + 3 * 2)
    pixels = np.asarray(plain)
    assert tuple(pixels[2, 2]) == (200, 200, 200) and tuple(pixels[20, 2]) == (50, 50, 50)
    assert tuple(pixels[20, 40]) == (255, 255, 255)  # the shorter row leaves white space
    captioned = Image.open(
        save_strip(
            rows,
            tmp_path / "cap.png",
            captions=["first", "a caption far longer than the three frames of its row are wide"],
        )
    )
    assert captioned.size[1] > 2 * 32 + 3 * 4
    assert captioned.size[0] > 3 * 32 + 4 * 4  # widened for the long caption
    with pytest.raises(ValueError, match="2 rows"):
        save_strip(rows, tmp_path / "bad.png", captions=["only one"])
