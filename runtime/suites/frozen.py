"""Frozen traces: a traced message as a suite step, with the recording that replays it.

`trace_freeze` writes a step for a stored trace — the message, and checks on
its path, frame count, routed expert, controls and the key parts of its answer
— into a suite file, and the message's recording (the state it met and every
model call) into the file beside it, `<suite>.recording.json`, keyed by the
step's title. `runtests --replay` answers such a step from its recording: no
model is called, so a conversation recorded with a real model becomes a
regression test that runs offline, and fails when a change to the graph or
the code makes the message take another way (`ReplayDiverged`, or a check).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.conversations.models import Message
from runtime.errors import AgentError
from runtime.suites.parser import Suite, SuiteError
from traces.models import MessageTrace

FORMAT = 1
"""The recording file's format version."""
KEY_PARTS = 3
"""At most this many `response contains` checks per frozen answer."""
_NUMBER = re.compile(r"(?<![\w.,])\d[\d,]*(?:\.\d+)?(?![\w])")


class FreezeImpossible(AgentError):
    """The trace cannot be frozen (unknown, without a recording, or frozen already)."""

    code = "freeze_impossible"


@dataclass(frozen=True)
class FrozenStep:
    """What `trace_freeze` wrote."""

    suite: Path
    """The suite file (created or appended to)."""
    recording: Path
    """The recording file beside it."""
    title: str
    """The step's title, its key in the recording file."""
    markdown: str
    """The step as written."""


def recording_path(suite_path: str | Path) -> Path:
    """The recording file that goes with a suite file."""
    path = Path(suite_path)
    return path.with_name(f"{path.stem}.recording.json")


def recordings_load(suite: Suite) -> dict[str, dict[str, Any]]:
    """The suite's recorded steps by title ({} without a recording file)."""
    path = recording_path(suite.path)
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise SuiteError(f"{path}: not JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(
            data.get("steps"), dict):
        raise SuiteError(f"{path}: not a recording file (format {FORMAT} with `steps`)")
    return data["steps"]


def trace_freeze(*, trace_id: int, suite_path: str | Path) -> FrozenStep:
    """Append trace `trace_id` to the suite as a step, with its recording beside it."""
    trace = MessageTrace.objects.filter(pk=trace_id).first()
    if trace is None:
        raise FreezeImpossible(f"no trace {trace_id}")
    if not trace.turn:
        raise FreezeImpossible(f"trace {trace_id} holds no recorded state (it failed before "
                               "its first frame, or was stored before recordings)")
    suite = Path(suite_path)
    records = recording_path(suite)
    title = f"trace {trace.pk}: {_one_line(trace.message, 60)}"
    recorded = json.loads(records.read_text(encoding="utf-8")) if records.is_file() else {
        "format": FORMAT, "steps": {}}
    if title in recorded.get("steps", {}):
        raise FreezeImpossible(f"trace {trace_id} is in {suite} already")
    frames = list(trace.frames.order_by("position").values(
        "frame", "node", "node_type", "decision", "output", "llm_calls"))
    markdown = _step(trace, title, frames)
    recorded["steps"][title] = {
        "trace": trace.pk, "graph": trace.graph, "message": trace.message,
        "answer": trace.answer, "turn": trace.turn,
        "frames": [{"node": f["node"], "llm_calls": f["llm_calls"]} for f in frames]}
    suite.parent.mkdir(parents=True, exist_ok=True)
    heading = "" if suite.is_file() else (
        "# Frozen traces\n\nEach step replays a recorded message: `runtests --replay` "
        f"answers it from `{records.name}`, with no model.\n")
    with suite.open("a", encoding="utf-8") as out:
        out.write(heading + "\n" + markdown)
    records.write_text(json.dumps(recorded, indent=1, ensure_ascii=False) + "\n",
                       encoding="utf-8")
    return FrozenStep(suite=suite, recording=records, title=title, markdown=markdown)


def _step(trace: MessageTrace, title: str, frames: list[dict[str, Any]]) -> str:
    """The Markdown of a frozen step: the message and what its trace showed."""
    lines = [f"## {title}", f"> send: {_one_line(trace.message, 8000)}",
             f"- trace path: {trace.path}", f"- trace frames: {trace.total_frames}"]
    routed = next((str(f["output"].get("expert", "")) for f in frames
                   if f["node_type"] == "pa"), "")
    if routed:
        lines.append(f"- trace routed: {routed}")
    answer = Message.objects.filter(message_id=trace.message_id,
                                    role=Message.Role.ASSISTANT).first()
    actions = [c["action"] for c in (answer.controls if answer else []) if c.get("action")]
    if actions:
        lines.append(f"- controls match: {', '.join(re.escape(_plain(a)) for a in actions)}")
    for part in _key_parts(trace.answer):
        lines.append(f'- response contains: "{part}"')
    return "\n".join(lines) + "\n"


def _key_parts(answer: str) -> list[str]:
    """What an answer must keep saying: its numbers, else its first sentence."""
    numbers = list(dict.fromkeys(_NUMBER.findall(answer)))[:KEY_PARTS]
    if numbers:
        return numbers
    first = re.split(r"(?<=[.!?])\s", answer.strip(), maxsplit=1)[0]
    return [_plain(first)[:80]] if first.strip() else []


def _plain(text: str) -> str:
    """Text fit for a check's value: one line, no double quotes or commas."""
    return _one_line(text, 200).replace('"', "'").replace(",", " ").strip()


def _one_line(text: str, limit: int) -> str:
    return " ".join(text.split())[:limit]
