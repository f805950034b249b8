"""benchmarks/machine_spread.py: which term a paired difference favours, the pairs set side by side, and
the code and settings compared from two dvc.lock files."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import machine_spread  # noqa: E402


def diff(value: float, low: float, high: float, verdict: str = "no difference") -> dict:
    """A paired difference as ``metrics.paired_difference`` stores it (the verdict from the interval)."""
    return {"diff": value, "low": low, "high": high, "verdict": verdict}


def test_favours_reads_the_side_and_the_direction_of_a_measure():
    assert machine_spread.favours("subject_consistency", diff(-0.05, -0.07, -0.03, "a < b")) == "b"
    assert machine_spread.favours("subject_consistency", diff(0.05, 0.03, 0.07, "a > b")) == "a"
    assert machine_spread.favours("fvd", diff(10.0, 2.0, 20.0, "a > b")) == "b"  # lower FVD is better
    assert machine_spread.favours("fvd", diff(-10.0, -20.0, -2.0, "a < b")) == "a"
    assert machine_spread.favours("caption_mean", diff(0.01, -0.01, 0.03)) == "none"
    assert machine_spread.favours("dynamic_degree", diff(-0.01, -0.03, 0.0)) == "none"  # 0 inside


def test_side_by_side_counts_agreement_and_lists_unmatched_pairs():
    this = {"x - y: fvd": ("x", "y", "fvd", diff(5.0, 1.0, 9.0, "a > b")),
            "x - y: caption_mean": ("x", "y", "caption_mean", diff(0.0, -0.1, 0.1)),
            "only here": ("x", "y", "fvd", diff(0.0, -1.0, 1.0))}  # fmt: skip
    that = {"x - y: fvd": ("x", "y", "fvd", diff(-5.0, -9.0, -1.0, "a < b")),
            "x - y: caption_mean": ("x", "y", "caption_mean", diff(0.01, -0.1, 0.2))}  # fmt: skip
    out = machine_spread.side_by_side(this, that)
    assert list(out["pairs"]) == ["x - y: fvd", "x - y: caption_mean"]  # this run's order
    assert out["pairs"]["x - y: fvd"]["this"]["favours"] == "b"
    assert out["pairs"]["x - y: fvd"]["that"]["favours"] == "a"
    assert not out["pairs"]["x - y: fvd"]["agree"]
    assert out["pairs"]["x - y: caption_mean"]["agree"]
    assert out["unmatched"] == ["only here"]
    table = machine_spread.pair_table(out["pairs"])
    assert "(y better)" in table[2] and "(x better)" in table[2] and "**no**" in table[2]


def test_settings_differences_ignore_data_and_models_but_not_code_or_params():
    def lock(code_md5: str, model_md5: str, lr: float) -> dict:
        deps = [
            {"path": "src/streamdit/train.py", "md5": code_md5},
            {"path": "models/base.pt", "md5": model_md5},
        ]
        return {
            "stages": {"train": {"cmd": "python train", "deps": deps, "params": {"params.yaml": {"lr": lr}}}}
        }

    assert machine_spread.settings_differences(lock("a", "m1", 0.1), lock("a", "m2", 0.1)) == []
    assert machine_spread.settings_differences(lock("a", "m1", 0.1), lock("b", "m1", 0.1)) == ["train"]
    assert machine_spread.settings_differences(lock("a", "m1", 0.1), lock("a", "m1", 0.2)) == ["train"]
