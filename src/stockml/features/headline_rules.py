"""Finance rules for the headline model: which way a financial quantity moved, and was that good.

Hand-written knowledge of financial reporting, computed at scoring time in plain Python and
fed to the headline model as four extra inputs (their weights are learned with the n-grams'):

- a direction word next to a financial quantity: ``sales rose``, ``higher costs``, ``the loss
  narrowed``, ``raises guidance``, ``shares tumble``. The quantity has a good direction
  (sales, orders, profit, margins, the share price, guidance: up; a loss, costs, debt,
  impairments, unemployment: down), the word has a direction (up: rose, higher, widened,
  record...; down: fell, lower, narrowed, cut...): the product says good (+1) or bad (-1) news;
- a number comparison after a financial quantity: ``to EUR 13.1 mn from EUR 8.7 mn``,
  ``from 8.7 to 13.1``, ``13.1 compared with 8.7``, ``EUR 13.1 mn (EUR 8.7 mn)``: the sign of
  new - old (units mn / bn / thousand understood) times the quantity's polarity.

Outputs per text (clipped at 3): good-news and bad-news direction pairs, good-news and
bad-news number comparisons. A direction word pairs with the nearest quantity within
:data:`WINDOW` characters (the preceding one on a tie), never across ``.`` or ``;``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

VERSION = "finance-rules/1"
FEATURES = ("direction_good", "direction_bad", "numbers_good", "numbers_bad")
WINDOW = 40  # characters between a direction word and its quantity
NUMBER_WINDOW = 80  # characters between a quantity and the comparison after it
CLIP = 3.0

# financial quantities: +1 when up is good news, -1 when up is bad news
_GOOD_UP = """net sales|sales|revenue|revenues|turnover|operating profit|net profit|pre-tax profit|
pretax profit|profit before taxes|profit before tax|profit|profits|earnings per share|earnings|eps|
ebitda|ebit|operating income|net income|income|order intake|orders|order book|order backlog|
backlog|bookings|margin|margins|operating margin|gross margin|cash flow|dividend|dividends|
comparable sales|like-for-like sales|same-store sales|market share|deliveries|shipments|
passenger numbers|traffic|subscribers|customers|return on equity|profitability|share|shares|
stock|stocks|share price|stock price|price target|target price|rating|guidance|outlook|forecast|
forecasts|estimates|expectations|consensus|demand|growth|jobs|employment|payrolls|gdp|exports|
volume|volumes|valuation|market cap|futures|index|indexes|indices|dow|nasdaq|s&p|
economy|confidence|production|output|sentiment"""
_GOOD_DOWN = """operating loss|net loss|pre-tax loss|pretax loss|loss before taxes|loss before tax|loss|
losses|cost|costs|operating costs|operating expenses|expenses|net debt|debt|impairment|impairments|
impairment charges|write-down|write-downs|writedown|writedowns|charges|deficit|unemployment|
jobless claims|layoffs|lay-offs|job cuts|redundancies|churn|defaults|delinquencies|provisions|
loan losses|credit losses"""
_UP = """rise|rises|rising|rose|risen|up|higher|gain|gains|gained|jump|jumps|jumped|soar|soars|
soared|soaring|surge|surges|surged|surging|climb|climbs|climbed|climbing|increase|increases|
increased|increasing|grow|grows|grew|grown|growing|improve|improves|improved|improving|boost|
boosts|boosted|beat|beats|top|tops|topped|exceed|exceeds|exceeded|raise|raises|raised|raising|
lift|lifts|lifted|upgrade|upgrades|upgraded|advance|advances|advanced|double|doubles|doubled|
rebound|rebounds|rebounded|recover|recovers|recovered|widen|widens|widened|wider|deepen|deepens|
deepened|spike|spikes|spiked|rally|rallies|rallied|strengthen|strengthens|strengthened|stronger|
expand|expands|expanded|bigger|record|swell|swelled|picked up|edged up"""
_DOWN = """fall|falls|fell|fallen|falling|drop|drops|dropped|dropping|decline|declines|declined|
declining|decrease|decreases|decreased|decreasing|slip|slips|slipped|slide|slides|slid|sink|sinks|
sank|plunge|plunges|plunged|plunging|tumble|tumbles|tumbled|slump|slumps|slumped|lower|lowers|
lowered|cut|cuts|cutting|reduce|reduces|reduced|reducing|shrink|shrinks|shrank|shrunk|down|weaken|
weakens|weakened|weaker|miss|misses|missed|narrow|narrows|narrowed|narrower|smaller|halve|halves|
halved|downgrade|downgrades|downgraded|slash|slashes|slashed|crash|crashes|crashed|contracted|dip|
dips|dipped|ease|eases|eased|slow|slows|slowed|slower|deteriorate|deteriorates|deteriorated|worse|
worsen|worsened|plummet|plummets|plummeted|trim|trims|trimmed|lose|loses|lost|edged down"""


def _terms(block: str) -> list[str]:
    return [t.strip() for t in block.replace("\n", "").split("|") if t.strip()]


_POLARITY = {t: 1 for t in _terms(_GOOD_UP)} | {t: -1 for t in _terms(_GOOD_DOWN)}
_DIRECTION = {t: 1 for t in _terms(_UP)} | {t: -1 for t in _terms(_DOWN)}
# every term: ("q", polarity) for a quantity, ("d", sign) for a direction word
_TERMS = {t: ("q", v) for t, v in _POLARITY.items()} | {t: ("d", v) for t, v in _DIRECTION.items()}
_LONGEST = max(len(t.split()) for t in _TERMS)
_FIRST_WORDS = {t.split()[0] for t in _TERMS}
# words (letters, "&", "-") and clause stops; terms are runs of words one space apart
_WORDS = re.compile(r"[a-z&-]+|[.;](?!\d)")
_NUM = r"[-+]?\d+(?:[.,]\d+)*"
_AMOUNT = rf"(?:[a-z$]{{1,4}} ?)?({_NUM}) ?(mn|million|bn|billion|thousand|m|b|k|%|percent|pct)?\b"
_COMPARISONS = re.compile(
    "|".join(
        [
            rf"\bto (?P<a>{_AMOUNT}) ?,? ?(?:up |down )?from (?P<b>{_AMOUNT})",  # new, old
            rf"\bfrom (?P<c>{_AMOUNT}) ?,? ?to (?P<d>{_AMOUNT})",  # old, new
            rf"(?P<e>{_AMOUNT}) ?,? ?(?:compared (?:with|to)|versus|vs\.?|against) (?P<f>{_AMOUNT})",
            rf"(?P<g>{_AMOUNT}) ?\( ?(?P<h>{_AMOUNT}) ?\)",  # new (old), as reports print it
        ]
    )
)
_AMOUNT_RE = re.compile(_AMOUNT)
_SCALE = {"thousand": 1e3, "k": 1e3, "mn": 1e6, "million": 1e6, "m": 1e6}
_SCALE |= {"bn": 1e9, "billion": 1e9, "b": 1e9}
# a comparison needs one of these, and a digit
_COMPARISON_WORDS = ("to ", "from ", "compared", "versus", "vs", "against", "(")
_DIGIT = re.compile(r"\d")


def _value(amount: str) -> float | None:
    match = _AMOUNT_RE.search(amount)
    if match is None:
        return None
    digits, unit = match.group(1), match.group(2)
    if re.fullmatch(r"[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?", digits):
        digits = digits.replace(",", "")  # thousands separators
    else:
        digits = digits.replace(",", ".")  # a decimal comma
    try:
        value = float(digits)
    except ValueError:
        return None
    return value * _SCALE.get(unit or "", 1.0)


def _scan(text: str) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]], list[int]]:
    """Quantities ``(start, end, polarity)``, direction words ``(start, end, sign)`` and stops."""
    if not text:
        return [], [], []
    words = [(m.start(), m.end(), m.group()) for m in _WORDS.finditer(text)]
    quantities: list[tuple[int, int, int]] = []
    directions: list[tuple[int, int, int]] = []
    stops: list[int] = []
    i = 0
    while i < len(words):
        start, end, word = words[i]
        if word in (".", ";"):
            stops.append(start)
            i += 1
            continue
        if word not in _FIRST_WORDS:
            i += 1
            continue
        found = None
        # the longest term starting here, its words one space apart ("operating profit")
        for n in range(min(_LONGEST, len(words) - i), 0, -1):
            run = words[i : i + n]
            if any(b[0] != a[1] + 1 for a, b in zip(run, run[1:], strict=False)):
                continue
            term = " ".join(w[2] for w in run)
            if term in _TERMS:
                found = (n, term, run[-1][1])
                break
        if found is None:
            i += 1
            continue
        n, term, term_end = found
        kind, value = _TERMS[term]
        if kind == "q":
            quantities.append((start, term_end, value))
        elif not (term == "up" and i + 1 < len(words) and words[i + 1][2] == "to"):
            directions.append((start, term_end, value))  # "up to EUR 5 mn" is a cap, not a move
        i += n
    return quantities, directions, stops


def _rules(text: str) -> tuple[float, float, float, float]:
    quantities, directions, stops = _scan(text)
    good = bad = 0.0
    for start, end, sign in directions:
        best: tuple[int, int] | None = None  # (distance, polarity)
        for q_start, q_end, polarity in quantities:
            if q_end <= start:
                gap, lo, hi = start - q_end, q_end, start
            elif q_start >= end:
                gap, lo, hi = q_start - end + 1, end, q_start  # + 1: the preceding wins a tie
            else:
                continue
            if gap > WINDOW or any(lo <= s < hi for s in stops):
                continue
            if best is None or gap < best[0]:
                best = (gap, polarity)
        if best is not None:
            if sign * best[1] > 0:
                good += 1
            else:
                bad += 1
    num_good = num_bad = 0.0
    if quantities and _DIGIT.search(text) and any(w in text for w in _COMPARISON_WORDS):
        for match in _COMPARISONS.finditer(text):
            pairs = (("a", "b"), ("d", "c"), ("e", "f"), ("g", "h"))
            new_key, old_key = next((n, o) for n, o in pairs if match.group(n) is not None)
            new, old = _value(match.group(new_key)), _value(match.group(old_key))
            if new is None or old is None or new == old:
                continue
            before = [
                (q_end, polarity)
                for _, q_end, polarity in quantities
                if q_end <= match.start() and match.start() - q_end <= NUMBER_WINDOW
            ]
            if not before:
                continue
            polarity = max(before)[1]  # the nearest quantity before the comparison
            if (new > old) == (polarity > 0):
                num_good += 1
            else:
                num_bad += 1
    return (
        min(good, CLIP),
        min(bad, CLIP),
        min(num_good, CLIP),
        min(num_bad, CLIP),
    )


def counts(folded: Sequence[str]) -> np.ndarray:
    """The rules' four counts per text, float32 ``(len(folded), 4)`` (see :data:`FEATURES`).

    Args:
        folded: headlines as ``stockml.features.headlines.fold_headline`` returns them
            (lower-case ASCII, numbers kept); ``headlines.finance_features`` takes raw ones.
    """
    out = np.zeros((len(folded), len(FEATURES)), dtype=np.float32)
    for i, text in enumerate(folded):
        out[i] = _rules(text)
    return out
