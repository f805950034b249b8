"""Writing files safely: every artefact goes through a temporary file and a rename, so an interrupted
run never leaves a torn file behind; JSON in the one format every stage's metrics use."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> Path:
    """Call ``write(f)`` on a temporary file beside ``path`` opened for binary writing, then rename it to
    ``path`` (creating the parent folder). Returns ``path``. The temporary name carries the process id,
    so processes that write the same file at once (e.g. DDP ranks filling one cache) never share it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        write(f)
    os.replace(tmp, path)
    return path


def write_json(obj: object, path: str | Path, indent: int | None = 2) -> Path:
    """``obj`` as JSON with sorted keys and a final newline (``indent`` None: on one line), written
    atomically. Returns ``path``."""
    text = json.dumps(obj, indent=indent, sort_keys=True) + "\n"
    return atomic_write(path, lambda f: f.write(text.encode()))


def read_json(path: str | Path, what: str = "file") -> object:
    """The JSON in ``path``; a missing file raises FileNotFoundError naming ``what`` it should hold."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no {what} at {path}")
    return json.loads(path.read_text())
