"""Processes: long tool runs (queries) with a pid, progress, and cancellation.

A process row is the shared truth about a run, so a `cancel_process` can come
from any web process or worker: the runner polls its row while the work runs
in a thread, and on a cancel request stops the work through its QueryHandle.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from typing import Any, TypeVar

from django.db import transaction
from django.utils import timezone

from runtime.conversations.dbcalls import database_call
from runtime.conversations.models import Process
from runtime.domain.database import QueryHandle
from runtime.errors import AgentError, QueryCancelled

T = TypeVar("T")
POLL_S = 0.05


class ProcessNotFound(AgentError):
    """No running process with that pid in the caller's conversation."""

    code = "not_found"


def process_start(*, conversation_id: int, message_id: str, node: str, description: str
                  ) -> str:
    """Record a new running process; return its pid."""
    pid = "p" + secrets.token_hex(6)
    Process.objects.create(pid=pid, conversation_id=conversation_id, message_id=message_id,
                           node=node, description=description[:2000])
    return pid


def process_finish(*, pid: str, status: str, detail: str = "") -> None:
    """Record how a process ended."""
    Process.objects.filter(pid=pid).update(status=status, detail=detail[:2000],
                                           ended_at=timezone.now())


def process_cancel_requested(*, pid: str) -> bool:
    """Whether someone asked to cancel the process."""
    return Process.objects.filter(pid=pid, cancel_requested=True).exists()


@transaction.atomic
def process_cancel(*, conversation_id: int, pid: str) -> Process:
    """Ask a running process of this conversation to stop (it stops within a poll interval).

    Raises ProcessNotFound when the pid is unknown, belongs to another
    conversation, or has already ended.
    """
    process = (Process.objects.select_for_update()
               .filter(pid=pid, conversation_id=conversation_id).first())
    if process is None:
        raise ProcessNotFound(f"no process {pid!r} in this conversation")
    if process.status != Process.Status.RUNNING:
        raise ProcessNotFound(f"process {pid} has already ended ({process.status})")
    process.cancel_requested = True
    process.save(update_fields=["cancel_requested"])
    return process


async def process_run(
    *, conversation_id: int, message_id: str, node: str, description: str,
    work: Callable[[QueryHandle], T], on_start: Callable[[str], Any] | None = None,
    on_tick: Callable[[str, float], Any] | None = None, tick_s: float = 1.0,
) -> tuple[str, T]:
    """Run `work(handle)` in a thread as a process; return (pid, its result).

    `on_start(pid)` is awaited once the process exists; `on_tick(pid, elapsed_s)`
    every `tick_s` seconds while it runs, so a long query shows progress.

    Raises QueryCancelled if the process was cancelled (by `process_cancel` or
    because the calling task was cancelled), and whatever `work` raised
    otherwise; the process row records the outcome either way.
    """
    pid = await database_call(process_start)(
        conversation_id=conversation_id, message_id=message_id, node=node,
        description=description)
    if on_start is not None:
        await on_start(pid)
    handle = QueryHandle()
    loop = asyncio.get_running_loop()
    started = next_tick = loop.time()
    task = asyncio.ensure_future(asyncio.to_thread(work, handle))
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=POLL_S)
            if done:
                break
            if on_tick is not None and loop.time() - next_tick >= tick_s:
                next_tick = loop.time()
                await on_tick(pid, next_tick - started)
            if await database_call(process_cancel_requested)(pid=pid):
                handle.cancel()
                await asyncio.wait({task})
                break
        result = task.result()
    except QueryCancelled:
        await database_call(process_finish)(pid=pid, status=Process.Status.CANCELLED,
                                                     detail="cancelled by request")
        raise
    except asyncio.CancelledError:
        # The message itself was cancelled: stop the query too, then record it.
        handle.cancel()
        await asyncio.wait({task})
        if not task.cancelled():
            task.exception()  # the work's own ending (QueryCancelled) is superseded by ours
        await database_call(process_finish)(pid=pid, status=Process.Status.CANCELLED,
                                                     detail="the message was cancelled")
        raise
    except Exception as exc:
        await database_call(process_finish)(pid=pid, status=Process.Status.FAILED,
                                                     detail=str(exc))
        raise
    await database_call(process_finish)(pid=pid, status=Process.Status.DONE)
    return pid, result
