import numpy as np
import pytest
import torch

from streamdit.metrics import bootstrap_ci
from streamdit.report import BASELINES, PAPER_FPS, claim_lines, compare_intervals


def row(measure="long_fvd", low=0.0, high=1.0, **values):
    """A comparison row holding one measure's bootstrap interval."""
    return {f"{measure}_low": low, f"{measure}_high": high, **values}


def interval_row(values, seed, measure="long_fvd"):
    """A row whose interval is the 95% bootstrap interval of the mean of ``values``."""
    low, high = bootstrap_ci(values, torch.Generator().manual_seed(seed), n_boot=500)
    return row(measure, low, high)


@pytest.mark.parametrize(
    "a, b, lower_is_better, verdict",
    [
        ((1.0, 2.0), (3.0, 4.0), True, "better"),  # a's whole interval below b's, lower wins
        ((1.0, 2.0), (3.0, 4.0), False, "worse"),
        ((3.0, 4.0), (1.0, 2.0), True, "worse"),
        ((3.0, 4.0), (1.0, 2.0), False, "better"),
        ((1.0, 3.0), (2.0, 4.0), True, "indistinguishable"),  # overlapping
        ((1.0, 5.0), (2.0, 3.0), False, "indistinguishable"),  # one inside the other
        ((1.0, 2.0), (2.0, 3.0), True, "indistinguishable"),  # touching ends overlap at one point
        ((1.0, 2.0), (1.0, 2.0), False, "indistinguishable"),  # the same interval
    ],
)
def test_intervals_decide_only_when_they_are_disjoint(a, b, lower_is_better, verdict):
    assert compare_intervals(row("m", *a), row("m", *b), "m", lower_is_better) == verdict


def test_the_verdict_reads_only_the_named_measure():
    a = {**row("long_fvd", 1.0, 2.0), **row("clip_score", 10.0, 20.0)}
    b = {**row("long_fvd", 3.0, 4.0), **row("clip_score", 15.0, 25.0)}
    assert compare_intervals(a, b, "long_fvd", lower_is_better=True) == "better"
    assert compare_intervals(a, b, "clip_score", lower_is_better=False) == "indistinguishable"


def test_a_known_effect_is_found_and_no_effect_is_not():
    """Bootstrap intervals of per-prompt scores (400 prompts, sd 1): a mean shifted by 0.5 is resolved
    both ways; two samples of one distribution are not. Measured over these seeds: intervals 0.18-0.20
    wide, 0.24-0.33 apart with the shift, overlapping by 0.14-0.18 without it."""
    for seed in range(5):
        rng = np.random.default_rng(seed)
        base = rng.standard_normal(400)
        shifted = rng.standard_normal(400) + 0.5
        a, b = interval_row(base, seed), interval_row(shifted, seed)
        assert compare_intervals(a, b, "long_fvd", lower_is_better=True) == "better", seed
        assert compare_intervals(b, a, "long_fvd", lower_is_better=True) == "worse", seed
        assert compare_intervals(a, b, "long_fvd", lower_is_better=False) == "worse", seed
        same = interval_row(rng.standard_normal(400), seed)
        assert compare_intervals(a, same, "long_fvd", lower_is_better=True) == "indistinguishable", seed
        assert compare_intervals(same, a, "long_fvd", lower_is_better=False) == "indistinguishable", seed


def method_row(fvd, fvd_ci, clip, clip_ci, first=10.0, last=10.0):
    return {
        "long_fvd": fvd,
        "long_fvd_low": fvd_ci[0],
        "long_fvd_high": fvd_ci[1],
        "clip_score": clip,
        "clip_score_low": clip_ci[0],
        "clip_score_high": clip_ci[1],
        "fvd_first_clip": first,
        "fvd_last_clip": last,
    }


def evaluation(fvd, nfe, fps, device="cpu"):
    """An ``evaluate_model`` dict of one scheme, as far as ``claim_lines`` reads it."""
    latency = {"nfe_per_frame": nfe, "frames_per_second": fps, "device": device}
    return {"schemes": {"K0-N2-c4-s8": {"fvd": fvd, "latency": latency}}}


def test_claim_lines_give_each_baseline_its_verdicts():
    rows = {
        "mixed": method_row(50.0, (40.0, 60.0), 30.0, (28.0, 32.0), first=40.0, last=60.0),
        "uniform_extension": method_row(90.0, (80.0, 100.0), 30.5, (29.0, 33.0)),  # worse FVD, same CLIP
        "fifo": method_row(30.0, (20.0, 35.0), 20.0, (18.0, 22.0)),  # better FVD, worse CLIP
        "diffusion_forcing": method_row(55.0, (45.0, 70.0), 36.0, (34.0, 38.0)),  # same FVD, better CLIP
    }
    teacher, student = evaluation(10.0, 4.0, 5.0), evaluation(11.0, 0.25, 2 * PAPER_FPS)
    distill = {"teacher_scheme": "K0-N2-c4-s8", "student_scheme": "K0-N2-c4-s1"}
    lines = claim_lines(rows, student, teacher, distill)
    verdicts = {name: line for name in BASELINES for line in lines if f"StreamDiT beats **{name}**" in line}
    assert set(verdicts) == {"uniform_extension", "fifo", "diffusion_forcing"}  # uniform_clips: no row
    assert "50.0 vs 90.0 (**better**)" in verdicts["uniform_extension"]
    assert "30.0 vs 30.5 (**indistinguishable**)" in verdicts["uniform_extension"]
    assert "50.0 vs 30.0 (**worse**)" in verdicts["fifo"] and "30.0 vs 20.0 (**better**)" in verdicts["fifo"]
    assert "(**indistinguishable**), CLIP" in verdicts["diffusion_forcing"]
    assert "30.0 vs 36.0 (**worse**)" in verdicts["diffusion_forcing"]
    assert any("= 1.50 (1 means none" in line for line in lines)  # drift: last window / first
    assert any("NFE per frame 4 -> 0.25" in line and "(**+10%**" in line for line in lines)
    assert any(f"streams {2 * PAPER_FPS:.1f} frames/s on cpu (above" in line for line in lines)
    slow = claim_lines(rows, evaluation(11.0, 0.25, PAPER_FPS / 2), teacher, distill)
    assert any("(below the paper's" in line for line in slow)


def test_without_the_mixed_model_no_baseline_claim_is_made():
    rows = {"fifo": method_row(30.0, (20.0, 35.0), 20.0, (18.0, 22.0))}
    distill = {"teacher_scheme": "K0-N2-c4-s8", "student_scheme": "K0-N2-c4-s1"}
    lines = claim_lines(rows, evaluation(1.0, 1.0, 1.0), evaluation(1.0, 2.0, 1.0), distill)
    assert len(lines) == 2 and not any("beats" in line or "drift" in line for line in lines)
