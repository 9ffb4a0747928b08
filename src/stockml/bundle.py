"""The serving bundle: ONNX files + FeatureSpec + metrics + a manifest with sha256 of every file.

Layout of one bundle (a local folder, or ``s3://<bucket>/<models_prefix>/<version>/``)::

    manifest.json        Manifest (below); lists every other file with its sha256
    feature_spec.json    FeatureSpec: feature names, scaler statistics, window, horizon
    metrics.json         evaluation metrics per model and for the baselines
    sessions.json        optional: NYSE sessions from a year before the stalest symbol's last
                         day to about a year ahead (sessions.SessionTable), so serving needs
                         no exchange-calendars at start-up; it falls back to it past the span
    feature_distribution.json  optional: the training distribution of each feature
                         (FeatureDistribution: quantile bins), what the monitor's drift
                         check compares recent feature rows with
    <model>.onnx         one file per model

Every ONNX model maps float32 inputs to float32 forward log returns for horizons 1..H:
``tabular`` models take ``[batch, n_features]`` (the latest feature row, scaled);
``sequence`` models take ``[batch, window, n_features]`` (the latest ``window`` rows, scaled).
The ensemble is one of them (its file holds its members' graphs and their weights).
Serving reads only this bundle (never training configs), so training and serving cannot drift.

Beside the bundles, this module owns two more keys under ``<models_prefix>/``:
``champion.json`` (the pointer to the version the API serves, written only by the promotion
gate) and ``_evaluation/<version>/predictions.parquet`` (the walk-forward out-of-sample
forecasts of that version, which a later challenger is compared with on the same rows; kept
out of the bundle folder so the API never downloads it).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from stockml.errors import BundleError, FeatureError, StoreError
from stockml.sessions import SessionTable
from stockml.window import FeatureWindow

if TYPE_CHECKING:  # serving imports this module: no pandas at run time
    import pandas as pd

MANIFEST = "manifest.json"
FEATURE_SPEC = "feature_spec.json"
METRICS = "metrics.json"
SESSIONS = "sessions.json"
DISTRIBUTION = "feature_distribution.json"
CHAMPION = "champion.json"
EVALUATION_DIR = "_evaluation"
PREDICTIONS = "predictions.parquet"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- the champion pointer


def champion_key(models_prefix: str) -> str:
    """Key of the pointer naming the serving version: ``{"version": "<version>", ...}``."""
    return f"{models_prefix.strip('/')}/{CHAMPION}"


def predictions_key(models_prefix: str, version: str) -> str:
    """Key of a version's walk-forward out-of-sample forecasts (outside its bundle folder)."""
    return f"{models_prefix.strip('/')}/{EVALUATION_DIR}/{version}/{PREDICTIONS}"


def champion_pointer(version: str, gate_summary: str) -> bytes:
    """The pointer's bytes: the version and why it was promoted."""
    return json.dumps(
        {
            "version": version,
            "promoted_at": datetime.now(UTC).isoformat(),
            "gate": gate_summary,
        }
    ).encode()


def read_champion_version(reader: Any, models_prefix: str) -> str:
    """The version ``champion.json`` names.

    Raises:
        BundleError: the pointer cannot be read or names no version.
    """
    key = champion_key(models_prefix)
    try:
        pointer = json.loads(reader.get_bytes(key))
        return str(pointer["version"])
    except StoreError as exc:
        raise BundleError(f"no champion bundle: {key} cannot be read ({exc})") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise BundleError(f"{key} is not a version pointer: {exc}") from exc


def publish_bundle(
    store: Any, bundle_dir: Path, version: str, promote: bool, gate_summary: str
) -> list[str]:
    """Upload ``bundle_dir`` to ``<models_prefix>/<version>/`` (and its out-of-sample forecasts
    from ``bundle_dir/../_evaluation/<version>/``); point ``champion.json`` at it if promoted.

    The pointer is written last: a reader following it always finds a complete bundle.
    """
    prefix = store.models_prefix
    keys = store.put_folder(bundle_dir, f"{prefix}/{version}")
    forecasts = bundle_dir.parent / EVALUATION_DIR / version / PREDICTIONS
    if forecasts.is_file():
        key = predictions_key(prefix, version)
        store.put_bytes(key, forecasts.read_bytes())
        keys.append(key)
    if promote:
        store.put_bytes(champion_key(prefix), champion_pointer(version, gate_summary))
        keys.append(champion_key(prefix))
    return keys


# --------------------------------------------------------------------------- intervals


def interval_scale(band: dict[str, Any], raw: np.ndarray) -> np.ndarray:
    """The per-row scale of a conformal band: the root mean square of the row's raw (unscaled)
    ``band["scale_features"]`` values, floored at ``band["min_scale"]``; ones without them.

    Args:
        band: a ``Manifest.intervals`` entry.
        raw: ``[rows, len(scale_features)]`` raw feature values.
    """
    names = band.get("scale_features") or []
    if not names:
        return np.ones(len(raw))
    scale = np.sqrt(np.mean(np.square(np.asarray(raw, np.float64)), axis=1))
    return np.maximum(scale, float(band.get("min_scale", 0.0)))


def score_to_return(
    score: np.ndarray, drift: np.ndarray | list[float], score_map: dict[str, Any]
) -> np.ndarray:
    """A universe model's forecast log returns ``[n, H]`` from its ranking scores ``[n, H]``:
    ``drift + beta * (score - center)`` per horizon (``score_map``: ``{"center": [H],
    "beta": [H]}``, fitted on the validation slice with ``beta >= 0``; see ``stockml.train``)."""
    s = np.asarray(score, np.float64)
    center = np.asarray(score_map["center"], np.float64)
    beta = np.asarray(score_map["beta"], np.float64)
    return np.asarray(drift, np.float64) + beta * (s - center)


def interval_offsets(
    band: dict[str, Any], features: FeatureWindow
) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper log-return offsets ``[H]`` of the band for a symbol's latest row."""
    names = list(band.get("scale_features") or [])
    raw = features.matrix(names)[-1:] if names else np.ones((1, 0))
    scale = float(interval_scale(band, raw)[0])
    return scale * np.asarray(band["lo"], np.float64), scale * np.asarray(band["hi"], np.float64)


# --------------------------------------------------------------------------- drift reference

# sessions in a drift window: the monitor compares the last DRIFT_WINDOW sessions' feature rows
# with the training distribution (configs/config.yaml ``monitoring.drift.window_sessions``)
DRIFT_WINDOW = 60
# the quantiles of the training windows' own PSI that a bundle records (see FeatureDistribution)
NULL_QUANTILES = (0.5, 0.9, 0.95, 0.99, 1.0)
# proportions are floored here in the PSI: an empty bin must not make it infinite
PSI_FLOOR = 1e-4


def population_stability(expected: np.ndarray, actual: np.ndarray) -> float:
    """The population stability index ``sum((a - e) ln(a / e))`` of two bin proportions."""
    e = np.maximum(np.asarray(expected, np.float64), PSI_FLOOR)
    a = np.maximum(np.asarray(actual, np.float64), PSI_FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def bin_index(edges: np.ndarray | list[float], values: np.ndarray) -> np.ndarray:
    """The bin of each value: ``(-inf, e0], (e0, e1], ..., (e_last, inf)`` -> 0..len(edges)."""
    return np.searchsorted(np.asarray(edges, np.float64), values, side="left")


@dataclass(frozen=True)
class FeatureDistribution:
    """The training distribution of each feature: what the monitor's drift check compares with.

    Per feature (raw values, the rows the published models learned from): ``edges``, its
    ``bins``-quantiles (deciles; repeated values merged, so a 0/1 flag has two bins);
    ``expected``, the share of training rows in each bin; and ``null_psi``, the PSI that the
    training rows' OWN windows of ``window`` consecutive sessions reached against
    ``expected``, at the quantiles ``quantiles``. Daily features are autocorrelated, so a few
    weeks of rows never look like twenty years of them: on the embedded MSFT data the median
    60-session window of the training history has a PSI above 0.25 for most features. A recent
    window therefore counts as drifted only beyond what the training history's own windows
    reached (e.g. its 99th percentile), not against a fixed rule of thumb. Features constant
    on the training rows (fed to the models as 0) are not listed.
    """

    window: int
    rows: int
    start: str
    end: str
    quantiles: list[float]
    features: dict[str, dict[str, list[float]]]

    @classmethod
    def fit(
        cls,
        values: np.ndarray,
        dates: np.ndarray,
        names: list[str],
        bins: int = 10,
        window: int = DRIFT_WINDOW,
        step: int = 5,
    ) -> FeatureDistribution:
        """Bin each feature of the training rows and measure its own windows' PSI.

        Args:
            values: ``[rows, len(names)]`` raw feature values (finite), any symbols.
            dates: ``[rows]`` their sessions: a window is ``window`` consecutive sessions of
                every symbol's rows (a universe is pooled, as the monitor pools it).
            names: the feature names.
            bins: quantile bins per feature.
            window: sessions per window (the monitor's drift window).
            step: sessions between the starts of two training windows.

        Raises:
            FeatureError: no rows, or values that are not finite.
        """
        x = np.asarray(values, np.float64)
        if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] != len(names):
            raise FeatureError(f"cannot fit a feature distribution on an array of {x.shape}")
        if not np.isfinite(x).all():
            raise FeatureError("a feature distribution needs finite values")
        days, day_index = np.unique(np.asarray(dates, "datetime64[D]"), return_inverse=True)
        starts = np.arange(0, max(len(days) - window + 1, 0), step)
        features: dict[str, dict[str, list[float]]] = {}
        for j, name in enumerate(names):
            column = x[:, j]
            if np.ptp(column) <= 1e-12 * max(float(np.abs(column).max()), 1.0):
                continue  # constant: the models never saw it vary
            edges = np.unique(np.quantile(column, np.linspace(0.0, 1.0, bins + 1)[1:-1]))
            index = bin_index(edges, column)
            k = len(edges) + 1
            expected = np.bincount(index, minlength=k) / len(column)
            # per session bin counts, cumulated: a window's counts are one subtraction
            per_day = np.zeros((len(days) + 1, k))
            np.add.at(per_day, (day_index + 1, index), 1.0)
            cumulative = np.cumsum(per_day, axis=0)
            counts = cumulative[starts + window] - cumulative[starts]
            null = [population_stability(expected, c / c.sum()) for c in counts if c.sum() > 0]
            features[name] = {
                "edges": [float(v) for v in edges],
                "expected": [float(v) for v in expected],
                "null_psi": [float(v) for v in np.quantile(null, NULL_QUANTILES)] if null else [],
            }
        return cls(
            window=int(window),
            rows=int(x.shape[0]),
            start=str(days[0]),
            end=str(days[-1]),
            quantiles=list(NULL_QUANTILES),
            features=features,
        )

    def psi(self, name: str, values: np.ndarray) -> float:
        """PSI of ``values`` (a recent window's raw values of feature ``name``) vs training."""
        entry = self.features[name]
        index = bin_index(entry["edges"], np.asarray(values, np.float64))
        actual = np.bincount(index, minlength=len(entry["expected"])) / max(len(index), 1)
        return population_stability(np.asarray(entry["expected"]), actual)

    def null_psi(self, name: str, quantile: float) -> float | None:
        """The ``quantile`` of the training windows' own PSI of ``name`` (None if unrecorded)."""
        values = self.features[name].get("null_psi") or []
        if not values:
            return None
        try:
            return float(values[self.quantiles.index(quantile)])
        except ValueError:
            raise FeatureError(
                f"the bundle records the training windows' PSI at {self.quantiles}, not {quantile}"
            ) from None

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> FeatureDistribution:
        return cls(**json.loads(text))


@dataclass(frozen=True)
class FeatureSpec:
    """What serving needs to rebuild exactly the training inputs.

    ``mean``/``std`` are fitted on the training window only (later data would leak the
    future into the scaler). ``feature_config`` is the feature library's configuration used
    to compute the feature columns, stored so the API never reads training-side YAML.
    ``inactive`` features were constant on the training window: they are fed to the models
    as 0 always, so a value the models never saw vary (e.g. an index before its data starts)
    cannot move a forecast later.
    """

    feature_names: list[str]
    mean: list[float]
    std: list[float]
    window: int
    horizon: int
    feature_config: dict[str, Any] = field(default_factory=dict)
    inactive: list[str] = field(default_factory=list)

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
        live = np.isfinite(std) & (std > 1e-12 * np.maximum(np.abs(mean), 1.0))
        std = np.where(live, std, 1.0)
        return cls(
            feature_names=list(feature_names),
            mean=[float(v) for v in mean],
            std=[float(v) for v in std],
            window=int(window),
            horizon=int(horizon),
            feature_config=dict(feature_config or {}),
            inactive=[n for n, ok in zip(feature_names, live, strict=True) if not ok],
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
        return self.scale(x)

    def scale(self, x: np.ndarray) -> np.ndarray:
        """Raw feature values ``[..., n_features]`` (``feature_names`` order) scaled, float32.

        Raises:
            FeatureError: a value is NaN or inf.
        """
        if not np.isfinite(x).all():
            finite = np.isfinite(x).reshape(-1, x.shape[-1]).all(axis=0)
            bad = [c for c, ok in zip(self.feature_names, finite, strict=True) if not ok]
            raise FeatureError(f"features hold NaN or inf in {bad}")
        scaled = (x - np.asarray(self.mean)) / np.asarray(self.std)
        if self.inactive:
            scaled[..., np.isin(self.feature_names, self.inactive)] = 0.0
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
    # conformal bounds of scaled residuals per model and horizon, from a calibration slice
    # no model was fitted, stopped or weighed on (see ``interval_offsets``):
    # {"xgboost": {"level": 0.9, "lo": [H], "hi": [H], "scale_features": [...],
    #              "min_scale": float}, ...}
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
        # bundles written before the ensemble was a model of its own carried its weights here
        raw.pop("ensemble_weights", None)
        return cls(**raw)


@dataclass(frozen=True)
class Bundle:
    """A verified bundle held in memory: manifest, spec, metrics and the ONNX bytes."""

    manifest: Manifest
    feature_spec: FeatureSpec
    metrics: dict[str, Any]
    onnx: dict[str, bytes]
    sessions: SessionTable | None = None
    distribution: FeatureDistribution | None = None


def write_bundle(
    folder: Path,
    *,
    version: str,
    git_commit: str,
    feature_spec: FeatureSpec,
    metrics: dict[str, Any],
    onnx_models: dict[str, tuple[bytes, ModelEntry]],
    intervals: dict[str, dict[str, Any]],
    symbols: list[str],
    extra: dict[str, Any] | None = None,
    sessions: SessionTable | None = None,
    distribution: FeatureDistribution | None = None,
) -> Manifest:
    """Write a bundle into ``folder`` (created) and return its manifest.

    ``onnx_models`` maps a model name to (ONNX bytes, entry); ``entry.file`` names the file.
    ``sessions`` (optional) is written as ``sessions.json`` for serving's dates,
    ``distribution`` (optional) as ``feature_distribution.json`` for the monitor.
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
    if distribution is not None:
        put(DISTRIBUTION, distribution.to_json().encode())
    manifest = Manifest(
        version=version,
        created_at=datetime.now(UTC).isoformat(),
        git_commit=git_commit,
        horizon=feature_spec.horizon,
        models={name: entry for name, (_d, entry) in onnx_models.items()},
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
        distribution = (
            FeatureDistribution.from_json(files[DISTRIBUTION].decode())
            if DISTRIBUTION in manifest.files
            else None
        )
    except (ValueError, TypeError, KeyError) as exc:
        raise BundleError(f"bundle metadata is unreadable: {exc}") from exc
    onnx = {name: files[entry.file] for name, entry in manifest.models.items()}
    return Bundle(
        manifest=manifest,
        feature_spec=spec,
        metrics=metrics,
        onnx=onnx,
        sessions=sessions,
        distribution=distribution,
    )


def read_bundle_dir(folder: Path) -> Bundle:
    """Read and verify a bundle from a local folder (see ``read_bundle_files``)."""
    if not folder.is_dir():
        raise BundleError(f"bundle folder {folder} does not exist")
    return read_bundle_files({p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()})
