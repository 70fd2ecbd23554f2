"""What reaches the user of a model's streamed answer, and what never does.

A model's answer may be a tool call in the text protocol (`TOOL name: arg`),
text ending in a `BUTTONS: [...]` line, or — from a small model that lost
track — JSON, SQL or a code block where prose was wanted. None of that is for
the user: `AnswerStream` holds back just enough of the start to tell, and
`looks_internal` checks a whole answer, so a node can say something plain
instead.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

from runtime.agent import machines as m
from runtime.errors import LLMError
from runtime.wire import HudEventType

TOOL_PREFIX = "TOOL"
BUTTONS_MARKER = "BUTTONS:"
# Starts of an answer that is not prose for a person. SQL keywords are matched in capitals
# only: "Select one of these" is prose, "SELECT name FROM" is not.
INTERNAL_STARTS = (TOOL_PREFIX, "{", "[{", "```", "SELECT ")
_BUTTONS_LINE = re.compile(r"\n[ \t]*BUTTONS:")
_TOOL_LINE = re.compile(r"^\s*TOOL\s+(?P<tool>[a-z_]+)\s*:\s*(?P<arg>.+)$", re.DOTALL)
_SQL = re.compile(r"\b(SELECT|select)\b[^.?!]{0,400}?\b(FROM|from)\b\s+\w+|"
                  r"\b(INSERT INTO|DELETE FROM|UPDATE \w+ SET|DROP TABLE)\b")
_JSON_OBJECT = re.compile(r"\{\s*\"[^\"]{1,80}\"\s*:")
# An exception class name (KeyError, OperationalError, LLMTimeout...) or a traceback.
_EXCEPTION = re.compile(r"\b(?:[A-Z][A-Za-z]*(?:Error|Exception|Timeout|Exceeded)|Traceback)\b")


def looks_internal(text: str) -> str:
    """What in `text` is not for a user (`JSON`, `SQL`, `exception name`); empty if nothing."""
    if _JSON_OBJECT.search(text):
        return "JSON"
    if _SQL.search(text):
        return "SQL"
    if _EXCEPTION.search(text):
        return "exception name"
    return ""


class AnswerStream:
    """Passes a streamed answer on as it arrives, holding back what is not for the user.

    An answer that starts like a tool line, JSON, SQL or a code block is held
    back whole (`withheld`); a trailing BUTTONS line never goes out.
    """

    def __init__(self, sink: Callable[[str], Awaitable[None]]) -> None:
        self.sink = sink
        self.buffer = ""
        self.sent = 0
        self.mode = "undecided"

    @property
    def withheld(self) -> bool:
        """True when the answer was held back as not for the user."""
        return self.mode == "withheld"

    async def feed(self, piece: str) -> None:
        """Take the next piece of the model's answer."""
        self.buffer += piece
        if self.mode == "undecided":
            head = self.buffer.lstrip()
            if any(len(head) < len(start) and start.startswith(head) for start in INTERNAL_STARTS):
                return
            self.mode = "withheld" if head.startswith(INTERNAL_STARTS) else "answer"
        if self.mode == "answer":
            await self._flush(final=False)

    async def finish(self) -> None:
        """Send whatever answer text is left."""
        if self.mode == "undecided":
            self.mode = "answer"
        if self.mode == "answer":
            await self._flush(final=True)

    async def _flush(self, *, final: bool) -> None:
        text = "\n" + self.buffer  # so a marker on the very first line is found too
        marker = _BUTTONS_LINE.search(text)
        if marker:
            end = marker.start()
        elif final:
            end = len(text)
        else:
            # Hold back the last line while it could still become a BUTTONS line.
            last_line = text.rfind("\n")
            tail = text[last_line + 1:].lstrip(" \t")
            end = last_line if BUTTONS_MARKER.startswith(tail) else len(text)
        end -= 1  # back to buffer coordinates
        if end > self.sent:
            chunk = self.buffer[self.sent: end]
            self.sent = end
            await self.sink(chunk)


def parse_answer(text: str) -> tuple[str, list[dict[str, Any]], tuple[str, str] | None]:
    """Split an answer into (answer, buttons, text-protocol tool call or None)."""
    tool = _TOOL_LINE.match(text.strip())
    if tool:
        return "", [], (tool["tool"], tool["arg"].strip())
    answer, buttons = text, []
    lines = text.split("\n")
    for index, line in enumerate(lines):
        if line.strip().startswith("BUTTONS:"):
            answer = "\n".join(lines[:index])
            raw = "\n".join(lines[index:]).strip()[len("BUTTONS:"):].strip()
            try:
                parsed = json.loads(raw)
            except json.JSONDecodeError:
                parsed = []
            for item in parsed if isinstance(parsed, list) else []:
                try:
                    buttons.append(m.normalize_control(item).as_dict())
                except m.MachineError:
                    continue
            break
    return answer.strip(), buttons, None


async def speak(ctx: Any, prompt_text: str, *, prompt: str = "prompt", fallback: str,
                max_tokens: int | None = None, fallback_on_error: bool = False
                ) -> tuple[str, list[dict[str, Any]]]:
    """Stream a prose answer to the user through an AnswerStream; (answer, buttons).

    When the model's answer is not for a person (JSON, SQL, a tool line),
    `fallback` is said instead and the node records the fallback; the trace
    keeps the model's answer. A failed call raises (the message then fails with
    a clear sentence), unless `fallback_on_error` says the fallback is a real
    answer (a result read out plainly) and nothing was shown yet.
    """
    stream = AnswerStream(ctx.delta)
    started = False

    async def on_piece(piece: str) -> None:
        nonlocal started
        if not started:
            started = True
            await ctx.emit(HudEventType.STREAMING)
        await stream.feed(piece)

    kwargs = {"max_tokens": max_tokens} if max_tokens else {}
    try:
        text = await ctx.stream(prompt_text, on_piece, prompt=prompt, **kwargs)
    except LLMError as exc:
        if stream.sent or not fallback_on_error:
            raise  # the failure is told plainly at the edge, not papered over
        ctx.note_fallback("plain answer", f"the model failed: {exc}")
        await ctx.delta(fallback)
        return fallback, []
    await stream.finish()
    answer, buttons, tool = parse_answer(text)
    leak = "a tool call" if tool else looks_internal(answer) if stream.withheld else ""
    if stream.withheld or not answer:
        ctx.note_fallback("plain answer", f"the model answered with {leak or 'nothing'}")
        await ctx.delta(fallback)
        return fallback, []
    return answer, buttons
