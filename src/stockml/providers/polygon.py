"""Polygon.io daily aggregates and news through the official ``polygon-api-client``.

Dates: an aggregate's ``t`` is epoch milliseconds at midnight New York time (05:00Z under
EST, 04:00Z under EDT); converting to America/New_York gives the exchange date.

Raw vs adjusted: Polygon adjusts for splits only (``adjusted=true``), never for dividends.
Each fetch makes two calls: ``adjusted=false`` gives open/high/low/close/volume (the raw
basis the bar schema wants) and ``adjusted=true`` gives ``adj_close`` (split-adjusted).

The client's own urllib3 retries are switched off (``retries=0``) so that the one retry
policy of :mod:`stockml.providers.base` decides; the client also never passes its
``read_timeout`` to urllib3 (polygon-api-client 1.16), so the provider sets it on the pool.
"""

from __future__ import annotations

import logging
from datetime import date
from typing import Any

import pandas as pd
import urllib3
from polygon import RESTClient
from polygon.exceptions import AuthError, BadResponse

from stockml.errors import (
    ConfigError,
    ProviderError,
    RateLimitError,
    TransientProviderError,
)
from stockml.providers.base import Provider, RetryPolicy

logger = logging.getLogger(__name__)

POLYGON_URL = "https://api.polygon.io"
NEW_YORK = "America/New_York"


class PolygonProvider(Provider):
    """Daily bars (``/v2/aggs``) and news (``/v2/reference/news``) from Polygon."""

    name = "polygon"
    supports_news = True

    def __init__(
        self,
        api_key: str | None,
        base_url: str = POLYGON_URL,
        retry: RetryPolicy | None = None,
        timeout_s: float = 10.0,
        news_limit: int = 1000,
    ) -> None:
        super().__init__(retry=retry, timeout_s=timeout_s)
        if not api_key:
            raise ConfigError("polygon needs POLYGON_API_KEY in the environment")
        try:
            self.client = RESTClient(
                api_key,
                base=base_url.rstrip("/"),
                retries=0,
                connect_timeout=timeout_s,
                read_timeout=timeout_s,
            )
        except AuthError as exc:  # pragma: no cover - the key is checked above
            raise ConfigError(str(exc)) from exc
        self.client.client.connection_pool_kw["timeout"] = urllib3.Timeout(
            connect=timeout_s, read=timeout_s
        )
        self.news_limit = news_limit

    def _aggs(self, symbol: str, start: date, end: date, adjusted: bool) -> pd.DataFrame:
        aggs = _call(
            symbol,
            lambda: self.client.get_aggs(
                symbol,
                1,
                "day",
                start.isoformat(),
                end.isoformat(),
                adjusted=adjusted,
                sort="asc",
                limit=50000,
            ),
        )
        rows = [
            {
                "t": a.timestamp,
                "open": a.open,
                "high": a.high,
                "low": a.low,
                "close": a.close,
                "volume": a.volume,
            }
            for a in aggs
        ]
        frame = pd.DataFrame(rows, columns=["t", "open", "high", "low", "close", "volume"])
        stamps = pd.to_datetime(frame["t"].astype("int64"), unit="ms", utc=True)
        # midnight New York time: the local calendar date is the exchange date
        frame["date"] = stamps.dt.tz_convert(NEW_YORK).dt.tz_localize(None).dt.normalize()
        return frame.drop(columns="t")

    def _fetch_bars(self, symbol: str, start: date, end: date) -> pd.DataFrame:
        raw = self._aggs(symbol, start, end, adjusted=False)
        adjusted = self._aggs(symbol, start, end, adjusted=True)
        bars = raw.merge(
            adjusted[["date", "close"]].rename(columns={"close": "adj_close"}),
            on="date",
            how="inner",
        )
        if len(bars) < len(raw):
            logger.warning(
                "polygon %s: %d raw bars lack an adjusted twin", symbol, len(raw) - len(bars)
            )
        bars["symbol"] = symbol
        bars["source"] = self.name
        return bars

    def _fetch_news(self, symbol: str, start: date, end: date) -> pd.DataFrame:
        items = _call(
            symbol,
            lambda: list(
                self.client.list_ticker_news(
                    ticker=symbol,
                    published_utc_gte=start.isoformat(),
                    published_utc_lte=f"{end.isoformat()}T23:59:59Z",
                    order="asc",
                    limit=self.news_limit,
                )
            ),
        )
        return pd.DataFrame(
            [
                {
                    "symbol": symbol,
                    "published_at": n.published_utc,
                    "title": n.title,
                    "summary": n.description,
                    "url": n.article_url,
                    "source": self.name,
                }
                for n in items
            ],
            columns=["symbol", "published_at", "title", "summary", "url", "source"],
        )


def _call(symbol: str, fn: Any) -> Any:
    """Run one client call and map its exceptions to domain errors."""
    try:
        return fn()
    except BadResponse as exc:
        # non-200 outside urllib3's retry list (401, 403, 404, ...): not transient
        raise ProviderError(f"polygon {symbol}: {exc}") from exc
    except urllib3.exceptions.MaxRetryError as exc:
        reason = exc.reason
        if isinstance(reason, urllib3.exceptions.ResponseError) and "429" in str(reason):
            raise RateLimitError(f"polygon {symbol}: HTTP 429") from exc
        raise TransientProviderError(f"polygon {symbol}: {reason}") from exc
    except urllib3.exceptions.HTTPError as exc:
        raise TransientProviderError(f"polygon {symbol}: {type(exc).__name__}: {exc}") from exc
