"""Trading days of the New York Stock Exchange (exchange-calendars' XNYS)."""

from __future__ import annotations

import json
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


_REGULAR_CLOSE = "16:00"
_NEW_YORK = "America/New_York"


class SessionTable:
    """NYSE sessions of a fixed span, precomputed: answers without exchange-calendars.

    Training stores one in the serving bundle (``sessions.json``) so that the API never
    builds the exchange-calendars calendar (~1 s of a Lambda cold start). A question that
    runs past the span falls back to this module's functions (which build it lazily).

    Args:
        start: first day of the span (need not be a session).
        end: last day of the span (need not be a session).
        sessions: every NYSE session in ``[start, end]``, ISO dates.
        early_closes: ``{ISO date: "HH:MM"}`` New York close of the sessions not closing
            at 16:00 (half days).
    """

    def __init__(
        self, start: str, end: str, sessions: list[str], early_closes: dict[str, str]
    ) -> None:
        self.start = _ts(start)
        self.end = _ts(end)
        self.days = pd.DatetimeIndex(sorted(sessions), dtype="datetime64[ns]")
        self.early_closes = dict(early_closes)

    @classmethod
    def build(
        cls, start: date | str | pd.Timestamp, end: date | str | pd.Timestamp | None = None
    ) -> SessionTable:
        """Precompute the span ``[start, end]`` (default end: the calendar's last session,
        about one year ahead) with exchange-calendars."""
        cal = _calendar()
        hi = cal.last_session if end is None else min(_ts(end), cal.last_session)
        days = sessions(start, hi)
        closes = session_closes(start, hi).dt.tz_convert(_NEW_YORK).dt.strftime("%H:%M")
        return cls(
            start=_ts(start).date().isoformat(),
            end=_ts(hi).date().isoformat(),
            sessions=[d.date().isoformat() for d in days],
            early_closes={
                d.date().isoformat(): hm for d, hm in closes.items() if hm != _REGULAR_CLOSE
            },
        )

    def to_json(self) -> str:
        return json.dumps(
            {
                "calendar": CALENDAR_NAME,
                "start": self.start.date().isoformat(),
                "end": self.end.date().isoformat(),
                "sessions": [d.date().isoformat() for d in self.days],
                "early_closes": self.early_closes,
            },
            indent=1,
        )

    @classmethod
    def from_json(cls, text: str) -> SessionTable:
        raw = json.loads(text)
        if raw.get("calendar", CALENDAR_NAME) != CALENDAR_NAME:
            raise ValueError(f"sessions of calendar {raw['calendar']}, not {CALENDAR_NAME}")
        return cls(raw["start"], raw["end"], raw["sessions"], raw["early_closes"])

    def sessions(
        self, start: date | str | pd.Timestamp, end: date | str | pd.Timestamp
    ) -> pd.DatetimeIndex:
        """As the module's :func:`sessions`."""
        lo, hi = _ts(start), _ts(end)
        if lo < self.start or hi > self.end:
            return sessions(lo, hi)
        return self.days[self.days.searchsorted(lo) : self.days.searchsorted(hi, side="right")]

    def next_sessions(self, after: date | str | pd.Timestamp, n: int) -> pd.DatetimeIndex:
        """As the module's :func:`next_sessions`."""
        day = _ts(after)
        i = self.days.searchsorted(day, side="right")
        if day < self.start or i + n > len(self.days):
            return next_sessions(day, n)
        return self.days[i : i + n]

    def last_completed_session(self, now: pd.Timestamp | None = None) -> pd.Timestamp:
        """As the module's :func:`last_completed_session`."""
        now = pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now)
        if now.tzinfo is None:
            now = now.tz_localize("UTC")
        ny = now.tz_convert(_NEW_YORK)
        day = ny.tz_localize(None).normalize()
        i = self.days.searchsorted(day)  # sessions before ``day``: days[:i]
        if day > self.end or i == 0:
            return last_completed_session(now)
        if i < len(self.days) and self.days[i] == day:
            hm = self.early_closes.get(day.date().isoformat(), _REGULAR_CLOSE)
            if ny >= pd.Timestamp(f"{day.date().isoformat()} {hm}").tz_localize(_NEW_YORK):
                return day
        return self.days[i - 1]
