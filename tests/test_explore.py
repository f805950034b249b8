import base64
import re
import shutil
from pathlib import Path

import nbformat
import numpy as np
import papermill
import pytest
from test_sampling import FakeModel
from test_streaming import constant_encode, towards_pooled

from streamdit.config import load_config
from streamdit.explore import Explorer, generate, read_prompts, scheme_choices, video_html
from streamdit.schedule import Scheme
from streamdit.streaming import Streamer, load_streamer
from streamdit.video import read_video, to_uint8

ROOT = Path(__file__).resolve().parents[1]
RED, BLUE = "a red circle moving left", "a yellow square moving up on a black background"


@pytest.fixture(scope="module")
def streamer(tiny_model_file):
    return load_streamer(tiny_model_file, device="cpu")


def test_generate_gives_the_seeded_stream_as_uint8_and_counts_calls(streamer):
    frames, stats = generate(streamer, RED, 10)
    assert frames.shape == (10, 16, 16, 3) and frames.dtype == np.uint8
    # the model's sample.seed (1) and stored settings: the library's own stream
    assert np.array_equal(frames, to_uint8(streamer.sampler(RED, seed=1).take(10)[0]))
    # scheme K0-N2-c4-s8: T = 16 calls to the first chunk, 8 per further chunk; 3 chunks for 10 frames
    assert stats["scheme"] == "0,2,4,8" and stats["seed"] == 1 and stats["model_calls"] == 32
    assert stats["nfe_per_frame"] == 4.0 and stats["nfe_per_frame_run"] == pytest.approx(32 * 2 / 10)
    assert stats["frames"] == 10 and stats["switches"] == []
    # steady speed: chunks 2 and 3 (8 frames) come out after the first, within the run's time
    assert 0 < stats["ttff_s"] < stats["seconds"]
    assert stats["frames_per_second"] * (stats["seconds"] + 5e-4 - stats["ttff_s"]) >= 8
    assert f"steady {stats['frames_per_second']:.1f} frames/s" in stats["summary"]
    assert "10 frames in" in stats["summary"] and "32 model calls" in stats["summary"]


def test_scheme_guidance_and_seed_override_the_stored_ones(streamer):
    frames, stats = generate(streamer, RED, 5, scheme="0,8,1,2", cfg_scale=1, seed=4)
    diagonal = Streamer(streamer.model, streamer.encoder, Scheme(0, 8, 1, 2), 1.0, streamer.shift)
    assert np.array_equal(frames, to_uint8(diagonal.sampler(RED, seed=4).take(5)[0]))
    # 16 calls to the first frame, then 2 per frame; one forward pass per call without guidance
    assert stats["model_calls"] == 24 and stats["nfe_per_frame"] == 2.0 and stats["cfg_scale"] == 1.0


def test_a_timeline_prompt_takes_over_at_the_next_chunk_boundary():
    """An exact velocity lands each frame on its prompt's target value: the switch at frame 6 shows
    from chunk 8..11 on, and the stats say so."""
    fake = Streamer(
        FakeModel(towards_pooled),
        lambda prompts: constant_encode(prompts[0]),
        Scheme(0, 2, 4, 2),
        cfg_scale=1.0,
        shift=1.0,
        config={"sample": {"seed": 0}},
    )
    frames, stats = generate(fake, "0: red\n6: blue\n12: green", 18)
    assert stats["switches"] == [[8, "blue"], [12, "green"]]
    # targets 0.5, -0.25, 0.75 in [-1, 1] as uint8
    assert frames[:, 0, 0, 0].tolist() == [191] * 8 + [96] * 4 + [223] * 6


def test_a_tiny_model_stream_switches_where_the_stats_say(streamer):
    frames, stats = generate(streamer, f"0: {RED}\n6: {BLUE}", 16, seed=2)
    assert stats["switches"] == [[8, BLUE]]
    alone = to_uint8(streamer.sampler(RED, seed=2).take(16)[0])
    assert np.array_equal(frames[:8], alone[:8]) and not np.array_equal(frames[12:], alone[12:])


def test_text_is_a_timeline_only_when_it_starts_with_a_frame():
    assert read_prompts("  a red circle: moving left ") == [(0, "a red circle: moving left")]
    assert read_prompts("# switch\n0: a red circle\n 8 : a blue square") == [
        (0, "a red circle"),
        (8, "a blue square"),
    ]


@pytest.mark.parametrize(
    "text, options, message",
    [
        ("", {}, "captions must be non-empty strings, got ''"),
        ("  \n ", {}, "captions must be non-empty strings"),
        (f"0: {RED}\n4:  ", {}, "timeline, line 2: captions must be non-empty strings"),
        (f"2: {RED}", {}, "line 1: the first prompt must start at frame 0, got 2"),
        (RED, {"scheme": "0,2,4"}, r"scheme '0,2,4' is not 'K,N,c,s' \(four integers such as '0,2,4,8'\)"),
        (RED, {"scheme": "a,b,c,d"}, "scheme 'a,b,c,d' is not 'K,N,c,s'"),
        (RED, {"scheme": "0,4,4,8"}, r"covers B = K \+ N\*c = 0 \+ 4\*4 = 16 frames, but the buffer has 8"),
        (RED, {"scheme": "0,8,1,0"}, "scheme s must be an integer >= 1, got 0"),
        (RED, {"cfg_scale": -1}, "cfg_scale must be >= 0"),
        (RED, {"frames": 0}, "frames must be an integer >= 1, got 0"),
    ],
)
def test_bad_input_raises_a_clear_error(streamer, text, options, message):
    frames = options.pop("frames", 4)
    with pytest.raises(ValueError, match=message):
        generate(streamer, text, frames, **options)


def embedded(html: str, mime: str) -> bytes:
    match = re.search(rf'src="data:{mime};base64,([A-Za-z0-9+/=]+)"', html)
    assert match, html[:200]
    return base64.b64decode(match.group(1))


def test_video_html_embeds_an_upscaled_looping_video(tmp_path):
    frames = np.random.default_rng(0).integers(0, 256, (6, 16, 16, 3), dtype=np.uint8)
    html = video_html(frames, fps=8, caption="a <red> circle")
    assert "<video" in html and "autoplay loop muted" in html and "a &lt;red&gt; circle" in html
    (tmp_path / "v.mp4").write_bytes(embedded(html, "video/mp4"))
    assert read_video(tmp_path / "v.mp4").shape == (6, 256, 256, 3)  # 16 px scaled to 256
    gif = video_html(frames, fps=8, size=64, fmt="gif")
    (tmp_path / "v.gif").write_bytes(embedded(gif, "image/gif"))
    assert "<img" in gif and np.array_equal(read_video(tmp_path / "v.gif")[:, ::4, ::4], frames)


def test_video_html_rejects_unknown_formats():
    with pytest.raises(ValueError, match="fmt must be 'mp4' or 'gif', got 'webm'"):
        video_html(np.zeros((1, 8, 8, 3), np.uint8), fmt="webm")


def test_scheme_menu_starts_with_the_models_scheme(streamer):
    cfg = load_config(ROOT / "params.yaml", "smoke")
    choices = scheme_choices(streamer, cfg)
    assert [value for _, value in choices] == ["0,2,4,8", "0,8,1,2", "0,4,2,4", "0,1,8,16"]
    assert choices[1][0] == "0,8,1,2: c=1, 2 calls/frame, first frame after 16"


def test_the_panel_runs_and_shows_errors(streamer):
    explorer = Explorer(streamer, [("0,8,1,2", "0,8,1,2"), ("0,2,4,8", "0,2,4,8")], prompt=RED, frames=4)
    assert explorer.scheme.value == "0,2,4,8" and explorer.cfg_scale.value == 3.0
    explorer.scheme.value, explorer.cfg_scale.value = "0,8,1,2", 1.0
    stats = explorer.run()
    assert stats["scheme"] == "0,8,1,2" and stats["frames"] == 4
    video, text = (out["data"]["text/html"] for out in explorer.output.outputs)
    assert "data:video/mp4;base64," in video and "22 model calls" in text  # 16 + 3 * 2
    explorer.prompt.value = " "
    explorer.button.click()
    (error,) = explorer.output.outputs
    assert "captions must be non-empty strings" in error["data"]["text/html"]
    assert not explorer.button.disabled


def test_the_notebook_runs_without_a_person(tiny_model_file, tmp_path):
    student = tmp_path / "student.pt"
    shutil.copy(tiny_model_file, student)  # any model file serves as a student with its s = 1 scheme
    out = tmp_path / "explore.ipynb"
    papermill.execute_notebook(
        str(ROOT / "notebooks/explore.ipynb"),
        str(out),
        parameters={
            "model_path": str(tiny_model_file),
            "student_path": str(student),
            "params_file": str(ROOT / "params.yaml"),
            "profile": "smoke",
            "prompt": RED,
            "timeline": f"0: {RED}\n4: {BLUE}",
            "scheme": "0,4,2,4",
            "frames": 8,
            "interactive": False,
        },
        cwd=str(tmp_path),
        progress_bar=False,
    )
    outputs = [o for cell in nbformat.read(out, as_version=4).cells for o in cell.get("outputs", [])]
    html = "".join(o.get("data", {}).get("text/html", "") for o in outputs)
    text = "".join(o.get("text", "") for o in outputs)
    assert html.count("data:video/mp4;base64,") == 4  # first stream, switch, teacher and student
    assert f"frame 4: '{BLUE}'" in text and "student: 8 frames" in text and "K0-N2-c4-s1" in text
    assert "teacher: 8 frames in" in text and "K0-N4-c2-s4" in text and "student: 0,2,4,1, cfg 1" in html
