"""History as a context summary: what the nodes tell a model about the conversation."""

from __future__ import annotations

from runtime.engine.node import Turn

_SNIPPET = 160


def context_summary(turn: Turn, *, window: int = 6) -> str:
    """A short, deterministic summary of who the user is and what was said lately."""
    memory = turn.memory
    lines = []
    known = []
    if memory.get("user_name"):
        known.append(f"the user's name is {memory['user_name']}")
    if memory.get("user_mood"):
        known.append(f"their mood is {memory['user_mood']}")
    if memory.get("topic"):
        known.append(f"the topic is {memory['topic']}")
    if known:
        lines.append("Known: " + "; ".join(known) + ".")
    if memory.get("situation"):
        lines.append(f"Situation: {memory['situation']}")
    recent = turn.history[-window:] if window > 0 else ()
    if recent:
        lines.append(f"Last {len(recent)} of {len(turn.history)} messages:")
        for item in recent:
            text = " ".join(item["text"].split())
            if len(text) > _SNIPPET:
                text = text[: _SNIPPET - 1] + "…"
            lines.append(f"- {item['role']}: {text}")
    else:
        lines.append("This is the first message of the conversation.")
    return "\n".join(lines)
