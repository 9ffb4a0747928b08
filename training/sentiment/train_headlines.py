"""Train the headline sentiment model and write its ONNX artefact into the package.

    python training/sentiment/train_headlines.py [--data CSV] [--out ONNX]
        [--no-generated] [--rules]

Data: the "Twitter Financial News Sentiment" training split (MIT licence), English finance
tweets labelled 0 bearish / 1 bullish / 2 neutral, by default from
``../shared/data/sentiment/twitter_financial_news/sent_train.csv``; and, unless
``--no-generated``, company-results sentences written by ``generated.py`` beside this script
(templates of this project, labelled by construction). Nothing else is read: the Financial
PhraseBank (non-commercial licence) is never used to train, choose or design anything, only
scored afterwards by ``benchmarks/sentiment.py``.

Protocol (tweets split by a hash of their normalised text, ``stockml.features.headlines.split_of``):

1. every hyper-parameter combination in ``GRID`` (and, with generated sentences, each of
   ``GENERATED_WEIGHTS``: their total weight relative to the tweets') is fitted on the
   ``train`` tweets (+ the generated sentences) and scored on the ``validation`` tweets; the
   most accurate wins (ties: the first in grid order);
2. the winner is refitted on ``train + validation`` (+ the generated sentences) and scored
   ONCE on the ``test`` tweets (held out);
3. the fitted pipeline is written as one ONNX graph, checked against scikit-learn's
   probabilities on the test rows, and saved with the data's sha256, the hyper-parameters and
   the figures in its metadata. The last line printed is one JSON object.

The model: TF-IDF over binary word 1-2-grams and character 2-5-grams of
``normalize_headline(text)`` (scikit-learn's own analyzers, an independent implementation of
what ``stockml.features.headlines`` computes at scoring time, so the parity check tests both),
with ``--rules`` the four counts of ``stockml.features.headline_rules`` (direction words and
number comparisons next to financial quantities), then a multinomial logistic regression.
The defaults train the shipped model; ``CANDIDATES.md`` beside this script lists every
variant that was tried and how each scored.
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
from sklearn.preprocessing import FunctionTransformer

from stockml.features import headline_rules
from stockml.features.headlines import (
    ARTEFACT,
    FORMAT,
    HeadlineModel,
    char_code,
    finance_features,
    normalize_headline,
    split_of,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
import generated  # noqa: E402 - the generated sentences beside this script

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
# the generated sentences: how many, their seed, and their total weight relative to the tweets'
GENERATED_ROWS = 6000
GENERATED_SEED = 0
GENERATED_WEIGHTS = [0.25, 0.5, 1.0]
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


def make_pipeline(
    C: float, class_weight: str | None, char_max_features: int, rules: bool = False
) -> Pipeline:
    """TF-IDF (binary word and char n-grams, l2 per kind) [+ the finance rules] + multinomial
    logistic regression, over raw headlines (the vectorizers normalise them)."""
    common = {
        "binary": True,
        "lowercase": False,
        "preprocessor": normalize_headline,
        "min_df": MIN_DF,
        "dtype": np.float64,
    }
    words = TfidfVectorizer(token_pattern=WORD_PATTERN, ngram_range=WORD_NGRAMS, **common)
    chars = TfidfVectorizer(
        analyzer="char", ngram_range=CHAR_NGRAMS, max_features=char_max_features, **common
    )
    parts: list[tuple[str, Any]] = [("words", words), ("chars", chars)]
    if rules:
        parts.append(("rules", FunctionTransformer(_rule_features)))
    return Pipeline(
        [
            ("tfidf", FeatureUnion(parts)),
            ("model", LogisticRegression(C=C, class_weight=class_weight, max_iter=5000)),
        ]
    )


def _rule_features(texts: Any) -> np.ndarray:
    return finance_features(list(texts)).astype(np.float64)


def training_rows(
    tweets: pd.DataFrame, generated_weight: float | None
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Texts, labels and sample weights: the tweets (weight 1) and, when ``generated_weight``
    is set, the generated sentences, weighing ``generated_weight`` x the tweets in all."""
    texts, labels = tweets["text"].tolist(), tweets["label"].to_numpy()
    weights = np.ones(len(texts))
    if generated_weight:
        extra = generated.generate(GENERATED_ROWS, GENERATED_SEED)
        texts += extra["text"].tolist()
        labels = np.r_[labels, extra["label"].to_numpy()]
        weights = np.r_[weights, np.full(len(extra), generated_weight * len(tweets) / len(extra))]
    return texts, labels, weights


def fit(tweets: pd.DataFrame, params: dict[str, Any], rules: bool) -> Pipeline:
    """The pipeline of ``params`` fitted on ``tweets`` (+ the generated sentences it names)."""
    model_params = {k: params[k] for k in GRID}
    texts, labels, weights = training_rows(tweets, params.get("generated_weight"))
    pipeline = make_pipeline(**model_params, rules=rules)
    return pipeline.fit(texts, labels, model__sample_weight=weights)


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
    transformers = dict(pipeline.named_steps["tfidf"].transformer_list)
    words, chars = transformers["words"], transformers["chars"]
    rules = "rules" in transformers
    model = pipeline.named_steps["model"]
    n_words, n_chars = len(words.vocabulary_), len(chars.vocabulary_)
    nodes, inits = [], []
    for name, vectorizer, coef, keys in (
        ("words", words, model.coef_[:, :n_words], list(words.vocabulary_)),
        (
            "chars",
            chars,
            model.coef_[:, n_words : n_words + n_chars],
            [char_code(k) for k in chars.vocabulary_],
        ),
    ):
        branch_nodes, branch_inits = _branch(name, vectorizer, coef, keys)
        nodes += branch_nodes
        inits += branch_inits
    logits = ["words_logit", "chars_logit", "bias"]
    inputs = [
        helper.make_tensor_value_info("words", TensorProto.STRING, [None, None]),
        helper.make_tensor_value_info("chars", TensorProto.INT64, [None, None]),
    ]
    if rules:
        # the rule counts times their coefficients
        n_rules = len(headline_rules.FEATURES)
        rule_coef = model.coef_[:, n_words + n_chars :]
        assert rule_coef.shape[1] == n_rules
        nodes.append(helper.make_node("MatMul", ["finance", "finance_w"], ["finance_logit"]))
        inits.append(numpy_helper.from_array(rule_coef.T.astype(np.float32), "finance_w"))
        inputs.append(helper.make_tensor_value_info("finance", TensorProto.FLOAT, [None, n_rules]))
        logits.append("finance_logit")
    nodes += [
        helper.make_node("Sum", logits, ["logits"]),
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
        inputs,
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
    parser.add_argument(
        "--no-generated",
        action="store_true",
        help="train on the tweets only (no generated sentences)",
    )
    parser.add_argument(
        "--rules",
        action="store_true",
        help="add the finance-rule inputs (a candidate, not shipped)",
    )
    args = parser.parse_args(argv)
    rules = args.rules
    started = time.perf_counter()
    frame, sha256 = read_data(args.data)
    part = {name: frame[frame["split"] == name] for name in ("train", "validation", "test")}
    print({name: len(rows) for name, rows in part.items()})

    # 1. hyper-parameters on the validation split of the tweets
    grid = dict(GRID)
    if not args.no_generated:
        grid["generated_weight"] = GENERATED_WEIGHTS
    search = []
    for values in itertools.product(*grid.values()):
        params = dict(zip(grid, values, strict=True))
        fitted = fit(part["train"], params, rules)
        score = accuracy(
            part["validation"]["label"].to_numpy(), fitted.predict(part["validation"]["text"])
        )
        search.append({**params, "validation_accuracy": score})
        print(f"{params}: validation accuracy {score}", flush=True)
    best = max(search, key=lambda r: r["validation_accuracy"])  # first of the ties
    params = {k: best[k] for k in grid}

    # 2. refit on train + validation, score once on the held-out test split
    fit_rows = pd.concat([part["train"], part["validation"]])
    pipeline = fit(fit_rows, params, rules)
    test = part["test"]
    truth = test["label"].to_numpy()
    sk_probs = pipeline.predict_proba(test["text"].tolist())
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
    generated_meta = None
    if not args.no_generated:
        generated_meta = {
            "script": "training/sentiment/generated.py",
            "rows": GENERATED_ROWS,
            "seed": GENERATED_SEED,
            "licence": "MIT (templates written for this project)",
            "labels": "by construction: a quantity's good direction x the direction stated",
        }
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
            "finance_rules": headline_rules.VERSION if rules else None,
        },
        "data": {
            "name": "Twitter Financial News Sentiment (training split)",
            "file": args.data.name,
            "sha256": sha256,
            "rows": len(frame),
            "licence": "MIT",
            "split": "sha256 of the normalised text: test 20 %, validation 16 %, train 64 %",
            "fitted_on": "train + validation"
            + (" + the generated sentences" if generated_meta else ""),
        },
        "generated": generated_meta,
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
        "generated": generated_meta is not None,
        "finance_rules": rules,
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
