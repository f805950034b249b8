import math
from pathlib import Path

import pytest
import torch
import yaml
from conftest import tiny_overrides
from test_train import fits_scheme, record_training_batches

from streamdit.checkpoint import load_model
from streamdit.config import load_config
from streamdit.methods import method_config, resolve_methods
from streamdit.tables import compare_methods
from streamdit.train import run_key, train

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


def params_for(tmp_path, profile, **changes):
    """A copy of params.yaml whose methods_run is ``profile``'s list (as dvc.yaml needs), then ``changes``."""
    raw = yaml.safe_load(PARAMS.read_text())
    raw["methods_run"] = (raw["profiles"][profile].get("methods") or {}).get("run", raw["methods"]["run"])
    raw.update(changes)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_the_repository_params_resolve_for_every_profile(tmp_path):
    assert resolve_methods(PARAMS).run == yaml.safe_load(PARAMS.read_text())["methods_run"]
    for profile in ("smoke", "cpu", "cpu_full", "gpu"):
        methods = resolve_methods(params_for(tmp_path, profile), profile)
        assert set(methods.run) <= set(methods.entries) - {"base"}
    # every method but the base (its own stage) and mixed (the main model's own run)
    for profile in ("cpu_full", "gpu"):
        assert set(resolve_methods(params_for(tmp_path, profile), profile).run) == set(methods.entries) - {
            "base",
            "mixed",
        }


def test_a_methods_run_that_is_not_the_profiles_list_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="methods_run=\\[uniform_clips, fifo, reuse, uniform_extension"):
        resolve_methods(PARAMS, "gpu")
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        method_config(params_for(tmp_path, "smoke"), "smoke", "nope")


def test_training_free_methods_share_the_run_of_the_model_they_sample(tmp_path, tiny_world):
    params = params_for(tmp_path, "smoke")
    base = tiny_world.parent / "base.pt"
    base.write_bytes(b"the bytes of a base model")  # the run key holds the base file's digest
    overrides = {**tiny_overrides(tiny_world), "train": {"finetune_from": str(base)}}
    fifo, spec = method_config(params, "smoke", "fifo", overrides)
    reuse, reuse_spec = method_config(params, "smoke", "reuse", overrides)
    uniform, _ = method_config(params, "smoke", "uniform_clips", overrides)
    assert spec.model_of == reuse_spec.model_of == "uniform_clips"
    assert run_key(fifo) == run_key(uniform) == run_key(reuse)
    assert fifo.evaluate.schemes == ["FIFO-B8-n2-lookahead"] and str(fifo.evaluate.parsed_schemes[0]) == (
        "FIFO-B8-n2-lookahead"
    )
    assert (
        reuse.evaluate.schemes == [[4, 1, 4, 16]]
        and reuse.evaluate.context == reuse.sample.context == "noised"
    )
    assert uniform.evaluate.context == "clean" and fifo.train.schemes == [[0, 1, 8, 16]]


def test_every_method_fine_tunes_from_the_base_at_the_main_models_budget(tmp_path):
    """The paper's protocol: the base trains from scratch; StreamDiT and every method start from it with
    the train section's steps (methods.train adds nothing), so `mixed` is the main model's own run."""
    params = params_for(tmp_path, "cpu")
    main = load_config(params, "cpu")
    base, _ = method_config(params, "cpu", "base")
    assert base.train.finetune_from is None and base.train.schemes == [[0, 1, 8, 16]]
    assert base.train.steps > main.train.steps and main.train.finetune_from == "models/base.pt"
    for name in resolve_methods(params, "cpu").entries:
        if name != "base":
            cfg, _ = method_config(params, "cpu", name)
            assert (cfg.train.finetune_from, cfg.train.steps) == ("models/base.pt", main.train.steps), name
    mixed, _ = method_config(params, "cpu", "mixed")
    assert mixed.to_dict()["train"] == main.to_dict()["train"]


def frame_zero_responses(model) -> tuple[bool, bool]:
    """Whether frame 0's velocity changes when (1) frame 7's pixels change, (2) the levels of frames
    0 and 7 swap (the buffer's mean level stays exactly 3.5 / 8). With one block and windows of 4
    frames, (1) needs full attention and (2) per-frame time; without them frame 0 is bit-identical.
    After two training steps the changes measured 6.8e-7 (1) and 4.4e-6 to 8.3e-6 (2), on velocities
    of mean size 0.03; float32 rounding of these is about 2e-9."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 8, 3, 16, 16, generator=g)
    far = x.clone()
    far[:, 7] = torch.randn(3, 16, 16, generator=g)
    levels = torch.arange(8.0)[None] / 8
    swapped = levels[:, [7, 1, 2, 3, 4, 5, 6, 0]]
    text = (torch.zeros(1, 2, 384), torch.ones(1, 2, dtype=torch.bool), torch.zeros(1, 384))
    with torch.no_grad():
        out, out_far, out_swapped = (
            model(a, t, *text)[0, 0] for a, t in ((x, levels), (far, levels), (x, swapped))
        )
    return bool((out - out_far).abs().max() > 1e-8), bool((out - out_swapped).abs().max() > 1e-8)


def test_every_trained_method_trains_with_its_defining_setting(tmp_path, tiny_world, monkeypatch):
    """Two steps per method, and each method's setting shows: the training rows are buffers of its
    schemes (or, for Diffusion Forcing, of none), and its model attends and reads levels as it says."""
    monkeypatch.chdir(tmp_path)  # the text-embedding cache
    params = params_for(tmp_path, "gpu")
    methods = resolve_methods(params, "gpu")
    batches = record_training_batches(monkeypatch)
    keys = set()
    for name, spec in methods.entries.items():
        if spec.model_of is not None:
            continue
        cfg, _ = method_config(params, "gpu", name, tiny_overrides(tiny_world, steps=2))
        batches.clear()
        summary = train(cfg, tmp_path / f"{name}.pt", work_root=tmp_path / "runs", progress=False)
        assert summary["steps"] == 2 and math.isfinite(summary["loss_last"]), name
        keys.add(run_key(cfg))

        rows = [(t, m) for levels, mask in batches for t, m in zip(levels, mask, strict=True)]
        assert len(rows) == 2 * 3, name
        schemes, shift = cfg.train.parsed_schemes, cfg.train.time_shift
        if spec.train.get("level_mode") == "independent":
            assert all(m.all() and not any(fits_scheme(t, m, sc, shift) for sc in schemes) for t, m in rows)
        else:
            if "schemes" in spec.train:
                assert cfg.train.schemes == spec.train["schemes"], name
            for t, m in rows:
                assert any(fits_scheme(t, m, sc, shift) for sc in schemes), (name, t)

        model, saved = load_model(tmp_path / f"{name}.pt")
        full_attention, per_frame_time = frame_zero_responses(model)
        assert full_attention == spec.model.get("full_attention", False), name
        assert per_frame_time == spec.model.get("per_frame_time", True), name
        assert saved["train"]["schemes"] == cfg.train.schemes, name
    assert len(keys) == sum(spec.model_of is None for spec in methods.entries.values())  # all distinct


def fake_evaluation(fvd, scheme="K0-N2-c4-s8"):
    long = {"fvd": fvd, "fvd_ci": [fvd - 1, fvd + 1], "clip_score": 20.0, "clip_score_ci": [19.0, 21.0]}
    windows = [
        {"offset": 0, "fvd": fvd - 2, "clip_score": 20.0},
        {"offset": 8, "fvd": fvd + 2, "clip_score": 20.0},
    ]
    latency = {"frames_per_second": 10.0, "nfe_per_frame": 4.0}
    return {"long_stream": long, "clips": windows, "latency": latency, "scheme": scheme}


def test_comparison_rows_read_every_method_and_the_main_model():
    method = {"schemes": {"K0-N8-c1-s2": fake_evaluation(50.0)}}
    method["method"] = {"about": "FIFO", "model_of": "uniform_extension", "train_steps": 200}
    real = {k: v for k, v in fake_evaluation(5.0).items() if k != "latency"}  # real data has no latency
    main = {"real": real, "schemes": {"K0-N2-c4-s8": fake_evaluation(30.0)}}
    rows = compare_methods(["fifo"], {"fifo": method}, main, 2000)
    assert [r["method"] for r in rows] == ["real data", "fifo", "streamdit_main"]
    assert rows[1]["scheme"] == "K0-N8-c1-s2" and rows[1]["model"] == "uniform_extension"
    assert rows[1]["fvd"] == 50.0 and rows[1]["clip_score"] == 20.0 and rows[1]["kid"] is None
    assert rows[1]["fvd_last_clip"] == 52.0 and rows[2]["train_steps"] == 2000 and rows[0]["fps"] == ""


def test_the_causal_method_is_chunk_causal_measures_drift_and_counts_its_cache_calls(tmp_path):
    from streamdit.methods import method_summary

    params = params_for(tmp_path, "cpu")
    main = load_config(params, "cpu")
    causal, spec = method_config(params, "cpu", "causal")
    control, _ = method_config(params, "cpu", "uniform_clips")
    single, _ = method_config(params, "cpu", "single_c2")  # an ablation: no long streams
    assert causal.model.causal_chunk == 4 and main.model.causal_chunk == 0 and spec.drift
    assert causal.evaluate.drift_prompts == main.evaluate.drift_prompts > 0
    assert control.evaluate.drift_prompts == single.evaluate.drift_prompts == 0  # drift: true asks for it
    summary = method_summary("causal", causal, spec)
    # 16 calls on the chunk of 4 and one cache call, two NFE each with guidance
    assert summary["causal_chunk"] == 4 and summary["nfe_per_frame"] == 2 * 17 / 4
