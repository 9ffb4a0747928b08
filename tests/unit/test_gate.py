"""The promotion gate on hand-made walk-forward reports: each check passes and fails on its own."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest

from stockml.evaluation import Forecasts
from stockml.gate import Champion, assess, compare_with_champion
from stockml.model_config import PromotionConfig

PARITY = {"xgboost": {"max_abs": 2e-7, "batch1_max_abs": 1e-7}}


def report(
    p: float | None = 0.01,
    sessions: int = 735,
    ratios: tuple[float, ...] = (0.98, 0.99, 1.01),
    sharpe: float | None = 1.2,
    hold: float | None = 1.0,
    coverage: float | None = 0.9,
) -> dict:
    """A walk-forward report holding what the gate reads, with passing values by default."""
    h1 = {
        "dm_pvalue_vs_best_baseline": p,
        "best_baseline": "drift",
        "interval_coverage": coverage,
    }
    return {
        "folds": [
            {"fold": k, "models": {"ensemble": {"rmse_ratio_vs_best_baseline": [r, 1.0]}}}
            for k, r in enumerate(ratios)
        ],
        "models": {
            "ensemble": {
                "pooled": {
                    "n_sessions": sessions,
                    "by_horizon": {"1": h1, "2": dict(h1)},
                    "backtest": {
                        "cost_bps": 5.0,
                        "execution_lag": 1,
                        "strategy": {"sharpe": sharpe},
                        "buy_and_hold": {"sharpe": hold},
                    },
                }
            }
        },
    }


def verdicts(result) -> dict[str, bool]:
    return {c.name: c.passed for c in result.checks}


def test_gate_passes_when_every_check_has_its_evidence():
    result = assess(report(), PARITY, None, PromotionConfig())
    assert result.passed and result.summary == "promoted"
    assert set(verdicts(result)) == {
        "dm_pvalue_vs_best_baseline_h1",
        "test_sessions",
        "folds",
        "folds_beating_best_baseline_h1",
        "sharpe_vs_buy_and_hold",
        "interval_coverage_h1",
        "onnx_parity_max_abs",
    }
    as_json = result.to_dict()
    assert as_json["passed"] is True and as_json["model"] == "ensemble"
    assert as_json["checks"][0] == {
        "name": "dm_pvalue_vs_best_baseline_h1",
        "value": 0.01,
        "threshold": 0.05,
        "passed": True,
        "rule": "one-sided DM vs drift < threshold",
    }


@pytest.mark.parametrize(
    ("change", "failing"),
    [
        ({"p": 0.06}, "dm_pvalue_vs_best_baseline_h1"),
        ({"p": None}, "dm_pvalue_vs_best_baseline_h1"),
        ({"sessions": 499}, "test_sessions"),
        ({"ratios": (0.98, 0.99)}, "folds"),
        ({"ratios": (0.98, 1.0, 1.01)}, "folds_beating_best_baseline_h1"),
        ({"sharpe": 0.9}, "sharpe_vs_buy_and_hold"),
        ({"sharpe": None}, "sharpe_vs_buy_and_hold"),
        ({"coverage": 0.84}, "interval_coverage_h1"),
        ({"coverage": 0.951}, "interval_coverage_h1"),
    ],
)
def test_each_check_refuses_on_its_own(change, failing):
    # GIVEN a report that passes everything but one figure
    # WHEN the gate decides
    result = assess(report(**change), PARITY, None, PromotionConfig())

    # THEN exactly that check fails, and the summary names it
    assert not result.passed
    assert [c.name for c in result.failed] == [failing]
    assert result.summary.startswith(f"refused: {failing}")


def test_gate_refuses_failed_or_missing_parity_even_when_accurate():
    bad = {**PARITY, "lstm": {"max_abs": 1e-7, "batch1_max_abs": 3e-2}}
    assert [c.name for c in assess(report(), bad, None, PromotionConfig()).failed] == [
        "onnx_parity_max_abs"
    ]
    assert not assess(report(), None, None, PromotionConfig()).passed


def test_thresholds_come_from_the_config():
    # the same report passes a looser gate and fails a switched-on horizon 2
    loose = PromotionConfig(
        max_dm_pvalue=0.1,
        min_test_sessions=100,
        coverage_range=(0.8, 0.99),
        require_sharpe_vs_buy_and_hold=False,
    )
    result = assess(report(p=0.07, sessions=200, coverage=0.82, sharpe=0.1), PARITY, None, loose)
    assert result.passed
    assert "sharpe_vs_buy_and_hold" not in verdicts(result)
    two = PromotionConfig(horizons=[1, 2])
    failed = [c.name for c in assess(report(), PARITY, None, two).failed]
    # horizon 2's fold ratios are all exactly 1: no fold beats the better baseline
    assert failed == ["folds_beating_best_baseline_h2"]


def test_champion_comparison_refuses_a_significantly_worse_challenger():
    # GIVEN challenger and champion forecasts on 300 shared sessions (champion much better)
    rng = np.random.default_rng(0)
    dates = pd.bdate_range("2020-01-01", periods=400).to_numpy()
    y = rng.normal(0, 0.01, (400, 1))
    mine = Forecasts(np.array(["A"] * 400), dates, {"ensemble": y + rng.normal(0, 0.01, y.shape)})
    theirs = Forecasts(
        np.array(["A"] * 300), dates[100:], {"ensemble": y[100:] + rng.normal(0, 0.002, (300, 1))}
    )

    # WHEN compared on the shared rows and gated
    compared = compare_with_champion(mine, y, Champion("v1", theirs), PromotionConfig())
    result = assess(report(), PARITY, compared, PromotionConfig())

    # THEN the test ran on the 300 shared sessions and the gate refuses the challenger
    assert compared["1"]["n_sessions"] == 300 and compared["1"]["champion_version"] == "v1"
    assert compared["1"]["pvalue_challenger_worse"] < 0.05
    assert [c.name for c in result.failed] == ["champion_pvalue_challenger_worse_h1"]

    # AND the other way round (challenger better) it passes
    swapped = compare_with_champion(
        Forecasts(mine.symbols[100:], dates[100:], theirs.predictions),
        y[100:],
        Champion("v1", Forecasts(mine.symbols, dates, mine.predictions)),
        PromotionConfig(),
    )
    assert assess(report(), PARITY, swapped, PromotionConfig()).passed


def test_champion_check_is_skipped_with_too_few_shared_sessions():
    compared = {"1": {"n_sessions": 5, "pvalue_challenger_worse": 0.001}}
    result = assess(report(), PARITY, compared, PromotionConfig())
    check = next(c for c in result.checks if c.name.startswith("champion"))
    assert check.passed and "not tested" in check.rule and result.passed


def test_a_report_is_not_modified_by_the_gate():
    r = report()
    before = copy.deepcopy(r)
    assess(r, PARITY, None, PromotionConfig())
    assert r == before


def universe_report(t: float | None = 3.1, sharpe: float | None = 0.8, vs: float | None = 2.5):
    """``report()`` plus the cross-sectional block of a universe bundle (passing by default)."""
    out = report()
    out["universe"] = {
        "quantile": 0.1,
        "cost_bps": 5.0,
        "execution_lag": 1,
        "best_factor": "reversal_1",
        "models": {
            "ensemble": {
                "by_horizon": {"1": {"rank_ic": 0.02, "rank_ic_t": t}},
                "long_short": {"lag_0": {"sharpe_net": 9.9}, "lag_1": {"sharpe_net": sharpe}},
            }
        },
        "vs_best_factor": {"ensemble": {"1": {"rank_ic_diff": 0.01, "t": vs}}},
    }
    return out


def test_a_universe_bundle_also_needs_rank_ic_long_short_and_the_best_factor_beaten():
    config = PromotionConfig()
    result = assess(universe_report(), PARITY, None, config)
    assert result.passed
    universe_checks = {"rank_ic_t_h1", "long_short_sharpe_net", "rank_ic_t_vs_best_factor_h1"}
    assert universe_checks <= set(verdicts(result))
    # a single-symbol report gets none of them
    assert not universe_checks & set(verdicts(assess(report(), PARITY, None, config)))

    # each fails on its own, at its configured threshold (the lag-1 Sharpe, not lag 0's)
    for kwargs, failed in (
        ({"t": 1.99}, "rank_ic_t_h1"),
        ({"t": None}, "rank_ic_t_h1"),
        ({"sharpe": 0.0}, "long_short_sharpe_net"),
        ({"sharpe": -0.3}, "long_short_sharpe_net"),
        ({"vs": 1.5}, "rank_ic_t_vs_best_factor_h1"),
    ):
        result = assess(universe_report(**kwargs), PARITY, None, config)
        assert [c.name for c in result.failed] == [failed], kwargs
        assert "reversal_1" in result.failed[0].rule or failed != "rank_ic_t_vs_best_factor_h1"
    strict = PromotionConfig(min_rank_ic_t=3.5, min_long_short_sharpe=1.0)
    assert {c.name for c in assess(universe_report(), PARITY, None, strict).failed} == {
        "rank_ic_t_h1",
        "long_short_sharpe_net",
    }
