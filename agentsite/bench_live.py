"""Live bench: what one real daphne serving this project does over WebSockets on loopback.

It starts ONE `daphne` process with `agentsite.bench_asgi:application` (the project's
application plus a bare echo socket at `/ws/echo`) in a temporary folder, on a fresh SQLite
database of its own: `make run`'s configuration (one daphne, SQLite, the builtin model, the
in-memory channel layer, no Redis), DEBUG off, plain http. The database is migrated, the
graphs loaded, the demo `eras` database built, one user and a bearer token made, as the
tests' live server does. It measures two figures, then stops daphne and removes the folder
(also on an error or Ctrl-C):

- ws-reflex, for 1 and for 20 connections: the sockets are opened first (chat sockets
  `/ws?chat=bench-ws-N` with the token, and as many echo sockets), each side is warmed up
  with a few round trips, then rounds alternate: one agentsite round, one echo round, and
  so on. In a round every connection loops send -> reply as fast as it can for
  `seconds_per_round`; the rate is completed round trips / elapsed seconds, all connections
  together. An agentsite round trip is `{"type":"message","text":"hello"}` (the 2-frame
  reflex path with the builtin model) until that message's `done`; an echo round trip sends
  the same text and gets it back. The median of the rounds is reported for each side, so
  the echo figure shows what daphne and Channels cost alone on this machine at this moment.
- burst: N sockets open at once (`/ws?chat=burst-N`, each a new conversation), each
  waiting for its `ready`, at the first try (no retry); a handshake that fails or a `ready`
  that does not come within the timeout counts as refused. All stay open until every one is
  done, then close. The wall time until the last one is done is reported.

It only returns figures (it asserts nothing about time): the machine may be shared and
noisy, so rounds are interleaved and medians are reported.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import secrets
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import websockets
from websockets.asyncio.client import ClientConnection

from agentsite.scaled import Proc, _spawn, free_port, http_ok, manage, wait_until

USERNAME = "bench"
CONNECTIONS = (1, 20)
"""The ws-reflex connection counts."""
WARMUP_TRIPS = 5
"""Round trips per connection and side before the first round (not counted)."""
TRIP_TIMEOUT_S = 60.0
"""A round trip that takes longer than this fails the bench."""
OPEN_TIMEOUT_S = 30.0
"""How long a socket may take to open, and then to bring its `ready`."""
ROUND_PAUSE_S = 0.2
"""A pause after every round, so what one round left running settles before the next."""
FD_HEADROOM = 1024
"""Open files a process needs besides its sockets."""
MESSAGE = json.dumps({"type": "message", "text": "hello"})
"""The frame both sides send: the reflex message (and the same text to the echo socket)."""

Trip = Callable[[ClientConnection], Awaitable[None]]


@dataclass(frozen=True)
class WsReflex:
    """Round trips per second over `connections` sockets, the site and a bare echo."""

    connections: int
    """1 or 20."""
    agentsite_per_s: float
    """Reflex round trips/s ("hello" -> its done), all connections together, median of rounds."""
    echo_per_s: float
    """Echo round trips/s (a frame -> it back), same connections, median of rounds."""


@dataclass(frozen=True)
class Burst:
    """Many sockets opened at once."""

    sockets: int
    """How many were opened."""
    refused: int
    """Those whose handshake failed or brought no `ready` in time, at the first try."""
    seconds: float
    """Wall time until every socket had its `ready` (or failed)."""


@dataclass(frozen=True)
class LiveFigures:
    """Everything the live bench measured."""

    ws_reflex: list[WsReflex]
    burst: Burst


@dataclass(frozen=True)
class _Site:
    """The running daphne: where its sockets are and the token to open them with."""

    ws_url: str
    """`ws://127.0.0.1:PORT`."""
    token: str
    """A bearer token of the bench user."""


def _site_env(folder: Path) -> dict[str, str]:
    """The daphne's environment: `make run`'s configuration on databases in `folder`."""
    inherited = {k: v for k, v in os.environ.items()
                 if not k.startswith(("LLM_", "BUILTIN_LLM_", "REDIS_", "DATABASE_", "ERAS_",
                                      "OIDC_", "AGENTSITE_"))}
    return {
        **inherited,
        "DEBUG": "false",
        "AGENTSITE_HTTPS": "false",  # plain http on loopback
        "SECRET_KEY": secrets.token_hex(16),
        "AGENTSITE_VAR_DIR": str(folder),
        "DATABASE_URL": f"sqlite:///{folder / 'agentsite.sqlite3'}",
        "ERAS_DATABASE_URL": f"sqlite:///{folder / 'eras.sqlite3'}",
        "AGENTSITE_ALLOW_ANONYMOUS": "false",
        # One bench user sends every message: the bench measures throughput, so that
        # user's quotas (runtime.conversations.quotas) are off.
        "AGENTSITE_USER_MESSAGES_PER_MINUTE": "0",
        "AGENTSITE_USER_CONCURRENT_MESSAGES": "0",
        "AGENTSITE_USER_TOKENS_PER_DAY": "0",
        "LLM_PROVIDER": "builtin",
        "BUILTIN_LLM_LATENCY_MS": "0",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "STATIC_MANIFEST": "false",
        "DJANGO_SUPERUSER_PASSWORD": secrets.token_urlsafe(16),
        "PYTHONUNBUFFERED": "1",
    }


def _prepare(env: dict[str, str]) -> str:
    """Migrate the fresh database, load the graphs, build `eras`, make the user; its token."""
    manage(env, "migrate", "--no-input", "-v", "0")
    manage(env, "loadgraphs")
    manage(env, "make_eras")
    manage(env, "createsuperuser", "--no-input", "--username", USERNAME,
           "--email", "bench@example.com")
    return manage(env, "createtoken", USERNAME).strip()


def _log_problems(proc: Proc) -> list[str]:
    """The lines of daphne's log that speak of an error, a warning or a traceback."""
    if not proc.log.exists():
        return []
    words = ("Traceback", "ERROR", "WARNING", "CRITICAL", "Exception")
    return [line for line in proc.log.read_text(errors="replace").splitlines()
            if any(word in line for word in words)]


@contextmanager
def _live_site(progress: Callable[[str], None]) -> Iterator[_Site]:
    """One daphne on a fresh database in a temporary folder; stopped and removed after."""
    with tempfile.TemporaryDirectory(prefix="agentsite-bench-live-") as name:
        folder = Path(name)
        env = _site_env(folder)
        progress("preparing a fresh SQLite database (migrate, loadgraphs, make_eras)")
        token = _prepare(env)
        port = free_port()
        proc = _spawn("daphne", [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p",
                                 str(port), "agentsite.bench_asgi:application"],
                      env=env, folder=folder, url=f"http://127.0.0.1:{port}")
        try:
            wait_until(lambda: http_ok(f"{proc.url}/health"), proc=proc, what="/health")
            progress(f"daphne (pid {proc.pid}) serves {proc.url}")
            yield _Site(ws_url=f"ws://127.0.0.1:{port}", token=token)
        finally:
            proc.stop()
            problems = _log_problems(proc)
            if problems:
                progress(f"daphne's log has {len(problems)} error/warning lines; "
                         f"the last: {problems[-1][:300]}")


async def _connect(site: _Site, path: str, *, auth: bool) -> ClientConnection:
    """Open one socket on `path` (with the bench token when `auth`)."""
    headers = {"Authorization": f"Bearer {site.token}"} if auth else None
    return await websockets.connect(site.ws_url + path, open_timeout=OPEN_TIMEOUT_S,
                                    additional_headers=headers)


async def _ready(socket: ClientConnection) -> None:
    """Wait for a chat socket's first frame; RuntimeError unless it is `ready`."""
    async with asyncio.timeout(OPEN_TIMEOUT_S):
        frame = json.loads(await socket.recv())
    if frame.get("type") != "ready":
        raise RuntimeError(f"a chat socket's first frame is not ready: {frame}")


async def _reflex_trip(socket: ClientConnection) -> None:
    """Send "hello" and wait for its `done` (skipping the other events); it must not fail."""
    await socket.send(MESSAGE)
    while True:
        event = json.loads(await socket.recv())
        if event["type"] == "error" and event.get("seq") is None:
            raise RuntimeError(f"agentsite refused the bench message: {event}")
        if event["type"] == "done":
            if event["failed"] is not False:
                raise RuntimeError(f"the bench message failed: {event.get('answer')!r}")
            return


async def _echo_trip(socket: ClientConnection) -> None:
    """Send the message frame to the echo socket and wait for it to come back."""
    await socket.send(MESSAGE)
    reply = await socket.recv()
    if reply != MESSAGE:
        raise RuntimeError(f"the echo socket sent back {reply!r}")


async def _trips(sockets: list[ClientConnection], trip: Trip, *, count: int) -> None:
    """`count` round trips on every socket, all sockets at once (a warm-up)."""
    async def loop(socket: ClientConnection) -> None:
        for _ in range(count):
            async with asyncio.timeout(TRIP_TIMEOUT_S):
                await trip(socket)

    await asyncio.gather(*(loop(socket) for socket in sockets))


async def _round(sockets: list[ClientConnection], trip: Trip, seconds: float) -> float:
    """Every socket loops round trips until `seconds` are over; completed trips per second."""
    started = time.perf_counter()
    deadline = started + seconds

    async def loop(socket: ClientConnection) -> int:
        done = 0
        while time.perf_counter() < deadline:
            async with asyncio.timeout(TRIP_TIMEOUT_S):
                await trip(socket)
            done += 1
        return done

    counts = await asyncio.gather(*(loop(socket) for socket in sockets))
    return sum(counts) / (time.perf_counter() - started)


async def _open_sockets(stack: AsyncExitStack, site: _Site, connections: int
                        ) -> tuple[list[ClientConnection], list[ClientConnection]]:
    """`connections` chat sockets (each its own chat, `ready` received) and as many echo
    sockets; all closed when `stack` closes."""
    chats, echoes = [], []
    for n in range(connections):
        chat = await _connect(site, f"/ws?chat=bench-ws-{n}", auth=True)
        stack.push_async_callback(chat.close)
        await _ready(chat)
        chats.append(chat)
        echo = await _connect(site, "/ws/echo", auth=False)
        stack.push_async_callback(echo.close)
        echoes.append(echo)
    return chats, echoes


async def _ws_reflex(site: _Site, connections: int, *, rounds: int, seconds: float,
                     progress: Callable[[str], None]) -> WsReflex:
    """The ws-reflex figure for `connections` sockets: interleaved rounds, medians."""
    async with AsyncExitStack() as stack:
        chats, echoes = await _open_sockets(stack, site, connections)
        await _trips(chats, _reflex_trip, count=WARMUP_TRIPS)
        await _trips(echoes, _echo_trip, count=WARMUP_TRIPS)
        agentsite: list[float] = []
        echo: list[float] = []
        for number in range(1, rounds + 1):
            progress(f"ws-reflex {connections} connections, round {number}/{rounds}")
            agentsite.append(await _round(chats, _reflex_trip, seconds))
            await asyncio.sleep(ROUND_PAUSE_S)
            echo.append(await _round(echoes, _echo_trip, seconds))
            await asyncio.sleep(ROUND_PAUSE_S)
            progress(f"  agentsite {agentsite[-1]:.1f}/s, echo {echo[-1]:.1f}/s")
    figure = WsReflex(connections=connections, agentsite_per_s=statistics.median(agentsite),
                      echo_per_s=statistics.median(echo))
    progress(f"ws-reflex {connections} connections: agentsite "
             f"{figure.agentsite_per_s:.1f}/s, echo {figure.echo_per_s:.1f}/s "
             f"(medians of {rounds} rounds)")
    return figure


async def _burst(site: _Site, sockets: int, progress: Callable[[str], None]) -> Burst:
    """Open `sockets` chat sockets at once, each waiting for `ready`, no retry; then close."""
    opened: list[ClientConnection] = []

    async def one(n: int) -> str:
        """Empty when its `ready` came, else why not."""
        try:
            socket = await _connect(site, f"/ws?chat=burst-{n}", auth=True)
        except Exception as exc:
            return f"handshake: {type(exc).__name__}"
        opened.append(socket)
        try:
            await _ready(socket)
        except Exception as exc:
            return f"ready: {type(exc).__name__}"
        return ""

    started = time.perf_counter()
    try:
        outcomes = await asyncio.gather(*(one(n) for n in range(sockets)))
        seconds = time.perf_counter() - started
    finally:
        await asyncio.gather(*(socket.close() for socket in opened), return_exceptions=True)
    reasons = Counter(outcome for outcome in outcomes if outcome)
    figure = Burst(sockets=sockets, refused=sum(reasons.values()), seconds=seconds)
    why = f" {dict(reasons)}" if reasons else ""
    progress(f"burst of {sockets} sockets: {figure.refused} refused{why}, "
             f"all done in {seconds:.2f} s")
    return figure


def _raise_open_files(needed: int) -> None:
    """Raise this process's soft open-files limit towards `needed` (at most the hard limit);
    daphne, started after, inherits it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def run_live_bench(*, rounds: int = 5, seconds_per_round: float = 3.0, burst: int = 500,
                   progress: Callable[[str], None] = print) -> LiveFigures:
    """Start one daphne on a fresh SQLite database, measure ws-reflex (1 and 20
    connections, agentsite vs a bare echo consumer) and a burst of `burst` sockets, stop it;
    the figures. `progress` is given a line at every step."""
    if rounds < 1 or seconds_per_round <= 0 or burst < 1:
        raise ValueError("rounds and burst must be at least 1, seconds_per_round above 0")
    _raise_open_files(burst + FD_HEADROOM)
    with _live_site(progress) as site:
        ws_reflex = [asyncio.run(_ws_reflex(site, connections, rounds=rounds,
                                            seconds=seconds_per_round, progress=progress))
                     for connections in CONNECTIONS]
        progress(f"burst of {burst} sockets at once")
        burst_figure = asyncio.run(_burst(site, burst, progress))
    return LiveFigures(ws_reflex=ws_reflex, burst=burst_figure)
