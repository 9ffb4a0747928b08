"""Forward tests: a published bundle scored on sessions after its training end, no refit.

The bundle's own ONNX models (what the API serves) forecast every feature row in the asked
date range, with the bundle's own intervals and the baselines it was trained beside; the
forecasts are joined with the realised log returns and scored by
``stockml.evaluation.score_forecasts``, the same scoring the walk-forward uses. A date inside
the bundle's training window is refused: a model scored on what it learned from is not tested.

``bundle_forecasts`` is the reusable half: any job that needs a bundle's forecasts for past
sessions (the gate's comparison with the champion, a monitoring job) calls it.

A universe bundle's models output ranking scores: its forecasts carry them (``scores``) beside
the returns derived from them, and its forward test adds the cross-sectional figures
(``stockml.ranking``) of the scores and of the single factors on the same rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from stockml.bundle import Bundle, interval_scale, score_to_return
from stockml.errors import ValidationError
from stockml.evaluation import Forecasts, band_bounds, json_safe, score_forecasts
from stockml.model_config import UniverseConfig
from stockml.models.onnx_utils import onnx_session


def train_end(bundle: Bundle) -> pd.Timestamp:
    """The last session the bundle learned or was calibrated from."""
    window = bundle.manifest.extra.get("data_window", {})
    # bundles written before ``train_end`` was recorded learned from every labelled session
    return pd.Timestamp(window.get("train_end") or window["end"])


def bundle_forecasts(
    bundle: Bundle,
    frame: pd.DataFrame,
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
    models: list[str] | None = None,
) -> Forecasts:
    """Forecasts of the bundle's ONNX models (and its baselines) for the rows dated in
    ``[start, end]`` of a feature frame.

    Args:
        bundle: a verified bundle.
        frame: feature rows in the feature library's contract, computed with the bundle's
            ``feature_config``; each symbol's earlier rows feed the input windows.
        start, end: the sessions to forecast (inclusive; None = unbounded).
        models: the bundle's models to run (default: all).

    Raises:
        FeatureError: the frame lacks the bundle's features or holds bad values.
    """
    from stockml.train import clean_frame, make_samples

    spec = bundle.feature_spec
    manifest = bundle.manifest
    names = list(manifest.models) if models is None else models
    bands = {**manifest.extra.get("baseline_intervals", {}), **manifest.intervals}
    first: dict[str, Any] = next(iter(bands.values()), {})
    scale_features = list(first.get("scale_features") or [])
    rows = clean_frame(frame, spec.feature_names, [])
    samples = make_samples(rows, spec, [], scale_features)
    dates = pd.DatetimeIndex(samples.dates)
    mask = np.ones(len(samples), dtype=bool)
    if start is not None:
        mask &= dates >= start
    if end is not None:
        mask &= dates <= end
    samples = samples.take(mask)
    predictions: dict[str, np.ndarray] = {}
    scores: dict[str, np.ndarray] = {}
    universe = manifest.extra.get("universe")
    for name in names:
        entry = manifest.models[name]
        x = samples.sequence if entry.kind == "sequence" else samples.tabular
        session = onnx_session(bundle.onnx[name])
        out = session.run([entry.output_name], {entry.input_name: np.ascontiguousarray(x)})[0]
        out = np.asarray(out, np.float64).reshape(len(x), -1)[:, : manifest.horizon]
        if universe is None:
            predictions[name] = out
        else:
            scores[name] = out
            predictions[name] = score_to_return(out, universe["drift"], universe["score_map"][name])
    for name, bias in manifest.extra.get("baselines", {}).items():
        predictions[name] = np.tile(np.asarray(bias, np.float64), (len(samples), 1))
    lower, upper = {}, {}
    for name in predictions:
        if name in bands:
            scale = interval_scale(bands[name], samples.scale_raw)
            lower[name], upper[name] = band_bounds(predictions[name], scale, bands[name])
    return Forecasts(samples.symbols, samples.dates, predictions, lower, upper, scores)


def factor_values(
    frame: pd.DataFrame, forecasts: Forecasts, factors: dict[str, str]
) -> dict[str, np.ndarray]:
    """The single factors (``UniverseConfig.factors``) of ``forecasts``' rows, from ``frame``."""
    keys = pd.DataFrame(
        {"symbol": forecasts.symbols.astype(str), "date": pd.to_datetime(forecasts.dates)}
    )
    columns = {n: c.lstrip("+-") for n, c in factors.items() if c.lstrip("+-") in frame.columns}
    right = frame[["symbol", "date", *sorted(set(columns.values()))]].copy()
    right["symbol"] = right["symbol"].astype(str)
    right["date"] = pd.to_datetime(right["date"])
    merged = keys.merge(right, on=["symbol", "date"], how="left", validate="many_to_one")
    return {
        name: (-1.0 if factors[name].startswith("-") else 1.0) * merged[column].to_numpy(np.float64)
        for name, column in columns.items()
    }


def forward_test(
    bundle: Bundle,
    frame: pd.DataFrame,
    target_names: list[str],
    start: pd.Timestamp,
    end: pd.Timestamp | None,
    cost_bps: float,
    execution_lag: int,
    universe: UniverseConfig | None = None,
) -> dict[str, Any]:
    """Score ``bundle`` on the feature rows dated in ``[start, end]``, after its training end.

    Args:
        bundle: the published bundle.
        frame: feature rows with targets (``target_names``), computed with the bundle's
            feature configuration.
        start, end: the sessions to score (``end`` None = the last labelled session).
        cost_bps, execution_lag: the backtest's costs and lag.
        universe: the cross-sectional settings (portfolios, single factors) for a universe
            bundle (default: the code defaults).

    Returns:
        The report: ``bundle``, ``train_end``, ``from``, ``to``, ``symbols``, ``horizon``,
        ``n_sessions`` and ``models`` (``score_forecasts``: the walk-forward's metrics).

    Raises:
        ValidationError: ``start`` falls inside the bundle's training window, ``end`` is
            before ``start``, or no labelled row is left to score.
    """
    last_trained = train_end(bundle)
    if start <= last_trained:
        raise ValidationError(
            f"--from {start.date()} is inside bundle {bundle.manifest.version}'s training "
            f"window (it learned from sessions up to {last_trained.date()}): a forward test "
            f"starts after {last_trained.date()}"
        )
    if end is not None and end < start:
        raise ValidationError(f"--to {end.date()} is before --from {start.date()}")
    forecasts = bundle_forecasts(bundle, frame, start, end)
    scored, y = forecasts.join(frame, target_names)
    if not len(scored):
        raise ValidationError(
            f"no feature row with known outcomes between {start.date()} and "
            f"{'the end' if end is None else end.date()}: nothing to score"
        )
    ranked = bundle.manifest.extra.get("universe")
    report: dict[str, Any] = {
        "bundle": bundle.manifest.version,
        "train_end": last_trained.date().isoformat(),
        "from": pd.Timestamp(scored.dates.min()).date().isoformat(),
        "to": pd.Timestamp(scored.dates.max()).date().isoformat(),
        "symbols": sorted(set(scored.symbols.astype(str).tolist())),
        "horizon": int(y.shape[1]),
        "n_sessions": len(np.unique(scored.dates)),
        "cost_bps": cost_bps,
        "execution_lag": execution_lag,
        "models": score_forecasts(scored, y, cost_bps, execution_lag, per_symbol=ranked is None),
    }
    if ranked is not None:
        from stockml import ranking
        from stockml.train import ranking_headline

        u = universe or UniverseConfig()
        report["universe"] = {
            "target": ranked.get("target"),
            **ranking.universe_report(
                scored.symbols,
                scored.dates,
                scored.scores,
                factor_values(frame, scored, u.factors),
                y,
                quantile=u.quantile,
                k=u.top_k,
                lags=u.execution_lags,
                execution_lag=execution_lag,
                cost_bps=cost_bps,
                min_names=u.min_names,
            ),
        }
        report = {**ranking_headline(report, str(ranked.get("model", "ensemble"))), **report}
    return json_safe(report)
