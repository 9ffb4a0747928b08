"""The whole pipeline on one machine: ingest -> features -> train/evaluate -> monitor -> serve
-> predict.

Used by ``stockml demo`` (and its end-to-end test). The caller provides Settings whose store
points at a running S3 endpoint (the CLI starts a local moto_server).

The models are trained on the bars up to ``REPLAY_SESSIONS`` sessions before the data's end;
the later sessions then arrive, and the bundle is served on each of them (the serving
Predictor, recorded to the prediction log as the API records what it serves) so that the
monitor scores live forecasts against the prices realised after them: what a deployment
sees after its training.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

import httpx
import pandas as pd
from rich.console import Console
from rich.table import Table

from stockml.settings import Settings

if TYPE_CHECKING:
    from stockml.model_config import ModelConfig

logger = logging.getLogger(__name__)

# sessions at the end of the data that training does not see: the replay the monitor scores
REPLAY_SESSIONS = 60


def run_demo(
    settings: Settings,
    console: Console,
    *,
    symbol: str = "MSFT",
    days: int = 5,
    port: int = 0,
    serve_after: bool = False,
    model_config: ModelConfig | None = None,
    dashboard: bool = True,
) -> dict[str, Any]:
    """Run every stage on ``settings.store`` and return the served prediction.

    Args:
        settings: process settings; ``store`` must point at a reachable bucket.
        console: where progress and results are printed.
        symbol: the symbol trained on and predicted (it must be in ``ingest.symbols``).
        days: trading days to predict.
        port: API port on 127.0.0.1 (0 = any free port).
        serve_after: keep serving until interrupted after printing the prediction.
        model_config: training configuration (default: configs/model_config.yaml).
        dashboard: also start the Streamlit dashboard against the served API.

    Returns:
        The ``POST /predict/{symbol}`` response body.
    """
    from stockml.features import FeatureConfig
    from stockml.features.pipeline import update_features
    from stockml.ingest import ingest_symbols
    from stockml.orchestration import run_training
    from stockml.storage import Store
    from stockml.tracking import tracking_server

    symbols = list(dict.fromkeys([*settings.ingest.symbols, symbol]))
    cut = _training_cut(settings, symbol)
    console.rule(
        f"1/6 ingest {', '.join(symbols)} up to {cut.date()} "
        f"(providers: {settings.ingest.providers})"
    )
    # after the cut's close: its session is the last completed one
    report = ingest_symbols(settings, symbols=symbols, now=cut + pd.Timedelta(hours=23))
    report.raise_for_errors()
    console.print(
        _table("raw bars in the store", Store.from_settings(settings.store).summary("raw"))
    )

    console.rule("2/6 features")
    started = time.perf_counter()
    features = update_features(Store.from_settings(settings.store), None, FeatureConfig.from_yaml())
    console.print(
        f"feature rows written: {sum(features.rows.values())} "
        f"({time.perf_counter() - started:.1f} s); skipped: {features.skipped or 'none'}"
    )

    console.rule(
        "3/6 train, evaluate walk-forward against the baselines, log to MLflow, export ONNX"
    )
    with tracking_server(settings.mlflow.tracking_uri) as uri:
        summary = run_training(settings, [symbol], config=model_config, tracking_uri=uri)
        console.print(
            f"MLflow: {uri}  run {summary['mlflow']['run_id'] if summary['mlflow'] else '-'}"
        )
    gated = next(k for k in summary if k.startswith("walk_forward_"))
    console.print_json(json.dumps({k: summary[k] for k in ("version", gated)}, default=str))
    console.print(_gate_table(summary))
    if summary["promoted"]:
        settings.api.model_version = "champion"
    else:
        # honest about it: the gate refused the model, so it is served by version, not as champion
        console.print(
            f"[yellow]not promoted: the gate refused this model, so it stays a challenger "
            f"(failed: {', '.join(c['name'] for c in summary['gate_checks'] if not c['passed'])}). "
            f"Serving challenger {summary['version']} for the demo only.[/]"
        )
        settings.api.model_version = str(summary["version"])

    console.rule(
        f"4/6 the next {REPLAY_SESSIONS} sessions arrive and are served; the monitor scores them"
    )
    _replay_and_monitor(settings, console, symbols, symbol, summary, model_config)

    console.rule("5/6 serve the bundle (FastAPI + ONNX Runtime under uvicorn)")
    server, thread, url = _start_api(settings, port)
    board = None
    try:
        console.print(f"API: {url}  health: {httpx.get(url + '/health', timeout=30).json()}")
        console.rule(f"6/6 POST /predict/{symbol}")
        response = httpx.post(f"{url}/predict/{symbol}", json={"days": days}, timeout=60)
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        console.print_json(json.dumps(body))
        if dashboard:
            board = _start_dashboard(settings, url)
        console.rule("ready")
        console.print(f"API:       {url}  (docs: {url}/docs)")
        console.print(f"dashboard: {board.url if board else 'not started'}")
        console.print(_prediction_table(body))
        if serve_after:
            console.print("serving; Ctrl-C stops")
            while thread.is_alive():
                thread.join(1.0)
        else:
            console.print("the demo stops both now; `stockml demo --serve` keeps them running")
        return body
    finally:
        if board is not None:
            board.stop()
        server.should_exit = True
        thread.join(timeout=10)


def _training_cut(settings: Settings, symbol: str) -> pd.Timestamp:
    """The session ``REPLAY_SESSIONS`` sessions before the provider's last bar of ``symbol``."""
    from stockml.providers import build_providers

    bars = build_providers(settings).fetch_bars(
        symbol, settings.ingest.start, pd.Timestamp.now().date()
    )
    dates = pd.DatetimeIndex(bars["date"]).sort_values()
    return pd.Timestamp(dates[-REPLAY_SESSIONS - 1]).normalize()


def _replay_and_monitor(
    settings: Settings,
    console: Console,
    symbols: list[str],
    symbol: str,
    summary: dict[str, Any],
    model_config: ModelConfig | None,
) -> dict[str, Any]:
    """Ingest the later sessions, serve the bundle on each (the prediction log records them
    as the API does), then one monitor run as of the last session (the demo retrains
    nothing: it prints the decision)."""
    from stockml.features import FeatureConfig
    from stockml.features.pipeline import update_features
    from stockml.inference import load_bundle
    from stockml.ingest import ingest_symbols
    from stockml.model_config import ModelConfig
    from stockml.monitoring.monitor import run_monitor
    from stockml.monitoring.replay import replay_forecasts
    from stockml.monitoring.tables import monitor_tables
    from stockml.predlog import PredictionLog
    from stockml.storage import Store

    started = time.perf_counter()
    store = Store.from_settings(settings.store)
    ingest_symbols(settings, symbols=symbols, store=store).raise_for_errors()
    update_features(store, None, FeatureConfig.from_yaml()).raise_for_errors()
    bundle = load_bundle(store, str(summary["version"]), models_prefix=store.models_prefix)
    frame = store.read_table(store.features_prefix, [symbol])
    first = pd.Timestamp(summary["data_window"]["train_end"]) + pd.Timedelta(days=1)
    last = pd.Timestamp(frame["date"].max())
    log = PredictionLog(store, settings.store.predictions_prefix, background=False)
    served = replay_forecasts(bundle, frame, first, last, log)
    log.flush()
    result = run_monitor(store, settings, model_config or ModelConfig.from_yaml(), last.date())
    console.print(
        f"served {served} forecasts of {symbol} ({first.date()}..{last.date()}) into the "
        f"prediction log; monitor run as of {last.date()} "
        f"({time.perf_counter() - started:.1f} s with the later sessions' ingestion)"
    )
    for table in monitor_tables(result["status"], "the demo does not retrain"):
        console.print(table)
    return result


def _start_api(settings: Settings, port: int) -> tuple[Any, threading.Thread, str]:
    import uvicorn

    from stockml.api import create_app
    from stockml.local import free_port, wait_http

    port = port or free_port()
    # the demo prints its own summary of the two calls it makes; `stockml serve` logs them all
    logging.getLogger("stockml.api.access").setLevel(logging.WARNING)
    config = uvicorn.Config(
        create_app(settings),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        proxy_headers=False,  # forwarded headers: the app's api.trusted_proxies decide
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="stockml-api", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/health", timeout_s=60)
    return server, thread, url


def _start_dashboard(settings: Settings, api_url: str) -> Any:
    """The dashboard on ``dashboard.port`` (another free port if taken), against ``api_url``."""
    import socket
    from pathlib import Path

    from stockml.dashboard import start_dashboard

    config = settings.dashboard.model_copy(update={"api_url": api_url})
    with socket.socket() as probe:
        try:
            probe.bind((config.host, config.port))
        except OSError:
            config = config.model_copy(update={"port": 0})
    log = Path(".stockml") / "dashboard.log"
    log.parent.mkdir(exist_ok=True)
    key = settings.api_key.get_secret_value() if settings.api_key else None
    return start_dashboard(config, api_key=key, log=log)


def _gate_table(summary: dict[str, Any]) -> Table:
    table = Table(title=f"promotion gate: {'passed' if summary['promoted'] else 'REFUSED'}")
    for column in ("check", "value", "threshold", "passed"):
        table.add_column(column)
    for check in summary["gate_checks"]:
        value, threshold = check["value"], check["threshold"]
        table.add_row(
            check["name"],
            _short(value),
            _short(threshold),
            "yes" if check["passed"] else "NO",
        )
    return table


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return "[" + ", ".join(_short(v) for v in value) + "]"
    return str(value)


def _table(title: str, frame: Any) -> Table:
    table = Table(title=title)
    for column in frame.columns:
        table.add_column(str(column))
    for row in frame.itertuples(index=False):
        table.add_row(*[str(v) for v in row])
    return table


def _prediction_table(body: dict[str, Any]) -> Table:
    dates = body.get("dates", [])
    table = Table(
        title=f"{body['symbol']}: last close {body.get('last_close')} on {body.get('last_date')}, model {body.get('model_version')}"
    )
    table.add_column("model")
    for day in dates:
        table.add_column(str(day), justify="right")
    for name, closes in body["predictions"].items():
        table.add_row(name, *[f"{c:.2f}" for c in closes])
    return table
