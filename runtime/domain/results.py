"""A query's result as a person is shown it: typed columns, the first rows, a chart.

Every data answer carries the result it was read from (the `result` chat event,
runtime.wire.ResultEvent): the chat page draws it as a table and, when its shape
calls for one, a chart; `manage.py chat`, the suites and the admin show the same.
What is shown is decided here, in code, never by the model:

- the columns' types (`number`, `date`, `text`) from their values;
- the first ROWS_SHOWN rows, each cell JSON-safe and a long text cut at CELL_CHARS,
  with as many rows as fit in EVENT_BYTES (`cut` says why rows were left out);
- the chart (`chart_for`): a date column and numbers → line; one label column and
  numbers over 2–50 rows → bar; a single value, or anything else → none.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

ROWS_SHOWN = 100
"""The most rows a result event carries (the node keeps as many in the trace)."""
EVENT_BYTES = 64 * 1024
"""The most a result event may weigh, as JSON; rows past it are left out."""
CELL_CHARS = 200
"""A text cell longer than this is cut to it (with an ellipsis)."""
BAR_ROWS = (2, 50)
"""A bar chart has one bar per row: between these many rows."""
LINE_ROWS = (2, ROWS_SHOWN)
"""A line chart has one point per row: between these many rows."""

NUMBER, DATE, TEXT = "number", "date", "text"
"""The column types a person sees."""
BAR, LINE, NONE = "bar", "line", "none"
"""The chart kinds."""

_DATE = re.compile(r"^\d{4}-\d{2}(-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?)?$")
_YEAR_COLUMN = re.compile(r"(^|_)(year|yr)(_|$)", re.IGNORECASE)
_KEY_COLUMN = re.compile(r"^(id|.+_id)$", re.IGNORECASE)


def cell_value(value: Any) -> Any:
    """A cell as JSON carries it: numbers stay numbers, a date its ISO text, bytes a note."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            return str(value)
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return f"({len(bytes(value))} bytes)"
    return str(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def column_type(name: str, values: Sequence[Any]) -> str:
    """`number`, `date` or `text`, from a column's values (nulls ignored; none: text).

    A date is ISO text (`2024-03`, `2024-03-15`, with a time or not) or a date value; a
    whole number between 1000 and 2999 in a column named for a year is a date too.
    """
    present = [v for v in values if v is not None]
    if not present:
        return TEXT
    if all(isinstance(v, dt.date | dt.datetime) for v in present):
        return DATE
    if all(isinstance(v, str) and _DATE.match(v) for v in present):
        return DATE
    if _YEAR_COLUMN.search(name) and all(
            (isinstance(v, int) and not isinstance(v, bool) and 1000 <= v <= 2999)
            or (isinstance(v, str) and re.fullmatch(r"[12]\d{3}", v)) for v in present):
        return DATE
    if all(_is_number(v) for v in present):
        return NUMBER
    return TEXT


def chart_for(columns: Sequence[str], types: Sequence[str], row_count: int, *,
              capped: bool = False) -> dict[str, Any]:
    """The chart a result calls for: `{kind, x, y}` (x: the label or date column, y: the
    number columns); kind `none` for a single value and for every other shape.

    Key columns (`id`, `..._id`) are never plotted. A capped result (more rows than the
    database gave) has no chart: it would show a part as if it were the whole.
    """
    values = [c for c, t in zip(columns, types, strict=True)
              if t == NUMBER and not _KEY_COLUMN.match(c)]
    dates = [c for c, t in zip(columns, types, strict=True) if t == DATE]
    labels = [c for c, t in zip(columns, types, strict=True) if t == TEXT]
    none = {"kind": NONE, "x": "", "y": []}
    if capped or not values:
        return none
    if dates and LINE_ROWS[0] <= row_count <= LINE_ROWS[1]:
        return {"kind": LINE, "x": dates[0], "y": values}
    if len(labels) == 1 and BAR_ROWS[0] <= row_count <= BAR_ROWS[1]:
        return {"kind": BAR, "x": labels[0], "y": values}
    return none


def _shown_cell(value: Any) -> tuple[Any, bool]:
    """(the cell as shown, whether it was cut)."""
    value = cell_value(value)
    if isinstance(value, str) and len(value) > CELL_CHARS:
        return value[:CELL_CHARS - 1] + "…", True
    return value, False


def result_shown(*, sql: str, columns: Sequence[str], rows: Sequence[Sequence[Any]],
                 row_count: int, truncated: bool = False, ms: float = 0.0, pid: str = ""
                 ) -> dict[str, Any]:
    """A query's result as its `result` event carries it (every field but the message's).

    Args:
        sql: the query as it ran.
        columns, rows: its columns and the rows the node kept (at least ROWS_SHOWN when
            it had as many).
        row_count: how many rows the query gave (at most the database's row limit).
        truncated: the query had more rows than the database's row limit.
        ms: how long it ran; pid: the process it ran as ("" when it ran inline).
    """
    types = [column_type(c, [row[i] for row in rows if i < len(row)])
             for i, c in enumerate(columns)]
    head = {
        "sql": sql, "columns": [{"name": c, "type": t} for c, t in zip(columns, types,
                                                                       strict=True)],
        "row_count": row_count, "capped": truncated, "ms": round(ms, 2), "pid": pid,
        "chart": chart_for(columns, types, row_count, capped=truncated),
    }
    budget = EVENT_BYTES - len(json.dumps(head, ensure_ascii=False).encode()) - 200
    shown: list[list[Any]] = []
    shortened, cut = False, ""
    for row in rows[:ROWS_SHOWN]:
        cells = [_shown_cell(v) for v in row]
        line = [c for c, _ in cells]
        budget -= len(json.dumps(line, ensure_ascii=False).encode()) + 1
        if budget < 0:
            cut = "bytes"
            break
        shortened = shortened or any(was_cut for _, was_cut in cells)
        shown.append(line)
    if not cut and len(shown) < row_count:
        cut = "rows"
    if cut:
        # A chart of some of the rows would show a part as if it were the whole.
        head["chart"] = chart_for((), (), 0)
    return {**head, "rows": shown, "cut": cut, "shortened": shortened}
