"""The prediction log: every forecast the API serves, recorded to the store off the request path.

Why the API logs what it serves (rather than the feature job writing every symbol's forecast
each day): the log is the record of what users were told, with the request id, the model
version and the horizons they asked for; a forecast the feature job computes is what the API
*would* have said. The serving path imports no pandas or pyarrow, so the API writes JSON
lines and the monitor (``stockml.monitoring.predictions``) compacts them into Parquet.

How a record travels:

1. ``PredictionLog.record`` (on the request path) appends the served ``Forecast`` and its
   request id to an in-memory buffer under a lock: no I/O, no serialisation (a few
   microseconds, ``benchmarks/serve.py`` measures it).
2. A background thread flushes the buffer when it holds ``max_records`` records or its oldest
   is ``max_age_s`` old: one JSON-lines object per as-of date,
   ``<prefix>/_incoming/as_of=<YYYY-MM-DD>/<writer>-<seq>.jsonl``. ``<writer>`` is random per
   process (per Lambda container), ``<seq>`` counts its objects: keys never collide, however
   many containers run at once, and a key is written once (a retried PUT writes the same bytes
   under the same key, so at-least-once delivery of a PUT stores one object).
3. ``close`` flushes what is left: every log of the process at interpreter exit
   (:func:`close_all`), and on Lambda at SIGTERM (``install_shutdown_flush``).

A PUT that fails keeps its batch for the next flush; past ``max_pending`` records waiting,
the oldest batch is dropped and counted (``dropped``), so a store outage cannot exhaust a
container's memory. What can be lost: a container that dies without SIGTERM (a crash, a
timeout) loses its unflushed records, at most ``max_records`` or ``max_age_s`` worth. Lambda
sends SIGTERM to the runtime before it shuts a container down only when an extension is
registered (README: Monitoring).

Every record is one served (model, horizon) of one request::

    record_id, request_id, served_at, endpoint, symbol, model_version, model, as_of, horizon,
    target_date, last_close, predicted_close, predicted_log_return, lower, upper, level,
    data_age_sessions, stale

``as_of`` is the last feature date the forecast was made from; ``record_id`` is unique per
record (``<writer>-<n>``), so readers drop the copies a retried compaction may leave.
"""

from __future__ import annotations

import atexit
import json
import logging
import math
import signal
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, Protocol

from stockml.errors import StoreError

if TYPE_CHECKING:
    from stockml.inference import Forecast

logger = logging.getLogger(__name__)

INCOMING = "_incoming"
# every open log of the process: close_all() flushes them (at exit, or when a caller must)
_LOGS: weakref.WeakSet[PredictionLog] = weakref.WeakSet()


class ObjectWriter(Protocol):
    """Write access to the bucket: :class:`~stockml.s3.S3Writer` or a Store."""

    def put_bytes(self, key: str, data: bytes) -> None: ...


def incoming_prefix(prefix: str, as_of: date | None = None) -> str:
    """``<prefix>/_incoming/`` (or one as-of date's folder under it)."""
    base = f"{prefix.strip('/')}/{INCOMING}/"
    return base if as_of is None else f"{base}as_of={as_of.isoformat()}/"


def incoming_key(prefix: str, as_of: date, writer: str, seq: int) -> str:
    """The key of one flushed batch of one as-of date."""
    return f"{incoming_prefix(prefix, as_of)}{writer}-{seq:08d}.jsonl"


def _number(value: float | None) -> str:
    """A float as ``json.dumps`` writes it (``NaN``/``Infinity`` included), None as null."""
    if value is None:
        return "null"
    return repr(value) if math.isfinite(value) else json.dumps(value)


def forecast_bodies(forecast: Forecast) -> list[str]:
    """What every record of one forecast says whoever asked: one string per model and horizon,
    in record order (the fields of the module's docstring but the request's own four).

    The log encodes them once per forecast and flush (:meth:`PredictionLog.flush`): under load
    the API serves the same cached forecast to request after request, and encoding its floats
    is most of the log's CPU (``benchmarks/serve.py`` measures the log's cost)."""
    shared = (
        f'"symbol":{json.dumps(forecast.symbol)},'
        f'"model_version":{json.dumps(forecast.model_version)},'
        f'"as_of":"{forecast.last_date.isoformat()}",'
        f'"last_close":{_number(float(forecast.last_close))},'
        f'"data_age_sessions":{json.dumps(forecast.age_sessions)},'
        f'"stale":{"true" if forecast.stale else "false"},'
    )
    targets = [f'"{d.isoformat()}"' for d in forecast.dates]
    out = []
    for name, f in forecast.models.items():
        head = shared + f'"model":{json.dumps(name)},"level":{json.dumps(f.level)},'
        prices, returns = f.prices.tolist(), f.log_returns.tolist()
        lower = None if f.lower is None else f.lower.tolist()
        upper = None if f.upper is None else f.upper.tolist()
        for h in range(len(prices)):
            target = targets[h] if h < len(targets) else "null"
            low = "null" if lower is None else _number(lower[h])
            high = "null" if upper is None else _number(upper[h])
            out.append(
                f'{head}"horizon":{h + 1},"target_date":{target},'
                f'"predicted_close":{_number(prices[h])},'
                f'"predicted_log_return":{_number(returns[h])},'
                f'"lower":{low},"upper":{high},'
            )
    return out


def forecast_lines(
    forecast: Forecast,
    request_id: str,
    served_at: str,
    endpoint: str,
    writer_id: str,
    first: int,
    bodies: list[str] | None = None,
) -> list[str]:
    """The JSON lines of one served forecast: one record per model and horizon (the fields in
    the module's docstring), ``record_id`` = ``<writer_id>-<n>`` with n counting from
    ``first``. ``bodies``: the forecast's :func:`forecast_bodies`, when already encoded.
    Written without building a dict per record (this runs in the API's background thread for
    every served forecast)."""
    head = (
        f'{{"request_id":{json.dumps(request_id)},"served_at":{json.dumps(served_at)},'
        f'"endpoint":{json.dumps(endpoint)},'
    )
    if bodies is None:
        bodies = forecast_bodies(forecast)
    return [f'{head}{body}"record_id":"{writer_id}-{n}"}}' for n, body in enumerate(bodies, first)]


class PredictionLog:
    """A per-process buffer of served forecasts, flushed to the store in batches.

    Args:
        writer: the bucket (``put_bytes``).
        prefix: the prediction log's prefix (``store.predictions_prefix``).
        max_records: flush once this many records wait.
        max_age_s: flush once the oldest waiting record is this old.
        max_pending: records kept for a retry after failed PUTs before the oldest are dropped.
        clock: monotonic seconds (tests pass their own).
        background: flush from a background thread (False: only ``flush``/``close`` write).
    """

    def __init__(
        self,
        writer: ObjectWriter,
        prefix: str = "predictions",
        max_records: int = 5000,
        max_age_s: float = 60.0,
        max_pending: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
        background: bool = True,
    ) -> None:
        self.writer = writer
        self.prefix = prefix.strip("/")
        self.max_records = max_records
        self.max_age_s = max_age_s
        self.max_pending = max_pending
        self.writer_id = uuid.uuid4().hex[:16]
        self._clock = clock
        self._background = background
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()  # one flush at a time: batches keep their order
        self._buffer: list[tuple[Forecast, str, str, float]] = []
        self._buffered = 0  # the records of the buffered forecasts
        self._oldest: float | None = None
        self._pending: list[tuple[str, bytes, int]] = []  # (key, body, records) to PUT
        self._objects = 0
        self._records = 0
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.recorded = 0
        self.written = 0
        self.dropped = 0
        self.failed_puts = 0
        _LOGS.add(self)

    # ------------------------------------------------------------------ request path

    def record(self, forecast: Forecast, request_id: str | None, endpoint: str = "predict") -> None:
        """Buffer one served forecast (no I/O; the flush happens in the background)."""
        served = time.time()
        with self._lock:
            if self._closed:
                return
            self._buffer.append((forecast, request_id or "", endpoint, served))
            self._buffered += sum(len(f.prices) for f in forecast.models.values())
            if self._oldest is None:
                self._oldest = self._clock()
            self.recorded += 1
            due = self._buffered >= self.max_records
            start = self._background and self._thread is None
            if start:
                self._thread = threading.Thread(
                    target=self._run, name="stockml-prediction-log", daemon=True
                )
        if start:
            assert self._thread is not None
            self._thread.start()
        if due:
            self._wake.set()

    # ------------------------------------------------------------------ flushing

    def due(self) -> bool:
        """True when the buffer should be flushed now (size or age)."""
        with self._lock:
            return bool(self._buffer) and (
                self._buffered >= self.max_records
                or (self._oldest is not None and self._clock() - self._oldest >= self.max_age_s)
            )

    def flush(self) -> int:
        """Write every buffered record (and every batch a failed PUT left); returns how many
        records were written. A failed PUT keeps its batch for the next flush.

        Raises:
            StoreError: a PUT failed (what it held is kept, within ``max_pending``).
        """
        with self._flush_lock:
            with self._lock:
                items, self._buffer, self._oldest = self._buffer, [], None
                self._buffered = 0
            batches = self._serialise(items)
            with self._lock:
                self._pending.extend(batches)
                self._bound_pending()
            return self._write_pending()

    def _serialise(
        self, items: list[tuple[Forecast, str, str, float]]
    ) -> list[tuple[str, bytes, int]]:
        by_day: dict[date, list[str]] = {}
        # each distinct forecast is encoded once per flush (``items`` holds them: ids are stable)
        encoded: dict[int, list[str]] = {}
        for forecast, request_id, endpoint, served in items:
            served_at = datetime.fromtimestamp(served, UTC).isoformat()
            bodies = encoded.get(id(forecast))
            if bodies is None:
                bodies = encoded[id(forecast)] = forecast_bodies(forecast)
            first = self._records + 1
            by_day.setdefault(forecast.last_date, []).extend(
                forecast_lines(
                    forecast, request_id, served_at, endpoint, self.writer_id, first, bodies
                )
            )
            self._records = first - 1 + len(bodies)
        batches = []
        for day in sorted(by_day):
            self._objects += 1
            key = incoming_key(self.prefix, day, self.writer_id, self._objects)
            lines = by_day[day]
            batches.append((key, ("\n".join(lines) + "\n").encode(), len(lines)))
        return batches

    def _bound_pending(self) -> None:
        waiting = sum(n for _k, _b, n in self._pending)
        while self._pending and waiting > self.max_pending:
            key, _body, n = self._pending.pop(0)
            waiting -= n
            self.dropped += n
            logger.error(
                "prediction log: dropped %d records of %s (the store keeps failing)", n, key
            )

    def _write_pending(self) -> int:
        written = 0
        while True:
            with self._lock:
                if not self._pending:
                    return written
                key, body, n = self._pending[0]
            try:
                self.writer.put_bytes(key, body)
            except StoreError:
                with self._lock:
                    self.failed_puts += 1
                raise
            with self._lock:
                self._pending.pop(0)
                self.written += n
            written += n

    def _run(self) -> None:
        while True:
            with self._lock:
                closed = self._closed
                wait = self.max_age_s
                if self._oldest is not None:
                    wait = max(self.max_age_s - (self._clock() - self._oldest), 0.0)
            if closed:
                return
            self._wake.wait(wait)
            self._wake.clear()
            with self._lock:
                if self._closed:
                    return
                failed_before = bool(self._pending)
            if self.due() or failed_before:
                try:
                    self.flush()
                except Exception as exc:  # noqa: BLE001 - the thread must outlive any failure
                    logger.warning("prediction log flush failed (kept for a retry): %s", exc)
                    self._wake.wait(min(self.max_age_s, 5.0))  # do not spin on an outage

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the background thread and write what is left (errors are logged, not raised)."""
        with self._lock:
            self._closed = True
            thread = self._thread
        self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)
        try:
            self.flush()
        except StoreError as exc:
            logger.error(
                "prediction log: %d records not written at shutdown: %s", self.waiting, exc
            )

    @property
    def waiting(self) -> int:
        """Records buffered or waiting for a retried PUT."""
        with self._lock:
            return self._buffered + sum(n for _k, _b, n in self._pending)

    def stats(self) -> dict[str, int]:
        """Forecasts recorded, records written and dropped, failed PUTs."""
        with self._lock:
            return {
                "recorded": self.recorded,
                "written": self.written,
                "dropped": self.dropped,
                "failed_puts": self.failed_puts,
            }


def close_all() -> None:
    """Close (flush) every prediction log of this process."""
    for log in list(_LOGS):
        log.close()


atexit.register(close_all)


def install_shutdown_flush(log: PredictionLog) -> None:
    """Flush ``log`` when the process gets SIGTERM (Lambda's shutdown), then chain the handler
    that was installed before (or exit, as SIGTERM's default does)."""
    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum: int, frame: Any) -> None:
        log.close(timeout_s=0.3)
        if callable(previous):
            previous(signum, frame)
        else:
            raise SystemExit(0)

    try:
        signal.signal(signal.SIGTERM, on_sigterm)
    except ValueError:  # not the main thread: signals are the main thread's
        logger.warning("prediction log: no SIGTERM flush outside the main thread")
