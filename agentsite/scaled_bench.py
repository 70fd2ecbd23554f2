"""The scaled bench (`manage.py bench --scaled`): many conversations over WebSockets at once.

It starts the scaled site on loopback (agentsite.scaled: its own redis-server,
a fresh PostgreSQL database, daphne and pipeline workers), makes one user and
bearer token, and opens N conversations spread round-robin over the web
processes. Each sends M messages one after another (the next once the last is
`done`); all conversations run at once. The builtin model answers every call
after a fixed latency, so what is measured is the site around the model.

For every message it records the time from sending to the first streamed
delta and to `done`; it prints throughput and p50/p99 of both, failures, and
how the messages were shared between workers. It only prints figures.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from agentsite.scaled import ScaledSite, postgres_database, postgres_drop, scaled_site

QUESTIONS = ("how many customers are there?", "hello", "what is my name?")


@dataclass
class Timing:
    """One message: seconds from send to the first delta and to done."""

    first_delta: float | None
    done: float
    failed: bool


@dataclass
class BenchReport:
    """What the scaled bench measured."""

    conversations: int
    messages_per_conversation: int
    latency_ms: float
    webs: int
    workers: int
    wall_s: float
    timings: list[Timing] = field(default_factory=list)
    by_worker: dict[str, int] = field(default_factory=dict)

    @property
    def throughput(self) -> float:
        """Messages answered per second of wall time."""
        return len(self.timings) / self.wall_s if self.wall_s else 0.0

    def lines(self) -> list[str]:
        """The report, for a terminal."""
        first = [t.first_delta * 1000 for t in self.timings if t.first_delta is not None]
        done = [t.done * 1000 for t in self.timings]
        failed = sum(t.failed for t in self.timings)
        shares = ", ".join(f"{name} {count}" for name, count in sorted(self.by_worker.items()))
        return [
            f"scaled: {self.webs} daphne + {self.workers} worker{'s' * (self.workers != 1)}, "
            "Redis, PostgreSQL; "
            f"builtin model at {self.latency_ms:g} ms per call",
            f"{self.conversations} conversations at once x {self.messages_per_conversation} "
            f"messages = {len(self.timings)} messages in {self.wall_s:.1f} s: "
            f"{self.throughput:.1f} msg/s, {failed} failed",
            f"time to first delta: p50 {percentile(first, 50):.0f} ms, "
            f"p99 {percentile(first, 99):.0f} ms  ({len(first)} messages streamed)",
            f"time to done:        p50 {percentile(done, 50):.0f} ms, "
            f"p99 {percentile(done, 99):.0f} ms",
            f"answered by: {shares}",
        ]


def percentile(values: list[float], pct: int) -> float:
    """The `pct`th percentile (inclusive method); NaN for no values."""
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1]


async def _conversation(site: ScaledSite, token: str, n: int, messages: int) -> list[Timing]:
    import websockets

    web = site.webs[n % len(site.webs)]
    uri = f"{web.url.replace('http://', 'ws://')}/ws?chat=bench-{n}&token={token}"
    timings = []
    async with websockets.connect(uri, origin=web.url, max_queue=None) as socket:
        ready = json.loads(await socket.recv())
        if ready.get("type") != "ready":
            raise RuntimeError(f"conversation {n}: expected ready, got {ready}")
        for m in range(messages):
            sent = time.perf_counter()
            await socket.send(json.dumps({"type": "message",
                                          "text": QUESTIONS[(n + m) % len(QUESTIONS)]}))
            first = None
            while True:
                event = json.loads(await asyncio.wait_for(socket.recv(), 120))
                if event["type"] == "delta" and first is None:
                    first = time.perf_counter() - sent
                elif event["type"] == "error" and event.get("seq") is None:
                    raise RuntimeError(f"conversation {n}: {event['message']}")
                elif event["type"] == "done":
                    timings.append(Timing(first_delta=first, done=time.perf_counter() - sent,
                                          failed=event["failed"]))
                    break
    return timings


def run_scaled_bench(*, database_server_url: str, conversations: int, messages: int,
                     latency_ms: float, webs: int, workers: int, concurrency: int,
                     progress=print) -> BenchReport:
    """Start the scaled site, run the conversations, stop everything; the report."""
    name = f"agentsite_bench_{secrets.token_hex(4)}"
    database_url = postgres_database(database_server_url, name, fresh=True)
    env = {"BUILTIN_LLM_LATENCY_MS": f"{latency_ms:g}", "AGENTSITE_ALLOW_ANONYMOUS": "false",
           "AGENTSITE_WORKER_CONCURRENCY": str(concurrency),
           "DEBUG": "false", "SECRET_KEY": secrets.token_hex(16),
           "AGENTSITE_HTTPS": "false",  # plain http on loopback
           # One bench user sends every message: the bench measures throughput, so that
           # user's quotas (runtime.conversations.quotas) are off.
           "AGENTSITE_USER_MESSAGES_PER_MINUTE": "0", "AGENTSITE_USER_CONCURRENT_MESSAGES": "0",
           "AGENTSITE_USER_TOKENS_PER_DAY": "0"}
    try:
        with tempfile.TemporaryDirectory(prefix="agentsite-bench-") as folder:
            progress(f"starting Redis, {webs} daphne and {workers} workers on database {name}")
            with scaled_site(Path(folder), database_url=database_url, webs=webs,
                             workers=workers, env=env) as site:
                site.manage("shell", "-c", "from django.contrib.auth import get_user_model; "
                            "get_user_model().objects.create_user('bench')")
                token = site.manage("createtoken", "bench").strip()
                progress(f"{conversations} conversations x {messages} messages over "
                         "WebSockets...")

                async def everyone() -> list[list[Timing]]:
                    return await asyncio.gather(*(
                        _conversation(site, token, n, messages) for n in range(conversations)))

                started = time.perf_counter()
                results = asyncio.run(everyone())
                wall = time.perf_counter() - started
                workers_out = site.manage("shell", "-c", (
                    "from traces.models import MessageTrace as T; import json; "
                    "print(json.dumps(list(T.objects.values_list('worker', flat=True))))"))
                names = Counter(json.loads(workers_out.strip().splitlines()[-1]))
                by_worker = {}
                for worker_name, count in names.items():
                    proc = site.worker(worker_name)
                    by_worker[proc.name if proc else worker_name] = count
    finally:
        postgres_drop(database_server_url, name)
    return BenchReport(conversations=conversations, messages_per_conversation=messages,
                       latency_ms=latency_ms, webs=webs, workers=workers, wall_s=wall,
                       timings=[t for ts in results for t in ts], by_worker=by_worker)
