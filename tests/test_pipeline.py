"""The whole smoke pipeline through `make data` and `dvc repro` in a temporary copy of the repository."""

import csv
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def run(cmd, cwd, env):
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def smoke_repo(tmp_path_factory):
    if shutil.which("make") is None or shutil.which("git") is None:
        pytest.fail("the pipeline test needs make and git on PATH")
    repo = tmp_path_factory.mktemp("pipeline") / "repo"
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    for name in files.split():
        if (ROOT / name).is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, repo / name)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["profile"] = "smoke"
    params["methods_run"] = params["profiles"]["smoke"]["methods"]["run"]  # dvc.yaml's foreach reads it
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    bin_dir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PATH": bin_dir + os.pathsep + os.environ["PATH"],
        "PYTHONPATH": str(repo / "src"),  # the notebooks' kernels import the copy's library
        "HF_HUB_OFFLINE": "1",
    }
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid"]
    run(["git", "init", "-q"], repo, env)
    run(git + ["add", "-A"], repo, env)
    run(git + ["commit", "-qm", "copy"], repo, env)
    # Regenerates the world from params.yaml and fails unless its bytes match the hash in data.dvc.
    run(["make", "data", f"PY={sys.executable}", f"VENV={Path(sys.executable).parent.parent}"], repo, env)
    run(["dvc", "repro"], repo, env)
    return repo, env


def test_dag_chains_data_train_sample(smoke_repo):
    repo, env = smoke_repo
    dot = run(["dvc", "dag", "--dot"], repo, env)
    edges = set(re.findall(r'"([^"]+)" -> "([^"]+)"', dot))
    assert {("data.dvc", "data"), ("data", "train"), ("train", "sample")} <= edges
    assert {("train", "distill"), ("evaluators", "evaluate"), ("distill", "evaluate_student")} <= edges


def test_repro_twice_runs_nothing(smoke_repo):
    repo, env = smoke_repo
    assert "up to date" in run(["dvc", "status"], repo, env)


def test_stages_write_metrics_and_figures(smoke_repo):
    repo, _ = smoke_repo
    data = json.loads((repo / "metrics/data.json").read_text())
    assert data["train"]["clips"] == yaml.safe_load((repo / "params.yaml").read_text())["data"]["n_train"]
    train = json.loads((repo / "metrics/train.json").read_text())
    assert train["steps"] == 20 and math.isfinite(train["loss_last"])
    sample = json.loads((repo / "metrics/sample.json").read_text())
    assert sample["finite"] and sample["scheme"] == "K0-N2-c4-s8"
    # scheme (4, 8) with guidance: 8 calls per 4 frames, 2 forward passes each; the start-up adds T calls
    assert sample["nfe_per_frame"] >= 4.0
    for figure in (
        "reports/data/train_strip.png",
        "reports/train/loss.png",
        "reports/samples/sample_strip.png",
    ):
        assert (repo / figure).stat().st_size > 1000
    assert (repo / "samples/streamdit/stream_0.mp4").stat().st_size > 0


def test_evaluation_and_distillation_metrics(smoke_repo):
    repo, _ = smoke_repo
    evaluators = json.loads((repo / "metrics/evaluators.json").read_text())
    assert 0 <= evaluators["clip"]["test_retrieval"]["top1"] <= 1
    teacher = json.loads((repo / "metrics/evaluate.json").read_text())
    student = json.loads((repo / "metrics/evaluate_student.json").read_text())
    assert set(teacher["schemes"]) == {"K0-N2-c4-s8"} and set(student["schemes"]) == {"K0-N2-c4-s1"}
    for metrics in (teacher, student):
        for m in metrics["schemes"].values():
            assert math.isfinite(m["fvd"]) and m["latency"]["frames_per_second"] > 0
    assert math.isfinite(teacher["real"]["fvd_floor"])
    # guided teacher (4, 8): 2 calls per frame x 2 passes; unguided student (4, 1): 1 call per 4 frames
    assert teacher["schemes"]["K0-N2-c4-s8"]["latency"]["nfe_per_frame"] == 4.0
    assert student["schemes"]["K0-N2-c4-s1"]["latency"]["nfe_per_frame"] == 0.25
    distill = json.loads((repo / "metrics/distill.json").read_text())
    assert distill["distill"]["nfe_reduction"] == 16.0
    assert "Student FVD is" in (repo / "reports/distill_evaluation/teacher_vs_student.md").read_text()


def test_methods_are_compared_in_one_table_with_intervals(smoke_repo):
    repo, env = smoke_repo
    params = yaml.safe_load((repo / "params.yaml").read_text())
    methods = params["profiles"]["smoke"]["methods"]["run"]
    dot = run(["dvc", "dag", "--dot"], repo, env)
    for name in methods:
        assert f'"train_method@{name}" -> "evaluate_method@{name}"' in dot
        assert f'"evaluate_method@{name}" -> "compare"' in dot
    with open(repo / "reports/comparison/comparison.csv") as f:
        rows = {row["method"]: row for row in csv.DictReader(f)}
    assert list(rows) == ["real data", *methods, "streamdit_main"]
    for name in methods:
        low, fvd, high = (float(rows[name][k]) for k in ("long_fvd_low", "long_fvd", "long_fvd_high"))
        assert 0 <= low <= high and math.isfinite(fvd) and float(rows[name]["fps"]) > 0
        assert int(rows[name]["train_steps"]) == params["profiles"]["smoke"]["methods"]["train"]["steps"]
    assert rows["fifo"]["model"] == "uniform_extension" and rows["fifo"]["scheme"] == "K0-N8-c1-s2"
    for figure in ("quality_over_length.png", "sample_strips.png"):
        assert (repo / "reports/comparison" / figure).stat().st_size > 1000


def test_report_summarises_every_stage(smoke_repo):
    repo, _ = smoke_repo
    report = (repo / "reports/README.md").read_text()
    for section in (
        "## Run",
        "## What the paper claims",
        "## StreamDiT against the baselines",
        "## Ablations",
        "## Teacher against distilled student",
        "## Latency",
        "## Figures",
    ):
        assert section in report, section
    train = json.loads((repo / "metrics/train.json").read_text())
    assert "Profile: **smoke**" in report and f"{train['parameters']:,} parameters" in report
    assert train["machine"]["cpu_cores"] >= 1 and train["machine"]["cpu"] in report
    comparison = json.loads((repo / "metrics/comparison.json").read_text())["rows"]
    for row in comparison:  # every method's row, numbers as the compare stage computed them
        assert f"| {row['method']} |" in report and f"{row['long_fvd']:.3g}" in report
    for figure in re.findall(r"!\[[^]]*\]\(([^)]+)\)", report):
        assert (repo / "reports" / figure).stat().st_size > 1000, figure
    assert "switch_strip.png" in report and "quality_over_length.png" in report


def test_dvc_plots_and_experiments(smoke_repo, tmp_path):
    repo, env = smoke_repo
    plots = json.loads(run(["dvc", "plots", "show", "--json", "--split"], repo, env))["data"]
    assert {"reports/train/loss.csv", "reports/comparison/quality_over_length.png"} <= set(plots)
    # An experiment in a copy (the module's repo stays as `dvc repro` left it): a documented knob
    # (README, "Experiments") changes the run and `dvc exp show` lists it.
    copy = tmp_path / "repo"
    shutil.copytree(repo, copy, symlinks=True)
    run(["dvc", "exp", "run", "-S", "profiles.smoke.methods.train.steps=2", "-n", "fewer-steps"], copy, env)
    shown = run(["dvc", "exp", "show", "--csv", "--no-pager"], copy, env)
    assert "fewer-steps" in shown
    train = json.loads((copy / "metrics/methods_train/mixed.json").read_text())
    assert train["steps"] == 2
