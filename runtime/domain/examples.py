"""Verified examples: a question and the SQL checked to answer it, and how alike two
questions are.

A planner writing SQL for a question does better with the query a person verified
for a question like it (DESIGN.md §11). The pairs are stored per domain database
(`runtime.domain.models.VerifiedQuery`); this module is their pure part, which the
engine may import: the `Example` a node is given, the scoring that picks the examples
for a question, and the reading of the query a message ran from its trace or its
recording. Nothing here touches a database.

Similarity is lexical on purpose: the words of two questions, lowercased, stripped of
stop words and of their plural and verb endings, a few words for "how many" read as
one, compared by Jaccard (shared terms over all terms). It needs no model and no
index, gives the same answer every time, and a question about something else shares
no term with the stored ones, so it gets no example rather than a misleading one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

MIN_SIMILARITY = 0.2
"""A stored question at or below this similarity is no example for the question asked."""

STOP_WORDS = frozenset("""
a about all an and any are as at be been by can could did do does for from get give had
has have how i in is it its list me my of on or our please show that the their them there
these this those to us was we were what when which who whom whose with would you your
""".split())
"""Words that say nothing about what is asked (`how many` keeps `many`: SAME_TERMS)."""

SAME_TERMS = {
    "many": "count", "number": "count", "count": "count",
    "avg": "average", "mean": "average",
    "sum": "total",
}
"""Words (after stemming) that ask the same thing, read as one term."""

_WORD = re.compile(r"[a-z0-9]+")
_QUERY_TOOLS = ("query", "query_db")


@dataclass(frozen=True)
class Example:
    """A verified question and the SQL that answers it, a worked example for a planner."""

    question: str
    """The question as a person asked it."""
    sql: str
    """The SQL checked to answer it on the database the example belongs to."""


def stem(word: str) -> str:
    """A word without its plural or verb ending (`customers` -> `customer`, `companies` ->
    `company`, `booked` -> `book`): crude, but the same on both sides of a comparison."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 5 and word.endswith("ing"):
        return word[:-3]
    if len(word) > 4 and word.endswith("ed"):
        return word[:-2]
    if len(word) > 4 and word.endswith(("sses", "xes", "ches", "shes")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def question_terms(text: str) -> frozenset[str]:
    """The terms of a question that carry its meaning (module docstring)."""
    terms = set()
    for word in _WORD.findall(text.lower()):
        if word in STOP_WORDS:
            continue
        stemmed = stem(word)
        terms.add(SAME_TERMS.get(stemmed, stemmed))
    return frozenset(terms)


def similarity(first: frozenset[str], second: frozenset[str]) -> float:
    """Jaccard similarity of two sets of terms: 1.0 for the same terms, 0.0 for none shared."""
    if not first or not second:
        return 0.0
    return len(first & second) / len(first | second)


def examples_ranked(question: str, candidates: Sequence[Example], *, k: int = 3,
                    threshold: float = MIN_SIMILARITY) -> list[Example]:
    """The `k` candidates whose questions are most like `question`, best first, each above
    `threshold`. Candidates are given newest first: among equally similar ones the newer
    wins (the sort is stable)."""
    if k <= 0:
        return []
    asked = question_terms(question)
    scored = [(similarity(asked, question_terms(example.question)), example)
              for example in candidates]
    scored = [(score, example) for score, example in scored if score > threshold]
    scored.sort(key=lambda pair: -pair[0])
    return [example for _, example in scored[:k]]


# -- the query a message ran --------------------------------------------------------
# These read the agent's node outputs and model calls (the thinker's `sql`, an
# expert's `tool_calls` entries of tool `query`), as runtime/suites/checks.py `_sql`
# does; they live here, below the agent, because a trace and a recording are plain
# data by the time anyone reads them, and the domain's store is who needs them.


def query_of_outputs(outputs: Iterable[Any]) -> str:
    """The last query a message ran successfully, from its frame records' outputs in stored
    order: a thinker's `sql` with no `error`, an expert's `tool_calls` entry of tool `query`
    that is `ok`. "" when it ran none."""
    found = ""
    for output in outputs:
        if not isinstance(output, Mapping):
            continue
        if output.get("sql") and not output.get("error"):
            found = str(output["sql"])
        for call in output.get("tool_calls") or ():
            if (isinstance(call, Mapping) and call.get("tool") == "query" and call.get("ok")
                    and isinstance(call.get("args"), Mapping) and call["args"].get("sql")):
                found = str(call["args"]["sql"])
    return found.strip()


def query_of_calls(calls: Iterable[Any]) -> str:
    """The last query a message's recorded model calls asked for, in order: a JSON answer
    with `sql`, or a native call of `query` / `query_db`. A recording does not say whether
    it ran; the store checks it by running it. "" when none asked for one."""
    found = ""
    for call in calls:
        if not isinstance(call, Mapping):
            continue
        answered = _json_object(call.get("answer"))
        if isinstance(answered.get("sql"), str) and answered["sql"].strip():
            found = answered["sql"]
        for tool_call in call.get("tool_calls") or ():
            if isinstance(tool_call, Mapping) and tool_call.get("name") in _QUERY_TOOLS:
                arguments = _json_object(tool_call.get("arguments"))
                if isinstance(arguments.get("sql"), str) and arguments["sql"].strip():
                    found = arguments["sql"]
    return found.strip()


def _json_object(value: Any) -> Mapping[str, Any]:
    """`value` as a JSON object: itself if a mapping, parsed if a string holding one, else {}."""
    if isinstance(value, Mapping):
        return value
    if not isinstance(value, str) or not value.strip().startswith("{"):
        return {}
    try:
        parsed = json.loads(value)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, Mapping) else {}
