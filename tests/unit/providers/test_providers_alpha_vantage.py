"""Alpha Vantage (alpha_vantage, the real client) against a local server replaying answers."""

from __future__ import annotations

import json
from datetime import date

import pandas as pd
import pytest

from stockml.errors import (
    ConfigError,
    ProviderError,
    RateLimitError,
    TransientProviderError,
    UnknownSymbolError,
)
from stockml.providers.alpha_vantage import AlphaVantageProvider
from stockml.providers.base import RetryPolicy
from stockml.schemas import validate_bars
from utils.provider_data import FAST_RETRY, own_json
from utils.replay_server import Reply

QUERY = r"/query"


def _provider(replay, **kwargs) -> AlphaVantageProvider:
    kwargs.setdefault("retry", FAST_RETRY)
    return AlphaVantageProvider("test-key", base_url=replay.url, **kwargs)


def test_daily_adjusted_keeps_close_and_adjusted_close_apart(replay):
    # GIVEN our own TIME_SERIES_DAILY_ADJUSTED answer (newest first, values as strings)
    payload = own_json("alpha_vantage_daily_adjusted_MSFT.json")
    replay.add(QUERY, Reply.json(payload), function="TIME_SERIES_DAILY_ADJUSTED", symbol="MSFT")
    series = payload["Time Series (Daily)"]

    # WHEN
    bars = _provider(replay).fetch_bars("MSFT", date(2017, 2, 13), date(2017, 3, 15))

    # THEN oldest first, close = "4. close", adj_close = "5. adjusted close", all valid
    assert [d.strftime("%Y-%m-%d") for d in bars["date"]] == sorted(series)
    assert bars["close"].tolist() == pytest.approx(
        [float(series[d]["4. close"]) for d in sorted(series)]
    )
    assert bars["adj_close"].tolist() == pytest.approx(
        [float(series[d]["5. adjusted close"]) for d in sorted(series)]
    )
    assert (bars["adj_close"] < bars["close"]).any()
    assert len(validate_bars(bars).rejected) == 0


def test_a_non_numeric_value_and_a_bad_date_are_quarantined_with_their_text(replay):
    # GIVEN our own answer, with one close that is not a number and one date that is not one
    payload = own_json("alpha_vantage_daily_adjusted_MSFT.json")
    series = payload["Time Series (Daily)"]
    days = sorted(series)
    series[days[3]]["4. close"] = "n.a."
    series["2017-02-30"] = dict(series[days[4]])
    replay.add(QUERY, Reply.json(payload), function="TIME_SERIES_DAILY_ADJUSTED", symbol="MSFT")

    # WHEN fetched (nothing raises) and validated
    bars = _provider(replay).fetch_bars("MSFT", date(2017, 2, 13), date(2017, 3, 15))
    result = validate_bars(bars)

    # THEN the other days pass, and the two bad rows are quarantined with their text
    assert len(result.valid) == len(days) - 1
    assert sorted(result.rejected["reason"]) == [
        "non-numeric close 'n.a.'",
        "unparseable date '2017-02-30'",
    ]


@pytest.mark.parametrize(
    "fixture", ["alpha_vantage_note_rate_limit.json", "alpha_vantage_information_rate_limit.json"]
)
def test_rate_limit_answers_with_http_200_raise(replay, fixture):
    # GIVEN an HTTP 200 whose body is a rate-limit ``Note`` / ``Information``
    route = replay.add(QUERY, Reply.json(own_json(fixture)))

    # WHEN / THEN a RateLimitError after the retries, never an empty frame
    with pytest.raises(RateLimitError, match="Thank you for using Alpha Vantage"):
        _provider(replay).fetch_bars("MSFT", date(2017, 2, 13), date(2017, 3, 15))
    assert route.hits == 1 + FAST_RETRY.max_retries


def test_rate_limit_note_then_data_is_retried(replay):
    # GIVEN a Note first, then the data
    replay.add(
        QUERY,
        Reply.json(own_json("alpha_vantage_note_rate_limit.json")),
        Reply.json(own_json("alpha_vantage_daily_adjusted_MSFT.json")),
    )

    # WHEN / THEN the retry returns the bars
    assert len(_provider(replay).fetch_bars("MSFT", date(2017, 2, 13), date(2017, 3, 15))) > 0


def test_premium_information_is_not_a_rate_limit(replay):
    # GIVEN the Information answer of a premium-only endpoint
    text = "Thank you for using Alpha Vantage! This is a premium endpoint. You may subscribe to any of the premium plans."
    route = replay.add(QUERY, Reply.json({"Information": text}))

    # WHEN / THEN a plain ProviderError, not retried
    with pytest.raises(ProviderError, match="premium") as info:
        _provider(replay).fetch_bars("MSFT", date(2017, 2, 13), date(2017, 3, 15))
    assert not isinstance(info.value, RateLimitError)
    assert route.hits == 1


def test_error_message_is_an_unknown_symbol(replay):
    # GIVEN Alpha Vantage's answer for a symbol it does not know
    message = "Invalid API call. Please retry or visit the documentation (https://www.alphavantage.co/documentation/) for TIME_SERIES_DAILY_ADJUSTED."
    replay.add(QUERY, Reply.json({"Error Message": message}), symbol="NOPE")

    # WHEN / THEN
    with pytest.raises(UnknownSymbolError, match="Invalid API call"):
        _provider(replay).fetch_bars("NOPE", date(2017, 2, 13), date(2017, 3, 15))


def test_5xx_is_transient_and_the_key_stays_out_of_messages(replay):
    # GIVEN a server that always answers 500
    replay.add(QUERY, Reply(b"<html>oops</html>", status=500, content_type="text/html"))

    # WHEN / THEN
    with pytest.raises(TransientProviderError) as info:
        _provider(replay).fetch_bars("MSFT", date(2017, 2, 13), date(2017, 3, 15))
    assert "test-key" not in str(info.value)


def test_timeout_is_transient(replay):
    # GIVEN a slow server
    replay.add(QUERY, Reply.json({}, delay_s=1.0))

    # WHEN / THEN
    with pytest.raises(TransientProviderError, match="Timeout") as info:
        _provider(replay, timeout_s=0.2, retry=RetryPolicy(max_retries=0)).fetch_bars(
            "MSFT", date(2017, 2, 13), date(2017, 3, 15)
        )
    assert "test-key" not in str(info.value)


def test_actions_come_from_the_adjusted_series(replay):
    # GIVEN our own adjusted answer with a 0.39 dividend on 2017-02-14
    replay.add(QUERY, Reply.json(own_json("alpha_vantage_daily_adjusted_MSFT.json")))

    # WHEN
    actions = _provider(replay).fetch_actions("MSFT", date(2017, 2, 13), date(2017, 3, 15))

    # THEN
    assert actions["date"].tolist() == [pd.Timestamp("2017-02-14")]
    assert actions["dividend"].tolist() == [pytest.approx(0.39)]
    assert actions["split"].isna().all()


def test_news_sentiment_maps_to_news_columns(replay):
    # GIVEN our own NEWS_SENTIMENT answer
    payload = own_json("alpha_vantage_news_MSFT.json")
    route = replay.add(QUERY, Reply.json(payload), function="NEWS_SENTIMENT", tickers="MSFT")

    # WHEN
    news = _provider(replay).fetch_news("MSFT", date(2017, 3, 1), date(2017, 3, 2))

    # THEN
    assert route.hits == 1
    assert news["title"].tolist() == [item["title"] for item in payload["feed"]]
    assert news["published_at"].tolist() == [
        pd.Timestamp("2017-03-01 21:30", tz="UTC"),
        pd.Timestamp("2017-03-02 14:30", tz="UTC"),
    ]


def test_missing_key_is_a_config_error():
    # GIVEN / WHEN / THEN
    with pytest.raises(ConfigError, match="ALPHA_VANTAGE_API_KEY"):
        AlphaVantageProvider("")


# --- real recorded answers (crazzyghost / kirlut test data, ../shared/data) ---------------


@pytest.mark.shared_data
def test_recorded_ibm_daily_adjusted_dividend(replay, shared_data):
    # GIVEN the recorded IBM daily-adjusted answer with a 1.63 dividend on 2020-05-07
    body = (shared_data / "api_payloads/alpha_vantage/crazzyghost_dailyadjusted.json").read_bytes()
    replay.add(QUERY, Reply(body), function="TIME_SERIES_DAILY_ADJUSTED", symbol="IBM")
    provider = _provider(replay)

    # WHEN
    bars = provider.fetch_bars("IBM", date(2020, 5, 7), date(2020, 5, 8))
    actions = provider.fetch_actions("IBM", date(2020, 5, 7), date(2020, 5, 8))

    # THEN
    assert bars["date"].tolist() == [pd.Timestamp("2020-05-07"), pd.Timestamp("2020-05-08")]
    assert bars["close"].tolist() == pytest.approx([121.23, 121.805])
    assert actions["date"].tolist() == [pd.Timestamp("2020-05-07")]
    assert actions["dividend"].tolist() == [pytest.approx(1.63)]


@pytest.mark.shared_data
def test_recorded_msft_daily_not_adjusted(replay, shared_data):
    # GIVEN the recorded non-adjusted MSFT answer ("5. volume", no adjusted close)
    body = (shared_data / "api_payloads/alpha_vantage/kirlut_daily-not-adjusted.json").read_bytes()
    replay.add(QUERY, Reply(body), function="TIME_SERIES_DAILY", symbol="MSFT")
    series = json.loads(body)["Time Series (Daily)"]

    # WHEN
    bars = _provider(replay, adjusted=False).fetch_bars("MSFT", date(2018, 5, 1), date(2018, 5, 31))

    # THEN adj_close falls back to close; volume read from "5. volume"
    assert len(bars) == len(series)
    assert (bars["adj_close"] == bars["close"]).all()
    assert bars["volume"].tolist() == [float(series[d]["5. volume"]) for d in sorted(series)]
