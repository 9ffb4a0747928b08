"""Headline sentiment: accuracy on labelled financial sentences, trading-day mapping, aggregation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stockml.features import FeatureConfig, build_features
from stockml.features.sentiment import (
    daily_sentiment,
    first_affected_session,
    join_news,
    label,
    plain_vader_score,
    score_text,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "features"
CONFIG = FeatureConfig()


def phrasebank(shared_data: Path, name: str) -> list[tuple[str, str]]:
    text = (
        (shared_data / "sentiment" / "financial_phrasebank" / name)
        .read_bytes()
        .decode("utf-8", "replace")
    )
    rows = [line.rsplit("@", 1) for line in text.splitlines() if "@" in line]
    return [(sentence, tag.strip()) for sentence, tag in rows]


@pytest.mark.shared_data
@pytest.mark.parametrize("name", ["Sentences_AllAgree.txt", "Sentences_50Agree.txt"])
def test_finance_scorer_beats_plain_vader_and_the_majority_class(
    shared_data: Path, name: str
) -> None:
    # GIVEN the Financial PhraseBank (labelled sentences of financial news)
    rows = phrasebank(shared_data, name)
    truth = np.array([tag for _, tag in rows])
    # WHEN both scorers label every sentence (VADER's usual 0.05 band for plain VADER)
    ours = np.array([label(score_text(s)) for s, _ in rows])
    plain = np.array([label(plain_vader_score(s), 0.05) for s, _ in rows])
    acc_ours = float((ours == truth).mean())
    acc_plain = float((plain == truth).mean())
    majority = float((truth == "neutral").mean())
    print(f"{name}: ours {acc_ours:.3f}, plain VADER {acc_plain:.3f}, majority {majority:.3f}")
    # THEN ours is clearly better than both
    assert acc_ours > acc_plain + 0.1
    assert acc_ours > majority + 0.05


def test_finance_phrases_that_plain_vader_misreads() -> None:
    # GIVEN the PROBES.md example and a few finance phrasings
    # WHEN / THEN
    assert plain_vader_score("Shares plunged after the profit warning") > 0  # the known misreading
    assert score_text("Shares plunged after the profit warning") < -0.3
    assert score_text("Operating loss narrowed to EUR 2 mn from EUR 5 mn") > 0.3
    assert score_text("Net sales increased by 12 %") > 0.3
    assert score_text("The company will hold its annual general meeting on 5 May") == 0.0
    assert score_text("") == 0.0


def test_publication_times_map_to_the_first_session_they_can_affect() -> None:
    # GIVEN hand-made headlines at the calendar's edges (close, half day, holiday, weekend, DST)
    rows = pd.DataFrame(json.loads((FIXTURES / "news_timing.json").read_text())["rows"])
    # WHEN
    got = first_affected_session(pd.to_datetime(rows["published_at"], utc=True))
    # THEN
    assert [d.strftime("%Y-%m-%d") for d in got] == rows["expected_session"].tolist(), rows[
        "why"
    ].tolist()


@pytest.mark.shared_data
def test_recorded_polygon_news_maps_to_its_trading_day(shared_data: Path) -> None:
    # GIVEN the recorded Polygon /v2/reference/news payload, parsed as a provider would
    payload = json.loads(
        (shared_data / "api_payloads/polygon/v2_reference_news_NFLX.json").read_text()
    )
    news = pd.DataFrame(
        [
            {
                "symbol": ticker,
                "published_at": item["published_utc"],
                "title": item["title"],
                "summary": item.get("description", ""),
                "url": item["article_url"],
                "source": "polygon",
            }
            for item in payload["results"]
            for ticker in item["tickers"]
        ]
    )
    # WHEN aggregated per symbol and session
    daily = daily_sentiment(news)
    # THEN 17:08Z (13:08 New York) on Thursday 2022-04-28 is that day's session, for each ticker
    assert sorted(daily["symbol"]) == ["AMZN", "MSFT", "NFLX", "TSN"]
    assert (daily["date"] == pd.Timestamp("2022-04-28")).all()
    assert (daily["news_count"] == 1).all()
    # "incomes are falling at a record pace" reads negative
    assert (daily["sentiment_sum"] < 0).all()


def test_daily_aggregation_and_no_news_gives_zero_not_nan() -> None:
    # GIVEN two headlines for one session, one after its close, none on other days
    news = pd.DataFrame(
        {
            "symbol": ["MSFT"] * 3,
            "published_at": [
                "2024-07-01T14:00:00Z",
                "2024-07-01T15:00:00Z",
                "2024-07-01T21:00:00Z",
            ],
            "title": [
                "Microsoft shares rose",
                "Microsoft profit fell",
                "Microsoft net sales increased",
            ],
            "summary": "",
            "url": ["u1", "u2", "u3"],
            "source": "test",
        }
    )
    rows = pd.DataFrame(
        {
            "symbol": "MSFT",
            "date": pd.to_datetime(["2024-06-28", "2024-07-01", "2024-07-02", "2024-07-03"]),
        }
    )
    # WHEN
    out = join_news(rows, news, CONFIG)
    # THEN
    assert out["news_count"].tolist() == [0.0, 2.0, 1.0, 0.0]
    expected_day = (score_text("Microsoft shares rose") + score_text("Microsoft profit fell")) / 2
    assert out["news_sentiment"].iloc[1] == pytest.approx(expected_day)
    assert out["news_sentiment"].iloc[[0, 3]].tolist() == [0.0, 0.0]
    # the 5-session column averages the headlines of the window
    total = sum(score_text(t) for t in news["title"])
    assert out["news_sentiment_5d"].iloc[3] == pytest.approx(total / 3)
    assert not out.isna().any().any()


def test_build_features_without_news_is_neutral(msft_bars: pd.DataFrame) -> None:
    # GIVEN no news at all / WHEN / THEN sentiment 0 and count 0 on every row
    out = build_features(msft_bars.iloc[-300:], None, None, CONFIG)
    assert (out[["news_sentiment", "news_count", "news_sentiment_5d"]] == 0).all().all()
