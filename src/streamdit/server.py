"""The live web demo: a FastAPI app that streams generated frames to a browser page as they are made.

``GET /`` serves the page (``web/index.html``: a canvas, a prompt box, an FPS readout). The page opens
a WebSocket on ``/ws`` and sends ``{"prompt": "..."}``: the first message starts a stream (one
generator thread per connection), every later one switches its prompt from the next model call on
(``StreamSampler.set_text``). The server sends JSON messages:

    {"type": "frame", "index": n, "prompt": p, "latency_ms": l, "image": "data:image/png;base64,..."}
    {"type": "prompt", "prompt": p}        a prompt was accepted
    {"type": "error", "message": m}        bad input (the stream goes on) or a failed stream

``latency_ms`` is the model's compute time per frame (the calls since the last emission over the
chunk's frames). Bad input is answered with an error message; nothing a client sends stops the server.
Run it with ``streamdit serve``.
"""

from __future__ import annotations

import asyncio
import base64
import html
import io
import json
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI, WebSocket
from fastapi.responses import HTMLResponse
from PIL import Image

from streamdit.streaming import Streamer
from streamdit.text import TextEmbedding, check_caption
from streamdit.video import to_uint8

PAGE = Path(__file__).parent / "web" / "index.html"


def png_data_url(frame) -> str:
    """A uint8 ``[h, w, 3]`` frame as a PNG data URL (lossless, so the page shows the exact pixels)."""
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def parse_prompt_message(raw: str | None) -> str:
    """The prompt of a client message ``{"prompt": "..."}``; ValueError says what is wrong with it."""
    if raw is None:
        raise ValueError('send text messages of the form {"prompt": "..."}, not binary ones')
    try:
        message = json.loads(raw)
    except json.JSONDecodeError:
        raise ValueError(f'messages are JSON {{"prompt": "..."}}, got {raw[:80]!r}') from None
    if not isinstance(message, dict) or "prompt" not in message:
        raise ValueError(f'messages are JSON {{"prompt": "..."}}, got {raw[:80]!r}')
    return check_caption(message["prompt"])


class StreamThread:
    """One client's endless stream: a thread steps the sampler and hands out frame messages, at most
    ``in_flight`` unsent at a time (so generation waits for a slow client) and ``max_fps`` per second."""

    def __init__(
        self,
        streamer: Streamer,
        prompt: str,
        seed: int,
        max_fps: float,
        loop: asyncio.AbstractEventLoop,
        in_flight: int = 2,
    ):
        self.sampler = streamer.sampler(prompt, seed)
        self.prompt = prompt
        self.pending: tuple[str, TextEmbedding] | None = None
        self.lock = threading.Lock()
        self.period = 1.0 / max_fps if max_fps > 0 else 0.0
        self.loop = loop
        self.out: asyncio.Queue[dict] = asyncio.Queue()
        self.credits = threading.Semaphore(in_flight)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="streamdit-live", daemon=True)
        self.thread.start()

    def switch(self, prompt: str, text: TextEmbedding) -> None:
        """Use ``text`` from the next model call on."""
        with self.lock:
            self.pending = (prompt, text)

    def stop(self) -> None:
        """Tell the generator thread to end; returns at once (the thread ends within one model call)."""
        self.stopped.set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the generator thread to end; True if it has."""
        self.thread.join(timeout)
        return not self.thread.is_alive()

    async def messages(self) -> AsyncIterator[dict]:
        """The stream's messages in order; a credit returns when the next one is asked for (this one sent)."""
        while True:
            yield await self.out.get()
            self.credits.release()

    def _hand_over(self, message: dict) -> bool:
        """Queue ``message`` for the client once a credit is free; False if the stream was stopped."""
        while not self.stopped.is_set():
            if self.credits.acquire(timeout=0.1):
                self.loop.call_soon_threadsafe(self.out.put_nowait, message)
                return True
        return False

    def _run(self) -> None:
        compute, due = 0.0, time.perf_counter()
        try:
            while not self.stopped.is_set():
                with self.lock:
                    pending, self.pending = self.pending, None
                if pending is not None:
                    self.prompt, text = pending
                    self.sampler.set_text(text)
                start = time.perf_counter()
                chunk = self.sampler.step()
                compute += time.perf_counter() - start
                if chunk is None:
                    continue
                frames = to_uint8(chunk[0])
                latency_ms, compute = 1000 * compute / len(frames), 0.0
                first = self.sampler.emitted - len(frames)
                for j, frame in enumerate(frames):
                    # At most max_fps frames per second: wait for this frame's slot.
                    due = max(due + self.period, time.perf_counter())
                    self.stopped.wait(max(0.0, due - time.perf_counter()))
                    message = {
                        "type": "frame",
                        "index": first + j,
                        "prompt": self.prompt,
                        "latency_ms": round(latency_ms, 3),
                        "image": png_data_url(frame),
                    }
                    if not self._hand_over(message):
                        return
        except Exception as err:  # a failed stream tells its client; the server and other streams go on
            self._hand_over({"type": "error", "message": f"the stream stopped: {err}"})


def create_app(streamer: Streamer, default_prompt: str, *, seed: int = 0, max_fps: float = 30.0) -> FastAPI:
    """The demo app streaming ``streamer``'s model; the page starts with ``default_prompt``."""
    check_caption(default_prompt)
    if max_fps < 0:
        raise ValueError(f"max_fps must be >= 0 (0 = no limit), got {max_fps}")
    page = PAGE.read_text().replace("__DEFAULT_PROMPT__", html.escape(default_prompt, quote=True))
    app = FastAPI(title="StreamDiT live")
    app.state.streams = set()  # the LiveStreams of the connected clients, each removed once it has ended

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page

    @app.websocket("/ws")
    async def stream_socket(websocket: WebSocket) -> None:
        await websocket.accept()
        lock = asyncio.Lock()  # one message at a time: frames and replies come from two tasks

        async def send(message: dict) -> None:
            async with lock:
                await websocket.send_json(message)

        async def forward(stream: StreamThread) -> None:
            async for message in stream.messages():
                await send(message)

        stream, forwarder = None, None
        try:
            while True:
                received = await websocket.receive()
                if received["type"] == "websocket.disconnect":
                    break
                try:
                    prompt = parse_prompt_message(received.get("text"))
                    text = streamer.encode(prompt)
                except ValueError as err:
                    await send({"type": "error", "message": str(err)})
                    continue
                if stream is None:
                    stream = StreamThread(streamer, prompt, seed, max_fps, asyncio.get_running_loop())
                    app.state.streams.add(stream)
                    forwarder = asyncio.create_task(forward(stream))
                else:
                    stream.switch(prompt, text)
                await send({"type": "prompt", "prompt": prompt})
        finally:
            # Stop the generator before the first await: when the client goes, the server may cancel
            # this handler, and a cancelled await here would otherwise leave the thread running forever.
            if stream is not None:
                stream.stop()
            if forwarder is not None:
                forwarder.cancel()
            if stream is not None:
                # Shielded: even if this handler is cancelled while waiting, the join goes on and the
                # stream leaves the registry once its thread has ended.
                await asyncio.shield(asyncio.to_thread(retire, stream))
            if forwarder is not None:
                await asyncio.gather(forwarder, return_exceptions=True)  # it may have failed: client gone

    def retire(stream: StreamThread) -> None:
        """Wait for ``stream``'s thread to end, then forget it (runs in a worker thread)."""
        stream.join()
        app.state.streams.discard(stream)

    return app
