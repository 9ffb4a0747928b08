"""The headline sentiment model: its artefact, ONNX parity with scikit-learn, accuracy on real
labelled text, the VADER fallback, and a features job that scores with ONNX Runtime only."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd
import pytest

from stockml.features import headline_rules
from stockml.features.headlines import (
    ARTEFACT,
    BATCH,
    FORMAT,
    HeadlineModel,
    HeadlineModelError,
    char_code,
    char_ngram_codes,
    normalize_headline,
    split_of,
)

REPO = Path(__file__).resolve().parents[3]
TWEET_LABELS = {0: "negative", 1: "positive", 2: "neutral"}
# the packaged model's measured accuracy (benchmarks/sentiment.py), less a point: a regression
# floor. On the held-out tweets and the PhraseBank AllAgree the goal itself, 0.80, is the floor.
FLOORS = {"tweets": 0.80, "AllAgree": 0.828, "50Agree": 0.70}


def training_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "train_headlines", REPO / "training/sentiment/train_headlines.py"
    )
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def generated_headlines(n: int, seed: int) -> tuple[list[str], np.ndarray]:
    """Headlines from templates: the verb decides the label (0 down, 1 up, 2 neither)."""
    rng = np.random.default_rng(seed)
    firms = ["Acme Corp", "Nokia", "Globex", "Initech", "Umbrella Group", "Stark Industries"]
    things = ["shares", "net sales", "operating profit", "revenue", "orders", "margins"]
    verbs = {
        0: ["fell", "plunged", "dropped", "slumped", "declined"],
        1: ["rose", "jumped", "surged", "climbed", "increased"],
        2: ["were reported", "will be published", "are discussed", "were unchanged"],
    }
    labels = rng.integers(0, 3, n)
    texts = [
        f"{rng.choice(firms)} {rng.choice(things)} {rng.choice(verbs[int(y)])} "
        f"{rng.integers(1, 99)}% in Q{rng.integers(1, 5)}"
        for y in labels
    ]
    return texts, labels


# ------------------------------------------------------------------------------ analysis


def test_normalisation_and_char_codes_by_hand() -> None:
    # GIVEN / WHEN / THEN typography, accents, URLs, cashtags and numbers are folded
    text = "$AAPL Apple\u2019s sales +18% at Sepp\u00e4l\u00e4 \u2013 https://t.co/xY1  \u2026"
    assert normalize_headline(text) == "apple's sales +0% at seppala - ..."
    assert normalize_headline("   ") == ""
    # the codes are base 128 over ASCII: "ab" = 97 * 128 + 98
    assert char_code("ab") == 97 * 128 + 98
    # each row holds its distinct n-grams (2..3 here), padded with 0
    codes = char_ngram_codes(["abab", "", "ab"], 2, 3)
    want = [{char_code(g) for g in ("ab", "ba", "aba", "bab")}, set(), {char_code("ab")}]
    assert [set(row[row > 0].tolist()) for row in codes] == want
    assert (codes[0] > 0).sum() == 4 and (codes[1] == 0).all()


def test_the_split_is_stable_and_near_duplicates_share_it() -> None:
    # GIVEN the same tweet with two different links / WHEN / THEN one split, and about 20 % test
    assert split_of("Stocks rise https://t.co/a") == split_of("Stocks rise https://t.co/b")
    texts, _ = generated_headlines(3000, seed=1)
    share = np.mean([split_of(t) == "test" for t in set(texts)])
    assert 0.15 < share < 0.25


# ----------------------------------------------------------------------- ONNX vs sklearn


def write_artefact(path: Path, train: ModuleType, pipeline: Any, finance_rules: str | None) -> Path:
    """``pipeline`` exported by the training script as the packaged artefact (ONNX with the
    metadata the loader checks), its analysis naming ``finance_rules``."""
    metadata = {
        "format": FORMAT,
        "classes": list(train.CLASSES),
        "analysis": {
            "word_pattern": train.WORD_PATTERN,
            "word_ngrams": list(train.WORD_NGRAMS),
            "char_ngrams": list(train.CHAR_NGRAMS),
            "finance_rules": finance_rules,
        },
        "data": {"sha256": "0" * 64},
    }
    path.write_bytes(train.to_onnx(pipeline, metadata).SerializeToString())
    return path


@pytest.mark.parametrize("rules", [True, False])
def test_the_onnx_graph_matches_scikit_learn(tmp_path: Path, rules: bool) -> None:
    # GIVEN a pipeline fitted by the training script's own code on generated headlines (with and
    # without the finance-rule inputs), written as ONNX by its exporter
    train = training_script()
    texts, labels = generated_headlines(400, seed=2)
    pipeline = train.make_pipeline(C=3.0, class_weight=None, char_max_features=3000, rules=rules)
    pipeline.fit(texts, labels)
    path = write_artefact(
        tmp_path / "model.onnx", train, pipeline, headline_rules.VERSION if rules else None
    )
    # WHEN ONNX Runtime scores unseen headlines (more than one batch; unicode, links, numbers,
    # number comparisons, words the vocabulary never saw, an empty one)
    unseen, _ = generated_headlines(BATCH + 50, seed=3)
    unseen += [
        "",
        "  ",
        "Nokia\u2019s orders \u2013 unchanged",
        "zzz qqq",
        "$XYZ up 5 % https://x.y",
        "Operating profit rose to EUR 13.1 mn from EUR 8.7 mn; costs fell",
    ]
    model = HeadlineModel.load(path)
    assert model.finance_rules is rules
    onnx_probs = model.probabilities(unseen)
    # THEN the probabilities equal scikit-learn's on the raw text
    sk_probs = pipeline.predict_proba(unseen)
    diff = np.abs(onnx_probs - sk_probs).max(axis=1)
    print(f"max {diff.max():.2e}, p99 {np.quantile(diff, 0.99):.2e}")
    assert diff.max() < 1e-5
    # AND the classifier learned something (the oracle is the template's label)
    held_out, truth = generated_headlines(200, seed=4)
    assert (model.probabilities(held_out).argmax(axis=1) == truth).mean() > 0.9


def test_an_artefact_with_other_finance_rules_is_refused(tmp_path: Path) -> None:
    # GIVEN an artefact whose metadata names finance rules this package does not have
    train = training_script()
    texts, labels = generated_headlines(200, seed=5)
    pipeline = train.make_pipeline(C=1.0, class_weight=None, char_max_features=1000, rules=True)
    pipeline.fit(texts, labels)
    path = write_artefact(tmp_path / "model.onnx", train, pipeline, "finance-rules/0")
    # WHEN / THEN loading it fails with a clear error instead of scoring with other inputs
    with pytest.raises(HeadlineModelError, match="finance rules"):
        HeadlineModel.load(path)


# ---------------------------------------------------------------------- the packaged model


def test_the_packaged_artefact_loads_with_its_provenance() -> None:
    # GIVEN the artefact inside the package / WHEN it is loaded
    model = HeadlineModel.load(ARTEFACT)
    # THEN it is small, names its data, hyper-parameters and held-out figures, and scores
    assert ARTEFACT.stat().st_size <= 5 * 1024 * 1024
    meta = model.metadata
    assert meta["format"] == FORMAT and model.classes == ("negative", "positive", "neutral")
    assert len(meta["data"]["sha256"]) == 64 and meta["data"]["licence"] == "MIT"
    assert meta["selected_by"] == "accuracy on the validation split of the tweets"
    assert set(meta["hyper_parameters"]) == {
        "C",
        "class_weight",
        "char_max_features",
        "generated_weight",
    }
    assert meta["generated"]["script"] == "training/sentiment/generated.py"
    assert not model.finance_rules and meta["analysis"]["finance_rules"] is None
    assert meta["parity_vs_sklearn_on_test"]["max_abs_diff"] < 1e-5
    scores = model.scores(["Shares plunged after the profit warning", "", "Revenue rose 20 %"])
    assert scores[0] < 0 < scores[2] and scores[1] == 0.0
    assert model.name == f"headline-onnx:{meta['data']['sha256'][:12]}"


@pytest.mark.shared_data
def test_the_artefact_names_the_data_it_was_trained_on(shared_data: Path) -> None:
    # GIVEN the tweets file / WHEN hashed / THEN it is the one in the artefact's metadata
    data = shared_data / "sentiment/twitter_financial_news/sent_train.csv"
    digest = hashlib.sha256(data.read_bytes()).hexdigest()
    assert HeadlineModel.load(ARTEFACT).metadata["data"]["sha256"] == digest


@pytest.mark.shared_data
@pytest.mark.slow
def test_the_committed_artefact_is_what_the_script_trains(shared_data: Path) -> None:
    # GIVEN the training script's data, split and the artefact's own hyper-parameters
    train = training_script()
    frame, _ = train.read_data(shared_data / "sentiment/twitter_financial_news/sent_train.csv")
    model = HeadlineModel.load(ARTEFACT)
    fit_rows = frame[frame["split"] != "test"]
    # WHEN scikit-learn refits it (with the generated sentences the metadata names)
    params = model.metadata["hyper_parameters"]
    assert (params.get("generated_weight") is not None) == (
        model.metadata.get("generated") is not None
    )
    pipeline = train.fit(fit_rows, params, rules=model.finance_rules)
    # THEN ONNX Runtime on the committed artefact gives scikit-learn's probabilities on the
    # held-out rows
    test = frame[frame["split"] == "test"]
    texts = test["text"].tolist()
    diff = np.abs(model.probabilities(texts) - pipeline.predict_proba(texts))
    print(f"max {diff.max():.2e}")
    assert diff.max() < 1e-5


def phrasebank(shared_data: Path, name: str) -> tuple[list[str], np.ndarray]:
    raw = (shared_data / "sentiment/financial_phrasebank" / name).read_bytes()
    rows = [
        line.rsplit("@", 1) for line in raw.decode("utf-8", "replace").splitlines() if "@" in line
    ]
    return [s for s, _ in rows], np.array([tag.strip() for _, tag in rows])


@pytest.mark.shared_data
def test_accuracy_on_held_out_tweets_and_on_the_phrasebank(shared_data: Path) -> None:
    # GIVEN the held-out tweets (never fitted or tuned on) and the PhraseBank (a different kind
    # of text, never trained or tuned on)
    tweets = pd.read_csv(shared_data / "sentiment/twitter_financial_news/sent_train.csv")
    test = tweets[[split_of(t) == "test" for t in tweets["text"]]]
    sets = {
        "tweets": (test["text"].tolist(), test["label"].map(TWEET_LABELS).to_numpy()),
        "AllAgree": phrasebank(shared_data, "Sentences_AllAgree.txt"),
        "50Agree": phrasebank(shared_data, "Sentences_50Agree.txt"),
    }
    model = HeadlineModel.load(ARTEFACT)
    for name, (texts, truth) in sets.items():
        # WHEN the model labels them
        accuracy = float((model.labels(texts) == truth).mean())
        majority = float((truth == "neutral").mean())
        print(f"{name}: accuracy {accuracy:.4f}, majority class {majority:.4f}")
        # THEN it beats always-neutral, and holds its measured level
        assert accuracy > majority + 0.02, name
        assert accuracy >= FLOORS[name], name
