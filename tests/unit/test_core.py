"""Settings, calendar and the serving bundle's integrity checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stockml import calendar
from stockml.bundle import FeatureSpec, ModelEntry, read_bundle_dir, write_bundle
from stockml.errors import BundleError, ConfigError, FeatureError
from stockml.settings import Settings


def test_settings_yaml_then_env_then_init(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN the repo's configs/config.yaml and an env override
    monkeypatch.setenv("STOCKML_STORE__BUCKET", "from-env")
    monkeypatch.setenv("STOCKML_INGEST__SYMBOLS", '["AAPL"]')
    # WHEN settings are built
    s = Settings()
    # THEN env beats YAML, YAML beats code defaults, init beats env
    assert s.store.bucket == "from-env"
    assert s.ingest.symbols == ["AAPL"]
    assert s.api.cors_origins == ["http://localhost:8501", "http://127.0.0.1:8501"]
    assert Settings(env="prod").env == "production"  # the template's stage names


def test_secrets_only_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a config file that carries a secret
    (tmp_path / "config.yaml").write_text("polygon_api_key: leaked\n")
    monkeypatch.setenv("STOCKML_CONFIG_DIR", str(tmp_path))
    # THEN settings refuse it
    with pytest.raises(ConfigError, match="secrets"):
        Settings()
    # AND the environment is the place for it
    (tmp_path / "config.yaml").write_text("env: development\n")
    monkeypatch.setenv("POLYGON_API_KEY", "k")
    assert Settings().polygon_api_key.get_secret_value() == "k"  # type: ignore[union-attr]


def test_nyse_calendar() -> None:
    assert not calendar.is_session("2024-07-04")  # Independence Day
    assert calendar.is_session("2024-07-05")
    days = calendar.sessions("2024-07-01", "2024-07-08")
    assert [d.day for d in days] == [1, 2, 3, 5, 8]
    assert list(calendar.next_sessions("2024-07-03", 2)) == [
        pd.Timestamp("2024-07-05"),
        pd.Timestamp("2024-07-08"),
    ]
    # before the close the last completed session is the previous one; after, today
    assert calendar.last_completed_session(
        pd.Timestamp("2024-07-05 19:00", tz="UTC")
    ) == pd.Timestamp("2024-07-03")
    assert calendar.last_completed_session(
        pd.Timestamp("2024-07-05 20:30", tz="UTC")
    ) == pd.Timestamp("2024-07-05")


def _spec() -> FeatureSpec:
    train = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [5.0, 5.0, 5.0]})
    return FeatureSpec.fit(train, ["a", "b"], window=2, horizon=3)


def test_feature_spec_scales_with_training_stats_and_refuses_nan() -> None:
    spec = _spec()
    out = spec.transform(pd.DataFrame({"b": [5.0], "a": [2.0]}))
    assert out.dtype == np.float32 and out.tolist() == [[0.0, 0.0]]  # constant column: std 1
    with pytest.raises(FeatureError, match="NaN"):
        spec.transform(pd.DataFrame({"a": [np.nan], "b": [1.0]}))
    assert FeatureSpec.from_json(spec.to_json()) == spec


def test_bundle_roundtrip_and_corruption(tmp_path: Path) -> None:
    # GIVEN a written bundle
    entry = ModelEntry(file="m.onnx", kind="tabular", input_name="x", output_name="y")
    write_bundle(
        tmp_path,
        version="1",
        git_commit="abc",
        feature_spec=_spec(),
        metrics={"m": {"rmse": 1.0}},
        onnx_models={"m": (b"onnx-bytes", entry)},
        intervals={},
        symbols=["MSFT"],
    )
    # WHEN read back THEN it verifies
    bundle = read_bundle_dir(tmp_path)
    assert bundle.onnx["m"] == b"onnx-bytes" and bundle.manifest.symbols == ["MSFT"]
    # WHEN one byte of a model changes THEN the sha256 check refuses it
    (tmp_path / "m.onnx").write_bytes(b"onnx-bytez")
    with pytest.raises(BundleError, match="corrupt"):
        read_bundle_dir(tmp_path)
    (tmp_path / "m.onnx").unlink()
    with pytest.raises(BundleError, match="missing"):
        read_bundle_dir(tmp_path)
