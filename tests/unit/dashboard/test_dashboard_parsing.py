"""The dashboard's reading of API answers: what is there is shown, what is missing is n/a."""

from __future__ import annotations

from datetime import date

from stockml_dashboard.parsing import (
    METRIC_COLUMNS,
    NA,
    parse_equity,
    parse_gate,
    parse_health,
    parse_live,
    parse_metrics,
    parse_monitoring,
    parse_plot,
    parse_rankings,
    parse_symbols,
)

LABEL = {c.key: c.label for c in METRIC_COLUMNS}


def test_metrics_show_present_keys_and_na_for_missing_or_odd_ones() -> None:
    # GIVEN a /metrics body with some keys, a null, a NaN, text and a per-horizon list
    body = {
        "symbol": "MSFT",
        "model_version": "v1",
        "scope": "symbol",
        "models": {
            "ensemble": {
                "rmse_ratio_vs_naive": 0.9876,
                "directional_accuracy": 0.52,
                "ic": None,
                "dm_pvalue": float("nan"),
                "sharpe": "high",
                "interval_coverage": [0.91, 0.88],
            }
        },
        "baselines": {"naive": {"rmse_ratio_vs_naive": 1.0, "n": 735}},
    }
    # WHEN parsed and laid out as rows
    table = parse_metrics(body)
    rows = {r["model"]: r for r in table.display_rows()}
    # THEN models and baselines are told apart and every value is formatted or n/a
    assert table.roles == {"ensemble": "model", "naive": "baseline"}
    ens = rows["ensemble"]
    assert ens[LABEL["rmse_ratio_vs_naive"]] == "0.988"
    assert ens[LABEL["directional_accuracy"]] == "52.0%"
    assert ens[LABEL["interval_coverage"]] == "91.0%"  # horizon 1 of the list
    for key in ("ic", "dm_pvalue", "sharpe", "directional_accuracy_always_long"):
        assert ens[LABEL[key]] == NA, key
    assert rows["naive"][LABEL["n"]] == "735"
    # AND a body that is not a mapping gives an empty table, not an exception
    assert parse_metrics(["nope"]).rows == {}


def test_gate_reads_the_checks_shape_and_the_older_verdict_shape() -> None:
    checks = {
        "gate": {
            "passed": False,
            "checks": [
                {"name": "rmse_ratio", "value": 1.01, "threshold": 1.0, "passed": False},
                {"name": "parity", "value": 1e-5, "threshold": 1e-3, "passed": True},
                "junk",
            ],
        }
    }
    gate = parse_gate(checks)
    assert gate is not None and gate.passed is False
    assert [(c.name, c.value, c.threshold, c.passed) for c in gate.checks] == [
        ("rmse_ratio", 1.01, 1.0, False),
        ("parity", 1e-5, 1e-3, True),
    ]
    older = parse_gate({"gate": {"promote": True, "reasons": [], "rmse_ratio": 0.99}})
    assert older is not None and older.passed is True and older.checks == []
    refused = parse_gate({"gate": {"promote": False, "reasons": ["ensemble does not beat naive"]}})
    assert refused is not None and refused.reasons == ["ensemble does not beat naive"]
    assert parse_gate({"gate": None}) is None and parse_gate({}) is None


def test_equity_curve_needs_matching_dates_and_values() -> None:
    good = {
        "equity_curve": {
            "model": "ensemble",
            "dates": ["2017-11-09", "2017-11-10"],
            "strategy": [1.0, 1.01],
            "buy_and_hold": [1.0, 0.99],
        }
    }
    curve = parse_equity(good)
    assert curve is not None and curve.model == "ensemble"
    assert curve.dates == [date(2017, 11, 9), date(2017, 11, 10)]
    assert curve.series == {"strategy": [1.0, 1.01], "buy_and_hold": [1.0, 0.99]}
    short = {"equity_curve": {**good["equity_curve"], "strategy": [1.0]}}
    assert parse_equity(short).series == {"buy_and_hold": [1.0, 0.99]}  # type: ignore[union-attr]
    assert parse_equity({"equity_curve": {"dates": ["x"], "strategy": [1.0]}}) is None
    assert parse_equity({}) is None


def test_plot_keeps_bars_when_sent_and_falls_back_to_closes() -> None:
    with_bars = parse_plot(
        {
            "symbol": "MSFT",
            "history": [
                {
                    "date": "2017-11-09",
                    "close": 84.0,
                    "open": 83,
                    "high": 85,
                    "low": 82.5,
                    "volume": 1e6,
                },
                {"date": "bad", "close": 1.0},
            ],
            "dates": ["2017-11-13"],
            "predictions": {"ensemble": [84.5]},
            "intervals": {"ensemble": {"level": 0.9, "lower": [80.0], "upper": [89.0]}},
        }
    )
    assert len(with_bars.history) == 1 and with_bars.has_ohlc and with_bars.has_volume
    assert with_bars.horizon == 1 and with_bars.intervals["ensemble"].upper == [89.0]
    closes = parse_plot({"history": [{"date": "2017-11-09", "close": 84.0}]})
    assert not closes.has_ohlc and not closes.has_volume and closes.horizon == 0


def test_symbols_and_health_accept_old_and_new_field_names() -> None:
    symbols = parse_symbols(
        {
            "symbols": [
                {"symbol": "MSFT", "last_date": "2017-11-10", "age_sessions": 3, "fresh": True},
                {
                    "symbol": "AAPL",
                    "last_date": "2024-05-31",
                    "data_age_sessions": 9,
                    "stale": True,
                },
                {"no": "symbol"},
            ]
        }
    )
    assert [(s.symbol, s.age_sessions, s.fresh) for s in symbols] == [
        ("MSFT", 3, True),
        ("AAPL", 9, False),
    ]
    down = parse_health(
        {
            "status": "unavailable",
            "bundle": {"ok": False, "detail": "no champion"},
            "store": {"ok": False, "detail": "not checked"},
        }
    )
    assert not down.ok and down.problems == ["bundle: no champion", "store: not checked"]
    assert (
        parse_health({"status": "ok", "bundle": {"ok": True, "version": "v1"}}).model_version
        == "v1"
    )


def test_rankings_in_the_documented_shape() -> None:
    # GIVEN the documented /rankings shape, rows out of order, one interval nested
    body = {
        "model_version": "v-universe",
        "horizon": 5,
        "as_of": "2024-05-31",
        "rankings": [
            {"symbol": "C", "rank": 3, "score": -0.01, "lower": -0.03, "upper": 0.01},
            {"symbol": "A", "rank": 1, "score": 0.02, "interval": {"lower": 0.0, "upper": 0.04}},
            {
                "symbol": "B",
                "rank": 2,
                "score": 0.0,
                "lower": -0.02,
                "upper": 0.02,
                "as_of": "2024-05-30",
            },
        ],
        "rank_ic": 0.031,
        "long_short": {"dates": ["2024-05-30", "2024-05-31"], "equity": [1.0, 1.002]},
    }
    # WHEN parsed
    ranking = parse_rankings(body)
    # THEN rows are by rank, with their intervals and dates
    assert [r.symbol for r in ranking.rows] == ["A", "B", "C"]
    assert (ranking.rows[0].lower, ranking.rows[0].upper) == (0.0, 0.04)
    assert ranking.rows[0].as_of == date(2024, 5, 31) and ranking.rows[1].as_of == date(2024, 5, 30)
    assert ranking.horizon == 5 and ranking.rank_ic == 0.031
    assert ranking.long_short is not None and ranking.long_short.series["equity"] == [1.0, 1.002]
    # AND the ends never repeat a symbol
    best, worst = ranking.ends(2)
    assert [r.symbol for r in best] == ["A", "B"] and [r.symbol for r in worst] == ["C"]
    best, worst = ranking.ends(1)
    assert [r.symbol for r in best] == ["A"] and [r.symbol for r in worst] == ["C"]
    # AND without ranks, rows are ordered by score; optional parts absent are None
    bare = parse_rankings({"rankings": [{"symbol": "X", "score": -1}, {"symbol": "Y", "score": 2}]})
    assert [r.symbol for r in bare.rows] == ["Y", "X"]
    assert bare.rank_ic is None and bare.long_short is None and bare.as_of is None


def test_live_figures_are_read_per_model_and_horizon_and_missing_ones_are_na() -> None:
    body = {
        "live": {
            "run_date": "2017-11-10",
            "window": {"sessions": 60, "start": "2017-08-16", "end": "2017-11-09"},
            "models": {
                "ensemble": {"1": {"n": 60, "rmse_ratio_vs_naive": 1.02, "best_baseline": "drift"}},
                "naive": {"1": {"rmse_ratio_vs_naive": 1.0}, "x": {"n": 1}},
            },
            "series": {
                "ensemble": {
                    "1": {"dates": ["2017-11-08", "2017-11-09"], "interval_coverage": [0.9, None]}
                },
                "broken": {"1": {"dates": ["not a date"]}},
            },
        }
    }
    live = parse_live(body)
    assert live is not None and live.sessions == 60 and live.end == date(2017, 11, 9)
    assert live.horizons == [1]
    rows = {r["model"]: r for r in live.display_rows(1)}
    assert rows["ensemble"]["RMSE / naive"] == "1.020" and rows["ensemble"]["rank IC"] == NA
    series = live.series["ensemble"][1]
    assert series.dates == [date(2017, 11, 8), date(2017, 11, 9)]
    assert series.values["interval_coverage"] == [0.9, None]
    assert series.values["rmse_ratio_vs_drift"] == [None, None]
    assert "broken" not in live.series
    # no live block (the monitor has not scored this symbol): None
    assert parse_live({"live": None}) is None and parse_live("nonsense") is None


def test_monitoring_status_is_read_defensively() -> None:
    status = parse_monitoring(
        {
            "run_date": "2017-11-10",
            "model_version": "v1",
            "drift": {
                "drift": False,
                "drifted_share": 0.05,
                "max_drifted_share": 0.3,
                "features": {
                    "rsi": {"psi": 0.4, "threshold": 1.2, "drifted": False},
                    "atr": {"psi": 2.0, "threshold": 1.0, "drifted": True},
                },
            },
            "freshness": {
                "symbols": {"MSFT": {"last_date": "2017-11-10", "age_sessions": 3, "stale": True}}
            },
            "quarantine": {"share": 0.0, "max_share": 0.01, "alarm": False},
            "retrain": {"retrain": True, "reasons": ["drift: ..."], "checks": [], "trigger": None},
        }
    )
    assert [r.feature for r in status.drift_rows] == ["atr", "rsi"]  # highest PSI first
    assert status.stale == ["MSFT"] and status.retrain is True and status.reasons == ["drift: ..."]
    empty = parse_monitoring({})
    assert empty.drift is None and empty.freshness == [] and empty.retrain is None
