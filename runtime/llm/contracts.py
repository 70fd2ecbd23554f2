"""Contracts with models: what a node asks a model for, as types, not prose.

A node that needs structure declares its output once as a frozen dataclass
(the agent's own contracts are in `runtime.agent.contracts`); its JSON Schema is derived from the type hints (closed choices are
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
from dataclasses import dataclass
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
    writes: bool = False
    """Whether a call can change something outside the conversation (a graph's approval
    rule `writes` makes every such call wait for a person's approval)."""


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
