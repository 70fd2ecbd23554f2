"""Processes: a pid, progress while running, cancellation from anywhere, outcomes recorded."""

from __future__ import annotations

import asyncio
import threading
import uuid

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async

from runtime.conversations.models import Process
from runtime.conversations.processes import process_cancel, process_run
from runtime.errors import QueryCancelled


def run(conversation, work, **kwargs):
    """process_run from sync test code."""
    return async_to_sync(process_run)(
        conversation_id=conversation.id, message_id=str(uuid.uuid4()), node="eras",
        description="SELECT 1", work=work, **kwargs)


def test_process_reports_ticks_while_running(conversation):
    """A running process calls on_tick repeatedly with growing elapsed times, then finishes."""
    ticks: list[float] = []
    enough = threading.Event()

    async def on_tick(pid: str, elapsed: float) -> None:
        ticks.append(elapsed)
        if len(ticks) == 3:
            enough.set()

    def work(handle) -> str:
        assert enough.wait(timeout=30)
        return "rows"

    pid, result = run(conversation, work, on_tick=on_tick, tick_s=0.05)
    assert result == "rows"
    assert ticks == sorted(ticks) and len(ticks) >= 3
    assert Process.objects.get(pid=pid).status == "done"


def test_cancel_request_reaches_the_work(conversation):
    """process_cancel from elsewhere makes the runner cancel the work's handle."""
    pids: list[str] = []

    async def on_start(pid: str) -> None:
        pids.append(pid)
        await database_sync_to_async(process_cancel)(conversation_id=conversation.id, pid=pid)

    def work(handle) -> None:
        for _ in range(600):
            if handle.cancelled:
                raise QueryCancelled("query cancelled")
            threading.Event().wait(0.05)
        raise AssertionError("never cancelled")

    with pytest.raises(QueryCancelled):
        run(conversation, work, on_start=on_start)
    process = Process.objects.get(pid=pids[0])
    assert process.status == "cancelled" and process.cancel_requested


def test_failure_is_recorded(conversation):
    """Work that raises leaves the process failed with the reason."""
    def work(handle) -> None:
        raise ValueError("no such column: x")

    with pytest.raises(ValueError):
        run(conversation, work)
    process = Process.objects.get(conversation=conversation)
    assert process.status == "failed" and process.detail == "no such column: x"


def test_cancelling_the_message_cancels_the_process(conversation):
    """If the task running a process is cancelled, the work is stopped and recorded cancelled."""
    started = threading.Event()

    def work(handle) -> None:
        started.set()
        for _ in range(600):
            if handle.cancelled:
                raise QueryCancelled("query cancelled")
            threading.Event().wait(0.05)

    async def scenario() -> None:
        task = asyncio.ensure_future(process_run(
            conversation_id=conversation.id, message_id=str(uuid.uuid4()), node="eras",
            description="slow", work=work))
        while not started.is_set():
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    async_to_sync(scenario)()
    assert Process.objects.get(conversation=conversation).status == "cancelled"
