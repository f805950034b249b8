import base64
import io
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from test_sampling import FakeModel

from streamdit.server import create_app
from streamdit.streaming import Streamer, load_streamer
from streamdit.video import to_uint8

RED = "a red circle moving left"
YELLOW = "a yellow square moving up on a black background"

# A hung socket or thread fails the test instead of the run.
pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def streamer(tiny_model_file):
    return load_streamer(tiny_model_file, device="cpu")


def reference(streamer, prompt, seed, frames):
    """The first ``frames`` frames of the library's stream as uint8 ``[f, h, w, 3]``."""
    return to_uint8(streamer.sampler(prompt, seed).take(frames)[0])


def decode(message):
    data = message["image"].removeprefix("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"))


def receive(ws, kind, frames):
    """The next message of type ``kind``; frame messages met on the way are appended to ``frames``."""
    while True:
        message = ws.receive_json()
        if message["type"] == kind:
            return message
        assert message["type"] == "frame", message
        frames.append(message)


def assert_ended(app, streams, timeout=60):
    """Every stream of ``streams`` (the test's own LiveStreams) has ended its generator thread and
    left the app's registry; ``timeout`` is generous for a loaded machine, a leak never ends."""
    assert streams, "the test saw no stream"
    for stream in streams:
        assert stream.join(timeout), "a generator thread outlived its client"
    deadline = time.time() + timeout
    while app.state.streams & streams and time.time() < deadline:  # retire() forgets it after the join
        time.sleep(0.01)
    assert not app.state.streams & streams


def collect(ws, frames, count):
    """Receive until ``frames`` holds ``count`` frame messages."""
    while len(frames) < count:
        frames.append(receive(ws, "frame", frames))


def test_page_has_a_canvas_a_prompt_box_and_an_fps_readout(streamer):
    page = TestClient(create_app(streamer, 'a "red" <circle>')).get("/")
    assert page.status_code == 200
    for element in (
        '<canvas id="view"',
        '<input id="prompt" value="a &quot;red&quot; &lt;circle&gt;"',
        'id="fps"',
    ):
        assert element in page.text


def test_frames_are_the_streams_frames_and_a_switch_changes_them(streamer):
    app = create_app(streamer, RED, seed=3, max_fps=0)
    frames = []
    with TestClient(app) as client, client.websocket_connect("/ws") as ws:
        ws.send_json({"prompt": RED})
        assert receive(ws, "prompt", frames) == {"type": "prompt", "prompt": RED}
        while len(frames) < 8:
            frames.append(receive(ws, "frame", frames))
        ws.send_json({"prompt": YELLOW})
        assert receive(ws, "prompt", frames)["prompt"] == YELLOW
        while frames[-1]["prompt"] != YELLOW or frames[-1]["index"] < first_of(frames, YELLOW) + 12:
            frames.append(receive(ws, "frame", frames))
        streams = set(app.state.streams)
        assert len(streams) == 1  # one generator for the connection, kept across the switch
    assert [m["index"] for m in frames] == list(range(len(frames)))
    assert all(m["latency_ms"] > 0 for m in frames)
    video = np.stack([decode(m) for m in frames]).astype(int)
    red = reference(streamer, RED, 3, len(frames)).astype(int)
    switch = first_of(frames, YELLOW)
    assert switch >= 8 and all(m["prompt"] == RED for m in frames[:switch])
    assert np.array_equal(video[:switch], red[:switch])  # PNG is lossless: the exact pixels
    later = np.abs(video[switch + 8 :] - red[switch + 8 :]).mean(axis=(1, 2, 3))
    assert (later > 5).all(), later
    assert_ended(app, streams)  # the generator thread ends with its client


def first_of(frames, prompt):
    return next((m["index"] for m in frames if m["prompt"] == prompt), len(frames))


def test_bad_messages_are_answered_with_errors_and_the_stream_goes_on(streamer):
    app = create_app(streamer, RED, seed=0, max_fps=0)
    frames = []
    bad = [
        ("not json", "messages are JSON"),
        ('{"text": "a red circle"}', "messages are JSON"),
        ('["a red circle"]', "messages are JSON"),
        ('{"prompt": ""}', "captions must be non-empty strings"),
        ('{"prompt": 5}', "captions must be non-empty strings"),
        ('{"prompt": "' + "x" * 1001 + '"}', "1001 characters; at most 1000"),
    ]
    with TestClient(app) as client, client.websocket_connect("/ws") as ws:
        for raw, message in bad:
            ws.send_text(raw)
            assert message in receive(ws, "error", frames)["message"]
        ws.send_bytes(b"\x00\x01")
        assert "not binary ones" in receive(ws, "error", frames)["message"]
        assert not frames and not app.state.streams  # nothing valid yet: no stream
        ws.send_json({"prompt": RED})
        receive(ws, "prompt", frames)
        streams = set(app.state.streams)
        for raw, message in bad:
            ws.send_text(raw)
            assert message in receive(ws, "error", frames)["message"]
        collect(ws, frames, len(frames) + 4)
    assert all(m["prompt"] == RED for m in frames)
    assert_ended(app, streams)


def test_twenty_connections_leave_no_generator_behind(streamer):
    app = create_app(streamer, RED, seed=0, max_fps=0)
    streams = set()
    with TestClient(app) as client:
        for i in range(20):
            with client.websocket_connect("/ws") as ws:
                ws.send_json({"prompt": RED})
                frames = []
                receive(ws, "prompt", frames)
                collect(ws, frames, 1 + i % 3)  # leave at different points of the stream
                streams |= app.state.streams
        assert len(streams) == 20
        assert_ended(app, streams)
        assert client.get("/").status_code == 200


def test_two_clients_stream_apart_and_one_leaving_mid_stream_ends_only_its_own(streamer):
    app = create_app(streamer, RED, seed=3, max_fps=0)
    with TestClient(app) as client, client.websocket_connect("/ws") as stays:
        stays.send_json({"prompt": RED})
        kept = []
        receive(stays, "prompt", kept)
        (mine,) = app.state.streams
        with client.websocket_connect("/ws") as leaves:
            leaves.send_json({"prompt": YELLOW})
            other = []
            receive(leaves, "prompt", other)
            (theirs,) = app.state.streams - {mine}
            collect(leaves, other, 3)
            collect(stays, kept, 3)
        assert_ended(app, {theirs})  # gone with its client, mid-stream
        assert mine.thread.is_alive() and app.state.streams == {mine}
        collect(stays, kept, 12)  # the remaining client's stream goes on
    assert [m["index"] for m in kept] == list(range(len(kept)))
    assert all(m["prompt"] == RED for m in kept) and all(m["prompt"] == YELLOW for m in other)
    video = np.stack([decode(m) for m in kept])
    assert np.array_equal(video, reference(streamer, RED, 3, len(kept)))  # untouched by the other client
    yellow = np.stack([decode(m) for m in other]).astype(int)
    assert np.abs(yellow - video[: len(other)].astype(int)).mean() > 5  # each client its own prompt
    assert_ended(app, {mine})


def test_a_failing_stream_reports_and_the_server_lives_on(streamer):
    def fail(*args):
        raise RuntimeError("out of memory, say")

    broken = Streamer(FakeModel(fail), streamer.encoder, streamer.scheme, 1.0, 1.0)
    with TestClient(create_app(broken, RED)) as client:
        for _ in range(2):
            with client.websocket_connect("/ws") as ws:
                ws.send_json({"prompt": RED})
                assert receive(ws, "prompt", [])["prompt"] == RED
                assert receive(ws, "error", []) == {
                    "type": "error",
                    "message": "the stream stopped: out of memory, say",
                }
        assert client.get("/").status_code == 200


# The browser test: `streamdit serve` in a child process, Debian's headless Chromium through chromedriver.

CANVAS = """
const state = window.streamState, canvas = document.getElementById("view");
const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
return {index: state.index, prompt: state.prompt, error: document.getElementById("error").textContent,
        fps: document.getElementById("fps").textContent, size: [canvas.height, canvas.width],
        pixels: Array.from(data)};
"""


@pytest.fixture
def server(tiny_model_file, tmp_path):
    """``streamdit serve --port 0`` (the system picks a free port, the server prints its URL);
    yields its URL and process."""
    log_path = tmp_path / "serve.log"
    log = open(log_path, "w")
    command = [sys.executable, "-m", "streamdit.cli", "serve", "--model", str(tiny_model_file)]
    command += ["--device", "cpu", "--port", "0", "--prompt", RED, "--seed", "3", "--max-fps", "25"]
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.time() + 120
        while not (found := re.search(r"demo on (http://\S+/)", log_path.read_text())):
            assert process.poll() is None, log_path.read_text()
            assert time.time() < deadline, (
                f"streamdit serve printed no URL within 120 s:\n{log_path.read_text()}"
            )
            time.sleep(0.1)
        url = found.group(1)
        assert httpx.get(url, timeout=60).status_code == 200  # bound before the URL was printed
        yield url, process
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    tools = {name: shutil.which(name) for name in ("chromium", "chromedriver")}
    missing = [name for name, path in tools.items() if path is None]
    assert not missing, (
        f"{missing} not installed: run `make browser` (apt-get install chromium chromium-driver)"
    )
    options = Options()
    options.binary_location = tools["chromium"]
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(tools["chromedriver"]))
    try:
        yield driver
    finally:
        driver.quit()


def test_browser_shows_live_frames_and_switches_the_prompt(server, browser, streamer):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    url, process = server
    wait = WebDriverWait(browser, 60, poll_frequency=0.05)

    def shown():
        """What the canvas shows now: the frame's index and prompt, and its pixels [h, w, 3]."""
        state = browser.execute_script(CANVAS)
        state["pixels"] = np.array(state["pixels"], dtype=int).reshape(*state["size"], 4)[..., :3]
        return state

    browser.get(url)
    wait.until(lambda _: browser.execute_script("return window.streamState.index") >= 4)
    first = shown()
    later = wait.until(lambda _: (s := shown())["index"] >= first["index"] + 3 and s)
    red = reference(streamer, RED, 3, later["index"] + 1).astype(int)
    for state in (first, later):
        assert state["prompt"] == RED and state["pixels"].shape == (16, 16, 3)
        assert state["pixels"].std() > 20  # real content, not a blank canvas
        # the page draws the server's stream: the library's frames for this prompt and seed
        assert np.abs(state["pixels"] - red[state["index"]]).max() <= 2
    assert np.abs(later["pixels"] - first["pixels"]).mean() > 5
    assert float(later["fps"]) > 0

    box = browser.find_element(By.ID, "prompt")
    box.clear()
    box.send_keys(YELLOW, Keys.ENTER)
    switched = wait.until(lambda _: (s := shown())["prompt"] == YELLOW and s)
    after = wait.until(lambda _: (s := shown())["index"] >= switched["index"] + 8 and s)
    assert browser.find_element(By.ID, "active").text == YELLOW
    red = reference(streamer, RED, 3, after["index"] + 1).astype(int)
    assert np.abs(after["pixels"] - red[after["index"]]).mean() > 5  # no longer the red prompt's stream

    box.clear()
    box.send_keys(Keys.ENTER)
    wait.until(lambda _: "non-empty" in shown()["error"])
    browser.execute_script(
        'document.getElementById("prompt").value = "x".repeat(1001);'
        'document.getElementById("prompt-form").requestSubmit();'
    )
    wait.until(lambda _: "1001 characters" in shown()["error"])
    still = wait.until(lambda _: (s := shown())["index"] >= after["index"] + 4 and s)
    assert still["prompt"] == YELLOW and process.poll() is None
