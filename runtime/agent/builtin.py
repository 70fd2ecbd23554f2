"""The builtin model: a deterministic, offline, rule-based stand-in for an LLM.

It is a real product feature (the offline default), not a test double. It
reads the same prompts a real model gets: it recognises which node is asking
by the prompt's "You are the <node>" line, reads the `## Section` blocks of
the user message, and answers in the contract that node expects (JSON for
input, director and memorizer; text or a `TOOL` line for the thinker; text
for the interpreter and the output voice). It understands what the demo and
the suites need and nothing more: greetings, names, facts, moods, topics,
counter / toggle / checklist machines, and simple questions about the `eras`
database, turned into SQL from the schema text it is given.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass
from typing import Any

from runtime.agent.machines import machine_template
from runtime.llm.base import (
    Capabilities,
    Completion,
    DeltaCallback,
    LLMRequest,
    ModelToolCall,
    Usage,
)

_ROLE = re.compile(r"You are the (\w+)")
_TOKEN = re.compile(r"\w+|[^\w\s]")
_PIECE = re.compile(r"\S+\s*|\s+")

GREETING = re.compile(
    r"^\s*(hi|hello|hey|hiya|howdy|greetings|good (morning|afternoon|evening)|hallo|moin|servus|"
    r"bonjour|hola)\b", re.I)
THANKS = re.compile(r"\b(thanks|thank you|thx|cheers|danke|merci)\b", re.I)
# "No thanks" declines an offer: it is not thanks for something done.
DECLINE = re.compile(r"^\s*(?:(?:no|nope|nah|nein|non)[\s,]+(?:thanks|thank you|thx|danke|merci)\b"
                     r"|(?:no|nope|nah|not now|no need|maybe later)[\s.!]*$)", re.I)
FAREWELL = re.compile(r"^\s*(bye|goodbye|good night|see you|ciao|tsch(ü|ue)ss)\b", re.I)
INTRO = re.compile(r"\b(?:my name is|call me|ich hei(?:ß|ss)e)\s+([A-Za-zÀ-ÿ][\w'-]*)", re.I)
ASK_NAME = re.compile(r"\b(what(?:'s| is) my name|who am i|do you (?:know|remember) my name)\b",
                      re.I)
# "remember that ..." as a request: at the start, after a pause, or after "please", "and", "to"
# or "(can) you"; never "I don't remember ...".
REMEMBER = re.compile(r"(?:^|[.!?,;:]\s*|\b(?:please|and|also|to|you)\s+)remember(?: that)?[:,]?\s+"
                      r"(.+?)[.!?]*\s*$", re.I)
# A question about what is remembered asks for facts; it gives none. ("Do you know what
# time it is?" is not one.)
MEMORY_QUESTION = re.compile(r"\b(?:what|which|how much|do|did|does)\s+(?:else\s+)?"
                             r"(?:do\s+|did\s+|have\s+)?you\s+(?:still\s+|already\s+)?"
                             r"(?:remember|recall|know\s+about\s+(?:me|my)\b)", re.I)
MOODS = (
    "happy", "sad", "tired", "angry", "excited", "bored", "stressed", "anxious", "great",
    "good", "fine", "okay", "upset", "frustrated", "calm", "relaxed", "down", "curious",
    "annoyed", "worried", "nervous", "glad", "lonely", "sleepy", "cheerful", "grumpy",
)
NEGATIVE_MOODS = {"sad", "tired", "angry", "bored", "stressed", "anxious", "upset", "frustrated",
                  "down", "annoyed", "worried", "nervous", "lonely", "sleepy", "grumpy"}
MOOD = re.compile(
    r"\bi(?:'m| am| feel|'m feeling| am feeling)(?: so| very| really| a bit| quite| rather)?\s+("
    + "|".join(MOODS) + r")\b", re.I)
TOPIC = re.compile(
    r"\b(?:let'?s|let us|can we|could we) (?:talk|chat) about\s+(.+?)[.!?]*\s*$|"
    r"\bchange (?:the )?topic to\s+(.+?)[.!?]*\s*$|\bnew topic:?\s+(.+?)[.!?]*\s*$", re.I)
ASK_MOOD = re.compile(r"\b(how am i feeling|what(?:'s| is) my mood)\b", re.I)
ASK_TOPIC = re.compile(r"\b(what are we talking about|what(?:'s| is) the topic)\b", re.I)
ASK_MY = re.compile(r"\bwhat(?:'s| is| are) my ([\w ]+?)\s*\??$", re.I)
ASK_TIME = re.compile(r"\bwhat (?:time|day) is it\b|\bwhat(?:'s| is) the (?:time|date)\b", re.I)
HELP = re.compile(r"\b(help|what can you do)\b", re.I)
SHOULD = re.compile(r"^\s*(should|shall) i\b", re.I)
STYLE_BRIEF = re.compile(r"\b(be brief|keep it short|shorter answers?)\b", re.I)
STYLE_DETAIL = re.compile(r"\b(more detail|explain more|longer answers?)\b", re.I)
GERMAN = re.compile(r"\b(hallo|ich|bitte|danke|wie geht|guten (tag|morgen))\b", re.I)
FRENCH = re.compile(r"\b(bonjour|merci|je suis|s'il vous)\b", re.I)

MACHINE_KIND = re.compile(r"\b(counter|toggle|switch|checklist|check list|to-?do list|"
                          r"shopping list)\b", re.I)
RESET = re.compile(r"\breset\b", re.I)
DESTROY = re.compile(r"\b(remove|delete|destroy|close|get rid of|drop)\b", re.I)
START_AT = re.compile(r"\b(?:start(?:ing)? (?:at|from)|from)\s+(-?\d+)", re.I)
ITEMS = re.compile(r"\b(?:for|with|of|:)\s+(.+?)[.!?]*\s*$", re.I)

DOMAIN = re.compile(r"\b(customers?|clients?|projects?|employees?|invoices?|invoice lines?|"
                    r"time entr(?:y|ies)|departments?|hours|budgets?|hourly rates?|database|"
                    r"eras)\b", re.I)
STATUS_WORDS = ("active", "completed", "on hold", "on_hold", "open", "paid", "overdue")
TOP_N = re.compile(r"\btop\s+(\d+)\b|\b(\d+)\s+(?:largest|biggest|highest|most)\b", re.I)
BY_COLUMN = re.compile(r"\bby\s+(\w+(?:\s\w+)?)", re.I)
AGGREGATE = re.compile(r"\b(total|sum of|average|mean|maximum|max|minimum|min)\b\s*(?:of\s+)?(\w+)?",
                       re.I)


def sections(text: str) -> dict[str, str]:
    """The `## Title` blocks of a prompt, keyed by lower-case title."""
    out: dict[str, str] = {}
    title = ""
    lines: list[str] = []
    for line in text.splitlines():
        if line.startswith("## "):
            if title:
                out[title] = "\n".join(lines).strip()
            title, lines = line[3:].strip().lower(), []
        else:
            lines.append(line)
    if title:
        out[title] = "\n".join(lines).strip()
    return out


def count_tokens(text: str) -> int:
    """A deterministic token count: words and punctuation marks."""
    return len(_TOKEN.findall(text))


def _json(section: str) -> dict[str, Any]:
    try:
        value = json.loads(section)
    except (json.JSONDecodeError, TypeError):
        return {}
    return value if isinstance(value, dict) else {}


def _known_name(summary: str) -> str:
    match = re.search(r"the user's name is ([^;.\n]+)", summary)
    return match.group(1).strip() if match else ""


def _cap(name: str) -> str:
    return name[:1].upper() + name[1:]


# --- perceive ----------------------------------------------------------------

def perceive(message: str, routes: tuple[str, str] = ("reflex", "director")) -> dict[str, str]:
    """The input node's perception of a message; `routes` are (quick, careful)."""
    text = message.strip()
    if INTRO.search(text):
        intent = "introduction"
    elif GREETING.search(text):
        intent = "greeting"
    elif FAREWELL.search(text):
        intent = "farewell"
    elif DECLINE.search(text):
        intent = "statement"
    elif THANKS.search(text) and len(text.split()) <= 6:
        intent = "thanks"
    elif text.endswith("?") or re.match(r"^(what|who|how|why|when|where|which|is|are|do|does|can|"
                                        r"could|should|shall|will)\b", text, re.I):
        intent = "question"
    elif re.match(r"^(give|make|create|show|list|reset|remove|delete|add|start|set|please|"
                  r"remember|let|change|be|tell|count)\b", text, re.I):
        intent = "request"
    else:
        intent = "statement"
    quick, careful = routes
    social = intent in {"greeting", "thanks", "farewell", "introduction"} or DECLINE.search(text)
    route = quick if social else careful
    if GERMAN.search(text):
        language = "de"
    elif FRENCH.search(text):
        language = "fr"
    else:
        language = "en"
    mood = MOOD.search(text)
    if re.search(r"\b(urgent|asap|immediately)\b", text, re.I):
        tone = "urgent"
    elif mood and mood.group(1).lower() in NEGATIVE_MOODS:
        tone = "negative"
    elif mood or THANKS.search(text) or GREETING.search(text):
        tone = "positive"
    else:
        tone = "neutral"
    return {"intent": intent, "language": language, "tone": tone, "topic": topic_of(text),
            "route": route}


def topic_of(text: str) -> str:
    """A few words naming what a message is about."""
    match = TOPIC.search(text)
    if match:
        return next(g for g in match.groups() if g).strip().lower()
    for pattern in (MACHINE_KIND, DOMAIN):
        found = pattern.search(text)
        if found:
            return found.group(1).lower()
    if GREETING.search(text) or FAREWELL.search(text) or THANKS.search(text):
        return "small talk"
    if INTRO.search(text) or ASK_NAME.search(text):
        return "introductions"
    if MOOD.search(text):
        return "feelings"
    return "general"


# --- direct ------------------------------------------------------------------

def _machine_kind(text: str) -> str:
    match = MACHINE_KIND.search(text)
    if not match:
        return ""
    word = match.group(1).lower()
    if word in {"switch", "toggle"}:
        return "toggle"
    if word == "counter":
        return "counter"
    return "checklist"


def _existing_machine(machines: str, kind: str) -> str:
    """The id of the listed machine of that kind, or empty: never some other machine."""
    ids = re.findall(r"^- ([\w-]+) \(", machines, re.M)
    return next((mid for mid in ids if kind and kind in mid), "")


def counter_calls(text: str) -> list[dict[str, Any]]:
    """add_state calls that make a counter."""
    start = START_AT.search(text)
    return machine_template("counter", start=int(start.group(1)) if start else 0)


def toggle_calls() -> list[dict[str, Any]]:
    """add_state calls that make an on/off toggle."""
    return machine_template("switch")


def checklist_items(text: str) -> list[str]:
    """The items named in a checklist request, or three placeholders."""
    match = ITEMS.search(MACHINE_KIND.split(text, maxsplit=1)[-1]) if MACHINE_KIND.search(text) else None
    if not match:
        return ["first", "second", "third"]
    raw = re.split(r",|\band\b", match.group(1))
    items = [item.strip().strip("'\"").lower() for item in raw if item.strip()]
    return items[:8] or ["first", "second", "third"]


def checklist_calls(text: str) -> list[dict[str, Any]]:
    """add_state calls that make a checklist."""
    return machine_template("checklist", items=checklist_items(text))


def direct(message: str, parts: dict[str, str]) -> dict[str, Any]:
    """The director's plan and machine tool calls for a message."""
    kind = _machine_kind(message)
    machines = parts.get("machines", "")
    for pattern, verb, done, tool in ((RESET, "reset", "reset", "reset_machine"),
                                      (DESTROY, "remove", "removed", "destroy_machine")):
        if kind and pattern.search(message):
            mid = _existing_machine(machines, kind)
            if not mid:
                return {"plan": "answer", "goal": f"tell the user there is no {kind} to {verb}",
                        "tool_calls": []}
            return {"plan": "answer", "goal": f"confirm the {kind} was {done}",
                    "tool_calls": [{"name": tool, "args": {"machine_id": mid}}]}
    if kind:
        calls = {"counter": lambda: counter_calls(message), "toggle": toggle_calls,
                 "checklist": lambda: checklist_calls(message)}[kind]()
        return {"plan": "answer", "goal": f"present the new {kind}", "tool_calls": calls}
    if DOMAIN.search(message):
        return {"plan": "query", "goal": "answer from the eras database", "tool_calls": []}
    return {"plan": "answer", "goal": "answer the user", "tool_calls": []}


# --- SQL from a schema -------------------------------------------------------

@dataclass(frozen=True)
class Table:
    """A table as read from DESCRIBE text."""

    name: str
    columns: tuple[str, ...]
    refs: tuple[tuple[str, str, str], ...] = ()
    """(column, referenced table, referenced column) for each foreign key."""
    types: tuple[str, ...] = ()
    """Each column's declared type, lower-case, in column order ("" where none is given)."""
    values: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """(column, its known values) for each column whose DESCRIBE line lists them."""

    def type_of(self, column: str) -> str:
        """The column's declared type, lower-case ("" when unknown)."""
        at = self.columns.index(column) if column in self.columns else -1
        return self.types[at] if 0 <= at < len(self.types) else ""

    def values_of(self, column: str) -> tuple[str, ...]:
        """The column's known values (none when DESCRIBE listed none)."""
        return dict(self.values).get(column, ())

    @property
    def label(self) -> str:
        """The column that names a row: name, description or title, else the first text."""
        return _label_columns(self)[0]

    @property
    def flags(self) -> list[str]:
        """Yes/no columns: integers named like an adjective (`billable`, `is_open`)."""
        return [c for c in self.columns if self.type_of(c).startswith(("int", "bool"))
                and not _is_key(c) and FLAG_NAME.fullmatch(c)]

    @property
    def measures(self) -> list[str]:
        """Columns holding quantities, the usual ones first (amount before quantity)."""
        numeric = [c for c in self.columns if self.type_of(c).startswith(NUMERIC_TYPES)
                   and not _is_key(c) and c not in self.flags]
        known = [c for c in AMOUNT_COLUMNS if c in self.columns]
        return list(dict.fromkeys(known + numeric))

    @property
    def dates(self) -> list[str]:
        """Columns holding a date (`issued_on`, `work_date`, `created_at`)."""
        return [c for c in self.columns if DATE_NAME.search(c)
                or self.type_of(c).startswith(("date", "timestamp"))]

    def reference_to(self, other: Table) -> str:
        """This table's foreign key column to `other` ("" when it has none)."""
        return next((col for col, target, _ in self.refs if target == other.name), "")

    def referenced_by(self, other: Table) -> str:
        """The column of `other` this table's foreign key to it points at (`id`)."""
        return next((key for _, target, key in self.refs if target == other.name), "id")


NUMERIC_TYPES = ("real", "int", "numeric", "decimal", "float", "double", "money", "bigint",
                 "smallint")
FLAG_NAME = re.compile(r"(?:is|has)_\w+|\w+(?:able|ible)")
DATE_NAME = re.compile(r"(?:^|_)(?:on|at|date|day)$|^date")
AMOUNT_COLUMNS = ("amount", "budget", "hours", "hourly_rate", "unit_price", "quantity")
LIST_LIMIT = 20
TOTAL_COLUMN = "total_rows"
"""The column a capped list query carries its uncapped row count in."""
CITY = re.compile(r"\b(?:in|from)\s+([A-Z][\w-]+(?:\s[A-Z][\w-]+)?)")
NAMED = re.compile(r"\b(?:named|called)\s+['\"]?([^'\"?]+?)['\"]?\s*(?:\?|$)", re.I)
# Other words a question uses for a table than its own name (what the demo's users say).
TABLE_SYNONYMS = {
    "customers": ("client", "clients"),
    "employees": ("people", "person", "staff", "colleague", "colleagues", "who"),
    "departments": ("team", "teams"),
    "invoices": ("bill", "bills"),
    "time_entries": ("hours", "log", "logged", "booked", "timesheet", "timesheets"),
}
PLURALS = frozenset({"people", "staff", "hours"})
MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august",
          "september", "october", "november", "december")
PERIOD = re.compile(r"\b(in|during|for|from|of|since|after|before|until)\s+(?:the\s+year\s+)?"
                    r"(?:(" + "|".join(MONTHS) + r")\s+)?((?:19|20)\d{2})\b", re.I)
COUNTED = re.compile(r"\b(?:how many|number of|count(?: of)?(?: the)?)\b", re.I)
SUMMED = re.compile(r"\b(?:total|sum|add(?:s|ed)? up|how much|altogether|combined)\b", re.I)
AVERAGED = re.compile(r"\b(?:average|mean|avg|typical)\b", re.I)
MOST = re.compile(r"\b(?:most|largest|biggest|highest|greatest|maximum|max|top|priciest|"
                  r"most expensive)\b", re.I)
MONTHLY = re.compile(r"\b(?:per|each|every|by|a)\s+month\b|\bmonthly\b|\bmonth by month\b",
                     re.I)
LEAST = re.compile(r"\b(?:least|fewest|smallest|lowest|minimum|min|cheapest)\b", re.I)
WHICH = re.compile(r"\b(?:which|what|who)\b(?:'s)?\s*", re.I)
NEGATED = re.compile(r"\b(?:non|not)[\s-]*$", re.I)


def _is_key(column: str) -> bool:
    return column == "id" or column.endswith("_id")


def _words_of(name: str) -> str:
    """A column or table name in words: `hourly_rate` -> "hourly rate"."""
    return name.replace("_", " ")


def _phrase(text: str) -> re.Pattern[str]:
    """A whole-word, case-insensitive pattern for a phrase; `_` and spaces alike."""
    words = [re.escape(w) for w in re.split(r"[\s_]+", text.strip()) if w]
    return re.compile(r"(?<!\w)" + r"[\s_-]+".join(words) + r"(?!\w)", re.I)


def parse_schema(text: str) -> list[Table]:
    """Tables, columns (types, foreign keys, known values) from DESCRIBE text.

    A column line is `  name TYPE [primary key|not null] [-> table.column]` and may end in
    ` values: a | b | c` (the known values of a low-cardinality text column).
    """
    tables: list[Table] = []
    current: dict[str, Any] | None = None

    def close() -> None:
        if current is not None:
            tables.append(Table(current["name"], tuple(current["columns"]),
                                tuple(current["refs"]), tuple(current["types"]),
                                tuple(current["values"])))

    for line in text.splitlines():
        head = re.match(r"^(\w+)\s*\(", line)
        if head and not line.startswith((" ", "\t")):
            close()
            current = {"name": head.group(1), "columns": [], "refs": [], "types": [],
                       "values": []}
            continue
        col = re.match(r"^\s+(\w+)(?:\s+(.*))?$", line)
        if not col or current is None:
            continue
        name, rest = col.group(1), col.group(2) or ""
        listed = ""
        split = re.search(r"(?:^|\s)values:\s*", rest)
        if split:
            rest, listed = rest[: split.start()], rest[split.end():]
        tokens = rest.split()
        kind = tokens[0].lower() if tokens and tokens[0].lower() not in {
            "primary", "not", "->"} else ""
        current["columns"].append(name)
        current["types"].append(kind)
        ref = re.search(r"-> (\w+)\.(\w+)", rest)
        if ref:
            current["refs"].append((name, ref.group(1), ref.group(2)))
        values = tuple(v.strip() for v in listed.split(" | ") if v.strip())
        if values:
            current["values"].append((name, values))
    close()
    return tables


def _table_words(table: str) -> list[str]:
    words = table.replace("_", " ")
    singular = re.sub(r"ies$", "y", words) if words.endswith("ies") else re.sub(r"s$", "", words)
    return [words, singular]


def _table_patterns(table: str) -> list[tuple[re.Pattern[str], bool]]:
    """(pattern, singular) for each way a question names a table."""
    plural, singular = _table_words(table)
    found = [(_phrase(plural), False), (_phrase(singular), True)]
    return found + [(_phrase(word), not word.endswith("s") and word not in PLURALS)
                    for word in TABLE_SYNONYMS.get(table, ())]


def tables_mentioned(message: str, names: list[str]) -> list[str]:
    """The table names a message mentions (by name or a usual other word), in the order it
    mentions them."""
    found: list[tuple[int, str]] = []
    for name in names:
        positions = [m.start() for pattern, _ in _table_patterns(name)
                     for m in pattern.finditer(message)]
        if positions:
            found.append((min(positions), name))
    return [name for _, name in sorted(found)]


def _column(table: Table, words: str) -> str:
    wanted = words.lower().replace(" ", "_")
    for col in table.columns:
        if col == wanted or col.rstrip("s") == wanted.rstrip("s"):
            return col
    for col in table.columns:
        if wanted.split("_")[0] in col:
            return col
    return ""


def _label_columns(table: Table) -> list[str]:
    preferred = [c for c in ("name", "description", "title") if c in table.columns]
    return preferred[:1] + [c for c in ("status", "city", "role", "industry") if c in table.columns][:1] \
        or list(table.columns[:3])


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@dataclass(frozen=True)
class Mention:
    """A place where a question names a table, a column or a known value."""

    start: int
    end: int
    table: str
    column: str = ""
    """The column named (or holding the value); empty when the table itself is named."""
    value: str = ""
    """The value named, as stored."""
    singular: bool = False
    """Named in the singular ("customer"): one row is asked for."""


@dataclass(frozen=True)
class Condition:
    """One WHERE condition, on the question's own table or one it joins."""

    table: str
    column: str
    sql: str
    """The condition with `{}` where the column's table alias goes: `{}status = 'paid'`."""


class Reading:
    """What a question asks of the described tables, read from its words alone: which
    table, which measure, which conditions (known values, places, names, ids, periods,
    yes/no columns), and how the rows are to be counted, summed or ranked."""

    def __init__(self, message: str, tables: list[Table]) -> None:
        self.message = message
        self.tables = {t.name: t for t in tables}
        self.mentions = self._mentions(tables)

    # -- what the words name ------------------------------------------------------------

    def _mentions(self, tables: list[Table]) -> list[Mention]:
        found: list[Mention] = []
        column_owners: dict[str, list[str]] = {}
        for table in tables:
            for column in table.columns:
                column_owners.setdefault(column, []).append(table.name)
        for table in tables:
            for pattern, singular in _table_patterns(table.name):
                found += [Mention(m.start(), m.end(), table.name, singular=singular)
                          for m in pattern.finditer(self.message)]
            for column in table.columns:
                for value in table.values_of(column):
                    found += [Mention(m.start(), m.end(), table.name, column, value)
                              for m in _phrase(value).finditer(self.message)]
                if (_is_key(column) or column in table.dates or len(column_owners[column]) > 1
                        or column in ("name", "description", "title", "note")):
                    continue  # a word several tables share names none of them
                words = _words_of(column)
                for pattern in {_phrase(words), _phrase(words + "s"),
                                _phrase(re.sub(r"y$", "ies", words))}:
                    found += [Mention(m.start(), m.end(), table.name, column,
                                      singular=not m.group(0).lower().endswith("s"))
                              for m in pattern.finditer(self.message)]
        # A mention inside a longer one ("Consultant" in "Senior Consultant") is not one.
        kept = [m for m in found if not any(o.start <= m.start and m.end <= o.end
                                            and (o.end - o.start) > (m.end - m.start)
                                            for o in found)]
        return sorted(set(kept), key=lambda m: (m.start, -m.end, m.table, m.column))

    def after(self, position: int) -> Mention | None:
        """The first mention at or after `position`; where a word names both a column and a
        table ("hours"), the column, which says more."""
        later = [m for m in self.mentions if m.start >= position]
        return min(later, key=lambda m: (m.start, 2 if m.value else 0 if m.column else 1),
                   default=None)

    def counted(self) -> Mention | None:
        """What "how many" asks about: the first table or measure named after it (not a
        value nor a describing column: "how many non-billable hours" counts hours)."""
        counted = COUNTED.search(self.message)
        if not counted:
            return None
        return next((m for m in sorted(self.mentions, key=lambda m: (
            m.start, 0 if m.column else 1)) if m.start >= counted.end() and not m.value and (
            not m.column or m.column in self.tables[m.table].measures)), None)

    def main(self) -> Table | None:
        """The table whose rows the question counts, sums or lists: the one counted after
        "how many", else the first named (by its words or a column's). A value alone names
        none: "the weather in Paris" is not a question about customers in Paris."""
        plain = [m for m in self.mentions if not m.value]
        first = self.counted() or (self.after(plain[0].start) if plain else None)
        return self.tables[first.table] if first else None

    def measure(self, table: Table) -> str:
        """The quantity asked about: a measure column the question names, else the table's
        usual one."""
        named = [m.column for m in self.mentions if m.table == table.name
                 and m.column in table.measures and not m.value]
        return (named or table.measures or [""])[0]

    # -- conditions -----------------------------------------------------------------------

    def conditions(self, table: Table) -> list[Condition]:
        """WHERE conditions for what the question names on `table` or a table it references
        (those then need a join): known values, else a status word, a place, a name; an id,
        a period, a yes/no column."""
        found: list[Condition] = []
        linked = [table] + [self.tables[target] for _, target, _ in table.refs
                            if target in self.tables]
        valued: dict[tuple[str, str], list[str]] = {}
        for m in self.mentions:
            if m.value and any(t.name == m.table for t in linked):
                valued.setdefault((m.table, m.column), [])
                if m.value not in valued[(m.table, m.column)]:
                    valued[(m.table, m.column)].append(m.value)
        for (name, column), values in valued.items():
            test = (f"= {_quote(values[0])}" if len(values) == 1
                    else f"IN ({', '.join(_quote(v) for v in values)})")
            found.append(Condition(name, column, f"{{}}{column} {test}"))
        found += self._unlisted(table, {(c.table, c.column) for c in found})
        for other in linked[1:]:
            found += self._unlisted(other, {(c.table, c.column) for c in found}, joined=True)
        found += self._ids(table) + self._periods(table) + self._flags(table)
        return found

    def _unlisted(self, table: Table, taken: set[tuple[str, str]], joined: bool = False
                  ) -> list[Condition]:
        """Conditions DESCRIBE gave no values for: a status word, a place after in/from, a
        name after named/called, a capitalised name before the table's or a column's word."""
        found = []
        lowered = self.message.lower()
        if not joined and "status" in table.columns and (table.name, "status") not in taken \
                and not table.values_of("status"):
            word = next((w for w in STATUS_WORDS
                         if re.search(r"\b" + w.replace("_", " ") + r"\b", lowered)), "")
            if word:
                found.append(Condition(table.name, "status",
                                       f"{{}}status = {_quote(word.replace(' ', '_'))}"))
        place = CITY.search(self.message)
        places = [c for c in ("city", "country") if c in table.columns
                  and (table.name, c) not in taken and not table.values_of(c)]
        if place and places and not any(m.value for m in self.mentions
                                        if place.start(1) <= m.start < place.end(1)):
            where = [f"{{}}{c} = {_quote(place.group(1))}" for c in places]
            found.append(Condition(table.name, places[0], "(" + " OR ".join(where) + ")"
                                   if len(where) > 1 else where[0]))
        named = NAMED.search(self.message)
        if named and not joined and "name" in table.columns:
            found.append(Condition(table.name, "name",
                                   f"{{}}name = {_quote(named.group(1).strip())}"))
        for column, value in self._capitalised(table):
            if (table.name, column) not in taken:
                found.append(Condition(table.name, column, f"{{}}{column} = {_quote(value)}"))
        return found

    def _capitalised(self, table: Table) -> list[tuple[str, str]]:
        """"the Design department", "the Retail industry": a capitalised name right before
        the table's word (for its label column) or a text column's word, where DESCRIBE
        listed no values."""
        found = []
        words = [(table.label, w) for w in _table_words(table.name)]
        words += [(c, _words_of(c)) for c in table.columns if not _is_key(c)
                  and c not in table.measures and c not in table.dates and c not in table.flags]
        for column, word in words:
            if table.values_of(column):
                continue
            match = re.search(r"(?<=\s)((?:[A-Z][\w&'-]*\s+)+)" + _phrase(word).pattern,
                              self.message)
            if match:
                found.append((column, match.group(1).strip()))
        return found

    def _ids(self, table: Table) -> list[Condition]:
        """"invoice 377", "project #12": the row with that id."""
        if "id" not in table.columns:
            return []
        singular = _phrase(_table_words(table.name)[1]).pattern
        match = re.search(singular + r"\s*(?:#|no\.?\s*|number\s+)?(\d+)\b", self.message)
        return [Condition(table.name, "id", f"{{}}id = {int(match.group(1))}")] if match else []

    def _periods(self, table: Table) -> list[Condition]:
        """"in March 2024", "from 2025", "since 2023": a range on the table's date column
        (the one the question's verb names, `issued` -> issued_on, else the first)."""
        match = PERIOD.search(self.message)
        column = self.date_column(table)
        if not match or not column:
            return []
        word, month, year = match.group(1).lower(), match.group(2), int(match.group(3))
        if month:
            number = MONTHS.index(month.lower()) + 1
            start = f"{year}-{number:02d}-01"
            end = f"{year + number // 12}-{number % 12 + 1:02d}-01"
        else:
            start, end = f"{year}-01-01", f"{year + 1}-01-01"
        if word in ("since", "after"):
            test = f"{{0}}{column} >= '{start if word == 'since' else end}'"
        elif word in ("before", "until"):
            test = f"{{0}}{column} < '{start if word == 'before' else end}'"
        else:
            test = f"{{0}}{column} >= '{start}' AND {{0}}{column} < '{end}'"
        return [Condition(table.name, column, test.replace("{0}", "{}"))]

    def date_column(self, table: Table) -> str:
        """The table's date column the question's verb names (`issued` -> issued_on), else
        its first ("" when it has none)."""
        if not table.dates:
            return ""
        stems = {_stem(w) for w in re.findall(r"[a-z]+", self.message.lower())}
        return next((c for c in table.dates if _stem(DATE_SUFFIX.sub("", c)) in stems),
                    table.dates[0])

    def _flags(self, table: Table) -> list[Condition]:
        """"billable hours" -> billable = 1; "non-billable", "not billable" -> 0."""
        found = []
        for column in table.flags:
            match = _phrase(_words_of(column)).search(self.message)
            if match:
                negated = NEGATED.search(self.message[: match.start()])
                found.append(Condition(table.name, column,
                                       f"{{}}{column} = {0 if negated else 1}"))
        return found

    # -- queries ------------------------------------------------------------------------

    def where(self, table: Table, conditions: list[Condition], alias: str = ""
              ) -> tuple[str, str]:
        """(JOIN clauses, WHERE clause) for the conditions, joining the referenced tables
        they are on; with `alias`, the question's own table is aliased so."""
        joins, tests = [], []
        aliases = {table.name: alias}
        for condition in conditions:
            if condition.table not in aliases:
                other = self.tables[condition.table]
                aliases[condition.table] = _alias(other.name, set(aliases.values()) | {alias})
                joins.append(f" JOIN {other.name} {aliases[condition.table]} ON "
                             f"{_dot(alias or table.name)}{table.reference_to(other)} = "
                             f"{aliases[condition.table]}.{table.referenced_by(other)}")
        if joins and not alias:
            return self.where(table, conditions, _alias(table.name, set()))
        for condition in conditions:
            prefix = _dot(aliases[condition.table])
            tests.append(condition.sql.replace("{}", prefix))
        return "".join(joins), (" WHERE " + " AND ".join(tests) if tests else "")

    def source(self, table: Table, conditions: list[Condition]) -> str:
        """`FROM table [alias JOIN …] [WHERE …]`."""
        joins, where = self.where(table, conditions)
        alias = f" {_alias(table.name, set())}" if joins else ""
        return f"FROM {table.name}{alias}{joins}{where}"


DATE_SUFFIX = re.compile(r"_(?:on|at|date|day)$|^date_")


def _stem(word: str) -> str:
    """A word without its ending, so that "issue", "issued" and "issuing" meet."""
    for suffix in ("ing", "ed", "es", "e", "s"):
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def _alias(table: str, taken: set[str]) -> str:
    """A short alias for a table, not one of `taken`."""
    for size in range(1, len(table) + 1):
        candidate = table[:size]
        if candidate not in taken:
            return candidate
    return table + "_"


def _dot(alias: str) -> str:
    return f"{alias}." if alias else ""


def _qualified(table: Table, column: str, source: str) -> str:
    """`column`, or `alias.column` when `source` joins other tables to `table`."""
    return f"{_alias(table.name, set())}.{column}" if " JOIN " in source else column


def _join_sql(message: str, first: Table, second: Table, tables: list[Table] | None = None
              ) -> str:
    """A GROUP BY over a foreign key between two mentioned tables, or empty if none links them."""
    link = next(((child, parent, col) for child, parent in ((second, first), (first, second))
                 for col, target, _ in child.refs if target == parent.name), None)
    if link is None:
        return ""
    child, parent, fk = link
    return _grouped_sql(Reading(message, tables or [first, second]), parent, child, fk)


def _grouped_sql(reading: Reading, parent: Table, child: Table, fk: str, *,
                 limit: int | None = None, descending: bool = True) -> str:
    """Each `parent` row with a measure over its `child` rows (a count, or a sum or an
    average of a measure the question names), ranked."""
    message = reading.message
    label = parent.label
    named = [m.column for m in reading.mentions if m.table == child.name
             and m.column in child.measures and not m.value]
    amount = (named[0] if named else next(
        (c for c in AMOUNT_COLUMNS if c in child.columns
         and re.search(r"\b" + c.replace("_", " ") + r"\b", message.lower())), ""))
    if not amount and SUMMED.search(message) and child.measures:
        amount = child.measures[0]
    if amount and AVERAGED.search(message):
        measure, order = f"AVG(c.{amount}) AS average_{amount}", f"average_{amount}"
    elif amount:
        measure, order = f"SUM(c.{amount}) AS total_{amount}", f"total_{amount}"
    else:
        measure, order = f"COUNT(c.id) AS {child.name}", child.name
    top = TOP_N.search(message)
    count = int(top.group(1) or top.group(2)) if top else (limit or 10)
    conditions = [c for c in reading.conditions(parent) if c.table == parent.name]
    conditions += [c for c in reading.conditions(child) if c.table == child.name]
    aliases = {parent.name: "p", child.name: "c"}
    where = [c.sql.replace("{}", aliases[c.table] + ".") for c in conditions]
    return (f"SELECT p.{label}, {measure} FROM {parent.name} p JOIN {child.name} c "
            f"ON c.{fk} = p.id" + (" WHERE " + " AND ".join(where) if where else "")
            + f" GROUP BY p.id, p.{label} ORDER BY {order} {'DESC' if descending else 'ASC'}"
            f" LIMIT {count}")


def _ranked_sql(reading: Reading) -> str:
    """"which customer has the most projects?", "who has the lowest hourly rate?", "which
    country has the most customers?": the row (or column value) that comes first."""
    message = reading.message
    asked = WHICH.search(message)
    most, least = MOST.search(message), LEAST.search(message)
    if not asked or not (most or least) or TOP_N.search(message):
        return ""
    subject = reading.after(asked.end())
    if subject is None or subject.start > asked.end() + 1 or subject.value:
        return ""
    superlative = min((m for m in (most, least) if m), key=lambda m: m.start())
    descending = superlative is most
    thing = reading.after(superlative.end())
    group = reading.tables[subject.table]
    limit = 1 if subject.singular else 10
    order = "DESC" if descending else "ASC"
    if thing is None:
        return ""
    if subject.column:
        # "which country has the most customers": the column's values, counted.
        table = group
        amount = thing.column if thing.column in table.measures else ""
        fn, word = ("AVG", "average") if AVERAGED.search(message) else ("SUM", "total")
        measure, alias = ((f"{fn}({amount})", f"{word}_{amount}") if amount
                          else ("COUNT(*)", table.name))
        source = reading.source(table, reading.conditions(table))
        column = _qualified(table, subject.column, source)
        measure = measure.replace(amount, _qualified(table, amount, source)) if amount else measure
        return (f"SELECT {column}, {measure} AS {alias} {source}"
                f" GROUP BY {column} ORDER BY {alias} {order} LIMIT {limit}")
    if thing.table == group.name and thing.column in group.measures:
        # "which employee has the lowest hourly rate": the row, by its own column.
        source = reading.source(group, reading.conditions(group))
        label, column = (_qualified(group, c, source) for c in (group.label, thing.column))
        return f"SELECT {label}, {column} {source} ORDER BY {column} {order} LIMIT {limit}"
    child = reading.tables[thing.table]
    fk = child.reference_to(group)
    if child is group or not fk:
        return ""
    return _grouped_sql(reading, group, child, fk, limit=limit, descending=descending)


def _aggregate_sql(reading: Reading, table: Table) -> str:
    """A count, sum, average, maximum or minimum over the table's rows the question
    narrows down to."""
    message = reading.message
    counted = COUNTED.search(message)
    first = reading.counted()
    measure = reading.measure(table)
    if first is not None and first.column in table.measures:
        measure, fn = first.column, "SUM"  # "how many hours …": the hours, added up
    elif counted:
        fn = "COUNT"
    elif AVERAGED.search(message):
        fn = "AVG"
    elif SUMMED.search(message):
        fn = "SUM"
    elif MOST.search(message):
        fn = "MAX"
    elif LEAST.search(message):
        fn = "MIN"
    else:
        return ""
    source = reading.source(table, reading.conditions(table))
    if fn == "COUNT":
        return f"SELECT COUNT(*) AS count {source}"
    if not measure:
        return ""
    return f"SELECT {fn}({_qualified(table, measure, source)}) AS {fn.lower()}_{measure} {source}"


def _monthly_sql(reading: Reading, table: Table) -> str:
    """"how many projects started each month in 2024?", "total hours per month": the count
    (or the sum of the measure asked) per month of the table's date column, in month order."""
    column = reading.date_column(table)
    if not MONTHLY.search(reading.message) or not column:
        return ""
    first = reading.counted()
    measure = reading.measure(table)
    source = reading.source(table, reading.conditions(table))
    month = f"substr({_qualified(table, column, source)}, 1, 7)"
    if first is not None and first.column in table.measures:
        value = f"SUM({_qualified(table, first.column, source)}) AS total_{first.column}"
    elif COUNTED.search(reading.message) or not measure:
        value = "COUNT(*) AS count"
    else:
        fn, word = ("AVG", "average") if AVERAGED.search(reading.message) else ("SUM", "total")
        value = f"{fn}({_qualified(table, measure, source)}) AS {word}_{measure}"
    return f"SELECT {month} AS month, {value} {source} GROUP BY month ORDER BY month"


def _lookup_sql(reading: Reading, table: Table) -> str:
    """"what status is invoice 377 in?": a column of the row with that id."""
    conditions = reading.conditions(table)
    if not any(c.column == "id" for c in conditions):
        return ""
    asked = [c for c in table.columns if not _is_key(c) and _phrase(_words_of(c)).search(
        reading.message)]
    source = reading.source(table, conditions)
    columns = [_qualified(table, c, source) for c in asked[:1] or _label_columns(table)]
    return f"SELECT {', '.join(columns)} {source}"


def sql_for(message: str, schema_text: str) -> str:
    """A read-only SQL query answering `message` over the described tables ("" if none fits)."""
    tables = parse_schema(schema_text)
    reading = Reading(message, tables)
    by_name = reading.tables
    mentioned = [by_name[n] for n in tables_mentioned(message, list(by_name))]
    top = TOP_N.search(message)
    if len(mentioned) >= 2 and (top or re.search(r"\b(per|each|by)\b", message, re.I)):
        joined = _join_sql(message, mentioned[0], mentioned[1], tables)
        if joined:
            return joined
    ranked = _ranked_sql(reading)
    if ranked:
        return ranked
    table = reading.main()
    if table is None:
        return ""
    monthly = _monthly_sql(reading, table)
    if monthly:
        return monthly
    if len(mentioned) >= 2 and not COUNTED.search(message):
        joined = _join_sql(message, mentioned[0], mentioned[1], tables)
        if joined and not (SUMMED.search(message) or AVERAGED.search(message)):
            return joined
    if re.search(r"\b(per|each|by)\b", message, re.I) and not top:
        # "total hours per employee": the measure lives in a table that references this one.
        for other in tables:
            if other is not table and other.reference_to(table):
                joined = _join_sql(message, table, other, tables)
                if joined and "SUM(" in joined:
                    return joined
    if not top:
        found = _aggregate_sql(reading, table) or _lookup_sql(reading, table)
        if found:
            return found
    conditions = reading.conditions(table)
    source = reading.source(table, conditions)
    labels = _label_columns(table)
    if " JOIN " in source:
        alias = _alias(table.name, set())
        labels = [f"{alias}.{c}" for c in labels]
    by = BY_COLUMN.search(message)
    if top:
        limit = int(top.group(1) or top.group(2))
        col = _column(table, by.group(1)) if by else ""
        col = col or next((c for c in AMOUNT_COLUMNS if c in table.columns), table.columns[0])
        return (f"SELECT {', '.join(dict.fromkeys([*labels, col]))} {source} "
                f"ORDER BY {col} DESC LIMIT {limit}")
    # The list is capped, so the total comes with it (one query, every row carries it): the
    # answer can then say "120, here are the first 10" instead of taking the cap for the total.
    return (f"SELECT {', '.join(labels)}, COUNT(*) OVER () AS {TOTAL_COLUMN} {source} "
            f"ORDER BY {labels[0]} LIMIT {LIST_LIMIT}")



# --- the eras expert's planner and fixer ---------------------------------------

WRITE_REQUEST = re.compile(
    r"^\s*(?:(?:please|can you|could you|would you|will you|i want(?: you)? to|"
    r"i'?d like(?: you)? to|let'?s)\s+)*"
    r"(delete|drop|truncate|remove|clear|wipe|erase|update(?! me\b)|change|rename|modify|edit|set|"
    r"insert|add(?! up\b)|create)\b", re.I)


def write_sql(message: str, table: str) -> str:
    """The write a naive model writes for "delete all customers" or "change the name of
    project 3" ("" when the message asks for no change).

    A naive model does what it is asked; the read-only layers (the guard, a read-only
    connection) must refuse the write, and the user is then told plainly that the database
    is only read.
    """
    if TOPIC.search(message):  # "change the topic to projects" changes the conversation
        return ""
    match = WRITE_REQUEST.search(message)
    if not match:
        return ""
    verb = match.group(1).lower()
    if verb == "drop":
        return f"DROP TABLE {table}"
    if verb in {"insert", "add", "create"}:
        return f"INSERT INTO {table} DEFAULT VALUES"
    if verb in {"delete", "truncate", "remove", "clear", "wipe", "erase"}:
        return f"DELETE FROM {table}"
    return f"UPDATE {table} SET id = id"


def plan_steps(parts: dict[str, str], tools: tuple[str, ...] = ("describe", "query")
               ) -> dict[str, Any]:
    """The eras expert's plan: describe what is not described yet, else one query; offered
    only the query (`tools`), the query however much is described."""
    task = parts.get("task", "")
    names = [t.strip() for t in parts.get("tables", "").split(",") if t.strip()]
    wanted = tables_mentioned(task, names)
    write = write_sql(task, wanted[0]) if wanted else ""
    if write:
        return {"steps": [{"tool": "query", "args": {"sql": write}}]}
    described = parts.get("described", "")
    known = {t.name for t in parse_schema(described)}
    describe = "describe" in tools
    missing = [name for name in wanted if name not in known]
    if missing and describe:
        return {"steps": [{"tool": "describe", "args": {"table": name}} for name in missing]}
    # Nothing named by its table's words may still be named by a described column or value;
    # words the query would leave out may name a column of a table not described yet.
    sql = sql_for(task, described) if known else ""
    rest = [name for name in names if name not in known]
    if rest and describe and (not sql or _unsaid(task, sql, [])):
        return {"steps": [{"tool": "describe", "args": {"table": name}} for name in rest]}
    return {"steps": [{"tool": "query", "args": {"sql": sql}}] if sql else []}


def fix_sql(parts: dict[str, str]) -> dict[str, Any]:
    """A corrected query from the fresh schemas; a refused write cannot be fixed."""
    if re.search(r"\brefused\b|only reading|read-only", parts.get("error", ""), re.I):
        return {"sql": ""}
    task = parts.get("task", "")
    return {"sql": sql_for(task, parts.get("described", "")) if parts.get("described") else ""}


def route(message: str, parts: dict[str, str]) -> dict[str, Any]:
    """The PA's routing decision."""
    experts = dict(re.findall(r"^- ([\w-]+): (.*)$", parts.get("experts", ""), re.M))
    if "eras" in experts and DOMAIN.search(message):
        return {"expert": "eras", "task": message.strip(),
                "reason": "the question is about the eras database",
                "thinking": "Let me look that up in the eras database…"}
    named = next((name for name in experts if re.search(r"\b" + re.escape(name) + r"\b",
                                                         message, re.I)), "")
    if named:
        return {"expert": named, "task": message.strip(), "reason": f"it names {named}",
                "thinking": f"Let me ask the {named} expert…"}
    return {"expert": "none", "task": message.strip(), "reason": "I can answer this myself"}


# --- think -------------------------------------------------------------------

def _your(fact: str) -> str:
    """A fact in the user's words said back to them: "I like tea" -> "you like tea"."""
    fact = re.sub(r"\bI am\b|\bI'm\b", "you are", fact, flags=re.I)
    fact = re.sub(r"\bmy\b", "your", fact, flags=re.I)
    return re.sub(r"\bI\b", "you", fact)


def _machine_done(kind: str, *, reset: bool, parts: dict[str, str]) -> str:
    """What became of a reset or removal, read from the machines after the director's calls
    (a reset keeps the machine, a removal drops it) and from the director's goal."""
    present = bool(_existing_machine(parts.get("machines", ""), kind))
    if reset:
        return (f"Done — the {kind} is back at its start." if present
                else f"There is no {kind} to reset.")
    if present:
        return f"I could not remove the {kind}."
    if re.search(r"\bthere is no\b", parts.get("goal", ""), re.I):
        return f"There is no {kind} to remove."
    return f"I removed the {kind}."


def fact_to_remember(message: str) -> str:
    """The fact a message asks to remember ("remember that my cat is Tom"), or "".

    A question about memory ("what do you remember about me?", "do you remember my
    name?") asks for facts and gives none; nor does "remember what I said?".
    """
    if MEMORY_QUESTION.search(message):
        return ""
    match = REMEMBER.search(message)
    if not match or re.match(r"(what|who|when|where|which|how|if|whether)\b", match.group(1),
                             re.I):
        return ""
    return match.group(1).strip()


def recall(message: str, memory: dict[str, Any]) -> str:
    """The answer to a question about memory: the fact asked about, or all that is known."""
    asked = re.search(r"(?:know|remember|recall)\w*\s+(?:that\s+|about\s+)?(.*?)[?.!]*\s*$",
                      message, re.I)
    subject = asked.group(1).strip().lower() if asked else ""
    if subject not in {"", "me", "anything", "about me", "everything"}:
        words = [w for w in re.findall(r"\w+", subject) if len(w) > 2 and w not in
                 {"the", "that", "you", "about", "what", "told"}]
        for fact in reversed(memory.get("facts", [])):
            if words and all(w in fact.lower() for w in words):
                return f"Yes — you told me that {_your(fact)}."
        if words:
            return "You haven't told me about that yet."
    known = []
    if memory.get("user_name"):
        known.append(f"your name is {memory['user_name']}")
    if memory.get("user_mood"):
        known.append(f"you feel {memory['user_mood']}")
    known.extend(_your(f) for f in memory.get("facts", []))
    return ("I know that " + "; ".join(known) + "." if known
            else "I don't know anything about you yet.")


def think(message: str, parts: dict[str, str], *, machines: bool = True) -> str:
    """The thinker's (or PA's) answer (text, maybe a BUTTONS line) or a `TOOL` line."""
    schema = parts.get("database schema", "")
    if parts.get("plan") == "query" and schema:
        return _query_line(message, schema)
    kind = _machine_kind(message)
    if kind:
        return _machine_answer(kind, message, parts, machines=machines)
    if parts.get("plan") == "query":
        return "I cannot reach the database right now, so I cannot look that up."
    memory = _json(parts.get("memory", ""))
    # The first kind of answer that fits wins, so their order is the order of priority.
    for answer_from in (_recollection, _acknowledgement, _lookup, _suggestion):
        answer = answer_from(message, memory)
        if answer is not None:
            return answer
    name = memory.get("user_name")
    suffix = f", {name}" if name else ""
    # A question it cannot answer is said to be one: never a guess, never a figure.
    opening = (f"I don't have an answer to that{suffix}." if perceive(message)["intent"] ==
               "question" else f"I hear you{suffix}.")
    return (f"{opening} I am the builtin offline model, so I keep to simple things: "
            "names, facts, moods, topics, counters, switches, checklists and questions about "
            "the eras database.")


def _query_line(message: str, schema: str) -> str:
    """A `TOOL query_db` line for a question about the described tables, or their names."""
    tables = [t.name for t in parse_schema(schema)]
    named = tables_mentioned(message, tables)
    sql = (write_sql(message, named[0]) if named else "") or sql_for(message, schema)
    if sql:
        return f"TOOL query_db: {sql}"
    return f"I could not tell which table that is about. The tables are: {', '.join(tables)}."


def _machine_answer(kind: str, message: str, parts: dict[str, str], *, machines: bool) -> str:
    """What to say about a counter, toggle or checklist the message asks for."""
    if not machines:
        return (f"I can't make a {kind} here: machines live in the v3-framed graph. "
                "Switch to it and ask again.")
    if RESET.search(message) or DESTROY.search(message):
        return _machine_done(kind, reset=bool(RESET.search(message)), parts=parts)
    return {"counter": "Here is your counter. Use the buttons to count.",
            "toggle": "Here is a switch. Click to turn it on or off.",
            "checklist": "Here is your checklist. Tick items off as you go."}[kind]


def _recollection(message: str, memory: dict[str, Any]) -> str | None:
    """The answer to "what's my name?" or "what do you remember?", if the message asks."""
    if ASK_NAME.search(message):
        name = memory.get("user_name")
        return (f"Your name is {name}." if name
                else "I don't know your name yet. Tell me with \"my name is …\".")
    if MEMORY_QUESTION.search(message):
        return recall(message, memory)
    return None


def _acknowledgement(message: str, memory: dict[str, Any]) -> str | None:
    """The reply to a fact, a mood or a topic the user just gave, if they gave one."""
    fact = fact_to_remember(message)
    if fact:
        return f"Got it — I'll remember that {_your(fact)}."
    mood = MOOD.search(message)
    if mood:
        word = mood.group(1).lower()
        if word in NEGATIVE_MOODS:
            return f"I'm sorry you're feeling {word}. Do you want to talk about it?"
        return f"Glad to hear you're feeling {word}!"
    topic = TOPIC.search(message)
    if topic:
        subject = next(g for g in topic.groups() if g).strip()
        return f"Sure, let's talk about {subject}. What would you like to know?"
    return None


def _lookup(message: str, memory: dict[str, Any]) -> str | None:
    """The answer, from memory, to a question about mood, topic, time or one of the user's
    things, if the message asks one."""
    if ASK_MOOD.search(message):
        mood_now = memory.get("user_mood")
        return (f"You told me you're feeling {mood_now}." if mood_now
                else "You haven't told me how you feel yet.")
    if ASK_TOPIC.search(message):
        return (f"We are talking about {memory['topic']}." if memory.get("topic")
                else "We haven't settled on a topic yet.")
    if ASK_TIME.search(message):
        situation = memory.get("situation") or "unknown to me"
        return f"It is {situation.split(';')[0]}."
    asked = ASK_MY.search(message)
    if asked:
        subject = asked.group(1).strip().lower()
        for fact in reversed(memory.get("facts", [])):
            if subject in fact.lower():
                return f"You told me that {_your(fact)}."
        return f"You haven't told me your {subject} yet."
    return None


def _suggestion(message: str, memory: dict[str, Any]) -> str | None:
    """An answer with buttons to a "should I …?" or a request for help, if it is one."""
    if SHOULD.search(message):
        return ("That depends on what matters most to you. Shall we weigh it up together?\n"
                'BUTTONS: [{"label": "Yes, let\'s", "action": "weigh_up"}, '
                '{"label": "No thanks", "action": "skip"}]')
    if HELP.search(message):
        return ("I can remember your name, facts and mood, follow topic changes, make counters, "
                "switches and checklists, and answer questions about the eras database.\n"
                'BUTTONS: [{"label": "Give me a counter", "action": "give me a counter"}, '
                '{"label": "How many customers are there?", '
                '"action": "how many customers are there?"}]')
    return None


# --- interpret ---------------------------------------------------------------

COUNT_ASKED = re.compile(r"\b(?:how many|number of|count(?: of)?(?: the)?)\s+(.+?)[?.!]*\s*$", re.I)
# Words of a question that qualify nothing ("how many customers are there in total?", "what's
# the largest budget any project has?").
QUESTION_FILLER = frozenset((
    "there are is were was be been being do does did we you i they have has had got get in "
    "from the a an of to total all altogether overall database eras currently now today right "
    "moment present presently exist exists existing listed stored registered recorded any our "
    "us my your their it its which with at on for count number exactly named called based "
    "located situated work works working ever so far yet still already will would can could "
    "please tell me show give what whats s how many much who whose sum average mean largest "
    "biggest highest greatest maximum max smallest lowest least minimum min most fewest "
    "cheapest top amount value by per each one ones every kind up add adds added people "
    "person someone anyone everyone company since before after until during list show "
    "find name names see").split())
SQL_LITERAL = re.compile(r"'((?:[^']|'')*)'")
SQL_WORD = re.compile(r"[A-Za-z]+|\d+")
LIMIT = re.compile(r"\bLIMIT\s+(\d+)", re.I)
ROWS_LISTED = 10
_SQL_KEYWORDS = frozenset({"where", "join", "group", "order", "limit", "on", "inner", "left"})
_AGGREGATE_WORDS = {"SUM": "total", "AVG": "average", "MAX": "highest", "MIN": "lowest"}


def _query_tables(sql: str) -> tuple[str, dict[str, str]]:
    """A query's main table (after FROM) and the table each alias stands for."""
    aliases: dict[str, str] = {}
    main = ""
    for keyword, table, alias in re.findall(
            r"\b(FROM|JOIN)\s+(\w+)(?:\s+(?:AS\s+)?(\w+))?", sql, re.I):
        main = main or (table if keyword.upper() == "FROM" else "")
        aliases[table] = table
        if alias and alias.lower() not in _SQL_KEYWORDS:
            aliases[alias] = table
    return main, aliases


def _period(column: str, start: str, end: str) -> str:
    """A date range in words: "issued in 2024", "in March 2024", "from 2024-03-05 on"."""
    verb = DATE_SUFFIX.sub("", column).replace("_", " ")
    verb = verb + " " if verb.endswith("ed") or verb == "due" else ""
    if start and end and start.endswith("-01") and end.endswith("-01"):
        (y1, m1), (y2, m2) = (map(int, d.split("-")[:2]) for d in (start, end))
        if m1 == 1 and (y2, m2) == (y1 + 1, 1) and start.endswith("-01-01"):
            return f"{verb}in {y1}"
        if (y2, m2) == ((y1, m1 + 1) if m1 < 12 else (y1 + 1, 1)):
            return f"{verb}in {MONTHS[m1 - 1].capitalize()} {y1}"
    if start and end:
        return f"{verb}from {start} to before {end}"
    if start:
        return f"{verb}since {start[:4]}" if start.endswith("-01-01") else f"{verb}from {start} on"
    return f"{verb}before {end[:4]}" if end.endswith("-01-01") else f"{verb}before {end}"


def _conditions(sql: str) -> tuple[list[str], list[str], bool]:
    """A query's WHERE conditions in words: (words before the noun, phrases after it,
    whether every condition could be put into words)."""
    where = re.search(r"\bWHERE\b(.+?)(?:\bGROUP BY\b|\bORDER BY\b|\bLIMIT\b|$)", sql, re.I | re.S)
    main, aliases = _query_tables(sql)
    before: list[str] = []
    after: list[str] = []
    ranges: dict[str, dict[str, str]] = {}
    understood = True
    for condition in re.split(r"\bAND\b", where.group(1), flags=re.I) if where else ():
        test = re.match(r"\s*\(?\s*(?:(\w+)\.)?(\w+)\s*(>=|<=|=|<|>|\bIN\b)\s*(.*)$", condition,
                        re.I)
        if not test:
            understood = False
            continue
        alias, name, op, rest = test.group(1), test.group(2).lower(), test.group(3), test.group(4)
        table = aliases.get(alias or "", main)
        literals = [v.replace("''", "'") for v in SQL_LITERAL.findall(rest)]
        value = literals[0] if literals else rest.strip().rstrip(")").strip()
        if op in (">=", ">", "<", "<=") and re.match(r"\d{4}-\d{2}-\d{2}", value):
            ranges.setdefault(name, {})["start" if op.startswith(">") else "end"] = value
        elif op.upper() == "IN" and name == "status":
            before.append(" or ".join(v.replace("_", " ") for v in literals))
        elif op != "=" or not value:
            understood = False
        elif name == "status":
            word = value.replace("_", " ")
            (after if " " in word else before).append(word)
        elif name in {"city", "country"}:
            after.append(f"in {value}")
        elif name == "name" and table != main:
            after.append(f"of {_table_words(table)[1]} {value}")
        elif name == "name":
            after.append(f"named {value}")
        elif name == "id":
            after.append(f"number {value}")
        elif value in ("0", "1") and FLAG_NAME.fullmatch(name):
            before.append(_words_of(name) if value == "1" else f"non-{_words_of(name)}")
        elif literals:
            after.append(f"with {_words_of(name)} {value}")
        else:
            understood = False
    for column, bounds in ranges.items():
        after.append(_period(column, bounds.get("start", ""), bounds.get("end", "")))
    return before, after, understood


def _unsaid(question: str, sql: str, words: list[str]) -> list[str]:
    """The words of `question` that qualify something the query did not use: neither filler
    nor a word of the query, of its answer's phrase or another name of its tables."""
    said = {_stem(w.lower()) for w in SQL_WORD.findall(sql + " " + " ".join(words))}
    for table in _query_tables(sql)[1].values():
        said |= {_stem(w) for w in TABLE_SYNONYMS.get(table, ())}
    return [w for w in re.findall(r"[a-z0-9]+", question.lower().replace("'", " "))
            if w not in QUESTION_FILLER and _stem(w) not in said]


def count_sentence(question: str, sql: str, value: str) -> str:
    """A count said with exactly the qualifiers the query filtered on ("There are 157 active
    projects."); when the question asks for more than the query filtered, it says so; none
    is said as none ("The database has no invoices issued in 2031.")."""
    asked = COUNT_ASKED.search(question)
    table = _query_tables(sql)[0]
    if not asked or not table or not re.search(r"\bCOUNT\s*\(", sql, re.I):
        return f"The answer is {value}."
    plural, singular = _table_words(table)
    before, after, understood = _conditions(sql)
    one = value == "1"
    phrase = " ".join([*before, singular if one else plural, *after])
    if value == "0" and understood:
        return f"The database has no {phrase}."
    there = f"there {'is' if one else 'are'} {value} {phrase}"
    if not understood:
        return f"I counted {value} {phrase} matching your question."
    unsaid = _unsaid(asked.group(1), sql, [*before, *after, plural, singular])
    if unsaid:
        # The count is of something else than was asked: no figure, it would pass for one.
        return (f"I could not work out how to count only the ones you asked about "
                f"({', '.join(unsaid)}), so I have no number for that.")
    return _cap(there) + "."


def aggregate_sentence(question: str, sql: str, value: str) -> str | None:
    """A sum, average, maximum or minimum said with what it was taken over ("The total
    amount of overdue invoices is 1,109,000."); None when the query is not one."""
    found = re.search(r"^\s*SELECT\s+(SUM|AVG|MAX|MIN)\s*\(\s*(?:\w+\.)?(\w+)\s*\)", sql, re.I)
    table = _query_tables(sql)[0]
    if not found or not table:
        return None
    before, after, understood = _conditions(sql)
    phrase = " ".join([*before, _table_words(table)[0], *after])
    if not value:
        return f"The database has no {phrase}." if understood else (
            "The database has nothing matching that.")
    said = f"the {_AGGREGATE_WORDS[found.group(1).upper()]} {_words_of(found.group(2))} of {phrase}"
    if not understood:
        return f"I worked out {said} matching your question: {value}."
    unsaid = _unsaid(question, sql, [*before, *after])
    if unsaid:
        return (f"I could not work out how to take only the ones you asked about "
                f"({', '.join(unsaid)}), so I have no number for that.")
    return f"{_cap(said)} is {value}."


def ranked_sentence(sql: str, row: list[str]) -> str | None:
    """The one row a ranking query kept ("Summit Broadcasting has the most projects: 7."),
    None when the query is not one."""
    found = re.search(r"\bORDER BY\s+(?:\w+\.)?(\w+)\s*(ASC|DESC)?\s+LIMIT\s+1\s*$", sql, re.I)
    if not found or len(row) != 2 or not row[0]:
        return None
    column, descending = found.group(1), (found.group(2) or "ASC").upper() == "DESC"
    counted = column in _query_tables(sql)[1].values() or re.search(
        r"COUNT\([^)]*\)\s+AS\s+" + re.escape(column) + r"\b", sql, re.I)
    if counted:
        said = f"{'most' if descending else 'fewest'} {_words_of(column)}"
    else:
        said = f"{'highest' if descending else 'lowest'} {_words_of(column)}"
    return f"{row[0]} has the {said}: {row[1]}."


def lookup_sentence(sql: str, value: str) -> str | None:
    """One column of the row with an id ("The status of invoice 377 is open."); None when the
    query is not one."""
    found = re.fullmatch(r"\s*SELECT\s+(\w+)\s+FROM\s+(\w+)\s+WHERE\s+id\s*=\s*(\d+)\s*", sql,
                         re.I)
    if not found:
        return None
    shown = value.replace("_", " ") if re.fullmatch(r"[a-z_]+", value) else value
    if not value:
        return f"{_cap(_table_words(found.group(2))[1])} {found.group(3)} has no " \
               f"{_words_of(found.group(1))}."
    return (f"The {_words_of(found.group(1))} of {_table_words(found.group(2))[1]} "
            f"{found.group(3)} is {shown}.")


def listing(header: list[str], rows: list[list[str]], more: int, sql: str,
            truncated: bool) -> str:
    """Rows said as a list, with the total only where it is known: a list capped by its
    LIMIT (or the row limit) is not all there is."""
    total = None
    if TOTAL_COLUMN in header:
        at = header.index(TOTAL_COLUMN)
        total = int(float((rows[0][at] or "0").replace(",", "")))
        rows = [row[:at] + row[at + 1:] for row in rows]
    fetched = len(rows) + more
    limits = LIMIT.findall(sql)
    capped = truncated or bool(limits and fetched >= int(limits[-1]))
    if total is None and not capped:
        total = fetched
    if total is None and limits and re.search(r"\bORDER BY\b[^()]*\bDESC\b", sql, re.I):
        shown = rows
        intro = f"Here are the top {len(shown)}"
    else:
        shown = rows[:ROWS_LISTED]
        count = fetched if total is None else total
        amount = f"at least {fetched}" if total is None else str(total)
        intro = f"I found {amount} result{'s' if count != 1 else ''}"
        if count > len(shown):
            intro += f"; here are the first {len(shown)}"
    return intro + ":\n" + "\n".join("- " + " — ".join(v for v in row if v) for row in shown)


def interpret(parts: dict[str, str]) -> str:
    """A plain-language reading of a pipe-table result."""
    lines = [line for line in parts.get("result", "").splitlines() if line.strip()]
    if not lines:
        return "The query returned nothing."
    header = [c.strip() for c in lines[0].split("|")]
    truncated = any(line.startswith("(the result was cut off") for line in lines)
    rows = [[v.strip() for v in line.split("|")] for line in lines[1:]
            if not line.startswith(("... ", "(the result"))]
    more = next((int(m.group(1)) for line in lines if (m := re.match(r"\.\.\. (\d+) more", line))),
                0)
    question, sql = parts.get("question", ""), parts.get("sql", "")
    if not rows:
        # A sum over no rows is one empty (NULL) cell, which the table shows as no line.
        return ((aggregate_sentence(question, sql, "") if len(header) == 1 else None)
                or "The query found nothing matching that.")
    if len(rows) == 1 and len(header) == 1:
        value = rows[0][0]
        return (aggregate_sentence(question, sql, value) or lookup_sentence(sql, value)
                or count_sentence(question, sql, value))
    if len(rows) == 1 and not more and not truncated:
        ranked = ranked_sentence(sql, rows[0])
        if ranked:
            return ranked
    return listing(header, rows, more, sql, truncated)



# --- remember ----------------------------------------------------------------

def memorize(parts: dict[str, str]) -> dict[str, Any]:
    """What an exchange changed in the memory (the memorizer's `MemoryUpdate`)."""
    before = _json(parts.get("memory", ""))
    after = remembered_memory(parts)
    update: dict[str, Any] = {key: after.get(key, "") if after.get(key) != before.get(key) else ""
                              for key in ("user_name", "user_mood", "topic", "language",
                                          "style_hint")}
    update["new_facts"] = [f for f in after.get("facts", []) if f not in before.get("facts", [])]
    return update


def remembered_memory(parts: dict[str, str]) -> dict[str, Any]:
    """The whole memory after an exchange."""
    memory = _json(parts.get("memory", ""))
    message = parts.get("message", "")
    intro = INTRO.search(message)
    if intro:
        memory["user_name"] = _cap(intro.group(1))
    mood = MOOD.search(message)
    if mood:
        memory["user_mood"] = mood.group(1).lower()
    topic = TOPIC.search(message)
    if topic:
        subject = next(g for g in topic.groups() if g).strip().lower()
        if subject != memory.get("topic"):
            memory["topic"] = subject
            memory["topic_history"] = [*memory.get("topic_history", []), subject]
    fact = fact_to_remember(message)
    if fact:
        if fact not in memory.get("facts", []):
            memory["facts"] = [*memory.get("facts", []), fact]
    if GERMAN.search(message):
        memory["language"] = "de"
    elif FRENCH.search(message):
        memory["language"] = "fr"
    if STYLE_BRIEF.search(message):
        memory["style_hint"] = "brief"
    elif STYLE_DETAIL.search(message):
        memory["style_hint"] = "detailed"
    return memory


# --- speak -------------------------------------------------------------------

def speak(parts: dict[str, str]) -> str:
    """The output voice's short social answer."""
    message = parts.get("message", "")
    perception = _json(parts.get("perception", ""))
    name = _known_name(parts.get("context summary", ""))
    intro = INTRO.search(message)
    if intro:
        return f"Nice to meet you, {_cap(intro.group(1))}!"
    suffix = f", {name}" if name else ""
    intent = perception.get("intent") or perceive(message)["intent"]
    if DECLINE.search(message):
        return ("In Ordnung. Sag Bescheid, wenn du etwas brauchst." if perception.get(
            "language") == "de" else f"All right{suffix}. Let me know if you need anything.")
    if perception.get("language") == "de":
        return f"Hallo{suffix}! Wie kann ich helfen?"
    if intent == "thanks":
        return f"You're welcome{suffix}!"
    if intent == "farewell":
        return f"Goodbye{suffix} — talk to you soon!"
    return f"Hello{suffix}! How can I help you today?"


def _choices(request: LLMRequest, name: str) -> tuple[str, ...]:
    """The allowed values of a field of the request's schema, if it names them."""
    if request.schema is None:
        return ()
    prop = request.schema.schema.get("properties", {}).get(name, {})
    return tuple(prop.get("enum", ()))


def tool_calls_for(node: str, text: str) -> list[ModelToolCall]:
    """The builtin's answer in a node's contract, as native tool calls."""
    if node == "thinker":
        tool = re.match(r"^\s*TOOL\s+(\w+)\s*:\s*(.+)$", text, re.S)
        return [_call("query_db", {"sql": tool.group(2).strip()})] if tool else []
    data = _json(text)
    if node == "director":
        return [_call("plan", {"plan": data.get("plan", "answer"), "goal": data.get("goal", "")}),
                *(_call(c["name"], c["args"]) for c in data.get("tool_calls", []))]
    if node == "planner":
        return [_call(step["tool"], step["args"]) for step in data.get("steps", [])]
    if node == "fixer" and data.get("sql"):
        return [_call("query", {"sql": data["sql"]})]
    return []


def respond_with_tools(request: LLMRequest) -> tuple[str, tuple[ModelToolCall, ...]]:
    """The builtin model's answer to a request that offers native tools: (text, tool calls)."""
    text = respond(request)
    system = next((m.content for m in request.messages if m.role == "system"), "")
    role = _ROLE.search(system)
    calls = tuple(tool_calls_for(role.group(1).lower() if role else "", text))
    return ("" if calls else text), calls


def _call(name: str, args: dict[str, Any]) -> ModelToolCall:
    return ModelToolCall(name=name, arguments=json.dumps(args))


def respond(request: LLMRequest) -> str:
    """The builtin model's answer to a request."""
    system = next((m.content for m in request.messages if m.role == "system"), "")
    users = [m.content for m in request.messages if m.role == "user"]
    user = users[-1] if users else ""
    role = _ROLE.search(system)
    parts = sections(user)
    if not parts and len(users) > 1:
        # A repair ("Your last answer stated …") adds a plain line after the sectioned
        # prompt: the prompt is still what is answered (the same way, as this model only
        # knows one).
        parts = sections(users[-2])
    message = parts.get("message", user)
    node = role.group(1).lower() if role else ""
    if node == "input":
        routes = _choices(request, "route") or ("reflex", "director")
        return json.dumps(perceive(message, (routes[0], routes[-1])))
    if node == "pa":
        if parts.get("mode") == "answer":
            return think(message, parts, machines=False)
        return json.dumps(route(message, parts))
    if node == "planner":
        offered = tuple(t.name for t in request.tools) or tuple(
            re.findall(r"^- (\w+):", parts.get("tools", ""), re.M))
        return json.dumps(plan_steps(parts, offered or ("describe", "query")))
    if node == "fixer":
        return json.dumps(fix_sql(parts))
    if node == "answerer":
        return interpret(parts)
    if node == "director":
        return json.dumps(direct(message, parts))
    if node == "thinker":
        return think(message, parts)
    if node == "interpreter":
        return interpret(parts)
    if node == "memorizer":
        return json.dumps(memorize(parts))
    if node == "output":
        return speak(parts)
    if request.json_output:
        return json.dumps({"error": "the builtin model does not know this prompt"})
    return ("I am the builtin offline model and do not recognise this prompt; "
            "configure LLM_BASE_URL to use a real model.")


class BuiltinProvider:
    """The offline provider: same interface as a real one, answers from `respond`.

    Like a real endpoint it understands structured output and, unless told not
    to (`LLM_NATIVE_TOOLS=false`), native tool calls, so both ways nodes talk to
    models run offline.
    """

    name = "builtin"

    def __init__(self, *, latency_ms: float = 0.0, model: str = "builtin",
                 native_tools: bool = True) -> None:
        self.latency_ms = latency_ms
        self.model = model
        self.native_tools = native_tools

    @classmethod
    def from_settings(cls, settings: Any) -> BuiltinProvider:
        """A provider configured by BUILTIN_LLM_LATENCY_MS and LLM_NATIVE_TOOLS."""
        return cls(latency_ms=float(settings.BUILTIN_LLM_LATENCY_MS),
                   native_tools=bool(settings.LLM_NATIVE_TOOLS))

    def capabilities(self, model: str = "") -> Capabilities:
        """Structured output always; native tools unless switched off."""
        return Capabilities(structured="json_schema", tools=self.native_tools)

    def _usage(self, request: LLMRequest, text: str) -> Usage:
        return Usage(prompt_tokens=sum(count_tokens(m.content) for m in request.messages),
                     completion_tokens=count_tokens(text))

    def _answer(self, request: LLMRequest) -> tuple[str, tuple[ModelToolCall, ...]]:
        if request.tools and self.native_tools:
            return respond_with_tools(request)
        return respond(request), ()

    def _completion(self, request: LLMRequest, text: str, calls: tuple[ModelToolCall, ...],
                    t0: float) -> Completion:
        return Completion(text=text, provider=self.name, model=request.model or self.model,
                          usage=self._usage(request, text + "".join(c.arguments for c in calls)),
                          ms=(time.perf_counter() - t0) * 1000.0, tool_calls=calls,
                          finish_reason="tool_calls" if calls else "stop",
                          structured="json_schema" if request.json_output else "")

    async def complete(self, request: LLMRequest) -> Completion:
        """The whole answer."""
        t0 = time.perf_counter()
        if self.latency_ms:
            await asyncio.sleep(self.latency_ms / 1000.0)
        text, calls = self._answer(request)
        return self._completion(request, text, calls, t0)

    async def stream(self, request: LLMRequest, on_delta: DeltaCallback) -> Completion:
        """The answer word by word."""
        t0 = time.perf_counter()
        if self.latency_ms:
            await asyncio.sleep(self.latency_ms / 1000.0)
        text, calls = self._answer(request)
        for piece in _PIECE.findall(text):
            await on_delta(piece)
        return self._completion(request, text, calls, t0)
