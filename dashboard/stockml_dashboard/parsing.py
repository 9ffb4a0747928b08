"""Every API response the dashboard reads, turned into plain values: ONE place to adapt.

The API grows (new metric keys, a richer gate, the universe ranking) while the dashboard is
deployed apart from it, so parsing is defensive: a key that is missing or of an unexpected
type becomes ``None`` and is shown as ``n/a``; an unknown shape never raises.

Expected shapes beyond what every bundle has today:

- ``GET /metrics/{symbol}``: ``models`` and ``baselines`` map a name to flat metrics (any of
  :data:`METRIC_COLUMNS`' keys); ``gate`` is ``{"passed", "checks": [{"name", "value",
  "threshold", "passed"}]}`` (or the older ``{"promote", "reasons", "rmse_ratio"}``);
  ``equity_curve`` is ``{"model", "dates", "strategy", "buy_and_hold"}`` (equity from 1).
- ``GET /rankings?horizon=&top=`` (a universe bundle)::

      {"model_version": "v...", "horizon": 5, "as_of": "2024-05-31",
       "rankings": [{"symbol": "AAPL", "rank": 1, "score": 0.21,
                     "expected_return": 0.012, "lower": -0.02, "upper": 0.04}, ...],
       "rank_ic": 0.031, "rank_ic_t": 2.4,                 # optional, walk-forward
       "best_factor": "reversal_1", "best_factor_rank_ic": 0.017,
       "long_short_sharpe_net": 0.8,
       "long_short": {"dates": [...], "equity": [...]}}    # optional, walk-forward

  ``score`` orders the universe (the model's ranking score); ``expected_return`` is the
  forecast return over ``horizon`` sessions derived from it and ``lower``/``upper`` its
  interval (without ``expected_return``, ``score`` is taken as the forecast return); a 404
  means the serving bundle has no ranking.
- ``GET /metrics/{symbol}``'s ``live`` (the monitor's last run, or null): ``run_date``,
  ``window`` ``{"sessions", "start", "end"}``, ``models`` ``{model: {horizon: {figure:
  value}}}`` (the baselines too) and ``series`` ``{model: {horizon: {"dates", figure: [...]}}}``.
- ``GET /monitoring`` (503 until the monitor has run): ``run_date``, ``model_version``,
  ``live``, ``drift`` ``{"drift", "drifted", "features": {name: {"psi", "threshold",
  "drifted"}}, ...}``, ``freshness`` ``{"symbols": {symbol: {"last_date", "age_sessions",
  "stale"}}, "stale", ...}``, ``quarantine`` ``{"share", "max_share", "alarm", ...}``,
  ``retrain`` ``{"retrain", "reasons", "checks", "trigger"}``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date
from typing import Any

NA = "n/a"


# --------------------------------------------------------------------------- values


def number(value: Any) -> float | None:
    """A finite float, or None (missing, null, NaN, text, a bool)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def scalar(value: Any) -> float | None:
    """A metric as one number: a list or a per-horizon mapping gives its first horizon's."""
    if isinstance(value, list | tuple):
        return number(value[0]) if value else None
    if isinstance(value, dict):
        for key in ("1", 1, "value", "coverage"):
            if key in value:
                return number(value[key])
        return None
    return number(value)


def day(value: Any) -> date | None:
    """An ISO date (``2017-11-10``, or the date part of a timestamp), or None."""
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def fmt(value: float | None, spec: str) -> str:
    return NA if value is None else format(value, spec)


# --------------------------------------------------------------------------- metrics


@dataclass(frozen=True)
class MetricColumn:
    key: str
    label: str
    spec: str
    help: str


METRIC_COLUMNS: tuple[MetricColumn, ...] = (
    MetricColumn(
        "rmse_ratio_vs_naive",
        "RMSE / naive",
        ".3f",
        "Forecast error over the no-change forecast's; below 1 beats naive.",
    ),
    MetricColumn(
        "directional_accuracy",
        "direction hit rate",
        ".1%",
        "Share of days whose up/down move was called right.",
    ),
    MetricColumn(
        "directional_accuracy_always_long",
        "always-long hit rate",
        ".1%",
        "The hit rate of always saying 'up' on the same days: the bar to clear.",
    ),
    MetricColumn(
        "ic", "IC", ".3f", "Spearman correlation of forecast and realised returns (0 = none)."
    ),
    MetricColumn(
        "interval_coverage",
        "interval coverage",
        ".1%",
        "Share of realised prices inside the prediction band (should match its level).",
    ),
    MetricColumn(
        "dm_pvalue",
        "DM p vs naive",
        ".3f",
        "Diebold-Mariano test against naive; small (< 0.05) means a real difference.",
    ),
    MetricColumn(
        "dm_pvalue_vs_best_baseline",
        "DM p vs best baseline",
        ".3f",
        "Diebold-Mariano test against the better of naive and drift.",
    ),
    MetricColumn(
        "sharpe",
        "Sharpe (long/flat)",
        ".2f",
        "Backtest: long when the forecast is up, after costs.",
    ),
    MetricColumn("annual_return", "annual return", ".1%", "Backtest annual return after costs."),
    MetricColumn(
        "buy_and_hold_annual_return",
        "buy-and-hold",
        ".1%",
        "Annual return of holding all the time, same days.",
    ),
    MetricColumn("n", "test days", ",.0f", "Out-of-sample forecasts scored."),
)


@dataclass(frozen=True)
class MetricsTable:
    """``/metrics/{symbol}``: one row per model and baseline, values by metric key."""

    symbol: str
    model_version: str | None
    scope: str | None
    rows: dict[str, dict[str, float | None]]
    roles: dict[str, str]  # name -> "model" | "baseline"

    def value(self, name: str, key: str) -> float | None:
        return self.rows.get(name, {}).get(key)

    def display_rows(self) -> list[dict[str, str]]:
        """Rows for a table: model, role, then every metric column formatted (``n/a`` if absent)."""
        return [
            {
                "model": name,
                "kind": self.roles[name],
                **{c.label: fmt(values.get(c.key), c.spec) for c in METRIC_COLUMNS},
            }
            for name, values in self.rows.items()
        ]


def parse_metrics(payload: Any) -> MetricsTable:
    body = payload if isinstance(payload, dict) else {}
    rows: dict[str, dict[str, float | None]] = {}
    roles: dict[str, str] = {}
    for role, group in (("model", body.get("models")), ("baseline", body.get("baselines"))):
        if not isinstance(group, dict):
            continue
        for name, values in group.items():
            values = values if isinstance(values, dict) else {}
            rows[str(name)] = {c.key: scalar(values.get(c.key)) for c in METRIC_COLUMNS}
            roles[str(name)] = role
    return MetricsTable(
        symbol=str(body.get("symbol", "")),
        model_version=body.get("model_version"),
        scope=body.get("scope"),
        rows=rows,
        roles=roles,
    )


@dataclass(frozen=True)
class GateCheck:
    name: str
    value: float | None
    threshold: float | None
    passed: bool | None


@dataclass(frozen=True)
class Gate:
    """The promotion gate's verdict: passed (None when unknown), its checks, its reasons."""

    passed: bool | None
    checks: list[GateCheck] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)


def _flag(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def parse_gate(payload: Any) -> Gate | None:
    """The ``gate`` of a ``/metrics`` body, either shape; None when the bundle has none."""
    raw = payload.get("gate") if isinstance(payload, dict) else None
    if not isinstance(raw, dict):
        return None
    passed = _flag(raw.get("passed", raw.get("promote")))
    checks = [
        GateCheck(
            name=str(c.get("name", "?")),
            value=scalar(c.get("value")),
            threshold=scalar(c.get("threshold")),
            passed=_flag(c.get("passed")),
        )
        for c in raw.get("checks") or []
        if isinstance(c, dict)
    ]
    reasons = [str(r) for r in raw.get("reasons") or [] if isinstance(r, str)]
    return Gate(passed=passed, checks=checks, reasons=reasons)


@dataclass(frozen=True)
class Curve:
    """Equity curves on shared dates: ``{"strategy": [...], "buy_and_hold": [...]}``."""

    dates: list[date]
    series: dict[str, list[float | None]]
    model: str | None = None


def _curve(raw: Any, names: tuple[str, ...], model: Any = None) -> Curve | None:
    if not isinstance(raw, dict):
        return None
    dates = [day(d) for d in raw.get("dates") or []]
    if not dates or any(d is None for d in dates):
        return None
    series = {}
    for name in names:
        values = raw.get(name)
        if isinstance(values, list) and len(values) == len(dates):
            series[name] = [number(v) for v in values]
    if not series:
        return None
    return Curve(dates=dates, series=series, model=model)  # type: ignore[arg-type]


def parse_equity(payload: Any) -> Curve | None:
    """The backtest equity curve of a ``/metrics`` body, or None."""
    raw = payload.get("equity_curve") if isinstance(payload, dict) else None
    model = raw.get("model") if isinstance(raw, dict) else None
    return _curve(raw, ("strategy", "buy_and_hold"), model)


# --------------------------------------------------------------------------- forecasts


@dataclass(frozen=True)
class Band:
    level: float | None
    lower: list[float | None]
    upper: list[float | None]


@dataclass(frozen=True)
class Bar:
    date: date
    close: float
    open: float | None = None
    high: float | None = None
    low: float | None = None
    volume: float | None = None


@dataclass(frozen=True)
class PlotData:
    """``/plot/{symbol}``: price history, forecast dates, predicted closes and bands per model."""

    symbol: str
    model_version: str | None
    history: list[Bar]
    dates: list[date]
    predictions: dict[str, list[float | None]]
    intervals: dict[str, Band]

    @property
    def horizon(self) -> int:
        return len(self.dates)

    @property
    def has_ohlc(self) -> bool:
        return bool(self.history) and all(
            b.open is not None and b.high is not None and b.low is not None for b in self.history
        )

    @property
    def has_volume(self) -> bool:
        return any(b.volume for b in self.history)


def parse_plot(payload: Any) -> PlotData:
    body = payload if isinstance(payload, dict) else {}
    history = []
    for point in body.get("history") or []:
        when, close = day(point.get("date")), number(point.get("close"))
        if when is None or close is None:
            continue
        history.append(
            Bar(
                when,
                close,
                *(number(point.get(k)) for k in ("open", "high", "low", "volume")),
            )
        )
    dates = [d for d in (day(x) for x in body.get("dates") or []) if d is not None]
    predictions = {
        str(name): [number(v) for v in values]
        for name, values in (body.get("predictions") or {}).items()
        if isinstance(values, list)
    }
    intervals = {
        str(name): Band(
            number(band.get("level")),
            [number(v) for v in band.get("lower") or []],
            [number(v) for v in band.get("upper") or []],
        )
        for name, band in (body.get("intervals") or {}).items()
        if isinstance(band, dict)
    }
    return PlotData(
        symbol=str(body.get("symbol", "")),
        model_version=body.get("model_version"),
        history=history,
        dates=dates,
        predictions=predictions,
        intervals=intervals,
    )


# --------------------------------------------------------------------------- status


@dataclass(frozen=True)
class SymbolStatus:
    symbol: str
    last_date: date | None
    age_sessions: int | None
    fresh: bool | None


def parse_symbols(payload: Any) -> list[SymbolStatus]:
    body = payload if isinstance(payload, dict) else {}
    out = []
    for item in body.get("symbols") or []:
        if not isinstance(item, dict) or not item.get("symbol"):
            continue
        age = scalar(item.get("age_sessions", item.get("data_age_sessions")))
        fresh = _flag(item.get("fresh"))
        if fresh is None and isinstance(item.get("stale"), bool):
            fresh = not item["stale"]
        out.append(
            SymbolStatus(
                symbol=str(item["symbol"]),
                last_date=day(item.get("last_date")),
                age_sessions=None if age is None else int(age),
                fresh=fresh,
            )
        )
    return out


@dataclass(frozen=True)
class Health:
    ok: bool
    model_version: str | None
    problems: list[str]


def parse_health(payload: Any) -> Health:
    body = payload if isinstance(payload, dict) else {}
    problems = []
    version = None
    for part in ("bundle", "store"):
        status = body.get(part)
        if not isinstance(status, dict):
            continue
        if part == "bundle":
            version = status.get("version")
        if not status.get("ok"):
            problems.append(f"{part}: {status.get('detail') or 'not ok'}")
    return Health(ok=body.get("status") == "ok", model_version=version, problems=problems)


# --------------------------------------------------------------------------- rankings


@dataclass(frozen=True)
class RankedSymbol:
    symbol: str
    rank: int | None
    score: float | None
    lower: float | None
    upper: float | None
    as_of: date | None
    expected_return: float | None = None  # the forecast return (``score`` when absent)


@dataclass(frozen=True)
class Ranking:
    model_version: str | None
    horizon: int | None
    as_of: date | None
    rows: list[RankedSymbol]  # by rank, best first
    rank_ic: float | None
    long_short: Curve | None
    rank_ic_t: float | None = None
    best_factor: str | None = None
    best_factor_rank_ic: float | None = None
    long_short_sharpe_net: float | None = None

    def ends(self, top: int) -> tuple[list[RankedSymbol], list[RankedSymbol]]:
        """The ``top`` best and the ``top`` worst rows (the worst list never repeats the best)."""
        best = self.rows[:top]
        worst = self.rows[max(top, len(self.rows) - top) :]
        return best, list(reversed(worst))


def parse_rankings(payload: Any) -> Ranking:
    body = payload if isinstance(payload, dict) else {"rankings": payload}
    rows = []
    for item in body.get("rankings") or []:
        if not isinstance(item, dict) or not item.get("symbol"):
            continue
        nested = item.get("interval")
        interval = nested if isinstance(nested, dict) else item
        rank = number(item.get("rank"))
        score = number(item.get("score"))
        expected = number(item.get("expected_return")) if "expected_return" in item else score
        rows.append(
            RankedSymbol(
                symbol=str(item["symbol"]),
                rank=None if rank is None else int(rank),
                score=score,
                lower=number(interval.get("lower")),
                upper=number(interval.get("upper")),
                as_of=day(item.get("as_of", body.get("as_of"))),
                expected_return=expected,
            )
        )
    # by rank when every row has one, else by score, best first
    if rows and all(r.rank is not None for r in rows):
        rows.sort(key=lambda r: r.rank)  # type: ignore[arg-type, return-value]
    else:
        rows.sort(key=lambda r: -math.inf if r.score is None else r.score, reverse=True)
    horizon = number(body.get("horizon"))
    return Ranking(
        model_version=body.get("model_version"),
        horizon=None if horizon is None else int(horizon),
        as_of=day(body.get("as_of")) or next((r.as_of for r in rows if r.as_of), None),
        rows=rows,
        rank_ic=number(body.get("rank_ic")),
        long_short=_curve(body.get("long_short"), ("equity",)),
        rank_ic_t=number(body.get("rank_ic_t")),
        best_factor=body.get("best_factor") if isinstance(body.get("best_factor"), str) else None,
        best_factor_rank_ic=number(body.get("best_factor_rank_ic")),
        long_short_sharpe_net=number(body.get("long_short_sharpe_net")),
    )


# --------------------------------------------------------------------------- monitoring

LIVE_COLUMNS: tuple[MetricColumn, ...] = (
    MetricColumn("n", "sessions", ",.0f", "Served forecasts scored (their outcome is realised)."),
    MetricColumn(
        "rmse_ratio_vs_naive", "RMSE / naive", ".3f", "Live error over the no-change forecast's."
    ),
    MetricColumn(
        "rmse_ratio_vs_drift", "RMSE / drift", ".3f", "Live error over the average-move forecast's."
    ),
    MetricColumn(
        "dm_pvalue_vs_best_baseline",
        "DM p vs best baseline",
        ".3f",
        "One-sided Diebold-Mariano test against the better baseline; small means a real edge.",
    ),
    MetricColumn(
        "directional_accuracy", "direction hit rate", ".1%", "Up/down moves called right."
    ),
    MetricColumn(
        "directional_accuracy_always_long",
        "always-long hit rate",
        ".1%",
        "The hit rate of always saying 'up' on the same sessions.",
    ),
    MetricColumn(
        "interval_coverage",
        "interval coverage",
        ".1%",
        "Realised prices inside the served band (should match its level, 90%).",
    ),
    MetricColumn("rank_ic", "rank IC", ".3f", "Per-session Spearman across symbols (universes)."),
)
SERIES_KEYS = (
    "rmse_ratio_vs_naive",
    "rmse_ratio_vs_drift",
    "directional_accuracy",
    "directional_accuracy_always_long",
    "interval_coverage",
)


@dataclass(frozen=True)
class Series:
    """One model's live figures over time at one horizon (rolling, per session)."""

    dates: list[date]
    values: dict[str, list[float | None]]


@dataclass(frozen=True)
class Live:
    """``/metrics/{symbol}``'s live block."""

    run_date: date | None
    sessions: int | None
    start: date | None
    end: date | None
    # model -> horizon -> figure -> value
    figures: dict[str, dict[int, dict[str, float | None]]]
    # model -> horizon -> series
    series: dict[str, dict[int, Series]]

    @property
    def horizons(self) -> list[int]:
        return sorted({h for by_h in self.figures.values() for h in by_h})

    def display_rows(self, horizon: int) -> list[dict[str, str]]:
        return [
            {
                "model": name,
                **{c.label: fmt(by_h.get(horizon, {}).get(c.key), c.spec) for c in LIVE_COLUMNS},
            }
            for name, by_h in self.figures.items()
        ]


def _by_horizon(raw: Any) -> dict[int, Any]:
    out: dict[int, Any] = {}
    for key, value in (raw or {}).items() if isinstance(raw, dict) else ():
        try:
            out[int(key)] = value
        except (TypeError, ValueError):
            continue
    return out


def parse_live(payload: Any) -> Live | None:
    body = payload if isinstance(payload, dict) else {}
    live = body.get("live")
    if not isinstance(live, dict):
        return None
    window = live.get("window") if isinstance(live.get("window"), dict) else {}
    figures: dict[str, dict[int, dict[str, float | None]]] = {}
    for name, horizons in (live.get("models") or {}).items():
        figures[str(name)] = {
            h: {c.key: number(v.get(c.key)) for c in LIVE_COLUMNS}
            for h, v in _by_horizon(horizons).items()
            if isinstance(v, dict)
        }
    series: dict[str, dict[int, Series]] = {}
    for name, horizons in (live.get("series") or {}).items():
        for h, raw in _by_horizon(horizons).items():
            if not isinstance(raw, dict):
                continue
            dates = [day(d) for d in raw.get("dates") or []]
            if not dates or any(d is None for d in dates):
                continue
            values = {
                k: [number(v) for v in raw.get(k) or [None] * len(dates)] for k in SERIES_KEYS
            }
            series.setdefault(str(name), {})[h] = Series(dates, values)  # type: ignore[arg-type]
    sessions = number(window.get("sessions"))
    return Live(
        run_date=day(live.get("run_date")),
        sessions=None if sessions is None else int(sessions),
        start=day(window.get("start")),
        end=day(window.get("end")),
        figures=figures,
        series=series,
    )


@dataclass(frozen=True)
class DriftRow:
    feature: str
    psi: float | None
    threshold: float | None
    drifted: bool


@dataclass(frozen=True)
class Freshness:
    symbol: str
    last_date: date | None
    age_sessions: int | None
    stale: bool | None


@dataclass(frozen=True)
class Monitoring:
    """``/monitoring``: the monitor's last run."""

    run_date: date | None
    model_version: str | None
    drift: bool | None
    drift_reason: str | None
    drift_rows: list[DriftRow]  # by PSI, highest first
    drifted_share: float | None
    max_drifted_share: float | None
    expected_session: date | None
    freshness: list[Freshness]
    quarantine_share: float | None
    quarantine_max: float | None
    quarantine_alarm: bool | None
    retrain: bool | None
    reasons: list[str]
    checks: list[dict[str, Any]]
    trigger: dict[str, Any] | None

    @property
    def stale(self) -> list[str]:
        return [f.symbol for f in self.freshness if f.stale]


def parse_monitoring(payload: Any) -> Monitoring:
    body = payload if isinstance(payload, dict) else {}
    drift = body.get("drift") if isinstance(body.get("drift"), dict) else {}
    rows = []
    for name, f in (drift.get("features") or {}).items():
        if isinstance(f, dict):
            rows.append(
                DriftRow(
                    str(name),
                    number(f.get("psi")),
                    number(f.get("threshold")),
                    bool(f.get("drifted")),
                )
            )
    rows.sort(key=lambda r: -math.inf if r.psi is None else r.psi, reverse=True)
    freshness_block = body.get("freshness") if isinstance(body.get("freshness"), dict) else {}
    freshness = []
    for symbol, f in (freshness_block.get("symbols") or {}).items():
        if isinstance(f, dict):
            age = number(f.get("age_sessions"))
            freshness.append(
                Freshness(
                    str(symbol),
                    day(f.get("last_date")),
                    None if age is None else int(age),
                    _flag(f.get("stale")),
                )
            )
    quarantine = body.get("quarantine") if isinstance(body.get("quarantine"), dict) else {}
    retrain = body.get("retrain") if isinstance(body.get("retrain"), dict) else {}
    return Monitoring(
        run_date=day(body.get("run_date")),
        model_version=body.get("model_version"),
        drift=_flag(drift.get("drift")),
        drift_reason=drift.get("reason"),
        drift_rows=rows,
        drifted_share=number(drift.get("drifted_share")),
        max_drifted_share=number(drift.get("max_drifted_share")),
        expected_session=day(freshness_block.get("expected_session")),
        freshness=freshness,
        quarantine_share=number(quarantine.get("share")),
        quarantine_max=number(quarantine.get("max_share")),
        quarantine_alarm=_flag(quarantine.get("alarm")),
        retrain=_flag(retrain.get("retrain")),
        reasons=[str(r) for r in retrain.get("reasons") or []],
        checks=[c for c in retrain.get("checks") or [] if isinstance(c, dict)],
        trigger=retrain.get("trigger") if isinstance(retrain.get("trigger"), dict) else None,
    )
