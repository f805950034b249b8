"""Runs the study's notebooks for ``dvc repro`` and sums a run up (``make study``).

``python -m streamdit.pipeline run NOTEBOOK OUTPUT -p NAME VALUE ...`` executes one stage's notebook
through papermill (``-p`` values are read as papermill reads them: ``True``, ``3``, ``0.5``, else a
string). Unlike the bare ``papermill`` command it shows what a person watching the terminal needs:

- the kernel's stderr, where the library's progress bars write (``streamdit.progress``), goes to
  this process's stderr as it arrives, so training shows step, loss, samples/s and ETA live;
- papermill's cell counter ("Executing: 17% 1/6 [cells]"), which sits still for the whole of a long
  cell, is off;
- the kernel's own log is limited to critical messages. It otherwise prints a warning about
  unencrypted TCP on every start (the kernel talks to this process on loopback only) and
  "KeyboardInterrupt caught in kernel" on every normal shutdown (jupyter_client interrupts a kernel
  before shutting it down), both of which read as failures. A failing cell still fails the stage
  with its traceback, and a dead kernel still stops it.

``python -m streamdit.pipeline deps NOTEBOOK ...`` prints the source files a stage depends on: every
``streamdit`` module its notebooks import, directly or through other modules (``source_deps``), the
list each stage's ``deps`` in dvc.yaml holds (tests/test_dvc_deps.py checks it).

The runner adds the stage's wall time to the JSON of its ``metrics_file`` parameter (``stage_seconds``),
from which the report tabulates the study's stage times.

``python -m streamdit.pipeline summary --since EPOCH`` prints, from the executed notebooks' papermill
metadata, the wall time of every stage that ran since ``EPOCH`` (seconds), the total, and where the
report is. The runner is no stage dependency, as papermill itself is none: it decides how a notebook
is shown, not what it computes.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=CRITICAL"]


def parse_parameter(value: str):
    """A ``-p`` value as papermill's command line reads it: bool, int, float or else the string."""
    if value in ("True", "False"):
        return value == "True"
    if value == "None":
        return None
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def run_notebook(notebook: str | Path, output: str | Path, parameters: dict) -> None:
    """Execute ``notebook`` with ``parameters`` into ``output``; the kernel's stderr goes to ours."""
    import papermill

    start = time.perf_counter()  # dvc has printed the command; the runner adds the time it took
    papermill.execute_notebook(
        str(notebook),
        str(output),
        parameters=parameters,
        progress_bar=False,
        stderr_file=sys.stderr,
        extra_arguments=KERNEL_ARGUMENTS,
    )
    seconds = time.perf_counter() - start
    record_stage_seconds(parameters.get("metrics_file"), seconds)
    print(f"stage {Path(output).stem}: done in {format_seconds(seconds)}", file=sys.stderr, flush=True)


def record_stage_seconds(metrics_file: str | Path | None, seconds: float) -> None:
    """Add the stage's wall time (``stage_seconds``) to the metrics JSON its notebook wrote, where the
    report reads every stage's time from (a stage without a metrics file records nothing)."""
    if metrics_file is None or not Path(metrics_file).is_file():
        return
    metrics = json.loads(Path(metrics_file).read_text())
    if isinstance(metrics, dict):
        metrics["stage_seconds"] = round(seconds, 1)
        Path(metrics_file).write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")


def format_seconds(seconds: float) -> str:
    """``seconds`` as ``1 h 02 min``, ``12 min 05 s`` or ``7.3 s``."""
    if seconds >= 3600:
        return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"
    if seconds >= 60:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{seconds:.1f} s"


def stage_times(run_dir: str | Path, since: float) -> list[tuple[str, float]]:
    """``(stage, seconds)`` for every executed notebook in ``run_dir`` that ended after ``since``
    (epoch seconds), in the order they ran; read from papermill's metadata."""
    rows = []
    for path in sorted(Path(run_dir).glob("*.ipynb")):
        meta = json.loads(path.read_text()).get("metadata", {}).get("papermill", {})
        end, duration = meta.get("end_time"), meta.get("duration")
        if end is None or duration is None:
            continue  # never finished
        ended = datetime.fromisoformat(end)
        if ended.tzinfo is None:  # papermill writes UTC without an offset
            ended = ended.replace(tzinfo=timezone.utc)
        ended = ended.timestamp()
        if ended >= since:
            rows.append((ended, path.stem, float(duration)))
    return [(name, seconds) for _, name, seconds in sorted(rows)]


def summary(run_dir: str | Path, since: float, report: str | Path, now: float | None = None) -> str:
    """The closing lines of a study run: the stages that ran since ``since``, their wall times, the
    run's total wall time and where the report is."""
    now = time.time() if now is None else now
    rows = stage_times(run_dir, since)
    lines = ["", "study run summary", "-----------------"]
    if not rows:
        lines.append("no stage ran: every stage was up to date")
    width = max([len(name) for name, _ in rows] + [5])
    lines += [f"{name:<{width}}  {format_seconds(seconds):>14}" for name, seconds in rows]
    lines.append(f"{'total':<{width}}  {format_seconds(now - since):>14}  (wall time, set-up excluded)")
    lines.append(f"report: {report}")
    return "\n".join(lines)


def imported_modules(source: str) -> set[str]:
    """Names of the ``streamdit`` modules that Python ``source`` imports (anywhere, also inside
    functions): ``{"train", "config", ...}``."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "streamdit":
            parts = node.module.split(".")
            found |= {parts[1]} if len(parts) > 1 else {a.name for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("streamdit.")}
    return found


def notebook_source(path: str | Path) -> str:
    """The code cells of a notebook as one Python source (IPython magics and shell lines dropped)."""
    cells = json.loads(Path(path).read_text())["cells"]
    code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    return "\n".join(
        line for line in "\n".join(code).splitlines() if not line.lstrip().startswith(("%", "!"))
    )


def source_deps(notebooks: list[str | Path], package: str | Path = Path(__file__).parent) -> list[str]:
    """The ``package`` modules that ``notebooks`` import, closed over the modules' own imports, as
    sorted paths relative to the repository root (``src/streamdit/<module>.py``)."""
    package = Path(package)
    todo = set().union(*(imported_modules(notebook_source(nb)) for nb in notebooks))
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        path = package / f"{name}.py"
        if not path.is_file():
            raise ValueError(f"a notebook or module imports streamdit.{name}, which {package} does not hold")
        seen.add(name)
        todo |= imported_modules(path.read_text()) - seen
    return sorted(f"src/streamdit/{name}.py" for name in seen)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m streamdit.pipeline", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="execute one stage's notebook")
    run.add_argument("notebook")
    run.add_argument("output")
    run.add_argument(
        "-p", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"), help="a notebook parameter"
    )
    deps = commands.add_parser("deps", help="the source files the notebooks import, transitively")
    deps.add_argument("notebooks", nargs="+")
    sums = commands.add_parser("summary", help="wall time of the stages that ran since --since")
    sums.add_argument("--since", type=float, required=True, help="epoch seconds when the run started")
    sums.add_argument("--run-dir", default="runs/notebooks")
    sums.add_argument("--report", default="reports/README.md")
    args = parser.parse_args(argv)
    if args.command == "run":
        run_notebook(args.notebook, args.output, {name: parse_parameter(v) for name, v in args.p})
    elif args.command == "deps":
        print("\n".join(source_deps(args.notebooks)))
    else:
        print(summary(args.run_dir, args.since, args.report))


if __name__ == "__main__":
    main()
