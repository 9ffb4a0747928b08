"""Yahoo (yfinance 1.7, the real client) against a local server replaying chart answers."""

from __future__ import annotations

import json
import time
from datetime import date

import pandas as pd
import pytest

from stockml.calendar import is_session
from stockml.errors import RateLimitError, TransientProviderError, UnknownSymbolError
from stockml.providers.base import RetryPolicy
from stockml.providers.yahoo import YahooProvider
from stockml.schemas import validate_bars
from utils.provider_data import FAST_RETRY, OWN, own_json
from utils.replay_server import Reply, recorded_yahoo_body

CHART = r"/v8/finance/chart/{}"
# yfinance keeps successful answers in an in-process cache keyed by URL: tests that script
# failures use a symbol of their own so that no earlier test's answer is reused


def _provider(replay, **kwargs) -> YahooProvider:
    kwargs.setdefault("retry", FAST_RETRY)
    return YahooProvider(base_url=replay.url, **kwargs)


def test_open_stamped_bars_map_to_new_york_dates_across_dst(replay):
    # GIVEN our own MSFT chart answer: bars stamped at the open, 14:30Z before and 13:30Z
    # after the 2017-03-12 DST change
    payload = own_json("yahoo_chart_MSFT_2017-02-13_2017-03-15.json")
    replay.add(CHART.format("MSFT"), Reply.json(payload))
    stamps = pd.to_datetime(payload["chart"]["result"][0]["timestamp"], unit="s", utc=True)
    assert {t.strftime("%H:%M") for t in stamps} == {"14:30", "13:30"}

    # WHEN the real yfinance client fetches through the provider
    bars = _provider(replay).fetch_bars("MSFT", date(2017, 2, 13), date(2017, 3, 15))

    # THEN every bar carries the New York date of its stamp, all are sessions, all valid
    expected = stamps.tz_convert("America/New_York").tz_localize(None).normalize()
    assert list(bars["date"]) == list(expected)
    assert all(is_session(d) for d in bars["date"])
    assert len(validate_bars(bars).rejected) == 0
    quote = payload["chart"]["result"][0]["indicators"]
    assert bars["close"].tolist() == pytest.approx(quote["quote"][0]["close"])
    assert bars["adj_close"].tolist() == pytest.approx(quote["adjclose"][0]["adjclose"])
    assert (bars["source"] == "yfinance").all()


def test_start_and_end_are_inclusive(replay):
    # GIVEN the same answer (Yahoo may send more than asked)
    replay.add(
        CHART.format("MSFT"), Reply.json(own_json("yahoo_chart_MSFT_2017-02-13_2017-03-15.json"))
    )

    # WHEN a sub-range is asked for
    bars = _provider(replay).fetch_bars("MSFT", date(2017, 3, 1), date(2017, 3, 3))

    # THEN exactly the three sessions 1, 2 and 3 March come back
    assert [d.day for d in bars["date"]] == [1, 2, 3]


def test_dividend_event_is_exposed_as_an_action(replay):
    # GIVEN our own MSFT answer with a 0.39 dividend on 2017-02-14 in ``events``
    replay.add(
        CHART.format("MSFT"), Reply.json(own_json("yahoo_chart_MSFT_2017-02-13_2017-03-15.json"))
    )

    # WHEN the actions are fetched
    actions = _provider(replay).fetch_actions("MSFT", date(2017, 2, 13), date(2017, 3, 15))

    # THEN the dividend is there, on its New York date
    assert actions["date"].tolist() == [pd.Timestamp("2017-02-14")]
    assert actions["dividend"].tolist() == [pytest.approx(0.39)]
    assert actions["split"].isna().all()


def test_weekend_answer_without_timestamps_is_an_empty_frame(replay):
    # GIVEN our own empty answer (no ``timestamp``, ``quote: [{}]``)
    replay.add(CHART.format("MSFT"), Reply.json(own_json("yahoo_chart_MSFT_weekend_empty.json")))

    # WHEN a weekend is asked for
    bars = _provider(replay).fetch_bars("MSFT", date(2017, 3, 11), date(2017, 3, 12))

    # THEN an empty frame with the bar columns comes back, not an error
    assert bars.empty
    assert list(bars.columns) == list(validate_bars(bars).valid.columns)


def test_5xx_then_success_is_retried(replay):
    # GIVEN a server that answers 503, then 502, then the data
    payload = own_json("yahoo_chart_MSFT_2017-02-13_2017-03-15.json")
    route = replay.add(
        CHART.format("FLAKY"),
        Reply.json({}, status=503),
        Reply.json({}, status=502),
        Reply.json(payload),
    )

    # WHEN fetching with two retries allowed
    bars = _provider(replay).fetch_bars("FLAKY", date(2017, 2, 13), date(2017, 3, 15))

    # THEN the third attempt wins
    assert route.hits >= 3
    assert len(bars) == len(payload["chart"]["result"][0]["timestamp"])


def test_429_everywhere_raises_rate_limit_after_the_retries(replay):
    # GIVEN a server that always answers 429
    route = replay.add(
        CHART.format("BUSY"), Reply(b"Too Many Requests", status=429, content_type="text/plain")
    )

    # WHEN / THEN the rate-limit error surfaces once the retries are used up
    with pytest.raises(RateLimitError):
        _provider(replay).fetch_bars("BUSY", date(2017, 2, 13), date(2017, 3, 15))
    assert route.hits == 1 + FAST_RETRY.max_retries


def test_timeout_is_transient(replay):
    # GIVEN a server slower than the provider's timeout for the bars (yfinance's time-zone
    # lookup, ``range=1d``, answers at once)
    payload = own_json("yahoo_chart_MSFT_2017-02-13_2017-03-15.json")
    replay.add(CHART.format("SLOW"), Reply.json(payload, delay_s=1.0))
    replay.add(CHART.format("SLOW"), Reply.json(payload), range="1d")

    # WHEN / THEN the timeout surfaces as a transient error, quickly
    started = time.monotonic()
    with pytest.raises(TransientProviderError, match="Timeout"):
        _provider(replay, retry=RetryPolicy(max_retries=0), timeout_s=0.2).fetch_bars(
            "SLOW", date(2017, 2, 13), date(2017, 3, 15)
        )
    assert time.monotonic() - started < 3


def test_404_is_an_unknown_symbol(replay):
    # GIVEN Yahoo's answer for a symbol it does not know
    body = {
        "chart": {
            "result": None,
            "error": {"code": "Not Found", "description": "No data found, symbol may be delisted"},
        }
    }
    replay.add(CHART.format("NOPE"), Reply.json(body, status=404))

    # WHEN / THEN
    with pytest.raises(UnknownSymbolError):
        _provider(replay).fetch_bars("NOPE", date(2017, 2, 13), date(2017, 3, 15))


# --- real recorded answers (node-yahoo-finance2 fixtures, ../shared/data) -----------------


def _recorded(shared_data, name: str) -> dict:
    return recorded_yahoo_body(shared_data / "api_payloads" / "yahoo_chart" / name)


@pytest.mark.shared_data
def test_recorded_nvda_split_and_dates(replay, shared_data):
    # GIVEN Yahoo's real NVDA answer 2021-02-01..2022-01-31 with a 4:1 split on 2021-07-20
    body = _recorded(
        shared_data, "historical-via-chart-NVDA-split-2021-02-01-to-2022-01-31.csv.json"
    )
    replay.add(CHART.format("NVDA"), Reply.json(body))
    provider = _provider(replay)

    # WHEN bars and actions are fetched
    bars = provider.fetch_bars("NVDA", date(2021, 2, 1), date(2022, 1, 31))
    actions = provider.fetch_actions("NVDA", date(2021, 2, 1), date(2022, 1, 31))

    # THEN 252 sessions, each the New York date of its 13:30Z/14:30Z stamp, and the split
    stamps = pd.to_datetime(body["chart"]["result"][0]["timestamp"], unit="s", utc=True)
    assert len(bars) == len(stamps) == 252
    assert list(bars["date"]) == list(
        stamps.tz_convert("America/New_York").tz_localize(None).normalize()
    )
    assert all(is_session(d) for d in bars["date"])
    splits = actions.dropna(subset=["split"])
    assert splits["date"].tolist() == [pd.Timestamp("2021-07-20")]
    assert splits["split"].tolist() == [4.0]
    assert len(validate_bars(bars).rejected) == 0


@pytest.mark.shared_data
def test_recorded_msft_dividends(replay, shared_data):
    # GIVEN Yahoo's real MSFT answer with its dividends in ``events``
    body = _recorded(
        shared_data, "historical-via-chart-MSFT-dividends-2021-02-01-to-2022-01-31.csv.json"
    )
    replay.add(CHART.format("MSFT"), Reply.json(body))
    events = body["chart"]["result"][0]["events"]["dividends"].values()
    expected = sorted(
        (
            pd.Timestamp(e["date"], unit="s", tz="UTC")
            .tz_convert("America/New_York")
            .tz_localize(None)
            .normalize(),
            e["amount"],
        )
        for e in events
    )

    # WHEN the actions are fetched
    actions = _provider(replay).fetch_actions("MSFT", date(2021, 2, 1), date(2022, 1, 31))

    # THEN the four dividends come back on their exchange dates with their amounts
    got = list(zip(actions["date"], actions["dividend"], strict=True))
    assert len(got) == len(expected) == 4
    assert [d for d, _ in got] == [d for d, _ in expected]
    assert [a for _, a in got] == pytest.approx([a for _, a in expected])


@pytest.mark.shared_data
def test_recorded_one_bar_answer_is_the_first_session_of_2020(replay, shared_data):
    # GIVEN the real one-bar AAPL answer for 2020-01-01..2020-01-03 (stamp 2020-01-02 14:30Z)
    body = _recorded(shared_data, "chart-AAPL-2020-01-01-to-2020-01-03.json")
    replay.add(CHART.format("AAPL"), Reply.json(body))

    # WHEN
    bars = _provider(replay).fetch_bars("AAPL", date(2020, 1, 1), date(2020, 1, 3))

    # THEN one bar dated 2020-01-02 with close and adjclose kept apart
    quote = body["chart"]["result"][0]["indicators"]
    assert bars["date"].tolist() == [pd.Timestamp("2020-01-02")]
    assert bars["close"].iloc[0] == pytest.approx(quote["quote"][0]["close"][0])
    assert bars["adj_close"].iloc[0] == pytest.approx(quote["adjclose"][0]["adjclose"][0])
    assert bars["adj_close"].iloc[0] < bars["close"].iloc[0]


@pytest.mark.shared_data
def test_recorded_weekend_answer_is_empty(replay, shared_data):
    # GIVEN the real answer for the weekend 2025-02-01/02 (no timestamps)
    body = _recorded(
        shared_data, "chart-AAPL-2025-02-01-to-2025-02-02-includePrePost-false-interval-1m.json"
    )
    assert "timestamp" not in body["chart"]["result"][0]
    replay.add(CHART.format("AAPL"), Reply.json(body))

    # WHEN / THEN an empty frame
    assert _provider(replay).fetch_bars("AAPL", date(2025, 2, 1), date(2025, 2, 2)).empty


@pytest.mark.shared_data
def test_recorded_full_tsla_history_is_all_sessions(replay, shared_data):
    # GIVEN the real TSLA full history (3303 bars, 2010-06-29..2023-08-11)
    body = _recorded(shared_data, "historical-via-chart-dividends-TSLA-no-dividends.json")
    replay.add(CHART.format("TSLA"), Reply.json(body))
    provider = _provider(replay)

    # WHEN
    bars = provider.fetch_bars("TSLA", date(2010, 1, 1), date(2023, 8, 11))

    # THEN each date is an NYSE session, no duplicates, no actions other than splits
    assert len(bars) == len(body["chart"]["result"][0]["timestamp"])
    assert bars["date"].is_unique
    assert bars["date"].iloc[0] == pd.Timestamp("2010-06-29")
    assert bars["date"].map(is_session).all()
    assert (
        provider.fetch_actions("TSLA", date(2010, 1, 1), date(2023, 8, 11))["dividend"].isna().all()
    )


def test_fixture_is_valid_json():
    # GIVEN / WHEN / THEN our own fixture files parse (a broken fixture fails here, not later)
    for path in OWN.glob("*.json"):
        json.loads(path.read_text())
