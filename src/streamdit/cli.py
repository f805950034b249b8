"""The ``streamdit`` command: stream text-to-video, re-generate a video, measure a prompt switch, serve
the live web demo. Every subcommand loads a trained model (``--model``) with the sampling settings
stored in it; see ``streamdit <command> --help``.

    streamdit stream --prompt "a red circle moving left" --frames 64 --out red.mp4
    streamdit stream --timeline prompts.txt --frames 0 --out - | ffplay -f rawvideo ...
    streamdit v2v --input clip.mp4 --prompt "a blue square bouncing" --strength 0.6 --out blue.mp4
    streamdit switch --prompt "a red circle" --to "a blue square" --at 16 --after 32
    streamdit serve --model models/student.pt --distilled --start-from models/streamdit.pt
"""

from __future__ import annotations

import argparse
import json
import socket
import sys

from streamdit.handoff import started_by
from streamdit.schedule import CONTEXTS, STARTUPS, parse_scheme
from streamdit.streaming import (
    Streamer,
    follow_timeline,
    load_streamer,
    measure_switch,
    read_timeline,
    summary_line,
    write_stream,
)
from streamdit.text import check_caption
from streamdit.v2v import VideoToVideo, video_frames
from streamdit.video import make_sink


def streamer_from(args: argparse.Namespace) -> Streamer:
    """The model of ``--model`` with the scheme, guidance and device of the arguments; ``--seed`` and
    ``--fps`` default to the values stored with the model."""
    scheme = parse_scheme(args.scheme) if args.scheme else None
    start_from = "start_from" in args and args.start_from
    if start_from and args.startup != "staggered":
        raise ValueError("--start-from fills the first buffer from the starter's clip: drop --startup")
    streamer = load_streamer(args.model, scheme=scheme, distilled=args.distilled, cfg_scale=args.cfg_scale,
                             startup=args.startup, context=args.context, device=args.device)  # fmt: skip
    if start_from:
        streamer = started_by(streamer, load_streamer(args.start_from, device=args.device))
    elif args.distilled and streamer.config.get("distill", {}).get("startup_prob") == 0:
        print(
            "note: this student was distilled without start-up buffers (distill.startup_prob 0), so a "
            "stream's first calls from noise are outside its training; --start-from TEACHER starts it "
            "from its teacher's clip, as the study does",
            file=sys.stderr,
        )
    sample = streamer.config["sample"]
    if args.seed is None:
        args.seed = sample["seed"]
    if "fps" in args and args.fps is None:
        args.fps = sample["fps"]
    return streamer


def stream_command(args: argparse.Namespace) -> dict:
    if (args.prompt is None) == (args.timeline is None):
        raise ValueError("give either --prompt or --timeline")
    timeline = read_timeline(args.timeline) if args.timeline else [(0, check_caption(args.prompt))]
    if args.frames < 0:
        raise ValueError(f"--frames must be >= 0 (0 = endless), got {args.frames}")
    endless = args.endless or args.frames == 0
    streamer = streamer_from(args)
    sink = make_sink(args.out, args.fps, args.scale, endless)
    sampler = streamer.sampler(timeline[0][1], args.seed)
    chunks = follow_timeline(sampler, timeline, streamer.encode)
    stats = write_stream(chunks, sink, None if endless else args.frames, progress=not args.quiet)
    print(summary_line(stats, streamer), file=sys.stderr)
    return stats


def v2v_command(args: argparse.Namespace) -> dict:
    prompt = check_caption(args.prompt)
    streamer = streamer_from(args)
    sink = make_sink(args.out, args.fps, args.scale, endless=False)
    v2v = VideoToVideo(
        streamer.sampler(prompt, args.seed),
        video_frames(args.input, streamer.resolution, resize=args.resize),
        args.strength,
    )
    stats = write_stream(((chunk, prompt) for chunk in v2v.chunks()), sink, None, progress=not args.quiet)
    stats["start_level"] = v2v.start_level
    print(f"{summary_line(stats, streamer)}; input noised to level {v2v.start_level:.3g}", file=sys.stderr)
    return stats


def switch_command(args: argparse.Namespace) -> dict:
    streamer = streamer_from(args)
    result = measure_switch(
        streamer,
        args.prompt,
        args.to,
        switch_frame=args.at,
        after=args.after,
        seed=args.seed,
        threshold=args.threshold,
    )
    print(json.dumps(result))
    reached = "" if result["reached"] else f" (not reached within {args.after} frames)"
    print(
        f"switch at frame {result['switch_at']}: the stream was closer to the new prompt's own stream "
        f"after {result['frames']} frames{reached}",
        file=sys.stderr,
    )
    return result


def serve_command(args: argparse.Namespace) -> None:
    import uvicorn  # the web demo's dependencies load only for this command

    from streamdit.server import create_app

    streamer = streamer_from(args)
    app = create_app(streamer, args.prompt, seed=args.seed, max_fps=args.max_fps)
    # Bind before announcing: with --port 0 the system picks a free port, and the printed URL is
    # the one that answers (connections made before uvicorn starts wait in the listen queue).
    sock = socket.create_server((args.host, args.port))
    host, port = sock.getsockname()[:2]
    print(f"streamdit live demo on http://{host}:{port}/", file=sys.stderr, flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamdit", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    model = argparse.ArgumentParser(add_help=False)
    model.add_argument("--model", default="models/streamdit.pt", help="a trained model file")
    model.add_argument(
        "--distilled", action="store_true", help="the model is a distilled student: its scheme, no guidance"
    )
    model.add_argument(
        "--scheme",
        help="partition scheme K,N,c,s, or FIFO-Diffusion's FIFO-B8-n2-lookahead "
        "(default: the one stored with the model)",
    )
    model.add_argument("--cfg-scale", type=float, help="guidance scale (default: stored with the model)")
    model.add_argument("--startup", choices=STARTUPS, default="staggered",
                       help="the first buffer: pure noise, or one uniform clip (K = 0)")  # fmt: skip
    model.add_argument(
        "--context",
        choices=CONTEXTS,
        help="the K reference frames: clean, or re-noised with the chunk (a uniform "
        "model's training-free extension, K >= 1, N = 1); default: the model's",
    )
    model.add_argument("--seed", type=int, help="noise seed (default: the model's sample.seed)")
    model.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    video = argparse.ArgumentParser(add_help=False)
    video.add_argument("--out", required=True, help="x.mp4, x.gif, or - for raw uint8 RGB frames on stdout")
    video.add_argument("--fps", type=int, help="frame rate of the written video (default: the model's)")
    video.add_argument("--scale", type=int, default=4, help="nearest-neighbour upscale of written frames")
    video.add_argument("--quiet", action="store_true", help="no progress line")

    # The paper's start-up of a distilled student, wherever a stream starts from a prompt (not v2v, whose
    # first buffer is the input video).
    start = argparse.ArgumentParser(add_help=False)
    start.add_argument(
        "--start-from",
        metavar="TEACHER",
        help="a model file whose uniform clip (its stored scheme's grid and guidance) fills the first "
        "buffer: the paper's start-up of a distilled student (K = 0); its grid must refine the stream's, "
        "with the same time shift, text encoder and autoencoder",
    )

    stream = commands.add_parser("stream", parents=[model, start, video], help="stream text-to-video")
    stream.add_argument("--prompt", help="the prompt (or --timeline)")
    stream.add_argument(
        "--timeline", help="a prompt timeline: a text file of 'frame: prompt' lines (or --prompt)"
    )
    stream.add_argument("--frames", type=int, default=64, help="frames to write; 0 = endless (Ctrl-C stops)")
    stream.add_argument("--endless", action="store_true", help="the same as --frames 0")
    stream.set_defaults(run=stream_command)

    v2v = commands.add_parser("v2v", parents=[model, video], help="re-generate a video under a prompt")
    v2v.add_argument("--input", required=True, help="the input video (any format FFmpeg reads)")
    v2v.add_argument("--prompt", required=True)
    v2v.add_argument(
        "--strength",
        type=float,
        default=0.6,
        help="level in (0, 1] the input is noised to: small keeps it, 1 ignores it",
    )
    v2v.add_argument("--resize", action="store_true", help="centre-crop and scale frames to the model's size")
    v2v.set_defaults(run=v2v_command)

    switch = commands.add_parser(
        "switch", parents=[model, start], help="measure how many frames a prompt switch takes"
    )
    switch.add_argument("--prompt", required=True, help="the prompt before the switch")
    switch.add_argument("--to", required=True, help="the prompt after the switch")
    switch.add_argument("--at", type=int, default=16, help="switch once this many frames are out")
    switch.add_argument("--after", type=int, default=32, help="frames to follow after the switch")
    switch.add_argument("--threshold", type=float, default=0.5, help="progress from A's to B's stream")
    switch.set_defaults(run=switch_command)

    serve = commands.add_parser("serve", parents=[model, start], help="the live web demo on localhost")
    serve.add_argument(
        "--prompt", default="a large yellow square moving up on a navy background", help="the first prompt"
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000, help="0: any free port (the URL printed says which)")
    serve.add_argument("--max-fps", type=float, default=30.0, help="frames per second at most; 0 = no limit")
    serve.set_defaults(run=serve_command)
    return parser


def main(argv: list[str] | None = None) -> None:
    """The console entry point: run the command; bad input ends with its message and exit status 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except (ValueError, FileNotFoundError) as err:
        parser.exit(2, f"streamdit {args.command}: error: {err}\n")


if __name__ == "__main__":
    main()
