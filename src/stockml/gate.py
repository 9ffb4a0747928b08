"""The promotion gate: a model becomes the serving champion only with evidence.

Every threshold comes from ``configs/model_config.yaml`` ``promotion:`` (``PromotionConfig``).
The gated model (the ensemble by default) must, on the walk-forward test rows:

- beat the BETTER of the naive and drift baselines with a one-sided Diebold-Mariano test
  (Harvey-Leybourne-Newbold correction, HAC variance) at ``p < max_dm_pvalue`` on every
  configured horizon;
- be scored on at least ``min_test_sessions`` sessions in at least ``min_folds`` folds, with
  an RMSE below the better baseline's in at least ``min_folds_beating_baselines`` of them;
- earn a net-of-cost long/flat Sharpe ratio not below buy-and-hold's (switchable off);
- cover outcomes with its nominal band at a rate within ``coverage_range``;
- match its ONNX twin within ``parity_tolerance`` (every exported model);
- when a champion exists: not be significantly worse than it on the rows where both have
  out-of-sample forecasts (one-sided DM, ``champion_max_pvalue``);
- for a universe bundle (a ranking; ``stockml.ranking``): a mean daily rank IC with a
  Newey-West t of at least ``min_rank_ic_t``, a top/bottom long-short portfolio whose Sharpe
  net of costs (at the configured execution lag) is above ``min_long_short_sharpe``, and a
  daily rank IC above the best classic single factor's on the same rows, the paired
  difference's t at least ``min_rank_ic_t_vs_best_factor``: a model that cannot beat a
  one-line factor is not a model.

Each check is reported with its value, threshold and verdict (CLI, MLflow tags, the bundle's
metrics and ``stockml evaluate --json``). A refused model stays a challenger.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from stockml.evaluation import Forecasts, json_safe, paired_test
from stockml.model_config import PromotionConfig


@dataclass(frozen=True)
class Champion:
    """The serving champion's out-of-sample forecasts (its own walk-forward forecasts, plus
    forward forecasts for sessions after its training end)."""

    version: str
    forecasts: Forecasts


@dataclass(frozen=True)
class Check:
    """One gate check: ``passed`` is whether ``value`` meets ``threshold`` under ``rule``."""

    name: str
    value: Any
    threshold: Any
    passed: bool
    rule: str


@dataclass(frozen=True)
class GateResult:
    """The gate's verdict on one model: every check, and passed only if all passed."""

    model: str
    checks: list[Check]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    @property
    def summary(self) -> str:
        """``promoted`` or ``refused: <failed check> <value> (<rule>); ...``."""
        if self.passed:
            return "promoted"
        return "refused: " + "; ".join(f"{c.name} {_show(c.value)} ({c.rule})" for c in self.failed)

    def to_dict(self) -> dict[str, Any]:
        return json_safe(
            {
                "passed": self.passed,
                "model": self.model,
                "checks": [asdict(c) for c in self.checks],
            }
        )


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "n/a" if value is None else str(value)


def _ok(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and np.isfinite(value)


def assess(
    report: dict[str, Any],
    parity: dict[str, dict[str, Any]] | None,
    champion: dict[str, dict[str, Any]] | None,
    config: PromotionConfig,
) -> GateResult:
    """Apply every check to a walk-forward report.

    Args:
        report: ``{"folds": [...], "models": {...}}`` (``WalkForward.report()``).
        parity: per exported model ``{"max_abs", "batch1_max_abs", ...}``; None when no model
            was exported (the check then fails: no evidence).
        champion: ``compare_with_champion``'s result per horizon, or None (no champion).
        config: the thresholds.
    """
    model = config.model
    block = report["models"].get(model)
    checks: list[Check] = []
    if block is None:
        checks.append(Check("model", None, model, False, f"{model} must be evaluated"))
        return GateResult(model, checks)
    pooled = block["pooled"]
    for h in config.horizons:
        m = pooled["by_horizon"].get(str(h), {})
        p = m.get("dm_pvalue_vs_best_baseline")
        checks.append(
            Check(
                f"dm_pvalue_vs_best_baseline_h{h}",
                p,
                config.max_dm_pvalue,
                _ok(p) and p < config.max_dm_pvalue,
                f"one-sided DM vs {m.get('best_baseline', 'the better baseline')} < threshold",
            )
        )
    sessions = pooled.get("n_sessions")
    checks.append(
        Check(
            "test_sessions",
            sessions,
            config.min_test_sessions,
            _ok(sessions) and sessions >= config.min_test_sessions,
            "out-of-sample sessions >= threshold",
        )
    )
    folds = report.get("folds", [])
    checks.append(
        Check(
            "folds",
            len(folds),
            config.min_folds,
            len(folds) >= config.min_folds,
            "walk-forward folds >= threshold",
        )
    )
    for h in config.horizons:
        ratios = [f["models"].get(model, {}).get("rmse_ratio_vs_best_baseline") for f in folds]
        beating = sum(1 for r in ratios if r is not None and _ok(r[h - 1]) and r[h - 1] < 1.0)
        checks.append(
            Check(
                f"folds_beating_best_baseline_h{h}",
                beating,
                config.min_folds_beating_baselines,
                beating >= config.min_folds_beating_baselines,
                "folds with RMSE below the better baseline's >= threshold",
            )
        )
    if config.require_sharpe_vs_buy_and_hold:
        backtest = pooled["backtest"]
        sharpe, hold = backtest["strategy"]["sharpe"], backtest["buy_and_hold"]["sharpe"]
        checks.append(
            Check(
                "sharpe_vs_buy_and_hold",
                sharpe,
                hold,
                _ok(sharpe) and (not _ok(hold) or sharpe >= hold),
                f"long/flat Sharpe net of {backtest['cost_bps']:g} bps, lag "
                f"{backtest['execution_lag']} >= buy-and-hold's",
            )
        )
    lo, hi = config.coverage_range
    for h in config.horizons:
        coverage = pooled["by_horizon"].get(str(h), {}).get("interval_coverage")
        checks.append(
            Check(
                f"interval_coverage_h{h}",
                coverage,
                [lo, hi],
                _ok(coverage) and lo <= coverage <= hi,
                "coverage of the nominal band within [lo, hi]",
            )
        )
    worst = (
        None if not parity else max(max(p["max_abs"], p["batch1_max_abs"]) for p in parity.values())
    )
    checks.append(
        Check(
            "onnx_parity_max_abs",
            worst,
            config.parity_tolerance,
            worst is not None and _ok(worst) and worst <= config.parity_tolerance,
            "max |ONNX - native| over every exported model, batch and single row <= threshold",
        )
    )
    universe = report.get("universe")
    if universe is not None:
        checks += _universe_checks(universe, model, config)
    if champion is not None:
        for h in config.horizons:
            c = champion.get(str(h), {})
            n = c.get("n_sessions", 0)
            p = c.get("pvalue_challenger_worse")
            if n < config.champion_min_sessions:
                checks.append(
                    Check(
                        f"champion_pvalue_challenger_worse_h{h}",
                        p,
                        config.champion_max_pvalue,
                        True,
                        f"not tested: {n} shared out-of-sample sessions < "
                        f"{config.champion_min_sessions}",
                    )
                )
                continue
            checks.append(
                Check(
                    f"champion_pvalue_challenger_worse_h{h}",
                    p,
                    config.champion_max_pvalue,
                    p is None or not _ok(p) or p >= config.champion_max_pvalue,
                    f"one-sided DM, challenger worse than champion {c.get('champion_version')} "
                    f"on {n} shared sessions: p >= threshold",
                )
            )
    return GateResult(model, checks)


def _universe_checks(universe: dict[str, Any], model: str, config: PromotionConfig) -> list[Check]:
    """The checks of a ranking: rank IC t, net long-short Sharpe, and the best single factor."""
    block = universe["models"].get(model)
    if block is None:
        return [Check("rank_ic", None, model, False, f"{model} must have ranking scores")]
    checks = []
    for h in config.horizons:
        t = block["by_horizon"].get(str(h), {}).get("rank_ic_t")
        checks.append(
            Check(
                f"rank_ic_t_h{h}",
                t,
                config.min_rank_ic_t,
                _ok(t) and t >= config.min_rank_ic_t,
                "Newey-West t of the mean daily rank IC >= threshold",
            )
        )
    lag = universe["execution_lag"]
    sharpe = block["long_short"].get(f"lag_{lag}", {}).get("sharpe_net")
    checks.append(
        Check(
            "long_short_sharpe_net",
            sharpe,
            config.min_long_short_sharpe,
            _ok(sharpe) and sharpe > config.min_long_short_sharpe,
            f"top/bottom {universe['quantile']:.0%} long-short Sharpe net of "
            f"{universe['cost_bps']:g} bps per side, lag {lag} > threshold",
        )
    )
    best = universe.get("best_factor")
    for h in config.horizons:
        versus = universe.get("vs_best_factor", {}).get(model, {}).get(str(h), {})
        t = versus.get("t")
        checks.append(
            Check(
                f"rank_ic_t_vs_best_factor_h{h}",
                t,
                config.min_rank_ic_t_vs_best_factor,
                _ok(t) and t >= config.min_rank_ic_t_vs_best_factor,
                f"t of the daily rank IC minus the best single factor's ({best}) >= threshold",
            )
        )
    return checks


def compare_with_champion(
    forecasts: Forecasts, y: np.ndarray, champion: Champion, config: PromotionConfig
) -> dict[str, dict[str, Any]]:
    """Paired test of the challenger's and the champion's gated model on the same rows.

    Args:
        forecasts, y: the challenger's walk-forward forecasts and outcomes.
        champion: the champion's out-of-sample forecasts of the same model name.
        config: which model and horizons.

    Returns:
        ``{str(h): paired_test(...) + {"champion_version"}}`` on the shared (symbol, date) rows.
    """
    model = config.model
    theirs = champion.forecasts
    mine = {
        (str(s), np.datetime64(d, "D")): i
        for i, (s, d) in enumerate(zip(forecasts.symbols, forecasts.dates, strict=True))
    }
    rows_c, rows_k = [], []
    for j, (s, d) in enumerate(zip(theirs.symbols, theirs.dates, strict=True)):
        i = mine.get((str(s), np.datetime64(d, "D")))
        if i is not None:
            rows_c.append(i)
            rows_k.append(j)
    ic, ik = np.asarray(rows_c, int), np.asarray(rows_k, int)
    out: dict[str, dict[str, Any]] = {}
    for h in config.horizons:
        result = paired_test(
            forecasts.predictions[model][ic, h - 1],
            theirs.predictions[model][ik, h - 1],
            y[ic, h - 1],
            forecasts.dates[ic],
            h,
        )
        out[str(h)] = {**result, "champion_version": champion.version}
    return json_safe(out)
