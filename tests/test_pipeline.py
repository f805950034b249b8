"""The stage runner, then the whole smoke pipeline through `make data` and `dvc repro` in a temporary copy
of the repository."""

import csv
import json
import math
import os
import re
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from streamdit.checkpoint import load_space
from streamdit.clip import clip_retrieval, load_clip
from streamdit.data import load_split
from streamdit.pipeline import format_seconds, parse_parameter, record_stage_seconds, stage_times, summary
from streamdit.video import read_video

ROOT = Path(__file__).resolve().parents[1]

# The smoke pipeline runs once per module (a few minutes, longer on a loaded machine).
pytestmark = pytest.mark.timeout(1800)


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
    assert {("evaluators", "autoencoder"), ("autoencoder", "train")} <= edges
    assert {("train", "distill"), ("evaluators", "evaluate"), ("distill", "evaluate_student")} <= edges


def test_repro_twice_runs_nothing(smoke_repo):
    repo, env = smoke_repo
    assert "up to date" in run(["dvc", "status"], repo, env)


def test_stages_write_metrics_and_figures(smoke_repo):
    repo, _ = smoke_repo
    data = json.loads((repo / "metrics/data.json").read_text())
    assert data["train"]["clips"] == yaml.safe_load((repo / "params.yaml").read_text())["data"]["n_train"]
    base = json.loads((repo / "metrics/base.json").read_text())
    assert base["steps"] == 20 and base["finetuned_from"] is None
    # 20 steps of the smoke model from scratch already learn: the loss of the first 2 steps against the
    # last 2 falls at least 1.15x (measured 1.49 -> 1.10, 1.36x, before the base stage existed)
    assert base["loss_last"] < base["loss_first"] / 1.15, (base["loss_first"], base["loss_last"])
    train = json.loads((repo / "metrics/train.json").read_text())
    assert train["steps"] == 10 and math.isfinite(train["loss_last"])
    assert train["finetuned_from"]["path"] == "models/base.pt"  # the main model fine-tunes the base
    sample = json.loads((repo / "metrics/sample.json").read_text())
    assert sample["finite"] and sample["scheme"] == "K0-N4-c2-s4"
    # scheme (2, 4) with guidance: 4 calls per 2 frames, 2 forward passes each, in the steady stream;
    # 16 frames are T = 16 calls to the first chunk and 4 for each of the 7 others
    assert sample["nfe_per_frame"] == 4.0 and sample["model_calls"] == 16 + 7 * 4
    for figure in (
        "reports/data/train_strip.png",
        "reports/train/loss.png",
        "reports/samples/sample_strip.png",
    ):
        assert (repo / figure).stat().st_size > 1000
    # sample.frames = 16 decoded frames of 64 px, written 2x upscaled
    assert read_video(repo / "samples/streamdit/stream_0.mp4").shape == (16, 128, 128, 3)


def test_autoencoder_stage_caches_latents_and_measures_reconstructions(smoke_repo):
    repo, _ = smoke_repo
    metrics = json.loads((repo / "metrics/autoencoder.json").read_text())
    latents = np.load(repo / "latents/train.npy", mmap_mode="r")
    assert latents.shape == (2000, 16, 8, 8, 8) and metrics["latent_shape"] == [8, 8, 8]
    # normalised to unit variance per channel over the train split
    assert abs(float(latents[:200].std()) - 1) < 0.2
    for split in ("val", "test"):
        m = metrics[split]
        assert m["clips"] == 200 and math.isfinite(m["psnr_db"])
        assert set(m["accuracy_real"]) == set(m["accuracy_decoded"]) == set(m["accuracy_gap"])
    # the model file records the autoencoder: its space decodes latents to 64-px frames
    space = load_space(repo / "models/streamdit.pt")
    assert space.decode(torch.from_numpy(np.array(latents[:1, :2]))).shape == (1, 2, 3, 64, 64)


def test_evaluation_and_distillation_metrics(smoke_repo):
    repo, _ = smoke_repo
    evaluators = json.loads((repo / "metrics/evaluators.json").read_text())
    # the reported retrieval is that of the CLIP the stage saved (5 smoke steps leave it near chance)
    test_clips, test_records = load_split(repo / "data", "test")
    again = clip_retrieval(
        load_clip(repo / "models/evaluators/clip.pt"),
        test_clips,
        [r["canonical_caption"] for r in test_records],
    )
    reported = evaluators["clip"]["test_retrieval"]
    assert (reported["clips"], reported["captions"]) == (again["clips"], again["captions"])
    assert reported["top1"] == pytest.approx(again["top1"], abs=1 / reported["clips"])  # one tie may flip
    teacher = json.loads((repo / "metrics/evaluate.json").read_text())
    student = json.loads((repo / "metrics/evaluate_student.json").read_text())
    assert set(teacher["schemes"]) == {"K0-N4-c2-s4"} and set(student["schemes"]) == {"K0-N4-c2-s1"}
    # the teacher: T = N * s calls; the student started by it: (T - s) refine = 12 teacher calls, then one
    assert student["started_by"] == "models/streamdit.pt"
    for metrics, calls_to_first_chunk in ((teacher, 16), (student, 13)):
        for m in metrics["schemes"].values():
            latency = m["latency"]
            assert math.isfinite(m["fvd"]) and latency["startup_calls"] == calls_to_first_chunk
            # steady frames over steady time: one over the mean gap per frame (chunks of 2 frames)
            frame_gap = sum(latency["frame_gaps_s"]) / len(latency["frame_gaps_s"])
            assert latency["frames_per_second"] == pytest.approx(1 / frame_gap, rel=1e-2)
    # the real data's ceiling and floor come from real clips alone: the student's evaluation finds the
    # teacher's; both share prompts and noise, so the student's paired differences from it exist
    assert math.isfinite(teacher["real"]["fvd"]) and student["real"] == teacher["real"]
    assert set(student["paired_vs_teacher"]) >= {"caption_mean", "subject_consistency", "fvd", "kid"}
    assert {"drift", "heldout"} <= set(teacher) and evaluators["video_encoder"]["test"]["clips"] == 200
    assert evaluators["video_encoder"]["robustness"]["clips"] == 200
    # guided teacher (2, 4): 2 calls per frame x 2 passes; unguided student (2, 1): 1 call per 2 frames
    assert teacher["schemes"]["K0-N4-c2-s4"]["latency"]["nfe_per_frame"] == 4.0
    assert student["schemes"]["K0-N4-c2-s1"]["latency"]["nfe_per_frame"] == 0.5
    distill = json.loads((repo / "metrics/distill.json").read_text())
    assert distill["distill"]["nfe_reduction"] == 8.0
    fvd_t = teacher["schemes"]["K0-N4-c2-s4"]["long_stream"]["fvd"]
    fvd_s = student["schemes"]["K0-N4-c2-s1"]["long_stream"]["fvd"]
    text = (repo / "reports/distill_evaluation/teacher_vs_student.md").read_text()
    assert f"Student FVD (pooled over windows) is {100 * (fvd_s / fvd_t - 1):+.1f}%" in text
    assert (
        "falls 8.0x" in text
        and "starts from the teacher's uniform clip" in text
        and "## Paired differences, student - teacher" in text
    )


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
        fvd, caption = float(rows[name]["fvd"]), float(rows[name]["caption_mean"])
        assert math.isfinite(fvd)
        # the row holds the numbers of the method's own evaluation
        evaluation = json.loads((repo / f"metrics/methods/{name}.json").read_text())
        (m,) = evaluation["schemes"].values()
        assert [fvd, caption] == [m["long_stream"]["fvd"], m["long_stream"]["caption_mean"]]
        assert float(rows[name]["fps"]) == m["latency"]["frames_per_second"]
        # every method fine-tunes from the base at the main model's budget
        assert int(rows[name]["train_steps"]) == params["profiles"]["smoke"]["train"]["steps"]
        assert evaluation["method"]["finetune_from"] == "models/base.pt"
    assert rows["fifo"]["model"] == "uniform_clips" and rows["fifo"]["scheme"] == "FIFO-B8-n2-lookahead"
    assert rows["reuse"]["model"] == "uniform_clips" and rows["reuse"]["scheme"] == "K4-N1-c4-s16"
    assert (
        float(rows["fifo"]["nfe_per_frame"]) == float(rows["reuse"]["nfe_per_frame"]) == 8
    )  # 4 calls, guided
    # every method gets its paired differences from StreamDiT, the main model, at the same budget
    comparison = json.loads((repo / "metrics/comparison.json").read_text())
    assert comparison["paired_vs"] == "streamdit_main" and set(comparison["paired"]) == set(methods)
    assert "fifo |" in (repo / "reports/comparison/paired.md").read_text()
    # the drift of the causal row (it measures drift in every profile) paired with StreamDiT's
    minus_main = comparison["drift"]["causal"]["minus_main"]
    assert set(minus_main) == {"caption_mean", "caption_shape", "subject_consistency"}
    assert all(d["low"] <= d["diff"] <= d["high"] for d in minus_main.values())
    for figure in ("quality_over_length.png", "sample_strips.png", "drift_over_length.png"):
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
        "## Caption accuracy per attribute",
        "## Latency",
        "## Stage times",
        "## Figures",
    ):
        assert section in report, section
    train = json.loads((repo / "metrics/train.json").read_text())
    assert "Profile: **smoke**" in report and f"{train['parameters']:,} parameters" in report
    assert train["machine"]["cpu_cores"] >= 1 and train["machine"]["cpu"] in report
    comparison = json.loads((repo / "metrics/comparison.json").read_text())["rows"]
    for row in comparison:  # every method's row, numbers as the compare stage computed them
        assert f"| {row['method']} |" in report and f"{row['fvd']:.3g}" in report
    for figure in re.findall(r"!\[[^]]*\]\(([^)]+)\)", report):
        assert (repo / "reports" / figure).stat().st_size > 1000, figure
    assert "switch_strip.png" in report and "quality_over_length.png" in report


def test_dvc_plots_and_experiments(smoke_repo, tmp_path):
    repo, env = smoke_repo
    plots = json.loads(run(["dvc", "plots", "show", "--json", "--split"], repo, env))["data"]
    assert {"reports/train/loss.csv", "reports/comparison/quality_over_length.png"} <= set(plots)
    # An experiment in a copy (the module's repo stays as `dvc repro` left it): a documented knob
    # (docs/pipeline.md) changes the run, `dvc exp show` lists it, and only the stages that read the
    # knob rerun (distillation: the student, its evaluation and the report).
    copy = tmp_path / "repo"
    shutil.copytree(repo, copy, symlinks=True)
    before = {p.relative_to(copy): p.read_bytes() for p in (copy / "metrics").rglob("*.json")}
    run(["dvc", "exp", "run", "-S", "distill.lr=0.0005", "-n", "lower-lr"], copy, env)
    shown = run(["dvc", "exp", "show", "--csv", "--no-pager"], copy, env)
    assert "lower-lr" in shown
    student = torch.load(copy / "models/student.pt", map_location="cpu", weights_only=False)
    assert student["config"]["distill"]["lr"] == 0.0005
    changed = {str(p) for p, data in before.items() if (copy / p).read_bytes() != data}
    assert changed == {"metrics/distill.json", "metrics/evaluate_student.json"}, changed


# The stage runner (streamdit.pipeline) on its own.


def test_the_runner_adds_the_stage_time_to_its_metrics_file(tmp_path):
    metrics = tmp_path / "m.json"
    metrics.write_text(json.dumps({"steps": 3}))
    record_stage_seconds(metrics, 12.345)
    assert json.loads(metrics.read_text()) == {"steps": 3, "stage_seconds": 12.3}
    record_stage_seconds(tmp_path / "none.json", 1.0)  # a stage that wrote no metrics: nothing to add
    record_stage_seconds(None, 1.0)
    assert not (tmp_path / "none.json").exists()


def test_parameters_are_read_as_papermill_reads_them():
    values = ["True", "False", "None", "3", "-2", "0.5", "1e-3", "cpu", "models/a.pt"]
    parsed = [parse_parameter(v) for v in values]
    assert parsed == [True, False, None, 3, -2, 0.5, 1e-3, "cpu", "models/a.pt"]
    assert [type(p) for p in parsed[3:7]] == [int, int, float, float]


def executed(path, end, duration):
    path.write_text(json.dumps({"metadata": {"papermill": {"end_time": end, "duration": duration}}}))


def test_summary_lists_the_stages_that_ran_since_the_start_in_order(tmp_path):
    start = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc).timestamp()
    executed(tmp_path / "train.ipynb", "2026-01-01T12:30:00.5", 1800.5)  # papermill: UTC, no offset
    executed(tmp_path / "data.ipynb", "2026-01-01T12:00:10+00:00", 10.0)
    executed(tmp_path / "old.ipynb", "2026-01-01T11:59:00", 5.0)  # up to date: ran before the start
    (tmp_path / "killed.ipynb").write_text(json.dumps({"metadata": {"papermill": {"end_time": None}}}))
    assert stage_times(tmp_path, start) == [("data", 10.0), ("train", 1800.5)]
    text = summary(tmp_path, start, "reports/README.md", now=start + 3725)
    lines = text.splitlines()
    assert lines[3].split() == ["data", "10.0", "s"]
    assert lines[4].split() == ["train", "30", "min", "00", "s"]
    assert lines[5].split()[:4] == ["total", "1", "h", "02"]
    assert lines[-1] == "report: reports/README.md" and "old" not in text and "killed" not in text
    assert "every stage was up to date" in summary(tmp_path, start + 7200, "r.md", now=start + 7300)


def test_seconds_read_as_a_person_would():
    assert [format_seconds(s) for s in (7.25, 65, 3599, 3660)] == [
        "7.2 s",
        "1 min 05 s",
        "59 min 59 s",
        "1 h 01 min",
    ]
