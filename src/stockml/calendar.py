"""Trading days of the New York Stock Exchange (exchange-calendars' XNYS).

Training and the pipelines use this module; serving uses the bundle's precomputed
:class:`stockml.sessions.SessionTable`, which needs neither exchange-calendars nor pandas.
"""

from __future__ import annotations

import warnings
from datetime import date
from functools import cache

import pandas as pd

CALENDAR_NAME = "XNYS"


@cache
def _calendar():  # type: ignore[no-untyped-def]
    import exchange_calendars as xcals

    # exchange-calendars 4.x trips a pandas 3.1 deprecation while building its tables
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        return xcals.get_calendar(CALENDAR_NAME, start="1980-01-02")


def _ts(day: date | str | pd.Timestamp) -> pd.Timestamp:
    return pd.Timestamp(day).tz_localize(None).normalize()


def sessions(start: date | str | pd.Timestamp, end: date | str | pd.Timestamp) -> pd.DatetimeIndex:
    """NYSE sessions between ``start`` and ``end`` inclusive, as tz-naive midnight timestamps."""
    cal = _calendar()
    lo, hi = _ts(start), _ts(end)
    lo = max(lo, cal.first_session)
    hi = min(hi, cal.last_session)
    if lo > hi:
        return pd.DatetimeIndex([])
    return pd.DatetimeIndex(cal.sessions_in_range(lo, hi)).tz_localize(None)


def calendar_end() -> pd.Timestamp:
    """The last session exchange-calendars knows (about one year ahead of today)."""
    return pd.Timestamp(_calendar().last_session).tz_localize(None)


def is_session(day: date | str | pd.Timestamp) -> bool:
    """True when the NYSE traded on ``day``."""
    return bool(_calendar().is_session(_ts(day)))


def next_sessions(after: date | str | pd.Timestamp, n: int) -> pd.DatetimeIndex:
    """The ``n`` NYSE sessions strictly after ``after``."""
    day = _ts(after)
    end = day + pd.Timedelta(days=max(10, 2 * n + 10))
    out = sessions(day + pd.Timedelta(days=1), end)
    return out[:n]


def last_completed_session(now: pd.Timestamp | None = None) -> pd.Timestamp:
    """The latest session whose regular close (16:00 New York) is at or before ``now``."""
    now = pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now)
    if now.tzinfo is None:
        now = now.tz_localize("UTC")
    ny = now.tz_convert("America/New_York")
    day = ny.tz_localize(None).normalize()
    cal = _calendar()
    if cal.is_session(day):
        close = pd.Timestamp(cal.session_close(day)).tz_convert("America/New_York")
        if ny >= close:
            return day
    return pd.Timestamp(cal.date_to_session(day - pd.Timedelta(days=1), direction="previous"))


def session_closes(start: date | str | pd.Timestamp, end: date | str | pd.Timestamp) -> pd.Series:
    """Regular close (tz-aware UTC) of each NYSE session in ``[start, end]``, indexed by session.

    Half days close early (e.g. 13:00 New York on the day after Thanksgiving).
    """
    days = sessions(start, end)
    if len(days) == 0:
        return pd.Series([], dtype="datetime64[ns, UTC]", index=days)
    closes = _calendar().closes.loc[days[0] : days[-1]]
    values = pd.DatetimeIndex(closes.to_numpy())
    values = values.tz_localize("UTC") if values.tz is None else values.tz_convert("UTC")
    return pd.Series(values, index=days)
