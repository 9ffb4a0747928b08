"""NYSE sessions of a fixed span, precomputed at training time: serving's trading calendar.

Training stores a :class:`SessionTable` in the serving bundle (``sessions.json``) so that the
API dates its forecasts without building the exchange-calendars calendar (~1 s) and without
pandas (~0.35 s of a Lambda cold start): numpy dates and the standard library's zoneinfo.
A question that runs past the table's span falls back to :mod:`stockml.calendar` (imported
then, with pandas and exchange-calendars).
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

CALENDAR_NAME = "XNYS"
REGULAR_CLOSE = "16:00"
NEW_YORK = ZoneInfo("America/New_York")

Day = date | datetime | str | np.datetime64


def to_day(value: Day) -> date:
    """The calendar day of ``value`` (a datetime's own wall-clock day; time zone dropped)."""
    if isinstance(value, datetime):  # pandas Timestamps too
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, np.datetime64):
        return value.astype("datetime64[D]").astype(date)  # type: ignore[no-any-return]
    return date.fromisoformat(str(value)[:10])


def _dates(values: Any) -> list[date]:
    return [to_day(v) for v in values]


class SessionTable:
    """Every NYSE session of ``[start, end]``, with the sessions that close early.

    Args:
        start: first day of the span (need not be a session), ISO.
        end: last day of the span (need not be a session), ISO.
        sessions: every NYSE session in ``[start, end]``, ISO dates.
        early_closes: ``{ISO date: "HH:MM"}`` New York close of the sessions not closing
            at 16:00 (half days).
    """

    def __init__(
        self, start: str, end: str, sessions: list[str], early_closes: dict[str, str]
    ) -> None:
        self.start = to_day(start)
        self.end = to_day(end)
        self.days = np.array(sorted(sessions), dtype="datetime64[D]")
        self.early_closes = dict(early_closes)

    @classmethod
    def build(cls, start: Day, end: Day | None = None) -> SessionTable:
        """Precompute ``[start, end]`` (default end: the last session exchange-calendars
        knows, about one year ahead) with exchange-calendars (training side)."""
        from stockml import calendar

        hi = calendar.calendar_end().date()
        hi = hi if end is None else min(to_day(end), hi)
        lo = to_day(start)
        days = calendar.sessions(lo, hi)
        closes = calendar.session_closes(lo, hi).dt.tz_convert(NEW_YORK).dt.strftime("%H:%M")
        return cls(
            start=lo.isoformat(),
            end=hi.isoformat(),
            sessions=[d.date().isoformat() for d in days],
            early_closes={
                d.date().isoformat(): hm for d, hm in closes.items() if hm != REGULAR_CLOSE
            },
        )

    def to_json(self) -> str:
        return json.dumps(
            {
                "calendar": CALENDAR_NAME,
                "start": self.start.isoformat(),
                "end": self.end.isoformat(),
                "sessions": [str(d) for d in self.days],
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

    def sessions(self, start: Day, end: Day) -> list[date]:
        """NYSE sessions between ``start`` and ``end`` inclusive."""
        lo, hi = to_day(start), to_day(end)
        if lo < self.start or hi > self.end:
            from stockml import calendar

            return _dates(calendar.sessions(lo, hi))
        i = np.searchsorted(self.days, np.datetime64(lo, "D"), side="left")
        j = np.searchsorted(self.days, np.datetime64(hi, "D"), side="right")
        return _dates(self.days[i:j])

    def next_sessions(self, after: Day, n: int) -> list[date]:
        """The ``n`` NYSE sessions strictly after ``after``."""
        day = to_day(after)
        i = int(np.searchsorted(self.days, np.datetime64(day, "D"), side="right"))
        if day < self.start or i + n > len(self.days):
            from stockml import calendar

            return _dates(calendar.next_sessions(day, n))
        return _dates(self.days[i : i + n])

    def last_completed_session(self, now: datetime | None = None) -> date:
        """The latest session whose close (16:00 New York, earlier on half days) is at or
        before ``now`` (default: the current time; a naive ``now`` is UTC)."""
        now = datetime.now(UTC) if now is None else now
        if now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
        ny = now.astimezone(NEW_YORK)
        day = ny.date()
        i = int(np.searchsorted(self.days, np.datetime64(day, "D")))  # sessions before day
        if day > self.end or i == 0:
            from stockml import calendar

            return to_day(calendar.last_completed_session(now))
        if i < len(self.days) and self.days[i] == np.datetime64(day, "D"):
            hh, mm = self.early_closes.get(day.isoformat(), REGULAR_CLOSE).split(":")
            if ny >= datetime.combine(day, time(int(hh), int(mm)), tzinfo=NEW_YORK):
                return day
        return to_day(self.days[i - 1])
