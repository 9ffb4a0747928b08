"""The headline sentiment model: text normalisation, n-gram analysis, and its ONNX artefact.

A linear classifier over TF-IDF word 1-2-grams and character 2-5-grams (binary term
presence, l2-normalised per n-gram kind) and, when the artefact says so, the four counts of
the finance rules (:mod:`stockml.features.headline_rules`: direction words and number
comparisons next to financial quantities), trained by ``training/sentiment/train_headlines.py``
on labelled finance news tweets and generated company-results sentences. The work is split
in two:

- here, in plain Python and numpy: :func:`fold_headline` / :func:`normalize_headline` (one
  normalisation for training and scoring), the n-gram analysis (the word n-grams as strings,
  the character n-grams as exact integer codes, base 128 over ASCII: ``"ab"`` -> ``97 * 128 +
  98``, each distinct n-gram once per headline) and the rule counts;
- in the ONNX artefact, run by ONNX Runtime: everything learned (vocabularies, idf weights,
  coefficients), the normalisation and the softmax.

The artefact's metadata names the data it was trained on (file, sha256, licence; the
generated sentences' script and seed), the hyper-parameters and the held-out figures;
:meth:`HeadlineModel.load` checks the format and the rules' version and runs the model once
before anyone relies on it. Nothing here imports scikit-learn.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stockml.errors import StockmlError
from stockml.features import headline_rules

ARTEFACT = Path(__file__).resolve().parent / "data" / "headline_sentiment.onnx"
FORMAT = "stockml-headline-sentiment/1"
# rows per ONNX Runtime call: padding is per batch, so a long headline widens only its batch
BATCH = 256

# typographic punctuation that news feeds use, mapped before the ASCII fold drops it
_TYPOGRAPHY = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u2013": "-",
        "\u2014": "-",
        "\u2026": "...",
        "\u00a0": " ",
    }
)
_URL = re.compile(r"https?://\S+|www\.\S+")
# a ticker as a tweet writes it ($AAPL): the company says nothing about the direction
_CASHTAG = re.compile(r"\$[a-z][a-z.]*")
_DIGITS = re.compile(r"\d+")
_NOT_PRINTABLE = re.compile(r"[^ -~]+")
_SPACES = re.compile(r"\s+")


class HeadlineModelError(StockmlError):
    """The headline sentiment artefact is missing, corrupt or not in the expected format."""


def fold_headline(text: str) -> str:
    """Lower-case printable ASCII without URLs or cashtags, numbers kept (the finance rules read them).

    Accents are folded (``é`` -> ``e``), typographic quotes and dashes become ASCII,
    whitespace runs one space.
    """
    text = unicodedata.normalize("NFKD", str(text).translate(_TYPOGRAPHY))
    text = text.encode("ascii", "ignore").decode("ascii").lower()
    text = _URL.sub(" ", text)
    text = _CASHTAG.sub(" ", text)
    text = _NOT_PRINTABLE.sub(" ", text)
    return _SPACES.sub(" ", text).strip()


def normalize_headline(text: str) -> str:
    """The text the n-grams read: :func:`fold_headline` with every run of digits as ``0``.

    ``+18%`` and ``+3%`` read alike.
    """
    return _DIGITS.sub("0", fold_headline(text))


def finance_features(texts: Sequence[str]) -> np.ndarray:
    """The finance rules' counts of raw headlines (:mod:`stockml.features.headline_rules`)."""
    return headline_rules.counts([fold_headline(t) for t in texts])


def word_ngrams(text: str, pattern: re.Pattern[str], n_max: int) -> list[str]:
    """Distinct word n-grams (1..``n_max``) of a normalised text, tokens joined by one space."""
    tokens = pattern.findall(text)
    grams = list(tokens)
    for n in range(2, n_max + 1):
        grams += [" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    return list(dict.fromkeys(grams))


def char_code(gram: str) -> int:
    """The integer code of a character n-gram (printable ASCII, so codes of any length differ)."""
    code = 0
    for char in gram:
        code = code * 128 + ord(char)
    return code


def char_ngram_codes(texts: Sequence[str], n_min: int, n_max: int) -> np.ndarray:
    """Codes of the distinct character n-grams of each normalised text, one row per text.

    Args:
        texts: normalised texts (printable ASCII: :func:`normalize_headline`).
        n_min, n_max: n-gram lengths, 1 <= n_min <= n_max <= 8 (codes stay below 2**56).

    Returns:
        int64 array ``(len(texts), width)``, each row's codes then 0 (no n-gram has code 0).
    """
    lens = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
    buf = np.frombuffer("".join(texts).encode("ascii"), dtype=np.uint8).astype(np.int64)
    end = np.repeat(np.cumsum(lens), lens)  # where the text of each character ends in ``buf``
    start = np.arange(len(buf), dtype=np.int64)
    # codes[k, n - n_min]: the n-gram starting at character k, 0 where it runs past its text
    codes = np.zeros((len(buf), n_max - n_min + 1), dtype=np.int64)
    code = buf.copy()
    for n in range(1, n_max + 1):
        if n > 1:
            # in place: code[k] becomes the n-gram at k, from the (n-1)-gram at k and char k+n-1
            code[: len(buf) - n + 1] = code[: len(buf) - n + 1] * 128 + buf[n - 1 :]
        if n >= n_min:
            codes[:, n - n_min] = np.where(start + n <= end, code, 0)
    # row-major: the codes stay grouped by text, in text order; the key adds the text's index
    shift = np.int64(7 * n_max)
    flat = codes.ravel()
    owner = np.repeat(np.arange(len(texts), dtype=np.int64), lens * codes.shape[1])
    present = flat > 0
    # distinct per text, first occurrences in order (a hash table: no sort)
    keys = pd.unique(owner[present] << shift | flat[present])
    key_rows = keys >> shift
    counts = np.bincount(key_rows, minlength=len(texts))
    out = np.zeros((len(texts), max(int(counts.max(initial=0)), 1)), dtype=np.int64)
    first = np.cumsum(counts) - counts
    out[key_rows, np.arange(len(keys)) - first[key_rows]] = keys & ((np.int64(1) << shift) - 1)
    return out


def split_of(text: str) -> str:
    """``"test"`` (20 %), ``"validation"`` (16 %) or ``"train"`` for a labelled headline.

    By a hash of its normalised text, so the split needs no seed, never changes when rows are
    added, and near-duplicates (the same tweet with another link) share a split.
    """
    bucket = int(hashlib.sha256(normalize_headline(text).encode()).hexdigest()[:8], 16) % 100
    return "test" if bucket < 20 else "validation" if bucket < 36 else "train"


@dataclass(frozen=True)
class HeadlineModel:
    """The ONNX artefact, loaded for ONNX Runtime; scores headlines in batches."""

    session: Any
    metadata: dict[str, Any]
    classes: tuple[str, ...]
    word_pattern: re.Pattern[str]
    word_n_max: int
    char_range: tuple[int, int]
    finance_rules: bool

    @classmethod
    def load(cls, path: Path | str = ARTEFACT) -> HeadlineModel:
        """Open the artefact, check its format and run it once.

        Raises:
            HeadlineModelError: missing file, not ONNX, unknown format, or a test run whose
                output is not one probability per class.
        """
        path = Path(path)
        if not path.is_file():
            raise HeadlineModelError(f"{path} does not exist")
        try:
            import onnxruntime as ort

            options = ort.SessionOptions()
            # the features job scores on one core; more threads only contend with pandas
            options.intra_op_num_threads = 1
            options.inter_op_num_threads = 1
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            meta = session.get_modelmeta().custom_metadata_map
            info = json.loads(meta["stockml"])
        except Exception as exc:  # noqa: BLE001 - any failure here means an unusable file
            raise HeadlineModelError(f"{path} cannot be loaded: {exc}") from exc
        if info.get("format") != FORMAT:
            raise HeadlineModelError(f"{path}: format {info.get('format')!r}, expected {FORMAT}")
        analysis = info["analysis"]
        rules = analysis.get("finance_rules")
        if rules not in (None, headline_rules.VERSION):
            raise HeadlineModelError(
                f"{path}: finance rules {rules!r}, this package has {headline_rules.VERSION}"
            )
        model = cls(
            session=session,
            metadata=info,
            classes=tuple(info["classes"]),
            word_pattern=re.compile(analysis["word_pattern"]),
            word_n_max=int(analysis["word_ngrams"][1]),
            char_range=(int(analysis["char_ngrams"][0]), int(analysis["char_ngrams"][1])),
            finance_rules=rules is not None,
        )
        probe = model.probabilities(["Shares rose after the results", ""])
        if probe.shape != (2, len(model.classes)) or not np.allclose(probe.sum(axis=1), 1.0):
            raise HeadlineModelError(f"{path}: a test run gave {probe!r}")
        return model

    @property
    def name(self) -> str:
        """``headline-onnx:<first 12 hex digits of the training data's sha256>``."""
        return f"headline-onnx:{self.metadata['data']['sha256'][:12]}"

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        """Class probabilities ``(len(texts), len(classes))`` in ``classes`` order (float32)."""
        folded = [fold_headline(t) for t in texts]
        # batches of similar lengths: rows are padded to the longest of their batch
        order = np.argsort([len(t) for t in folded], kind="stable")
        ordered = [folded[i] for i in order]
        out = np.zeros((len(texts), len(self.classes)), np.float32)
        for i in range(0, len(ordered), BATCH):
            out[order[i : i + BATCH]] = self._run(ordered[i : i + BATCH])
        return out

    def _run(self, folded: list[str]) -> np.ndarray:
        texts = [_DIGITS.sub("0", t) for t in folded]
        words = [word_ngrams(t, self.word_pattern, self.word_n_max) for t in texts]
        width = max(1, max(len(w) for w in words))
        word_grams = np.full((len(texts), width), "", dtype=object)
        for i, grams in enumerate(words):
            word_grams[i, : len(grams)] = grams
        feeds = {"words": word_grams, "chars": char_ngram_codes(texts, *self.char_range)}
        if self.finance_rules:
            feeds["finance"] = headline_rules.counts(folded)
        return self.session.run(["probabilities"], feeds)[0]

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        """P(positive) - P(negative) per text, in [-1, 1]; an empty text scores 0."""
        probs = self.probabilities(texts).astype("float64")
        score = probs[:, self.classes.index("positive")] - probs[:, self.classes.index("negative")]
        empty = np.array([not normalize_headline(t) for t in texts], dtype=bool)
        return np.where(empty, 0.0, score)

    def labels(self, texts: Sequence[str]) -> np.ndarray:
        """The most probable class of each text."""
        return np.asarray(self.classes, dtype=object)[self.probabilities(texts).argmax(axis=1)]
