"""The bundle's precomputed NYSE sessions: same answers as exchange-calendars, none built to
serve, and no pandas either."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stockml import calendar
from stockml.bundle import SESSIONS, read_bundle_dir
from stockml.errors import BundleError
from stockml.inference import Predictor
from stockml.sessions import SessionTable
from stockml.window import FeatureWindow
from utils.serving_bundle import FEATURES, BuiltBundle


def days(index: pd.DatetimeIndex) -> list:
    return [d.date() for d in index]


def test_session_table_answers_like_the_exchange_calendar() -> None:
    # GIVEN a table of 2019..the calendar's end, round-tripped through its JSON file
    table = SessionTable.from_json(SessionTable.build("2019-01-01").to_json())
    rng = np.random.default_rng(7)
    span = pd.date_range("2019-01-01", pd.Timestamp(table.end) - pd.Timedelta(days=40), freq="D")
    # WHEN both answer the same questions on random days (and times around the closes), the
    # table asked with plain dates and datetimes, the calendar with pandas Timestamps
    for day in (pd.Timestamp(d) for d in rng.choice(span, 120)):
        end = day + pd.Timedelta(days=int(rng.integers(0, 40)))
        # THEN the answers are identical
        assert table.sessions(day.date(), end.date()) == days(calendar.sessions(day, end))
        for n in (1, 7):
            assert table.next_sessions(day.date(), n) == days(calendar.next_sessions(day, n))
        for hour in (12, 17, 18, 20, 21, 23):
            now = (day + pd.Timedelta(hours=hour, minutes=30)).tz_localize("UTC")
            expected = calendar.last_completed_session(now).date()
            assert table.last_completed_session(now.to_pydatetime()) == expected


def test_session_table_knows_half_days() -> None:
    # GIVEN the table of 2024 (the day after Thanksgiving 2024-11-29 closed at 13:00 New York)
    table = SessionTable.build("2024-01-01", "2024-12-31")
    assert table.early_closes["2024-11-29"] == "13:00"
    # WHEN asked just before and just after that early close (18:00 UTC)
    before = table.last_completed_session(pd.Timestamp("2024-11-29 17:59", tz="UTC"))
    after = table.last_completed_session(pd.Timestamp("2024-11-29 18:00", tz="UTC"))
    # THEN the half day counts as completed only after 13:00, as exchange-calendars says
    assert before == date(2024, 11, 27) and after == date(2024, 11, 29)


def test_session_table_falls_back_past_its_span() -> None:
    # GIVEN a table of two months only
    table = SessionTable.build("2024-01-01", "2024-02-29")
    # WHEN asked about sessions that run past it, or start before it
    later = table.next_sessions("2024-02-27", 10)
    earlier = table.sessions("2023-12-20", "2024-01-10")
    # THEN the answers come from the full calendar
    assert later == days(calendar.next_sessions("2024-02-27", 10)) and len(later) == 10
    assert earlier == days(calendar.sessions("2023-12-20", "2024-01-10"))


def test_bundle_carries_verified_sessions(serving_bundle: BuiltBundle, tmp_path: Path) -> None:
    # GIVEN the test bundle (written like training writes it)
    bundle = read_bundle_dir(serving_bundle.folder)
    # THEN sessions.json is listed with its sha256 and covers the features' last date
    assert SESSIONS in bundle.manifest.files and bundle.sessions is not None
    last_days = serving_bundle.features.groupby("symbol")["date"].max()
    assert bundle.sessions.start <= last_days.min().date()
    assert last_days.max().date() <= bundle.sessions.end
    # WHEN its sessions.json is tampered with
    copy = tmp_path / "bundle"
    shutil.copytree(serving_bundle.folder, copy)
    raw = json.loads((copy / SESSIONS).read_text())
    raw["sessions"] = raw["sessions"][1:]
    (copy / SESSIONS).write_text(json.dumps(raw))
    # THEN the bundle is refused
    with pytest.raises(BundleError, match="sessions.json is corrupt"):
        read_bundle_dir(copy)


def test_predictor_dates_forecasts_without_building_the_calendar(
    serving_bundle: BuiltBundle, tmp_path: Path
) -> None:
    # GIVEN a fresh interpreter, the bundle and MSFT's feature window
    msft = serving_bundle.features[serving_bundle.features["symbol"] == "MSFT"]
    rows = tmp_path / "msft.npz"
    rows.write_bytes(FeatureWindow.from_frame(msft, FEATURES).to_bytes())
    code = textwrap.dedent(
        f"""
        import json, sys
        from pathlib import Path
        from stockml.bundle import read_bundle_dir
        from stockml.inference import Predictor
        from stockml.window import FeatureWindow
        predictor = Predictor(read_bundle_dir(Path({str(serving_bundle.folder)!r})))
        window = FeatureWindow.from_bytes(Path({str(rows)!r}).read_bytes())
        forecast = predictor.predict(window, days=5)
        print(json.dumps({{
            "dates": [d.isoformat() for d in forecast.dates],
            "imported": [m for m in ("exchange_calendars", "pandas") if m in sys.modules],
        }}))
        """
    )
    # WHEN it loads the bundle and forecasts 5 days
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    # THEN neither exchange-calendars nor pandas was imported, and the dates are the
    # exchange calendar's sessions all the same
    assert result["imported"] == []
    expected = calendar.next_sessions(msft["date"].max(), 5)
    assert result["dates"] == [d.date().isoformat() for d in expected]


def test_bundle_without_sessions_uses_the_calendar(
    serving_bundle: BuiltBundle, tmp_path: Path
) -> None:
    # GIVEN a bundle written before sessions.json existed
    old = tmp_path / "bundle"
    shutil.copytree(serving_bundle.folder, old)
    (old / SESSIONS).unlink()
    manifest = json.loads((old / "manifest.json").read_text())
    del manifest["files"][SESSIONS]
    (old / "manifest.json").write_text(json.dumps(manifest))
    msft = serving_bundle.features[serving_bundle.features["symbol"] == "MSFT"]
    # WHEN a predictor forecasts from it
    predictor = Predictor(read_bundle_dir(old))
    forecast = predictor.predict(FeatureWindow.from_frame(msft, FEATURES), days=3)
    # THEN it still loads, with a table built from exchange-calendars, and dates the forecast
    assert predictor.calendar.end == calendar.calendar_end().date()
    expected = calendar.next_sessions(msft["date"].max(), 3)
    assert list(forecast.dates) == days(expected)
