"""The sensor: keeps the memory's `situation` current (time of day, idle time).

It never calls a model. `situation_text` is the pure part; `Sensor` ticks in
the background for one conversation until stopped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

logger = logging.getLogger(__name__)


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


class Sensor:
    """Ticks every `interval_s`, calling `update(now)`; stop it with `stop()`."""

    def __init__(
        self,
        *,
        update: Callable[[datetime], Awaitable[None]],
        now: Callable[[], datetime],
        interval_s: float = 60.0,
    ) -> None:
        self.update = update
        self.now = now
        self.interval_s = interval_s
        self.ticks = 0
        self._stopped = asyncio.Event()

    async def tick(self) -> None:
        """Update the situation once."""
        await self.update(self.now())
        self.ticks += 1

    async def run(self) -> None:
        """Tick until stopped; a failing tick is logged and the sensor goes on."""
        while not self._stopped.is_set():
            try:
                await self.tick()
            except Exception:
                logger.exception("sensor tick failed")
            try:
                await asyncio.wait_for(self._stopped.wait(), timeout=self.interval_s)
            except TimeoutError:
                continue

    def stop(self) -> None:
        """Ask the sensor to stop after the current tick."""
        self._stopped.set()
