"""`> approve` and `> deny`: a step's decisions on the tool calls its message waits for.

A message whose graph asks a person to approve a tool call (graphs/config.py,
`approval`) pauses before it: its events end with an `approval` event instead of
`done`. Each target (in process, or a server over REST) follows the message through
its pauses with `decisions_follow`, giving each pause the step's next decision, so a
step's checks read the answer after the last decision, as a person would see it.

The two ways a step's decisions can be wrong are said here once for both targets:
a pause with no decision left (the message is denied so the suite can go on, then
the step fails), and a decision left over once the message ended.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from runtime.engine.approval import DENY
from runtime.errors import AgentError

Decide = Callable[[dict[str, Any], str], list[dict[str, Any]]]
"""Decide one pause: given its `approval` event and `approve` or `deny`, the message's
events from the decision on, up to its `done` or its next `approval`."""


class ApprovalUndecided(AgentError):
    """A step's message waited for an approval the step did not decide (or a decision had
    nothing to decide)."""

    code = "bad_request"


def waiting_of(events: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The `approval` event the message waits on: its last event, when it is one."""
    return events[-1] if events and events[-1].get("type") == "approval" else None


def decisions_follow(*, decisions: tuple[str, ...], events: list[dict[str, Any]],
                     decide: Decide) -> list[dict[str, Any]]:
    """Follow a message through its pauses, deciding each with the step's next decision.

    Args:
        decisions: the step's decisions in order (`Step.decisions`).
        events: the message's events so far, up to its `done` or an `approval` (empty when
            the step sent no message: a machine button).
        decide: decides one pause (`Decide`).

    Returns every event of the message, the last its `done`. Raises ApprovalUndecided when
    it pauses with no decision left (after denying it, so the conversation is free for the
    next step) or when a decision is left once it ended.
    """
    events = list(events)
    pending = list(decisions)
    while (waiting := waiting_of(events)) is not None:
        if not pending:
            raise _undecided(waiting, decide)
        events.extend(decide(waiting, pending.pop(0)))
    if pending:
        decisions_none_waiting(decisions, decided=len(decisions) - len(pending),
                               answered=bool(events))
    return events


def _undecided(waiting: dict[str, Any], decide: Decide) -> ApprovalUndecided:
    """The error of a pause the step does not decide, once it is denied (so the
    conversation is free for the next steps; a denial that fails is said too)."""
    problem = (f"the message waits for approval of {waiting.get('step') or waiting.get('tool')}"
               f": add `> approve` or `> deny` after the step's action")
    try:
        decide(waiting, DENY)
    except AgentError as exc:
        return ApprovalUndecided(f"{problem} (denying it so the suite could go on failed: "
                                 f"{exc})")
    return ApprovalUndecided(f"{problem} (it was denied so the next steps can run)")


def decisions_none_waiting(decisions: tuple[str, ...], *, decided: int = 0,
                           answered: bool = False) -> None:
    """ApprovalUndecided when a step has a decision left (after `decided` of them) with no
    tool call waiting: its message was `answered`, or it sent none (a machine button)."""
    if len(decisions) <= decided:
        return
    raise ApprovalUndecided(
        f"`> {decisions[decided]}`: no tool call was waiting for approval"
        + (f" after the step's first {decided} decision(s)" if decided else "")
        + ("; the message was answered without one" if answered
           else "; the step sent no message"))
