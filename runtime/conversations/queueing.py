"""Double texting: a message sent while its conversation answers another.

Which policy applies comes from the request (`double_texting` on the socket's
`message`, or in the REST send body), else from the conversation's graph (graph
config `double_texting`, graphs.config), else `reject`:

- `reject`: refused with `busy` (REST 409); nothing is stored.
- `enqueue`: stored in the conversation's queue (`QueuedMessage`) and answered after the
  running message, in order, each with its own answer (and history: a queued message
  is answered knowing the answers before it).

The flag is never free while the queue holds a message: whoever gives it back
(`busy.busy_release`, or the end of a turn) hands it, unclaimed, to the first
queued message (`busy.busy_hand_off`), and the process that ended the message
before answers it (`answering.message_answer`). A message handed the flag that
no process claims (its process stopped) is recorded as failed by the reaper after
`AGENTSITE_QUEUE_TIMEOUT_S`, with the reason.
"""

from __future__ import annotations

from django.db import transaction

from graphs.config import DOUBLE_TEXTING_POLICIES, graph_double_texting
from graphs.selectors import graph_spec_current
from runtime.conversations.models import Conversation, QueuedMessage
from runtime.conversations.turns import InvalidMessage
from runtime.conversations.writes import retrying

REJECT = "reject"
ENQUEUE = "enqueue"
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


@retrying
@transaction.atomic
def message_enqueue(*, conversation_id: int, message_id: str, text: str) -> int | None:
    """Queue a message behind the one being answered; its place in the queue (1: next).
    None when no message holds the flag any more (the caller takes it)."""
    busy = (Conversation.objects.select_for_update().filter(pk=conversation_id)
            .values_list("busy_token", flat=True).get())
    if not busy:
        return None
    QueuedMessage.objects.create(conversation_id=conversation_id, message_id=message_id,
                                 text=text)
    return QueuedMessage.objects.filter(conversation_id=conversation_id).count()


def message_queue_position(*, conversation_id: int, message_id: str) -> int | None:
    """A queued message's place in its conversation's queue (1: next); None if it is not
    queued."""
    queued = QueuedMessage.objects.filter(conversation_id=conversation_id)
    row = queued.filter(message_id=message_id).values_list("id", flat=True).first()
    return None if row is None else queued.filter(id__lte=row).count()
