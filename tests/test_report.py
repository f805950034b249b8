import torch

from streamdit.metrics import mean_of, paired_difference
from streamdit.report import BASELINES, CLAIM_MEASURES, PAPER_FPS, claim_lines


def diff(value, low, high):
    """A paired difference (a - b) with its interval, as ``metrics.paired_difference`` returns it."""
    verdict = "a > b" if low > 0 else "a < b" if high < 0 else "no difference"
    return {"diff": value, "low": low, "high": high, "holds": verdict != "no difference", "verdict": verdict}


def evaluation(fvd, nfe, fps, device="cpu", drift=None):
    """An ``evaluate_model`` dict of one scheme, as far as ``claim_lines`` reads it."""
    latency = {"nfe_per_frame": nfe, "frames_per_second": fps, "device": device}
    out = {"schemes": {"K0-N2-c4-s8": {"long_stream": {"fvd": fvd}, "latency": latency}}}
    if drift is not None:
        change = {"caption_mean": drift, "subject_consistency": diff(0.0, -0.01, 0.01)}
        out["drift"] = {"frames": 256, "prompts": 16, "change": change}
    return out


def same_everywhere(d):
    return {measure: d for measure in CLAIM_MEASURES}


def test_claim_lines_read_the_paired_intervals():
    paired = {
        # the baseline's consistency and dynamic degree below StreamDiT's: StreamDiT better on those
        "fifo": {**same_everywhere(diff(-0.1, -0.15, -0.05)), "fvd": diff(5.0, 2.0, 8.0)},
        "uniform_extension": same_everywhere(diff(0.0, -0.1, 0.1)),  # nothing decided
        "diffusion_forcing": {**same_everywhere(diff(0.1, 0.05, 0.15)), "fvd": diff(-3.0, -5.0, -1.0)},
    }
    comparison = {"paired_vs": "mixed", "paired": paired}
    teacher = evaluation(10.0, 4.0, 5.0, drift=diff(-0.2, -0.3, -0.1))
    student = {
        **evaluation(11.0, 0.25, 2 * PAPER_FPS),
        "paired_vs_teacher": {"caption_mean": diff(-0.02, -0.05, 0.01)},
    }
    distill = {"teacher_scheme": "K0-N2-c4-s8", "student_scheme": "K0-N2-c4-s1"}
    lines = claim_lines(comparison, student, teacher, distill)
    verdicts = {name: line for name in BASELINES for line in lines if f"StreamDiT beats **{name}**" in line}
    assert set(verdicts) == {"fifo", "uniform_extension", "diffusion_forcing"}  # uniform_clips: no row
    assert "subject_consistency -0.1 [-0.15, -0.05] (**StreamDiT better**)" in verdicts["fifo"]
    assert "fvd +5 [+2, +8] (**StreamDiT better**)" in verdicts["fifo"]  # the baseline's FVD is higher
    assert verdicts["uniform_extension"].count("no difference") == len(CLAIM_MEASURES)
    assert "dynamic_degree +0.1 [+0.05, +0.15] (**StreamDiT worse**)" in verdicts["diffusion_forcing"]
    assert "fvd -3 [-5, -1] (**StreamDiT worse**)" in verdicts["diffusion_forcing"]
    assert any("Not tested at this profile" in line for line in lines)  # no single_* rows
    assert any("caption accuracy -0.2 [-0.3, -0.1]" in line and "**drifts**" in line for line in lines)
    assert any(
        "NFE per frame 4 -> 0.25" in line and "-2 [-5, +1] points" in line and "+10%" in line
        for line in lines
    )
    assert any(f"streams {2 * PAPER_FPS:.1f} frames/s on cpu (above" in line for line in lines)
    slow = claim_lines(comparison, {**student, **evaluation(11.0, 0.25, PAPER_FPS / 2)}, teacher, distill)
    assert any("(below the paper's" in line for line in slow)


def test_a_paired_known_effect_reaches_the_claim_and_no_effect_does_not():
    """A baseline (or single-scheme model) whose per-prompt subject consistency is 0.05 below StreamDiT's
    on every prompt (up to small noise) loses the claim; an identical one decides nothing."""
    g = torch.Generator().manual_seed(0)
    ours = torch.rand(64, generator=g)
    worse = ours - 0.05 + 0.01 * torch.randn(64, generator=g)
    same = ours + 0.01 * torch.randn(64, generator=g)
    paired = {
        name: same_everywhere(
            paired_difference(mean_of(v), mean_of(ours), 64, torch.Generator().manual_seed(1), 300)
        )
        for name, v in (("fifo", worse), ("uniform_extension", same), ("single_c2", worse))
    }
    distill = {"teacher_scheme": "K0-N2-c4-s8", "student_scheme": "K0-N2-c4-s1"}
    lines = claim_lines(
        {"paired_vs": "mixed", "paired": paired},
        evaluation(1.0, 1.0, 1.0),
        evaluation(1.0, 2.0, 1.0),
        distill,
    )
    fifo = next(line for line in lines if "**fifo**" in line)
    assert "subject_consistency" in fifo and "(**StreamDiT better**)" in fifo.split(";")[0]
    uniform = next(line for line in lines if "**uniform_extension**" in line)
    assert "(**no difference**)" in uniform.split(";")[0]
    single = next(line for line in lines if "single_c2 - mixed" in line)
    assert "at least as good as one scheme" in single and "(**mixed better**)" in single.split(";")[0]


def test_without_the_paired_comparison_no_baseline_claim_is_made():
    distill = {"teacher_scheme": "K0-N2-c4-s8", "student_scheme": "K0-N2-c4-s1"}
    lines = claim_lines({"rows": []}, evaluation(1.0, 1.0, 1.0), evaluation(1.0, 2.0, 1.0), distill)
    assert not any("beats" in line or "drift" in line for line in lines)


def test_the_latent_space_section_shows_what_decoding_loses():
    from streamdit.report import autoencoder_lines

    test = {"psnr_db": 29.57, "clips": 200, "accuracy_real": {"shape": 0.985, "colour": 1.0},
            "accuracy_decoded": {"shape": 0.6675, "colour": 1.0}}  # fmt: skip
    lines = autoencoder_lines({"kind": "world", "latent_shape": [8, 8, 8], "test": test})
    assert "29.6 dB" in lines[2] and "8x8x8" in lines[2]
    assert lines[4] == "| clips | shape | colour |"
    assert lines[6:8] == ["| real | 0.985 | 1.000 |", "| decoded | 0.667 | 1.000 |"]


def test_the_run_section_says_how_the_classifier_was_trained_and_what_it_survives():
    from streamdit.report import robustness_text

    robust = {"split": "val", "clips": 200, "softened": {"shape": 0.97}, "halved": {"shape": 0.955}}
    text = robustness_text({"video_encoder": {"degraded": 0.75, "robustness": robust}})
    assert "75% of its clips softened or halved" in text
    assert "softened 0.970 and halved 0.955 val clips" in text
    assert "exact edges only" in robustness_text({"video_encoder": {"degraded": 0.0, "robustness": robust}})


def test_stage_times_come_from_each_stages_metrics_and_add_up(tmp_path):
    import json

    from streamdit.report import STAGE_FILES, stage_time_lines

    for k, (_, name) in enumerate(STAGE_FILES):
        (tmp_path / name).write_text(json.dumps({"stage_seconds": 60.0 * (k + 1)}))
    for folder in ("methods", "methods_train"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "fifo.json").write_text(json.dumps({"stage_seconds": 30.0}))
    (tmp_path / "comparison.json").write_text(json.dumps({"rows": []}))  # recorded before stage times
    lines = stage_time_lines(tmp_path, ["fifo"])
    total = sum(60.0 * (k + 1) for k in range(len(STAGE_FILES))) + 60.0
    assert "| base | 4.0 |" in lines and "| train_method@fifo | 0.5 |" in lines
    assert f"| **sum** | **{total / 60:.1f}** |" in lines
    assert any(line.startswith("Not recorded") and line.endswith("compare.") for line in lines)
    assert not any(line.startswith("Resumed") for line in lines)  # every training ran within its stage


def test_a_stage_that_resumed_a_finished_training_is_named_with_its_training_time(tmp_path):
    import json

    from streamdit.report import STAGE_FILES, stage_time_lines, training_seconds

    evaluators = {"stage_seconds": 60.0, "video_encoder": {"seconds": 1140.0}, "clip": {"seconds": 60.0}}
    assert training_seconds(evaluators) == 1200.0
    for name, file in STAGE_FILES:
        stage = evaluators if name == "evaluators" else {"stage_seconds": 120.0, "train_seconds": 100.0}
        (tmp_path / file).write_text(json.dumps(stage))
    # fifo samples the control's model (model_of): its training stage finds it trained, in every run
    for folder in ("methods", "methods_train"):
        (tmp_path / folder).mkdir()
        for name in ("uniform_clips", "fifo"):
            (tmp_path / folder / f"{name}.json").write_text(json.dumps({"stage_seconds": 10.0}))
    (tmp_path / "methods_train" / "fifo.json").write_text(
        json.dumps({"stage_seconds": 10.0, "train_seconds": 90.0})
    )
    lines = stage_time_lines(tmp_path, ["uniform_clips", "fifo"], shared=frozenset({"fifo"}))
    total = 60.0 + 120.0 * (len(STAGE_FILES) - 1) + 40.0
    assert f"| **sum** | **{total / 60:.1f}** |" in lines
    note = next(line for line in lines if line.startswith("Resumed"))
    assert "evaluators (20.0 min of training)" in note and "base" not in note and "fifo" not in note
    assert note.endswith(f"at most {(total + 1200.0) / 60:.1f} min.")


def test_the_seed_spread_sits_beside_the_method_differences_of_the_same_base(tmp_path):
    import json

    from streamdit.report import SEED_MEASURES, seed_lines

    base = {"path": "models/base.pt", "sha1": "abc"}
    compared = {
        "paired": {"fifo": same_everywhere(diff(-0.1, -0.15, -0.05)) | {"caption_shape": diff(0, -1, 1)}}
    }
    path = tmp_path / "seed_spread.json"
    assert any("Not measured" in line for line in seed_lines(path, {"finetuned_from": base}, compared))
    spread = {m: {"mean": 0.5, "std": 0.02, "range": 0.04} for m in SEED_MEASURES}
    pairs = {"1 - 0": {m: diff(0.01, -0.01, 0.03) for m in SEED_MEASURES},
             "2 - 0": {m: diff(-0.04, -0.06, -0.02) for m in SEED_MEASURES}}  # fmt: skip
    models = {"streamdit": {"spread": spread, "seed_pairs": pairs}}
    path.write_text(json.dumps({"seeds": [0, 1, 2], "base": base, "models": models}))
    lines = seed_lines(path, {"finetuned_from": base}, compared)
    row = next(line for line in lines if line.startswith("| subject_consistency |"))
    assert "0.5, 0.02" in row and "-0.04 [-0.06, -0.02]*" in row and "-0.1 [-0.15, -0.05]*" in row
    other = seed_lines(path, {"finetuned_from": {**base, "sha1": "def"}}, compared)
    assert any("another base model" in line for line in other)
    # seed 0 is the run's own model: a spread whose seed 0 streams other numbers is stale
    models["streamdit"]["per_seed"] = {"0": {"quality": {"fvd": 40.0}}}
    path.write_text(json.dumps({"seeds": [0, 1, 2], "base": base, "models": models}))
    same = {**compared, "paired_vs": "streamdit_main", "rows": [{"method": "streamdit_main", "fvd": 40.0}]}
    assert any(
        line.startswith("| subject_consistency |")
        for line in seed_lines(path, {"finetuned_from": base}, same)
    )
    moved = {**same, "rows": [{"method": "streamdit_main", "fvd": 41.0}]}
    stale = seed_lines(path, {"finetuned_from": base}, moved)
    assert any("other settings than this run's" in line for line in stale)
    assert not any(line.startswith("| subject_consistency |") for line in stale)


def test_the_kernel_spread_of_this_runs_model_joins_the_seed_spread(tmp_path):
    import json

    from streamdit.report import SEED_MEASURES, seed_lines

    base = {"path": "models/base.pt", "sha1": "abc"}
    spread = {m: {"mean": 0.5, "std": 0.02, "range": 0.04} for m in SEED_MEASURES}
    pairs = {"1 - 0": {m: diff(0.01, -0.01, 0.03) for m in SEED_MEASURES}}
    seed_file = tmp_path / "seed_spread.json"
    seed_file.write_text(
        json.dumps(
            {"seeds": [0, 1], "base": base, "models": {"streamdit": {"spread": spread, "seed_pairs": pairs}}}
        )
    )
    compared = {
        "paired_vs": "streamdit_main",
        "rows": [{"method": "streamdit_main", "fvd": 40.0}],
        "paired": {"fifo": same_everywhere(diff(-0.1, -0.15, -0.05)) | {"caption_shape": diff(0, -1, 1)}},
    }
    arms = {"study": {"kernels": "AVX512", "quality": {"fvd": 40.0}}, "variant": {"kernels": "AVX2"}}
    moved = same_everywhere(diff(0.02, 0.01, 0.04)) | {
        "fvd": diff(-3.0, -9.0, 2.0),
        "caption_shape": diff(0, -1, 1),
    }
    kernel_file = tmp_path / "kernel_spread.json"
    train = {"finetuned_from": base}
    absent = seed_lines(seed_file, train, compared, kernel_file)
    assert not any("AVX2" in line for line in absent)  # not measured: the seed table alone
    kernel_file.write_text(
        json.dumps(
            {"environment": {"ATEN_CPU_CAPABILITY": "avx2"}, "arms": arms, "variant_minus_study": moved}
        )
    )
    lines = seed_lines(seed_file, train, compared, kernel_file)
    header = next(line for line in lines if line.startswith("| measure |"))
    assert "| StreamDiT on AVX2 kernels - StreamDiT | fifo - StreamDiT |" in header
    row = next(line for line in lines if line.startswith("| subject_consistency |"))
    assert row.endswith("| +0.02 [+0.01, +0.04]* | -0.1 [-0.15, -0.05]* |")
    assert next(line for line in lines if line.startswith("| fvd |")).endswith(
        "| -3 [-9, +2] | -0.1 [-0.15, -0.05]* |"
    )
    assert any("`ATEN_CPU_CAPABILITY=avx2`" in line and "AVX512" in line for line in lines)
    # measured on another model (its study arm streamed another FVD): said so, and no kernel column
    other = {**compared, "rows": [{"method": "streamdit_main", "fvd": 41.0}]}
    stale = seed_lines(seed_file, train, other, kernel_file)
    assert any("another model than this run's" in line for line in stale)
    assert not any("AVX2 kernels" in line for line in stale)


def test_the_causal_row_is_set_against_streamdit_with_its_drift_and_speed():
    from streamdit.report import causal_lines

    def drift(caption):
        change = {"caption_mean": caption, "subject_consistency": diff(0.05, 0.01, 0.09)}
        return {"frames": 256, "prompts": 12, "change": change}

    comparison = {
        "paired_vs": "streamdit_main",
        "paired": {
            "causal": {
                **same_everywhere(diff(0.0, -0.1, 0.1)),
                "subject_consistency": diff(0.04, 0.01, 0.07),
            },
            "fifo": same_everywhere(diff(0.0, -0.1, 0.1)),
        },
        "rows": [
            {"method": "causal", "fps": 12.0, "nfe_per_frame": 8.5},
            {"method": "streamdit_main", "fps": 20.0, "nfe_per_frame": 4.0},
        ],
        "drift": {"causal": drift(diff(-0.1, -0.2, -0.05)), "streamdit_main": drift(diff(0.0, -0.1, 0.1))},
    }
    (line,) = causal_lines(comparison)  # one causal row; fifo is a baseline's claim, not this one
    assert "(**causal**)" in line and "subject_consistency +0.04 [+0.01, +0.07] (**StreamDiT worse**)" in line
    causal_drift, main_drift = line.split("Drift, causal: ")[1].split("Drift, streamdit_main: ")
    assert "**drifts**" in causal_drift and "**no drift detected**" in main_drift
    assert "Speed: 12.0 against 20.0 frames/s, NFE per frame 8.5 against 4" in line
    assert causal_lines({"paired": {"fifo": comparison["paired"]["fifo"]}}) == []


def test_every_drift_row_is_paired_with_streamdits_drift():
    from streamdit.report import causal_lines, drift_lines

    def drift(caption, minus_main=None):
        change = {"caption_mean": caption, "subject_consistency": diff(0.0, -0.01, 0.01)}
        out = {"frames": 256, "prompts": 12, "change": change}
        if minus_main is not None:
            out["minus_main"] = {"caption_mean": minus_main, "subject_consistency": diff(0.0, -0.1, 0.1)}
        return out

    comparison = {
        "paired_vs": "streamdit_main",
        "paired": {"causal": same_everywhere(diff(0.0, -0.1, 0.1))},
        "drift": {
            "fifo": drift(diff(-0.2, -0.3, -0.1), minus_main=diff(-0.2, -0.3, -0.1)),
            "causal": drift(diff(0.0, -0.1, 0.1), minus_main=diff(0.0, -0.1, 0.1)),
            "streamdit_main": drift(diff(0.0, -0.1, 0.1)),
        },
    }
    (fifo,) = drift_lines(comparison)  # the causal row's drift goes to its own line
    assert "StreamDiT drifts no more than **fifo**" in fifo and "**drifts**" in fifo
    assert "same 12 streams of 256 frames" in fifo
    assert "caption_mean -0.2 [-0.3, -0.1] (**fifo drifts more**)" in fifo
    assert "subject_consistency +0 [-0.1, +0.1] (**no difference**)" in fifo
    (causal,) = causal_lines(comparison)
    assert ". Drift (last window - first) of causal minus StreamDiT's, paired on" in causal
    assert "caption_mean +0 [-0.1, +0.1] (**no difference**)" in causal
    assert drift_lines({"drift": {"fifo": drift(diff(0.0, -0.1, 0.1))}}) == []  # nothing paired: no line
    # equal means differ by float residue only: it reads 0, a small real difference keeps its digits
    (residue,) = drift_lines(
        {"drift": {"fifo": drift(diff(0.0, -0.1, 0.1), minus_main=diff(7e-9, -0.1, 0.1))}}
    )
    assert "caption_mean +0 [-0.1, +0.1]" in residue
    (small,) = drift_lines(
        {"drift": {"fifo": drift(diff(0.0, -0.1, 0.1), minus_main=diff(2e-5, 1e-5, 3e-5))}}
    )
    assert "caption_mean +2e-05 [+1e-05, +3e-05]" in small
