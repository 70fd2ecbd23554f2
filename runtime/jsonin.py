"""JSON from outside (REST bodies, socket frames): parsed safely or refused with a reason.

`json.loads` alone lets two things through that fail far from the edge: a
document nested thousands of levels deep (RecursionError, in the parser or
in whatever walks it later) and a lone UTF-16 surrogate such as `"\\ud800"`
(valid JSON, but no UTF-8 database or socket can store or send it). Both are
refused here, with a message fit for the client.
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 32
"""Objects and lists inside each other; no request of the API needs more than a few."""


class BadJSON(ValueError):
    """The text is not JSON agentsite accepts; the message says why, for the client."""


def json_decode(raw: str | bytes) -> Any:
    """Parse `raw`; BadJSON when it is not JSON, nested past MAX_DEPTH or holds a lone surrogate."""
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise BadJSON(f"not JSON: {exc.msg} at position {exc.pos}") from None
    except UnicodeDecodeError:
        raise BadJSON("not JSON: the bytes are not UTF-8") from None
    except RecursionError:
        raise BadJSON(f"the JSON is nested too deeply (the limit is {MAX_DEPTH} levels)"
                      ) from None
    _check(value)
    return value


def _check(value: Any) -> None:
    """Walk the value without recursion: depth and text checked everywhere."""
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, str):
            _check_text(item)
            continue
        if not isinstance(item, dict | list):
            continue
        if depth > MAX_DEPTH:
            raise BadJSON(f"the JSON is nested too deeply (the limit is {MAX_DEPTH} levels)")
        if isinstance(item, dict):
            for key, inner in item.items():
                _check_text(key)
                pending.append((inner, depth + 1))
        else:
            pending.extend((inner, depth + 1) for inner in item)


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BadJSON("the JSON holds an invalid character (a lone UTF-16 surrogate such as "
                      "\\ud800); send text as valid Unicode") from None
