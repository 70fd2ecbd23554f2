"""Node contracts: what a node asks a model for, as types, not prose.

Each node that needs structure declares its output once, here, as a frozen
dataclass; its JSON Schema is derived from the type hints (closed choices are
`Literal`s, or a `choices` field filled from the graph at run time, such as
the input node's routes or the PA's experts). The schema goes to the model as
structured output where the endpoint supports it; whatever comes back is
parsed and validated here either way, so a node only ever sees a well-typed
value or a `ContractViolation` saying what was wrong (which becomes the text
of the one repair attempt).

Native tools are contracts too: a `Tool` is a name, a line for the model and
a dataclass of arguments.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args, get_origin

from runtime.llm.base import OutputSchema, ToolSpec

# Choices filled in at run time: field name -> the allowed values.
Choices = Mapping[str, Sequence[str]]


class ContractViolation(ValueError):
    """A model's answer does not fit the contract; the message says how, for the repair."""


def doc(text: str, *, choices: bool = False, max_length: int | None = None,
        max_items: int | None = None) -> dict[str, Any]:
    """Field metadata: the line the model reads about the field.

    `choices=True` marks a string field whose allowed values are given at run
    time (`Choices`); `max_length` bounds a string, `max_items` a list (a small
    model otherwise repeats an item until its tokens run out).
    """
    return {"doc": text, "dynamic_choices": choices, "max_length": max_length,
            "max_items": max_items}


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    # A class's resolved type hints never change; resolving them is most of the cost of
    # deriving a schema, which every structured call does.
    return typing.get_type_hints(cls, include_extras=False)


def _meta(f: dataclasses.Field) -> dict[str, Any]:
    return {"doc": "", "dynamic_choices": False, "max_length": None, "max_items": None,
            **f.metadata}


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


# --- schema ----------------------------------------------------------------------

def json_schema(cls: type, choices: Choices | None = None) -> dict[str, Any]:
    """The JSON Schema of a contract dataclass (every field listed and required, no extras:
    the form strict structured output accepts)."""
    choices = choices or {}
    properties: dict[str, Any] = {}
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        meta = _meta(f)
        prop = _type_schema(hints[f.name], choices.get(f.name) if meta["dynamic_choices"] else None)
        if meta["doc"]:
            prop["description"] = meta["doc"]
        if meta["max_length"] and prop.get("type") == "string":
            prop["maxLength"] = meta["max_length"]
        if meta["max_items"] and prop.get("type") == "array":
            prop["maxItems"] = meta["max_items"]
        properties[f.name] = prop
    return {"type": "object", "properties": properties, "required": list(properties),
            "additionalProperties": False}


def _type_schema(tp: Any, dynamic: Sequence[str] | None) -> dict[str, Any]:
    origin = get_origin(tp)
    if dynamic is not None:
        return {"type": "string", "enum": list(dynamic)}
    if origin is Literal:
        return {"type": "string", "enum": list(get_args(tp))}
    if tp is str:
        return {"type": "string"}
    if tp is bool:
        return {"type": "boolean"}
    if tp is int:
        return {"type": "integer"}
    if tp is float:
        return {"type": "number"}
    if origin in (list, tuple, Sequence):
        return {"type": "array", "items": _type_schema(get_args(tp)[0], None)}
    if origin in (dict, Mapping) or tp is dict:
        return {"type": "object"}
    if _is_dataclass_type(tp):
        return json_schema(tp)
    raise TypeError(f"no JSON Schema for field type {tp!r}")


def output_schema(cls: type, choices: Choices | None = None) -> OutputSchema:
    """The named schema sent as structured output."""
    return OutputSchema(name=contract_name(cls), schema=json_schema(cls, choices))


def contract_name(cls: type) -> str:
    """`Perception` -> `perception`, `DirectorDecision` -> `director_decision`."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", cls.__name__).lower()


def describe_fields(cls: type, choices: Choices | None = None) -> str:
    """The fields as the prompt shows them: one line each, with the allowed values.

    This is the schema in words; it shows no template a model could copy.
    """
    choices = choices or {}
    hints = _hints(cls)
    lines = []
    for f in dataclasses.fields(cls):
        meta = _meta(f)
        tp = hints[f.name]
        allowed = (list(choices.get(f.name, ())) if meta["dynamic_choices"]
                   else list(get_args(tp)) if get_origin(tp) is Literal else None)
        kind = _kind_word(tp)
        line = f"- {f.name} ({kind})"
        if meta["doc"]:
            line += f": {meta['doc']}"
        if allowed is not None:
            line += " Allowed values: " + ", ".join(json.dumps(v) for v in allowed) + "."
        lines.append(line)
    return "\n".join(lines)


def _kind_word(tp: Any) -> str:
    origin = get_origin(tp)
    if origin in (list, tuple, Sequence):
        inner = get_args(tp)[0]
        return f"list of {_kind_word(inner)}" if not _is_dataclass_type(inner) else "list of objects"
    if tp is bool:
        return "true or false"
    if tp in (int, float):
        return "number"
    if origin in (dict, Mapping) or tp is dict or _is_dataclass_type(tp):
        return "object"
    return "text"


def tool_spec(tool: Tool, choices: Choices | None = None) -> ToolSpec:
    """The native tool definition of a `Tool`."""
    return ToolSpec(name=tool.name, description=tool.description,
                    parameters=json_schema(tool.args, choices))


@dataclass(frozen=True)
class Tool:
    """A tool a node offers a model: its name, a line about it, and its arguments' type."""

    name: str
    """The tool's name."""
    description: str
    """What it does, for the model."""
    args: type
    """The dataclass of its arguments."""


# --- parsing and validation ----------------------------------------------------------

_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$", re.MULTILINE)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            # Silently keeping the last of two values is how `user_name: "hello"` overwrote a name.
            raise ContractViolation(f"the key {key!r} appears twice")
        out[key] = value
    return out


def json_object(text: str) -> dict[str, Any]:
    """The one JSON object in a model's answer (code fences and chatter around it tolerated)."""
    cleaned = _FENCE.sub("", text.strip())
    candidates = [cleaned]
    start, end = cleaned.find("{"), cleaned.rfind("}")
    if 0 <= start < end and (start, end) != (0, len(cleaned) - 1):
        candidates.append(cleaned[start: end + 1])
    error = "the answer is not JSON"
    for candidate in candidates:
        try:
            value = json.loads(candidate, object_pairs_hook=_no_duplicates)
        except ContractViolation:
            raise
        except (json.JSONDecodeError, RecursionError) as exc:
            error = f"the answer is not valid JSON ({exc.msg if hasattr(exc, 'msg') else exc})"
            continue
        if not isinstance(value, dict):
            raise ContractViolation("the answer must be one JSON object, not "
                                    f"{type(value).__name__ if value is not None else 'null'}")
        return value
    raise ContractViolation(error)


T = typing.TypeVar("T")


def parse(cls: type[T], text: str, choices: Choices | None = None) -> T:
    """A contract value from a model's answer text; ContractViolation says what is wrong."""
    return validate(cls, json_object(text), choices)


def validate(cls: type[T], data: Any, choices: Choices | None = None, *, where: str = "") -> T:
    """A contract value from decoded JSON.

    Fields with a default may be missing (JSON mode without a schema often
    drops them); a field without one is required. Unknown keys are ignored.
    Closed choices must match exactly (after trimming and lower-casing).
    """
    choices = choices or {}
    if not isinstance(data, dict):
        raise ContractViolation(f"{where or 'the answer'} must be a JSON object")
    hints = _hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        name = f"{where}.{f.name}" if where else f.name
        if f.name not in data or data[f.name] is None:
            if f.default is not dataclasses.MISSING:
                values[f.name] = f.default
                continue
            if f.default_factory is not dataclasses.MISSING:
                values[f.name] = f.default_factory()
                continue
            raise ContractViolation(f"the field {name!r} is missing")
        meta = _meta(f)
        allowed = choices.get(f.name) if meta["dynamic_choices"] else None
        value = _value(hints[f.name], data[f.name], name, allowed, meta["max_length"])
        if meta["max_items"] and isinstance(value, list) and len(value) > meta["max_items"]:
            raise ContractViolation(f"{name} has {len(value)} items; at most "
                                    f"{meta['max_items']} are allowed")
        values[f.name] = value
    return cls(**values)


def _value(tp: Any, raw: Any, name: str, allowed: Sequence[str] | None,
           max_length: int | None) -> Any:
    origin = get_origin(tp)
    if allowed is not None or origin is Literal:
        options = list(allowed) if allowed is not None else list(get_args(tp))
        text = raw.strip() if isinstance(raw, str) else raw
        for option in options:
            if text == option or (isinstance(text, str) and text.lower() == str(option).lower()):
                return option
        shown = ", ".join(json.dumps(o) for o in options)
        raise ContractViolation(f"{name} is {json.dumps(raw)[:80]}; it must be one of {shown}")
    if tp is str:
        if isinstance(raw, bool) or not isinstance(raw, str | int | float):
            raise ContractViolation(f"{name} must be text")
        text = str(raw).strip()
        return text[:max_length] if max_length else text
    if tp is bool:
        if not isinstance(raw, bool):
            raise ContractViolation(f"{name} must be true or false")
        return raw
    if tp in (int, float):
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise ContractViolation(f"{name} must be a number")
        return tp(raw)
    if origin in (list, tuple, Sequence):
        if not isinstance(raw, list):
            raise ContractViolation(f"{name} must be a list")
        inner = get_args(tp)[0]
        items = [_value(inner, item, f"{name}[{i}]", None, None) if not _is_dataclass_type(inner)
                 else validate(inner, item, where=f"{name}[{i}]") for i, item in enumerate(raw)]
        return tuple(items) if origin is tuple else items
    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(raw, dict):
            raise ContractViolation(f"{name} must be an object")
        return dict(raw)
    if _is_dataclass_type(tp):
        return validate(tp, raw, where=name)
    raise TypeError(f"unsupported contract field type {tp!r} ({name})")


# --- the contracts ------------------------------------------------------------------

Intent = Literal["greeting", "thanks", "farewell", "introduction", "question", "request",
                 "statement"]
Tone = Literal["neutral", "positive", "negative", "urgent"]


@dataclass(frozen=True)
class Perception:
    """The input node's reading of a message and its route."""

    intent: Intent = field(metadata=doc("what the message does"))
    """What the message does."""
    route: str = field(metadata=doc("the path it takes", choices=True))
    """The route, one of the input node's routes (config `routes`)."""
    language: str = field(default="en", metadata=doc("ISO 639-1 code of its language",
                                                      max_length=8))
    """Its language."""
    tone: Tone = field(default="neutral", metadata=doc("its tone"))
    """Its tone."""
    topic: str = field(default="", metadata=doc("a few words naming its subject",
                                                 max_length=60))
    """What it is about."""


@dataclass(frozen=True)
class DirectorPlan:
    """The director's plan for the thinker (the `plan` tool's arguments)."""

    goal: str = field(default="", metadata=doc("what the thinker should do, in a sentence",
                                                max_length=300))
    """What the thinker should do (first: a small model plans better having said it)."""
    plan: Literal["answer", "query"] = field(default="answer", metadata=doc(
        "query when answering needs the domain database, else answer"))
    """Whether the thinker answers or first queries the domain database."""


@dataclass(frozen=True)
class Button:
    """A button of a machine state."""

    label: str = field(metadata=doc("what the button says", max_length=40))
    """What the button says."""
    action: str = field(metadata=doc("a short action name", max_length=40))
    """The action sent when clicked."""
    go: str = field(default="", metadata=doc("the state it moves the machine to"))
    """The state it moves the machine to."""
    payload: dict = field(default_factory=dict, metadata=doc(
        'data operations: {"add": {"field": 1}}, {"set": {"field": "value"}}, '
        '{"toggle": "field"} or {"reset": true}'))
    """Data operations applied when clicked."""


@dataclass(frozen=True)
class AddStateArgs:
    """add_state: add or replace one state of a machine, creating the machine if needed."""

    machine_id: str = field(metadata=doc("the machine's id, e.g. counter", max_length=40))
    """The machine's id."""
    state: str = field(metadata=doc("the state's name", max_length=40))
    """The state's name."""
    text: str = field(metadata=doc("what the state shows; {field} shows a data field",
                                   max_length=300))
    """What the state shows."""
    buttons: list[Button] = field(default_factory=list, metadata=doc("the state's buttons"))
    """The state's buttons."""
    name: str = field(default="", metadata=doc("the machine's display name", max_length=60))
    """The machine's name."""
    initial: bool = field(default=False, metadata=doc("true for the state a machine starts in"))
    """Whether this is the initial state."""
    data: dict = field(default_factory=dict, metadata=doc("the machine's starting data"))
    """The machine's starting data."""


@dataclass(frozen=True)
class MachineIdArgs:
    """The one argument of reset_machine and destroy_machine."""

    machine_id: str = field(metadata=doc("the id of an existing machine", max_length=40))
    """The machine's id."""


PLAN_TOOL = Tool("plan", "Say whether the thinker answers or first queries the domain database. "
                         "Call it exactly once.", DirectorPlan)
MACHINE_TOOLS = (
    Tool("add_state", "Add or replace one state of a UI machine (a counter, a switch, a "
                      "checklist...), creating the machine if it does not exist.", AddStateArgs),
    Tool("reset_machine", "Put an existing machine back in its initial state.", MachineIdArgs),
    Tool("destroy_machine", "Remove an existing machine.", MachineIdArgs),
)


MachineKind = Literal["counter", "switch", "checklist", "none"]
MachineAction = Literal["create", "reset", "remove"]


@dataclass(frozen=True)
class MachineRequest:
    """A well-known machine the user asks for, by name (the `machine` tool's arguments)."""

    machine: MachineKind = field(default="none", metadata=doc(
        "the UI machine the user asks for or about, else none"))
    """Which kind of machine."""
    action: MachineAction = field(default="create", metadata=doc(
        "what to do with it"))
    """Create, reset or remove it."""


MACHINE_TOOL = Tool("machine", "Create, reset or remove a well-known UI machine (a counter, a "
                               "switch, a checklist).", MachineRequest)


@dataclass(frozen=True)
class MachineCall:
    """One machine tool call, in the JSON fallback of the director."""

    name: Literal["add_state", "reset_machine", "destroy_machine"] = field(
        metadata=doc("the tool"))
    """The tool."""
    args: dict = field(default_factory=dict, metadata=doc("its arguments"))
    """Its arguments (checked against the tool's own type)."""


@dataclass(frozen=True)
class DirectorDecision:
    """The director's answer where the endpoint has no native tools: plan and tool calls.

    The order is the order a small model decides best in (measured with a 0.5B model):
    what the thinker should do, the plan, then a machine.
    """

    goal: str = field(default="", metadata=doc("what the thinker should do, in a sentence",
                                                max_length=300))
    """What the thinker should do."""
    plan: Literal["answer", "query"] = field(default="answer", metadata=doc(
        "query when answering needs the domain database, else answer"))
    """Whether the thinker answers or first queries the domain database."""
    machine: MachineKind = field(default="none", metadata=doc(
        "the UI machine the user asks for or about, else none"))
    """A well-known machine by name (its states come from a template)."""
    machine_action: MachineAction = field(default="create", metadata=doc(
        "what to do with that machine"))
    """Create, reset or remove it."""
    tool_calls: list[MachineCall] = field(default_factory=list, metadata=doc(
        "machine tool calls for any other machine; usually empty", max_items=8))
    """Machine tool calls."""


@dataclass(frozen=True)
class QueryArgs:
    """One read-only SQL query."""

    sql: str = field(metadata=doc("one read-only SQL SELECT", max_length=2000))
    """The SQL."""


QUERY_DB_TOOL = Tool("query_db", "Run one read-only SQL SELECT over the database schema given.",
                     QueryArgs)


@dataclass(frozen=True)
class Route:
    """The PA's routing decision."""

    reason: str = field(default="", metadata=doc(
        "what kind of message this is and so who should answer, in a few words",
        max_length=160))
    """Why this route (first: a small model routes better having said it)."""
    expert: str = field(default="none", metadata=doc(
        'the expert to ask, or "none" to answer yourself', choices=True))
    """An expert's node id, or `none`."""
    task: str = field(default="", metadata=doc(
        "the user's request for the expert, in their words", max_length=300))
    """The task for the expert."""
    thinking: str = field(default="", metadata=doc(
        "a short message for the user while the expert works", max_length=120))
    """What the user reads meanwhile."""


NO_EXPERT = "none"


@dataclass(frozen=True)
class DescribeArgs:
    """describe(table)."""

    table: str = field(metadata=doc("the table to describe", choices=True))
    """The table."""


@dataclass(frozen=True)
class PlanStep:
    """One step of an expert's plan, in the JSON fallback."""

    tool: str = field(metadata=doc("the tool", choices=True))
    """The tool's name."""
    args: dict = field(default_factory=dict, metadata=doc("its arguments"))
    """Its arguments (checked against the tool's own type)."""


@dataclass(frozen=True)
class ExpertPlan:
    """An expert's plan where the endpoint has no native tools."""

    steps: list[PlanStep] = field(metadata=doc("the tool calls, in order", max_items=6))
    """The tool calls, in order."""


@dataclass(frozen=True)
class FixedQuery:
    """The eras expert's corrected query."""

    sql: str = field(metadata=doc("one corrected read-only SQL SELECT, or empty to give up",
                                  max_length=2000))
    """The SQL."""


@dataclass(frozen=True)
class MemoryUpdate:
    """What an exchange changed in the memory; empty text means unchanged."""

    user_name: str = field(default="", metadata=doc(
        "the user's name if they just told it, else empty", max_length=60))
    """The user's name, if told."""
    user_mood: str = field(default="", metadata=doc(
        "the user's mood if they just told it, else empty", max_length=40))
    """The user's mood, if told."""
    topic: str = field(default="", metadata=doc(
        "the new topic in the user's own words if they changed it, else empty",
        max_length=60))
    """A new topic, if any."""
    language: str = field(default="", metadata=doc(
        "ISO 639-1 code if the user switched language, else empty", max_length=8))
    """A new language, if any."""
    style_hint: str = field(default="", metadata=doc(
        "how the user wants answers (brief, detailed) if they said so, else empty",
        max_length=60))
    """A style wish, if any."""
    new_facts: list[str] = field(default_factory=list, metadata=doc(
        "facts about the user they asked you to remember, as short sentences; usually empty",
        max_items=3))
    """Facts to add."""
