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
import contextlib
import functools
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

from channels.exceptions import ChannelFull
from channels.layers import get_channel_layer
from django.conf import settings
from django.utils import timezone

from runtime.conversations import busy
from runtime.conversations import services as conv
from runtime.conversations.approvals import (
    ApprovalRefused,
    approval_decide,
    approvals_due,
    decision_check,
)
from runtime.conversations.dbcalls import database_call
from runtime.conversations.publish import ChatPublisher
from runtime.conversations.queueing import (
    QUEUE_ATTEMPTS,
    REJECT,
    conversation_double_texting,
    double_texting_check,
    message_enqueue,
)
from runtime.conversations.quotas import message_admit
from runtime.conversations.turns import (
    Begun,
    TurnStop,
    turn_begin,
    turn_release,
    turn_resume,
    turn_resume_claim,
    turn_run,
    turn_start,
    validate_text,
)
from runtime.engine.approval import DENY, TIMEOUT
from runtime.errors import ConversationBusy, DispatchFailed, MessageLost, sorry
from runtime.wire import AcceptedEvent, ApprovalDecidedEvent, Event

logger = logging.getLogger(__name__)

PIPELINE_CHANNEL = "pipeline"
"""The channel-layer channel pipeline workers listen on (`runworker pipeline`)."""
PIPELINE_MESSAGE = "pipeline.message"
PIPELINE_CONTROL_GROUP = "pipeline-control"
"""The channel-layer group every pipeline worker is in: asked to stop a message it
answers (`PIPELINE_STOP`)."""
PIPELINE_STOP = "pipeline.stop"


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
        self.stops: dict[str, TurnStop] = {}
        """How to stop each message this process is answering now, by message id."""

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

    @contextlib.contextmanager
    def stoppable(self, message_id: str) -> Iterator[TurnStop]:
        """While the block answers the message, `stop` can stop it."""
        stop = self.stops[message_id] = TurnStop()
        try:
            yield stop
        finally:
            self.stops.pop(message_id, None)

    def stop(self, message_id: str, policy: str) -> bool:
        """Stop a message this process is answering (a newer one was sent with `policy`);
        False when it is not answered here."""
        stop = self.stops.get(message_id)
        if stop is None:
            return False
        stop.request(policy)
        return True

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


@dataclass(frozen=True)
class Submitted:
    """What became of a submitted message."""

    message_id: str
    """Its id (its events and stored answer carry it)."""
    double_texting: str = ""
    """The double-texting policy applied because another message of the conversation was
    being answered ("" when none was: the message is being answered)."""
    position: int = 0
    """Its place in the conversation's queue (1: next) when it was queued (`enqueue`)."""


async def message_submit(*, conversation_id: int, text: str, message_id: str | None = None,
                         inline: bool = False, double_texting: str | None = None
                         ) -> Submitted:
    """Start answering `text` in the conversation, or queue it; return at once.

    The answer arrives as events in the conversation's log. `inline` answers
    before returning (for a caller without a lasting event loop, i.e. WSGI)
    when this process answers messages itself. Answered here, the message's
    start (busy flag, situation, state, graph) is one database call.

    While another message of the conversation is being answered, the double-texting
    policy decides (`double_texting`, else the graph's, runtime.conversations.queueing):
    `reject` raises ConversationBusy, `enqueue` queues the message behind it,
    `interrupt` and `rollback` queue it first and stop the running one (`message_stop`).

    Raises:
        InvalidMessage: empty or oversized text, or an unknown policy (nothing is stored).
        BudgetExceeded: refused by the owner's quotas (runtime.conversations.quotas;
            nothing is stored).
        ConversationBusy: refused by the `reject` policy.
        DispatchFailed: no pipeline worker could be reached (nothing is stored).
    """
    text = validate_text(text)
    requested = double_texting_check(double_texting)
    message_id = message_id or str(uuid.uuid4())
    # The owner's quotas, before the flag: a refused message stores nothing, and a queued
    # one counts as sent.
    await message_admit(conversation_id=conversation_id, message_id=message_id)
    for _ in range(QUEUE_ATTEMPTS):
        try:
            await _start(conversation_id=conversation_id, message_id=message_id, text=text,
                         inline=inline)
            return Submitted(message_id=message_id)
        except ConversationBusy:
            policy = requested or await database_call(conversation_double_texting)(
                conversation_id=conversation_id)
            if policy == REJECT:
                raise
            queued = await database_call(message_enqueue)(
                conversation_id=conversation_id, message_id=message_id, text=text,
                policy=policy)
            if queued is not None:
                if queued.waiting:  # paused for an approval: declined, it stops as it resumes
                    with contextlib.suppress(ApprovalRefused):  # decided meanwhile
                        await approval_submit(conversation_id=conversation_id,
                                              approval_id=queued.waiting, decision=DENY)
                elif queued.running:
                    await message_stop(message_id=queued.running, policy=policy)
                return Submitted(message_id=message_id, double_texting=policy,
                                 position=queued.position)
            # The running message ended meanwhile: take the flag after all.
    raise ConversationBusy()


async def message_stop(*, message_id: str, policy: str) -> None:
    """Stop a running message: a newer one was sent with `policy` (`interrupt`,
    `rollback`). Its `busy_stop` is set already, which its heartbeat reads; this stops
    it now where it runs: in this process, or in the pipeline worker answering it."""
    if pipeline_tasks().stop(message_id, policy) or not settings.AGENTSITE_PIPELINE_WORKERS:
        return
    try:
        await get_channel_layer().group_send(PIPELINE_CONTROL_GROUP, {
            "type": PIPELINE_STOP, "message_id": message_id, "policy": policy})
    except Exception:  # Redis down: the heartbeat still stops it (busy_stop)
        # Broad on purpose: the new message is queued whatever happens here.
        logger.exception("message %s: the workers could not be asked to stop it", message_id)


async def _start(*, conversation_id: int, message_id: str, text: str, inline: bool) -> None:
    """Take the conversation's flag for the message and have it answered (ConversationBusy
    when a message holds it)."""
    if settings.AGENTSITE_PIPELINE_WORKERS:
        token = await _flag_for_workers(conversation_id=conversation_id, message_id=message_id,
                                        text=text)
        await _send_to_workers(conversation_id=conversation_id, message_id=message_id,
                               text=text, token=token)
        return
    worker = busy.worker_name()
    begun = await turn_start(conversation_id=conversation_id, message_id=message_id,
                             text=text, worker=worker, now=timezone.now(),
                             on_handed=handed_dispatch)
    work = functools.partial(message_answer, conversation_id=conversation_id,
                             message_id=message_id, text=text, begun=begun, worker=worker)
    if inline:
        await work()
    else:
        pipeline_tasks().start(conversation_id=conversation_id, message_id=message_id,
                               work=work)


async def _flag_for_workers(*, conversation_id: int, message_id: str, text: str) -> str:
    """Take the busy flag for a message a pipeline worker will claim; its token."""
    acquire = functools.partial(busy.busy_acquire, conversation_id=conversation_id,
                                message_id=message_id, text=text, worker="")
    return await busy.busy_take(acquire, conversation_id=conversation_id,
                                on_handed=handed_dispatch)


async def handed_dispatch(handed: busy.Handed) -> None:
    """Have a queued message that was handed the flag by a reaper answered: by a pipeline
    worker, or in this process (the process that ended the message before it answers it
    itself, `message_answer`). A message sent to the workers twice is claimed once."""
    if settings.AGENTSITE_PIPELINE_WORKERS:
        with contextlib.suppress(DispatchFailed):  # its flag was given on; said in the log
            await _send_to_workers(conversation_id=handed.conversation_id,
                                   message_id=handed.message_id, text=handed.text,
                                   token=handed.token)
        return
    work = functools.partial(message_answer, conversation_id=handed.conversation_id,
                             message_id=handed.message_id, text=handed.text,
                             token=handed.token, worker=busy.worker_name())
    pipeline_tasks().start(conversation_id=handed.conversation_id,
                           message_id=handed.message_id, work=work)


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
    released = await database_call(busy.busy_release)(conversation_id=conversation_id,
                                                       token=token)
    if released.handed is not None:  # a message queued meanwhile goes to the workers now
        handed = released.handed
        with contextlib.suppress(DispatchFailed):  # the reaper records it, saying why
            await _send_to_workers(conversation_id=conversation_id,
                                   message_id=handed.message_id, text=handed.text,
                                   token=handed.token)
    raise DispatchFailed(f"{reason}; nothing was stored, send your message again")


async def message_answer(*, conversation_id: int, message_id: str, text: str,
                         begun: Begun | None = None, token: str = "", worker: str = "",
                         approval: str = "") -> None:
    """Answer a submitted message, then each queued message it hands the flag to;
    publish every event.

    `begun`: started by this process (`turn_start`, or `turn_resume` for a message that
    waited for an approval: its first event then says the decision, not `accepted`).
    `token`: a pipeline worker's (with `approval`: a paused message whose approval a web
    process decided, claimed with `turn_resume_claim`),
    claimed here; a message claimed already (a repeat delivery) or recorded as lost
    is dropped. Whatever happens the message ends stored (answered, or failed with
    the reason) and its listeners get a `done`, unless it was recorded as lost
    meanwhile, which its reaper has announced. The flag is released with the
    message's fate (or handed to the next queued message, answered next here); when
    even a failure cannot be stored (the database refuses writes) the flag is kept,
    silent, so the reaper stores and announces the message as failed once the
    database takes writes again. Events are published in order by a `ChatPublisher`,
    in batches when they come faster than the log is written; the last of them in the
    turn's own transaction.
    """
    handed = await _answer_one(conversation_id=conversation_id, message_id=message_id,
                               text=text, begun=begun, token=token, worker=worker,
                               approval=approval)
    while handed is not None:
        handed = await _answer_one(conversation_id=conversation_id,
                                   message_id=handed.message_id, text=handed.text,
                                   begun=None, token=handed.token, worker=worker)


async def _answer_one(*, conversation_id: int, message_id: str, text: str,
                      begun: Begun | None, token: str, worker: str, approval: str = ""
                      ) -> busy.Handed | None:
    """`message_answer` for one message; the queued message it handed the flag to."""
    with pipeline_tasks().stoppable(message_id) as stop:
        return await _answer_stoppable(conversation_id=conversation_id, message_id=message_id,
                                       text=text, begun=begun, token=token, worker=worker,
                                       stop=stop, approval=approval)


def _first_event(begun: Begun, *, text: str) -> Event:
    """A message's first event: `accepted`; a resumed one's, its approval's decision."""
    if begun.resume is not None:
        return ApprovalDecidedEvent(id=begun.resume.approval_id,
                                    message_id=begun.turn.message_id,
                                    decision=begun.resume.decision)
    return AcceptedEvent(message_id=begun.turn.message_id, text=text)


async def _answer_stoppable(*, conversation_id: int, message_id: str, text: str,
                            begun: Begun | None, token: str, worker: str, stop: TurnStop,
                            approval: str) -> busy.Handed | None:
    """`_answer_one`, while `stop` can stop the message."""
    async with ChatPublisher(conversation_id=conversation_id) as publish:
        try:
            if begun is None and approval:  # decided by a web process, resumed here
                begun = await database_call(turn_resume_claim)(
                    conversation_id=conversation_id, approval_id=approval, token=token,
                    worker=worker)
            begun = begun or await database_call(turn_begin)(
                conversation_id=conversation_id, message_id=message_id, text=text,
                worker=worker, now=timezone.now(), token=token)
        except MessageLost as exc:  # also the normal fate of a repeat delivery
            logger.info("pipeline: %s; dropped", exc)
            return None
        except Exception:  # e.g. its graph is gone: the message fails, stored and said
            logger.exception("message %s could not be started", message_id)
            await publish(AcceptedEvent(message_id=message_id, text=text))
            return await _failed(conversation_id=conversation_id, message_id=message_id,
                                 text=text, token=token, worker=worker, publish=publish)
        publish.lease(first_seq=begun.first_seq, reserved_to=begun.reserved_to)
        await publish(_first_event(begun, text=text))
        return await _answer(begun=begun, worker=worker, publish=publish, stop=stop)


async def _answer(*, begun: Begun, worker: str, publish: ChatPublisher, stop: TurnStop
                  ) -> busy.Handed | None:
    """Run a started message's turn within the pipeline timeout (or until a newer message
    stops it); a failure is stored. Returns the queued message the flag went to."""
    turn = begun.turn
    timeout = settings.AGENTSITE_PIPELINE_TIMEOUT_S
    try:
        result = await turn_run(conversation_id=turn.conversation_id, text=turn.message,
                                begun=begun, worker=worker, on_event=publish, log=publish,
                                timeout_s=timeout, stop=stop)
    except MessageLost as exc:
        logger.warning("%s; its result was dropped", exc)
        return None
    except TimeoutError:
        # Out of time, or stopped by a newer message: turn_run stored it as cancelled,
        # with its last events, and gave the flag on: to a queued message, answered next.
        return await database_call(busy.busy_unclaimed)(conversation_id=turn.conversation_id)
    except Exception:
        logger.exception("message %s failed in its pipeline", turn.message_id)
        return await _failed(conversation_id=turn.conversation_id, message_id=turn.message_id,
                             text=turn.message, token=begun.token, worker=worker,
                             publish=publish)
    if result.waiting is not None:  # paused: declined when nobody decides in time
        _expire_later(conversation_id=turn.conversation_id, approval_id=result.waiting.id)
    return result.handed


async def approval_submit(*, conversation_id: int, approval_id: str, decision: str,
                          inline: bool = False) -> str:
    """A person's decision on a tool call that waits (or `timeout`): the paused message
    goes on in this process, from its paused frame (before returning with `inline`, for
    a caller without a lasting event loop: WSGI). Its id ("" when nothing goes on: a
    `timeout` not due yet, or its flag is no longer its).

    Raises ApprovalRefused: not a decision, no such approval here (`not_found`), or
    decided already (`already_decided`)."""
    if decision != TIMEOUT:
        decision = decision_check(decision)
    if settings.AGENTSITE_PIPELINE_WORKERS and not inline:  # answered by a pipeline worker
        return await _resume_on_workers(conversation_id=conversation_id,
                                        approval_id=approval_id, decision=decision)
    worker = busy.worker_name()
    begun = await database_call(turn_resume)(conversation_id=conversation_id,
                                             approval_id=approval_id, decision=decision,
                                             worker=worker)
    if begun is None:  # nothing to resume (not expired yet, or its flag went elsewhere)
        return ""
    work = functools.partial(message_answer, conversation_id=conversation_id,
                             message_id=begun.turn.message_id, text=begun.turn.message,
                             begun=begun, worker=worker)
    if inline:
        await work()
    else:
        pipeline_tasks().start(conversation_id=conversation_id,
                               message_id=begun.turn.message_id, work=work)
    return begun.turn.message_id


async def _resume_on_workers(*, conversation_id: int, approval_id: str, decision: str
                             ) -> str:
    """Decide an approval and leave its message to a pipeline worker (the `pipeline`
    channel, as a new message goes); its id. When no worker can be reached, the reaper
    records the message as failed after `AGENTSITE_QUEUE_TIMEOUT_S`, saying why."""
    claimed = await database_call(approval_decide)(
        conversation_id=conversation_id, approval_id=approval_id, decision=decision,
        worker="")
    if claimed is None:
        return ""
    approval = claimed.approval
    message = {"type": PIPELINE_MESSAGE, "conversation": conversation_id,
               "message_id": approval.message_id, "text": approval.text,
               "token": approval.token, "approval": str(approval.pk)}
    try:
        await get_channel_layer().send(PIPELINE_CHANNEL, message)
    except Exception:  # whatever the layer's client raises (Redis down, full, timeout...)
        # Broad on purpose: the decision is kept; the reaper says what became of it.
        logger.exception("approval %s: its message could not be sent to the pipeline "
                         "workers", approval_id)
    return approval.message_id


async def approvals_expire(*, conversation_id: int | None = None, inline: bool = False
                           ) -> int:
    """Decline every approval (of one conversation, or all) nobody decided in time, so its
    message goes on (every reaper calls it: a process that paused it may be gone; `inline`
    as for `approval_submit`); how many."""
    due = await database_call(approvals_due)(conversation_id=conversation_id)
    for conversation, approval in due:
        with contextlib.suppress(ApprovalRefused):  # decided meanwhile
            await approval_submit(conversation_id=conversation, approval_id=approval,
                                  decision=TIMEOUT, inline=inline)
    return len(due)


def _expire_later(*, conversation_id: int, approval_id: str) -> None:
    """In this process, decline the approval once it expires (if this process still runs
    then; otherwise a reaper does: `approvals_expire`)."""
    loop = asyncio.get_running_loop()

    def expire() -> None:
        pipeline_tasks().start(
            conversation_id=conversation_id, message_id=f"approval {approval_id}",
            work=functools.partial(approvals_expire, conversation_id=conversation_id))

    loop.call_later(settings.AGENTSITE_APPROVAL_TIMEOUT_S + 0.05, expire)


async def _failed(*, conversation_id: int, message_id: str, text: str, token: str,
                  worker: str, publish: ChatPublisher) -> busy.Handed | None:
    """Store a message its pipeline failed, say so, and give its flag back (ending the
    publisher's lease, when it holds one, in the same transaction); the queued message
    the flag went to."""
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
        return None
    if stored:
        lost = busy.LostMessage(conversation_id=conversation_id, message_id=message_id,
                                reason=reason)
        for event in busy.lost_events(lost, code="internal"):
            await publish(event)
    if publish.next_seq is None:  # not started: no lease to end
        released = await database_call(busy.busy_release)(conversation_id=conversation_id,
                                                           token=token)
        return released.handed
    async with publish.held() as held:
        released = await database_call(turn_release)(
            conversation_id=conversation_id, token=token, events=held.events,
            next_seq=held.next_seq, announce=False)
    publish.send_numbered(released.waited)
    return released.handed
