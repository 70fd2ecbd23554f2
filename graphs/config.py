"""The graph-level config: the keys a graph's top-level `config` object may hold.

A node's config is read by its node type; this one belongs to the graph as a whole
and is read by the conversation that runs it. Today it has one key:

- `double_texting`: what happens when a message arrives while the conversation is
  still answering another (README, "Double texting").

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

GRAPH_CONFIG_KEYS: dict[str, str] = {
    "double_texting": "what happens when a message arrives while the conversation is "
                      f"answering another: one of {', '.join(DOUBLE_TEXTING_POLICIES)} "
                      f"(default {DEFAULT_DOUBLE_TEXTING})",
}
"""Every known graph config key, with what it means; any other key is a validation problem."""


def graph_double_texting(spec: GraphSpec) -> str:
    """The graph's double-texting policy, or `DEFAULT_DOUBLE_TEXTING` when it names none.

    A value validation refuses can only be stored around `graph_save`; it reads as the
    default too, so a conversation always gets one of `DOUBLE_TEXTING_POLICIES`.
    """
    policy = spec.config.get("double_texting")
    return policy if policy in DOUBLE_TEXTING_POLICIES else DEFAULT_DOUBLE_TEXTING
