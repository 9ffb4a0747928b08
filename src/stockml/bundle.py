"""The serving bundle: ONNX files + FeatureSpec + metrics + a manifest with sha256 of every file.

Layout of one bundle (a local folder, or ``s3://<bucket>/<models_prefix>/<version>/``)::

    manifest.json        Manifest (below); lists every other file with its sha256
    feature_spec.json    FeatureSpec: feature names, scaler statistics, window, horizon
    metrics.json         evaluation metrics per model and for the baselines
    sessions.json        optional: NYSE sessions from a year before the stalest symbol's last
                         day to about a year ahead (sessions.SessionTable), so serving needs
                         no exchange-calendars at start-up; it falls back to it past the span
    <model>.onnx         one file per model

Every ONNX model maps float32 inputs to float32 forward log returns for horizons 1..H:
``tabular`` models take ``[batch, n_features]`` (the latest feature row, scaled);
``sequence`` models take ``[batch, window, n_features]`` (the latest ``window`` rows, scaled).
The ensemble is no ONNX file: it is the weighted sum of its members' outputs
(``Manifest.ensemble_weights``), fitted on validation data only.
Serving reads only this bundle (never training configs), so training and serving cannot drift.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from stockml.errors import BundleError, FeatureError
from stockml.sessions import SessionTable
from stockml.window import FeatureWindow

if TYPE_CHECKING:  # serving imports this module: no pandas at run time
    import pandas as pd

MANIFEST = "manifest.json"
FEATURE_SPEC = "feature_spec.json"
METRICS = "metrics.json"
SESSIONS = "sessions.json"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class FeatureSpec:
    """What serving needs to rebuild exactly the training inputs.

    ``mean``/``std`` are fitted on the training window only (later data would leak the
    future into the scaler). ``feature_config`` is the feature library's configuration used
    to compute the feature columns, stored so the API never reads training-side YAML.
    """

    feature_names: list[str]
    mean: list[float]
    std: list[float]
    window: int
    horizon: int
    feature_config: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def fit(
        cls,
        train_features: pd.DataFrame,
        feature_names: list[str],
        window: int,
        horizon: int,
        feature_config: dict[str, Any] | None = None,
    ) -> FeatureSpec:
        """Fit scaler statistics on ``train_features`` (the training window only)."""
        x = train_features[feature_names].to_numpy(dtype=np.float64)
        if len(x) == 0:
            raise FeatureError("cannot fit a FeatureSpec on zero rows")
        mean = np.nanmean(x, axis=0)
        std = np.nanstd(x, axis=0)
        std = np.where(np.isfinite(std) & (std > 1e-12), std, 1.0)
        return cls(
            feature_names=list(feature_names),
            mean=[float(v) for v in mean],
            std=[float(v) for v in std],
            window=int(window),
            horizon=int(horizon),
            feature_config=dict(feature_config or {}),
        )

    def transform(self, features: pd.DataFrame | FeatureWindow) -> np.ndarray:
        """Scaled float32 matrix ``[rows, n_features]`` in ``feature_names`` order.

        Args:
            features: feature rows: a DataFrame of the ``features/`` table (training) or a
                symbol's :class:`~stockml.window.FeatureWindow` (serving).

        Raises:
            FeatureError: a feature column is missing or holds NaN/inf.
        """
        if isinstance(features, FeatureWindow):
            x = features.matrix(self.feature_names)
        else:
            missing = [c for c in self.feature_names if c not in features.columns]
            if missing:
                raise FeatureError(f"features are missing columns {missing}")
            x = features[self.feature_names].to_numpy(dtype=np.float64)
        if not np.isfinite(x).all():
            bad = [
                c
                for c, ok in zip(self.feature_names, np.isfinite(x).all(axis=0), strict=True)
                if not ok
            ]
            raise FeatureError(f"features hold NaN or inf in {bad}")
        scaled = (x - np.asarray(self.mean)) / np.asarray(self.std)
        # float32 here, once: tree thresholds and ONNX both see the same rounded values
        return scaled.astype(np.float32)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> FeatureSpec:
        return cls(**json.loads(text))


@dataclass(frozen=True)
class ModelEntry:
    """One ONNX model of the bundle."""

    file: str
    kind: Literal["tabular", "sequence"]
    input_name: str
    output_name: str


@dataclass(frozen=True)
class Manifest:
    """What is in a bundle, with the sha256 of every file but itself."""

    version: str
    created_at: str
    git_commit: str
    horizon: int
    models: dict[str, ModelEntry]
    ensemble_weights: dict[str, float]
    # conformal residual quantiles per model (and "ensemble") and horizon, from validation:
    # {"xgboost": {"level": 0.9, "lo": [H floats], "hi": [H floats]}, ...}
    intervals: dict[str, dict[str, Any]]
    files: dict[str, str]
    symbols: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        raw = json.loads(text)
        raw["models"] = {k: ModelEntry(**v) for k, v in raw["models"].items()}
        return cls(**raw)


@dataclass(frozen=True)
class Bundle:
    """A verified bundle held in memory: manifest, spec, metrics and the ONNX bytes."""

    manifest: Manifest
    feature_spec: FeatureSpec
    metrics: dict[str, Any]
    onnx: dict[str, bytes]
    sessions: SessionTable | None = None


def write_bundle(
    folder: Path,
    *,
    version: str,
    git_commit: str,
    feature_spec: FeatureSpec,
    metrics: dict[str, Any],
    onnx_models: dict[str, tuple[bytes, ModelEntry]],
    ensemble_weights: dict[str, float],
    intervals: dict[str, dict[str, Any]],
    symbols: list[str],
    extra: dict[str, Any] | None = None,
    sessions: SessionTable | None = None,
) -> Manifest:
    """Write a bundle into ``folder`` (created) and return its manifest.

    ``onnx_models`` maps a model name to (ONNX bytes, entry); ``entry.file`` names the file.
    ``sessions`` (optional) is written as ``sessions.json`` for serving's dates.
    """
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}

    def put(name: str, data: bytes) -> None:
        (folder / name).write_bytes(data)
        files[name] = sha256_bytes(data)

    put(FEATURE_SPEC, feature_spec.to_json().encode())
    put(METRICS, json.dumps(metrics, indent=2, sort_keys=True, default=float).encode())
    for _name, (data, entry) in onnx_models.items():
        put(entry.file, data)
    if sessions is not None:
        put(SESSIONS, sessions.to_json().encode())
    manifest = Manifest(
        version=version,
        created_at=datetime.now(UTC).isoformat(),
        git_commit=git_commit,
        horizon=feature_spec.horizon,
        models={name: entry for name, (_d, entry) in onnx_models.items()},
        ensemble_weights=dict(ensemble_weights),
        intervals=intervals,
        files=files,
        symbols=list(symbols),
        extra=dict(extra or {}),
    )
    (folder / MANIFEST).write_text(manifest.to_json())
    return manifest


def read_bundle_files(files: dict[str, bytes]) -> Bundle:
    """Verify and parse a bundle given as ``{file name: bytes}`` (from a folder or S3).

    Raises:
        BundleError: the manifest is missing or unreadable, a listed file is missing, or a
            file's sha256 differs from the manifest's.
    """
    if MANIFEST not in files:
        raise BundleError("bundle has no manifest.json")
    try:
        manifest = Manifest.from_json(files[MANIFEST].decode())
    except (ValueError, TypeError, KeyError) as exc:
        raise BundleError(f"manifest.json is unreadable: {exc}") from exc
    for name, digest in manifest.files.items():
        if name not in files:
            raise BundleError(f"bundle file {name} listed in the manifest is missing")
        actual = sha256_bytes(files[name])
        if actual != digest:
            raise BundleError(
                f"bundle file {name} is corrupt: sha256 {actual[:12]}... != manifest {digest[:12]}..."
            )
    try:
        spec = FeatureSpec.from_json(files[FEATURE_SPEC].decode())
        metrics = json.loads(files[METRICS].decode())
        sessions = (
            SessionTable.from_json(files[SESSIONS].decode()) if SESSIONS in manifest.files else None
        )
    except (ValueError, TypeError, KeyError) as exc:
        raise BundleError(f"bundle metadata is unreadable: {exc}") from exc
    onnx = {name: files[entry.file] for name, entry in manifest.models.items()}
    return Bundle(
        manifest=manifest, feature_spec=spec, metrics=metrics, onnx=onnx, sessions=sessions
    )


def read_bundle_dir(folder: Path) -> Bundle:
    """Read and verify a bundle from a local folder (see ``read_bundle_files``)."""
    if not folder.is_dir():
        raise BundleError(f"bundle folder {folder} does not exist")
    return read_bundle_files({p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()})
