"""Serving-side prediction: ONNX Runtime over a verified bundle, features from the store.

This module is the whole serving hot path and imports no training library (torch, xgboost,
lightgbm, scikit-learn, mlflow): the Lambda installs only the ``serving`` extra.

- :class:`Predictor` holds one ONNX Runtime session per model of a :class:`~stockml.bundle.Bundle`
  (created once) and turns one symbol's latest feature rows into forecasts: log returns per
  model (the ensemble is one of them), prices ``last close * exp(r)``, conformal intervals
  from ``Manifest.intervals`` and the NYSE dates of the next sessions.
- :class:`WindowFeatureSource` reads a symbol's latest feature window
  (:mod:`stockml.window`, written by the feature pipeline from the ``features/`` table) and
  keeps it for ``ttl_s`` seconds.
- :class:`PredictionService` joins them and caches forecasts per
  ``(symbol, model version, last feature date)``, so a warm request runs no model at all.
- :func:`load_bundle` reads a bundle from ``<models_prefix>/champion.json`` -> version ->
  ``<models_prefix>/<version>/`` (or a named version, or a local folder), sha256-checked.
- every served forecast goes to the prediction log (:mod:`stockml.predlog`: buffered, written
  in the background), and the monitor's published figures are read through
  :class:`~stockml.monitoring.results.MonitoringReader`.

A *global* bundle (trained over a universe: ``manifest.extra["universe"]``) serves any symbol
with stored features (its manifest's symbol list is information, not a filter); its models
output ranking scores, turned into forecast returns by ``bundle.score_to_return``, and it
ranks the whole universe in one batched run (:meth:`Predictor.rank`, ``GET /rankings``) from
the universe's latest-rows object (:class:`~stockml.window.UniverseWindow`).

The store is read through :class:`stockml.s3.S3Reader` and nothing here imports pandas or
botocore: a Lambda cold start pays for every import (``benchmarks/serve.py``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import onnxruntime as ort

from stockml.bundle import (
    Bundle,
    champion_key,
    interval_offsets,
    interval_scale,
    read_bundle_dir,
    read_bundle_files,
    read_champion_version,
    score_to_return,
)
from stockml.errors import (
    BundleError,
    FeatureError,
    ModelError,
    StockmlError,
    StoreError,
    UnknownSymbolError,
    ValidationError,
)
from stockml.monitoring.results import MonitoringReader
from stockml.predlog import PredictionLog
from stockml.s3 import S3Writer, encode_symbol
from stockml.sessions import SessionTable
from stockml.window import (
    FeatureWindow,
    UniverseWindow,
    latest_keys,
    universe_key,
    windows_prefix,
)

if TYPE_CHECKING:
    from stockml.settings import Settings

logger = logging.getLogger(__name__)

# bundles read by this process: a Lambda container must read its bundle once, not per request
_bundle_loads = 0


def bundle_loads() -> int:
    """How many bundles this process has read (exposed as ``stockml_bundle_loads_total``)."""
    return _bundle_loads


class ObjectReader(Protocol):
    """Read access to the bucket: :class:`~stockml.s3.S3Reader` or a :class:`~stockml.storage.Store`."""

    def get_bytes(self, key: str) -> bytes: ...

    def list_keys(self, prefix: str) -> list[str]: ...

    def get_folder(self, prefix: str) -> dict[str, bytes]: ...


def load_bundle(
    store: ObjectReader | None = None,
    version: str = "champion",
    bundle_dir: str | Path | None = None,
    models_prefix: str = "models",
) -> Bundle:
    """Read and verify the serving bundle.

    Args:
        store: the bucket holding ``<models_prefix>/...`` (unused when ``bundle_dir`` is set).
        version: ``"champion"`` follows ``<models_prefix>/champion.json``; anything else names
            the folder ``<models_prefix>/<version>/``.
        bundle_dir: a local bundle folder, read instead of the store.
        models_prefix: where the bundles are.

    Raises:
        BundleError: no bundle, an unreadable pointer, a missing file or a sha256 mismatch.
    """
    global _bundle_loads
    _bundle_loads += 1
    if bundle_dir is not None:
        return read_bundle_dir(Path(bundle_dir))
    if store is None:
        raise BundleError("no bundle source: neither a store nor a bundle folder was given")
    models_prefix = models_prefix.strip("/")
    if version == "champion":
        version = read_champion_version(store, models_prefix)
    prefix = f"{models_prefix}/{version}"
    files = store.get_folder(prefix)
    if not files:
        raise BundleError(f"bundle {version} has no files under {prefix}/")
    return read_bundle_files(files)


# ---------------------------------------------------------------------------- forecasts


@dataclass(frozen=True)
class ModelForecast:
    """One model's forecast for horizons 1..n.

    ``lower``/``upper`` are price bounds at ``level`` (None when the bundle has no interval).
    """

    log_returns: np.ndarray
    prices: np.ndarray
    lower: np.ndarray | None
    upper: np.ndarray | None
    level: float | None

    def head(self, days: int) -> ModelForecast:
        return ModelForecast(
            log_returns=self.log_returns[:days],
            prices=self.prices[:days],
            lower=None if self.lower is None else self.lower[:days],
            upper=None if self.upper is None else self.upper[:days],
            level=self.level,
        )


@dataclass(frozen=True)
class Forecast:
    """Forecasts of every requested model for one symbol, from one feature row date.

    ``age_sessions``: NYSE sessions completed since ``last_date`` (0 = the features include
    the latest close; None until the service dates it); ``stale``: older than the service's
    ``max_feature_age_sessions``.
    """

    symbol: str
    model_version: str
    last_date: date
    last_close: float
    dates: tuple[date, ...]
    models: dict[str, ModelForecast]
    age_sessions: int | None = None
    stale: bool = False
    # what select() returned: warm requests that ask the same share one object (and the
    # prediction log encodes it once per flush)
    _selections: dict[tuple[Any, ...], Forecast] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def select(
        self,
        days: int,
        models: Sequence[str] | None = None,
        age_sessions: int | None = None,
        stale: bool = False,
    ) -> Forecast:
        """The first ``days`` horizons of ``models`` (default: all), dated ``age_sessions``.

        The same arguments give the same object (treat a forecast as read-only)."""
        key = (days, None if models is None else tuple(models), age_sessions, stale)
        selected = self._selections.get(key)
        if selected is None:
            names = self.models if models is None else models
            selected = Forecast(
                symbol=self.symbol,
                model_version=self.model_version,
                last_date=self.last_date,
                last_close=self.last_close,
                dates=self.dates[:days],
                models={name: self.models[name].head(days) for name in names},
                age_sessions=age_sessions,
                stale=stale,
            )
            if len(self._selections) >= 64:  # requests vary in days and models only
                self._selections.clear()
            self._selections[key] = selected
        return selected


class NoRankingError(StockmlError):
    """The serving bundle is not a universe bundle: it has no ranking."""


@dataclass(frozen=True)
class RankingTable:
    """A universe scored by the ranking model, every horizon (rows: ``symbols``).

    ``scores`` order the symbols; ``returns`` are the forecast log returns derived from them,
    ``lower``/``upper`` their conformal bounds at ``level`` (None without a band).
    """

    model: str
    model_version: str
    as_of: date
    symbols: tuple[str, ...]
    scores: np.ndarray
    returns: np.ndarray
    lower: np.ndarray | None
    upper: np.ndarray | None
    level: float | None
    last_close: np.ndarray
    excluded: int

    def order(self, horizon: int) -> np.ndarray:
        """Row positions by score at ``horizon``, best first (ties: symbol order)."""
        return np.argsort(-self.scores[:, horizon - 1], kind="stable")


class Predictor:
    """ONNX Runtime inference over one verified bundle: one session per model, made once."""

    def __init__(self, bundle: Bundle, intra_op_threads: int = 1) -> None:
        """Create the sessions.

        Args:
            bundle: a bundle verified by ``read_bundle_files``/``read_bundle_dir``.
            intra_op_threads: ORT threads per session; 1 is fastest for one row at a time
                and leaves the Lambda's other vCPU to the web stack.

        Raises:
            BundleError: an ONNX file cannot be loaded.
        """
        self.bundle = bundle
        self.manifest = bundle.manifest
        self.spec = bundle.feature_spec
        self.horizon = int(self.manifest.horizon)
        # the bundle's precomputed NYSE sessions (no exchange-calendars, no pandas); a bundle
        # written before sessions.json existed builds a table now (~1 s, at load, not per request)
        self.calendar = bundle.sessions or SessionTable.build(date.today() - timedelta(days=730))
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._sessions: dict[str, ort.InferenceSession] = {}
        for name, data in bundle.onnx.items():
            try:
                self._sessions[name] = ort.InferenceSession(
                    data, sess_options=options, providers=["CPUExecutionProvider"]
                )
            except Exception as exc:  # ORT raises its own untyped errors for bad graphs
                raise BundleError(f"model {name} cannot be loaded by ONNX Runtime: {exc}") from exc
        self._metrics: dict[str, tuple[str, dict[str, dict[str, float | None]]]] = {}
        needs_window = any(e.kind == "sequence" for e in self.manifest.models.values())
        # a tabular-only bundle needs just the latest row
        self.rows_needed = int(self.spec.window) if needs_window else 1
        # a global bundle: {"target", "model", "drift": [H], "score_map": {model: ...}}
        universe = self.manifest.extra.get("universe")
        self.universe: dict[str, Any] | None = universe if isinstance(universe, dict) else None
        for name in self._sessions:
            self._test_run(name)

    def _test_run(self, name: str) -> None:
        """Run model ``name`` once on one all-zero input (the training mean, once scaled).

        Intact files can still hold a model that cannot serve: a graph exported for another
        model kind, another feature width or window, a wrong input or output name, fewer
        outputs than the horizon. Found here, that is a load failure (``/health`` says why)
        rather than a failure of every request.

        Raises:
            BundleError: the model cannot run on the inputs serving will give it.
        """
        entry = self.manifest.models[name]
        session = self._sessions[name]
        n_features = len(self.spec.feature_names)
        shape = [1, n_features] if entry.kind == "tabular" else [1, self.spec.window, n_features]
        inputs = {i.name: i.shape for i in session.get_inputs()}
        outputs = [o.name for o in session.get_outputs()]
        expected = f"{entry.kind} input {entry.input_name!r} of shape {shape}"
        if entry.input_name not in inputs or entry.output_name not in outputs:
            raise BundleError(
                f"model {name} cannot run: the manifest wants {expected} -> "
                f"{entry.output_name!r}; its graph takes {inputs} -> {outputs}"
            )
        declared = inputs[entry.input_name]
        # symbolic dimensions (a dynamic batch) are names, fixed ones ints
        if len(declared) != len(shape) or any(
            isinstance(d, int) and d != want for d, want in zip(declared, shape, strict=True)
        ):
            raise BundleError(
                f"model {name} cannot run: the manifest wants {expected}; its graph takes "
                f"{entry.input_name!r} of shape {declared}"
            )
        try:
            result = session.run(
                [entry.output_name], {entry.input_name: np.zeros(shape, dtype=np.float32)}
            )[0]
        except Exception as exc:  # ORT raises its own untyped errors
            raise BundleError(f"model {name} cannot run on {expected}: {exc}") from exc
        values = np.asarray(result, dtype=np.float64).reshape(-1)
        if values.size < self.horizon or not np.isfinite(values[: self.horizon]).all():
            raise BundleError(
                f"model {name} cannot serve horizon {self.horizon}: a test run gave "
                f"{values.size} values ({values[: self.horizon].tolist()})"
            )

    @property
    def version(self) -> str:
        return self.manifest.version

    @property
    def is_global(self) -> bool:
        """A model over a universe: any symbol with features, and a ranking."""
        return self.universe is not None

    def to_returns(self, name: str, outputs: np.ndarray) -> np.ndarray:
        """Forecast log returns from model ``name``'s outputs ``[..., H]`` (a global bundle's
        are scores: ``bundle.score_to_return``; any other bundle's are returns already)."""
        if self.universe is None:
            return outputs
        return score_to_return(outputs, self.universe["drift"], self.universe["score_map"][name])

    @property
    def model_names(self) -> list[str]:
        """Every model that can be asked for: the bundle's ONNX models."""
        return list(self._sessions)

    def log_returns(
        self, features: FeatureWindow, models: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        """Raw model outputs ``{model: [H] float64 log returns}`` for one symbol's latest rows.

        Raises:
            FeatureError: fewer rows than the window, or missing/non-finite features.
            ValidationError: a requested model is not in the bundle.
        """
        wanted = self.model_names if models is None else list(models)
        unknown = [m for m in wanted if m not in self.model_names]
        if unknown:
            raise ValidationError(
                f"unknown models {shown(unknown)}; this bundle has {self.model_names}"
            )
        if len(features) < self.rows_needed:
            raise FeatureError(f"need {self.rows_needed} feature rows, got {len(features)}")
        x = self.spec.transform(features.tail(self.rows_needed))
        out: dict[str, np.ndarray] = {}
        for name in wanted:
            entry = self.manifest.models[name]
            batch = x[None, :, :] if entry.kind == "sequence" else x[-1:, :]
            try:
                result = self._sessions[name].run([entry.output_name], {entry.input_name: batch})[0]
            except Exception as exc:  # ORT's untyped errors: a model failure, not a bad request
                raise ModelError(f"model {name} failed: {exc}") from exc
            out[name] = np.asarray(result, dtype=np.float64).reshape(-1)[: self.horizon]
        return out

    def predict(
        self,
        features: FeatureWindow,
        models: Sequence[str] | None = None,
        days: int | None = None,
    ) -> Forecast:
        """Forecast the next ``days`` sessions from one symbol's latest feature rows.

        Args:
            features: the symbol's latest feature window (at least ``rows_needed`` rows).
            models: model names (default: all, ensemble included).
            days: horizons 1..days (default: the bundle's horizon H).

        Raises:
            ValidationError: ``days`` outside 1..H or an unknown model.
            FeatureError: too few rows or bad feature values.
        """
        days = self.horizon if days is None else int(days)
        if not 1 <= days <= self.horizon:
            raise ValidationError(f"days must be within 1..{self.horizon}, got {days}")
        if not len(features):
            raise FeatureError("no feature rows to predict from")
        returns = self.log_returns(features, models)
        last_close = features.last_close
        last_date = features.last_date
        forecasts = {}
        for name, out in returns.items():
            r = self.to_returns(name, out)[:days]
            band = self.manifest.intervals.get(name)
            lower = upper = None
            level = None
            if band:
                lo, hi = interval_offsets(band, features)
                lower = last_close * np.exp(r + lo[:days])
                upper = last_close * np.exp(r + hi[:days])
                level = float(band.get("level", np.nan))
            forecasts[name] = ModelForecast(r, last_close * np.exp(r), lower, upper, level)
        return Forecast(
            symbol=features.symbol,
            model_version=self.version,
            last_date=last_date,
            last_close=last_close,
            dates=tuple(self.calendar.next_sessions(last_date, days)),
            models=forecasts,
        )

    def rank(self, universe: UniverseWindow) -> RankingTable:
        """Every symbol of ``universe`` scored by the ranking model in ONE batched run.

        Ranked: the symbols whose last row is the universe's newest date (``as_of``) and that
        have the model's window of finite features; the others (a symbol that stopped
        trading, a late listing) are counted in ``excluded``.

        Raises:
            NoRankingError: the bundle is not a global one.
            FeatureError: the universe lacks a feature the bundle needs, or no symbol is left.
            ModelError: the model run failed.
        """
        if self.universe is None:
            raise NoRankingError(
                f"bundle {self.version} is not a universe bundle: it has no ranking"
            )
        name = str(self.universe.get("model") or "ensemble")
        entry = self.manifest.models[name]
        index = {c: i for i, c in enumerate(universe.columns)}
        missing = [c for c in self.spec.feature_names if c not in index]
        if missing:
            raise FeatureError(f"the universe window lacks the bundle's features {missing}")
        rows = self.rows_needed
        if universe.rows < rows:
            raise FeatureError(
                f"the universe window holds {universe.rows} rows per symbol; the model needs "
                f"{rows} (raise ranking_rows in feature_config.yaml)"
            )
        last = universe.last_dates()
        full = universe.lengths >= rows
        if not full.any():
            raise FeatureError(f"no symbol of the universe window has {rows} rows")
        as_of = last[full].max()
        x = universe.values[:, universe.rows - rows :, [index[c] for c in self.spec.feature_names]]
        keep = full & (last == as_of) & np.isfinite(x).all(axis=(1, 2))
        if not keep.any():
            raise FeatureError("no symbol of the universe window can be ranked")
        batch = self.spec.scale(x[keep])
        batch = batch if entry.kind == "sequence" else batch[:, -1, :]
        try:
            out = self._sessions[name].run([entry.output_name], {entry.input_name: batch})[0]
        except Exception as exc:  # ORT's untyped errors: a model failure, not a bad request
            raise ModelError(f"model {name} failed on the universe: {exc}") from exc
        scores = np.asarray(out, np.float64).reshape(len(batch), -1)[:, : self.horizon]
        returns = self.to_returns(name, scores)
        band = self.manifest.intervals.get(name)
        lower = upper = None
        level = None
        if band:
            names = list(band.get("scale_features") or [])
            raw = universe.values[keep, -1][:, [index[c] for c in names]]
            scale = interval_scale(band, raw)[:, None]
            lower = returns + scale * np.asarray(band["lo"], np.float64)
            upper = returns + scale * np.asarray(band["hi"], np.float64)
            level = float(band.get("level", np.nan))
        return RankingTable(
            model=name,
            model_version=self.version,
            as_of=as_of.astype(date),
            symbols=tuple(s for s, k in zip(universe.symbols, keep, strict=True) if k),
            scores=scores,
            returns=returns,
            lower=lower,
            upper=upper,
            level=level,
            last_close=universe.close[keep, -1],
            excluded=int((~keep).sum()),
        )

    def metrics_for(self, symbol: str) -> tuple[str, dict[str, dict[str, float | None]]]:
        """Evaluation metrics from ``metrics.json``: the symbol's own if present, else pooled.

        Accepts ``{"per_symbol": {sym: {model: {...}}}, "pooled": {model: {...}}}`` or a
        flat ``{model: {...}}``; keeps numeric values only.

        Returns:
            (``"symbol"`` or ``"pooled"``, ``{model or baseline: {metric: value}}``).
        """
        if symbol in self._metrics:
            return self._metrics[symbol]
        raw = self.bundle.metrics
        per_symbol = raw.get("per_symbol")
        if isinstance(per_symbol, dict) and isinstance(per_symbol.get(symbol), dict):
            scope, table = "symbol", per_symbol[symbol]
        elif isinstance(raw.get("pooled"), dict):
            scope, table = "pooled", raw["pooled"]
        else:
            scope, table = "pooled", raw
        out: dict[str, dict[str, float | None]] = {}
        for name, values in table.items():
            if name in ("per_symbol", "pooled") or not isinstance(values, dict):
                continue
            out[name] = {
                k: (None if v is None or not np.isfinite(v) else float(v))
                for k, v in values.items()
                if v is None or (isinstance(v, int | float) and not isinstance(v, bool))
            }
        self._metrics[symbol] = (scope, out)
        return scope, out


# ---------------------------------------------------------------------------- features


class FeatureSource(Protocol):
    """Where serving finds a symbol's latest processed features."""

    def last_dates(self) -> dict[str, date]: ...

    def latest(self, symbol: str, rows: int) -> FeatureWindow: ...

    def cached(self, symbol: str, rows: int) -> FeatureWindow | None: ...

    def cached_last_date(self, symbol: str, rows: int) -> date | None: ...

    def universe(self) -> UniverseWindow: ...

    def cached_universe(self) -> UniverseWindow | None: ...

    def ping(self) -> None: ...


class WindowFeatureSource:
    """The feature windows under ``<features_prefix>/_latest/``, kept ``ttl_s`` seconds per symbol.

    The windows hold the ``features/`` table's rows as the feature pipeline computed them with
    the shared feature library, so serving never recomputes features (no train/serve skew).

    Args:
        reader: the bucket.
        features_prefix: the features table's prefix.
        ping_key: what ``ping`` lists (a small prefix; default the champion pointer).
        ttl_s: how long a window and the symbol listing are reused.
        clock: monotonic seconds (tests pass their own).
    """

    def __init__(
        self,
        reader: ObjectReader,
        features_prefix: str = "features",
        ping_key: str = "models/champion.json",
        ttl_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.reader = reader
        self.features_prefix = features_prefix.strip("/")
        self.ping_key = ping_key
        self.ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        # symbol -> (read at, window, its last date)
        self._windows: dict[str, tuple[float, FeatureWindow, date]] = {}
        self._dates: tuple[float, dict[str, date]] | None = None
        self._universe: tuple[float, UniverseWindow] | None = None

    def last_dates(self) -> dict[str, date]:
        """Last feature date per symbol (one LIST, cached)."""
        now = self._clock()
        cached = self._dates
        if cached is not None and now - cached[0] < self.ttl_s:
            return cached[1]
        keys = self.reader.list_keys(windows_prefix(self.features_prefix))
        dates = {s: d for s, (d, _key) in latest_keys(self.features_prefix, keys).items()}
        self._dates = (now, dates)
        return dates

    def latest(self, symbol: str, rows: int) -> FeatureWindow:
        """The latest ``rows`` feature rows of ``symbol`` (fewer if the window is shorter).

        Raises:
            UnknownSymbolError: the store holds no features for ``symbol``.
            FeatureError: its window is unreadable or holds another symbol.
        """
        cached = self.cached(symbol, rows)
        if cached is not None:
            return cached
        now = self._clock()
        key, data = self._read(symbol)
        window = FeatureWindow.from_bytes(data)
        if window.symbol != symbol:
            raise FeatureError(f"{key} holds the features of {window.symbol}, not {symbol}")
        if not len(window):
            raise FeatureError(f"{key} holds no rows")
        with self._lock:
            self._windows[symbol] = (now, window, window.last_date)
        return window.tail(rows)

    def _read(self, symbol: str) -> tuple[str, bytes]:
        """The key and bytes of the symbol's newest window (one LIST, one GET)."""
        folder = f"{windows_prefix(self.features_prefix)}symbol={encode_symbol(symbol)}/"
        # twice: the pipeline may replace the window between the LIST and the GET
        for attempt in (1, 2):
            found = latest_keys(self.features_prefix, self.reader.list_keys(folder)).get(symbol)
            if found is None:
                # the feature pipeline writes it (`stockml features`, the features Lambda)
                raise UnknownSymbolError(
                    f"no features stored for {symbol}: no window under {folder}"
                )
            try:
                return found[1], self.reader.get_bytes(found[1])
            except StoreError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def cached(self, symbol: str, rows: int) -> FeatureWindow | None:
        """The latest ``rows`` rows if held in memory and younger than ``ttl_s``; no I/O."""
        entry = self._fresh(symbol)
        return None if entry is None else entry[1].tail(rows)

    def cached_last_date(self, symbol: str, rows: int) -> date | None:
        """The last feature date of the rows ``cached`` would return (no I/O, no copy)."""
        entry = self._fresh(symbol)
        return None if entry is None else entry[2]

    def _fresh(self, symbol: str) -> tuple[float, FeatureWindow, date] | None:
        with self._lock:
            entry = self._windows.get(symbol)
        if entry is None or self._clock() - entry[0] >= self.ttl_s:
            return None
        return entry

    def universe(self) -> UniverseWindow:
        """The universe's latest rows (one GET), kept ``ttl_s`` seconds.

        Raises:
            FeatureError: the object is missing (the feature pipeline writes it) or unreadable.
        """
        cached = self.cached_universe()
        if cached is not None:
            return cached
        now = self._clock()
        key = universe_key(self.features_prefix)
        try:
            data = self.reader.get_bytes(key)
        except StoreError as exc:
            raise FeatureError(
                f"no universe window at {key} ({exc}): run the feature pipeline"
            ) from exc
        window = UniverseWindow.from_bytes(data)
        with self._lock:
            self._universe = (now, window)
        return window

    def cached_universe(self) -> UniverseWindow | None:
        """The universe's latest rows if held and younger than ``ttl_s``; no I/O."""
        with self._lock:
            entry = self._universe
        if entry is None or self._clock() - entry[0] >= self.ttl_s:
            return None
        return entry[1]

    def ping(self) -> None:
        """Raise StoreError when the store cannot be listed."""
        self.reader.list_keys(self.ping_key)


# ---------------------------------------------------------------------------- service


class StaleFeaturesError(FeatureError):
    """The symbol's latest features are older than allowed and the service refuses stale data."""


@dataclass(frozen=True)
class SymbolStatus:
    symbol: str
    last_date: date
    age_sessions: int
    fresh: bool


class PredictionService:
    """Predictor + feature source + a forecast cache keyed by (symbol, version, last date)."""

    def __init__(
        self,
        predictor: Predictor,
        features: FeatureSource,
        max_feature_age_sessions: int = 5,
        cache_size: int = 4096,
        refuse_stale: bool = False,
        log: PredictionLog | None = None,
        monitoring: MonitoringReader | None = None,
    ) -> None:
        """Join a predictor and a feature source.

        Args:
            predictor: the bundle's models.
            features: where the symbols' latest feature rows are.
            max_feature_age_sessions: features older than this many sessions are stale.
            cache_size: forecasts kept in memory.
            refuse_stale: raise StaleFeaturesError instead of forecasting from stale features.
            log: records every served forecast (None: nothing is recorded).
            monitoring: what the monitor published (None: no live figures).
        """
        self.predictor = predictor
        self.features = features
        self.log = log
        self.monitoring = monitoring
        self.max_feature_age_sessions = max_feature_age_sessions
        self.refuse_stale = refuse_stale
        self._cache: OrderedDict[tuple[str, str, date], Forecast] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        # (last feature date, last completed session) -> age: the hot path counts no sessions
        self._ages: dict[tuple[date, date], int] = {}
        # (valid until, the last completed session): asked once a second, not per request
        self._latest: tuple[float, date] | None = None
        # the ranking of the universe object last read: (that object, its ranking)
        self._ranking: tuple[UniverseWindow, RankingTable] | None = None

    @property
    def version(self) -> str:
        return self.predictor.version

    def check_symbol(self, symbol: str) -> None:
        """Raise UnknownSymbolError when the bundle was trained on a list that lacks ``symbol``
        (a global bundle serves any symbol with features: its list is information)."""
        known = self.predictor.manifest.symbols
        if known and symbol not in known and not self.predictor.is_global:
            raise UnknownSymbolError(f"no model for {symbol}; known symbols: {', '.join(known)}")

    def history(self, symbol: str, rows: int) -> FeatureWindow:
        """The latest ``max(rows, window)`` feature rows of a known symbol."""
        self.check_symbol(symbol)
        return self.features.latest(symbol, max(rows, self.predictor.rows_needed))

    def forecast(self, symbol: str, days: int, models: Sequence[str] | None = None) -> Forecast:
        """Forecast ``symbol`` for ``days`` sessions with ``models`` (default: all).

        Raises:
            UnknownSymbolError: no model or no features for the symbol.
            ValidationError: days out of 1..H or unknown models.
            FeatureError: the stored features cannot feed the models.
        """
        self._check_request(symbol, days, models)
        rows = self.features.latest(symbol, self.predictor.rows_needed)
        return self._forecast_from(symbol, rows, days, models)

    def cached_forecast(
        self, symbol: str, days: int, models: Sequence[str] | None = None
    ) -> Forecast | None:
        """The forecast when memory alone can answer it (no store I/O), else None.

        Lets an async route answer warm requests on the event loop and send only cache
        misses (store reads, model runs) to a worker thread. Raises what ``forecast`` raises.
        """
        self._check_request(symbol, days, models)
        last = self.features.cached_last_date(symbol, self.predictor.rows_needed)
        if last is None:
            return None
        with self._lock:
            full = self._cache.get((symbol, self.version, last))
        if full is None:
            return None
        age, stale = self.freshness(symbol, last)
        return full.select(days, models, age, stale)

    def monitoring_status(self) -> dict[str, Any]:
        """The monitor's last published status.

        Raises:
            StoreError: none is published (or readable).
        """
        if self.monitoring is None:
            raise StoreError("this service reads no monitoring status")
        return self.monitoring.status()

    def record(self, forecast: Forecast, request_id: str | None, endpoint: str) -> None:
        """Record a served forecast in the prediction log (buffered: no I/O here)."""
        if self.log is not None:
            self.log.record(forecast, request_id, endpoint)

    def data_age(self, last_date: date) -> int:
        """NYSE sessions completed since ``last_date`` (0: it is the latest completed one)."""
        now = time.monotonic()
        cached = self._latest
        if cached is None or now >= cached[0]:
            cached = (now + 1.0, self.predictor.calendar.last_completed_session())
            self._latest = cached
        latest = cached[1]
        age = self._ages.get((last_date, latest))
        if age is None:
            age = max(len(self.predictor.calendar.sessions(last_date, latest)) - 1, 0)
            if len(self._ages) > 4096:  # a new day makes every key obsolete
                self._ages.clear()
            self._ages[(last_date, latest)] = age
        return age

    def freshness(self, symbol: str, last_date: date) -> tuple[int, bool]:
        """(age in sessions, stale) of features ending on ``last_date``.

        Raises:
            StaleFeaturesError: they are stale and the service refuses stale data.
        """
        age = self.data_age(last_date)
        stale = age > self.max_feature_age_sessions
        if stale and self.refuse_stale:
            raise StaleFeaturesError(
                f"the features of {symbol} end on {last_date.isoformat()}, {age} sessions ago "
                f"(more than {self.max_feature_age_sessions}): refused until the feature "
                "pipeline updates them"
            )
        return age, stale

    def _check_request(self, symbol: str, days: int, models: Sequence[str] | None) -> None:
        if not 1 <= days <= self.predictor.horizon:
            raise ValidationError(f"days must be within 1..{self.predictor.horizon}, got {days}")
        if models is not None:
            unknown = [m for m in models if m not in self.predictor.model_names]
            if unknown:
                raise ValidationError(
                    f"unknown models {shown(unknown)}; available: {self.predictor.model_names}"
                )
        self.check_symbol(symbol)

    def _forecast_from(
        self, symbol: str, rows: FeatureWindow, days: int, models: Sequence[str] | None
    ) -> Forecast:
        age, stale = self.freshness(symbol, rows.last_date)  # before any model runs
        key = (symbol, self.version, rows.last_date)
        with self._lock:
            full = self._cache.get(key)
            if full is not None:
                self._cache.move_to_end(key)
        if full is None:
            full = self.predictor.predict(rows.tail(self.predictor.rows_needed))
            with self._lock:
                self._cache[key] = full
                if len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return full.select(days, models, age, stale)

    def symbols(self) -> list[SymbolStatus]:
        """Symbols with a model and stored features, with how many sessions old they are."""
        dates = self.features.last_dates()
        known = self.predictor.manifest.symbols
        out = []
        for symbol in sorted(dates):
            if known and symbol not in known and not self.predictor.is_global:
                continue
            age = self.data_age(dates[symbol])
            out.append(
                SymbolStatus(symbol, dates[symbol], age, age <= self.max_feature_age_sessions)
            )
        return out

    def ranking(self) -> RankingTable:
        """The universe ranked by the bundle's ranking model (every horizon), cached until the
        universe object is read again (after ``api.features_ttl_s``).

        Raises:
            NoRankingError: the bundle is not a global one.
            FeatureError: no universe object, or nothing in it to rank.
            StaleFeaturesError: its date is stale and the service refuses stale data.
        """
        if not self.predictor.is_global:
            raise NoRankingError(
                f"bundle {self.version} is not a universe bundle: it has no ranking"
            )
        universe = self.features.universe()
        cached = self._ranking
        if cached is not None and cached[0] is universe:
            table = cached[1]
        else:
            table = self.predictor.rank(universe)
            self._ranking = (universe, table)
        self.freshness("the universe", table.as_of)
        return table

    def cached_ranking(self) -> RankingTable | None:
        """The ranking when memory alone answers it (no store I/O, no model run), else None."""
        if not self.predictor.is_global:
            return None
        universe = self.features.cached_universe()
        cached = self._ranking
        if universe is None or cached is None or cached[0] is not universe:
            return None
        self.freshness("the universe", cached[1].as_of)
        return cached[1]

    def clear_ranking(self) -> None:
        """Forget the computed ranking (the next request runs the model again)."""
        self._ranking = None


def load_service(settings: Settings, reader: ObjectReader | None = None) -> PredictionService:
    """Build the serving service from settings: bucket reader, verified bundle, feature source.

    Args:
        settings: the process settings (``store`` and ``api``).
        reader: the bucket (default: an :class:`~stockml.s3.S3Writer` on ``settings.store``:
            its reads, and the prediction log's writes; a reader without ``put_bytes``
            switches the log off).

    Raises:
        BundleError: the bundle is missing or corrupt.
        StoreError: the store cannot be read.
    """
    store = settings.store
    reader = reader or S3Writer(store.bucket, store.endpoint_url, store.region)
    started = time.perf_counter()
    bundle = load_bundle(
        reader, settings.api.model_version, settings.api.bundle_dir, store.models_prefix
    )
    predictor = Predictor(bundle)
    logger.info(
        "bundle %s loaded in %.0f ms: models %s",
        predictor.version,
        1000 * (time.perf_counter() - started),
        predictor.model_names,
    )
    source = WindowFeatureSource(
        reader,
        store.features_prefix,
        ping_key=champion_key(store.models_prefix),
        ttl_s=settings.api.features_ttl_s,
    )
    log = None
    if settings.api.log_predictions and hasattr(reader, "put_bytes"):
        log = PredictionLog(
            reader,  # type: ignore[arg-type]
            store.predictions_prefix,
            max_records=settings.api.log_flush_records,
            max_age_s=settings.api.log_flush_seconds,
        )
    return PredictionService(
        predictor,
        source,
        max_feature_age_sessions=settings.api.max_feature_age_sessions,
        refuse_stale=settings.api.refuse_stale,
        log=log,
        monitoring=MonitoringReader(
            reader, store.monitoring_prefix, ttl_s=settings.api.monitoring_ttl_s
        ),
    )


def describe(value: object) -> str:
    """A one-line reason for logs and /health (no traceback)."""
    return f"{type(value).__name__}: {value}"


def clip(text: str, limit: int = 64) -> str:
    """``text`` cut to ``limit`` characters, saying how long it was: echoed input stays small."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}...({len(text)} chars)"


def shown(values: Sequence[str], limit: int = 3) -> str:
    """A few of ``values``, each clipped: what an error message may echo of a caller's list."""
    head = [repr(clip(v)) for v in values[:limit]]
    more = f" and {len(values) - limit} more" if len(values) > limit else ""
    return f"[{', '.join(head)}]{more}"
