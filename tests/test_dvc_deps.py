"""dvc.yaml lists, for every stage, exactly the source modules its notebook imports (transitively)."""

import json

import yaml

from streamdit.pipeline import imported_modules, source_deps


def stages() -> dict[str, dict]:
    """dvc.yaml's stages with foreach stages expanded to their ``do`` body (one per stage name)."""
    spec = yaml.safe_load(open("dvc.yaml"))["stages"]
    return {name: stage.get("do", stage) for name, stage in spec.items()}


def notebook_of(stage: dict) -> str:
    """The notebook a stage runs (``python -m streamdit.pipeline run NOTEBOOK ...``)."""
    words = stage["cmd"].split()
    return words[words.index("run") + 1]


def test_every_stage_lists_the_modules_its_notebook_imports_and_no_others():
    for name, stage in stages().items():
        listed = sorted(d for d in stage["deps"] if d.startswith("src/"))
        assert listed == source_deps([notebook_of(stage)]), (
            f"stage {name}: run `python -m streamdit.pipeline deps`"
        )


def test_imports_are_found_in_every_form_and_closed_over_modules(tmp_path):
    source = (
        "import os\nfrom streamdit import flow\nimport streamdit.model as m\n"
        "def f():\n    from streamdit.schedule import Scheme\n"
    )
    assert imported_modules(source) == {"flow", "model", "schedule"}
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "a.py").write_text("from streamdit.b import x\n")
    (package / "b.py").write_text("import streamdit.c\n")
    (package / "c.py").write_text("x = 1\n")
    (package / "unused.py").write_text("")
    notebook = tmp_path / "n.ipynb"
    cell = {"cell_type": "code", "source": ["%matplotlib inline\n", "from streamdit.a import y\n"]}
    notebook.write_text(json.dumps({"cells": [cell]}))
    assert source_deps([notebook], package) == [f"src/streamdit/{m}.py" for m in ("a", "b", "c")]
