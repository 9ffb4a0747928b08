"""The monitor's run as tables (``stockml monitor``, ``stockml demo``)."""

from __future__ import annotations

import json
from typing import Any

from rich import box
from rich.table import Table


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _fmt_any(value: object) -> str:
    if isinstance(value, float):
        return format(value, ".4g")
    if isinstance(value, list):
        return "[" + ", ".join(_fmt_any(v) for v in value) + "]"
    return "-" if value is None else str(value)


def monitor_tables(status: dict[str, Any], note: str | None = None) -> list[Table]:
    """The run as tables: live figures (horizon 1), drift, freshness and quarantine, retraining.

    ``note`` says why a retraining the run decided was not triggered.
    """
    version = status["monitored_version"]
    live = (status["live"] or {}).get(version or "")
    tables = []
    if live and live["window"]:
        window = live["window"]
        table = Table(
            title=f"live, model {version}: {window['sessions']} sessions "
            f"{window['from']}..{window['to']}, horizon 1 ({live['pending']} forecasts pending)",
            caption="ratio: RMSE / the baseline's on the same rows; DM p: one-sided vs the better "
            "baseline; dir / long: directional accuracy / always-long's; cov: share inside the band",
            box=box.SIMPLE_HEAD,
        )
        for column in ("model", "n", "/naive", "/drift", "DM p", "dir", "long", "cov", "rank IC"):
            table.add_column(column, justify="right")
        for model, horizons in live["models"].items():
            m = horizons["1"]
            table.add_row(
                model,
                str(m.get("n")),
                _fmt(m.get("rmse_ratio_vs_naive"), ".4f"),
                _fmt(m.get("rmse_ratio_vs_drift"), ".4f"),
                _fmt(m.get("dm_pvalue_vs_best_baseline"), ".3f"),
                _fmt(m.get("directional_accuracy"), ".3f"),
                _fmt(m.get("directional_accuracy_always_long"), ".3f"),
                _fmt(m.get("interval_coverage"), ".3f"),
                _fmt(m.get("rank_ic"), ".3f"),
            )
        tables.append(table)
    else:
        tables.append(Table(title=f"live, model {version}: no served forecast realised yet"))
    health = Table(title=f"data health as of {status['run_date']}", box=box.SIMPLE_HEAD)
    health.add_column("check")
    health.add_column("value")
    drift = status["drift"]
    if drift is None:
        health.add_row("drift", "not checked (no feature distribution in the bundle)")
    else:
        top = sorted(drift["features"].items(), key=lambda kv: -kv[1]["psi"])[:5]
        health.add_row(
            "drift",
            f"{'DRIFT' if drift['drift'] else 'no drift' if drift['drift'] is False else 'n/a'}: "
            f"{len(drift['drifted'])}/{drift['checked']} features drifted "
            f"(max share {drift['max_drifted_share']}); highest PSI: "
            + ", ".join(f"{n} {f['psi']:.2f} (threshold {f['threshold']:.2f})" for n, f in top),
        )
    freshness = status["freshness"]
    health.add_row(
        "freshness",
        f"expected {freshness['expected_session']}: "
        + (
            f"STALE {', '.join(freshness['stale'])}" if freshness["stale"] else "every symbol fresh"
        ),
    )
    quarantine = status["quarantine"]
    health.add_row(
        "quarantine",
        f"{quarantine['quarantined_rows']} of {quarantine['quarantined_rows'] + quarantine['stored_rows']} "
        f"rows ({_fmt(quarantine['share'], '.2%')}; alarm above {quarantine['max_share']:.2%})",
    )
    tables.append(health)
    retrain = status["retrain"]
    trigger = retrain["trigger"]
    verdict = "RETRAIN" if retrain["retrain"] else "no retraining"
    if trigger:
        verdict += f" ({trigger.get('state')}: {json.dumps(trigger.get('result') or trigger.get('last_trigger'))})"
    elif retrain["retrain"] and note:
        verdict += f" ({note})"
    checks = Table(title=f"retraining: {verdict}", box=box.SIMPLE_HEAD)
    for column in ("check", "value", "threshold", "state", "rule"):
        checks.add_column(column)
    for check in retrain["checks"]:
        checks.add_row(
            check["name"],
            _fmt_any(check["value"]),
            _fmt_any(check["threshold"]),
            check["state"],
            check["rule"],
        )
    tables.append(checks)
    return tables
