"""The agent's node contracts: what each node asks a model for, as types.

Each node that needs structure declares its output here once, as a frozen
dataclass; `runtime.llm.contracts` derives the JSON Schema from it and parses
and validates whatever the model answers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from runtime.llm.contracts import Tool, doc

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
