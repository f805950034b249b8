from pathlib import Path

import pytest
import yaml

from streamdit.config import load_config

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


def write_params(tmp_path, edit):
    raw = yaml.safe_load(PARAMS.read_text())
    edit(raw)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize("profile", ["smoke", "cpu", "gpu"])
def test_every_profile_of_the_repository_params_is_valid(profile):
    cfg = load_config(PARAMS, profile)
    assert cfg.profile == profile
    assert all(s.B == cfg.model.frames for s in cfg.train.parsed_schemes)


def test_profile_overrides_and_explicit_overrides_merge():
    cfg = load_config(PARAMS, "smoke", overrides={"sample": {"scheme": [0, 8, 1, 1]}, "model": {"depth": 3}})
    assert cfg.model.dim == 32 and cfg.model.depth == 3  # profile value kept, override applied
    assert cfg.sample.parsed_scheme.c == 1
    assert cfg.train.steps == 10


def test_unknown_keys_and_profiles_are_named():
    with pytest.raises(ValueError, match="unknown profile 'huge'"):
        load_config(PARAMS, "huge")
    with pytest.raises(ValueError, match="unknown parameter overrides.train.'stpes'"):
        load_config(PARAMS, "smoke", overrides={"train": {"stpes": 3}})
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['depht'\] in 'model'"):
        load_config(PARAMS, "smoke", overrides={"model": {"depht": 3}})


def test_fields_left_at_their_default_can_be_set(tmp_path):
    """params.yaml does not list train.precision or train.compile, yet docs/pipeline.md's
    `dvc exp run -S profiles.gpu.train.precision=bf16` and `--set train.compile=default` must work."""
    raw = yaml.safe_load(PARAMS.read_text())
    assert "precision" not in raw["train"] and "compile" not in raw["train"]
    path = write_params(tmp_path, lambda raw: raw["profiles"]["gpu"]["train"].update(precision="bf16"))
    assert load_config(path, "gpu").train.precision == "bf16"
    assert load_config(path, "cpu").train.precision == "fp32"
    cfg = load_config(
        PARAMS, "smoke", overrides={"train": {"compile": "default"}, "model": {"prediction": "x"}}
    )
    assert cfg.train.compile == "default" and cfg.model.prediction == "x"
    with pytest.raises(ValueError, match="compile mode 'fast'"):
        load_config(PARAMS, "smoke", overrides={"train": {"compile": "fast"}})


def test_wrong_types_are_named(tmp_path):
    path = write_params(tmp_path, lambda raw: raw["train"].update(lr="fast"))
    with pytest.raises(ValueError, match=r"train.lr must be of type float, got 'fast'"):
        load_config(path, "cpu")
    with pytest.raises(ValueError, match="train.batch_size must be of type int"):
        load_config(PARAMS, "smoke", overrides={"train": {"batch_size": 2.5}})


def test_schemes_must_fit_the_buffer():
    with pytest.raises(ValueError, match="but the buffer has 8"):
        load_config(PARAMS, "smoke", overrides={"sample": {"scheme": [0, 4, 4, 4]}})
    with pytest.raises(ValueError, match="scheme_probs has 1 entries for 4 schemes"):
        load_config(PARAMS, "smoke", overrides={"train": {"scheme_probs": [1.0]}})


def test_degradation_and_edge_weights_out_of_range_are_named():
    with pytest.raises(ValueError, match=r"evaluators.encoder_degraded must be in \[0, 1\], got 1.5"):
        load_config(PARAMS, "smoke", overrides={"evaluators": {"encoder_degraded": 1.5}})
    with pytest.raises(ValueError, match="edge_weight >= 0; got .*-1.0"):
        load_config(PARAMS, "smoke", overrides={"autoencoder": {"edge_weight": -1.0}})
