"""Train the headline sentiment model and write its ONNX artefact into the package.

    python training/sentiment/train_headlines.py [--data CSV] [--out ONNX]

Data: the "Twitter Financial News Sentiment" training split (MIT licence), English finance
tweets labelled 0 bearish / 1 bullish / 2 neutral, by default from
``../shared/data/sentiment/twitter_financial_news/sent_train.csv``. Nothing else is read: the
Financial PhraseBank (non-commercial licence) is never used to train or to choose anything,
only scored afterwards by ``benchmarks/sentiment.py``.

Protocol (rows split by a hash of their normalised text, ``stockml.features.headlines.split_of``):

1. every hyper-parameter combination in ``GRID`` is fitted on ``train`` and scored on
   ``validation``; the most accurate wins (ties: the first in grid order, the simplest);
2. the winner is refitted on ``train + validation`` and scored ONCE on ``test`` (held out);
3. the fitted pipeline is written as one ONNX graph, checked against scikit-learn's
   probabilities on the test rows, and saved with the data's sha256, the hyper-parameters and
   the figures in its metadata. The last line printed is one JSON object.

The model: TF-IDF over binary word 1-2-grams and character 2-5-grams of
``normalize_headline(text)`` (scikit-learn's own analyzers, an independent implementation of
what ``stockml.features.headlines`` computes at scoring time, so the parity check tests both),
then a multinomial logistic regression.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import sklearn
from onnx import TensorProto, helper, numpy_helper
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, Pipeline

from stockml.features.headlines import (
    ARTEFACT,
    FORMAT,
    HeadlineModel,
    char_code,
    normalize_headline,
    split_of,
)

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data" / "sentiment" / "twitter_financial_news" / "sent_train.csv"
# the data set's label ids, in order: the model's output columns
CLASSES = ("negative", "positive", "neutral")
WORD_PATTERN = r"[a-z0-9%']+"
WORD_NGRAMS = (1, 2)
CHAR_NGRAMS = (2, 5)
MIN_DF = 2
GRID: dict[str, list[Any]] = {
    "C": [1.0, 3.0, 10.0, 30.0],
    "class_weight": [None, "balanced"],
    "char_max_features": [20000, 50000],
}
MAX_BYTES = 5 * 1024 * 1024
PARITY_TOLERANCE = 1e-5


def read_data(path: Path) -> tuple[pd.DataFrame, str]:
    """The labelled tweets (``text``, ``label`` 0/1/2, ``split``) and the file's sha256."""
    raw = path.read_bytes()
    frame = pd.read_csv(path)
    if list(frame.columns) != ["text", "label"] or not frame["label"].isin([0, 1, 2]).all():
        raise SystemExit(f"{path}: expected columns text,label with labels 0/1/2")
    frame["split"] = [split_of(t) for t in frame["text"]]
    return frame, hashlib.sha256(raw).hexdigest()


def make_pipeline(C: float, class_weight: str | None, char_max_features: int) -> Pipeline:
    """TF-IDF (binary word and char n-grams, l2 per kind) + multinomial logistic regression."""
    common = {"binary": True, "lowercase": False, "min_df": MIN_DF, "dtype": np.float64}
    words = TfidfVectorizer(token_pattern=WORD_PATTERN, ngram_range=WORD_NGRAMS, **common)
    chars = TfidfVectorizer(
        analyzer="char", ngram_range=CHAR_NGRAMS, max_features=char_max_features, **common
    )
    return Pipeline(
        [
            ("tfidf", FeatureUnion([("words", words), ("chars", chars)])),
            ("model", LogisticRegression(C=C, class_weight=class_weight, max_iter=5000)),
        ]
    )


def _branch(name: str, vectorizer: TfidfVectorizer, coef: np.ndarray, keys: list[Any]) -> tuple:
    """Nodes and initialisers of one n-gram kind: vocabulary lookup, idf-weighted sums, l2 norm.

    With binary term presence, the l2-normalised TF-IDF row times the coefficients is
    ``sum(idf_j * w_j) / sqrt(sum(idf_j ** 2))`` over the distinct n-grams present, so the graph
    gathers per n-gram instead of building a dense vocabulary-wide vector. Index 0 is the
    unknown n-gram (and the padding): idf 0, weights 0.
    """
    order = np.argsort([vectorizer.vocabulary_[k] for k in vectorizer.vocabulary_])
    vocab = list(vectorizer.vocabulary_)
    columns = [vectorizer.vocabulary_[vocab[i]] for i in order]
    idf = np.r_[0.0, vectorizer.idf_].astype(np.float32)
    weights = np.vstack([np.zeros((1, coef.shape[0])), (coef * vectorizer.idf_).T])
    key_attr = (
        {"keys_strings": [keys[i] for i in order]}
        if isinstance(keys[0], str)
        else {"keys_int64s": [int(keys[i]) for i in order]}
    )
    nodes = [
        helper.make_node(
            "LabelEncoder",
            [name],
            [f"{name}_ids"],
            domain="ai.onnx.ml",
            values_int64s=[c + 1 for c in columns],
            default_int64=0,
            **key_attr,
        ),
        helper.make_node("Gather", [f"{name}_idf", f"{name}_ids"], [f"{name}_idf_g"]),
        helper.make_node("ReduceSumSquare", [f"{name}_idf_g", "axis1"], [f"{name}_sq"]),
        helper.make_node("Sqrt", [f"{name}_sq"], [f"{name}_norm"]),
        # no known n-gram: sklearn leaves the zero row as is; 0 / tiny keeps it 0
        helper.make_node("Max", [f"{name}_norm", "tiny"], [f"{name}_norm_safe"]),
        helper.make_node("Gather", [f"{name}_w", f"{name}_ids"], [f"{name}_w_g"]),
        helper.make_node("ReduceSum", [f"{name}_w_g", "axis1"], [f"{name}_dot"], keepdims=0),
        helper.make_node("Div", [f"{name}_dot", f"{name}_norm_safe"], [f"{name}_logit"]),
    ]
    inits = [
        numpy_helper.from_array(idf, f"{name}_idf"),
        numpy_helper.from_array(weights.astype(np.float32), f"{name}_w"),
    ]
    return nodes, inits


def to_onnx(pipeline: Pipeline, metadata: dict[str, Any]) -> onnx.ModelProto:
    """The fitted pipeline as one ONNX graph: inputs ``words`` (strings) and ``chars`` (codes)."""
    words, chars = (v for _, v in pipeline.named_steps["tfidf"].transformer_list)
    model = pipeline.named_steps["model"]
    n_words = len(words.vocabulary_)
    nodes, inits = [], []
    for name, vectorizer, coef, keys in (
        ("words", words, model.coef_[:, :n_words], list(words.vocabulary_)),
        ("chars", chars, model.coef_[:, n_words:], [char_code(k) for k in chars.vocabulary_]),
    ):
        branch_nodes, branch_inits = _branch(name, vectorizer, coef, keys)
        nodes += branch_nodes
        inits += branch_inits
    nodes += [
        helper.make_node("Sum", ["words_logit", "chars_logit", "bias"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    inits += [
        numpy_helper.from_array(np.array([1e-12], np.float32), "tiny"),
        numpy_helper.from_array(np.array([1], np.int64), "axis1"),
        numpy_helper.from_array(model.intercept_.astype(np.float32), "bias"),
    ]
    graph = helper.make_graph(
        nodes,
        "headline_sentiment",
        [
            helper.make_tensor_value_info("words", TensorProto.STRING, [None, None]),
            helper.make_tensor_value_info("chars", TensorProto.INT64, [None, None]),
        ],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, len(CLASSES)])],
        inits,
    )
    onnx_model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("ai.onnx.ml", 3)],
        producer_name="stockml training/sentiment/train_headlines.py",
    )
    helper.set_model_props(onnx_model, {"stockml": json.dumps(metadata, sort_keys=True)})
    onnx.checker.check_model(onnx_model)
    return onnx_model


def accuracy(truth: np.ndarray, predicted: np.ndarray) -> float:
    return round(float((truth == predicted).mean()), 4)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA, help="sent_train.csv (text,label)")
    parser.add_argument("--out", type=Path, default=ARTEFACT, help="the ONNX artefact to write")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    frame, sha256 = read_data(args.data)
    frame["clean"] = [normalize_headline(t) for t in frame["text"]]
    part = {name: frame[frame["split"] == name] for name in ("train", "validation", "test")}
    print({name: len(rows) for name, rows in part.items()})

    # 1. hyper-parameters on the validation split
    search = []
    for values in itertools.product(*GRID.values()):
        params = dict(zip(GRID, values, strict=True))
        fitted = make_pipeline(**params).fit(part["train"]["clean"], part["train"]["label"])
        score = accuracy(
            part["validation"]["label"].to_numpy(), fitted.predict(part["validation"]["clean"])
        )
        search.append({**params, "validation_accuracy": score})
        print(f"{params}: validation accuracy {score}", flush=True)
    best = max(search, key=lambda r: r["validation_accuracy"])  # first of the ties
    params = {k: best[k] for k in GRID}

    # 2. refit on train + validation, score once on the held-out test split
    fit_rows = pd.concat([part["train"], part["validation"]])
    pipeline = make_pipeline(**params).fit(fit_rows["clean"], fit_rows["label"])
    test = part["test"]
    truth = test["label"].to_numpy()
    sk_probs = pipeline.predict_proba(test["clean"])
    held_out = {
        "rows": len(test),
        "accuracy": accuracy(truth, sk_probs.argmax(axis=1)),
        "majority_class_accuracy": accuracy(truth, np.full(len(truth), 2)),
        **{
            f"recall_{name}": accuracy(truth[truth == i], sk_probs[truth == i].argmax(axis=1))
            for i, name in enumerate(CLASSES)
        },
    }
    print(f"held-out test: {held_out}")

    # 3. export, parity, metadata
    metadata = {
        "format": FORMAT,
        "classes": list(CLASSES),
        "analysis": {
            "normalize": "stockml.features.headlines.normalize_headline",
            "word_pattern": WORD_PATTERN,
            "word_ngrams": list(WORD_NGRAMS),
            "char_ngrams": list(CHAR_NGRAMS),
            "binary": True,
            "min_df": MIN_DF,
        },
        "data": {
            "name": "Twitter Financial News Sentiment (training split)",
            "file": args.data.name,
            "sha256": sha256,
            "rows": len(frame),
            "licence": "MIT",
            "split": "sha256 of the normalised text: test 20 %, validation 16 %, train 64 %",
            "fitted_on": "train + validation",
        },
        "hyper_parameters": params,
        "selected_by": "accuracy on the validation split of the tweets",
        "search": search,
        "held_out_test": held_out,
        "versions": {"scikit-learn": sklearn.__version__, "onnx": onnx.__version__},
        "script": "training/sentiment/train_headlines.py",
    }
    # parity first (on a scratch file), then the artefact with the parity figures in its metadata
    args.out.parent.mkdir(parents=True, exist_ok=True)
    scratch = args.out.with_suffix(".parity.onnx")
    scratch.write_bytes(to_onnx(pipeline, metadata).SerializeToString())
    try:
        onnx_probs = HeadlineModel.load(scratch).probabilities(test["text"].tolist())
    finally:
        scratch.unlink()
    diff = np.abs(onnx_probs - sk_probs).max(axis=1)
    parity = {"max_abs_diff": float(diff.max()), "p99_abs_diff": float(np.quantile(diff, 0.99))}
    print(f"ONNX Runtime vs scikit-learn on {len(test)} held-out rows: {parity}")
    if parity["max_abs_diff"] > PARITY_TOLERANCE:
        raise SystemExit(f"ONNX parity failed: {parity}")
    metadata["parity_vs_sklearn_on_test"] = parity
    payload = to_onnx(pipeline, metadata).SerializeToString()
    if len(payload) > MAX_BYTES:
        raise SystemExit(f"the artefact is {len(payload)} bytes, over {MAX_BYTES}")
    args.out.write_bytes(payload)
    summary = {
        "artefact": str(args.out),
        "bytes": len(payload),
        "data_sha256": sha256,
        "hyper_parameters": params,
        "validation_accuracy": best["validation_accuracy"],
        "test": held_out,
        "parity": parity,
        "ort_version": ort.__version__,
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
