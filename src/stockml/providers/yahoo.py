"""Yahoo Finance daily bars through the official ``yfinance`` client.

Yahoo stamps a daily bar at the regular-session open in UTC (13:30Z in winter, 14:30Z in
summer); yfinance converts it to the exchange's local midnight, whose date is the bar's
exchange date. ``auto_adjust=False`` keeps Yahoo's ``close`` (split-adjusted, not dividend-
adjusted: the OHLC basis) apart from ``adjclose`` (splits and dividends): they go to
``close`` and ``adj_close``. Splits and dividends are exposed by :meth:`fetch_actions`.

The base-URL seam: yfinance accepts an injected curl_cffi session. The provider injects one
that sends every request for Yahoo's hosts (query1/query2 and the fc.yahoo.com cookie host)
to ``base_url`` when that is not Yahoo's, so tests run the real client against a local
replay server. yfinance keeps ONE session per process (a singleton) and each fetch installs
the provider's own: two YahooProviders with different base URLs must not fetch at once.
"""

from __future__ import annotations

import logging
import warnings
from datetime import date, timedelta
from typing import Any

import pandas as pd
from curl_cffi import requests as curl_requests

from stockml.errors import ProviderError, RateLimitError, TransientProviderError, UnknownSymbolError
from stockml.providers.base import Provider, RetryPolicy, call_with_retries, empty_actions

logger = logging.getLogger(__name__)

YAHOO_URL = "https://query2.finance.yahoo.com"
_YAHOO_HOSTS = (
    "https://query1.finance.yahoo.com",
    "https://query2.finance.yahoo.com",
    "https://fc.yahoo.com",
)


class _GuardedSession(curl_requests.Session):  # type: ignore[misc]
    """The curl_cffi session yfinance would use, plus two things yfinance lacks.

    1. Requests for Yahoo's hosts go to ``base_url`` when one is given (the test seam).
    2. HTTP 429 and 5xx raise at once: yfinance 1.7 would parse a 5xx body as data and keep
       the response in its in-process cache, so a retry could never succeed.
    """

    def __init__(self, base_url: str | None) -> None:
        super().__init__(impersonate="chrome")
        self.base_url = base_url.rstrip("/") if base_url else None

    def request(self, method: Any, url: str, *args: Any, **kwargs: Any) -> Any:
        if self.base_url:
            for host in _YAHOO_HOSTS:
                if url.startswith(host):
                    url = self.base_url + url[len(host) :]
                    break
        response = super().request(method, url, *args, **kwargs)
        if response.status_code == 429:
            raise RateLimitError(f"yfinance: HTTP 429 from {url.split('?')[0]}")
        if response.status_code >= 500:
            raise TransientProviderError(
                f"yfinance: HTTP {response.status_code} from {url.split('?')[0]}"
            )
        return response


class YahooProvider(Provider):
    """Daily bars and corporate actions from Yahoo's chart API (``v8/finance/chart``)."""

    name = "yfinance"

    def __init__(
        self,
        base_url: str = YAHOO_URL,
        retry: RetryPolicy | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        super().__init__(retry=retry, timeout_s=timeout_s)
        import yfinance as yf

        self._yf = yf
        # yfinance logs and swallows HTTP errors by default (an empty frame); we need them
        # raised to retry and fall back. This is a process-wide yfinance setting.
        yf.config.debug.hide_exceptions = False
        redirected = base_url.rstrip("/") not in (YAHOO_URL, "https://query1.finance.yahoo.com")
        self._session = _GuardedSession(base_url if redirected else None)

    def _history(self, symbol: str, start: date, end: date) -> pd.DataFrame:
        from yfinance import exceptions as yfe

        ticker = self._yf.Ticker(symbol, session=self._session)
        try:
            with warnings.catch_warnings():
                # yfinance 1.7 uses pandas' deprecated inplace= (Pandas4Warning): not ours
                warnings.filterwarnings("ignore", module=r"yfinance(\.|$)")
                return ticker.history(
                    start=start.isoformat(),
                    end=(end + timedelta(days=1)).isoformat(),  # yfinance's end is exclusive
                    interval="1d",
                    auto_adjust=False,
                    actions=True,
                    repair=False,
                    timeout=self.timeout_s,
                )
        except ProviderError:
            raise  # from _GuardedSession: already classified
        except yfe.YFRateLimitError as exc:
            raise RateLimitError(f"yfinance {symbol}: {exc}") from exc
        except yfe.YFPricesMissingError as exc:
            logger.info("yfinance %s: no prices in %s..%s (%s)", symbol, start, end, exc)
            return pd.DataFrame()
        except yfe.YFTickerMissingError as exc:
            raise UnknownSymbolError(f"yfinance {symbol}: {exc}") from exc
        except Exception as exc:  # the HTTP backend's errors: requests or curl_cffi
            raise _classify(symbol, exc) from exc

    def _fetch_bars(self, symbol: str, start: date, end: date) -> pd.DataFrame:
        hist = self._history(symbol, start, end)
        if hist.empty:
            return hist
        # midnight in the exchange's time zone: dropping the zone leaves the exchange date
        dates = hist.index.tz_localize(None) if hist.index.tz is not None else hist.index
        return pd.DataFrame(
            {
                "symbol": symbol,
                "date": dates,
                "open": hist["Open"].to_numpy(),
                "high": hist["High"].to_numpy(),
                "low": hist["Low"].to_numpy(),
                "close": hist["Close"].to_numpy(),
                "adj_close": hist["Adj Close"].to_numpy(),
                "volume": hist["Volume"].to_numpy(),
                "source": self.name,
            }
        )

    def fetch_actions(self, symbol: str, start: date, end: date) -> pd.DataFrame:
        """Dividends (cash per share) and splits (new shares per old) from Yahoo's ``events``."""
        hist = call_with_retries(
            lambda: self._history(symbol, start, end), self.retry, f"yfinance actions {symbol}"
        )
        if hist.empty or not {"Dividends", "Stock Splits"} <= set(hist.columns):
            return empty_actions()
        events = hist[(hist["Dividends"] != 0) | (hist["Stock Splits"] != 0)]
        dates = events.index.tz_localize(None) if events.index.tz is not None else events.index
        return pd.DataFrame(
            {
                "symbol": symbol,
                "date": pd.DatetimeIndex(dates).astype("datetime64[ns]"),
                "dividend": events["Dividends"].replace(0.0, float("nan")).to_numpy(),
                "split": events["Stock Splits"].replace(0.0, float("nan")).to_numpy(),
            }
        ).reset_index(drop=True)


def _classify(symbol: str, exc: Exception) -> ProviderError | UnknownSymbolError:
    """Map an HTTP-backend exception to a domain error (transient ones are retried)."""
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    if status == 429:
        return RateLimitError(f"yfinance {symbol}: HTTP 429")
    if status == 404:
        return UnknownSymbolError(f"yfinance {symbol}: HTTP 404 (unknown symbol)")
    if isinstance(status, int) and status >= 500:
        return TransientProviderError(f"yfinance {symbol}: HTTP {status}")
    if isinstance(exc, curl_requests.exceptions.Timeout | curl_requests.exceptions.ConnectionError):
        return TransientProviderError(f"yfinance {symbol}: {type(exc).__name__}: {exc}")
    return ProviderError(f"yfinance {symbol}: {type(exc).__name__}: {exc}")
