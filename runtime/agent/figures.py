"""Figures as a person writes them, and whether one stands for a value.

An answer says "1,234.57", "$12.5 million", "42 %" or "3k"; a query result holds
1234.5678, 12456789.0, 0.42 or 3012. `figures_in` reads the figures of a text with
the precision they were written at, and `Figure.stands_for` says whether a
value, rounded to that precision, is the figure: that is the only comparison
the grounding check (runtime.agent.grounding) and the suites' `figure matches`
check make, so "after formatting" means the same thing to both.

What is not a figure: digits inside a word or an identifier (`Q3`, `v4`,
`INV-0012` is read as one value, see `values_in`), ordinals ("1st"), and the
numbers of a numbered list ("1. Acme").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

SCALES = {
    "k": 3, "thousand": 3, "m": 6, "mn": 6, "million": 6, "millions": 6,
    "bn": 9, "b": 9, "billion": 9, "billions": 9,
}
"""Scale words a figure may carry, as powers of ten."""

_FIGURE = re.compile(
    r"(?<![\w.\-/])"                      # not inside a word, a decimal, a date or an id
    r"(?P<sign>[-−])?"
    r"[$€£]?\s?"
    r"(?P<number>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
    r"(?:\s?(?P<scale>thousand|millions?|billions?|mn|bn|[kKmMbB])\b)?"
    r"(?P<percent>\s?%|\s?percent\b)?"
    r"(?![\w\-/]|\.\d|st\b|nd\b|rd\b|th\b)"
)
_DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2})?)?\b")
_LIST_NUMBER = re.compile(r"^\s*\d{1,2}[.)]\s+", re.MULTILINE)


@dataclass(frozen=True)
class Figure:
    """One figure as written in a text."""

    text: str
    """The figure as it stands in the text (`$1,234.57`, `12.5 million`)."""
    value: Decimal
    """What it says, scale and percent applied (`12.5 million` -> 12500000)."""
    places: int
    """The decimal places it was written with, in its own scale (`12.5 million` -> 1)."""
    scale: int = 0
    """The power of ten of its scale word (`million` -> 6)."""
    percent: bool = False
    """Written as a percentage (`42 %`): 0.42 and 42 both stand for it."""

    @property
    def tolerance(self) -> Decimal:
        """Half a unit of its last written digit, in the value's own units."""
        return Decimal(5).scaleb(-self.places - 1 + self.scale)

    def stands_for(self, value: Any) -> bool:
        """Whether `value` (a result's cell: int, float, Decimal or numeric text), rounded
        to this figure's precision, is this figure."""
        number = as_number(value)
        if number is None:
            return False
        candidates = [number]
        if self.percent:
            candidates.append(number * 100)  # a share 0.42 read as 42 %
        return any(abs(abs(c) - abs(self.value)) <= self.tolerance
                   and (c >= 0) == (self.value >= 0 or c == 0) for c in candidates)


def as_number(value: Any) -> Decimal | None:
    """A cell as a Decimal when it is a number (or text that is only one); else None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float | Decimal):
        try:
            number = Decimal(str(value))
        except InvalidOperation:
            return None
        return number if number.is_finite() else None
    if isinstance(value, str):
        text = value.strip().replace(",", "")
        if re.fullmatch(r"-?\d+(?:\.\d+)?", text):
            return Decimal(text)
    return None


def figures_in(text: str) -> list[Figure]:
    """The figures a text states, in order (dates, list numbers and ordinals left out)."""
    text = _LIST_NUMBER.sub(" ", _DATE.sub(" ", text))
    found = []
    for match in _FIGURE.finditer(text):
        digits = match["number"].replace(",", "")
        places = len(digits.split(".")[1]) if "." in digits else 0
        scale = SCALES.get((match["scale"] or "").lower(), 0)
        if match["scale"] in ("m", "M", "b", "B") and not any(s in match.group(0) for s in "$€£"):
            scale = 0  # "5 m" is five metres; "$5m" is five million
        value = Decimal(digits).scaleb(scale)
        if match["sign"]:
            value = -value
        percent = bool(match["percent"])
        found.append(Figure(text=match.group(0).strip(), value=value, places=places,
                            scale=scale, percent=percent))
    return found


def figure_found(figures: list[Figure], value: Any) -> Figure | None:
    """The first of `figures` that stands for `value`, if any."""
    return next((f for f in figures if f.stands_for(value)), None)
