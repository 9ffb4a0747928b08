"""One source of model defaults: configs/model_config.yaml == the config models == the models."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from stockml.errors import ConfigError
from stockml.model_config import ModelConfig
from stockml.models import LightGBMModel, LSTMModel, XGBoostModel
from stockml.train import build_ensemble, build_models

REPO = Path(__file__).resolve().parents[2]


def test_yaml_equals_the_code_defaults():
    # GIVEN the repository's YAML, read as plain data (not through the config model)
    raw = yaml.safe_load((REPO / "configs" / "model_config.yaml").read_text())

    # THEN it names every setting, with the value the config models default to
    assert raw == ModelConfig().model_dump(mode="json")


def test_models_are_built_from_the_config_objects(tmp_path: Path, monkeypatch):
    # GIVEN a YAML that changes one value of each model
    raw = yaml.safe_load((REPO / "configs" / "model_config.yaml").read_text())
    raw["xgboost"]["max_depth"] = 7
    raw["lightgbm"]["num_leaves"] = 9
    raw["lstm"]["hidden_size"] = 5
    raw["seed"] = 11
    (tmp_path / "model_config.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("STOCKML_CONFIG_DIR", str(tmp_path))

    # WHEN the models are built from it
    models = {m.name: m for m in build_models(ModelConfig.from_yaml())}

    # THEN each carries those values (no default of its own in between)
    assert models["xgboost"].params["max_depth"] == 7
    assert models["lightgbm"].params["num_leaves"] == 9
    assert models["lstm"].config.hidden_size == 5
    assert {m.runtime.seed for m in models.values()} == {11}


def test_a_model_without_a_config_uses_the_config_models_defaults():
    config = ModelConfig()
    assert XGBoostModel().params["max_depth"] == config.xgboost.max_depth
    assert LightGBMModel().params["min_data_in_leaf"] == config.lightgbm.min_data_in_leaf
    assert LSTMModel().config == config.lstm


def test_ensemble_members_follow_the_config():
    assert list(build_ensemble(ModelConfig()).members) == [
        "lstm",
        "xgboost",
        "lightgbm",
        "naive",
        "drift",
    ]
    assert list(
        build_ensemble(
            ModelConfig(models=["xgboost"], ensemble={"include_baselines": False})
        ).members
    ) == ["xgboost"]


def test_a_misspelt_or_invalid_key_is_an_error(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("STOCKML_CONFIG_DIR", str(tmp_path))
    (tmp_path / "model_config.yaml").write_text("xgboost:\n  max_dept: 3\n")
    with pytest.raises(ConfigError, match="max_dept"):
        ModelConfig.from_yaml()
    (tmp_path / "model_config.yaml").write_text("promotion:\n  coverage_range: [0.95, 0.85]\n")
    with pytest.raises(ConfigError, match="coverage_range"):
        ModelConfig.from_yaml()
