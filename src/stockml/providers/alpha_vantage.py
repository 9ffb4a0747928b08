"""Alpha Vantage daily bars and news through the official ``alpha_vantage`` client.

The client builds each URL from its class attribute ``_ALPHA_VANTAGE_API_URL`` and sends it
with ``requests.get`` without a timeout or a status check. The provider keeps the client's
URL building and parsing and replaces only that one HTTP call (``_handle_api_call``), to
send it to a configurable base URL with a timeout and to classify the answers:

* HTTP 429, or HTTP 200 with a top-level ``Note`` or ``Information`` key (how Alpha Vantage
  reports its per-minute and per-day limits): :class:`RateLimitError`, never an empty frame.
  An ``Information`` about a premium-only endpoint is a plain :class:`ProviderError`.
* ``Error Message`` (``Invalid API call``: Alpha Vantage's answer for an unknown symbol):
  :class:`UnknownSymbolError`.
* HTTP 5xx, timeouts, connection errors: :class:`TransientProviderError`.

``TIME_SERIES_DAILY_ADJUSTED`` gives ``close`` (raw) and ``5. adjusted close`` (splits and
dividends) plus the dividend and split of each day (:meth:`fetch_actions`). With
``adjusted=False`` (``TIME_SERIES_DAILY``, the free endpoint) there is no adjusted close and
``adj_close`` is the raw close: fine for the latest days, wrong across a split.
"""

from __future__ import annotations

import logging
from datetime import date
from typing import Any

import pandas as pd
import requests
from alpha_vantage.alphaintelligence import AlphaIntelligence
from alpha_vantage.timeseries import TimeSeries

from stockml.errors import (
    ConfigError,
    ProviderError,
    RateLimitError,
    TransientProviderError,
    UnknownSymbolError,
)
from stockml.providers.base import Provider, RetryPolicy, call_with_retries, empty_actions

logger = logging.getLogger(__name__)

ALPHA_VANTAGE_URL = "https://www.alphavantage.co"
# 'compact' answers the latest 100 sessions; older starts need the 'full' history
_COMPACT_DAYS = 140
_NEWS_TIME = "%Y%m%dT%H%M%S"


class _CheckedHttp:
    """Replaces the client's one HTTP call: configurable base URL, timeout, error mapping."""

    base_url: str
    timeout_s: float
    proxy: dict[str, str]
    headers: dict[str, str]

    def _handle_api_call(self, url: str) -> dict[str, Any]:
        query = url.split("?", 1)[1]
        url = f"{self.base_url}/query?{query}"
        function = query.split("&", 1)[0]
        try:
            response = requests.get(
                url, proxies=self.proxy, headers=self.headers, timeout=self.timeout_s
            )
        except (requests.Timeout, requests.ConnectionError) as exc:
            # the exception text holds the URL, and the URL holds the API key: name the type only
            raise TransientProviderError(f"alpha_vantage {function}: {type(exc).__name__}") from exc
        if response.status_code == 429:
            raise RateLimitError(f"alpha_vantage {function}: HTTP 429")
        if response.status_code >= 500:
            raise TransientProviderError(f"alpha_vantage {function}: HTTP {response.status_code}")
        if response.status_code >= 400:
            raise ProviderError(f"alpha_vantage {function}: HTTP {response.status_code}")
        try:
            payload = response.json()
        except ValueError as exc:
            raise ProviderError(f"alpha_vantage {function}: the answer is not JSON") from exc
        if not isinstance(payload, dict) or not payload:
            raise ProviderError(f"alpha_vantage {function}: empty answer")
        if "Error Message" in payload:
            raise UnknownSymbolError(f"alpha_vantage {function}: {payload['Error Message']}")
        for key in ("Note", "Information"):
            if key in payload:
                text = str(payload[key])
                if "premium endpoint" in text.lower():
                    raise ProviderError(f"alpha_vantage {function}: premium endpoint: {text}")
                raise RateLimitError(f"alpha_vantage {function}: {text}")
        return payload


class _TimeSeries(_CheckedHttp, TimeSeries):
    def __init__(self, key: str, base_url: str, timeout_s: float) -> None:
        TimeSeries.__init__(self, key=key, output_format="json")
        self.base_url, self.timeout_s = base_url, timeout_s


class _Intelligence(_CheckedHttp, AlphaIntelligence):
    def __init__(self, key: str, base_url: str, timeout_s: float) -> None:
        AlphaIntelligence.__init__(self, key=key, output_format="json")
        self.base_url, self.timeout_s = base_url, timeout_s


class AlphaVantageProvider(Provider):
    """Daily bars (adjusted by default), actions and news from Alpha Vantage."""

    name = "alpha_vantage"
    supports_news = True

    def __init__(
        self,
        api_key: str | None,
        base_url: str = ALPHA_VANTAGE_URL,
        retry: RetryPolicy | None = None,
        timeout_s: float = 10.0,
        adjusted: bool = True,
    ) -> None:
        super().__init__(retry=retry, timeout_s=timeout_s)
        if not api_key:
            raise ConfigError("alpha_vantage needs ALPHA_VANTAGE_API_KEY in the environment")
        base_url = base_url.rstrip("/")
        self.series = _TimeSeries(api_key, base_url, timeout_s)
        self.intelligence = _Intelligence(api_key, base_url, timeout_s)
        self.adjusted = adjusted

    def _daily(self, symbol: str, start: date) -> pd.DataFrame:
        size = "full" if (date.today() - start).days > _COMPACT_DAYS else "compact"
        if self.adjusted:
            data, _ = self.series.get_daily_adjusted(symbol, outputsize=size)
        else:
            data, _ = self.series.get_daily(symbol, outputsize=size)
        frame = pd.DataFrame.from_dict(data, orient="index")
        if frame.empty:
            return frame
        # keys look like "4. close" / "5. adjusted close": drop the numbering
        frame.columns = [str(c).split(". ", 1)[-1] for c in frame.columns]
        # values and dates stay text: the bar schema parses them per row, and a row that
        # does not parse goes to quarantine with its text
        return frame

    def _fetch_bars(self, symbol: str, start: date, end: date) -> pd.DataFrame:
        daily = self._daily(symbol, start)
        if daily.empty:
            return daily
        close = daily["close"]
        return pd.DataFrame(
            {
                "symbol": symbol,
                "date": daily.index,
                "open": daily["open"],
                "high": daily["high"],
                "low": daily["low"],
                "close": close,
                "adj_close": daily.get("adjusted close", close),
                "volume": daily["volume"],
                "source": self.name,
            }
        )

    def fetch_actions(self, symbol: str, start: date, end: date) -> pd.DataFrame:
        """Dividends and splits from the adjusted series (empty for ``adjusted=False``)."""
        if not self.adjusted:
            return empty_actions()
        daily = call_with_retries(
            lambda: self._daily(symbol, start), self.retry, f"alpha_vantage actions {symbol}"
        )
        if daily.empty:
            return empty_actions()
        daily = daily.apply(pd.to_numeric, errors="coerce")
        daily.index = pd.to_datetime(daily.index, errors="coerce")
        daily = daily[(daily.index >= pd.Timestamp(start)) & (daily.index <= pd.Timestamp(end))]
        events = daily[(daily["dividend amount"] != 0) | (daily["split coefficient"] != 1)]
        return (
            pd.DataFrame(
                {
                    "symbol": symbol,
                    "date": events.index.astype("datetime64[ns]"),
                    "dividend": events["dividend amount"].replace(0.0, float("nan")).to_numpy(),
                    "split": events["split coefficient"].replace(1.0, float("nan")).to_numpy(),
                }
            )
            .sort_values("date")
            .reset_index(drop=True)
        )

    def _fetch_news(self, symbol: str, start: date, end: date) -> pd.DataFrame:
        feed, _ = self.intelligence.get_news_sentiment(
            tickers=symbol,
            time_from=f"{start:%Y%m%d}T0000",
            time_to=f"{end:%Y%m%d}T2359",
            sort="EARLIEST",
            limit=1000,
        )
        if feed.empty:
            return feed
        # Alpha Vantage documents no zone for time_published; it is read as UTC
        published = pd.to_datetime(feed["time_published"], format=_NEWS_TIME, utc=True)
        return pd.DataFrame(
            {
                "symbol": symbol,
                "published_at": published,
                "title": feed["title"],
                "summary": feed.get("summary", ""),
                "url": feed["url"],
                "source": self.name,
            }
        )
