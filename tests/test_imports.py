"""The import graph points one way (STYLE.md 17): inference never reaches a trainer, the trainer never
reaches the sampler, the model reaches only its own pieces, and no front-end imports another."""

from pathlib import Path

import streamdit
from streamdit.pipeline import imported_modules

PACKAGE = Path(streamdit.__file__).parent
TRAINERS = {"train", "distill", "optim", "runs", "evaluator_training"}
INFERENCE = {
    "sampling", "streaming", "handoff", "v2v", "evaluate", "latency", "checkpoint", "evaluators", "clip",
    "cli", "server", "explore",
}  # fmt: skip
FRONT_ENDS = {"cli", "server", "explore"}


def direct(module: str) -> set[str]:
    return imported_modules((PACKAGE / f"{module}.py").read_text()) - {module}


def reachable(module: str) -> set[str]:
    """Every package module ``module`` imports, directly or through others."""
    seen, todo = set(), direct(module)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo |= direct(name) - seen
    return seen


def test_every_module_named_here_exists():
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    assert TRAINERS | INFERENCE <= modules


def test_inference_never_reaches_a_trainer():
    for module in INFERENCE:
        assert not reachable(module) & TRAINERS, f"{module} reaches {sorted(reachable(module) & TRAINERS)}"


def test_the_trainer_never_reaches_the_sampler_and_the_model_only_its_pieces():
    assert "sampling" not in reachable("train")
    assert reachable("model") == {"attention", "flow"}
    for core in ("schedule", "flow", "attention"):
        assert reachable(core) == set(), core


def test_no_front_end_imports_another():
    # The one edge: `streamdit serve` starts the server, a dispatch that shares no logic.
    allowed = {("cli", "server")}
    for module in FRONT_ENDS:
        for other in reachable(module) & FRONT_ENDS:
            assert (module, other) in allowed, f"{module} imports the front-end {other}"
