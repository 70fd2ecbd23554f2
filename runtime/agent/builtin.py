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

DOMAIN = re.compile(r"\b(customers?|projects?|employees?|invoices?|invoice lines?|time entr(?:y|ies)|"
                    r"departments?|hours|database|eras)\b", re.I)
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


def parse_schema(text: str) -> list[Table]:
    """Tables, column names and foreign keys from DESCRIBE text."""
    tables: list[Table] = []
    name, columns, refs = "", [], []
    for line in text.splitlines():
        head = re.match(r"^(\w+)\s*\(", line)
        if head and not line.startswith((" ", "\t")):
            if name:
                tables.append(Table(name, tuple(columns), tuple(refs)))
            name, columns, refs = head.group(1), [], []
            continue
        col = re.match(r"^\s+(\w+)\s", line + " ")
        if col and name:
            columns.append(col.group(1))
            ref = re.search(r"-> (\w+)\.(\w+)", line)
            if ref:
                refs.append((col.group(1), ref.group(1), ref.group(2)))
    if name:
        tables.append(Table(name, tuple(columns), tuple(refs)))
    return tables


def _table_words(table: str) -> list[str]:
    words = table.replace("_", " ")
    singular = re.sub(r"ies$", "y", words) if words.endswith("ies") else re.sub(r"s$", "", words)
    return [words, singular]


def tables_mentioned(message: str, names: list[str]) -> list[str]:
    """The table names a message mentions, in the order it mentions them."""
    lowered = message.lower()
    found: list[tuple[int, str]] = []
    for name in names:
        positions = [m.start() for word in _table_words(name)
                     for m in re.finditer(r"\b" + re.escape(word) + r"\b", lowered)]
        if positions:
            found.append((min(positions), name))
    return [name for _, name in sorted(found)]


def _find_table(message: str, tables: list[Table]) -> Table | None:
    best: tuple[int, int, Table] | None = None
    lowered = message.lower()
    for table in tables:
        for word in _table_words(table.name):
            for match in re.finditer(r"\b" + re.escape(word) + r"\b", lowered):
                key = (match.start(), -len(word), table)
                if best is None or key[:2] < best[:2]:
                    best = key
    return best[2] if best else None


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


AMOUNT_COLUMNS = ("amount", "budget", "hours", "hourly_rate", "unit_price", "quantity")
LIST_LIMIT = 20
TOTAL_COLUMN = "total_rows"
"""The column a capped list query carries its uncapped row count in."""
CITY = re.compile(r"\b(?:in|from)\s+([A-Z][\w-]+(?:\s[A-Z][\w-]+)?)")
NAMED = re.compile(r"\b(?:named|called)\s+['\"]?([^'\"?]+?)['\"]?\s*(?:\?|$)", re.I)


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _filters(message: str, table: Table, alias: str = "") -> list[str]:
    """WHERE conditions for values the message names: a status, a city or country, a name."""
    prefix = f"{alias}." if alias else ""
    lowered = message.lower()
    conditions = []
    if "status" in table.columns:
        for word in STATUS_WORDS:
            if re.search(r"\b" + word.replace("_", " ") + r"\b", lowered):
                conditions.append(f"{prefix}status = {_quote(word.replace(' ', '_'))}")
                break
    place = CITY.search(message)
    if place:
        where = [f"{prefix}{c} = {_quote(place.group(1))}" for c in ("city", "country")
                 if c in table.columns]
        if where:
            conditions.append("(" + " OR ".join(where) + ")" if len(where) > 1 else where[0])
    named = NAMED.search(message)
    if named and "name" in table.columns:
        conditions.append(f"{prefix}name = {_quote(named.group(1).strip())}")
    return conditions


def _join_sql(message: str, first: Table, second: Table) -> str:
    """A GROUP BY over a foreign key between two mentioned tables, or empty if none links them."""
    link = next(((child, parent, col) for child, parent in ((second, first), (first, second))
                 for col, target, _ in child.refs if target == parent.name), None)
    if link is None:
        return ""
    child, parent, fk = link
    label = _label_columns(parent)[0]
    amount = next((c for c in AMOUNT_COLUMNS if c in child.columns
                   and re.search(r"\b" + c.replace("_", " ") + r"\b", message.lower())), "")
    measure = (f"SUM(c.{amount}) AS total_{amount}" if amount
               else f"COUNT(c.id) AS {child.name}")
    order = f"total_{amount}" if amount else child.name
    top = TOP_N.search(message)
    limit = int(top.group(1) or top.group(2)) if top else 10
    where = _filters(message, parent, "p") + _filters(message, child, "c")
    return (f"SELECT p.{label}, {measure} FROM {parent.name} p JOIN {child.name} c "
            f"ON c.{fk} = p.id" + (" WHERE " + " AND ".join(where) if where else "")
            + f" GROUP BY p.id, p.{label} ORDER BY {order} DESC LIMIT {limit}")


def sql_for(message: str, schema_text: str) -> str:
    """A read-only SQL query answering `message` over the described tables ("" if none fits)."""
    tables = parse_schema(schema_text)
    by_name = {t.name: t for t in tables}
    mentioned = [by_name[n] for n in tables_mentioned(message, list(by_name))]
    if len(mentioned) >= 2:
        joined = _join_sql(message, mentioned[0], mentioned[1])
        if joined:
            return joined
    table = mentioned[0] if mentioned else None
    if table is None:
        return ""
    if re.search(r"\b(per|each|by)\b", message, re.I):
        # "total hours per employee": the measure lives in a table that references this one.
        for other in tables:
            if other is not table and any(t == table.name for _, t, _ in other.refs):
                joined = _join_sql(message, table, other)
                if joined and "SUM(" in joined:
                    return joined
    conditions = _filters(message, table)
    where = " WHERE " + " AND ".join(conditions) if conditions else ""
    lowered = message.lower()
    if re.search(r"\b(how many|number of|count)\b", lowered):
        return f"SELECT COUNT(*) AS count FROM {table.name}{where}"
    aggregate = AGGREGATE.search(message)
    if aggregate and aggregate.group(2):
        col = _column(table, aggregate.group(2))
        if col:
            fn = {"total": "SUM", "sum of": "SUM", "average": "AVG", "mean": "AVG",
                  "maximum": "MAX", "max": "MAX", "minimum": "MIN",
                  "min": "MIN"}[aggregate.group(1).lower()]
            return f"SELECT {fn}({col}) AS {fn.lower()}_{col} FROM {table.name}{where}"
    labels = _label_columns(table)
    top = TOP_N.search(message)
    by = BY_COLUMN.search(message)
    if top:
        limit = int(top.group(1) or top.group(2))
        col = _column(table, by.group(1)) if by else ""
        col = col or next((c for c in AMOUNT_COLUMNS if c in table.columns), table.columns[0])
        return (f"SELECT {', '.join(dict.fromkeys([*labels, col]))} FROM {table.name}{where} "
                f"ORDER BY {col} DESC LIMIT {limit}")
    # The list is capped, so the total comes with it (one query, every row carries it): the
    # answer can then say "120, here are the first 10" instead of taking the cap for the total.
    return (f"SELECT {', '.join(labels)}, COUNT(*) OVER () AS {TOTAL_COLUMN} FROM {table.name}"
            f"{where} ORDER BY {labels[0]} LIMIT {LIST_LIMIT}")


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


def plan_steps(parts: dict[str, str]) -> dict[str, Any]:
    """The eras expert's plan: describe what is not described yet, else one query."""
    task = parts.get("task", "")
    names = [t.strip() for t in parts.get("tables", "").split(",") if t.strip()]
    wanted = tables_mentioned(task, names)
    if not wanted:
        return {"steps": []}
    write = write_sql(task, wanted[0])
    if write:
        return {"steps": [{"tool": "query", "args": {"sql": write}}]}
    known = {t.name for t in parse_schema(parts.get("described", ""))}
    missing = [name for name in wanted if name not in known]
    if missing:
        return {"steps": [{"tool": "describe", "args": {"table": name}} for name in missing]}
    return {"steps": [{"tool": "query", "args": {"sql": sql_for(task, parts["described"])}}]}


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
    return (f"I hear you{suffix}. I am the builtin offline model, so I keep to simple things: "
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
# Words of a counting question that qualify nothing ("how many customers are there in total?").
COUNT_FILLER = frozenset((
    "there are is were was be do does did we you i have has had got in from the a an of total "
    "all altogether overall database eras currently now today exist exists listed stored "
    "registered recorded any our us my your it which with at on for count number exactly "
    "named called").split())
SQL_LITERAL = re.compile(r"'((?:[^']|'')*)'")
LIMIT = re.compile(r"\bLIMIT\s+(\d+)", re.I)
ROWS_LISTED = 10


def _conditions(sql: str) -> tuple[list[str], list[str], bool]:
    """A query's WHERE conditions in words: (words before the noun, phrases after it,
    whether every condition could be put into words)."""
    where = re.search(r"\bWHERE\b(.+?)(?:\bGROUP BY\b|\bORDER BY\b|\bLIMIT\b|$)", sql, re.I | re.S)
    before: list[str] = []
    after: list[str] = []
    understood = True
    for condition in re.split(r"\bAND\b", where.group(1), flags=re.I) if where else ():
        literal = SQL_LITERAL.search(condition)
        value = literal.group(1).replace("''", "'") if literal else ""
        column = re.match(r"\s*\(?\s*(?:\w+\.)?(\w+)\s*=", condition)
        name = column.group(1).lower() if column and value else ""
        if name == "status":
            word = value.replace("_", " ")
            (after if " " in word else before).append(word)
        elif name in {"city", "country"}:
            after.append(f"in {value}")
        elif name == "name":
            after.append(f"named {value}")
        else:
            understood = False
    return before, after, understood


def count_sentence(question: str, sql: str, value: str) -> str:
    """A count said with exactly the qualifiers the query filtered on ("There are 157 active
    projects."); when the question asks for more than the query filtered, it says so."""
    asked = COUNT_ASKED.search(question)
    table = re.search(r"\bFROM\s+(\w+)", sql, re.I)
    if not asked or not table or not re.search(r"\bCOUNT\s*\(", sql, re.I):
        return f"The answer is {value}."
    plural, singular = _table_words(table.group(1))
    before, after, understood = _conditions(sql)
    one = value == "1"
    phrase = " ".join([*before, singular if one else plural, *after])
    there = f"there {'is' if one else 'are'} {value} {phrase}"
    if not understood:
        return f"I counted {value} {phrase} matching your question."
    said = set(re.findall(r"\w+", " ".join([*before, *after, plural, singular]).lower()))
    unsaid = [w for w in re.findall(r"\w+", asked.group(1).lower())
              if w not in COUNT_FILLER and w not in said]
    if unsaid:
        return f"I could not count only the ones you asked about, but {there} in all."
    return _cap(there) + "."


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
    if not rows:
        return "The query found nothing matching that."
    if len(rows) == 1 and len(header) == 1:
        return count_sentence(parts.get("question", ""), parts.get("sql", ""), rows[0][0])
    return listing(header, rows, more, parts.get("sql", ""), truncated)


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
    user = next((m.content for m in reversed(request.messages) if m.role == "user"), "")
    role = _ROLE.search(system)
    parts = sections(user)
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
        return json.dumps(plan_steps(parts))
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
