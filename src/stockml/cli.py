"""The ``stockml`` command line: one command per pipeline stage, plus ``demo`` for all of them.

Settings are built once here and passed down; each command is thin and calls one function of
the package.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import NoReturn

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from stockml.settings import Settings

app = typer.Typer(
    help="stockml: serverless MLOps for daily stock price prediction.", no_args_is_help=True
)
console = Console()


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging.")) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not verbose:
        # the libraries' per-request chatter drowns the pipeline's own progress
        for name in ("botocore", "boto3", "urllib3", "httpx"):
            logging.getLogger(name).setLevel(logging.WARNING)


# === ingestion (issue [1/6]) ===

LOCAL_STATE = Path(".stockml") / "local.json"
DEFAULT_LOCAL_PORT = 5055


@app.command()
def ingest(
    symbols: str = typer.Option(None, help="Comma-separated tickers (default: ingest.symbols)."),
    provider: str = typer.Option(
        None, help="One provider instead of ingest.providers (e.g. sample, csv)."
    ),
    path: str = typer.Option(
        None, help="Folder or s3:// prefix of <SYMBOL>.csv files (implies --provider csv)."
    ),
    start: str = typer.Option(
        None, help="First date of a new symbol's history (default: ingest.start)."
    ),
) -> None:
    """Fetch what is missing since the last stored day and upsert it into the store."""
    from rich.progress import Progress

    from stockml.ingest import ingest_symbols

    settings = _settings()
    if path:
        settings.ingest.csv_path = path
        settings.ingest.providers = [provider or "csv"]
    elif provider:
        settings.ingest.providers = [provider]
    wanted = (
        [s.strip() for s in symbols.split(",") if s.strip()] if symbols else settings.ingest.symbols
    )
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("ingesting", total=len(wanted))
        report = ingest_symbols(
            settings, symbols=wanted, start=start, progress=lambda _: bar.advance(task)
        )
    table = Table(title=f"ingested up to {report.end.date()}")
    for column in ("symbol", "fetched", "written", "quarantined", "skipped", "readjusted", "ok"):
        table.add_column(column)
    for row in report.symbols:
        table.add_row(
            row.symbol,
            str(row.fetched),
            str(row.written),
            str(row.quarantined),
            str(row.skipped),
            str(row.readjusted),
            "no" if row.error else "yes",
        )
    console.print(table)
    for row in report.failed:
        console.print(f"{row.symbol} failed: {row.error}", soft_wrap=True, markup=False)
    if report.failed:
        raise typer.Exit(code=1)


store_app = typer.Typer(help="Inspect the S3 Parquet store.", no_args_is_help=True)
app.add_typer(store_app, name="store")


@store_app.command("ls")
def store_ls() -> None:
    """Per table (raw, features, news): symbols, rows and first/last date."""
    from stockml.storage import Store

    settings = _settings()
    store = Store.from_settings(settings.store)
    for prefix in (store.raw_prefix, store.features_prefix, store.news_prefix):
        summary = store.summary(prefix)
        table = Table(title=f"s3://{store.bucket}/{prefix}/ ({len(summary)} symbols)")
        for column in ("symbol", "rows", "first", "last", "partitions"):
            table.add_column(column)
        for row in summary.itertuples(index=False):
            table.add_row(
                row.symbol,
                str(row.rows),
                f"{row.first:%Y-%m-%d}",
                f"{row.last:%Y-%m-%d}",
                str(row.partitions),
            )
        console.print(table)
    quarantined = store.list_keys(f"{store.quarantine_prefix}/")
    console.print(
        f"quarantine: {len(quarantined)} file(s) under s3://{store.bucket}/{store.quarantine_prefix}/"
    )


@store_app.command("show")
def store_show(
    symbol: str = typer.Argument(..., help="Ticker, e.g. MSFT or ^GSPC."),
    tail: int = typer.Option(10, help="How many of the latest bars to print."),
) -> None:
    """The latest stored bars of one symbol."""
    from stockml.storage import Store

    bars = Store.from_settings(_settings().store).read_bars([symbol])
    if bars.empty:
        console.print(f"[red]no stored bars for {symbol}[/red]")
        raise typer.Exit(code=1)
    console.print(
        f"{symbol}: {len(bars)} bars, {bars['date'].min():%Y-%m-%d} .. {bars['date'].max():%Y-%m-%d}"
    )
    console.print(bars.tail(tail).to_string(index=False))


local_app = typer.Typer(
    help="A local S3 (moto_server) that the other commands then use.", no_args_is_help=True
)
app.add_typer(local_app, name="local")


@local_app.command("up")
def local_up(port: int = typer.Option(DEFAULT_LOCAL_PORT, help="Port on 127.0.0.1.")) -> None:
    """Start a detached moto_server, create the bucket, remember the endpoint in .stockml/local.json."""
    import boto3

    from stockml.local import start_moto_server

    state = _local_state()
    if state and _answers(state["endpoint_url"]):
        console.print(f"already up: {state['endpoint_url']} (pid {state['pid']})")
        return
    server = start_moto_server(port, detach=True)
    settings = Settings()
    boto3.client("s3", endpoint_url=server.url, region_name=settings.store.region).create_bucket(
        Bucket=settings.store.bucket
    )
    LOCAL_STATE.parent.mkdir(exist_ok=True)
    LOCAL_STATE.write_text(
        json.dumps(
            {"endpoint_url": server.url, "pid": server.process.pid, "bucket": settings.store.bucket}
        )
    )
    console.print(
        f"local S3 up at {server.url} (pid {server.process.pid}), bucket {settings.store.bucket}"
    )
    # the server outlives this process on purpose (``local down`` stops it by pid): tell the
    # Popen object it is settled, or it warns "still running" when it is collected
    server.process.returncode = 0


@local_app.command("down")
def local_down() -> None:
    """Stop the moto_server started by ``local up`` (its data is in memory and goes with it)."""
    import contextlib
    import os
    import signal

    state = _local_state()
    if state is None:
        console.print("not up")
        return
    with contextlib.suppress(ProcessLookupError):  # already gone: only the state file is left
        os.kill(int(state["pid"]), signal.SIGTERM)
    LOCAL_STATE.unlink()
    console.print(f"stopped {state['endpoint_url']}")


@local_app.command("status")
def local_status() -> None:
    """Whether the local S3 of .stockml/local.json answers."""
    state = _local_state()
    up = state is not None and _answers(state["endpoint_url"])
    _print_json({"up": up, **(state or {})})
    if not up:
        raise typer.Exit(code=1)


def _local_state() -> dict[str, object] | None:
    if not LOCAL_STATE.is_file():
        return None
    return dict(json.loads(LOCAL_STATE.read_text()))


def _answers(url: object) -> bool:
    from stockml.local import wait_http

    try:
        wait_http(f"{url}/moto-api/", timeout_s=2)
    except TimeoutError:
        return False
    return True


# === features (issue [2/6]) ===


@app.command()
def features(
    symbols: str = typer.Option(
        None, help="Comma-separated tickers (default: every symbol with raw bars)."
    ),
) -> None:
    """Compute the new days' features from raw bars into the store's features/ table."""
    from stockml.features import FeatureConfig
    from stockml.features.pipeline import update_features
    from stockml.storage import Store

    settings = _settings()
    wanted = [s.strip() for s in symbols.split(",") if s.strip()] if symbols else None
    report = update_features(Store.from_settings(settings.store), wanted, FeatureConfig.from_yaml())
    table = Table(title="features written")
    table.add_column("symbol")
    table.add_column("rows")
    for symbol, rows in sorted(report.rows.items()):
        table.add_row(symbol, str(rows))
    for symbol, why in sorted(report.skipped.items()):
        table.add_row(symbol, f"skipped: {why}")
    console.print(table)


# === training and evaluation (issue [3/6]) ===


def _symbol_list(symbols: str | None) -> list[str] | None:
    return [s.strip() for s in symbols.split(",") if s.strip()] if symbols else None


@app.command("train")
def train_command(
    symbols: str = typer.Option(
        None, help="Comma-separated tickers in the store (default: ingest.symbols less market)."
    ),
    mlflow: bool = typer.Option(
        True, help="Log to MLflow (mlflow.tracking_uri, $MLFLOW_TRACKING_URI, else a local server)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Walk-forward evaluate, train, export ONNX, gate and publish a bundle to models/<version>/."""
    from stockml.orchestration import run_training
    from stockml.tracking import tracking_server

    settings = _settings()
    if mlflow:
        with tracking_server(settings.mlflow.tracking_uri) as uri:
            summary = run_training(settings, _symbol_list(symbols), tracking_uri=uri)
    else:
        summary = run_training(settings, _symbol_list(symbols))
    if as_json:
        _print_json(summary)
        return
    table = Table(
        title=f"bundle {summary['version']} ({'promoted' if summary['promoted'] else 'challenger'})"
    )
    table.add_column("key")
    table.add_column("value")
    for key in ("symbols", "mlflow", "ensemble_weights", "parity_max_abs"):
        table.add_row(key, json.dumps(summary[key], default=str))
    for key, value in summary.items():
        if key.startswith("walk_forward_"):
            table.add_row(key, json.dumps(value, default=str))
    console.print(table)
    console.print(_gate_table({"passed": summary["promoted"], "checks": summary["gate_checks"]}))


@app.command("evaluate")
def evaluate_command(
    symbols: str = typer.Option(
        None, help="Comma-separated tickers in the store (default: ingest.symbols less market)."
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print the evaluation JSON instead of the table."
    ),
    output: str = typer.Option(None, help="Also write the evaluation JSON to this file."),
    bundle: str = typer.Option(
        None,
        help="Forward-test a published bundle (champion or a version) instead: no refit, "
        "sessions after its training end only.",
    ),
    start: str = typer.Option(None, "--from", help="First session of the forward test (--bundle)."),
    end: str = typer.Option(
        None, "--to", help="Last session of the forward test (default: the last labelled)."
    ),
) -> None:
    """Walk-forward evaluation of every model beside the naive and drift baselines, and the
    promotion gate; or, with --bundle, a forward test of a published bundle."""
    from stockml.errors import BundleError, ValidationError
    from stockml.orchestration import run_evaluation, run_forward_test

    settings = _settings()
    if bundle is None and (start or end):
        _fail("--from/--to need --bundle (a walk-forward evaluation chooses its own test sessions)")
    if bundle is not None and not start:
        _fail("--bundle needs --from DATE (the first session after the bundle's training end)")
    try:
        if bundle is not None:
            report = run_forward_test(settings, bundle, start, end, _symbol_list(symbols))
        else:
            report = run_evaluation(settings, _symbol_list(symbols))
    except (ValidationError, BundleError) as exc:
        _fail(str(exc))
    text = json.dumps(report, indent=2)
    if output:
        Path(output).write_text(text)
    if as_json:
        # plain print: the output must stay machine-readable (no rich markup or wrapping)
        typer.echo(text)
        return
    if bundle is not None:
        title = (
            f"forward test of bundle {report['bundle']} (trained to {report['train_end']}), "
            f"{report['from']}..{report['to']}, horizon 1 of {report['horizon']}"
        )
    else:
        title = f"walk-forward, horizon 1 of {report['horizon']}, {', '.join(report['symbols'])}"
    console.print(_metrics_table(title, report))
    if "gate" in report:
        console.print(_gate_table(report["gate"]))


def _fail(message: str) -> NoReturn:
    console.print(message, style="red", markup=False, soft_wrap=True)
    raise typer.Exit(code=2)


def _metrics_table(title: str, report: dict) -> Table:  # type: ignore[type-arg]
    # the table is horizon 1 only and fits 100 columns; the JSON has every metric and horizon
    table = Table(
        title=title,
        caption="ratio: RMSE / naive RMSE; DM p: one-sided Diebold-Mariano vs the better of "
        "naive and drift; dir: directional accuracy, long: always-long's on the same rows, "
        "p: HAC test dir > long; cov: share inside the band; ann.: long/flat annual return "
        f"after {report['cost_bps']:g} bps, trading {report['execution_lag']} session(s) after "
        "the signal; B&H: buy-and-hold",
        box=box.SIMPLE_HEAD,
        padding=(0, 1),
        collapse_padding=True,
        pad_edge=False,
    )
    columns = (
        "model",
        "n",
        "ratio",
        "DM p",
        "dir",
        "long",
        "p",
        "IC",
        "cov",
        "Shrp",
        "ann.",
        "B&H",
    )
    for column in columns:
        table.add_column(column, justify="right", no_wrap=True)
    for name, scores in report["models"].items():
        m = scores["pooled"]
        bt = m["backtest"]
        table.add_row(
            name,
            str(m["n"]),
            _fmt(m["rmse_ratio_vs_naive"], ".4f"),
            _fmt(m.get("dm_pvalue_vs_best_baseline"), ".3f"),
            _fmt(m["directional_accuracy"], ".3f"),
            _fmt(m["directional_accuracy_always_long"], ".3f"),
            _fmt(m["directional_pvalue"], ".3f"),
            _fmt(m["ic"], ".3f"),
            _fmt(m.get("interval_coverage"), ".3f"),
            _fmt(bt["strategy"]["sharpe"], ".2f"),
            _fmt(bt["strategy"]["annual_return"], ".1%"),
            _fmt(bt["buy_and_hold"]["annual_return"], ".1%"),
        )
    return table


def _gate_table(gate: dict) -> Table:  # type: ignore[type-arg]
    verdict = "PASSED: promoted" if gate["passed"] else "REFUSED: stays a challenger"
    table = Table(title=f"promotion gate: {verdict}", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("check", "value", "threshold", "passed", "rule"):
        table.add_column(column)
    for check in gate["checks"]:
        table.add_row(
            check["name"],
            _fmt_any(check["value"]),
            _fmt_any(check["threshold"]),
            "yes" if check["passed"] else "NO",
            check["rule"],
        )
    return table


def _fmt_any(value: object) -> str:
    if isinstance(value, float):
        return format(value, ".4g")
    if isinstance(value, list):
        return "[" + ", ".join(_fmt_any(v) for v in value) + "]"
    return "-" if value is None else str(value)


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


# === serving (issue [4/6]) ===


@app.command()
def serve(
    host: str = typer.Option(None, help="Bind address (default: settings api.host, 127.0.0.1)."),
    port: int = typer.Option(None, help="Port (default: settings api.port)."),
    bundle_dir: str = typer.Option(
        None, help="Serve a local bundle folder instead of the store's champion."
    ),
) -> None:
    """Run the prediction API under uvicorn (loopback by default), with JSON access logs."""
    import uvicorn

    from stockml.api import create_app
    from stockml.api.observability import configure_json_logging

    settings = _settings()
    if bundle_dir:
        settings.api.bundle_dir = bundle_dir
    configure_json_logging()
    uvicorn.run(
        create_app(settings),
        host=host or settings.api.host,
        port=port or settings.api.port,
        log_config=None,
        access_log=False,
    )


# === demo: the whole pipeline ===


@app.command()
def demo(
    symbol: str = typer.Option("MSFT", help="The symbol to train on and predict."),
    days: int = typer.Option(5, help="Trading days to predict."),
    serve_after: bool = typer.Option(
        False, "--serve", help="Keep the API (and local S3) running after the demo; Ctrl-C stops."
    ),
    port: int = typer.Option(0, help="API port (0 = any free port)."),
) -> None:
    """The whole pipeline locally on the embedded data, ending with a served prediction.

    Starts a local S3 (moto_server) and an MLflow server, ingests the embedded sample data,
    computes features, trains and evaluates every model walk-forward beside the baselines,
    exports the ONNX bundle, serves it with uvicorn and asks it for a prediction.
    """
    import os

    import boto3

    from stockml.demo import run_demo
    from stockml.local import start_moto_server

    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(key, "local")  # moto accepts any credentials
    settings = Settings()
    moto = start_moto_server()
    try:
        settings.store.endpoint_url = moto.url
        boto3.client("s3", endpoint_url=moto.url, region_name=settings.store.region).create_bucket(
            Bucket=settings.store.bucket
        )
        settings.ingest.providers = ["sample"]
        run_demo(settings, console, symbol=symbol, days=days, port=port, serve_after=serve_after)
    finally:
        moto.stop()


def _print_json(obj: object) -> None:
    console.print_json(json.dumps(obj, default=str))


def _settings() -> Settings:
    """Settings for one command; the local S3 of ``stockml local up`` when no endpoint is set."""
    import os

    settings = Settings()
    state = _local_state()
    if state is not None and not os.environ.get("STOCKML_STORE__ENDPOINT_URL"):
        settings.store.endpoint_url = str(state["endpoint_url"])
        settings.store.bucket = str(state.get("bucket", settings.store.bucket))
    return settings


if __name__ == "__main__":
    app()
