"""Cross-sectional evaluation: does a score order the symbols of each date by what they return?

A universe model is judged as a ranking, as the literature judges one (Grinold and Kahn's
information coefficient, decile portfolios), on rows of many symbols and dates:

- the **daily rank IC**: per date, the Spearman correlation of the scores with the forward
  returns over the symbols scored that date; summarised by its mean, its standard deviation,
  the ICIR (mean / std) and a Newey-West t-statistic of the mean (the dates are the
  observations; an h-session outcome overlaps the next h - 1, so the HAC window has at least
  ``h - 1`` lags);
- a **long-short portfolio**: each date, long the top ``quantile`` of the scores and short the
  bottom one, equal weights within each leg (one unit of capital per leg), held for one
  session; the signal of date ``t - lag`` sets the positions held from ``t``'s close to
  ``t + 1``'s (lag 0 trades at the signal's own close, which is optimistic: a session's
  features exist only after it closes);
- a **long-only top-k** portfolio beside the equal-weight universe of the same dates;
- costs of ``cost_bps`` per side: every unit of weight bought or sold pays it. ``turnover`` is
  the mean daily traded value on one side (bought = sold), as a fraction of one unit of
  capital: 1.0 = a long-only book replaced each day, 2.0 = both legs of a long-short book.
  Weights are reset to target every session (their drift within the session is ignored);
- the **same figures for the classic single factors** on the same rows (short-term
  reversal, 12-1 momentum, low volatility), and the model's daily rank IC against the best of
  them as a paired difference with its own Newey-West t;
- a per-year breakdown.

A symbol enters a date's figures only with a finite score (on the signal's date) and a
finite outcome (a symbol that stops trading leaves the portfolio at its last outcome), and a
date with fewer than ``min_names`` such symbols is left out (no position, no IC).

``universe_labels`` builds the targets the universe models learn: a forward return relative
to the universe of its date (its centred percentile rank, or its excess over the equal-weight
mean).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from stockml.evaluation import TRADING_DAYS, hac_variance, newey_west_lags

# --------------------------------------------------------------------------- layout


@dataclass(frozen=True)
class CrossSections:
    """Rows laid out as a ``[dates, symbols]`` grid: ``index[d, s]`` is the row of symbol
    ``s`` on date ``d`` (sorted), or -1 when there is none."""

    dates: np.ndarray
    symbols: np.ndarray
    index: np.ndarray

    @classmethod
    def of(cls, dates: np.ndarray, symbols: np.ndarray | None = None) -> CrossSections:
        """The grid of rows dated ``dates`` (one column per symbol; without ``symbols`` each
        row gets its own position in its date, e.g. validation rows grouped by date only).

        Raises:
            ValueError: two rows share a (date, symbol).
        """
        date_codes, uniq_dates = pd.factorize(np.asarray(dates), sort=True)
        if symbols is None:
            order = np.argsort(date_codes, kind="stable")
            counts = np.bincount(date_codes, minlength=len(uniq_dates))
            starts = np.r_[0, np.cumsum(counts)[:-1]]
            cols = np.empty(len(order), np.int64)
            cols[order] = np.arange(len(order)) - np.repeat(starts, counts)
            uniq_symbols = np.arange(int(counts.max()) if len(counts) else 0)
        else:
            cols, uniq_symbols = pd.factorize(np.asarray(symbols), sort=True)
        keys = date_codes.astype(np.int64) * max(len(uniq_symbols), 1) + cols
        if len(np.unique(keys)) != len(keys):
            raise ValueError("two rows share a date and symbol")
        index = np.full((len(uniq_dates), len(uniq_symbols)), -1, np.int64)
        index[date_codes, cols] = np.arange(len(cols))
        return cls(np.asarray(uniq_dates), np.asarray(uniq_symbols), index)

    def grid(self, values: np.ndarray) -> np.ndarray:
        """``values`` ``[n]`` as a float64 ``[dates, symbols]`` grid, NaN where no row."""
        out = np.full(self.index.shape, np.nan)
        present = self.index >= 0
        out[present] = np.asarray(values, np.float64)[self.index[present]]
        return out


def rank_rows(grid: np.ndarray) -> np.ndarray:
    """Average ranks (1..n, ties averaged) within each row over its finite values; NaN else."""
    finite = np.isfinite(grid)
    ranks = stats.rankdata(np.where(finite, grid, np.inf), axis=1, method="average")
    return np.where(finite, ranks, np.nan)


def daily_rank_ic(score: np.ndarray, outcome: np.ndarray, min_names: int) -> np.ndarray:
    """Per row (date) of two ``[dates, symbols]`` grids: Spearman's rho over the symbols where
    both are finite; NaN for a date with fewer than ``min_names`` of them or no variation."""
    both = np.isfinite(score) & np.isfinite(outcome)
    rs = rank_rows(np.where(both, score, np.nan))
    ry = rank_rows(np.where(both, outcome, np.nan))
    n = both.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        a = rs - np.nanmean(np.where(both, rs, np.nan), axis=1, keepdims=True)
        b = ry - np.nanmean(np.where(both, ry, np.nan), axis=1, keepdims=True)
        a, b = np.where(both, a, 0.0), np.where(both, b, 0.0)
        den = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
        ic = (a * b).sum(axis=1) / den
    return np.where((n >= min_names) & (den > 0), ic, np.nan)


def mean_rank_ic(score: np.ndarray, outcome: np.ndarray, sections: CrossSections) -> float:
    """The mean daily rank IC of ``score`` ``[n]`` against ``outcome`` ``[n]`` (0 if none):
    what the universe models stop early on (every date with 3+ names counts)."""
    ic = daily_rank_ic(sections.grid(score), sections.grid(outcome), 3)
    ic = ic[np.isfinite(ic)]
    return float(ic.mean()) if len(ic) else 0.0


def ic_summary(ic: np.ndarray, horizon: int) -> dict[str, Any]:
    """Mean, std, ICIR, Newey-West t (lags ``max(h - 1, newey_west_lags(n))``) and the share
    of dates with a positive IC, over the finite daily ICs."""
    values = np.asarray(ic, np.float64)
    values = values[np.isfinite(values)]
    n = len(values)
    out: dict[str, Any] = {
        "rank_ic": None,
        "rank_ic_std": None,
        "icir": None,
        "rank_ic_t": None,
        "hit_rate": None,
        "n_dates": n,
    }
    if n < 3:
        return out
    mean, std = float(values.mean()), float(values.std(ddof=1))
    lrv = hac_variance(values, max(horizon - 1, newey_west_lags(n)))
    out.update(
        rank_ic=mean,
        rank_ic_std=std,
        icir=mean / std if std > 0 else None,
        rank_ic_t=mean / math.sqrt(lrv / n) if lrv > 1e-30 else None,
        hit_rate=float((values > 0).mean()),
    )
    return out


# --------------------------------------------------------------------------- portfolios


def _lagged(grid: np.ndarray, lag: int) -> np.ndarray:
    """The grid shifted down by ``lag`` dates (row t holds row t - lag; NaN before)."""
    if lag <= 0:
        return grid
    out = np.full_like(grid, np.nan)
    out[lag:] = grid[:-lag]
    return out


def rank_weights(
    score: np.ndarray, returns: np.ndarray, count: np.ndarray, min_names: int, short: bool
) -> np.ndarray:
    """``[dates, symbols]`` weights: ``1/k`` on the ``k = count[d]`` best scores of each date
    (and ``-1/k`` on the k worst when ``short``), among the symbols with a finite score and
    outcome; 0 on a date with fewer than ``min_names`` of them."""
    eligible = np.isfinite(score) & np.isfinite(returns)
    n = eligible.sum(axis=1)
    # descending order of the eligible scores; the others sort last
    order = np.argsort(np.where(eligible, -score, np.inf), axis=1, kind="stable")
    position = np.empty_like(order)
    np.put_along_axis(position, order, np.arange(score.shape[1])[None, :], axis=1)
    k = np.clip(np.asarray(count, np.int64), 1, np.maximum(n, 1))[:, None]
    active = (n >= min_names)[:, None] & eligible
    weights = np.where(active & (position < k), 1.0 / k, 0.0)
    if short:
        weights = np.where(active & (position >= n[:, None] - k), -1.0 / k, weights)
    return weights


def eligible_names(score: np.ndarray, returns: np.ndarray) -> np.ndarray:
    """Per date, the symbols with a finite score and outcome."""
    return (np.isfinite(score) & np.isfinite(returns)).sum(axis=1)


def _performance(daily: np.ndarray) -> dict[str, float | None]:
    """Annual return, Sharpe (sqrt(252)) and max drawdown of simple daily returns."""
    r = np.asarray(daily, np.float64)
    r = r[np.isfinite(r)]
    if len(r) < 2:
        return {"annual_return": None, "sharpe": None, "max_drawdown": None}
    equity = np.cumprod(1.0 + r)
    sd = r.std(ddof=1)
    return {
        "annual_return": float(equity[-1] ** (TRADING_DAYS / len(r)) - 1.0)
        if equity[-1] > 0
        else -1.0,
        "sharpe": float(r.mean() / sd * math.sqrt(TRADING_DAYS)) if sd > 0 else None,
        "max_drawdown": float((equity / np.maximum.accumulate(equity) - 1.0).min()),
    }


@dataclass(frozen=True)
class Portfolio:
    """Daily returns of a portfolio (gross and net of costs), its traded value and weights."""

    gross: np.ndarray
    net: np.ndarray
    traded: np.ndarray  # sum of |weight changes| per date (both sides)

    def summary(self) -> dict[str, Any]:
        gross, net = _performance(self.gross), _performance(self.net)
        return {
            "annual_return_gross": gross["annual_return"],
            "sharpe_gross": gross["sharpe"],
            "annual_return_net": net["annual_return"],
            "sharpe_net": net["sharpe"],
            "max_drawdown_net": net["max_drawdown"],
            # one side of the trades, per unit of capital (see the module docstring)
            "turnover": float(self.traded.mean() / 2.0) if len(self.traded) else None,
            "n_dates": len(self.net),
        }


def portfolio(weights: np.ndarray, returns: np.ndarray, cost_bps: float) -> Portfolio:
    """Hold ``weights[t]`` over date t's outcome; pay ``cost_bps`` per unit traded."""
    gross = np.nansum(weights * np.where(np.isfinite(returns), returns, 0.0), axis=1)
    previous = np.vstack([np.zeros((1, weights.shape[1])), weights[:-1]])
    traded = np.abs(weights - previous).sum(axis=1)
    return Portfolio(gross, gross - traded * cost_bps / 1e4, traded)


def long_short(
    score: np.ndarray,
    returns: np.ndarray,
    quantile: float,
    lag: int,
    cost_bps: float,
    min_names: int,
) -> Portfolio:
    """Top ``quantile`` long, bottom ``quantile`` short (``max(1, floor(n * quantile))``
    names each), signal ``lag`` dates old."""
    signal = _lagged(score, lag)
    count = np.floor(eligible_names(signal, returns) * quantile)
    return portfolio(rank_weights(signal, returns, count, min_names, short=True), returns, cost_bps)


def top_k(
    score: np.ndarray, returns: np.ndarray, k: int, lag: int, cost_bps: float, min_names: int
) -> dict[str, Any]:
    """Long the ``k`` best scores (equal weights) against the equal-weight universe."""
    signal = _lagged(score, lag)
    eligible = np.isfinite(signal) & np.isfinite(returns)
    n = eligible.sum(axis=1)
    weights = rank_weights(signal, returns, np.full(len(n), k), min_names, short=False)
    book = portfolio(weights, returns, cost_bps)
    # the benchmark holds every eligible name (of the same dates, with the same signal lag)
    benchmark = np.where(
        n >= min_names,
        np.nansum(np.where(eligible, returns, 0.0), axis=1) / np.maximum(n, 1),
        0.0,
    )
    active = book.net - benchmark
    bench = _performance(benchmark)
    out = book.summary()
    sd = active.std(ddof=1) if len(active) > 1 else 0.0
    out.update(
        k=k,
        benchmark_annual_return=bench["annual_return"],
        benchmark_sharpe=bench["sharpe"],
        excess_annual_return=None
        if out["annual_return_net"] is None or bench["annual_return"] is None
        else out["annual_return_net"] - bench["annual_return"],
        information_ratio=float(active.mean() / sd * math.sqrt(TRADING_DAYS)) if sd > 0 else None,
    )
    return out


# --------------------------------------------------------------------------- labels


def universe_labels(frame: pd.DataFrame, target_names: list[str], kind: str) -> np.ndarray:
    """``[rows, H]`` targets relative to the universe of each row's date.

    Args:
        frame: rows of many symbols with ``date`` and the forward-return ``target_names``.
        target_names: the H target columns.
        kind: ``rank``: the centred percentile ``(rank - 1) / (n - 1) - 0.5`` of the row's
            forward return among the date's ``n`` finite ones (ties averaged; 0 when n = 1);
            ``excess``: the forward return less their mean.

    Returns:
        NaN where the row's own target is not known.
    """
    y = frame[target_names].to_numpy(np.float64)
    codes = pd.factorize(frame["date"].to_numpy())[0]
    out = np.full(y.shape, np.nan)
    for h in range(y.shape[1]):
        values = pd.Series(y[:, h])
        groups = values.groupby(codes)
        if kind == "rank":
            rank = groups.rank(method="average").to_numpy()
            n = groups.transform("count").to_numpy().astype(np.float64)
            with np.errstate(invalid="ignore", divide="ignore"):
                out[:, h] = np.where(n > 1, (rank - 1.0) / (n - 1.0) - 0.5, 0.0)
        elif kind == "excess":
            out[:, h] = y[:, h] - groups.transform("mean").to_numpy()
        else:
            raise ValueError(f"unknown universe target {kind!r}: rank or excess")
        out[~np.isfinite(y[:, h]), h] = np.nan
    return out


def fit_score_map(
    scores: dict[str, np.ndarray], y: np.ndarray, dates: np.ndarray
) -> dict[str, dict[str, list[float]]]:
    """Per model and horizon, how its score maps to a forecast return (``bundle.score_to_return``):
    ``center`` its mean score, ``beta`` the pooled slope (through the origin) of the excess
    return (``y`` less the date's mean) on the score less the date's mean score, floored at 0:
    a score no better than its inverse on these rows adds nothing to the drift forecast.

    Args:
        scores: ``{model: [n, H]}`` scores on the validation slice.
        y: ``[n, H]`` its forward log returns.
        dates: ``[n]`` each row's date.
    """
    codes = pd.factorize(np.asarray(dates))[0]

    def demeaned(values: np.ndarray) -> np.ndarray:
        frame = pd.DataFrame(values)
        return (frame - frame.groupby(codes).transform("mean")).to_numpy(np.float64)

    excess = demeaned(np.asarray(y, np.float64))
    out = {}
    for name, score in scores.items():
        s = np.asarray(score, np.float64)
        centred = demeaned(s)
        ok = np.isfinite(centred) & np.isfinite(excess)
        num = np.where(ok, centred * excess, 0.0).sum(axis=0)
        den = np.where(ok, centred * centred, 0.0).sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            beta = np.where(den > 0, np.maximum(num / den, 0.0), 0.0)
        out[name] = {
            "center": [float(v) for v in np.nanmean(s, axis=0)],
            "beta": [float(v) for v in beta],
        }
    return out


# --------------------------------------------------------------------------- the report


def score_block(
    score: np.ndarray,
    y: np.ndarray,
    sections: CrossSections,
    *,
    quantile: float,
    k: int,
    lags: list[int],
    execution_lag: int,
    cost_bps: float,
    min_names: int,
) -> dict[str, Any]:
    """Every cross-sectional figure of one score ``[n, H]`` against outcomes ``y`` ``[n, H]``.

    Portfolios use horizon 1 (held one session, rebalanced daily); the rank IC is given for
    every horizon.
    """
    by_horizon = {}
    daily_ic = None
    for h in range(y.shape[1]):
        ic = daily_rank_ic(sections.grid(score[:, h]), sections.grid(y[:, h]), min_names)
        by_horizon[str(h + 1)] = ic_summary(ic, h + 1)
        if h == 0:
            daily_ic = ic
    assert daily_ic is not None
    s1, r1 = sections.grid(score[:, 0]), np.expm1(sections.grid(y[:, 0]))
    books = {
        lag: long_short(s1, r1, quantile, lag, cost_bps, min_names)
        for lag in sorted({*lags, execution_lag})
    }
    headline = books[execution_lag].summary()
    years = pd.DatetimeIndex(sections.dates).year.to_numpy()
    per_year = {}
    for year in np.unique(years):
        rows = years == year
        summary = ic_summary(daily_ic[rows], 1)
        book = books[execution_lag]
        per_year[str(year)] = {
            "rank_ic": summary["rank_ic"],
            "rank_ic_t": summary["rank_ic_t"],
            "n_dates": summary["n_dates"],
            "long_short_sharpe_net": _performance(book.net[rows])["sharpe"],
        }
    first = by_horizon["1"]
    return {
        "rank_ic": first["rank_ic"],
        "rank_ic_t": first["rank_ic_t"],
        "icir": first["icir"],
        "long_short_sharpe_net": headline["sharpe_net"],
        "turnover": headline["turnover"],
        "by_horizon": by_horizon,
        "long_short": {f"lag_{lag}": book.summary() for lag, book in books.items()},
        "top_k": {
            f"lag_{lag}": top_k(s1, r1, k, lag, cost_bps, min_names)
            for lag in sorted({*lags, execution_lag})
        },
        "per_year": per_year,
    }


def paired_ic(
    a: np.ndarray, b: np.ndarray, y: np.ndarray, sections: CrossSections, min_names: int
) -> dict[str, dict[str, Any]]:
    """Per horizon: the daily rank IC of score ``a`` minus that of ``b`` on the dates both
    have one; mean and Newey-West t of the difference."""
    out = {}
    for h in range(y.shape[1]):
        outcome = sections.grid(y[:, h])
        diff = daily_rank_ic(sections.grid(a[:, h]), outcome, min_names) - daily_rank_ic(
            sections.grid(b[:, h]), outcome, min_names
        )
        summary = ic_summary(diff, h + 1)
        out[str(h + 1)] = {
            "rank_ic_diff": summary["rank_ic"],
            "t": summary["rank_ic_t"],
            "n_dates": summary["n_dates"],
        }
    return out


def universe_report(
    symbols: np.ndarray,
    dates: np.ndarray,
    scores: dict[str, np.ndarray],
    factors: dict[str, np.ndarray],
    y: np.ndarray,
    *,
    quantile: float,
    k: int,
    lags: list[int],
    execution_lag: int,
    cost_bps: float,
    min_names: int,
) -> dict[str, Any]:
    """The cross-sectional figures of every model's score and every single factor on the same
    rows, the best factor (highest mean daily rank IC at horizon 1) and each model against it.

    Args:
        symbols, dates: ``[n]`` which row is which (one row per symbol and date).
        scores: ``{model: [n, H]}`` the models' ranking scores.
        factors: ``{factor: [n]}`` single-factor scores (one value per row, every horizon).
        y: ``[n, H]`` realised forward log returns.
    """
    sections = CrossSections.of(dates, symbols)
    options: dict[str, Any] = {
        "quantile": quantile,
        "k": k,
        "lags": lags,
        "execution_lag": execution_lag,
        "cost_bps": cost_bps,
        "min_names": min_names,
    }
    horizon = y.shape[1]
    factor_scores = {name: np.tile(f[:, None], (1, horizon)) for name, f in factors.items()}
    models = {name: score_block(s, y, sections, **options) for name, s in scores.items()}
    factor_blocks = {
        name: score_block(s, y, sections, **options) for name, s in factor_scores.items()
    }
    ranked = [n for n, b in factor_blocks.items() if b["rank_ic"] is not None]
    best = max(ranked, key=lambda n: factor_blocks[n]["rank_ic"]) if ranked else None
    versus = (
        {}
        if best is None
        else {
            name: paired_ic(s, factor_scores[best], y, sections, min_names)
            for name, s in scores.items()
        }
    )
    return {
        "quantile": quantile,
        "top_k": k,
        "cost_bps": cost_bps,
        "execution_lag": execution_lag,
        "min_names": min_names,
        "n_dates": len(sections.dates),
        "n_symbols": len(sections.symbols),
        "models": models,
        "factors": factor_blocks,
        "best_factor": best,
        "vs_best_factor": versus,
    }


def long_short_equity(
    symbols: np.ndarray,
    dates: np.ndarray,
    score: np.ndarray,
    y_1: np.ndarray,
    *,
    quantile: float,
    lag: int,
    cost_bps: float,
    min_names: int,
) -> dict[str, list[Any]]:
    """Net equity (from 1) of the long-short portfolio of ``score`` ``[n]``: the curve the API
    and the dashboard show, ``{"dates": [...], "equity": [...]}``."""
    sections = CrossSections.of(dates, symbols)
    book = long_short(
        sections.grid(score), np.expm1(sections.grid(y_1)), quantile, lag, cost_bps, min_names
    )
    return {
        "dates": [pd.Timestamp(d).date().isoformat() for d in sections.dates],
        "equity": [float(v) for v in np.cumprod(1.0 + book.net)],
    }
