"""Retries, fallback across real providers, and building providers from Settings."""

from __future__ import annotations

from datetime import date

import pytest

from stockml.errors import (
    AllProvidersFailedError,
    ConfigError,
    ProviderError,
    UnknownSymbolError,
)
from stockml.providers import PROVIDER_NAMES, FallbackProvider, RetryPolicy, build_providers
from stockml.providers.alpha_vantage import AlphaVantageProvider
from stockml.providers.csv import CsvProvider
from stockml.providers.polygon import PolygonProvider
from stockml.providers.sample import SampleProvider
from stockml.settings import Settings
from utils.provider_data import FAST_RETRY, own_json
from utils.replay_server import Reply

AGGS = r"/v2/aggs/ticker/{}/range/1/day/.*"
MARCH = (date(2017, 3, 1), date(2017, 3, 3))


def test_backoff_doubles_and_is_capped():
    # GIVEN / WHEN / THEN
    assert RetryPolicy(max_retries=4, backoff_s=0.5, max_backoff_s=1.5).delays() == [
        0.5,
        1.0,
        1.5,
        1.5,
    ]
    assert RetryPolicy(max_retries=0).delays() == []


def test_failing_provider_falls_back_to_the_next(replay):
    # GIVEN Polygon answering 503 forever, then the sample provider
    route = replay.add(AGGS.format("MSFT"), Reply.json({}, status=503))
    chain = FallbackProvider(
        [PolygonProvider("k", base_url=replay.url, retry=FAST_RETRY), SampleProvider()]
    )

    # WHEN
    bars = chain.fetch_bars("MSFT", *MARCH)

    # THEN Polygon was retried, then the sample answered
    assert route.hits == 1 + FAST_RETRY.max_retries
    assert len(bars) == 3
    assert (bars["source"] == "sample").all()


def test_all_failing_raises_with_every_reason(replay):
    # GIVEN Polygon 503 and Alpha Vantage rate-limited
    replay.add(AGGS.format("MSFT"), Reply.json({}, status=503))
    replay.add(r"/query", Reply.json(own_json("alpha_vantage_note_rate_limit.json")))
    chain = FallbackProvider(
        [
            PolygonProvider("k", base_url=replay.url, retry=FAST_RETRY),
            AlphaVantageProvider("k", base_url=replay.url, retry=FAST_RETRY),
        ]
    )

    # WHEN / THEN one error naming both providers and their reasons
    with pytest.raises(AllProvidersFailedError) as info:
        chain.fetch_bars("MSFT", *MARCH)
    message = str(info.value)
    assert "polygon: TransientProviderError" in message
    assert "alpha_vantage: RateLimitError" in message


def test_symbol_unknown_everywhere_is_unknown_symbol(tmp_path):
    # GIVEN two providers that do not know AAPL
    chain = FallbackProvider([SampleProvider(), CsvProvider(tmp_path)])

    # WHEN / THEN
    with pytest.raises(UnknownSymbolError, match="sample.*csv"):
        chain.fetch_bars("AAPL", *MARCH)


def test_unknown_in_first_known_in_second(tmp_path):
    # GIVEN the sample (which has no ZZZ) before a csv folder that has ZZZ.csv
    (tmp_path / "ZZZ.csv").write_text("Date,Close\n2017-03-01,10\n2017-03-02,11\n")
    chain = FallbackProvider([SampleProvider(), CsvProvider(tmp_path)])

    # WHEN
    bars = chain.fetch_bars("ZZZ", *MARCH)

    # THEN the csv provider answered
    assert bars["close"].tolist() == [10.0, 11.0]
    assert (bars["source"] == "csv").all()


def test_empty_answer_is_an_answer_not_a_failure(replay):
    # GIVEN Polygon answering "no results" (e.g. a holiday) before the sample provider
    route = replay.add(
        AGGS.format("MSFT"), Reply.json({"ticker": "MSFT", "resultsCount": 0, "status": "OK"})
    )
    chain = FallbackProvider(
        [PolygonProvider("k", base_url=replay.url, retry=FAST_RETRY), SampleProvider()]
    )

    # WHEN
    bars = chain.fetch_bars("MSFT", *MARCH)

    # THEN the empty frame is returned; the sample (which has these days) is not asked
    assert route.hits == 2  # the raw and the adjusted call
    assert bars.empty


def test_news_skips_providers_without_news(replay):
    # GIVEN the sample (no news) before Polygon
    replay.add(r"/v2/reference/news", Reply.json(own_json("polygon_news_MSFT_page2.json")))
    chain = FallbackProvider(
        [SampleProvider(), PolygonProvider("k", base_url=replay.url, retry=FAST_RETRY)]
    )

    # WHEN
    news = chain.fetch_news("MSFT", date(2017, 3, 2), date(2017, 3, 2))

    # THEN Polygon answered; a chain without any news provider says so
    assert news["source"].tolist() == ["polygon"]
    with pytest.raises(ProviderError, match="serves news"):
        FallbackProvider([SampleProvider()]).fetch_news("MSFT", *MARCH)


def test_build_providers_from_settings(replay, monkeypatch):
    # GIVEN Settings naming polygon then sample, URLs pointing at the replay server, the key
    # in the environment only, and Polygon failing
    monkeypatch.setenv("POLYGON_API_KEY", "env-key")
    route = replay.add(AGGS.format("MSFT"), Reply.json({}, status=500))
    settings = Settings(
        ingest={"providers": ["polygon", "sample"], "max_retries": 1, "backoff_s": 0.01},
        provider_urls={"polygon": replay.url},
    )

    # WHEN
    chain = build_providers(settings)
    bars = chain.fetch_bars("MSFT", *MARCH)

    # THEN the chain is in the configured order and falls back to the sample
    assert [p.name for p in chain.providers] == ["polygon", "sample"]
    assert chain.providers[0].retry == RetryPolicy(max_retries=1, backoff_s=0.01)
    assert (bars["source"] == "sample").all()
    assert route.hits == 2
    assert set(replay.authorizations) == {"Bearer env-key"}


@pytest.mark.parametrize(
    ("ingest", "message"),
    [
        ({"providers": ["nope"]}, "unknown provider"),
        ({"providers": []}, "empty"),
        ({"providers": ["csv"], "csv_path": None}, "csv_path"),
        ({"providers": ["alpha_vantage"]}, "ALPHA_VANTAGE_API_KEY"),
    ],
)
def test_build_providers_refuses_bad_settings(monkeypatch, ingest, message):
    # GIVEN no provider keys in the environment
    monkeypatch.delenv("ALPHA_VANTAGE_API_KEY", raising=False)

    # WHEN / THEN
    with pytest.raises(ConfigError, match=message):
        build_providers(Settings(ingest=ingest))


def test_every_registered_name_builds(monkeypatch, tmp_path):
    # GIVEN keys and a csv (and parquet) path
    monkeypatch.setenv("POLYGON_API_KEY", "k")
    monkeypatch.setenv("ALPHA_VANTAGE_API_KEY", "k")
    settings = Settings(
        ingest={
            "providers": PROVIDER_NAMES,
            "csv_path": str(tmp_path),
            "parquet_path": str(tmp_path),
        }
    )

    # WHEN / THEN each name gives the provider of that name
    assert [p.name for p in build_providers(settings).providers] == PROVIDER_NAMES
