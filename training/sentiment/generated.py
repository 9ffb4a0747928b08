"""Generated company-results sentences, labelled by construction, for the headline model.

    python training/sentiment/generated.py [--rows N] [--seed S]   # prints a sample

The finance news tweets the headline model learns from hardly contain the language of company
reports ("net sales increased by 5 % to EUR 20 mn", "the operating loss narrowed"). This module
writes such sentences from templates that encode what any reader of financial statements knows:

- a financial quantity has a good direction: sales, orders, profit, margins, the dividend and
  the share price are better up; a loss, costs, debt, impairments and lay-offs are worse up;
- a direction word says where it went (rose, fell, narrowed, widened, "higher", "lower"), and
  "from X to Y" / "X compared with Y" says it with numbers;
- the news is positive when a quantity moved in its good direction, negative otherwise;
  clear events carry their own direction (an order won, guidance raised, a profit warning,
  plant closures); a level without a comparison, a schedule, an appointment, a description or
  "unchanged" is neutral.

The templates, words and names were written for this project (MIT, like the project); no
sentence of any labelled corpus was read to write them. Every class draws on the same
companies, amounts, periods and quantities, so those carry no label by themselves; what
decides the label is the direction and the quantity's polarity. The output is deterministic
for a seed.
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Callable

import pandas as pd

NEGATIVE, POSITIVE, NEUTRAL = 0, 1, 2  # the tweets' label ids

COMPANIES = [
    "Acme",
    "Nordvik Group",
    "Baltic Paper",
    "Helix Systems",
    "Corvid Marine",
    "Lumen Foods",
    "Ostra Telecom",
    "Kestrel Bank",
    "Vantor Steel",
    "Aurelia Pharma",
    "Silvan Retail",
    "Tarn Energy",
    "Polaris Logistics",
    "Meridian Software",
    "Halden Chemicals",
    "Brightwater Utilities",
    "Quarry Hill Mining",
    "Orrin Motors",
    "Calder Insurance",
    "Fennick Media",
    "Granite Construction Partners",
    "Sable Airlines",
    "Wexford Brewing",
    "Ironleaf Forest Products",
    "Cobalt Semiconductors",
    "Linden Healthcare",
    "Marlow Engineering",
    "Riverton Foods",
    "Solberg Shipping",
    "Tessera Electronics",
]
SUBJECTS = [
    "the company",
    "the group",
    "the bank",
    "the retailer",
    "the Swedish engineering group",
    "the US chipmaker",
    "the German carmaker",
    "the Canadian miner",
    "the British insurer",
    "the Dutch brewer",
    "the Norwegian shipping company",
    "the Japanese electronics maker",
    "the paper maker",
    "the airline",
    "the software company",
    "the telecoms operator",
]
# financial quantities, by the direction that is good news
GOOD_UP = [
    "net sales",
    "sales",
    "revenue",
    "revenues",
    "turnover",
    "operating profit",
    "net profit",
    "profit",
    "pre-tax profit",
    "profit before taxes",
    "earnings",
    "earnings per share",
    "EPS",
    "EBIT",
    "EBITDA",
    "operating income",
    "net income",
    "order intake",
    "orders",
    "order backlog",
    "operating margin",
    "gross margin",
    "cash flow",
    "operating cash flow",
    "comparable sales",
    "like-for-like sales",
    "market share",
    "deliveries",
    "shipments",
    "passenger numbers",
    "subscriber numbers",
    "return on equity",
    "bookings",
    "the dividend",
    "the share price",
]
GOOD_DOWN = [
    "operating loss",
    "net loss",
    "loss",
    "pre-tax loss",
    "loss before taxes",
    "costs",
    "operating costs",
    "operating expenses",
    "net debt",
    "impairment charges",
    "write-downs",
    "restructuring costs",
    "credit losses",
    "loan losses",
    "staff costs",
]
LOSSES = ["operating loss", "net loss", "loss", "pre-tax loss", "loss before taxes"]
UP_VERBS = [
    "rose",
    "increased",
    "grew",
    "climbed",
    "jumped",
    "surged",
    "went up",
    "was up",
    "advanced",
    "rose sharply",
    "increased significantly",
    "edged up",
    "soared",
]
DOWN_VERBS = [
    "fell",
    "decreased",
    "declined",
    "dropped",
    "slipped",
    "went down",
    "was down",
    "slumped",
    "plunged",
    "shrank",
    "fell sharply",
    "decreased significantly",
    "edged down",
]
UP_GOOD_ONLY = ["improved", "strengthened", "doubled", "more than doubled"]
DOWN_GOOD_ONLY = ["weakened", "deteriorated", "was halved"]
LOSS_DOWN = ["narrowed", "was reduced", "shrank"]
LOSS_UP = ["widened", "deepened", "grew"]
CURRENCIES = ["EUR", "USD", "SEK", "NOK", "GBP", "DKK", "CHF", "$"]
UNITS = ["mn", "million", "m", "bn", "billion"]
PERIODS = [
    "in the first quarter",
    "in the second quarter of 2009",
    "in the third quarter",
    "in the fourth quarter of 2007",
    "in January-March",
    "in January-September 2008",
    "in the first half of the year",
    "in the first half of 2010",
    "in 2007",
    "in the financial year",
    "in the reporting period",
    "in the nine-month period",
    "last year",
    "in the quarter",
    "in Q2",
    "in fiscal 2009",
    "",
]
COMPARISONS = [
    "year-on-year",
    "from the previous year",
    "compared with the corresponding period a year earlier",
    "from a year ago",
    "on the year",
    "from the same period last year",
    "",
]
PRIOR = [
    "in the corresponding period of 2006",
    "a year earlier",
    "in the same period last year",
    "in the previous quarter",
    "in 2007",
    "a year ago",
]
PEOPLE = ["Anna Berg", "John Miller", "Mikko Laine", "Sarah Chen", "Lars Holm", "Maria Rossi"]
ROLES = ["chief executive officer", "CFO", "head of sales", "chairman of the board", "CEO"]
PLACES = ["Helsinki", "Stockholm", "Poland", "China", "the Baltic countries", "Texas", "Germany"]
PRODUCTS = ["paper", "steel pipes", "packaging", "software", "cables", "frozen food", "tyres"]
CLIENTS = ["a German utility", "the city of Oslo", "a US retailer", "a Chinese steel mill"]
DATES = ["15 February 2008", "April 29", "24 October", "March 3, 2010", "next week", "1 June 2009"]


class _Writer:
    """Random parts, drawn from one seeded generator."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def pick(self, options: list[str]) -> str:
        return self.rng.choice(options)

    def company(self) -> str:
        return self.pick(COMPANIES) if self.rng.random() < 0.7 else self.pick(SUBJECTS)

    def number(self, low: float = 0.3, high: float = 900.0) -> float:
        value = self.rng.uniform(low, high)
        return round(value, self.rng.choice([0, 1, 1, 2]))

    def amount(self, value: float | None = None) -> str:
        value = self.number() if value is None else value
        cur, unit = self.pick(CURRENCIES), self.pick(UNITS)
        if cur == "$":
            return f"${value:g} {unit}" if unit in ("million", "billion") else f"${value:g}{unit}"
        return f"{cur} {value:g} {unit}" if self.rng.random() < 0.8 else f"{value:g} {unit} {cur}"

    def pct(self) -> str:
        value = self.number(0.5, 60.0)
        return f"{value:g}%" if self.rng.random() < 0.6 else f"{value:g} percent"

    def pair(self, up: bool) -> tuple[str, str]:
        """Two amounts in one currency and unit: (new, old), new above old when ``up``."""
        old = self.number(1.0, 500.0)
        new = round(old * self.rng.uniform(1.05, 2.5), 1)
        if not up:
            old, new = new, old
        cur, unit = self.pick(CURRENCIES[:-1]), self.pick(UNITS[:3])
        return f"{cur} {new:g} {unit}", f"{cur} {old:g} {unit}"


# quantities that are ratios or counts: moved by a percentage, never by an amount of money
UNITLESS = {
    "operating margin",
    "gross margin",
    "market share",
    "return on equity",
    "passenger numbers",
    "subscriber numbers",
    "deliveries",
    "shipments",
    "EPS",
    "earnings per share",
    "the share price",
}
# quantities measured in money (a level or a comparison of amounts makes sense)
MONEY_UP = [q for q in GOOD_UP if q not in UNITLESS and not q.startswith("the ")]
# verbs that already say by how much
NO_AMOUNT = {"doubled", "more than doubled", "was halved"}


def _moved(w: _Writer, up: bool, quantity: str, verb: str) -> str:
    """A quantity that went up or down, with or without numbers."""
    if verb in NO_AMOUNT:
        forms = [1, 2, 4] if quantity not in UNITLESS else [4]
    elif quantity in UNITLESS:
        forms = [0, 4, 5]
    else:
        forms = [0, 1, 2, 3, 4, 5]
    form = w.rng.choice(forms)
    tail = " ".join(p for p in (w.pick(PERIODS), w.pick(COMPARISONS)) if p)
    if form == 0:
        body = f"{quantity} {verb} by {w.pct()}"
    elif form == 1:
        new, old = w.pair(up)
        body = f"{quantity} {verb} to {new} from {old}"
    elif form == 2:
        new, old = w.pair(up)
        body = f"{quantity} {verb} from {old} to {new}"
    elif form == 3:
        body = f"{quantity} {verb} by {w.pct()} to {w.amount()}"
    elif form == 4:
        body = f"{quantity} {verb}"
    else:
        body = f"{quantity} {verb} {w.pct()}"
    return _statement(w, body, tail)


def _sentence(text: str) -> str:
    text = " ".join(text.split()).replace(" ,", ",")
    return f"{text[0].upper()}{text[1:]}."


def _statement(w: _Writer, body: str, tail: str) -> str:
    """A statement about a quantity, put the ways a report or a wire says it."""
    company = w.company()
    form = w.rng.randrange(5)
    if form == 0:
        return _sentence(f"{company}'s {body} {tail}")
    if form == 1:
        return _sentence(f"{company} said its {body} {tail}")
    if form == 2:
        return _sentence(f"{body} {tail}, {company} said")
    if form == 3 and tail:
        return _sentence(f"{tail}, {body}")
    return _sentence(f"{body} {tail}")


def _predicate(w: _Writer, predicate: str, tail: str = "") -> str:
    """What a company did: ``<company> <predicate> <tail>``, or the tail first."""
    company = w.company()
    if tail and w.rng.random() < 0.3:
        return _sentence(f"{tail}, {company} {predicate}")
    return _sentence(f"{company} {predicate} {tail}")


def _compared(w: _Writer, good: bool) -> str:
    """A level compared with an earlier one: the numbers decide (no direction word)."""
    up = w.rng.random() < 0.5
    quantity = w.pick(MONEY_UP) if up == good else w.pick(GOOD_DOWN)
    new, old = w.pair(up)
    verb = w.pick(["totalled", "amounted to", "was", "stood at", "came to"])
    link = w.pick(["compared with", "compared to", "versus", "against"])
    return _statement(w, f"{quantity} {verb} {new}, {link} {old} {w.pick(PRIOR)}", w.pick(PERIODS))


def positive(w: _Writer) -> str:
    kind = w.rng.randrange(10)
    if kind <= 2:
        return _moved(w, True, w.pick(GOOD_UP), w.pick(UP_VERBS + UP_GOOD_ONLY))
    if kind == 3:
        quantity = w.pick(GOOD_DOWN)
        verbs = DOWN_VERBS + LOSS_DOWN if quantity in LOSSES else DOWN_VERBS
        return _moved(w, False, quantity, w.pick(verbs))
    if kind == 4:
        return _compared(w, True)
    if kind == 5:
        adjective = w.pick(["higher", "record", "stronger", "better-than-expected", "increased"])
        return _predicate(w, f"{w.pick(['reported', 'posted'])} {adjective} {w.pick(MONEY_UP)}")
    if kind == 6:
        quantity = w.pick(GOOD_DOWN)
        adjective = "a narrower" if quantity in LOSSES else "lower"
        return _predicate(w, f"reported {adjective} {quantity}", w.pick(PERIODS))
    if kind == 7:
        return _predicate(
            w,
            f"swung to an operating profit of {w.amount()} from a loss of {w.amount()}",
            w.pick(PERIODS),
        )
    event = w.pick(
        [
            f"won an order worth {w.amount()} from {w.pick(CLIENTS)}",
            f"raised its full-year {w.pick(['outlook', 'guidance', 'profit forecast'])}",
            "beat analysts' expectations",
            f"expects its {w.pick(GOOD_UP)} to increase in 2010",
            f"shares rose {w.pct()} after the results",
            f"was awarded a contract worth {w.amount()}",
            f"expects its {w.pick(GOOD_DOWN)} to decrease this year",
        ]
    )
    return _predicate(w, event)


def negative(w: _Writer) -> str:
    kind = w.rng.randrange(10)
    if kind <= 2:
        return _moved(w, False, w.pick(GOOD_UP), w.pick(DOWN_VERBS + DOWN_GOOD_ONLY))
    if kind == 3:
        quantity = w.pick(GOOD_DOWN)
        verbs = UP_VERBS + LOSS_UP if quantity in LOSSES else UP_VERBS
        return _moved(w, True, quantity, w.pick(verbs))
    if kind == 4:
        return _compared(w, False)
    if kind == 5:
        adjective = w.pick(
            ["lower", "weaker", "disappointing", "decreased", "weaker-than-expected"]
        )
        return _predicate(w, f"{w.pick(['reported', 'posted'])} {adjective} {w.pick(MONEY_UP)}")
    if kind == 6:
        quantity = w.pick(GOOD_DOWN)
        adjective = "a wider" if quantity in LOSSES else "higher"
        return _predicate(w, f"reported {adjective} {quantity}", w.pick(PERIODS))
    if kind == 7:
        return _predicate(
            w,
            f"swung to an operating loss of {w.amount()} from a profit of {w.amount()}",
            w.pick(PERIODS),
        )
    event = w.pick(
        [
            "issued a profit warning",
            f"cut its full-year {w.pick(['outlook', 'guidance', 'profit forecast'])}",
            "missed analysts' expectations",
            f"expects its {w.pick(GOOD_UP)} to decrease in 2010",
            f"shares fell {w.pct()} after the results",
            f"will lay off {int(w.number(20, 900))} employees",
            f"plans to cut {int(w.number(20, 900))} jobs in {w.pick(PLACES)}",
            f"will close its {w.pick(PRODUCTS)} plant in {w.pick(PLACES)}",
            f"expects its {w.pick(GOOD_DOWN)} to increase this year",
        ]
    )
    return _predicate(w, event)


def neutral(w: _Writer) -> str:
    kind = w.rng.randrange(10)
    quantity = w.pick(MONEY_UP + GOOD_DOWN)
    if kind <= 2:
        verb = w.pick(["totalled", "amounted to", "was", "stood at", "came to"])
        return _statement(w, f"{quantity} {verb} {w.amount()}", w.pick(PERIODS))
    if kind == 3:
        verb = w.pick(
            [
                "was unchanged",
                "remained stable",
                "remained at the previous year's level",
                "was flat",
                "stayed at",
            ]
        )
        tail = w.amount() if verb == "stayed at" else w.pick(PERIODS)
        return _statement(w, f"{quantity} {verb}", tail)
    if kind == 4:
        report = w.pick(["interim report", "annual report", "results", "financial statements"])
        return _predicate(w, f"will publish its {report} on {w.pick(DATES)}")
    if kind == 5:
        return _predicate(w, f"appointed {w.pick(PEOPLE)} as {w.pick(ROLES)}")
    if kind == 6:
        return _predicate(
            w,
            w.pick(
                [
                    f"employs about {int(w.number(50, 9000))} people in {w.pick(PLACES)}",
                    f"is headquartered in {w.pick(PLACES)}",
                    f"makes {w.pick(PRODUCTS)} for customers in {w.pick(PLACES)}",
                    f"operates {int(w.number(3, 400))} stores in {w.pick(PLACES)}",
                    f"will build a {w.pick(PRODUCTS)} plant in {w.pick(PLACES)}",
                ]
            ),
        )
    if kind == 7:
        return _predicate(
            w,
            w.pick(
                [
                    f"acquired {w.pick(COMPANIES)} for {w.amount()}",
                    f"signed an agreement with {w.pick(COMPANIES)}",
                    f"will sell its {w.pick(PRODUCTS)} business to {w.pick(COMPANIES)}",
                    f"expects its {quantity} to remain at the same level as in 2009",
                    "did not disclose the value of the contract",
                ]
            ),
        )
    if kind == 8:
        return w.pick(
            [
                "Financial details of the deal were not disclosed.",
                f"The transaction is expected to be completed {w.pick(PERIODS) or 'this year'}.",
                f"The figures are unaudited and were published on {w.pick(DATES)}.",
                f"The shares will be listed on the stock exchange on {w.pick(DATES)}.",
                f"The annual general meeting will be held on {w.pick(DATES)}.",
                f"The report covers {quantity} by business area and by region.",
            ]
        )
    return _predicate(w, f"will report its {quantity} by segment from {w.pick(DATES)}")


WRITERS: dict[int, Callable[[_Writer], str]] = {
    NEGATIVE: negative,
    POSITIVE: positive,
    NEUTRAL: neutral,
}


def generate(rows: int = 6000, seed: int = 0) -> pd.DataFrame:
    """``rows`` sentences (``text``, ``label`` 0 negative / 1 positive / 2 neutral), a third each."""
    w = _Writer(seed)
    labels = [(NEGATIVE, POSITIVE, NEUTRAL)[i % 3] for i in range(rows)]
    return pd.DataFrame({"text": [WRITERS[y](w) for y in labels], "label": labels})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for row in generate(args.rows, args.seed).itertuples():
        print(f"{('negative', 'positive', 'neutral')[row.label]:>8}  {row.text}")


if __name__ == "__main__":
    main()
