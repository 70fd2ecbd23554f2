"""Figures as written and the values they stand for (runtime.agent.figures)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from runtime.agent.figures import figure_found, figures_in


def test_figures_are_read_with_their_precision_scale_and_percent():
    """Grouped thousands, currency, scale words and percentages are read as written."""
    found = figures_in("Total $1,234.57, about 12.5 million in all; 42 % paid; -5 left; 3k rows")
    assert [(f.text, f.value, f.places, f.scale, f.percent) for f in found] == [
        ("$1,234.57", Decimal("1234.57"), 2, 0, False),
        ("12.5 million", Decimal("12500000"), 1, 6, False),
        ("42 %", Decimal("42"), 0, 0, True),
        ("-5", Decimal("-5"), 0, 0, False),
        ("3k", Decimal("3000"), 0, 3, False),
    ]


def test_dates_list_numbers_ordinals_and_identifiers_are_not_figures():
    """A date, a numbered list's numbers, an ordinal and digits inside a word say no figure."""
    assert figures_in("Issued on 2024-03-15 for Q3 by v4, the 2nd time:\n1. Acme\n2. Zenith") == []


@pytest.mark.parametrize(("written", "value", "holds"), [
    ("1,234.57", 1234.5678, True),
    ("1,234.57", 1234.58, False),
    ("1,235", 1234.5678, True),
    ("1,234", 1234.5678, False),
    ("12.5 million", 12_456_789, True),
    ("12.5 million", 12_556_789, False),
    ("42%", 0.42, True),
    ("42%", 42, True),
    ("42%", 0.43, False),
    ("120", 120, True),
    ("120", "120", True),
    ("120", 121, False),
    ("0", 0, True),
    ("5", None, False),
    ("-5", 5, False),
])
def test_a_figure_stands_for_a_value_rounded_to_its_precision(written, value, holds):
    """`stands_for` compares after formatting: the value rounded to the figure's last digit."""
    (figure,) = figures_in(written)
    assert figure.stands_for(value) is holds


def test_figure_found_picks_the_first_figure_that_stands_for_the_value():
    """Of several figures, the first one that stands for the value is returned."""
    figures = figures_in("There are 42 invoices worth 1,109,000 in total.")
    assert figure_found(figures, 1109000.0).text == "1,109,000"
    assert figure_found(figures, 43) is None
