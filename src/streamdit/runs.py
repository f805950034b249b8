"""What every training loop shares, written once: a run's folder, resume, dvclive, progress, summary.

The main model (``train.py``), distillation (``distill.py``) and the evaluators (``evaluators.py``,
``clip.py``) each keep their own plain loop; a ``Run`` is what they call around it:

    run = Run(root, key, steps=..., desc="train", section="train", batch_size=..., progress=True)
    run.resume(model=model, opt=opt, noise_gen=noise_gen)   # every object whose state a resume needs
    for step in run.steps():                                # 0-based index of the step about to run
        ...one update...
        run.record(loss, lr, grad_norm)                     # history, progress bar, dvclive, checkpoint
    if run.finished:
        run.finish(summary)                                 # summary.json and loss.json beside the checkpoint

A run lives in ``root/key/``; ``key`` hashes everything that determines the result (``config_hash``),
so a killed run resumes where it stopped and runs of different settings never mix. ``root=None`` is a
run that keeps nothing on disk (no checkpoint, no log): it cannot be resumed.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

from streamdit.checkpoint import (
    CHECKPOINT,
    atomic_save,
    read_checkpoint,
    restore_training_state,
    training_state,
)
from streamdit.files import read_json, write_json
from streamdit.progress import progress_bar, rate, show


def config_hash(obj: object) -> str:
    """12 hex digits identifying a JSON-serialisable object (keys sorted): the key that names a run."""
    return hashlib.sha1(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:12]


def read_history(root: str | Path, key: str) -> list[float]:
    """The per-step loss of the finished run ``root/key`` (written by ``Run.finish``)."""
    return read_json(Path(root) / key / "loss.json", "finished run for these settings (loss.json)")


class Run:
    """One resumable training run of ``steps`` steps (see the module docstring).

    ``section`` names the params.yaml section in logs and errors; ``batch_size`` turns steps/s into
    samples/s on the progress bar; ``log_every`` steps the mean loss, lr and gradient norm go to
    dvclive; every ``checkpoint_every`` steps (and at the end) the state is checkpointed. ``is_main``:
    False on the other ranks of a distributed run, which record the history and nothing else.
    ``meta`` is stored with every checkpoint (e.g. the config, for a reader).
    """

    def __init__(
        self,
        root: str | Path | None,
        key: str,
        *,
        steps: int,
        desc: str,
        section: str,
        batch_size: int,
        progress: bool,
        log_every: int = 10,
        checkpoint_every: int = 200,
        is_main: bool = True,
        meta: dict | None = None,
    ):
        self.dir = None if root is None else Path(root) / key
        if self.dir is not None:
            self.dir.mkdir(parents=True, exist_ok=True)
        self.key, self.total, self.desc, self.section = key, steps, desc, section
        self.batch_size, self.log_every, self.checkpoint_every = batch_size, log_every, checkpoint_every
        self.progress, self.is_main, self.meta = progress, is_main, meta or {}
        self.step, self.history, self.elapsed = 0, [], 0.0
        self.objects: dict[str, object] = {}
        self.live = self.bar = None

    @property
    def checkpoint(self) -> Path | None:
        """The checkpoint file (None for a run without a folder)."""
        return None if self.dir is None else self.dir / CHECKPOINT

    @property
    def finished(self) -> bool:
        return self.step >= self.total

    def resume(self, **objects: object) -> int:
        """Register the objects a checkpoint holds (modules, optimisers, generators, data order) and load
        the run's checkpoint into them if there is one. Returns the step to continue from."""
        self.objects = objects
        if self.checkpoint is not None and self.checkpoint.is_file():
            state = read_checkpoint(self.checkpoint, self.key, list(objects))
            self.step, self.history, self.elapsed = restore_training_state(state, objects)
        return self.step

    def steps(self, stop_after: int | None = None) -> Iterator[int]:
        """The indices of the steps still to run (at most ``stop_after`` of them, as a kill would stop),
        timing each; opens the progress bar and the dvclive log, and closes the bar at the end."""
        if self.is_main and self.dir is not None:
            from dvclive import Live  # dvclive is slow to import: only loops that log need it

            # dvcyaml=None: dvclive must not add this run's (work-dir) files to the pipeline's dvc.yaml.
            self.live = Live(
                str(self.dir / "dvclive"), resume=self.step > 0, save_dvc_exp=False, dvcyaml=None
            )
        self.bar = progress_bar(self.total, self.desc, self.progress and self.is_main, initial=self.step)
        last = self.total if stop_after is None else min(self.total, self.step + stop_after)
        while self.step < last:
            start = time.perf_counter()
            yield self.step
            self.elapsed += time.perf_counter() - start
        self.bar.close()
        if not self.finished and self.live is not None:
            self.live.end()

    def record(self, loss: float, lr: float | None = None, grad_norm: float | None = None) -> None:
        """Close a step: its loss joins the history; on the main rank the progress bar shows loss, lr
        and samples/s, dvclive gets the means every ``log_every`` steps, and the checkpoint is written
        when due."""
        self.step += 1
        self.history.append(float(loss))
        if not self.is_main:
            return
        self.bar.update(1)
        steps_per_second = rate(self.bar)
        samples = "-" if steps_per_second is None else f"{steps_per_second * self.batch_size:.1f}"
        fields = {"loss": f"{self.history[-1]:.4f}", "samples_per_s": samples}
        if lr is not None:
            fields["lr"] = f"{lr:.1e}"
        show(self.bar, **fields)
        if self.live is not None and (self.step % self.log_every == 0 or self.finished):
            recent = self.history[-self.log_every :]
            self.live.log_metric(f"{self.section}/loss", sum(recent) / len(recent))
            for name, value in (("lr", lr), ("grad_norm", grad_norm)):
                if value is not None:
                    self.live.log_metric(f"{self.section}/{name}", value)
            self.live.next_step()
        if self.checkpoint is not None and (self.step % self.checkpoint_every == 0 or self.finished):
            state = training_state(self.objects, self.step, self.history, self.elapsed, self.key, **self.meta)
            atomic_save(state, self.checkpoint)

    def loss_ends(self) -> tuple[float, float]:
        """Mean loss of the first and of the last max(1, min(50, steps // 10)) steps."""
        k = max(1, min(50, len(self.history) // 10))
        return sum(self.history[:k]) / k, sum(self.history[-k:]) / k

    def finish(self, summary: dict) -> dict:
        """Write ``summary.json`` and the loss history ``loss.json`` into the run's folder, end the log;
        returns ``summary``."""
        if self.dir is not None:
            write_json(summary, self.dir / "summary.json")
            write_json(self.history, self.dir / "loss.json", indent=None)
        if self.live is not None:
            self.live.end()
        return summary
