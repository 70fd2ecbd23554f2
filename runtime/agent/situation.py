"""The situation line the conversation's memory carries: date, time, part of day, idleness.

Pure and model-free. A new message refreshes it before the graph runs
(`conversations.turns.turn_begin`, `services.situation_refreshed`; the HUD shows that as
the `sensor` node), so prompts see the time of the message and how long the
user was away; a replay keeps the situation it recorded.
"""

from __future__ import annotations

from datetime import datetime


def part_of_day(hour: int) -> str:
    """morning, afternoon, evening or night."""
    if 5 <= hour < 12:
        return "morning"
    if 12 <= hour < 18:
        return "afternoon"
    if 18 <= hour < 23:
        return "evening"
    return "night"


def situation_text(*, now: datetime, last_message_at: datetime | None) -> str:
    """The situation line: date, time, part of day and how long the user has been idle."""
    line = f"{now:%A %d %B %Y, %H:%M} {now.tzname() or 'UTC'} ({part_of_day(now.hour)})"
    if last_message_at is None:
        return line + "; new conversation"
    idle = max(0, int((now - last_message_at).total_seconds()))
    if idle < 60:
        return line + "; the user is active"
    if idle < 3600:
        return line + f"; the user was idle {idle // 60} min"
    return line + f"; the user was idle {idle // 3600} h {idle % 3600 // 60} min"
