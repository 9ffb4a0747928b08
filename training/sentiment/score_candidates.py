"""Score finished candidates, once, on the held-out tweets and on the Financial PhraseBank.

    python training/sentiment/score_candidates.py --onnx F1=PATH --onnx F2=PATH [--teacher F3]
        [--out training/sentiment/candidates.json]

Run once, with every candidate of ``CANDIDATES.md`` after each was fully chosen on the tweets'
validation split; nothing is tuned on what it prints (the PhraseBank's licence is
non-commercial: it is scored, never trained or tuned on). For each candidate and data set:
accuracy, always-neutral's accuracy and the recall of each class. ``--teacher NAME`` scores
the sentence-encoder reference that ``teacher.py`` fitted. The last line printed is one JSON
object; ``--out`` keeps it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from stockml.features.headlines import HeadlineModel, split_of

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_headlines import CLASSES, DATA, REPO  # noqa: E402

SENTIMENT = REPO.parent / "shared" / "data" / "sentiment"
TWEET_LABELS = dict(enumerate(CLASSES))


def data_sets() -> dict[str, tuple[list[str], np.ndarray]]:
    tweets = pd.read_csv(DATA)
    test = tweets[[split_of(t) == "test" for t in tweets["text"]]]
    sets = {"tweets_test": (test["text"].tolist(), test["label"].map(TWEET_LABELS).to_numpy())}
    for name in ("AllAgree", "50Agree"):
        raw = (SENTIMENT / "financial_phrasebank" / f"Sentences_{name}.txt").read_bytes()
        rows = [r.rsplit("@", 1) for r in raw.decode("utf-8", "replace").splitlines() if "@" in r]
        sets[name] = ([s for s, _ in rows], np.array([tag.strip() for _, tag in rows]))
    return sets


def figures(predicted: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    out = {
        "n": len(truth),
        "accuracy": round(float((predicted == truth).mean()), 4),
        "accuracy_majority": round(float((truth == "neutral").mean()), 4),
    }
    for cls in CLASSES:
        out[f"recall_{cls}"] = round(float((predicted[truth == cls] == cls).mean()), 4)
    return out


def teacher_labels(texts: list[str]) -> np.ndarray:
    from teacher import OUT, embed

    fitted = np.load(OUT / "teacher.npz")
    logits = embed(texts) @ fitted["coef"].T + fitted["intercept"]
    return np.asarray(CLASSES, dtype=object)[logits.argmax(axis=1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--onnx", action="append", default=[], help="NAME=PATH of an artefact")
    parser.add_argument("--teacher", help="NAME of the sentence-encoder reference")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    sets = data_sets()
    result: dict[str, dict[str, object]] = {}
    for spec in args.onnx:
        name, path = spec.split("=", 1)
        model = HeadlineModel.load(path)
        result[name] = {
            "artefact_bytes": Path(path).stat().st_size,
            "hyper_parameters": model.metadata["hyper_parameters"],
            "generated": model.metadata.get("generated") is not None,
            "finance_rules": model.finance_rules,
        }
        for key, (texts, truth) in sets.items():
            result[name][key] = figures(model.labels(texts), truth)
        print(name, result[name], flush=True)
    if args.teacher:
        result[args.teacher] = {}
        for key, (texts, truth) in sets.items():
            result[args.teacher][key] = figures(teacher_labels(texts), truth)
        print(args.teacher, result[args.teacher], flush=True)
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
