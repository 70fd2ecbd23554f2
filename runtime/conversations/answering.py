"""Where a message is answered: in this web process, or by a pipeline worker.

Every surface (chat socket, REST) submits a message the same way:
`message_submit` checks the text, records any lost message of the
conversation as failed, and takes the conversation's busy flag (one
conditional UPDATE, so the database decides between racing processes). Then:

- With `AGENTSITE_PIPELINE_WORKERS` (on with `REDIS_URL`) the message goes to
  the `pipeline` channel of the channel layer; one `manage.py runworker
  pipeline` process takes it (`runtime.conversations.worker`), claims the flag and answers.
- Otherwise this process answers it in a task owned by `pipeline_tasks()`.

Either way `message_answer` runs the same `turn_run` and every event goes
through `runtime.conversations.publish`: stored in the conversation's log with a `seq`, then
fanned out to the conversation's sockets wherever they are connected. The flag
is beaten while the message runs; a process that dies leaves a silent flag,
which `reap_and_publish` (run by every worker, and before every submit) turns
into a failed message with a clear reason.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from channels.exceptions import ChannelFull
from channels.layers import get_channel_layer
from django.conf import settings
from django.utils import timezone

from runtime.conversations import busy
from runtime.conversations import services as conv
from runtime.conversations.dbcalls import database_call
from runtime.conversations.publish import ChatPublisher
from runtime.conversations.turns import (
    CANCELLED_ANSWER,
    Begun,
    turn_begin,
    turn_release,
    turn_run,
    turn_start,
    validate_text,
)
from runtime.errors import DispatchFailed, MessageLost, sorry
from runtime.wire import AcceptedEvent, DoneEvent, ErrorEvent

logger = logging.getLogger(__name__)

PIPELINE_CHANNEL = "pipeline"
"""The channel-layer channel pipeline workers listen on (`runworker pipeline`)."""
PIPELINE_MESSAGE = "pipeline.message"


@dataclass
class RunningMessage:
    """A message this process is answering."""

    conversation_id: int
    """Whose it is."""
    task: asyncio.Task
    """The pipeline task."""


class PipelineTasks:
    """The messages this process answers, by message id: owned tasks, not fire-and-forget.

    A task is kept until it ends; its failure is logged with the traceback
    (`message_answer` has already stored it as a failed message). One instance
    per process and event loop, from `pipeline_tasks()`.
    """

    def __init__(self) -> None:
        self.tasks: dict[str, RunningMessage] = {}

    def start(
        self, *, conversation_id: int, message_id: str, work: Callable[[], Awaitable[None]]
    ) -> asyncio.Task:
        """Run `work()` as this message's task on the running loop."""
        task = asyncio.get_running_loop().create_task(work(), name=f"message {message_id}")
        self.tasks[message_id] = RunningMessage(conversation_id=conversation_id, task=task)
        task.add_done_callback(functools.partial(self._finished, message_id))
        return task

    def running_message(self, message_id: str) -> bool:
        """Whether this process is answering that message."""
        entry = self.tasks.get(message_id)
        return entry is not None and not entry.task.done()

    def running(self, *, conversation_id: int | None = None) -> int:
        """How many messages (of one conversation, or all) run in this process."""
        return sum(1 for entry in self.tasks.values() if not entry.task.done()
                   and conversation_id in (None, entry.conversation_id))

    async def drain(self) -> None:
        """Wait for every running message to end."""
        while self.tasks:
            await asyncio.wait([entry.task for entry in self.tasks.values()])

    def _finished(self, message_id: str, task: asyncio.Task) -> None:
        self.tasks.pop(message_id, None)
        if not task.cancelled() and task.exception() is not None:
            logger.error("message %s failed", message_id, exc_info=task.exception())


@functools.cache
def pipeline_tasks() -> PipelineTasks:
    """This process's running messages, made on first use (`cache_clear()` in tests)."""
    return PipelineTasks()


async def message_submit(*, conversation_id: int, text: str, message_id: str | None = None,
                         inline: bool = False) -> str:
    """Start answering `text` in the conversation; return the message id at once.

    The answer arrives as events in the conversation's log. `inline` answers
    before returning (for a caller without a lasting event loop, i.e. WSGI)
    when this process answers messages itself. Answered here, the message's
    start (busy flag, situation, state, graph) is one database call.

    Raises:
        InvalidMessage: empty or oversized text (nothing is stored).
        ConversationBusy: a message of this conversation is being answered.
        DispatchFailed: no pipeline worker could be reached (nothing is stored).
    """
    text = validate_text(text)
    message_id = message_id or str(uuid.uuid4())
    if settings.AGENTSITE_PIPELINE_WORKERS:
        token = await _flag_for_workers(conversation_id=conversation_id, message_id=message_id,
                                        text=text)
        await _send_to_workers(conversation_id=conversation_id, message_id=message_id,
                               text=text, token=token)
        return message_id
    worker = busy.worker_name()
    begun = await turn_start(conversation_id=conversation_id, message_id=message_id,
                             text=text, worker=worker, now=timezone.now())
    work = functools.partial(message_answer, conversation_id=conversation_id,
                             message_id=message_id, text=text, begun=begun, worker=worker)
    if inline:
        await work()
    else:
        pipeline_tasks().start(conversation_id=conversation_id, message_id=message_id,
                               work=work)
    return message_id


async def _flag_for_workers(*, conversation_id: int, message_id: str, text: str) -> str:
    """Take the busy flag for a message a pipeline worker will claim; its token."""
    acquire = functools.partial(busy.busy_acquire, conversation_id=conversation_id,
                                message_id=message_id, text=text, worker="")
    return await busy.busy_take(acquire, conversation_id=conversation_id)


async def _send_to_workers(*, conversation_id: int, message_id: str, text: str, token: str
                           ) -> None:
    message = {"type": PIPELINE_MESSAGE, "conversation": conversation_id,
               "message_id": message_id, "text": text, "token": token}
    try:
        await get_channel_layer().send(PIPELINE_CHANNEL, message)
    except ChannelFull:
        reason = "the message queue is full"
    except Exception:  # whatever the layer's client raises (Redis down, timeout...)
        # Broad on purpose: the flag taken above must be given back whatever went wrong.
        logger.exception("message %s could not be sent to the pipeline workers", message_id)
        reason = "the message queue could not be reached"
    else:
        return
    await database_call(busy.busy_release)(conversation_id=conversation_id, token=token)
    raise DispatchFailed(f"{reason}; nothing was stored, send your message again")


async def message_answer(*, conversation_id: int, message_id: str, text: str,
                         begun: Begun | None = None, token: str = "", worker: str = "") -> None:
    """Answer a submitted message; publish every event.

    `begun`: started by this process (`turn_start`). `token`: a pipeline worker's,
    claimed here; a message claimed already (a repeat delivery) or recorded as lost
    is dropped. Whatever happens the message ends stored (answered, or failed with
    the reason) and its listeners get a `done`, unless it was recorded as lost
    meanwhile, which its reaper has announced. The flag is released with the
    message's fate; when even a failure cannot be stored (the database refuses
    writes) the flag is kept, silent, so the reaper stores and announces the
    message as failed once the database takes writes again. Events are published
    in order by a `ChatPublisher`, in batches when they come faster than the log
    is written; the last of them in the turn's own transaction.
    """
    async with ChatPublisher(conversation_id=conversation_id) as publish:
        try:
            begun = begun or await database_call(turn_begin)(
                conversation_id=conversation_id, message_id=message_id, text=text,
                worker=worker, now=timezone.now(), token=token)
        except MessageLost as exc:  # also the normal fate of a repeat delivery
            logger.info("pipeline: %s; dropped", exc)
            return
        except Exception:  # e.g. its graph is gone: the message fails, stored and said
            logger.exception("message %s could not be started", message_id)
            await publish(AcceptedEvent(message_id=message_id, text=text))
            await _failed(conversation_id=conversation_id, message_id=message_id, text=text,
                          token=token, worker=worker, publish=publish)
            return
        publish.lease(first_seq=begun.first_seq, reserved_to=begun.reserved_to)
        await publish(AcceptedEvent(message_id=message_id, text=text))  # its first event
        await _answer(begun=begun, worker=worker, publish=publish)


async def _answer(*, begun: Begun, worker: str, publish: ChatPublisher) -> None:
    """Run a started message's turn within the pipeline timeout; a failure is stored."""
    turn = begun.turn
    timeout = settings.AGENTSITE_PIPELINE_TIMEOUT_S
    try:
        await asyncio.wait_for(
            turn_run(conversation_id=turn.conversation_id, text=turn.message, begun=begun,
                     worker=worker, on_event=publish, log=publish),
            timeout=timeout)
    except MessageLost as exc:
        logger.warning("%s; its result was dropped", exc)
    except TimeoutError:
        # turn_run stored the message as cancelled when the timeout cancelled it.
        reason = f"the answer took longer than {timeout:g} s and was stopped"
        await publish(ErrorEvent(code="timeout", message=reason, message_id=turn.message_id))
        await publish(DoneEvent(message_id=turn.message_id, answer=CANCELLED_ANSWER,
                                failed=True, path="", frames=0, ms=timeout * 1000))
    except Exception:
        logger.exception("message %s failed in its pipeline", turn.message_id)
        await _failed(conversation_id=turn.conversation_id, message_id=turn.message_id,
                      text=turn.message, token=begun.token, worker=worker, publish=publish)


async def _failed(*, conversation_id: int, message_id: str, text: str, token: str,
                  worker: str, publish: ChatPublisher) -> None:
    """Store a message its pipeline failed, say so, and give its flag back (ending the
    publisher's lease, when it holds one, in the same transaction)."""
    reason = sorry("something went wrong on my side (the details are in the server log)")
    try:
        stored = await database_call(conv.conversation_record_failure)(
            conversation_id=conversation_id, message_id=message_id, text=text,
            reason=reason, worker=worker or busy.worker_name())
    except Exception:  # the database refuses even the failure (down, disk full...)
        # Broad on purpose: keep the busy flag, now silent. The reaper records the
        # message as failed and announces it once the database takes writes again
        # (before the conversation's next message, socket or /api/result).
        logger.exception("message %s: its failure could not be stored; left to the "
                         "reaper", message_id)
        return
    if stored:
        lost = busy.LostMessage(conversation_id=conversation_id, message_id=message_id,
                                reason=reason)
        for event in busy.lost_events(lost, code="internal"):
            await publish(event)
    if publish.next_seq is None:  # not started: no lease to end
        await database_call(busy.busy_release)(conversation_id=conversation_id, token=token)
        return
    async with publish.held() as held:
        waited = await database_call(turn_release)(
            conversation_id=conversation_id, token=token, events=held.events,
            next_seq=held.next_seq, announce=False)
    publish.send_numbered(waited)
