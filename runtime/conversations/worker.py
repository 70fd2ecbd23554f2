"""Pipeline workers: `python manage.py runworker pipeline`, a Channels background worker.

With `REDIS_URL` the web processes do not answer messages themselves: they
send each one to the `pipeline` channel (runtime.conversations.answering) and any number of
worker processes, on any number of machines, share the queue.

`PipelineWorker` is Channels' own `Worker`, with three additions:

- Back-pressure: it takes a message from the channel only while it answers
  fewer than `AGENTSITE_WORKER_CONCURRENCY`, so a busy worker leaves the queue
  to idle ones and a dying worker holds nothing it has not started.
- A reaper: every third of `AGENTSITE_BUSY_TIMEOUT_S` it records the messages
  of dead processes as failed (runtime.conversations.busy.busy_reap_and_publish).
- Retention: every `AGENTSITE_RETENTION_INTERVAL_S` (from its start) it runs
  a retention pass (runtime.conversations.retention: expired sessions, idle conversations,
  old traces), so a site with workers needs no cron for it.
- A clean stop: on SIGTERM or SIGINT it stops taking messages and lets the
  running ones finish (within `AGENTSITE_PIPELINE_TIMEOUT_S`).
- Control: its own channel in the `pipeline-control` group, where a web process asks
  every worker to stop a message a newer one interrupts (double texting `interrupt`,
  `rollback`); the worker answering it stops it at once.

`PipelineConsumer` is the channel's application: it answers each message with
the same `runtime.conversations.answering.message_answer` the web process uses
without workers, which claims the message's busy flag in the transaction that
loads its turn (dropping messages already claimed or reaped).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

from channels.consumer import AsyncConsumer
from channels.worker import Worker
from django.conf import settings

from runtime.conversations import busy
from runtime.conversations.answering import (
    PIPELINE_CONTROL_GROUP,
    PIPELINE_MESSAGE,
    PIPELINE_STOP,
    approvals_expire,
    handed_dispatch,
    message_answer,
    pipeline_tasks,
)
from runtime.conversations.dbcalls import DatabaseCallsOnly, database_call
from runtime.conversations.queueing import STOPPING
from runtime.conversations.retention import retention_run

logger = logging.getLogger(__name__)


class PipelineConsumer(DatabaseCallsOnly, AsyncConsumer):
    """Answers the messages the `pipeline` channel brings, several at once."""

    async def pipeline_message(self, message: dict[str, Any]) -> None:
        """Answer a submitted message in an owned task, which claims it first (a message
        claimed already, e.g. delivered twice by channels-redis, is dropped)."""
        slots: asyncio.Semaphore | None = self.scope.get("slots")
        try:
            conversation_id = int(message["conversation"])
            message_id, text, token = (str(message[k]) for k in ("message_id", "text", "token"))
            approval = str(message.get("approval") or "")  # a paused message, decided
        except (KeyError, TypeError, ValueError):
            logger.error("pipeline: a malformed message was dropped: %r", message)
            _release(slots)
            return
        if pipeline_tasks().running_message(message_id):
            logger.info("pipeline: message %s is being answered here already; the repeat "
                        "was dropped", message_id)
            _release(slots)
            return
        worker = busy.worker_name()

        async def work() -> None:
            try:
                await message_answer(conversation_id=conversation_id, message_id=message_id,
                                     text=text, token=token, worker=worker,
                                     approval=approval)
            finally:
                _release(slots)

        pipeline_tasks().start(conversation_id=conversation_id, message_id=message_id,
                               work=work)

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Unknown message types are logged and dropped; the worker goes on."""
        if message.get("type") != PIPELINE_MESSAGE:
            logger.error("pipeline: a message of unknown type %r was dropped",
                         message.get("type"))
            _release(self.scope.get("slots"))
            return
        await super().dispatch(message)


CONTROL_REJOIN_S = 600.0
"""How often a worker joins the control group again (channels-redis forgets a member after
its `group_expiry`, a day by default)."""


def _control(message: dict[str, Any]) -> None:
    """Do what a control message asks: stop a message if this process answers it."""
    if message.get("type") != PIPELINE_STOP:
        logger.error("pipeline: a control message of unknown type %r was dropped",
                     message.get("type"))
        return
    policy = message.get("policy")
    if policy not in STOPPING:
        logger.error("pipeline: a stop with no known policy was dropped: %r", message)
        return
    if pipeline_tasks().stop(str(message.get("message_id", "")), policy):
        logger.info("pipeline: message %s stopped by a newer message (%s)",
                    message.get("message_id"), message.get("policy"))


def _release(slots: asyncio.Semaphore | None) -> None:
    if slots is not None:
        slots.release()


class PipelineWorker(Worker):
    """Channels' worker with back-pressure, a reaper and a clean stop (module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.capacity = max(int(settings.AGENTSITE_WORKER_CONCURRENCY), 1)
        self.slots: asyncio.Semaphore | None = None
        self.stopping: asyncio.Event | None = None

    async def handle(self) -> None:
        """Listen, reap and prune until asked to stop (or a listener fails); then drain."""
        self.slots = asyncio.Semaphore(self.capacity)
        self.stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        logger.info("pipeline worker %s: listening on %s, %d at a time", busy.worker_name(),
                    ", ".join(self.channels), self.capacity)
        listeners = [asyncio.ensure_future(self.listener(channel)) for channel in self.channels]
        reaping = asyncio.ensure_future(self.reap_forever())
        pruning = asyncio.ensure_future(self.prune_forever())
        controlling = asyncio.ensure_future(self.control_forever())
        stop = asyncio.ensure_future(self.stopping.wait())
        await asyncio.wait([*listeners, stop], return_when=asyncio.FIRST_COMPLETED)
        failed = [t for t in listeners if t.done() and not t.cancelled() and t.exception()]
        logger.info("pipeline worker %s: stopping; letting %d running message(s) finish",
                    busy.worker_name(), pipeline_tasks().running())
        others = (reaping, pruning, controlling, stop)
        for task in (*listeners, *others):
            task.cancel()
        await asyncio.gather(*listeners, *others, return_exceptions=True)
        try:
            await asyncio.wait_for(pipeline_tasks().drain(),
                                   timeout=settings.AGENTSITE_PIPELINE_TIMEOUT_S)
        except TimeoutError:
            logger.error("pipeline worker %s: stopped with messages still running",
                         busy.worker_name())
        if failed:  # e.g. Redis went away: exit non-zero so a supervisor restarts the worker
            raise failed[0].exception()

    async def listener(self, channel: str) -> None:
        """Take a message only when a slot is free (the slot goes with the message)."""
        assert self.slots is not None
        while True:
            await self.slots.acquire()
            try:
                message = await self.channel_layer.receive(channel)
            except BaseException:
                self.slots.release()
                raise
            scope = {"type": "channel", "channel": channel, "slots": self.slots}
            queue = self.get_or_create_application_instance(channel, scope)
            await queue.put(message)

    async def control_forever(self) -> None:
        """Stop the messages that newer ones interrupt (`answering.message_stop`), asked
        on this process's channel in the control group. The channel joins the group again
        every `CONTROL_REJOIN_S`, so the layer's group expiry never drops it; a layer that
        fails is tried again (meanwhile the heartbeat still stops them: `busy_stop`)."""
        channel = await self.channel_layer.new_channel("pipeline-control.")
        while True:
            try:
                await self.channel_layer.group_add(PIPELINE_CONTROL_GROUP, channel)
                async with asyncio.timeout(CONTROL_REJOIN_S):
                    while True:
                        _control(await self.channel_layer.receive(channel))
            except TimeoutError:
                continue
            except Exception:
                logger.exception("pipeline worker: the control channel failed; trying again")
                await asyncio.sleep(1)

    async def reap_forever(self) -> None:
        """Record messages of dead processes as failed, every third of the busy timeout."""
        interval = max(settings.AGENTSITE_BUSY_TIMEOUT_S / 3, 0.1)
        while True:
            try:
                count = await busy.busy_reap_and_publish(on_handed=handed_dispatch)
                await approvals_expire()  # paused by a process that may be gone
                if count:
                    logger.warning("pipeline worker %s: %d lost message(s) recorded as failed",
                                   busy.worker_name(), count)
            except Exception:
                logger.exception("pipeline worker: the reaper failed; trying again")
            await asyncio.sleep(interval)

    async def prune_forever(self) -> None:
        """A retention pass at start and every `AGENTSITE_RETENTION_INTERVAL_S`; 0: never.

        Every worker runs it: a pass deletes in small batches and a second one at the
        same time finds less to do, so no worker has to be the one.
        """
        interval = settings.AGENTSITE_RETENTION_INTERVAL_S
        if interval <= 0:
            return
        while True:
            try:
                report = await database_call(retention_run)()
                if report.deleted_anything:
                    logger.info(
                        "pipeline worker %s: retention deleted %d expired sessions, "
                        "%d conversations (%d messages), %d traces and %d chat events",
                        busy.worker_name(), report.sessions, report.conversations, report.messages,
                        report.traces, report.events)
            except Exception:
                logger.exception("pipeline worker: the retention pass failed; trying again "
                                 "in %g s", interval)
            await asyncio.sleep(interval)
