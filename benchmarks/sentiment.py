"""Headline sentiment accuracy on the Financial PhraseBank: our finance scorer vs plain VADER.

Needs ``../shared/data/sentiment/financial_phrasebank`` (non-commercial licence: measured here,
never shipped). The last line printed is one JSON object.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from stockml.features.sentiment import label, plain_vader_score, score_text

DATA = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "sentiment" / "financial_phrasebank"
)


def main() -> None:
    if not DATA.is_dir():
        print(json.dumps({"error": f"{DATA} is absent"}))
        sys.exit(1)
    result: dict[str, object] = {}
    for name in ("Sentences_AllAgree.txt", "Sentences_50Agree.txt"):
        text = (DATA / name).read_bytes().decode("utf-8", "replace")
        rows = [line.rsplit("@", 1) for line in text.splitlines() if "@" in line]
        truth = np.array([tag.strip() for _, tag in rows])
        start = time.perf_counter()
        ours = np.array([label(score_text(s)) for s, _ in rows])
        per_s = len(rows) / (time.perf_counter() - start)
        plain = np.array([label(plain_vader_score(s), 0.05) for s, _ in rows])
        key = name.removeprefix("Sentences_").removesuffix(".txt")
        figures = {
            "n": len(rows),
            "accuracy_ours": round(float((ours == truth).mean()), 4),
            "accuracy_plain_vader": round(float((plain == truth).mean()), 4),
            "accuracy_majority": round(float((truth == "neutral").mean()), 4),
            "headlines_per_s": round(per_s),
        }
        for cls in ("positive", "negative", "neutral"):
            hit = truth == cls
            figures[f"recall_{cls}"] = round(float((ours[hit] == cls).mean()), 4)
        print(f"{key}: {figures}")
        result[key] = figures
    print(json.dumps(result))


if __name__ == "__main__":
    main()
