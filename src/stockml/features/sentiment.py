"""Offline headline sentiment and its daily aggregation per symbol and trading day.

Scoring: the headline model (:mod:`stockml.features.headlines`: TF-IDF n-grams and a linear
classifier trained on finance news tweets and generated company-results sentences, shipped
as an ONNX artefact inside the package and run by ONNX Runtime) gives each headline
``P(positive) - P(negative)`` in [-1, 1]. When the artefact is missing or unusable (or ONNX
Runtime is not installed), VADER with a finance overlay takes over, with a warning in the log:
VADER's general lexicon misreads financial news ("profit" is positive even in "profit
warning", "plunged" is unknown), so the overlay neutralises words that carry no direction in
finance and adds the directional verbs of financial reporting; a rule turns "loss narrowed"
positive. Both scorers are measured by
``benchmarks/sentiment.py``. ``sentiment_scorer()`` names the scorer in use: the two give
different values, so training and the features job must use the same one.

Aggregation: a headline can first affect the session whose close comes after its publication:
published before a session's close (16:00 New York, earlier on half days) -> that session;
after the close, at night or on a non-session day -> the next session.
"""

from __future__ import annotations

import logging
import re
from functools import cache

import numpy as np
import pandas as pd

from stockml.calendar import session_closes
from stockml.errors import FeatureError
from stockml.features.config import FeatureConfig
from stockml.features.headlines import ARTEFACT, HeadlineModel, HeadlineModelError
from stockml.schemas import coerce_news

logger = logging.getLogger(__name__)
VADER_SCORER = "vader-finance"

# words with no direction in financial news (VADER scores them)
_NEUTRAL = [
    "profit",
    "profits",
    "share",
    "shares",
    "interest",
    "credit",
    "capital",
    "demand",
    "pay",
    "reserve",
    "reserves",
    "cost",
    "costs",
    "tax",
    "debt",
    "charge",
    "charges",
    "merger",
    "fund",
    "funds",
    "company",
    "bank",
    "well",
    "like",
    "support",
    "want",
    "agreement",
    "agreed",
    "help",
    "care",
    "value",
    "free",
    "share-based",
    "income",
    "benefit",
    "benefits",
    "matter",
    "yes",
    "please",
    "great",
    "leading",
    "top",
    "largest",
    "best",
    "no",
]
# directional words of financial reporting; VADER scale (about -4 .. +4)
_FINANCE = {
    # up
    "rose": 2.0,
    "rise": 1.8,
    "risen": 2.0,
    "rises": 1.8,
    "rising": 1.5,
    "increase": 1.8,
    "increased": 2.0,
    "increases": 1.8,
    "increasing": 1.5,
    "grew": 2.0,
    "grow": 1.5,
    "grows": 1.5,
    "growth": 1.5,
    "growing": 1.2,
    "up": 1.2,
    "higher": 1.5,
    "improved": 2.2,
    "improve": 1.8,
    "improvement": 2.0,
    "doubled": 2.5,
    "tripled": 2.5,
    "surged": 2.8,
    "soared": 2.8,
    "jumped": 2.5,
    "climbed": 2.0,
    "gained": 2.0,
    "rebound": 1.8,
    "rebounded": 2.0,
    "recovered": 1.8,
    "beat": 1.8,
    "beats": 1.8,
    "record": 1.2,
    "strong": 1.8,
    "stronger": 2.0,
    "strengthen": 1.8,
    "strengthened": 1.8,
    "expand": 1.2,
    "expanded": 1.5,
    "expansion": 1.2,
    "won": 1.8,
    "wins": 1.8,
    "awarded": 1.5,
    "upgrade": 2.0,
    "upgraded": 2.0,
    "outperform": 2.0,
    "outperformed": 2.0,
    "boost": 1.8,
    "boosted": 1.8,
    "positive": 1.5,
    "profitable": 2.0,
    "profitability": 1.2,
    "exceeded": 2.0,
    # down
    "fell": -2.0,
    "fall": -1.8,
    "fallen": -2.0,
    "falls": -1.8,
    "falling": -1.8,
    "decrease": -1.8,
    "decreased": -2.0,
    "decreases": -1.8,
    "decreasing": -1.5,
    "declined": -2.0,
    "decline": -1.8,
    "declines": -1.8,
    "declining": -1.8,
    "dropped": -2.0,
    "drop": -1.8,
    "drops": -1.8,
    "down": -1.2,
    "lower": -1.5,
    "loss": -2.0,
    "losses": -2.0,
    "lost": -1.8,
    "plunged": -3.0,
    "plunge": -2.8,
    "slumped": -2.8,
    "slump": -2.5,
    "tumbled": -2.8,
    "sank": -2.5,
    "slid": -2.0,
    "weak": -1.8,
    "weaker": -2.0,
    "weakened": -2.0,
    "warning": -2.0,
    "warns": -2.0,
    "cut": -1.5,
    "cuts": -1.5,
    "layoffs": -2.2,
    "lay-offs": -2.2,
    "redundancies": -2.2,
    "laid": -1.5,
    "closure": -1.8,
    "shutdown": -2.0,
    "bankruptcy": -3.0,
    "lawsuit": -2.0,
    "deficit": -1.8,
    "slowed": -1.5,
    "slowdown": -1.8,
    "miss": -1.8,
    "missed": -1.8,
    "downgrade": -2.0,
    "downgraded": -2.0,
    "negative": -1.5,
    "shrank": -2.0,
    "contracted": -1.8,
    "worse": -2.0,
    "deteriorated": -2.2,
    "dismissed": -1.5,
    "unprofitable": -2.2,
    "writedown": -2.0,
    "impairment": -2.0,
    "recall": -1.8,
}
# "loss narrowed", "losses decreased": a smaller loss is good news
_SHRINKING_LOSS = re.compile(
    r"\b(loss|losses|deficit)\b[^.;]{0,60}?\b(narrowed|narrows|decreased|declined|fell|shrank|"
    r"reduced|improved|down)\b|\b(narrowed|reduced|decreased|cut)\b[^.;]{0,20}?\b(loss|losses|deficit)\b",
    re.IGNORECASE,
)
# a score in (-NEUTRAL_BAND, NEUTRAL_BAND) is neutral: news prose is mostly neutral
NEUTRAL_BAND = 0.3


@cache
def _finance_analyzer():  # type: ignore[no-untyped-def]
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyzer = SentimentIntensityAnalyzer()
    for word in _NEUTRAL:
        analyzer.lexicon.pop(word, None)
    analyzer.lexicon.update(_FINANCE)
    return analyzer


@cache
def _plain_analyzer():  # type: ignore[no-untyped-def]
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def vader_score(text: str) -> float:
    """The fallback scorer: VADER with the finance overlay, in [-1, 1] (VADER compound scale)."""
    if not text or not text.strip():
        return 0.0
    compound = float(_finance_analyzer().polarity_scores(text)["compound"])
    if _SHRINKING_LOSS.search(text):
        compound = abs(compound) if compound else 0.5
    return compound


@cache
def headline_model() -> HeadlineModel | None:
    """The packaged headline model, or None (logged once) when it cannot be used."""
    try:
        model = HeadlineModel.load(ARTEFACT)
    except (HeadlineModelError, ImportError) as exc:
        logger.warning(
            "headline sentiment model unavailable (%s): scoring headlines with the VADER "
            "finance lexicon instead",
            exc,
        )
        return None
    logger.info("headline sentiment: %s", model.name)
    return model


def sentiment_scorer() -> str:
    """The scorer in use: ``headline-onnx:<data sha256 prefix>`` or ``vader-finance``."""
    model = headline_model()
    return VADER_SCORER if model is None else model.name


def score_texts(texts: list[str]) -> np.ndarray:
    """Sentiment in [-1, 1] of each headline, by the headline model (VADER when it is missing).

    Each distinct text is scored once (one article often names several tickers).
    """
    distinct, inverse = np.unique(np.asarray(texts, dtype=object).astype(str), return_inverse=True)
    model = headline_model()
    if model is None:
        scores = np.array([vader_score(t) for t in distinct], dtype="float64")
    else:
        scores = model.scores(distinct.tolist())
    return scores[inverse] if len(texts) else np.zeros(0)


def score_text(text: str) -> float:
    """``score_texts`` of one headline."""
    return float(score_texts([text])[0])


def plain_vader_score(text: str) -> float:
    """VADER's compound score with its general lexicon (the baseline the tests compare with)."""
    return float(_plain_analyzer().polarity_scores(text)["compound"])


def label(score: float, band: float = NEUTRAL_BAND) -> str:
    """``positive`` / ``negative`` / ``neutral`` from a score and the neutral band."""
    if score >= band:
        return "positive"
    if score <= -band:
        return "negative"
    return "neutral"


def news_feature_columns(config: FeatureConfig) -> list[str]:
    """Names of the news columns, in output order (empty when news is disabled)."""
    if not config.news.enabled:
        return []
    return ["news_sentiment", "news_count", f"news_sentiment_{config.news.window}d"]


def first_affected_session(published_at: pd.Series) -> pd.Series:
    """The first NYSE session whose close comes after each publication time.

    Args:
        published_at: timestamps (tz-aware, or naive meaning UTC).

    Returns:
        tz-naive session dates, aligned with the input.
    """
    when = pd.to_datetime(published_at, utc=True)
    if when.isna().any():
        raise FeatureError("news has rows without a publication time")
    if when.empty:
        return pd.Series([], dtype="datetime64[ns]", index=published_at.index)
    lo = when.min().tz_convert("America/New_York").tz_localize(None).normalize() - pd.Timedelta(
        days=1
    )
    hi = when.max().tz_convert("America/New_York").tz_localize(None).normalize() + pd.Timedelta(
        days=14
    )
    closes = session_closes(lo, hi)
    close_utc = closes.dt.tz_localize(None).to_numpy(dtype="datetime64[ns]")
    # first session whose close is strictly after the publication: at the close it is too late
    pos = np.searchsorted(
        close_utc, when.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(), side="right"
    )
    return pd.Series(closes.index[pos].to_numpy(dtype="datetime64[ns]"), index=published_at.index)


def daily_sentiment(news: pd.DataFrame) -> pd.DataFrame:
    """Per ``(symbol, date)`` session: mean headline score and headline count.

    Args:
        news: NEWS_COLUMNS rows (``published_at`` UTC).

    Returns:
        Columns ``symbol, date, sentiment_sum, news_count``; only sessions with news.
    """
    frame = coerce_news(news)
    frame = frame.drop_duplicates(subset=["symbol", "url", "title"]) if len(frame) else frame
    if frame.empty:
        return pd.DataFrame(
            {
                "symbol": [],
                "date": pd.Series([], dtype="datetime64[ns]"),
                "sentiment_sum": [],
                "news_count": [],
            }
        )
    # the headline is what the model was trained on; the summary stands in when it is empty
    texts = frame["title"].where(frame["title"] != "", frame["summary"])
    scored = pd.DataFrame(
        {
            "symbol": frame["symbol"],
            "date": first_affected_session(frame["published_at"]),
            "score": score_texts(texts.tolist()),
        }
    )
    grouped = scored.groupby(["symbol", "date"], sort=True)["score"]
    return pd.DataFrame(
        {"sentiment_sum": grouped.sum(), "news_count": grouped.size().astype("float64")}
    ).reset_index()


def join_news(rows: pd.DataFrame, news: pd.DataFrame | None, config: FeatureConfig) -> pd.DataFrame:
    """News columns for ``rows`` (``symbol, date``, sorted by symbol then date), aligned with its index.

    Days without news get sentiment 0 and count 0 (never NaN). The rolling column is the mean
    score of the headlines of the last ``window`` rows of the symbol (0 when there were none).
    """
    cols = news_feature_columns(config)
    out = pd.DataFrame(0.0, index=rows.index, columns=cols)
    if not cols or news is None or news.empty:
        return out
    daily = daily_sentiment(news)
    keys = pd.DataFrame(
        {
            "symbol": rows["symbol"].astype(str).to_numpy(),
            "date": pd.to_datetime(rows["date"]).astype("datetime64[ns]").to_numpy(),
        }
    )
    daily["date"] = daily["date"].astype("datetime64[ns]")
    merged = keys.merge(daily, on=["symbol", "date"], how="left")
    total = merged["sentiment_sum"].fillna(0.0)
    count = merged["news_count"].fillna(0.0)
    symbols = keys["symbol"].to_numpy()
    total_w = _rolling_sum_by_group(total.to_numpy(), symbols, config.news.window)
    count_w = _rolling_sum_by_group(count.to_numpy(), symbols, config.news.window)
    out["news_sentiment"] = np.where(count > 0, total / count.where(count > 0, 1.0), 0.0)
    out["news_count"] = count.to_numpy()
    out[cols[2]] = np.where(count_w > 0, total_w / np.where(count_w > 0, count_w, 1.0), 0.0)
    return out


def _rolling_sum_by_group(values: np.ndarray, groups: np.ndarray, window: int) -> np.ndarray:
    """Sum of the last ``window`` values within each group (groups contiguous), partial at the start."""
    n = len(values)
    rows = np.arange(n)
    is_start = np.r_[True, groups[1:] != groups[:-1]] if n else np.zeros(0, dtype=bool)
    group_start = np.maximum.accumulate(np.where(is_start, rows, 0)) if n else rows
    cumulative = np.r_[0.0, np.cumsum(values)]
    return cumulative[rows + 1] - cumulative[np.maximum(rows - window + 1, group_start)]
