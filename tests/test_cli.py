import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from streamdit.cli import build_parser, main
from streamdit.handoff import started_by
from streamdit.schedule import time_grid
from streamdit.streaming import load_streamer, write_stream
from streamdit.video import Mp4Writer, read_video, to_uint8, write_mp4

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def streamer(tiny_model_file):
    return load_streamer(tiny_model_file, device="cpu")


def argv(model, command: str) -> list[str]:
    """The arguments of ``streamdit COMMAND`` on ``model`` and the CPU."""
    args = shlex.split(command)
    return [args[0], "--model", str(model), "--device", "cpu", *args[1:]]


def run(model, command: str):
    """Run ``streamdit COMMAND`` in this process as ``main`` does; returns what the command returns."""
    args = build_parser().parse_args(argv(model, command))
    return args.run(args)


def test_the_entry_point_is_main():
    assert '\nstreamdit = "streamdit.cli:main"\n' in (ROOT / "pyproject.toml").read_text()


def test_the_installed_console_script_runs(tiny_model_file, streamer, tmp_path):
    """The ``streamdit`` script that installing the package puts next to the interpreter, run as a child."""
    script = Path(sys.executable).parent / "streamdit"
    assert script.is_file(), f"no console script at {script}: install the package (pip install -e .)"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}

    def child(*args):
        return subprocess.run(
            [str(script), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
        )

    shown = child("--help")
    assert shown.returncode == 0, shown.stderr
    assert "{stream,v2v,switch,serve}" in shown.stdout
    out = tmp_path / "s.gif"
    done = child(
        *argv(tiny_model_file, f"stream --prompt 'a red circle' --frames 6 --seed 7 --scale 1 --out {out}")
    )
    assert done.returncode == 0, done.stderr
    assert "6 frames in" in done.stderr and "scheme K0-N2-c4-s8" in done.stderr
    # the script's stream is the library's, pixel for pixel
    expected = to_uint8(streamer.sampler("a red circle", seed=7).take(6)[0])
    assert np.array_equal(read_video(out), expected)


def test_stream_writes_the_seeded_stream_and_reports_speed(tiny_model_file, streamer, tmp_path, capsys):
    stats = run(tiny_model_file, f"stream --prompt 'a red circle' --frames 10 --out {tmp_path / 'a.gif'}")
    assert stats["frames"] == 10 and 0 < stats["ttff_s"] < stats["seconds"]
    # steady speed: chunks 2 and 3 (8 frames) come out after the first, within the run's time
    assert stats["frames_per_second"] * (stats["seconds"] + 5e-4 - stats["ttff_s"]) >= 8
    err = capsys.readouterr().err
    assert "10 frames in" in err and "frames/s" in err and "ms median" in err and "scheme K0-N2-c4-s8" in err
    video = read_video(tmp_path / "a.gif")
    assert video.shape == (10, 64, 64, 3)  # 16 px at the default scale 4
    # the model file's sample.seed (1) and settings: the library's stream, pixel for pixel
    expected = to_uint8(streamer.sampler("a red circle", seed=1).take(10)[0])
    assert np.array_equal(video[:, ::4, ::4], expected)


def test_raw_frames_on_stdout(tiny_model_file, streamer, capsysbinary):
    run(tiny_model_file, "stream --prompt 'a red circle' --frames 6 --seed 7 --scale 1 --out -")
    frames = np.frombuffer(capsysbinary.readouterr().out, dtype=np.uint8).reshape(6, 16, 16, 3)
    assert np.array_equal(frames, to_uint8(streamer.sampler("a red circle", seed=7).take(6)[0]))


def test_timeline_file_switches_the_prompt(tiny_model_file, streamer, tmp_path):
    a, b = "a red circle moving left", "a yellow square moving up on a black background"
    timeline = tmp_path / "prompts.txt"
    timeline.write_text(f"0: {a}\n8: {b}\n")
    out = tmp_path / "s.gif"
    run(tiny_model_file, f"stream --timeline {timeline} --frames 20 --scale 1 --seed 2 --out {out}")
    video = read_video(out).astype(float)
    assert video.shape == (20, 16, 16, 3)
    alone = to_uint8(streamer.sampler(a, seed=2).take(20)[0]).astype(float)
    gap = np.abs(video - alone).mean(axis=(1, 2, 3))
    assert (gap[:8] == 0).all() and (gap[12:] > 5).all(), gap


def test_a_student_stream_started_from_its_teacher(tiny_model_file, tmp_path, capsys):
    """--start-from: the student's stream from the teacher's uniform clip, as the library streams it;
    without it, a student distilled without start-up buffers (params.yaml) is streamed with a note."""
    out = tmp_path / "s.gif"
    run(tiny_model_file, f"stream --distilled --start-from {tiny_model_file} --prompt 'a red circle' "
                         f"--frames 8 --seed 3 --scale 1 --out {out}")  # fmt: skip
    assert "start-up buffers" not in capsys.readouterr().err
    run(tiny_model_file, f"stream --distilled --prompt 'a red circle' --frames 8 --out {tmp_path / 'n.gif'}")
    assert "--start-from TEACHER starts it" in capsys.readouterr().err
    student = load_streamer(tiny_model_file, distilled=True, device="cpu")
    handoff = started_by(student, load_streamer(tiny_model_file, device="cpu"))
    expected = to_uint8(handoff.sampler("a red circle", seed=3).take(8)[0])
    assert np.array_equal(read_video(out), expected)
    alone = to_uint8(student.sampler("a red circle", seed=3).take(8)[0])
    assert not np.array_equal(expected, alone)
    with pytest.raises(ValueError, match="drop --startup"):
        run(tiny_model_file, f"stream --distilled --start-from {tiny_model_file} --startup uniform "
                             f"--prompt 'a red circle' --frames 8 --out {out}")  # fmt: skip


def test_the_demo_and_the_switch_measure_start_a_student_from_its_teacher(tiny_model_file):
    """serve and switch take --start-from as stream does (v2v starts from its input video instead): the
    streamer they build starts its streams from the teacher's clip, frame for frame as the library's."""
    from streamdit.cli import streamer_from

    for command in ("serve", "switch --prompt a --to b"):
        command = f"{command} --distilled --start-from {tiny_model_file}"
        started = streamer_from(build_parser().parse_args(argv(tiny_model_file, command)))
        expected = started_by(load_streamer(tiny_model_file, distilled=True, device="cpu"),
                              load_streamer(tiny_model_file, device="cpu"))  # fmt: skip
        assert type(started) is type(expected)
        got, want = (s.sampler("a red circle", seed=3).take(8)[0] for s in (started, expected))
        assert torch.equal(got, want)
    with pytest.raises(SystemExit):
        build_parser().parse_args(argv(tiny_model_file, f"v2v --input x.mp4 --prompt a --out y.mp4 "
                                                        f"--start-from {tiny_model_file}"))  # fmt: skip


def test_an_interrupted_endless_stream_keeps_what_it_wrote(tmp_path):
    def chunks():
        for i in range(3):
            yield torch.full((1, 4, 3, 8, 8), i / 3), "p"
        raise KeyboardInterrupt

    stats = write_stream(chunks(), Mp4Writer(tmp_path / "e.mp4"), frames=None, progress=False)
    assert stats["frames"] == 12
    assert read_video(tmp_path / "e.mp4").shape == (12, 8, 8, 3)


def test_v2v_regenerates_every_input_frame(tiny_model_file, tmp_path, capsys):
    video = np.zeros((11, 16, 16, 3), dtype=np.uint8)
    video[:, 4:12, 4:12] = (255, 0, 0)
    source = write_mp4(video, tmp_path / "in.mp4")
    out = tmp_path / "out.gif"
    command = f"v2v --input {source} --prompt 'a red square' --strength 0.2 --scale 1 --out {out}"
    stats = run(tiny_model_file, command)
    # the first level at or above the strength on the model's grid (K0-N2-c4-s8: T = 16 steps)
    shift = torch.load(tiny_model_file, weights_only=False)["config"]["sample"]["time_shift"]
    grid = time_grid(16, shift).float()
    level = float(grid[grid >= 0.2][0])
    assert stats["frames"] == 11 and stats["start_level"] == level < 0.5
    assert f"input noised to level {level:.3g}" in capsys.readouterr().err
    result = read_video(out).astype(float)
    assert result.shape == (11, 16, 16, 3)
    # little noise keeps the input's layout: the square stays redder than the background
    red = result[..., 0] - result[..., 1]
    assert red[:, 5:11, 5:11].mean() > red[:, :3].mean() + 50


@pytest.mark.parametrize(
    "command, message",
    [
        ("stream --prompt '' --out x.mp4", "captions must be non-empty strings"),
        (f"stream --prompt {'z' * 1001} --out x.mp4", "1001 characters; at most 1000"),
        ("stream --prompt a --scheme 0,2,4 --out x.mp4", r"a scheme is written \[K, N, c, s\]"),
        (
            "stream --prompt a --scheme 4,1,4,16 --startup uniform --out x.mp4",
            r"without reference frames \(K = 0\)",
        ),
        ("stream --prompt a --scheme 0,3,4,8 --out x.mp4", "but the buffer has 8"),
        ("stream --prompt a --scheme 0,2,0,8 --out x.mp4", "scheme c must be an integer >= 1"),
        ("stream --prompt a --scheme zero --out x.mp4", "invalid literal for int"),
        ("stream --prompt a --out x.avi", "--out must end in .mp4 or .gif"),
        ("stream --prompt a --frames 0 --out x.gif", "an endless stream cannot go to a GIF"),
        ("stream --out x.mp4", "give either --prompt or --timeline"),
        ("stream --prompt a --timeline missing.txt --out x.mp4", "give either"),
        ("stream --timeline missing.txt --out x.mp4", "cannot read the prompt timeline"),
        ("stream --prompt a --cfg-scale -2 --out x.mp4", "cfg_scale must be >= 0"),
        ("v2v --input missing.mp4 --prompt a --out x.mp4", "cannot read video .*no such file"),
        ("v2v --input junk.mp4 --prompt a --out x.mp4", "cannot read video .*junk.mp4"),
        ("v2v --input wide.mp4 --prompt a --out x.mp4", "has 24x32 frames but the model makes 16x16"),
        ("v2v --input wide.mp4 --prompt a --strength 0 --out x.mp4", r"in \(0, 1\]"),
        ("switch --prompt a --to ' '", "captions must be non-empty strings"),
    ],
)
def test_bad_input_is_a_clear_error(tiny_model_file, tmp_path, monkeypatch, capsys, command, message):
    monkeypatch.chdir(tmp_path)
    write_mp4(np.zeros((3, 24, 32, 3), dtype=np.uint8), "wide.mp4")
    Path("junk.mp4").write_bytes(b"\x00garbage" * 50)
    with pytest.raises(SystemExit) as exit_info:
        main(argv(tiny_model_file, command))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"streamdit {command.split()[0]}: error:" in err and re.search(message, err), err
    assert not Path("x.mp4").exists() and not Path("x.gif").exists()


def test_resize_makes_any_video_fit(tiny_model_file, tmp_path):
    wide = write_mp4(np.zeros((3, 24, 32, 3), dtype=np.uint8), tmp_path / "wide.mp4")
    assert (
        main(argv(tiny_model_file, f"v2v --input {wide} --prompt a --resize --out {tmp_path / 'o.mp4'}"))
        is None
    )
    assert read_video(tmp_path / "o.mp4").shape == (3, 64, 64, 3)


def test_missing_model_says_what_to_run(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["stream", "--model", str(tmp_path / "none.pt"), "--prompt", "a", "--out", "x.mp4"])
    assert "no trained model at" in capsys.readouterr().err


def test_switch_prints_its_measurement(tiny_model_file, capsys):
    command = "switch --prompt 'a red circle moving left' --to 'a yellow square' --at 4 --after 12 --seed 0"
    result = run(tiny_model_file, command)
    printed = json.loads(capsys.readouterr().out)
    assert printed == result and printed["switch_at"] == 4 and len(printed["progress"]) == 12
