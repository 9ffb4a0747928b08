"""The one ticker pattern, shared by the CLI, the providers, the store and the API.

A symbol is upper case ASCII: a letter or digit, then up to 11 more of ``A-Z 0-9 . = -``,
optionally after one leading ``^`` (an index, e.g. ``^GSPC``). So ``MSFT``, ``BRK.B``,
``BRK-B``, ``^VIX``, ``EURUSD=X`` are symbols; ``msft``, ``A/B``, ``../OUTSIDE``, ``..``,
unicode letters and anything longer are not. The pattern keeps a symbol safe as a file name
(the csv provider's ``<SYMBOL>.csv``), an S3 key part and a URL path segment.

This module imports nothing heavy: the serving Lambda uses it.
"""

from __future__ import annotations

import re

from stockml.errors import ValidationError

# no look-arounds: the API hands it to pydantic-core's (Rust) regex engine
SYMBOL_PATTERN = r"^\^?[A-Z0-9][A-Z0-9.=-]{0,11}$"
_SYMBOL_RE = re.compile(SYMBOL_PATTERN)
# how much of a refused symbol an error message repeats
_ECHO = 24


def is_symbol(value: object) -> bool:
    """True when ``value`` is a string matching :data:`SYMBOL_PATTERN`."""
    return isinstance(value, str) and _SYMBOL_RE.fullmatch(value) is not None


def check_symbol(value: str) -> str:
    """Return ``value`` when it is a valid symbol.

    Raises:
        ValidationError: naming the (truncated) value and the rule it breaks.
    """
    if is_symbol(value):
        return value
    shown = value if len(value) <= _ECHO else value[:_ECHO] + f"... ({len(value)} characters)"
    hint = (
        f" (did you mean {value.upper()!r}?)"
        if value.isascii() and is_symbol(value.upper())
        else ""
    )
    raise ValidationError(
        f"invalid symbol {shown!r}{hint}: a symbol is 1-12 of A-Z 0-9 . = - "
        "(upper case, starting with a letter or digit), optionally after a leading ^"
    )
