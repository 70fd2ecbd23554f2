"""Evaluate one check against one step's outcome: (passed, detail)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from runtime.suites.parser import Check

HUD_FALLBACK = 40


@dataclass(frozen=True)
class Outcome:
    """What a step produced, as the checks read it."""

    answer: str = ""
    """The answer text (empty for clicks, clears and graph switches)."""
    events: tuple[dict[str, Any], ...] = ()
    """The wire events of the step, in order."""
    trace: dict[str, Any] | None = None
    """The message's frame_trace, if it had one."""
    controls: tuple[dict[str, Any], ...] = ()
    """The controls after the step."""
    memory: dict[str, Any] = field(default_factory=dict)
    """The memory state after the step."""
    message_id: str = ""
    """The message the step sent, if any."""

    def hud(self) -> list[dict[str, Any]]:
        """The step's HUD events."""
        return [e for e in self.events if e.get("type") == "hud"]


def _nodes(outcome: Outcome) -> set[str]:
    if outcome.trace:
        return {f["node"] for f in outcome.trace.get("frames", [])}
    return {e["node"] for e in outcome.hud()[-HUD_FALLBACK:]}


def _frames(outcome: Outcome) -> int:
    if outcome.trace:
        return int(outcome.trace.get("total_frames", 0))
    return max((e["frame"] for e in outcome.hud()[-HUD_FALLBACK:]), default=0)


def _routed(outcome: Outcome) -> str:
    for record in (outcome.trace or {}).get("frames", []):
        if record.get("node_type") == "pa":
            return str(record.get("output", {}).get("expert", ""))
    for event in outcome.hud()[-HUD_FALLBACK:]:
        if event.get("event") == "routed" and "expert" in event.get("data", {}):
            return str(event["data"]["expert"])
    return ""


def _sql(outcome: Outcome) -> list[str]:
    found = []
    for record in (outcome.trace or {}).get("frames", []):
        output = record.get("output", {})
        if output.get("sql"):
            found.append(str(output["sql"]))
        for call in output.get("tool_calls", []) or []:
            if isinstance(call, dict) and call.get("tool") == "query":
                found.append(str(call.get("args", {}).get("sql", "")))
    return found


def evaluate(check: Check, outcome: Outcome) -> tuple[bool, str]:
    """Whether `check` holds for `outcome`, with a detail line that says why."""
    kind, values = check.kind, check.values
    answer = outcome.answer
    if kind == "response contains":
        ok = any(v.lower() in answer.lower() for v in values)
        return ok, f"answer: {answer!r}"
    if kind == "response not contains":
        hits = [v for v in values if v.lower() in answer.lower()]
        return not hits, f"answer: {answer!r}" + (f" (contains {hits[0]!r})" if hits else "")
    if kind == "response matches":
        ok = any(re.search(v, answer) for v in values)
        return ok, f"answer: {answer!r}"
    if kind == "trace ran":
        nodes = _nodes(outcome)
        return any(v in nodes for v in values), f"nodes: {', '.join(sorted(nodes)) or 'none'}"
    if kind == "trace path":
        path = (outcome.trace or {}).get("path", "")
        return path in values, f"path: {path or 'none'}"
    if kind == "trace frames":
        frames = _frames(outcome)
        return str(frames) in values, f"frames: {frames}"
    if kind == "trace event":
        seen = {e["event"] for e in outcome.hud()} | {f"{e['node']}.{e['event']}"
                                                      for e in outcome.hud()}
        return any(v in seen for v in values), f"events: {', '.join(sorted(seen)) or 'none'}"
    if kind == "trace routed":
        expert = _routed(outcome)
        return expert in values, f"routed to: {expert or 'no expert'}"
    if kind == "controls match":
        texts = [f"{c.get('action', '')} {c.get('label', '')}" for c in outcome.controls]
        missing = [p for p in values
                   if not any(re.search(p.replace(" or ", "|"), t, re.I) for t in texts)]
        detail = f"controls: {', '.join(c.get('action', '') for c in outcome.controls) or 'none'}"
        return not missing, detail + (f" (no match for {missing[0]!r})" if missing else "")
    if kind == "memory":
        value = outcome.memory.get(check.field)
        if isinstance(value, list):
            ok = any(v.lower() in (str(item).lower() for item in value) for v in values)
        else:
            ok = str(value or "").lower() in (v.lower() for v in values)
        return ok, f"memory {check.field}: {value!r}"
    if kind == "progress":
        kinds = [e.get("kind", "") for e in outcome.events if e.get("type") == "progress"]
        return kinds == list(values), f"progress: {', '.join(kinds) or 'none'}"
    if kind == "sql matches":
        queries = _sql(outcome)
        ok = any(re.search(v, q, re.I) for v in values for q in queries)
        return ok, f"sql: {' | '.join(queries) or 'no query'}"
    raise ValueError(f"unknown check kind {kind!r}")
