"""The memorizer's memory state: its fields, defaults, merge and reset."""

from __future__ import annotations

from typing import Any

MEMORY_FIELDS = (
    "user_name",
    "user_mood",
    "topic",
    "topic_history",
    "situation",
    "language",
    "style_hint",
    "facts",
)
_LIST_FIELDS = {"topic_history", "facts"}
_MAX_LIST = 50


def memory_empty() -> dict[str, Any]:
    """A fresh memory state."""
    return {
        "user_name": "",
        "user_mood": "",
        "topic": "",
        "topic_history": [],
        "situation": "",
        "language": "en",
        "style_hint": "",
        "facts": [],
    }


def memory_normalize(raw: Any) -> dict[str, Any]:
    """A full, well-typed memory state from whatever is stored (missing fields filled)."""
    memory = memory_empty()
    if isinstance(raw, dict):
        for key in MEMORY_FIELDS:
            if key in raw:
                memory[key] = _coerce(key, raw[key], memory[key])
    return memory


def memory_merge(current: dict[str, Any], proposed: Any) -> dict[str, Any]:
    """Apply a memorizer's proposed memory onto `current`.

    Unknown keys and wrongly typed values are ignored rather than trusted:
    the proposal comes from a model. `situation` is refreshed before each message
    (runtime.agent.situation) and never taken from the proposal.
    """
    merged = memory_normalize(current)
    if not isinstance(proposed, dict):
        return merged
    for key in MEMORY_FIELDS:
        if key == "situation" or key not in proposed:
            continue
        merged[key] = _coerce(key, proposed[key], merged[key])
    return merged


def memory_apply(current: dict[str, Any], update: Any) -> dict[str, Any]:
    """Apply a memorizer's `MemoryUpdate` onto `current`: non-empty fields replace, a new
    topic is added to the history, new facts are appended once each."""
    merged = memory_normalize(current)
    for key in ("user_name", "user_mood", "language", "style_hint"):
        value = _coerce(key, getattr(update, key, ""), "")
        if value:
            merged[key] = value
    topic = _coerce("topic", getattr(update, "topic", ""), "")
    if topic and topic.lower() != merged["topic"].lower():
        merged["topic"] = topic
        merged["topic_history"] = [*merged["topic_history"], topic][-_MAX_LIST:]
    for fact in getattr(update, "new_facts", ()) or ():
        fact = str(fact).strip()
        if fact and fact not in merged["facts"]:
            merged["facts"] = [*merged["facts"], fact][-_MAX_LIST:]
    return merged


def memory_reset(current: dict[str, Any]) -> dict[str, Any]:
    """The memory after a clear: everything reset except `situation`."""
    fresh = memory_empty()
    fresh["situation"] = memory_normalize(current)["situation"]
    return fresh


def _coerce(key: str, value: Any, fallback: Any) -> Any:
    if key in _LIST_FIELDS:
        if not isinstance(value, list):
            return fallback
        items = [str(item).strip() for item in value if str(item).strip()]
        return items[-_MAX_LIST:]
    if value is None:
        return ""
    if isinstance(value, str | int | float):
        return str(value).strip()[:500]
    return fallback
