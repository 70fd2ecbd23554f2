"""`manage.py bench`: messages per second and engine overhead per frame, per v3 path.

Every message goes through the real pipeline (busy flag, situation, engine,
history and trace stored in the database) with the builtin model at zero
latency, so what is measured is the engine and the database, not a model.
Each path runs in its own conversation owned by a fresh `bench-<path>-<n>`
user; those users (and, by cascade, their conversations and traces) are
deleted at the end. It only prints figures: nothing here asserts on time.
"""

from __future__ import annotations

import asyncio
import json
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.test import override_settings

from graphs.selectors import graph_spec_get
from runtime.agent.builtin import BuiltinProvider
from runtime.conversations import actions
from runtime.conversations.owners import Owner, conversation_resolve
from runtime.conversations.turns import turn_run
from runtime.errors import AgentError
from runtime.wire import FrameTrace


@dataclass(frozen=True)
class BenchPath:
    """One path of the graph: its name, its expected frame count and messages that take it."""

    name: str
    frames: int
    messages: tuple[str, ...]


PATHS = (
    BenchPath("reflex", 2, ("hello", "thanks!", "my name is Ada")),
    BenchPath("director", 4, ("what is my name?", "give me a counter", "let's talk about cooking")),
    BenchPath("interpreter", 5, ("how many customers are there?", "how many projects are active?")),
)
LLM_LABEL = "builtin, 0 ms latency"


@dataclass(frozen=True)
class PathResult:
    """The figures of one path."""

    path: str
    frames: int
    trace_path: str
    messages: int
    wall_s: float
    msg_per_s: float
    median_ms_per_msg: float
    median_overhead_ms_per_frame: float
    p90_overhead_ms_per_frame: float


def overhead_per_frame(trace: FrameTrace) -> float:
    """The engine's own time per frame, in ms: each frame's wall time less its model time.

    A frame's nodes run concurrently, so its model time is its slowest node's
    (not the sum); the pipeline's database work before and after the frames
    is not part of it (it shows in ms/msg and msg/s).
    """
    total = 0.0
    for frame in range(1, trace.total_frames + 1):
        records = [r for r in trace.frames if r.frame == frame]
        wall = max(r.started_ms + r.duration_ms for r in records) - min(
            r.started_ms for r in records)
        model = max((r.llm_ms for r in records), default=0.0)
        total += max(wall - model, 0.0)
    return total / trace.total_frames


def p90(values: list[float]) -> float:
    """The 90th percentile (the value itself for a single sample)."""
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=10, method="inclusive")[-1]


class Command(BaseCommand):
    help = (
        "Benchmark the pipeline per path of the graph with the builtin model at zero "
        "latency: messages per second, median ms per message, and engine overhead per "
        "frame (trace time minus model time, per frame). Traces are stored as usual; the "
        "bench users and their conversations are deleted at the end."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--messages", type=int, default=200, help="counted messages per path (default 200)"
        )
        parser.add_argument(
            "--warmup",
            type=int,
            default=10,
            help="messages per path sent first and not counted (default 10)",
        )
        parser.add_argument(
            "--graph", default="v3-framed", help="the graph to run (default v3-framed)"
        )
        parser.add_argument(
            "--json", action="store_true", help="print one JSON object instead of the table"
        )
        ratios = parser.add_argument_group(
            "ratios", "--ratios compares agentsite with a peer, side by side in one run "
            "(interleaved rounds, medians): one line per figure (agentsite.bench_ratios)")
        ratios.add_argument("--ratios", action="store_true", help="run the comparisons instead")
        ratios.add_argument("--rounds", type=int, default=5,
                            help="interleaved rounds per comparison (default 5)")
        scaled = parser.add_argument_group(
            "scaled run", "--scaled starts Redis, PostgreSQL, daphne and pipeline workers on "
            "loopback and drives N conversations at once over WebSockets (agentsite.scaled_bench)")
        scaled.add_argument("--scaled", action="store_true", help="run the scaled bench instead")
        scaled.add_argument("--conversations", type=int, default=40,
                            help="conversations at once (default 40)")
        scaled.add_argument("--per-conversation", type=int, default=3,
                            help="messages each conversation sends, one after another "
                                 "(default 3)")
        scaled.add_argument("--latency-ms", type=float, default=100.0,
                            help="the builtin model's latency per call (default 100)")
        scaled.add_argument("--webs", type=int, default=2, help="daphne processes (default 2)")
        scaled.add_argument("--workers", type=int, default=2,
                            help="pipeline workers (default 2)")
        scaled.add_argument("--worker-concurrency", type=int, default=20,
                            help="messages a worker answers at once (default 20)")
        scaled.add_argument("--database-url", default="",
                            help="a PostgreSQL server role that may create databases (`make "
                                 "bench` prepares a local one and passes it)")

    def handle(self, *args, **options) -> None:
        if options["scaled"]:
            self._scaled(options)
            return
        if options["ratios"]:
            self._ratios(options)
            return
        messages, warmup, graph = options["messages"], options["warmup"], options["graph"]
        if messages < 1:
            raise CommandError("--messages must be at least 1")
        if warmup < 0:
            raise CommandError("--warmup must not be negative")
        try:
            graph_spec_get(name=graph)
        except AgentError as exc:
            raise CommandError(str(exc)) from exc

        users = self._create_users()
        try:
            # The bench measures throughput: its users' quotas (runtime.conversations.quotas,
            # whose daily tokens a message also meets) are off.
            with override_settings(AGENTSITE_USER_MESSAGES_PER_MINUTE=0,
                                   AGENTSITE_USER_CONCURRENT_MESSAGES=0,
                                   AGENTSITE_USER_TOKENS_PER_DAY=0):
                results = asyncio.run(
                    self._bench(users=users, graph=graph, messages=messages, warmup=warmup)
                )
        finally:
            self._progress("cleaning up the bench users, their conversations and traces")
            get_user_model().objects.filter(pk__in=[u.pk for u in users.values()]).delete()

        header = {
            "database": settings.DATABASES["default"]["ENGINE"],
            "llm": LLM_LABEL,
            "python": platform.python_version(),
            "graph": graph,
            "warmup": warmup,
        }
        if options["json"]:
            self.stdout.write(json.dumps({**header, "paths": [asdict(r) for r in results]}))
        else:
            self._print_table(header, results)

    def _ratios(self, options: dict[str, Any]) -> None:
        from agentsite.bench_ratios import run_ratios

        if options["rounds"] < 1:
            raise CommandError("--rounds must be at least 1")
        try:
            ratios = run_ratios(rounds=options["rounds"], progress=self._progress)
        except (OSError, RuntimeError) as exc:
            raise CommandError(f"the comparisons could not run: {exc}") from exc
        if options["json"]:
            self.stdout.write(json.dumps([asdict(r) for r in ratios]))
            return
        for ratio in ratios:
            self.stdout.write(ratio.line())

    def _scaled(self, options: dict[str, Any]) -> None:
        from agentsite.scaled_bench import run_scaled_bench

        server = options["database_url"]
        if not server:
            raise CommandError("the scaled bench needs a PostgreSQL server: --database-url "
                               "postgres://USER:PASSWORD@HOST:PORT/postgres (`make bench` "
                               "prepares a local one)")
        for name in ("conversations", "per_conversation", "webs", "workers",
                     "worker_concurrency"):
            if options[name] < 1:
                raise CommandError(f"--{name.replace('_', '-')} must be at least 1")
        if options["latency_ms"] < 0:
            raise CommandError("--latency-ms must not be negative")
        try:
            report = run_scaled_bench(
                database_server_url=server, conversations=options["conversations"],
                messages=options["per_conversation"], latency_ms=options["latency_ms"],
                webs=options["webs"], workers=options["workers"],
                concurrency=options["worker_concurrency"], progress=self._progress)
        except (OSError, RuntimeError) as exc:
            raise CommandError(f"the scaled bench could not run: {exc}") from exc
        if options["json"]:
            self.stdout.write(json.dumps({
                **{k: v for k, v in asdict(report).items() if k != "timings"},
                "throughput": report.throughput,
                "timings": [asdict(t) for t in report.timings]}))
        else:
            for line in report.lines():
                self.stdout.write(line)

    # -- setup ------------------------------------------------------------------------------

    def _create_users(self) -> dict[str, Any]:
        """A fresh user per path, `bench-<path>-<n>` with the first n for which none exists."""
        user_model = get_user_model()
        n = 1
        while user_model.objects.filter(
            username__in=[f"bench-{p.name}-{n}" for p in PATHS]
        ).exists():
            n += 1
        users = {}
        for path in PATHS:
            user = user_model(username=f"bench-{path.name}-{n}")
            user.set_unusable_password()
            user.save()
            users[path.name] = user
        return users

    # -- measuring --------------------------------------------------------------------------

    async def _bench(
        self, *, users: dict[str, Any], graph: str, messages: int, warmup: int
    ) -> list[PathResult]:
        llm = BuiltinProvider(latency_ms=0.0)
        results = []
        for path in PATHS:
            self._progress(
                f"{path.name}: {warmup} warm-up + {messages} messages "
                f"({path.frames} frames each expected)"
            )
            conversation = await database_sync_to_async(conversation_resolve)(
                owner=Owner(user=users[path.name]), chat="main"
            )
            await database_sync_to_async(actions.conversation_switch_graph)(
                conversation_id=conversation.id, graph_name=graph
            )
            for i in range(warmup):
                await self._send(conversation.id, path, path.messages[i % len(path.messages)], llm)
            traces = []
            t0 = time.perf_counter()
            for i in range(messages):
                traces.append(
                    await self._send(
                        conversation.id, path, path.messages[i % len(path.messages)], llm
                    )
                )
            wall_s = time.perf_counter() - t0
            overheads = [overhead_per_frame(t) for t in traces]
            results.append(
                PathResult(
                    path=path.name,
                    frames=path.frames,
                    trace_path=traces[0].path,
                    messages=messages,
                    wall_s=round(wall_s, 4),
                    msg_per_s=round(messages / wall_s, 2),
                    median_ms_per_msg=round(statistics.median(t.total_ms for t in traces), 3),
                    median_overhead_ms_per_frame=round(statistics.median(overheads), 3),
                    p90_overhead_ms_per_frame=round(p90(overheads), 3),
                )
            )
        return results

    async def _send(
        self, conversation_id: int, path: BenchPath, text: str, llm: BuiltinProvider
    ) -> FrameTrace:
        """One message through the pipeline; CommandError unless it took the expected path."""
        result = await turn_run(conversation_id=conversation_id, text=text, llm=llm)
        trace = result.trace
        if result.failed:
            raise CommandError(
                f"{path.name} path: the message {text!r} failed ({trace.error or result.answer}); "
                "no figures are reported"
            )
        if trace.total_frames != path.frames:
            raise CommandError(
                f"{path.name} path: the message {text!r} ran {trace.total_frames} frames "
                f"({trace.path}) on graph {trace.graph!r}, expected {path.frames}; the bench "
                "would measure the wrong path, so no figures are reported"
            )
        return trace

    # -- output -----------------------------------------------------------------------------

    def _progress(self, text: str) -> None:
        self.stderr.write(f"bench: {text}", style_func=lambda s: s)

    def _print_table(self, header: dict[str, Any], results: list[PathResult]) -> None:
        self.stdout.write(
            f"graph {header['graph']} | database {header['database']} | "
            f"LLM {header['llm']} | Python {header['python']} "
            f"({sys.implementation.name}) | warm-up {header['warmup']}/path"
        )
        columns = (
            "path",
            "frames",
            "messages",
            "msg/s",
            "median ms/msg",
            "median overhead ms/frame",
            "p90 overhead ms/frame",
        )
        rows = [
            (
                r.path,
                str(r.frames),
                str(r.messages),
                f"{r.msg_per_s:.1f}",
                f"{r.median_ms_per_msg:.2f}",
                f"{r.median_overhead_ms_per_frame:.3f}",
                f"{r.p90_overhead_ms_per_frame:.3f}",
            )
            for r in results
        ]
        widths = [max(len(cell) for cell in column) for column in zip(columns, *rows, strict=True)]

        def line(cells: tuple[str, ...]) -> str:
            first = cells[0].ljust(widths[0])
            rest = (cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True))
            return "  ".join((first, *rest))

        self.stdout.write(line(columns))
        self.stdout.write("  ".join("-" * w for w in widths))
        for row in rows:
            self.stdout.write(line(row))
