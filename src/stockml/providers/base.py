"""The provider interface: daily bars (and news) for one symbol, retries, fallback.

Every provider returns the one bar schema of :mod:`stockml.schemas` (``coerce_bars``):
``date`` is the New York exchange date, ``close`` the raw close, ``adj_close`` the adjusted
one. ``start`` and ``end`` are both inclusive exchange dates. A provider that has no bars in
the range (weekend, holiday) returns an empty frame; that is an answer, not a failure, so
the fallback does not move on to the next provider.

A symbol that does not match :data:`stockml.symbols.SYMBOL_PATTERN` is refused
(:class:`~stockml.errors.ValidationError`) before any provider is asked. A row whose date
cannot be parsed is kept (dated NaT, its text in ``unparsed``) so that validation sends it to
quarantine instead of losing it; rows are ordered by date with a stable sort, so that of two
copies of one date the provider's first stays first.

Errors: a failure that may pass on retry (timeout, connection error, HTTP 5xx, HTTP 429 or a
rate-limit note) is a :class:`TransientProviderError` (``RateLimitError`` is one) and is
retried with exponential backoff; anything else (bad payload, auth, unknown symbol) is not.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import TypeVar

import numpy as np
import pandas as pd

from stockml.errors import (
    AllProvidersFailedError,
    ProviderError,
    TransientProviderError,
    UnknownSymbolError,
)
from stockml.schemas import BAR_COLUMNS, NEWS_COLUMNS, coerce_bars, coerce_news
from stockml.symbols import check_symbol

logger = logging.getLogger(__name__)

ACTION_COLUMNS: list[str] = ["symbol", "date", "dividend", "split"]

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry transient failures.

    Attributes:
        max_retries: retries after the first attempt (0 = one attempt only).
        backoff_s: wait before the first retry; doubled before each further one.
        max_backoff_s: cap of one wait.
    """

    max_retries: int = 3
    backoff_s: float = 0.5
    max_backoff_s: float = 30.0

    def delays(self) -> list[float]:
        """The waits before each retry, e.g. ``[0.5, 1.0, 2.0]``."""
        return [min(self.backoff_s * 2**i, self.max_backoff_s) for i in range(self.max_retries)]


def call_with_retries(fn: Callable[[], T], policy: RetryPolicy, what: str) -> T:
    """Call ``fn``; on a :class:`TransientProviderError` wait and call again.

    Raises:
        TransientProviderError: the last failure once the retries are used up.
        ProviderError: any non-transient failure, at once.
    """
    delays = policy.delays()
    for attempt in range(len(delays) + 1):
        try:
            return fn()
        except TransientProviderError as exc:
            if attempt == len(delays):
                raise
            logger.warning(
                "%s failed (%s: %s); retry %d/%d in %.2f s",
                what,
                type(exc).__name__,
                exc,
                attempt + 1,
                len(delays),
                delays[attempt],
            )
            time.sleep(delays[attempt])
    raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover


def empty_actions() -> pd.DataFrame:
    """An empty corporate-actions frame (``symbol, date, dividend, split``)."""
    return pd.DataFrame(
        {
            "symbol": pd.Series([], dtype=object),
            "date": pd.Series([], dtype="datetime64[ns]"),
            "dividend": pd.Series([], dtype="float64"),
            "split": pd.Series([], dtype="float64"),
        }
    )


def _in_range(
    df: pd.DataFrame, column: str, start: date, end: date, keep_missing: bool = False
) -> pd.DataFrame:
    values = df[column]
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        # news timestamps are UTC instants; compare their UTC calendar date
        values = values.dt.tz_convert("UTC").dt.tz_localize(None)
    day = values.dt.normalize().to_numpy()
    mask = (day >= np.datetime64(start, "ns")) & (day <= np.datetime64(end, "ns"))
    if keep_missing:
        # an unparseable date is not out of range: validation quarantines the row
        mask |= np.isnat(day)
    if mask.all():
        return df
    return df[mask].reset_index(drop=True)


class Provider(ABC):
    """A source of daily bars. Subclasses implement ``_fetch_bars`` (and ``_fetch_news``).

    The public ``fetch_*`` methods add what every provider needs: retries, the bar schema,
    the inclusive ``[start, end]`` cut and the (symbol, date) order.
    """

    name: str = "provider"
    #: whether ``fetch_news`` can answer; providers without news raise ProviderError
    supports_news: bool = False

    def __init__(self, retry: RetryPolicy | None = None, timeout_s: float = 10.0) -> None:
        self.retry = retry or RetryPolicy()
        self.timeout_s = timeout_s

    def fetch_bars(self, symbol: str, start: date, end: date) -> pd.DataFrame:
        """Daily bars of ``symbol`` from ``start`` to ``end`` (both inclusive).

        Returns:
            DataFrame in the bar schema, sorted by date; empty when there are no sessions.

        Raises:
            UnknownSymbolError: the provider does not know the symbol.
            RateLimitError / TransientProviderError: still failing after the retries.
            ProviderError: any other failure (bad payload, HTTP 4xx).
            ValidationError: ``symbol`` is not a valid symbol.
        """
        check_symbol(symbol)
        raw = call_with_retries(
            lambda: self._fetch_bars(symbol, start, end), self.retry, f"{self.name} bars {symbol}"
        )
        bars = coerce_bars(raw) if len(raw) else coerce_bars(pd.DataFrame(columns=BAR_COLUMNS))
        bars = _in_range(bars, "date", start, end, keep_missing=True)
        if bars["date"].is_monotonic_increasing:
            return bars
        # stable: of two rows of one date, the provider's first stays first (and is kept)
        return bars.sort_values("date", kind="stable").reset_index(drop=True)

    def fetch_news(self, symbol: str, start: date, end: date) -> pd.DataFrame:
        """Headlines about ``symbol`` published from ``start`` to ``end`` (UTC dates, inclusive).

        Returns:
            DataFrame in NEWS_COLUMNS, ``published_at`` tz-aware UTC, oldest first.

        Raises:
            ProviderError: the provider serves no news (``supports_news`` is False) or failed.
            ValidationError: ``symbol`` is not a valid symbol.
        """
        check_symbol(symbol)
        if not self.supports_news:
            raise ProviderError(f"provider {self.name!r} serves no news")
        raw = call_with_retries(
            lambda: self._fetch_news(symbol, start, end), self.retry, f"{self.name} news {symbol}"
        )
        news = coerce_news(raw if len(raw) else pd.DataFrame(columns=NEWS_COLUMNS))
        news = _in_range(news, "published_at", start, end)
        return news.sort_values("published_at").reset_index(drop=True)

    def fetch_actions(self, symbol: str, start: date, end: date) -> pd.DataFrame:
        """Splits and dividends of ``symbol`` in ``[start, end]``.

        The store uses them to notice that adjusted history must be re-fetched. Providers
        that do not report actions return an empty frame.

        Returns:
            DataFrame ``symbol, date, dividend, split`` (split = new shares per old share,
            NaN where the row is a dividend only; dividend NaN where it is a split only).
        """
        return empty_actions()

    @abstractmethod
    def _fetch_bars(self, symbol: str, start: date, end: date) -> pd.DataFrame:
        """One attempt: a frame with the bar columns (any order, any row order)."""

    def _fetch_news(self, symbol: str, start: date, end: date) -> pd.DataFrame:
        raise ProviderError(f"provider {self.name!r} serves no news")  # pragma: no cover

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class FallbackProvider(Provider):
    """Try providers in order; the first that answers wins.

    A provider that fails (after its own retries) or does not know the symbol hands over to
    the next one. An empty answer (a holiday) is an answer and is returned as is.
    """

    name = "fallback"

    def __init__(self, providers: Sequence[Provider]) -> None:
        if not providers:
            raise ValueError("FallbackProvider needs at least one provider")
        super().__init__(retry=RetryPolicy(max_retries=0))
        self.providers = list(providers)
        self.supports_news = any(p.supports_news for p in self.providers)

    def fetch_bars(self, symbol: str, start: date, end: date) -> pd.DataFrame:
        """Bars from the first provider that answers; see :meth:`Provider.fetch_bars`.

        Raises:
            UnknownSymbolError: every provider said it does not know the symbol.
            AllProvidersFailedError: every provider failed; the message holds each reason.
            ValidationError: ``symbol`` is not a valid symbol (no provider is asked).
        """
        check_symbol(symbol)
        return self._first(lambda p: p.fetch_bars(symbol, start, end), self.providers, symbol)

    def fetch_news(self, symbol: str, start: date, end: date) -> pd.DataFrame:
        """News from the first provider with news that answers.

        Raises:
            ProviderError: no configured provider serves news.
            AllProvidersFailedError: every news provider failed.
            ValidationError: ``symbol`` is not a valid symbol (no provider is asked).
        """
        check_symbol(symbol)
        with_news = [p for p in self.providers if p.supports_news]
        if not with_news:
            names = [p.name for p in self.providers]
            raise ProviderError(f"none of the providers {names} serves news")
        return self._first(lambda p: p.fetch_news(symbol, start, end), with_news, symbol)

    def fetch_actions(self, symbol: str, start: date, end: date) -> pd.DataFrame:
        """Actions from the first provider that reports any (empty when none does)."""
        for provider in self.providers:
            try:
                actions = provider.fetch_actions(symbol, start, end)
            except (ProviderError, UnknownSymbolError) as exc:
                logger.warning("%s actions %s failed: %s", provider.name, symbol, exc)
                continue
            if len(actions):
                return actions
        return empty_actions()

    def _fetch_bars(self, symbol: str, start: date, end: date) -> pd.DataFrame:
        raise NotImplementedError  # pragma: no cover - fetch_bars is overridden

    @staticmethod
    def _first(
        call: Callable[[Provider], pd.DataFrame], providers: Sequence[Provider], symbol: str
    ) -> pd.DataFrame:
        reasons: list[str] = []
        unknown = 0
        for provider in providers:
            try:
                return call(provider)
            except UnknownSymbolError as exc:
                unknown += 1
                reasons.append(f"{provider.name}: {type(exc).__name__}: {exc}")
            except ProviderError as exc:
                reasons.append(f"{provider.name}: {type(exc).__name__}: {exc}")
            logger.warning("%s failed for %s, trying the next provider", provider.name, symbol)
        message = f"all providers failed for {symbol}: " + " | ".join(reasons)
        if unknown == len(providers):
            raise UnknownSymbolError(message)
        raise AllProvidersFailedError(message)
