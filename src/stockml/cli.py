"""The ``stockml`` command line: one command per pipeline stage, plus ``demo`` for all of them.

Settings are built once here and passed down; each command is thin and calls one function of
the package.

Errors: a mistake (a bad option or argument, an invalid symbol or date, an unknown provider,
a missing ``--path``, no AWS credentials, an unreachable S3, an unusable configuration) is
ONE line on stderr, ``error: ...``, and exit code 2. Any other failure is one line too, exit
code 1; a command whose run finished with failed symbols exits 1 after its table. With
``--verbose`` the traceback is shown instead.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich import box
from rich.console import Console
from rich.progress import Progress, TaskID
from rich.table import Table
from typer.core import TyperGroup

from stockml.errors import ConfigError, StockmlError, UnknownSymbolError, ValidationError
from stockml.settings import Settings

try:  # typer >= 0.23 carries its own copy of click
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover - older typer runs on click itself
    from click import exceptions as click_errors  # type: ignore[no-redef]

USER_ERROR = 2
# typer's own Exit/Abort (older typer: click's, kept in click's exceptions module)
_EXITS = (typer.Exit, getattr(click_errors, "Exit", typer.Exit))
_ABORTS = (typer.Abort, getattr(click_errors, "Abort", typer.Abort))


class _OneLineErrors(TyperGroup):
    """The root command: every error is one ``error: ...`` line (a traceback with --verbose)."""

    # typer's bundled click and older clicks differ in main's keywords: pass them through
    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        previous = _exit_on_sigterm()
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click_errors.NoArgsIsHelpError as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click_errors.ClickException as exc:  # usage errors: bad option, bad value, ...
            ctx = getattr(exc, "ctx", None)
            where = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            typer.echo(f"error: {exc.format_message()}{where}", err=True)
            sys.exit(exc.exit_code)
        except _ABORTS:
            typer.echo("error: aborted", err=True)
            sys.exit(1)
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
        # without standalone mode click returns the code of a typer.Exit (else the result)
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (*_EXITS, *_ABORTS, click_errors.ClickException):
            raise
        except Exception as exc:
            if ctx.params.get("verbose"):
                raise
            message, code = describe_error(exc)
            typer.echo(f"error: {message}", err=True)
            raise typer.Exit(code) from None


def _exit_on_sigterm() -> Any:
    """Make SIGTERM unwind the command like Ctrl-C does (exit code 143), so that the servers it
    started (moto, MLflow, the API, the dashboard) stop in their ``finally``: the default
    handler ends the process at once and leaves them running. Returns the previous handler
    (None off the main thread, where no handler can be set)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def _exit(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    return signal.signal(signal.SIGTERM, _exit)


def describe_error(exc: BaseException) -> tuple[str, int]:
    """One line saying what went wrong, and the exit code (2: the user can fix it, else 1)."""
    cause = _botocore_cause(exc)
    if cause is not None:
        name = type(cause).__name__
        if name in ("NoCredentialsError", "PartialCredentialsError", "ProfileNotFound"):
            return (
                f"no AWS credentials found ({_one_line(str(cause))}): set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), or run 'stockml local up' for a local S3",
                USER_ERROR,
            )
        if name in ("EndpointConnectionError", "ConnectTimeoutError"):
            from urllib.parse import urlsplit

            url = urlsplit(str(getattr(cause, "kwargs", {}).get("endpoint_url", "")))
            where = f" at {url.scheme}://{url.netloc}" if url.netloc else ""
            return (
                f"cannot reach S3{where} (is it up? 'stockml local up' starts a local one)",
                USER_ERROR,
            )
        code = getattr(cause, "response", {}).get("Error", {}).get("Code", "")
        if code in _USER_S3_CODES:
            return f"S3 refused the request ({code}): {_one_line(str(cause))}", USER_ERROR
    if isinstance(exc, (ConfigError, ValidationError, UnknownSymbolError)):
        return _one_line(str(exc)), USER_ERROR
    if type(exc).__name__ == "ValidationError" and hasattr(exc, "errors"):
        # pydantic: a setting from the environment or configs/ has the wrong type
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
            for e in exc.errors()  # type: ignore[attr-defined]
        )
        return f"invalid configuration: {problems}", USER_ERROR
    if isinstance(exc, StockmlError):
        return _one_line(str(exc)), 1
    return f"{type(exc).__name__}: {_one_line(str(exc))} (--verbose shows the traceback)", 1


_USER_S3_CODES = {
    "NoSuchBucket",
    "InvalidBucketName",
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
}


def _botocore_cause(exc: BaseException) -> BaseException | None:
    """The botocore error in ``exc``'s chain, if any (found by module, without importing it)."""
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            return None
        if type(seen).__module__.startswith("botocore"):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _one_line(text: str) -> str:
    return " ".join(text.split())


app = typer.Typer(
    cls=_OneLineErrors,
    help="stockml: serverless MLOps for daily stock price prediction.",
    no_args_is_help=True,
)
console = Console()


@app.callback()
def main(
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="Debug logging, and tracebacks for errors."
    ),
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not verbose:
        # the libraries' per-request chatter drowns the pipeline's own progress
        for name in ("botocore", "boto3", "urllib3", "httpx"):
            logging.getLogger(name).setLevel(logging.WARNING)


# === ingestion ===

LOCAL_STATE = Path(".stockml") / "local.json"
DEFAULT_LOCAL_PORT = 5055


@app.command()
def ingest(
    symbols: str = typer.Option(None, help="Comma-separated tickers (default: ingest.symbols)."),
    provider: str = typer.Option(
        None, help="One provider instead of ingest.providers (e.g. sample, csv, parquet)."
    ),
    path: str = typer.Option(
        None,
        help="Folder or s3:// prefix of <SYMBOL>.csv files, or ONE multi-symbol .csv/.parquet "
        "file with a symbol column (implies --provider csv, or parquet for .parquet).",
    ),
    universe: str = typer.Option(
        None, help="A named universe of configs/config.yaml (universes:) instead of --symbols."
    ),
    start: str = typer.Option(
        None, help="First date of a new symbol's history (default: ingest.start)."
    ),
) -> None:
    """Fetch what is missing since the last stored day and upsert it into the store.

    With --path FILE and neither --symbols nor --universe, every symbol of the file is ingested.
    """
    from stockml.ingest import ingest_symbols
    from stockml.providers import build_providers

    first = _date_option(start, "--start")
    settings = _settings()
    if path:
        chosen = provider or ("parquet" if path.lower().endswith((".parquet", ".pq")) else "csv")
        if chosen == "parquet":
            settings.ingest.parquet_path = path
        else:
            settings.ingest.csv_path = path
        settings.ingest.providers = [chosen]
    elif provider:
        settings.ingest.providers = [provider]
    wanted = _wanted(settings, symbols, universe) or _file_symbols(settings, path)
    wanted = wanted or settings.ingest.symbols
    source = build_providers(settings)  # a configuration error stops here, before any work
    with _progress() as bars:
        bars.start("ingest", len(wanted))
        report = ingest_symbols(
            settings,
            symbols=wanted,
            start=first,
            provider=source,
            progress=lambda _: bars.advance("ingest"),
        )
    table = Table(title=f"ingested up to {report.end.date()}")
    columns = ("symbol", "fetched", "written", "quarantined", "flagged", "skipped", "readjusted")
    for column in (*columns, "ok"):
        table.add_column(column)
    # a universe is hundreds of symbols: show the totals, and the symbols that need a look
    many = len(report.symbols) > _MAX_ROWS
    for row in report.symbols:
        if many and not (row.error or row.quarantined or row.readjusted):
            continue
        table.add_row(
            row.symbol,
            str(row.fetched),
            str(row.written),
            str(row.quarantined),
            str(row.flagged),
            str(row.skipped),
            str(row.readjusted),
            "no" if row.error else "yes",
        )
    if many:
        totals = report.totals()
        table.add_row(
            f"all {totals['symbols']}",
            str(totals["fetched"]),
            str(totals["written"]),
            str(totals["quarantined"]),
            str(totals["flagged"]),
            str(totals["skipped"]),
            str(totals["readjusted"]),
            f"{totals['symbols'] - totals['failed']} ok",
        )
    console.print(table)
    for row in report.failed:
        console.print(f"{row.symbol} failed: {row.error}", soft_wrap=True, markup=False)
    if report.failed:
        raise typer.Exit(code=1)


# tables list at most this many symbols one per row; beyond, totals and the exceptions
_MAX_ROWS = 30


def _wanted(settings: Settings, symbols: str | None, universe: str | None) -> list[str] | None:
    """``--symbols`` or ``--universe`` (not both), or None when neither is given."""
    from stockml.universe import universe_symbols

    if symbols and universe:
        raise typer.BadParameter("give --symbols or --universe, not both")
    if universe:
        return universe_symbols(settings, universe)
    return _symbol_list(symbols)


def _file_symbols(settings: Settings, path: str | None) -> list[str] | None:
    """Every symbol of a multi-symbol file given as ``--path`` (None for a folder)."""
    from stockml.providers.parquet import is_table_file, table_symbols

    if not path or not is_table_file(path):
        return None
    return table_symbols(path, settings.store.endpoint_url, settings.store.region)


class _Bars:
    """Rich progress bars, one per task, driven by ``progress(task, done, total)`` callbacks."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, TaskID] = {}

    def __call__(self, task: str, done: int, total: int) -> None:
        if task not in self.tasks:
            self.tasks[task] = self.progress.add_task(task, total=total)
        self.progress.update(self.tasks[task], completed=done, total=total)

    def start(self, task: str, total: int) -> None:
        self(task, 0, total)

    def advance(self, task: str) -> None:
        self.progress.advance(self.tasks[task])


@contextmanager
def _progress() -> Iterator[_Bars]:
    """Progress bars (count, elapsed, time left) while long work runs; logs print above them."""
    import sys

    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("{task.description:<14}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("left"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        # rich redirects stderr above the live bars; the log handlers still hold the real one
        proxied = getattr(sys.stderr, "rich_proxied_file", None)
        moved = [
            h
            for h in logging.getLogger().handlers
            if isinstance(h, logging.StreamHandler) and proxied is not None and h.stream is proxied
        ]
        for handler in moved:
            handler.setStream(sys.stderr)
        try:
            yield _Bars(progress)
        finally:
            for handler in moved:
                handler.setStream(proxied)


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
    from stockml.symbols import check_symbol

    bars = Store.from_settings(_settings().store).read_bars([check_symbol(symbol)])
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
    """Start a detached moto_server, create the bucket, remember the endpoint in .stockml/local.json.

    Needs no AWS credentials: the local S3 gets test credentials. Refuses a port in use.
    """
    from stockml.local import LOCAL_CREDENTIALS, is_moto_server, start_moto_server, stop_process

    state = _local_state()
    if state is not None:
        pid, url = int(str(state["pid"])), str(state["endpoint_url"])
        if is_moto_server(pid, url):
            if _answers(url):
                console.print(f"already up: {url} (pid {pid})")
                return
            stop_process(pid)  # ours, but it no longer answers: replace it
        LOCAL_STATE.unlink()
    settings = Settings()
    server = start_moto_server(port, detach=True)
    try:
        import boto3

        boto3.client(
            "s3", endpoint_url=server.url, region_name=settings.store.region, **LOCAL_CREDENTIALS
        ).create_bucket(Bucket=settings.store.bucket)
        LOCAL_STATE.parent.mkdir(exist_ok=True)
        LOCAL_STATE.write_text(
            json.dumps(
                {
                    "endpoint_url": server.url,
                    "pid": server.process.pid,
                    "bucket": settings.store.bucket,
                }
            )
        )
    except BaseException:
        server.stop()  # a failed ``up`` leaves no server behind
        raise
    console.print(
        f"local S3 up at {server.url} (pid {server.process.pid}), bucket {settings.store.bucket}"
    )
    # the server outlives this process on purpose (``local down`` stops it by pid): tell the
    # Popen object it is settled, or it warns "still running" when it is collected
    server.process.returncode = 0


@local_app.command("down")
def local_down() -> None:
    """Stop the moto_server started by ``local up`` (its data is in memory and goes with it).

    Only that server: a process that now has its pid but is not it is left alone.
    """
    from stockml.local import is_moto_server, stop_process

    state = _local_state()
    if state is None:
        console.print("not up")
        return
    pid, url = int(str(state["pid"])), str(state["endpoint_url"])
    if is_moto_server(pid, url):
        stop_process(pid)
        console.print(f"stopped {url}")
    else:
        console.print(f"the server of {url} (pid {pid}) had already stopped; nothing to stop")
    LOCAL_STATE.unlink()


@local_app.command("status")
def local_status() -> None:
    """Whether the local S3 of .stockml/local.json answers."""
    from stockml.local import is_moto_server

    state = _local_state()
    up = (
        state is not None
        and is_moto_server(int(str(state["pid"])), str(state["endpoint_url"]))
        and _answers(state["endpoint_url"])
    )
    _print_json({"up": up, **(state or {})})
    if not up:
        raise typer.Exit(code=1)


def _local_state() -> dict[str, object] | None:
    if not LOCAL_STATE.is_file():
        return None
    try:
        state = json.loads(LOCAL_STATE.read_text())
        if not {"endpoint_url", "pid"} <= set(state):
            raise ValueError("endpoint_url or pid is missing")
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{LOCAL_STATE} is unreadable ({exc}); delete it") from exc
    return dict(state)


def _answers(url: object) -> bool:
    from stockml.local import wait_http

    try:
        wait_http(f"{url}/moto-api/", timeout_s=2)
    except TimeoutError:
        return False
    return True


# === features ===


@app.command()
def features(
    symbols: str = typer.Option(
        None, help="Comma-separated tickers (default: every symbol with raw bars)."
    ),
    universe: str = typer.Option(
        None,
        help="A named universe (configs/config.yaml universes:): its symbols, and the peers of "
        "the cross-sectional features (default: every symbol with raw bars).",
    ),
) -> None:
    """Compute the new days' features from raw bars into the store's features/ table."""
    from stockml.features import FeatureConfig
    from stockml.features.pipeline import update_features
    from stockml.storage import Store
    from stockml.universe import universe_symbols

    wanted = _symbol_list(symbols)
    settings = _settings()
    peers = universe_symbols(settings, universe) if universe else None
    with _progress() as bars:
        report = update_features(
            Store.from_settings(settings.store),
            wanted,
            FeatureConfig.from_yaml(),
            universe=peers,
            progress=bars,
        )
    table = Table(title="features written")
    table.add_column("symbol")
    table.add_column("rows")
    written = sorted(report.rows.items())
    for symbol, rows in written if len(written) <= _MAX_ROWS else []:
        table.add_row(symbol, str(rows))
    if len(written) > _MAX_ROWS:
        table.add_row(f"all {len(written)}", str(sum(report.rows.values())))
    for symbol, why in sorted(report.skipped.items()):
        table.add_row(symbol, f"skipped: {why}")
    for symbol in sorted(report.failed):
        table.add_row(symbol, "failed")
    console.print(table)
    for symbol, why in sorted(report.failed.items()):
        console.print(f"{symbol} failed: {why}", soft_wrap=True, markup=False)
    if report.failed:
        raise typer.Exit(code=1)


# === data lake catalog ===


@app.command()
def catalog(
    database: str = typer.Option("stockml", help="Glue database (created when missing)."),
) -> None:
    """Register raw/ and features/ in the Glue Data Catalog (partition projection) for Athena."""
    from stockml.catalog import register_tables
    from stockml.storage import Store

    settings = _settings()
    # moto_server and LocalStack serve Glue on the store's endpoint; None = AWS
    report = register_tables(
        Store.from_settings(settings.store), database, glue_endpoint_url=settings.store.endpoint_url
    )
    if not report.tables:
        console.print("nothing to register yet: ingest first")
    for name, info in report.tables.items():
        console.print(
            f"{database}.{name} (+ {name}_delta): {info.symbols} symbols, "
            f"years {info.first_year}-{info.last_year}, {info.columns} columns"
        )


# === training and evaluation ===


def _symbol_list(symbols: str | None) -> list[str] | None:
    """``--symbols`` as a list (None when not given).

    Raises:
        ValidationError: a symbol does not match the one symbol pattern.
    """
    from stockml.symbols import check_symbol

    if not symbols:
        return None
    return [check_symbol(s.strip()) for s in symbols.split(",") if s.strip()] or None


def _date_option(value: str | None, option: str) -> date | None:
    """A ``YYYY-MM-DD`` option as a date (None when not given).

    Raises:
        ValidationError: the value is not such a date.
    """
    if value is None:
        return None
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        shown = value if len(value) <= 24 else value[:24] + "..."
        raise ValidationError(f"{option} {shown!r} is not a date (YYYY-MM-DD)") from None


_UNIVERSE_HELP = (
    "A named universe (configs/config.yaml universes:): one global ranking model over its "
    "symbols, in model_config.yaml's universe mode (universe:)."
)


def _training_symbols(
    settings: Settings, symbols: str | None, universe: str | None
) -> tuple[list[str] | None, list[str] | None]:
    """(symbols to train on, the cross-sectional peers): ``--symbols`` or ``--universe``."""
    wanted = _wanted(settings, symbols, universe)
    if not universe or wanted is None:
        return wanted, None
    from stockml.features import FeatureConfig

    market = set(FeatureConfig.from_yaml().market.symbols)
    stocks = [s for s in wanted if s not in market]
    return stocks, stocks


def _model_config(universe: str | None, models: str | None) -> Any:
    """model_config.yaml (its universe mode with ``--universe``), ``--models`` if given; None
    when neither changes it."""
    from stockml.model_config import ModelConfig

    if not universe and not models:
        return None
    config = ModelConfig.from_yaml(**({"models": _names(models)} if models else {}))
    return config.for_universe() if universe else config


def _names(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


_MODELS_HELP = "Comma-separated models to train (default: model_config.yaml's models)."


@app.command("train")
def train_command(
    symbols: str = typer.Option(
        None, help="Comma-separated tickers in the store (default: ingest.symbols less market)."
    ),
    universe: str = typer.Option(None, help=_UNIVERSE_HELP),
    models: str = typer.Option(None, help=_MODELS_HELP),
    mlflow: bool = typer.Option(
        True, help="Log to MLflow (mlflow.tracking_uri, $MLFLOW_TRACKING_URI, else a local server)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Walk-forward evaluate, train, export ONNX, gate and publish a bundle to models/<version>/."""
    from stockml.orchestration import run_training
    from stockml.tracking import tracking_server

    settings = _settings()
    wanted, peers = _training_symbols(settings, symbols, universe)
    config = _model_config(universe, models)
    if mlflow:
        with tracking_server(settings.mlflow.tracking_uri) as uri, _progress() as bars:
            summary = run_training(
                settings,
                wanted,
                config=config,
                tracking_uri=uri,
                progress=bars,
                universe=peers,
            )
    else:
        with _progress() as bars:
            summary = run_training(settings, wanted, config=config, progress=bars, universe=peers)
    if as_json:
        _print_json(summary)
        return
    table = Table(
        title=f"bundle {summary['version']} ({'promoted' if summary['promoted'] else 'challenger'})"
    )
    table.add_column("key")
    table.add_column("value")
    shown = summary["symbols"]
    if len(shown) > 12:  # a universe: the count and a few
        shown = f"{len(shown)} symbols: {', '.join(shown[:8])}, ..."
    table.add_row("symbols", json.dumps(shown, default=str))
    for key in ("mlflow", "ensemble_weights", "parity_max_abs", "ranking"):
        if key in summary:
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
    universe: str = typer.Option(None, help=_UNIVERSE_HELP),
    models: str = typer.Option(None, help=_MODELS_HELP),
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
            wanted, _peers = _training_symbols(settings, symbols, universe)
            report = run_forward_test(settings, bundle, start, end, wanted)
        else:
            wanted, peers = _training_symbols(settings, symbols, universe)
            with _progress() as bars:
                report = run_evaluation(
                    settings,
                    wanted,
                    config=_model_config(universe, models),
                    progress=bars,
                    universe=peers,
                )
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
        names = report["symbols"]
        listed = ", ".join(names) if len(names) <= 12 else f"{len(names)} symbols"
        title = f"walk-forward, horizon 1 of {report['horizon']}, {listed}"
    console.print(_metrics_table(title, report))
    if "universe" in report:
        console.print(_ranking_table(report["universe"]))
    if "gate" in report:
        console.print(_gate_table(report["gate"]))


def _fail(message: str) -> NoReturn:
    """A user error: one ``error: ...`` line on stderr, exit 2 (as for every other mistake)."""
    typer.echo(f"error: {_one_line(message)}", err=True)
    raise typer.Exit(code=USER_ERROR)


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


def _ranking_table(universe: dict) -> Table:  # type: ignore[type-arg]
    """The cross-sectional figures of every model and single factor (horizon 1)."""
    lag = universe["execution_lag"]
    table = Table(
        title=f"ranking over {universe['n_symbols']} symbols, {universe['n_dates']} test sessions",
        caption=f"rank IC: mean daily Spearman of score and next-session return (t: "
        f"Newey-West); L/S: top/bottom {universe['quantile']:.0%}, Sharpe net of "
        f"{universe['cost_bps']:g} bps per side at lag 0 and {lag}; top-k: the "
        f"{universe['top_k']} best vs the equal-weight universe (excess annual return, lag {lag}); "
        "turnover: one side, per session",
        box=box.SIMPLE_HEAD,
        padding=(0, 1),
        collapse_padding=True,
        pad_edge=False,
    )
    for column in ("score", "rank IC", "t", "ICIR", "L/S lag 0", f"L/S lag {lag}", "top-k", "turn"):
        table.add_column(column, justify="right", no_wrap=True)
    groups = [("", universe["models"]), ("factor ", universe["factors"])]
    for prefix, blocks in groups:
        for name, b in blocks.items():
            ls = b["long_short"]
            table.add_row(
                prefix + name,
                _fmt(b["rank_ic"], ".4f"),
                _fmt(b["rank_ic_t"], ".2f"),
                _fmt(b["icir"], ".3f"),
                _fmt(ls.get("lag_0", {}).get("sharpe_net"), ".2f"),
                _fmt(ls.get(f"lag_{lag}", {}).get("sharpe_net"), ".2f"),
                _fmt(b["top_k"].get(f"lag_{lag}", {}).get("excess_annual_return"), ".1%"),
                _fmt(b["turnover"], ".2f"),
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


@app.command("monitor")
def monitor_command(
    as_of: str = typer.Option(
        None, "--as-of", help="Run as of this session (a replay); default: the last completed."
    ),
    retrain: bool = typer.Option(
        True,
        help="Trigger training when a threshold is passed (--no-retrain: decide and report only).",
    ),
    mlflow: bool = typer.Option(True, help="Log a training run it triggers to MLflow."),
    as_json: bool = typer.Option(False, "--json", help="Print the run's status as JSON."),
) -> None:
    """Score served forecasts against realised prices, check feature drift, freshness and
    quarantine, and retrain through the promotion gate when a threshold is passed."""
    from stockml.model_config import ModelConfig
    from stockml.monitoring.monitor import run_monitor
    from stockml.monitoring.retrain import batch_trigger, local_trigger
    from stockml.monitoring.tables import monitor_tables
    from stockml.storage import Store

    settings = _settings()
    run_date = _date_option(as_of, "--as-of")
    jobs = settings.monitoring.retrain
    trigger = None
    if retrain and jobs.batch_job_queue and jobs.batch_job_definition:
        trigger = batch_trigger(jobs.batch_job_queue, jobs.batch_job_definition)
    elif retrain:
        trigger = local_trigger(settings, mlflow=mlflow)
    result = run_monitor(
        Store.from_settings(settings.store), settings, ModelConfig.from_yaml(), run_date, trigger
    )
    if as_json:
        typer.echo(json.dumps(result["status"], indent=2))
        return
    note = None if retrain else "not triggered: --no-retrain"
    for table in monitor_tables(result["status"], note):
        console.print(table)


# === serving ===


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
    configure_json_logging(settings.api.log_level)
    uvicorn.run(
        create_app(settings),
        host=host or settings.api.host,
        port=port or settings.api.port,
        log_config=None,
        access_log=False,
        # the app believes X-Forwarded-For from api.trusted_proxies only; uvicorn's own
        # handling would believe it from any loopback client
        proxy_headers=False,
    )


# === dashboard ===


@app.command()
def dashboard(
    api_url: str = typer.Option(None, help="The API's base URL (default: dashboard.api_url)."),
    host: str = typer.Option(None, help="Bind address (default: dashboard.host, 127.0.0.1)."),
    port: int = typer.Option(None, help="Port (default: dashboard.port, 8501)."),
) -> None:
    """Run the Streamlit dashboard (headless, no usage statistics) against the prediction API."""
    from stockml.dashboard import find_app, streamlit_command

    settings = _settings()
    config = settings.dashboard.model_copy(
        update={k: v for k, v in {"api_url": api_url, "host": host, "port": port}.items() if v}
    )
    key = settings.api_key.get_secret_value() if settings.api_key else None
    try:
        app_file = find_app()
    except FileNotFoundError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(code=2) from None
    argv, env = streamlit_command(app_file, config, key)
    console.print(f"dashboard: http://{config.host}:{config.port}  (API: {config.api_url})")
    sys.stdout.flush()
    # Streamlit replaces this process: a signal to `stockml dashboard` (a process manager's
    # SIGTERM, Ctrl-C) reaches the server itself, which leaves no orphan behind
    os.execve(argv[0], argv, env)  # noqa: S606 - fixed argv


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
    from stockml.symbols import check_symbol

    check_symbol(symbol)
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
        from stockml.predlog import close_all

        close_all()  # what the API's prediction log still holds, while the local S3 is up
        moto.stop()


def _print_json(obj: object) -> None:
    console.print_json(json.dumps(obj, default=str))


def _settings() -> Settings:
    """Settings for one command; the local S3 of ``stockml local up`` when no endpoint is set.

    In that local mode, a machine without AWS credentials gets the local server's test ones.
    """
    import os

    from stockml.local import LOCAL_CREDENTIALS

    settings = Settings()
    state = _local_state()
    if state is not None and not os.environ.get("STOCKML_STORE__ENDPOINT_URL"):
        settings.store.endpoint_url = str(state["endpoint_url"])
        settings.store.bucket = str(state.get("bucket", settings.store.bucket))
        os.environ.setdefault("AWS_ACCESS_KEY_ID", LOCAL_CREDENTIALS["aws_access_key_id"])
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", LOCAL_CREDENTIALS["aws_secret_access_key"])
    return settings


if __name__ == "__main__":
    app()
