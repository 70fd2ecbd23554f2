"""What a data answer shows of its query's result (runtime.domain.results): types, rows,
limits and the chart, decided in code."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest

from runtime.domain.results import (
    CELL_CHARS,
    EVENT_BYTES,
    ROWS_SHOWN,
    cell_value,
    chart_for,
    column_type,
    result_shown,
)


def shown(columns, rows, **more):
    return result_shown(sql="SELECT 1", columns=columns, rows=rows,
                        row_count=more.pop("row_count", len(rows)), **more)


@pytest.mark.parametrize("name, values, kind", [
    ("total", [1, 2.5, Decimal("3.10"), None], "number"),
    ("name", ["Acme", None], "text"),
    ("month", ["2024-01", "2024-02"], "date"),
    ("started", ["2024-03-15", "2024-03-16 10:00:00", "2024-03-17T09:30"], "date"),
    ("started", [dt.date(2024, 3, 15)], "date"),
    ("year", [2023, 2024], "date"),
    ("year", ["2023"], "date"),
    ("count", [2023, 2024], "number"),       # a year only in a column named for one
    ("flag", [True, False], "text"),         # a boolean is not a number to plot
    ("mixed", [1, "two"], "text"),
    ("nothing", [None, None], "text"),
])
def test_column_types_come_from_the_values(name, values, kind):
    assert column_type(name, values) == kind


def test_a_ranked_list_is_a_bar_chart_with_its_label_and_its_numbers():
    result = shown(["id", "name", "projects", "budget"],
                   [[i, f"c{i}", 10 - i, 1000.5 * i] for i in range(1, 11)])
    # The key column is never plotted.
    assert result["chart"] == {"kind": "bar", "x": "name", "y": ["projects", "budget"]}
    assert [c["type"] for c in result["columns"]] == ["number", "text", "number", "number"]


def test_a_date_column_with_numbers_is_a_line():
    result = shown(["month", "hours"], [["2024-01", 12], ["2024-02", 30], ["2024-03", 8]])
    assert result["chart"] == {"kind": "line", "x": "month", "y": ["hours"]}


@pytest.mark.parametrize("columns, rows", [
    (["count"], [[120]]),                                   # a single value: the figure
    (["name", "projects"], [["Acme", 3]]),                  # one row
    (["name", "city"], [["Acme", "Oslo"], ["Bolt", "Rome"]]),  # no numbers
    (["name", "city", "projects"], [["A", "O", 1], ["B", "R", 2]]),  # two label columns
    (["customer_id", "projects"], [[1, 3], [2, 4]]),       # only a key for a label
    (["name", "n"], [[f"c{i}", i] for i in range(51)]),    # more bars than fit
])
def test_every_other_shape_is_a_table_only(columns, rows):
    assert shown(columns, rows)["chart"]["kind"] == "none"


def test_a_capped_result_has_no_chart_and_says_it_was_capped():
    result = shown(["name", "n"], [["a", 1], ["b", 2]], truncated=True)
    assert result["capped"] is True and result["chart"]["kind"] == "none"
    assert chart_for(["name", "n"], ["text", "number"], 2, capped=True)["kind"] == "none"


def test_at_most_100_rows_are_carried_and_the_cut_is_said():
    rows = [[i, f"name {i}"] for i in range(150)]
    result = shown(["n", "name"], rows, row_count=150)
    assert len(result["rows"]) == ROWS_SHOWN and result["row_count"] == 150
    assert result["cut"] == "rows"
    assert shown(["n"], [[1], [2]])["cut"] == ""
    # Fewer rows kept than the query gave (a trace of older code kept 50): said as cut too.
    assert shown(["n"], [[i] for i in range(50)], row_count=80)["cut"] == "rows"


def test_long_texts_are_cut_to_200_characters_and_the_event_stays_under_64_kb():
    long = "x" * 1000
    result = shown(["note"], [[long]])
    assert result["rows"][0][0] == "x" * (CELL_CHARS - 1) + "…" and result["shortened"]
    # 100 rows of ten long texts would be ~200 KB: cut to what fits, and said.
    rows = [[long] * 10 for _ in range(100)]
    result = shown([f"c{i}" for i in range(10)], rows)
    assert result["cut"] == "bytes" and 0 < len(result["rows"]) < 100
    assert len(json.dumps(result).encode()) <= EVENT_BYTES


def test_cells_are_json_values():
    assert cell_value(Decimal("12.50")) == 12.5 and cell_value(Decimal("7")) == 7
    assert cell_value(dt.datetime(2024, 3, 1, 9, 30)) == "2024-03-01T09:30:00"
    assert cell_value(b"\x00\x01") == "(2 bytes)"
    assert cell_value(float("nan")) == "nan"
    result = shown(["when", "amount"], [[dt.date(2024, 1, 2), Decimal("3.5")]])
    assert result["rows"] == [["2024-01-02", 3.5]]
    json.dumps(result)  # every value serialisable as it is
