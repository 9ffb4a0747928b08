"""Polygon (polygon-api-client, the real client) against a local server replaying answers."""

from __future__ import annotations

import json
import time
from datetime import date

import pandas as pd
import pytest

from stockml.calendar import is_session
from stockml.errors import ConfigError, ProviderError, RateLimitError, TransientProviderError
from stockml.providers.base import RetryPolicy
from stockml.providers.polygon import PolygonProvider
from stockml.schemas import validate_bars
from utils.provider_data import FAST_RETRY, own_json
from utils.replay_server import Reply

AGGS = r"/v2/aggs/ticker/{}/range/1/day/.*"


def _provider(replay, **kwargs) -> PolygonProvider:
    kwargs.setdefault("retry", FAST_RETRY)
    return PolygonProvider("test-key", base_url=replay.url, **kwargs)


def _scaled(payload: dict, factor: float) -> dict:
    """The same answer with prices times ``factor`` (raw = adjusted x split ratio)."""
    out = json.loads(json.dumps(payload))
    out["adjusted"] = False
    for bar in out["results"]:
        for key in ("o", "h", "l", "c"):
            bar[key] = bar[key] * factor
    return out


def test_midnight_new_york_stamps_map_to_exchange_dates(replay):
    # GIVEN our own MSFT aggs (t = New York midnight in ms) across the 2017-03-12 DST change
    payload = own_json("polygon_aggs_MSFT_2017-02-13_2017-03-15.json")
    replay.add(AGGS.format("MSFT"), Reply.json(payload))
    hours = {pd.Timestamp(b["t"], unit="ms", tz="UTC").hour for b in payload["results"]}
    assert hours == {4, 5}

    # WHEN
    bars = _provider(replay).fetch_bars("MSFT", date(2017, 2, 13), date(2017, 3, 15))

    # THEN each date is the New York calendar date, a session, and the bars are valid
    expected = [
        pd.Timestamp(b["t"], unit="ms", tz="UTC").tz_convert("America/New_York").date()
        for b in payload["results"]
    ]
    assert [d.date() for d in bars["date"]] == expected
    assert bars["date"].map(is_session).all()
    assert len(validate_bars(bars).rejected) == 0


def test_raw_and_adjusted_calls_fill_close_and_adj_close(replay):
    # GIVEN adjusted=true and adjusted=false answers that differ by a 2:1 factor
    adjusted = own_json("polygon_aggs_MSFT_2017-02-13_2017-03-15.json")
    replay.add(AGGS.format("MSFT"), Reply.json(adjusted), adjusted="true")
    replay.add(AGGS.format("MSFT"), Reply.json(_scaled(adjusted, 2.0)), adjusted="false")

    # WHEN
    bars = _provider(replay).fetch_bars("MSFT", date(2017, 2, 13), date(2017, 3, 15))

    # THEN OHLC and close come from the raw call, adj_close from the adjusted one
    assert bars["adj_close"].tolist() == pytest.approx([b["c"] for b in adjusted["results"]])
    assert bars["close"].tolist() == pytest.approx([2 * b["c"] for b in adjusted["results"]])
    assert bars["open"].tolist() == pytest.approx([2 * b["o"] for b in adjusted["results"]])


def test_holiday_answer_without_results_is_empty(replay):
    # GIVEN Polygon's answer for a range without sessions (no ``results`` key)
    replay.add(
        AGGS.format("MSFT"),
        Reply.json(
            {"ticker": "MSFT", "queryCount": 0, "resultsCount": 0, "adjusted": True, "status": "OK"}
        ),
    )

    # WHEN / THEN
    assert _provider(replay).fetch_bars("MSFT", date(2024, 7, 4), date(2024, 7, 4)).empty


def test_429_then_success_is_retried(replay):
    # GIVEN 429 once, then the data (for both the raw and the adjusted call)
    payload = own_json("polygon_aggs_MSFT_2017-02-13_2017-03-15.json")
    route = replay.add(
        AGGS.format("MSFT"), Reply.json({"status": "ERROR"}, status=429), Reply.json(payload)
    )

    # WHEN
    bars = _provider(replay).fetch_bars("MSFT", date(2017, 2, 13), date(2017, 3, 15))

    # THEN the retry got the bars
    assert route.hits == 3
    assert len(bars) == len(payload["results"])


@pytest.mark.parametrize(
    ("status", "error"), [(429, RateLimitError), (503, TransientProviderError)]
)
def test_persistent_failure_raises_after_the_retries(replay, status, error):
    # GIVEN a server that always fails with ``status``
    route = replay.add(AGGS.format("MSFT"), Reply.json({"status": "ERROR"}, status=status))

    # WHEN / THEN the classified error surfaces after 1 + max_retries attempts
    with pytest.raises(error):
        _provider(replay).fetch_bars("MSFT", date(2017, 2, 13), date(2017, 3, 15))
    assert route.hits == 1 + FAST_RETRY.max_retries


def test_auth_failure_is_not_retried(replay):
    # GIVEN a 401 (bad key): retrying cannot help
    route = replay.add(
        AGGS.format("MSFT"), Reply.json({"status": "ERROR", "error": "Unknown API Key"}, status=401)
    )

    # WHEN / THEN
    with pytest.raises(ProviderError, match="Unknown API Key") as info:
        _provider(replay).fetch_bars("MSFT", date(2017, 2, 13), date(2017, 3, 15))
    assert not isinstance(info.value, TransientProviderError)
    assert route.hits == 1


def test_read_timeout_is_applied_and_transient(replay):
    # GIVEN a server slower than the timeout
    replay.add(AGGS.format("MSFT"), Reply.json({}, delay_s=1.0))

    # WHEN / THEN
    started = time.monotonic()
    with pytest.raises(TransientProviderError, match="timed out"):
        _provider(replay, retry=RetryPolicy(max_retries=0), timeout_s=0.2).fetch_bars(
            "MSFT", date(2017, 2, 13), date(2017, 3, 15)
        )
    assert time.monotonic() - started < 1.0


def test_missing_key_is_a_config_error():
    # GIVEN / WHEN / THEN
    with pytest.raises(ConfigError, match="POLYGON_API_KEY"):
        PolygonProvider(None)


def test_news_pages_are_followed_and_published_at_is_utc(replay):
    # GIVEN two news pages linked by next_url (which names Polygon's real host)
    replay.add(
        r"/v2/reference/news", Reply.json(own_json("polygon_news_MSFT_page1.json")), ticker="MSFT"
    )
    replay.add(
        r"/v2/reference/news", Reply.json(own_json("polygon_news_MSFT_page2.json")), cursor="page2"
    )

    # WHEN
    news = _provider(replay).fetch_news("MSFT", date(2017, 3, 1), date(2017, 3, 2))

    # THEN both pages, in the news schema, times in UTC (-05:00 converted)
    assert news["title"].tolist() == ["Hand-made headline one", "Hand-made headline two"]
    assert str(news["published_at"].dt.tz) == "UTC"
    assert news["published_at"].tolist() == [
        pd.Timestamp("2017-03-01 21:30", tz="UTC"),
        pd.Timestamp("2017-03-02 19:30", tz="UTC"),
    ]
    assert news["url"].tolist() == ["https://example.org/news/1", "https://example.org/news/2"]


# --- real recorded answers (polygon-io/client-python mocks, ../shared/data) ---------------


@pytest.mark.shared_data
def test_recorded_aggs_dst_2005(replay, shared_data):
    # GIVEN the recorded adjusted AAPL aggs: 2005-04-01 at 05:00Z (EST), 2005-04-04 at 04:00Z
    # (EDT). No raw answer was recorded: it is derived with the 2020 4:1 factor (1.4604 x 4
    # = 5.8416, Yahoo's close of that day); the test checks that each call fills its column
    recorded = json.loads(
        (
            shared_data
            / "api_payloads/polygon/v2_aggs_ticker_AAPL_range_1_day_2005-04-01_2005-04-04.json"
        ).read_text()
    )
    replay.add(AGGS.format("AAPL"), Reply.json(recorded), adjusted="true")
    replay.add(AGGS.format("AAPL"), Reply.json(_scaled(recorded, 4.0)), adjusted="false")

    # WHEN
    bars = _provider(replay).fetch_bars("AAPL", date(2005, 4, 1), date(2005, 4, 4))

    # THEN the dates are the exchange dates, not the UTC ones of a naive conversion
    assert bars["date"].tolist() == [pd.Timestamp("2005-04-01"), pd.Timestamp("2005-04-04")]
    assert bars["adj_close"].tolist() == pytest.approx([1.4604, 1.4675])
    assert bars["close"].tolist() == pytest.approx([5.8416, 5.87])
    assert bars["volume"].tolist() == [642646396.0, 578172308.0]


@pytest.mark.shared_data
def test_recorded_news_nflx(replay, shared_data):
    # GIVEN the recorded NFLX news answer
    body = (shared_data / "api_payloads/polygon/v2_reference_news_NFLX.json").read_bytes()
    replay.add(r"/v2/reference/news", Reply(body), ticker="NFLX")
    recorded = json.loads(body)["results"]

    # WHEN
    news = _provider(replay).fetch_news("NFLX", date(2022, 1, 1), date(2022, 12, 31))

    # THEN mapped to NEWS_COLUMNS with UTC timestamps
    assert list(news.columns) == ["symbol", "published_at", "title", "summary", "url", "source"]
    assert len(news) == len(recorded)
    assert news["published_at"].iloc[0] == pd.Timestamp(recorded[0]["published_utc"])
    assert str(news["published_at"].dt.tz) == "UTC"
    assert news["title"].iloc[0] == recorded[0]["title"]
    assert news["summary"].iloc[0] == recorded[0]["description"]
    assert news["url"].iloc[0] == recorded[0]["article_url"]
