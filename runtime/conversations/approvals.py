"""A message paused before a tool call that waits for a person's approval.

The engine stops at the frame whose node asked (runtime.engine.approval); the turn
stores the pause here, in one transaction (`approval_pause`): an `Approval` row with
where the engine stood, the message's events so far with an `approval` event last,
and the busy flag kept, marked waiting (`busy_waiting`: the reaper leaves it alone).
No process holds anything while it waits, so the pause survives a restart and any
process may resume it.

A decision (`approval_decide`: socket `approval`, REST POST /api/approvals/{id}, or
`timeout` once `expires_at` passed with none, `approvals_due`) is stored with the
flag claimed for the deciding process and a new range of event numbers, in one
transaction; the first decision wins. The message then resumes from the paused
frame (runtime.conversations.turns, `turn_resume_begun`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import OuterRef
from django.db.models.functions import Now
from django.utils import timezone

from graphs.selectors import graph_stamp
from runtime.conversations.busy import busy_claim
from runtime.conversations.eventlog import chat_events_lease, chat_events_lease_end
from runtime.conversations.models import Approval, Conversation
from runtime.conversations.writes import retrying
from runtime.engine.approval import DECISIONS, TIMEOUT, ApprovalNeeded
from runtime.errors import AgentError, MessageLost
from runtime.wire import ApprovalEvent


class ApprovalRefused(AgentError):
    """A decision that cannot be taken: no such approval here, or decided already."""

    code = "bad_request"

    def __init__(self, message: str, *, code: str = "bad_request", decision: str = ""
                 ) -> None:
        super().__init__(message)
        self.code = code
        self.decision = decision
        """The decision taken before, when it was decided already."""


def decision_check(value: object) -> str:
    """A person's decision (`approve`, `deny`); ApprovalRefused for anything else."""
    if value not in DECISIONS:
        raise ApprovalRefused(f"decision must be one of {', '.join(DECISIONS)}, not {value!r}")
    return str(value)


@retrying
@transaction.atomic
def approval_pause(*, conversation_id: int, message_id: str, text: str, token: str,
                   waiting: ApprovalNeeded, state: dict[str, Any],
                   events: list[dict[str, Any]], next_seq: int
                   ) -> tuple[ApprovalEvent, dict[str, Any]]:
    """Store a message that waits for an approval: the `Approval`, its `events` so far
    (numbered from the message's lease, not stored yet) and the `approval` event after
    them (numbered `next_seq`), the flag kept and marked waiting. Returns that event, and
    as sent (numbered). MessageLost when the flag was taken from the message (nothing
    stored)."""
    expires_at = timezone.now() + timedelta(seconds=settings.AGENTSITE_APPROVAL_TIMEOUT_S)
    approval = Approval.objects.create(
        conversation_id=conversation_id, message_id=message_id, text=text,
        node=waiting.node, tool=waiting.tool, args=waiting.call_args, step=waiting.step,
        reason=waiting.reason, token=token, state=state, expires_at=expires_at)
    held = Conversation.objects.filter(pk=conversation_id, busy_token=token).update(
        busy_waiting=expires_at, busy_worker=f"waiting for approval {approval.pk}",
        busy_beat=Now())
    if not held:
        raise MessageLost(f"message {message_id} was recorded as lost before it paused")
    event = ApprovalEvent(id=str(approval.pk), message_id=message_id, tool=waiting.tool,
                          step=waiting.step, reason=waiting.reason,
                          expires_at=expires_at.isoformat())
    wire = {**event.as_dict(), "seq": next_seq}
    chat_events_lease_end(conversation_id=conversation_id, wires=[*events, wire],
                          last_seq=next_seq)
    return event, wire


@dataclass(frozen=True)
class Claimed:
    """A decided approval whose message this process resumes: it holds the flag again."""

    approval: Approval
    """The approval, decided."""
    conversation: Conversation | None
    """Its conversation, read in the claiming transaction (with its graph's stamp); None
    when it is left for a pipeline worker."""
    first_seq: int
    """The first number of the resumed message's events."""
    reserved_to: int
    """The last number reserved for them."""


@retrying
@transaction.atomic
def approval_decide(*, conversation_id: int, approval_id: str, decision: str, worker: str,
                    now: datetime | None = None) -> Claimed | None:
    """Decide an approval and claim its message for this process (`worker`), in one
    transaction; with `worker` "" it is left for a pipeline worker to claim
    (`approval_claim`; the reaper records it as lost if none does within
    `AGENTSITE_QUEUE_TIMEOUT_S`) and no event numbers are taken yet. `timeout` decides
    only an approval past its `expires_at` (None otherwise). None too when its flag is no
    longer its message's (the decision is kept).

    ApprovalRefused: no such approval in this conversation (`not_found`), or it was
    decided already (`already_decided`, with that decision).
    """
    approval = (Approval.objects.select_for_update()
                .filter(pk=approval_id, conversation_id=conversation_id).first())
    if approval is None:
        raise ApprovalRefused(f"no approval {approval_id} in this conversation",
                              code="not_found")
    if approval.decision:
        raise ApprovalRefused(f"this approval was decided already ({approval.decision})",
                              code="already_decided", decision=approval.decision)
    now = now or timezone.now()
    if decision == TIMEOUT and approval.expires_at > now:
        return None
    approval.decision, approval.decided_at = decision, now
    approval.save(update_fields=["decision", "decided_at"])
    claimed = (Conversation.objects.filter(pk=conversation_id, busy_token=approval.token)
               .exclude(busy_waiting=None)
               .update(busy_waiting=None, busy_worker=worker[:200], busy_beat=Now(),
                       busy_since=Now()))
    if not claimed:
        return None
    if not worker:  # a pipeline worker claims it (`approval_claim`)
        return Claimed(approval=approval, conversation=None, first_seq=0, reserved_to=0)
    return _leased(approval)


@retrying
@transaction.atomic
def approval_claim(*, conversation_id: int, approval_id: str, token: str, worker: str
                   ) -> Claimed:
    """A pipeline worker claims a decided message left for it (`approval_decide` with no
    worker); MessageLost when it was claimed already, or recorded as lost."""
    if not busy_claim(conversation_id=conversation_id, token=token, worker=worker):
        raise MessageLost(f"the message of approval {approval_id} was taken, or recorded "
                          "as lost, before this worker claimed it")
    return _leased(Approval.objects.get(pk=approval_id, conversation_id=conversation_id))


def _leased(approval: Approval) -> Claimed:
    """The claimed message's conversation (with its graph's stamp) and a new range of event
    numbers for the rest of its events."""
    conversation_id = approval.conversation_id
    conversation = Conversation.objects.annotate(**graph_stamp(OuterRef("graph_name"))).get(
        pk=conversation_id)
    first_seq, reserved_to = chat_events_lease(conversation=conversation)
    Conversation.objects.filter(pk=conversation_id).update(event_reserved=reserved_to)
    return Claimed(approval=approval, conversation=conversation, first_seq=first_seq,
                   reserved_to=reserved_to)


def approvals_due(*, conversation_id: int | None = None, now: datetime | None = None
                  ) -> list[tuple[int, str]]:
    """The undecided approvals (of one conversation, or all) past their `expires_at`:
    (conversation id, approval id), to decide as `timeout`."""
    rows = Approval.objects.filter(decision="", expires_at__lte=now or timezone.now())
    if conversation_id is not None:
        rows = rows.filter(conversation_id=conversation_id)
    return [(c, str(a)) for c, a in rows.values_list("conversation_id", "pk")[:200]]


def approval_waiting(*, conversation_id: int, message_id: str) -> dict[str, Any] | None:
    """The undecided approval a message waits for, as `/api/result` shows it (None when
    it waits for none)."""
    row = (Approval.objects.filter(conversation_id=conversation_id, message_id=message_id,
                                   decision="")
           .values("pk", "tool", "step", "reason", "expires_at").first())
    if row is None:
        return None
    return {"id": str(row["pk"]), "tool": row["tool"], "step": row["step"],
            "reason": row["reason"], "expires_at": row["expires_at"].isoformat()}
