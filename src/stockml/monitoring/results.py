"""What the monitor publishes under ``<monitoring_prefix>/``, and how the API reads it.

Layout (JSON, written by :mod:`stockml.monitoring.monitor`)::

    status.json                  the latest run: drift, freshness, quarantine, live summary,
                                 the retraining decision (``GET /monitoring``)
    live/symbol=<SYM>.json       one symbol's live metrics and their series over time (the
                                 ``live`` block of ``GET /metrics/{symbol}``)
    runs/<YYYY-MM-DD>.json       each run's report, by run date (the history)
    retrain/<YYYY-MM-DD>.json    a retraining trigger, claimed once per day (conditional PUT)

Standard library only: the serving path reads these through :class:`MonitoringReader`.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import date
from typing import Any, Protocol

from stockml.errors import StoreError
from stockml.s3 import encode_symbol

STATUS = "status.json"


class ObjectReader(Protocol):
    def get_bytes(self, key: str) -> bytes: ...


def status_key(prefix: str) -> str:
    return f"{prefix.strip('/')}/{STATUS}"


def live_key(prefix: str, symbol: str) -> str:
    return f"{prefix.strip('/')}/live/symbol={encode_symbol(symbol)}.json"


def run_key(prefix: str, day: date) -> str:
    return f"{prefix.strip('/')}/runs/{day.isoformat()}.json"


def retrain_prefix(prefix: str) -> str:
    return f"{prefix.strip('/')}/retrain/"


def retrain_key(prefix: str, day: date) -> str:
    return f"{retrain_prefix(prefix)}{day.isoformat()}.json"


def dumps(obj: Any) -> bytes:
    """The bytes of a published object: sorted keys, so equal content is equal bytes."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


class MonitoringReader:
    """The monitor's published status and per-symbol live metrics, kept ``ttl_s`` seconds.

    Args:
        reader: the bucket.
        prefix: ``store.monitoring_prefix``.
        ttl_s: how long an answer (or a missing object) is reused.
        clock: monotonic seconds.
    """

    def __init__(
        self,
        reader: ObjectReader,
        prefix: str = "monitoring",
        ttl_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.reader = reader
        self.prefix = prefix.strip("/")
        self.ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, dict[str, Any] | None]] = {}

    def _get(self, key: str) -> dict[str, Any] | None:
        now = self._clock()
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None and now - hit[0] < self.ttl_s:
            return hit[1]
        try:
            value: dict[str, Any] | None = json.loads(self.reader.get_bytes(key))
        except StoreError:
            value = None  # not published yet (or unreadable): asked again after ttl_s
        except ValueError as exc:
            raise StoreError(f"{key} is not JSON: {exc}") from exc
        with self._lock:
            self._cache[key] = (now, value)
        return value

    def status(self) -> dict[str, Any]:
        """The latest run's status.

        Raises:
            StoreError: the monitor has not published one (or it is unreadable).
        """
        status = self._get(status_key(self.prefix))
        if status is None:
            raise StoreError(
                f"no monitoring status at {status_key(self.prefix)}: the monitor has not run "
                "yet (stockml monitor, or the scheduled monitor function)"
            )
        return status

    def live(self, symbol: str) -> dict[str, Any] | None:
        """``symbol``'s live metrics, or None when the monitor has scored none of its forecasts."""
        return self._get(live_key(self.prefix, symbol))
