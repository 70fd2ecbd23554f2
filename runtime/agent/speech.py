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
from runtime.engine.node import with_repair
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

    def __init__(self, sink: Callable[[str], Awaitable[None]],
                 hold: Callable[[str], bool] | None = None) -> None:
        self.sink = sink
        self.buffer = ""
        self.sent = 0
        self.mode = "undecided"
        self.hold = hold
        """While `hold(text so far)` is true nothing is sent (an answer that may still turn
        out to be an echo of the message); once false it is not asked again."""

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
        if self.mode == "answer" and self.hold is not None:
            if self.hold(self.buffer):
                return
            self.hold = None
        if self.mode == "answer":
            await self._flush(final=False)

    async def finish(self, *, send: bool = True) -> None:
        """Send whatever answer text is left (`send=False`: keep what is still held)."""
        if self.mode == "undecided":
            self.mode = "answer"
        if self.mode == "answer" and (send or self.hold is None):
            await self._flush(final=True)

    @property
    def holding(self) -> bool:
        """True while the answer is held back as a possible echo."""
        return self.mode == "answer" and self.hold is not None and self.sent == 0

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
                max_tokens: int | None = None, fallback_on_error: bool = False,
                vet: Callable[[str], str] | None = None) -> tuple[str, list[dict[str, Any]]]:
    """Stream a prose answer to the user through an AnswerStream; (answer, buttons).

    When the model's answer is not for a person (JSON, SQL, a tool line),
    `fallback` is said instead and the node records the fallback; the trace
    keeps the model's answer. A failed call raises (the message then fails with
    a clear sentence), unless `fallback_on_error` says the fallback is a real
    answer (a result read out plainly) and nothing was shown yet. `vet`: the answer is
    held whole and shown only as `vet(answer)` returns it (an answer to a question that
    states a figure nothing gave is replaced: runtime.agent.grounding.figures_vet).
    """
    message = str(getattr(getattr(ctx, "turn", None), "message", "") or "")
    if vet is not None:
        hold: Callable[[str], bool] | None = lambda text: True  # noqa: E731
    else:
        hold = (lambda text: may_echo(message, text)) if message else None
    stream = AnswerStream(ctx.delta, hold=hold)
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
    await stream.finish(send=False)
    held = stream.holding
    answer, buttons, tool = parse_answer(text)
    leak = "a tool call" if tool else looks_internal(answer) if stream.withheld else ""
    if stream.withheld or not answer:
        ctx.note_fallback("plain answer", f"the model answered with {leak or 'nothing'}")
        await ctx.delta(fallback)
        return fallback, []
    if held:
        if echoes(message, answer):
            answer, buttons = await _echo_repaired(ctx, prompt_text, prompt, answer, kwargs)
        if vet is not None and (vetted := vet(answer)) != answer:
            answer, buttons = vetted, []
        await ctx.delta(answer)
    return answer, buttons


ECHO_REPLY = "Thanks for telling me. How can I help?"
"""Said instead of an answer that only restated the user's message, twice."""
ECHO_REPAIR = ("That only repeats my message. Reply to it instead, in one short friendly "
               "sentence, without repeating my words.")


async def _echo_repaired(ctx: Any, prompt_text: str, prompt: str, echo: str,
                         kwargs: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """An answer that echoed the message, asked again once; then a plain reply."""
    request = with_repair(ctx.request(prompt_text, prompt=prompt, **kwargs), echo, ECHO_REPAIR)
    message = str(ctx.turn.message)
    try:
        text = (await ctx.call(request, purpose="echo repair")).text
    except LLMError:
        text = ""
    answer, buttons, tool = parse_answer(text)
    if answer and tool is None and not looks_internal(answer) and not echoes(message, answer):
        return answer, buttons
    ctx.note_fallback("plain reply", f"the answer only restated the message: {echo!r}")
    return ECHO_REPLY, []


# Words that say nothing of their own in an echo comparison: pronouns, articles, "be" and
# greetings (a greeting answered with a greeting is a reply, not an echo).
_ECHO_FILLER = frozenset(
    "i me my mine you your yours we our us it its a an the is am are was were be been "
    "so very really just too quite and or but to of in on at for with that this today now "
    "hello hi hey good morning evening afternoon night thanks thank bye goodbye please "
    "oh well ok okay yes no".split())
_CONTRACTIONS = (("'m", " am"), ("'re", " are"), ("'s", " is"), ("'ve", " have"),
                 ("n't", " not"), ("'ll", " will"), ("'d", " would"))


def _content_words(text: str) -> list[str]:
    lowered = text.lower().replace("’", "'")
    for short, long in _CONTRACTIONS:
        lowered = lowered.replace(short, long)
    words = []
    for word in re.findall(r"[a-z0-9]+", lowered):
        if word in _ECHO_FILLER:
            continue
        for suffix in ("ing", "ed", "es", "s"):
            if len(word) > len(suffix) + 2 and word.endswith(suffix):
                word = word[: -len(suffix)]
                break
        words.append(word)
    return words


def may_echo(message: str, text: str) -> bool:
    """Whether an answer that starts with `text` may still turn out to echo `message`."""
    said, heard = _content_words(text), set(_content_words(message))
    if not heard:
        return False
    new = sum(1 for word in said if word not in heard)
    return new <= (len(heard) + 2) // 5 and len(said) <= len(heard) + 2


def echoes(message: str, answer: str) -> bool:
    """Whether `answer` merely restates `message` ("I feel tired" -> "I'm feeling tired."):
    it says nothing the message did not, in about as many words."""
    said, heard = _content_words(answer), set(_content_words(message))
    if not said or not heard:
        return False
    new = [word for word in said if word not in heard]
    return len(new) <= len(said) // 5 and len(said) <= len(heard) + 2
