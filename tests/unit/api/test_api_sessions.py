"""The bundle's precomputed NYSE sessions: same answers as exchange-calendars, none built to serve."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stockml import calendar
from stockml.bundle import SESSIONS, read_bundle_dir
from stockml.calendar import SessionTable
from stockml.errors import BundleError
from stockml.inference import Predictor
from utils.serving_bundle import BuiltBundle


def test_session_table_answers_like_the_exchange_calendar() -> None:
    # GIVEN a table of 2019..the calendar's end, round-tripped through its JSON file
    table = SessionTable.from_json(SessionTable.build("2019-01-01").to_json())
    rng = np.random.default_rng(7)
    days = pd.date_range("2019-01-01", table.end - pd.Timedelta(days=40), freq="D")
    # WHEN both answer the same questions on random days (and times around the closes)
    for day in (pd.Timestamp(d) for d in rng.choice(days, 120)):
        end = day + pd.Timedelta(days=int(rng.integers(0, 40)))
        # THEN the answers are identical
        assert table.sessions(day, end).equals(calendar.sessions(day, end))
        for n in (1, 7):
            assert table.next_sessions(day, n).equals(calendar.next_sessions(day, n))
        for hour in (12, 17, 18, 20, 21, 23):
            now = (day + pd.Timedelta(hours=hour, minutes=30)).tz_localize("UTC")
            assert table.last_completed_session(now) == calendar.last_completed_session(now)


def test_session_table_knows_half_days() -> None:
    # GIVEN the table of 2024 (the day after Thanksgiving 2024-11-29 closed at 13:00 New York)
    table = SessionTable.build("2024-01-01", "2024-12-31")
    assert table.early_closes["2024-11-29"] == "13:00"
    # WHEN asked just before and just after that early close (18:00 UTC)
    before = table.last_completed_session(pd.Timestamp("2024-11-29 17:59", tz="UTC"))
    after = table.last_completed_session(pd.Timestamp("2024-11-29 18:00", tz="UTC"))
    # THEN the half day counts as completed only after 13:00, as exchange-calendars says
    assert before == pd.Timestamp("2024-11-27") and after == pd.Timestamp("2024-11-29")


def test_session_table_falls_back_past_its_span() -> None:
    # GIVEN a table of two months only
    table = SessionTable.build("2024-01-01", "2024-02-29")
    # WHEN asked about sessions that run past it, or start before it
    later = table.next_sessions("2024-02-27", 10)
    earlier = table.sessions("2023-12-20", "2024-01-10")
    # THEN the answers come from the full calendar
    assert later.equals(calendar.next_sessions("2024-02-27", 10)) and len(later) == 10
    assert earlier.equals(calendar.sessions("2023-12-20", "2024-01-10"))


def test_bundle_carries_verified_sessions(serving_bundle: BuiltBundle, tmp_path: Path) -> None:
    # GIVEN the test bundle (written like training writes it)
    bundle = read_bundle_dir(serving_bundle.folder)
    # THEN sessions.json is listed with its sha256 and covers the features' last date
    assert SESSIONS in bundle.manifest.files and bundle.sessions is not None
    last_days = serving_bundle.features.groupby("symbol")["date"].max()
    assert bundle.sessions.start <= last_days.min() and last_days.max() <= bundle.sessions.end
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
    # GIVEN a fresh interpreter, the bundle and MSFT's stored features
    msft = serving_bundle.features[serving_bundle.features["symbol"] == "MSFT"]
    rows = tmp_path / "msft.parquet"
    msft.reset_index(drop=True).to_parquet(rows)
    code = textwrap.dedent(
        f"""
        import json, sys
        import pandas as pd
        from pathlib import Path
        from stockml.bundle import read_bundle_dir
        from stockml.inference import Predictor
        predictor = Predictor(read_bundle_dir(Path({str(serving_bundle.folder)!r})))
        forecast = predictor.predict(pd.read_parquet({str(rows)!r}), days=5)
        print(json.dumps({{
            "dates": [d.isoformat() for d in forecast.dates],
            "exchange_calendars": "exchange_calendars" in sys.modules,
        }}))
        """
    )
    # WHEN it loads the bundle and forecasts 5 days
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    # THEN exchange-calendars was never imported, and the dates are its sessions all the same
    assert result["exchange_calendars"] is False
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
    forecast = predictor.predict(msft.tail(predictor.rows_needed), days=3)
    # THEN it still loads, and dates the forecast with exchange-calendars
    assert predictor.calendar is calendar
    expected = calendar.next_sessions(msft["date"].max(), 3)
    assert [pd.Timestamp(d) for d in forecast.dates] == list(expected)
