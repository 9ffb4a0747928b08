"""The monitoring settings: configs/config.yaml states the code's defaults (a Lambda without the
configs folder behaves the same), and thresholds that cannot work are refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from stockml.bundle import DRIFT_WINDOW
from stockml.settings import ApiSettings, DriftSettings, MonitoringSettings, StoreSettings

CONFIG = yaml.safe_load((Path(__file__).resolve().parents[2] / "configs/config.yaml").read_text())


def test_the_yaml_states_the_code_defaults() -> None:
    assert MonitoringSettings(**CONFIG["monitoring"]) == MonitoringSettings()
    for key in ("predictions_prefix", "monitoring_prefix"):
        assert CONFIG["store"][key] == getattr(StoreSettings(), key)
    for key in ("log_predictions", "log_flush_records", "log_flush_seconds", "monitoring_ttl_s"):
        assert CONFIG["api"][key] == getattr(ApiSettings(), key)
    # the bundles' training distribution is fitted with the monitor's window
    assert DriftSettings().window_sessions == DRIFT_WINDOW


def test_a_null_quantile_the_bundles_do_not_record_is_refused() -> None:
    with pytest.raises(ValidationError, match="null_quantile must be one of"):
        DriftSettings(null_quantile=0.97)


def test_an_empty_batch_job_counts_as_unset() -> None:
    # the template passes "" when no training job is named
    retrain = MonitoringSettings(
        retrain={"batch_job_queue": "", "batch_job_definition": ""}
    ).retrain
    assert retrain.batch_job_queue is None and retrain.batch_job_definition is None
