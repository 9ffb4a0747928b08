"""The headline model's finance rules and the generated results sentences it is trained on."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from stockml.features.headline_rules import FEATURES
from stockml.features.headlines import finance_features, fold_headline, normalize_headline

REPO = Path(__file__).resolve().parents[3]


def generated_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "generated", REPO / "training/sentiment/generated.py"
    )
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


# (headline, direction_good, direction_bad, numbers_good, numbers_bad), counted by hand
CASES = [
    ("Operating profit rose to EUR 13.1 mn from EUR 8.7 mn", 1, 0, 1, 0),
    ("Operating profit fell to EUR 8.7 mn from EUR 13.1 mn", 0, 1, 0, 1),
    ("The operating loss narrowed to EUR 2.0 mn", 1, 0, 0, 0),
    ("Net loss widened in the quarter", 0, 1, 0, 0),
    ("Shares plunged after the profit warning", 0, 1, 0, 0),
    ("Uber stock price target raised to $52 from $50 at Wedbush", 1, 0, 1, 0),
    ("Net sales totalled EUR 100 mn, compared with EUR 120 mn a year earlier", 0, 0, 0, 1),
    ("Costs totalled EUR 80 mn, compared with EUR 120 mn a year earlier", 0, 0, 1, 0),
    ("Operating profit was EUR 5.2 mn (EUR 3.1 mn)", 0, 0, 1, 0),
    ("Revenue grew from EUR 900 mn to EUR 1.2 bn", 1, 0, 1, 0),  # units: 1.2 bn > 900 mn
    ("Revenue of 1,200 thousand, versus 1,150 thousand", 0, 0, 1, 0),  # thousands separators
    ("Higher costs hit the bank. Sales rose.", 1, 1, 0, 0),  # never across a full stop
    ("It expects sales of up to EUR 300 mn", 0, 0, 0, 0),  # "up to" is a cap
    ("Acme appointed a new chief executive", 0, 0, 0, 0),
    ("", 0, 0, 0, 0),
    ("Sales rose, rose, rose and rose again", 3, 0, 0, 0),  # clipped at 3
]


@pytest.mark.parametrize(("text", "good", "bad", "num_good", "num_bad"), CASES)
def test_rule_counts_by_hand(text: str, good: int, bad: int, num_good: int, num_bad: int) -> None:
    # GIVEN a headline whose counts were worked out by hand / WHEN / THEN the rules agree
    assert finance_features([text]).tolist() == [[good, bad, num_good, num_bad]]


def test_rules_keep_numbers_that_the_ngrams_fold() -> None:
    # GIVEN one text / WHEN folded for the rules and normalised for the n-grams
    text = "Sales \u2013 up 18.5% to EUR 1,200 mn https://t.co/x $ACME"
    # THEN the rules read the numbers, the n-grams read 0s, and one is the other's digits folded
    assert fold_headline(text) == "sales - up 18.5% to eur 1,200 mn"
    assert normalize_headline(text) == re.sub(r"\d+", "0", fold_headline(text))
    assert finance_features([text]).shape == (1, len(FEATURES))
    assert finance_features([]).shape == (0, len(FEATURES))


def test_generated_sentences_are_balanced_deterministic_and_carry_no_label_in_their_nouns() -> None:
    # GIVEN the generated training sentences
    generated = generated_module()
    frame = generated.generate(3000, seed=0)
    # THEN a third per class, the same for a seed, another for another seed
    assert frame["label"].value_counts().to_dict() == {0: 1000, 1: 1000, 2: 1000}
    assert frame.equals(generated.generate(3000, seed=0))
    assert not frame["text"].equals(generated.generate(3000, seed=1)["text"])
    # AND the companies, currencies and quantities appear in every class (no label by themselves)
    for word in ("Acme", "EUR", "net sales", "operating loss", "quarter"):
        per_class = frame[frame["text"].str.contains(word, regex=False)]["label"].value_counts()
        assert set(per_class.index) == {0, 1, 2}, word


def test_the_rules_read_the_generated_sentences_the_way_they_were_labelled() -> None:
    # GIVEN generated sentences (labelled by their templates) / WHEN the rules count them
    frame = generated_module().generate(1500, seed=3)
    counts = finance_features(frame["text"].tolist())
    good = counts[:, 0] + counts[:, 2]
    bad = counts[:, 1] + counts[:, 3]
    label = frame["label"].to_numpy()
    # THEN good news outweighs bad in most positives, bad outweighs good in most negatives, and
    # most neutral sentences fire no rule (events such as "won an order" are left to the n-grams)
    assert np.mean(good[label == 1] > bad[label == 1]) > 0.7
    assert np.mean(bad[label == 0] > good[label == 0]) > 0.7
    assert np.mean((good + bad)[label == 2] == 0) > 0.9
