"""The graph-level config: the keys a graph's top-level `config` object may hold.

A node's config is read by its node type; this one belongs to the graph as a whole
and is read by the conversation that runs it:

- `double_texting`: what happens when a message arrives while the conversation is
  still answering another (README, "Double texting").
- `approval`: which tool calls wait for a person's approval before they run (README,
  "Approval"): `{"tools": [names], "rows_over": N, "writes": true}`, any of them.

To add a key, list it in `GRAPH_CONFIG_KEYS`, check its value in
`graphs/validation.py` (`_config_problems`) and give it a reader here like
`graph_double_texting`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from graphs.spec import GraphSpec

DOUBLE_TEXTING_POLICIES = ("reject", "enqueue", "interrupt", "rollback")
"""What a conversation may do with a message that arrives while it answers another
(runtime.conversations.queueing)."""
DEFAULT_DOUBLE_TEXTING = "reject"
"""The policy of a graph whose config does not name one."""

APPROVAL_RULES: dict[str, str] = {
    "tools": "a list of tool names: every call of one of them waits for approval",
    "rows_over": "a whole number: a query whose plan estimates more rows waits for approval",
    "writes": "true: every tool that can write (a builder's tool marked `writes`) waits for "
              "approval",
}
"""The rules of the `approval` key, each with what it means."""

GRAPH_CONFIG_KEYS: dict[str, str] = {
    "double_texting": "what happens when a message arrives while the conversation is "
                      f"answering another: one of {', '.join(DOUBLE_TEXTING_POLICIES)} "
                      f"(default {DEFAULT_DOUBLE_TEXTING})",
    "approval": "which tool calls wait for a person's approval before they run: an object "
                f"with any of {', '.join(APPROVAL_RULES)}",
}
"""Every known graph config key, with what it means; any other key is a validation problem."""


def graph_double_texting(spec: GraphSpec) -> str:
    """The graph's double-texting policy, or `DEFAULT_DOUBLE_TEXTING` when it names none.

    A value validation refuses can only be stored around `graph_save`; it reads as the
    default too, so a conversation always gets one of `DOUBLE_TEXTING_POLICIES`.
    """
    policy = spec.config.get("double_texting")
    return policy if policy in DOUBLE_TEXTING_POLICIES else DEFAULT_DOUBLE_TEXTING


def approval_problems(value: object) -> list[str]:
    """What is wrong with an `approval` value (empty when nothing is)."""
    if not isinstance(value, dict):
        return [f"approval must be an object with any of {', '.join(APPROVAL_RULES)}"]
    problems = [f"unknown approval rule {key!r}; known: {', '.join(APPROVAL_RULES)}"
                for key in value if key not in APPROVAL_RULES]
    tools = value.get("tools", [])
    if not isinstance(tools, list) or not all(isinstance(t, str) and t for t in tools):
        problems.append("approval tools must be a list of tool names")
    rows = value.get("rows_over")
    if rows is not None and (isinstance(rows, bool) or not isinstance(rows, int) or rows < 0):
        problems.append(f"approval rows_over must be a whole number of rows, not {rows!r}")
    if not isinstance(value.get("writes", False), bool):
        problems.append("approval writes must be true or false")
    return problems


def graph_approval(spec: GraphSpec) -> dict[str, object]:
    """The graph's approval rules (`{}`: no tool call waits); a value validation would
    refuse reads as no rules."""
    value = spec.config.get("approval")
    return value if isinstance(value, dict) and not approval_problems(value) else {}
