"""Double texting: a message sent while its conversation answers another.

Which policy applies comes from the request (`double_texting` on the socket's
`message`, or in the REST send body), else from the conversation's graph (graph
config `double_texting`, graphs.config), else `reject`:

- `reject`: refused with `busy` (REST 409); nothing is stored.
- `enqueue`: stored in the conversation's queue (`QueuedMessage`) and answered after the
  running message, in order, each with its own answer (and history: a queued message
  is answered knowing the answers before it).
- `interrupt`: queued at the front, and the running message is asked to stop
  (`Conversation.busy_stop`; `runtime.conversations.answering.message_stop`). It is
  stored as stopped, with the frames that ran, so the new message is answered with
  both in its history.
- `rollback`: the same, but the stopped message is left out of the history and the
  memory, as if it had not been sent (its trace keeps what ran). A message that
  ended before it could be stopped stays answered.

The flag is never free while the queue holds a message: whoever gives it back
(`busy.busy_release`, or the end of a turn) hands it, unclaimed, to the first
queued message (`busy.busy_hand_off`), and the process that ended the message
before answers it (`answering.message_answer`). A message handed the flag that
no process claims (its process stopped) is recorded as failed by the reaper after
`AGENTSITE_QUEUE_TIMEOUT_S`, with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction
from django.db.models import Q

from graphs.config import DOUBLE_TEXTING_POLICIES, graph_double_texting
from graphs.selectors import graph_spec_current
from runtime.conversations.models import Approval, Conversation, QueuedMessage
from runtime.conversations.turns import InvalidMessage
from runtime.conversations.writes import retrying

REJECT = "reject"
ENQUEUE = "enqueue"
INTERRUPT = "interrupt"
ROLLBACK = "rollback"
STOPPING = (INTERRUPT, ROLLBACK)
"""The policies that stop the running message."""
QUEUE_ATTEMPTS = 3
"""How often a submit tries to take the flag or queue (the running message may end in
between, freeing the flag)."""


def double_texting_check(value: object) -> str | None:
    """A request's `double_texting` (None when not given); InvalidMessage for another
    value than a policy's name."""
    if value is None:
        return None
    if value not in DOUBLE_TEXTING_POLICIES:
        raise InvalidMessage(f"double_texting must be one of "
                             f"{', '.join(DOUBLE_TEXTING_POLICIES)}, not {value!r}")
    return str(value)


def conversation_double_texting(*, conversation_id: int) -> str:
    """The double-texting policy of the conversation's graph."""
    name = Conversation.objects.filter(pk=conversation_id).values_list(
        "graph_name", flat=True).get()
    return graph_double_texting(graph_spec_current(name=name))


@dataclass(frozen=True)
class Queued:
    """A message put in its conversation's queue."""

    position: int
    """Its place in the queue (1: next)."""
    running: str
    """The id of the message being answered, asked to stop (`interrupt`, `rollback`);
    "" otherwise."""
    waiting: str = ""
    """When that message waits for a person's approval: the approval's id (no process
    runs it: it is declined, and stops as it resumes)."""


@retrying
@transaction.atomic
def message_enqueue(*, conversation_id: int, message_id: str, text: str,
                    policy: str = ENQUEUE) -> Queued | None:
    """Queue a message behind the one being answered (`enqueue`), or before every queued
    one, asking the running one to stop (`interrupt`, `rollback`: `busy_stop`). None
    when no message holds the flag any more (the caller takes it)."""
    row = (Conversation.objects.select_for_update().filter(pk=conversation_id)
           .values("busy_token", "busy_message_id", "busy_waiting").get())
    if not row["busy_token"]:
        return None
    front = policy in STOPPING
    QueuedMessage.objects.create(conversation_id=conversation_id, message_id=message_id,
                                 text=text, front=front)
    if front:
        Conversation.objects.filter(pk=conversation_id).update(busy_stop=policy)
    position = message_queue_position(conversation_id=conversation_id, message_id=message_id)
    waiting = front and row["busy_waiting"] is not None and Approval.objects.filter(
        conversation_id=conversation_id, message_id=row["busy_message_id"], decision="",
    ).values_list("pk", flat=True).first()
    return Queued(position=position or 1, running=row["busy_message_id"] if front else "",
                  waiting=str(waiting) if waiting else "")


def message_queue_position(*, conversation_id: int, message_id: str) -> int | None:
    """A queued message's place in its conversation's queue (1: next); None if it is not
    queued. Messages sent with `interrupt` or `rollback` come first (`front`)."""
    queued = QueuedMessage.objects.filter(conversation_id=conversation_id)
    row = queued.filter(message_id=message_id).values("id", "front").first()
    if row is None:
        return None
    return queued.filter(Q(front__gt=row["front"])
                         | Q(front=row["front"], id__lte=row["id"])).count()
