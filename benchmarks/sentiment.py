"""Headline sentiment: accuracy of the headline model and of the VADER fallback, and speed.

Needs ``../shared/data/sentiment`` (absent in a fresh clone). Data sets scored:

- ``tweets_test``: the held-out test split of the finance news tweets the model was trained on
  (MIT; rows neither fitted nor used to choose hyper-parameters, ``split_of``; the model also
  learned from generated company-results sentences, ``training/sentiment/generated.py``);
- ``AllAgree`` / ``50Agree``: the Financial PhraseBank (non-commercial licence: scored here,
  never trained or tuned on by the model). Sentences from company news releases, not tweets.

For each: accuracy of the model, of the VADER finance overlay (the fallback; its lexicon was
tuned against the PhraseBank AllAgree, so it is in-sample there), of plain VADER, and of the
majority class (neutral). Speed: headlines/s of ``score_texts`` (normalisation, n-grams,
ONNX Runtime) on one core (the process pinned to one CPU, one ONNX Runtime thread), over
distinct headlines; wall clock and CPU time. The last line printed is one JSON object.
"""

from __future__ import annotations

import os

# one core: pin BLAS/OpenMP pools before numpy loads
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from stockml.features.headlines import ARTEFACT, HeadlineModel, split_of  # noqa: E402
from stockml.features.sentiment import (  # noqa: E402
    label,
    plain_vader_score,
    score_texts,
    sentiment_scorer,
    vader_score,
)

SENTIMENT = Path(__file__).resolve().parents[2] / "shared" / "data" / "sentiment"
TWEET_LABELS = {0: "negative", 1: "positive", 2: "neutral"}


def phrasebank(name: str) -> tuple[list[str], np.ndarray]:
    text = (SENTIMENT / "financial_phrasebank" / name).read_bytes().decode("utf-8", "replace")
    rows = [line.rsplit("@", 1) for line in text.splitlines() if "@" in line]
    return [s for s, _ in rows], np.array([tag.strip() for _, tag in rows])


def tweets_test() -> tuple[list[str], np.ndarray]:
    frame = pd.read_csv(SENTIMENT / "twitter_financial_news" / "sent_train.csv")
    test = frame[[split_of(t) == "test" for t in frame["text"]]]
    return test["text"].tolist(), test["label"].map(TWEET_LABELS).to_numpy()


def figures(model: HeadlineModel, texts: list[str], truth: np.ndarray) -> dict[str, float]:
    ours = model.labels(texts)
    vader = np.array([label(vader_score(t)) for t in texts])
    plain = np.array([label(plain_vader_score(t), 0.05) for t in texts])
    out: dict[str, float] = {
        "n": len(texts),
        "accuracy_model": round(float((ours == truth).mean()), 4),
        "accuracy_vader_finance": round(float((vader == truth).mean()), 4),
        "accuracy_plain_vader": round(float((plain == truth).mean()), 4),
        "accuracy_majority": round(float((truth == "neutral").mean()), 4),
    }
    for cls in ("positive", "negative", "neutral"):
        hit = truth == cls
        out[f"recall_model_{cls}"] = round(float((ours[hit] == cls).mean()), 4)
    return out


def speed(texts: list[str], repeats: int = 5) -> dict[str, float]:
    """Headlines/s of ``score_texts`` over distinct texts: median of ``repeats`` runs."""
    score_texts(texts[:10])  # warm: load the artefact outside the timing
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        score_texts(texts)
        wall.append(len(texts) / (time.perf_counter() - t0))
        cpu.append(len(texts) / (time.process_time() - c0))
    return {
        "headlines": len(texts),
        "headlines_per_s": round(statistics.median(wall)),
        "headlines_per_cpu_s": round(statistics.median(cpu)),
    }


def main() -> None:
    if not SENTIMENT.is_dir():
        print(json.dumps({"error": f"{SENTIMENT} is absent"}))
        sys.exit(1)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    model = HeadlineModel.load(ARTEFACT)
    result: dict[str, object] = {
        "scorer": sentiment_scorer(),
        "artefact_bytes": ARTEFACT.stat().st_size,
        "data_sha256": model.metadata["data"]["sha256"],
        "hyper_parameters": model.metadata["hyper_parameters"],
        "finance_rules": model.finance_rules,
        "generated_sentences": model.metadata.get("generated") is not None,
    }
    sets = {
        "tweets_test": tweets_test(),
        "AllAgree": phrasebank("Sentences_AllAgree.txt"),
        "50Agree": phrasebank("Sentences_50Agree.txt"),
    }
    for key, (texts, truth) in sets.items():
        result[key] = figures(model, texts, truth)
        print(f"{key}: {result[key]}")
    everything = sorted({t for texts, _ in sets.values() for t in texts})
    result["speed"] = speed(everything)
    print(f"speed (one core): {result['speed']}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
