"""`manage.py bench --ratios`: agentsite beside a peer, each figure in one line.

Every comparison runs both sides in the same process and the same run,
interleaved round by round (A, B, A, B...), and reports the median of the
rounds, so the shared machine's noise falls on both alike. Lines read
`ratio NAME: X.XX (agentsite A unit / peer B unit)`:

- `engine-per-node`: the frame engine alone, a chain of do-nothing nodes, per
  node, against a LangGraph `StateGraph` chain of the same shape;
- `full-path`: one 5-frame message through `message_submit` (busy flag,
  situation, engine, builtin model at 0 ms, turn, trace and event log stored
  in this site's database) against a 5-node LangGraph chain persisting every
  step with its `AsyncSqliteSaver` (a SQLite file);
- `crowd-N`: N conversations at once, 3 messages each, the model taking
  100 ms a call, as a multiple of one conversation's time (lower is better,
  1.00 is perfect), against LangGraph doing the same with its checkpointer;
- `first-delta`: what the framework adds between the model handing over its
  first token and the chat socket sending it (in process, in-memory channel
  layer), p50 and p99;
- `ws-reflex` and `burst-500` come from one real daphne (agentsite.bench_live).

LangGraph is a bench dependency (`pip install -e '.[bench]'`, which `make
bench` runs). Nothing here asserts on time.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.test import override_settings
from django.utils import timezone

from graphs.spec import EdgeSpec, GraphSpec, NodeSpec
from runtime.agent.builtin import BuiltinProvider
from runtime.conversations.answering import message_submit
from runtime.conversations.owners import Owner, conversation_resolve
from runtime.engine.loop import run_graph
from runtime.engine.node import EngineEnv, Node, NodeContext, NodeResult, Turn
from runtime.wire import discard

CROWD_MESSAGES = 3
CROWD_LATENCY_MS = 100.0
FULL_PATH_TEXT = "how many customers are there?"  # 5 frames on v3-framed
CHAIN_NODES = 5


@dataclass(frozen=True)
class Ratio:
    """One figure: agentsite's value beside the peer's."""

    name: str
    """e.g. `full-path`."""
    ratio: float
    """What the line leads with (usually agentsite / peer)."""
    ours: str
    """agentsite's figure, with its unit."""
    theirs: str
    """The peer's figure, with its unit."""

    def line(self) -> str:
        """`ratio NAME: X.XX (agentsite A unit / peer B unit)`."""
        return f"ratio {self.name}: {self.ratio:.2f} (agentsite {self.ours} / {self.theirs})"


class PassNode(Node):
    """A node that does nothing (the engine's own cost is what is measured)."""

    async def run(self, ctx: NodeContext) -> NodeResult:
        """Nothing."""
        return NodeResult(output={})


def _require_langgraph() -> None:
    try:
        import langgraph  # noqa: F401
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver  # noqa: F401
    except ImportError as exc:
        raise RuntimeError("the ratios need LangGraph: pip install -e '.[bench]' (`make bench` "
                           "does)") from exc


async def _interleaved(sides: list[Callable[[], Awaitable[float]]], rounds: int
                       ) -> list[float]:
    """Run each side once per round, in turn; the median of each side's results."""
    results: list[list[float]] = [[] for _ in sides]
    for _ in range(rounds):
        for n, side in enumerate(sides):
            results[n].append(await side())
    return [statistics.median(r) for r in results]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f} ms"


# -- engine-per-node -------------------------------------------------------------------


def _chain_spec(nodes: int) -> GraphSpec:
    ids = ["input", *(f"n{i}" for i in range(1, nodes))]
    return GraphSpec(
        name="bench-chain", description="",
        nodes=tuple(NodeSpec(id=i, type="input" if i == "input" else "bench_pass", config={})
                    for i in ids),
        edges=tuple(EdgeSpec(source=a, target=b, condition="") for a, b in zip(ids, ids[1:], strict=False)))


class _State(TypedDict, total=False):
    messages: list[str]


def _langgraph_chain(steps: list[Callable[[_State], Any]], checkpointer: Any = None) -> Any:
    """A compiled LangGraph chain START > n0 > n1 ... > END running `steps`."""
    from langgraph.graph import END, START, StateGraph

    builder = StateGraph(_State)
    names = [f"n{i}" for i in range(len(steps))]
    for name, step in zip(names, steps, strict=True):
        builder.add_node(name, step)
    for a, b in zip([START, *names], [*names, END], strict=True):
        builder.add_edge(a, b)
    return builder.compile(checkpointer=checkpointer)


async def engine_per_node(*, rounds: int, runs: int) -> Ratio:
    """The frame engine alone against a LangGraph chain, per node."""
    spec = _chain_spec(CHAIN_NODES)
    env = EngineEnv(llm=BuiltinProvider(), on_hud=discard, on_delta=discard,
                    database=lambda: None, clock=time.perf_counter, frame_limit=CHAIN_NODES + 2)
    turn = Turn(conversation_id=0, message_id="bench", message="hi", graph=spec, history=(),
                memory={}, ui={}, now=timezone.now())
    chain = _langgraph_chain([lambda state: {}] * CHAIN_NODES)

    async def ours() -> float:
        t0 = time.perf_counter()
        for _ in range(runs):
            result = await run_graph(turn=turn, env=env)
        if result.status != "done" or len(result.frames) != CHAIN_NODES:
            raise RuntimeError(f"the do-nothing chain did not run whole: {result.error}")
        return (time.perf_counter() - t0) / runs / CHAIN_NODES

    async def theirs() -> float:
        t0 = time.perf_counter()
        for _ in range(runs):
            await chain.ainvoke({"messages": []})
        return (time.perf_counter() - t0) / runs / CHAIN_NODES

    types = {"input": "agentsite.bench_ratios.PassNode",
             "bench_pass": "agentsite.bench_ratios.PassNode"}
    with override_settings(AGENTSITE_NODE_TYPES=types):
        a, b = await _interleaved([ours, theirs], rounds)
    return Ratio("engine-per-node", a / b, f"{_ms(a)}/node", f"langgraph {_ms(b)}/node")


# -- full-path and crowd: our whole message path against LangGraph with its checkpointer --


def bench_conversations(count: int, *, label: str) -> tuple[list[int], Callable[[], None]]:
    """`count` conversations of fresh users on the default graph, and how to delete them."""
    model = get_user_model()
    stamp = f"{label}-{time.time_ns()}"
    users = [model(username=f"bench-{stamp}-{n}") for n in range(count)]
    for user in users:
        user.set_unusable_password()
    model.objects.bulk_create(users)
    users = list(model.objects.filter(username__startswith=f"bench-{stamp}-"))
    ids = [conversation_resolve(owner=Owner(user=user)).id for user in users]
    return ids, lambda: model.objects.filter(username__startswith=f"bench-{stamp}-").delete()


async def _our_message(conversation_id: int, text: str) -> None:
    await message_submit(conversation_id=conversation_id, text=text, inline=True)


def _peer_step(n: int, nodes: int, latency_s: float) -> Callable[[_State], Any]:
    async def step(state: _State) -> _State:
        if latency_s and n == nodes - 1:
            await asyncio.sleep(latency_s)  # the model call
        if n in (0, nodes - 1):
            return {"messages": [*state.get("messages", []), f"step {n}"]}
        return {}
    return step


class _PeerChain:
    """A LangGraph chain whose nodes persist every step in a SQLite file (AsyncSqliteSaver)."""

    def __init__(self, folder: Path, *, nodes: int, latency_s: float = 0.0) -> None:
        self.path = str(folder / f"langgraph-{nodes}-{latency_s}.sqlite")
        self.nodes, self.latency_s = nodes, latency_s

    async def __aenter__(self) -> _PeerChain:
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        self._saver_cm = AsyncSqliteSaver.from_conn_string(self.path)
        saver = await self._saver_cm.__aenter__()
        self.graph = _langgraph_chain(
            [_peer_step(n, self.nodes, self.latency_s) for n in range(self.nodes)], saver)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._saver_cm.__aexit__(*exc)

    async def message(self, thread: str, text: str) -> None:
        await self.graph.ainvoke({"messages": [text]}, {"configurable": {"thread_id": thread}})


async def full_path(*, conversation_id: int, folder: Path, rounds: int, messages: int) -> Ratio:
    """One 5-frame message, stored, against a 5-node LangGraph chain with its checkpointer."""
    async with _PeerChain(folder, nodes=5) as peer:
        async def ours() -> float:
            t0 = time.perf_counter()
            for _ in range(messages):
                await _our_message(conversation_id, FULL_PATH_TEXT)
            return (time.perf_counter() - t0) / messages

        async def theirs() -> float:
            t0 = time.perf_counter()
            for _ in range(messages):
                await peer.message("full-path", FULL_PATH_TEXT)
            return (time.perf_counter() - t0) / messages

        with override_settings(BUILTIN_LLM_LATENCY_MS=0.0):
            await ours()  # warm up both (graph cache, connections)
            await theirs()
            a, b = await _interleaved([ours, theirs], rounds)
    return Ratio("full-path", a / b, f"{_ms(a)}/msg", f"langgraph+sqlite {_ms(b)}/msg")


async def crowd(*, sizes: tuple[int, ...], conversations: list[int], folder: Path,
                rounds: int, progress: Callable[[str], None]) -> list[Ratio]:
    """N conversations at once, 3 messages each, 100 ms per model call: time / one's time."""
    latency = CROWD_LATENCY_MS / 1000

    async def ours(n: int) -> float:
        async def one(conversation_id: int) -> None:
            for _ in range(CROWD_MESSAGES):
                await _our_message(conversation_id, "hello")
        t0 = time.perf_counter()
        await asyncio.gather(*(one(c) for c in conversations[:n]))
        return time.perf_counter() - t0

    ratios = []
    async with _PeerChain(folder, nodes=2, latency_s=latency) as peer:
        async def theirs(n: int) -> float:
            async def one(thread: str) -> None:
                for _ in range(CROWD_MESSAGES):
                    await peer.message(thread, "hello")
            t0 = time.perf_counter()
            await asyncio.gather(*(one(f"crowd-{n}-{i}-{time.time_ns()}") for i in range(n)))
            return time.perf_counter() - t0

        with override_settings(BUILTIN_LLM_LATENCY_MS=CROWD_LATENCY_MS):
            for size in sizes:
                progress(f"crowd-{size}: {rounds} rounds, interleaved with LangGraph")
                one_a, one_b, all_a, all_b = await _interleaved(
                    [lambda: ours(1), lambda: theirs(1),
                     lambda s=size: ours(s), lambda s=size: theirs(s)], rounds)
                ratios.append(Ratio(
                    f"crowd-{size}", all_a / one_a, f"{all_a:.2f} s / one {one_a:.2f} s",
                    f"langgraph+sqlite {all_b / one_b:.2f} = {all_b:.2f} s / one {one_b:.2f} s"))
    return ratios


# -- first-delta: from the model's first token to the chat socket ------------------------

FIRST_TOKEN_S = 0.02
STAMP = "\u23f1"
"""Marks a first token that carries the time the model handed it over."""


class StampedProvider(BuiltinProvider):
    """The builtin model, whose first streamed piece carries `time.perf_counter()`.

    Like a model behind a network, its stream's tokens arrive `FIRST_TOKEN_S` after
    the call, while the frame's other nodes wait on theirs: the builtin model computes
    in this process, and its work for other nodes is not what the framework adds.
    """

    name = "bench-stamped"

    async def stream(self, request: Any, on_delta: Callable[[str], Awaitable[None]]) -> Any:
        """The builtin answer, its first piece stamped the moment it is handed over."""
        pieces: list[str] = []

        async def collect(piece: str) -> None:
            pieces.append(piece)

        completion = await super().stream(request, collect)
        await asyncio.sleep(FIRST_TOKEN_S)
        for n, piece in enumerate(pieces):
            await on_delta(f"{STAMP}{time.perf_counter():.9f}{STAMP}{piece}" if n == 0
                           else piece)
        return completion


async def first_delta(*, messages: int) -> Ratio:
    """Over a chat socket in this process (in-memory layer): ms from the model's first
    token to the socket sending it, p50 and p99."""
    from channels.testing import WebsocketCommunicator

    from agentsite.asgi import application
    from runtime.api.auth import token_create

    model = get_user_model()
    user = await sync_to_async(model.objects.create_user)(f"bench-delta-{time.time_ns()}")
    _, raw = await sync_to_async(token_create)(user=user, name="bench")
    added: list[float] = []
    providers = {"bench-stamped": "agentsite.bench_ratios.StampedProvider"}
    try:
        with override_settings(AGENTSITE_LLM_PROVIDERS=providers, LLM_PROVIDER="bench-stamped",
                               BUILTIN_LLM_LATENCY_MS=0.0):
            socket = WebsocketCommunicator(application, "/ws?chat=bench-delta", headers=[
                (b"authorization", f"Bearer {raw}".encode())])
            if not (await socket.connect())[0]:
                raise RuntimeError("the chat socket refused the bench's token")
            await socket.receive_json_from()  # ready
            for _ in range(messages):
                await socket.send_json_to({"type": "message", "text": "hello"})
                while (event := await socket.receive_json_from(timeout=30))["type"] != "done":
                    if event["type"] == "delta" and event["text"].startswith(STAMP):
                        added.append(time.perf_counter() - float(event["text"].split(STAMP)[1]))
            await socket.disconnect()
    finally:
        await sync_to_async(user.delete)()
    if len(added) != messages:
        raise RuntimeError(f"{len(added)} stamped first deltas came back for {messages} messages")
    p50 = statistics.median(added)
    p99 = statistics.quantiles(added, n=100, method="inclusive")[98]
    return Ratio("first-delta", p50 * 1000, f"p50 {_ms(p50)}", f"p99 {_ms(p99)}")


# -- all of them ---------------------------------------------------------------------------

CROWDS = (20, 100, 500)


def run_ratios(*, rounds: int = 5, progress: Callable[[str], None] = print) -> list[Ratio]:
    """Every figure, in order; the in-process ones in this site's database (DEBUG off)."""
    from agentsite.bench_live import run_live_bench

    _require_langgraph()
    ratios: list[Ratio] = []
    conversations, cleanup = bench_conversations(max(CROWDS), label="ratios")
    try:
        # Benches measure throughput: quotas (runtime.conversations.quotas) are off, as a
        # crowd of messages from few users would meet them.
        with override_settings(DEBUG=False, AGENTSITE_USER_MESSAGES_PER_MINUTE=0,
                               AGENTSITE_USER_CONCURRENT_MESSAGES=0,
                               AGENTSITE_USER_TOKENS_PER_DAY=0), \
                tempfile.TemporaryDirectory() as folder:
            progress("engine-per-node: a 5-node chain of do-nothing nodes, against LangGraph")
            ratios.append(asyncio.run(engine_per_node(rounds=rounds, runs=300)))
            progress("full-path: a 5-frame message stored, against LangGraph + AsyncSqliteSaver")
            ratios.append(asyncio.run(full_path(conversation_id=conversations[0],
                                                folder=Path(folder), rounds=rounds, messages=30)))
            ratios.extend(asyncio.run(crowd(sizes=CROWDS, conversations=conversations,
                                            folder=Path(folder), rounds=rounds,
                                            progress=progress)))
            progress("first-delta: 200 messages over a chat socket in this process")
            ratios.append(asyncio.run(first_delta(messages=200)))
    finally:
        cleanup()
    live = run_live_bench(rounds=rounds, progress=progress)
    for ws in live.ws_reflex:
        ratios.append(Ratio(f"ws-reflex-{ws.connections}", ws.agentsite_per_s / ws.echo_per_s,
                            f"{ws.agentsite_per_s:.1f} round trips/s",
                            f"echo consumer {ws.echo_per_s:.1f} round trips/s"))
    ratios.append(Ratio(f"burst-{live.burst.sockets}", live.burst.refused / live.burst.sockets,
                        f"{live.burst.refused} refused",
                        f"{live.burst.sockets} sockets, all answered in "
                        f"{live.burst.seconds:.2f} s"))
    return ratios
