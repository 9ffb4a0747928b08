"""Headline sentiment: accuracy on labelled financial sentences, trading-day mapping, aggregation."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stockml.features import FeatureConfig, build_features, sentiment
from stockml.features.headlines import ARTEFACT, HeadlineModel, HeadlineModelError
from stockml.features.sentiment import (
    daily_sentiment,
    first_affected_session,
    join_news,
    label,
    plain_vader_score,
    score_text,
    vader_score,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "features"
REPO = Path(__file__).resolve().parents[3]
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
def test_the_vader_fallback_beats_plain_vader_and_the_majority_class(
    shared_data: Path, name: str
) -> None:
    # GIVEN the Financial PhraseBank (labelled sentences of financial news; the overlay was
    # tuned against AllAgree, so this is partly in-sample)
    rows = phrasebank(shared_data, name)
    truth = np.array([tag for _, tag in rows])
    # WHEN both scorers label every sentence (VADER's usual 0.05 band for plain VADER)
    ours = np.array([label(vader_score(s)) for s, _ in rows])
    plain = np.array([label(plain_vader_score(s), 0.05) for s, _ in rows])
    acc_ours = float((ours == truth).mean())
    acc_plain = float((plain == truth).mean())
    majority = float((truth == "neutral").mean())
    print(f"{name}: ours {acc_ours:.3f}, plain VADER {acc_plain:.3f}, majority {majority:.3f}")
    # THEN ours is clearly better than both
    assert acc_ours > acc_plain + 0.1
    assert acc_ours > majority + 0.05


def test_finance_phrases_that_plain_vader_misreads() -> None:
    # GIVEN a known misreading of plain VADER and a few finance phrasings
    # WHEN / THEN the fallback's overlay reads them right
    assert plain_vader_score("Shares plunged after the profit warning") > 0  # the known misreading
    assert vader_score("Shares plunged after the profit warning") < -0.3
    assert vader_score("Operating loss narrowed to EUR 2 mn from EUR 5 mn") > 0.3
    assert vader_score("Net sales increased by 12 %") > 0.3
    assert vader_score("The company will hold its annual general meeting on 5 May") == 0.0
    assert vader_score("") == 0.0 and score_text("") == 0.0


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


# ------------------------------------------------------------- the scorer and its fallback


@pytest.fixture
def fresh_scorer() -> Iterator[None]:
    sentiment.headline_model.cache_clear()
    yield
    sentiment.headline_model.cache_clear()


@pytest.mark.parametrize("damage", ["missing", "garbage", "truncated", "foreign_onnx"])
def test_an_unusable_artefact_falls_back_to_vader_with_a_log_line(
    damage: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    fresh_scorer: None,
) -> None:
    # GIVEN an artefact path that is missing, random bytes, half the real file, or a valid ONNX
    # model that is not ours
    path = tmp_path / "headline_sentiment.onnx"
    if damage == "garbage":
        path.write_bytes(np.random.default_rng(0).bytes(5000))
    elif damage == "truncated":
        path.write_bytes(ARTEFACT.read_bytes()[: ARTEFACT.stat().st_size // 2])
    elif damage == "foreign_onnx":
        from onnx import TensorProto, helper

        graph = helper.make_graph(
            [helper.make_node("Identity", ["x"], ["y"])],
            "other",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])],
        )
        path.write_bytes(helper.make_model(graph).SerializeToString())
    monkeypatch.setattr(sentiment, "ARTEFACT", path)
    texts = ["Shares plunged after the profit warning", "Operating loss narrowed"]
    # WHEN headlines are scored
    with caplog.at_level(logging.WARNING, logger="stockml.features.sentiment"):
        scores = sentiment.score_texts(texts)
    # THEN the VADER finance scorer answered, and the log says why
    assert scores.tolist() == [sentiment.vader_score(t) for t in texts]
    assert sentiment.sentiment_scorer() == sentiment.VADER_SCORER
    warning = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warning) == 1 and "VADER" in warning[0] and str(path) in warning[0]
    with pytest.raises(HeadlineModelError):
        HeadlineModel.load(path)


def test_the_packaged_model_is_the_default_scorer(fresh_scorer: None) -> None:
    # GIVEN the package as installed / WHEN / THEN the ONNX model scores, not VADER
    model = HeadlineModel.load(ARTEFACT)
    texts = ["Nokia shares rose 5 %", "Nokia shares fell 5 %", "Nokia shares rose 5 %"]
    assert sentiment.sentiment_scorer() == model.name
    np.testing.assert_array_equal(sentiment.score_texts(texts), model.scores(texts))


def test_the_features_job_scores_with_onnx_runtime_and_imports_no_training_library() -> None:
    # GIVEN a fresh interpreter that loads the features Lambda's handler module
    code = textwrap.dedent(
        """
        import importlib.util, json, sys
        spec = importlib.util.spec_from_file_location("app", "functions/features/app.py")
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
        from stockml.features.sentiment import score_texts, sentiment_scorer
        # WHEN it scores headlines the way the feature pipeline does
        scores = score_texts(["Shares plunged after the profit warning", "Sales rose"])
        heavy = ["sklearn", "skl2onnx", "onnx", "scipy", "torch", "mlflow", "xgboost"]
        print(json.dumps({
            "scorer": sentiment_scorer(),
            "onnxruntime": "onnxruntime" in sys.modules,
            "heavy": [m for m in heavy if m in sys.modules],
            "scores": scores.tolist(),
        }))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    # THEN the ONNX model scored them through ONNX Runtime, with no scikit-learn in the process
    assert result["scorer"].startswith("headline-onnx:") and result["onnxruntime"]
    assert result["heavy"] == []
    assert result["scores"][0] < 0 < result["scores"][1]
