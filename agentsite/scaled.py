"""agentsite scaled out on one machine: Redis, PostgreSQL, several daphne, several workers.

`make run-scaled` runs `python -m agentsite.scaled` (PostgreSQL and
redis-server made ready by `deploy/services.sh`); the scaled integration test
and `manage.py bench --scaled` use `scaled_site()` directly. Every process is
a real one on loopback:

- `redis-server` on its own port (unless a `--redis-url` is given): the
  channel layer every process shares;
- a PostgreSQL database on the server at `--database-url` (created when
  missing; `fresh=True` starts from an empty one): the one database;
- N `daphne` processes (web: pages, sockets, REST) on consecutive ports;
- M `manage.py runworker pipeline` processes (the chat pipelines).

It configures other processes, so it builds their environment from its own
(minus any DATABASE_/REDIS_ settings) rather than reading Django settings.

The README's "Scaling out" maps the same processes onto several machines.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 60.0


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Proc:
    """One process of the site, with its log file."""

    name: str
    """e.g. web-1, worker-2, redis."""
    popen: subprocess.Popen
    """The process."""
    log: Path
    """Where its stdout and stderr go."""
    url: str = ""
    """A web process's base URL."""

    @property
    def pid(self) -> int:
        """Its process id."""
        return self.popen.pid

    def alive(self) -> bool:
        """Whether it still runs."""
        return self.popen.poll() is None

    def tail(self, chars: int = 3000) -> str:
        """The end of its log."""
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (a worker then lets running messages finish), SIGKILL after `timeout`."""
        if self.alive():
            self.popen.terminate()
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()

    def kill(self) -> None:
        """SIGKILL: the process dies at once, as in a crash."""
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait()


@dataclass
class ScaledSite:
    """A running scaled site."""

    env: dict[str, str]
    """The environment every process runs with (DATABASE_URL, REDIS_URL, ...)."""
    webs: list[Proc] = field(default_factory=list)
    """The daphne processes."""
    workers: list[Proc] = field(default_factory=list)
    """The pipeline workers."""
    redis: Proc | None = None
    """The private redis-server, when the site started one."""

    def manage(self, *args: str, timeout: float = 300) -> str:
        """Run `manage.py ARGS` against the site's database and layer; its stdout."""
        return manage(self.env, *args, timeout=timeout)

    def worker(self, name: str) -> Proc | None:
        """The worker a busy flag or trace names (`host:pid`), if it is one of ours."""
        pid = name.rpartition(":")[2]
        return next((w for w in self.workers if str(w.pid) == pid), None)


def manage(env: dict[str, str], *args: str, timeout: float = 300) -> str:
    """Run `manage.py ARGS` in a subprocess with `env`; its stdout (its stderr on failure)."""
    done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    if done.returncode:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def wait_until(check: Callable[[], bool], *, proc: Proc, what: str,
               timeout: float = START_TIMEOUT_S) -> None:
    """Poll `check` until true; fail with the process's log if it dies or time runs out."""
    deadline = time.monotonic() + timeout
    while not check():
        if not proc.alive() or time.monotonic() > deadline:
            state = "exited" if not proc.alive() else f"not ready after {timeout:g} s"
            raise RuntimeError(f"{proc.name} {state} ({what}):\n{proc.tail()}")
        time.sleep(0.1)


def http_ok(url: str) -> bool:
    """Whether GET `url` answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def database_url_for(server_url: str, name: str) -> str:
    """`server_url` pointing at database `name` instead."""
    parts = urlsplit(server_url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


def postgres_database(server_url: str, name: str, *, fresh: bool) -> str:
    """Make sure database `name` exists on the server (empty when `fresh`); its URL."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(server_url, autocommit=True) as admin:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if exists and fresh:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
        if fresh or not exists:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return database_url_for(server_url, name)


def postgres_drop(server_url: str, name: str) -> None:
    """Drop database `name` (closing its connections)."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                      .format(sql.Identifier(name)))


def _spawn(name: str, args: list[str], *, env: dict[str, str], folder: Path, url: str = ""
           ) -> Proc:
    log = folder / f"{name}.log"
    popen = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log.open("w"),
                             stderr=subprocess.STDOUT)
    return Proc(name=name, popen=popen, log=log, url=url)


def start_redis(folder: Path, port: int) -> tuple[Proc, str]:
    """A private redis-server on loopback (no persistence), ready for commands; and its URL."""
    import redis

    proc = _spawn("redis", ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                            "--appendonly", "no", "--dir", str(folder)],
                  env=dict(os.environ), folder=folder)

    def pong() -> bool:
        try:
            return bool(redis.Redis(port=port, socket_timeout=1).ping())
        except redis.RedisError:
            return False

    wait_until(pong, proc=proc, what="PING")
    return proc, f"redis://127.0.0.1:{port}/0"


def site_env(*, folder: Path, database_url: str, redis_url: str, extra: dict[str, str]
             ) -> dict[str, str]:
    """The environment of every process of the site."""
    inherited = {k: v for k, v in os.environ.items()
                 if not k.startswith(("DATABASE_", "REDIS_", "AGENTSITE_VAR_DIR"))}
    return {
        "DEBUG": "true",
        "LLM_PROVIDER": "builtin",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "STATIC_MANIFEST": "false",
        **inherited,
        "AGENTSITE_VAR_DIR": str(folder),
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "AGENTSITE_PIPELINE_WORKERS": "true",
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


@contextmanager
def scaled_site(folder: Path, *, database_url: str, redis_url: str = "", webs: int = 2,
                workers: int = 2, port: int = 0, env: dict[str, str] | None = None,
                demo: bool = False) -> Iterator[ScaledSite]:
    """Start the site's processes; stop them all on exit (workers first, gracefully).

    Args:
        folder: logs, collected static files and the demo `eras` database.
        database_url: the site's PostgreSQL database (migrated here).
        redis_url: a Redis to use; empty starts a private redis-server.
        webs, workers: how many daphne and pipeline-worker processes.
        port: the first web port (then +1, +2...); 0 picks free ports.
        env: more environment for every process (e.g. BUILTIN_LLM_LATENCY_MS).
        demo: also create the local admin and demo conversation (`make run-scaled`).
    """
    folder.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        redis_proc = None
        if not redis_url:
            redis_proc, redis_url = start_redis(folder, free_port())
            stack.callback(redis_proc.stop)
        site = ScaledSite(env=site_env(folder=folder, database_url=database_url,
                                       redis_url=redis_url, extra=env or {}), redis=redis_proc)
        site.manage("migrate", "--no-input", "-v", "0")
        site.manage("loadgraphs")
        site.manage("make_eras")
        if demo:
            site.manage("demodata")
            site.manage("collectstatic", "--noinput", "-v", "0")
        for n in range(1, webs + 1):
            web_port = port + n - 1 if port else free_port()
            web = _spawn(f"web-{n}", [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p",
                                      str(web_port), "agentsite.asgi:application"],
                         env=site.env, folder=folder, url=f"http://127.0.0.1:{web_port}")
            stack.callback(web.stop)
            site.webs.append(web)
        for n in range(1, workers + 1):
            worker = _spawn(f"worker-{n}", [sys.executable, "manage.py", "runworker", "pipeline"],
                            env=site.env, folder=folder)
            stack.callback(worker.stop)  # callbacks run last-in first-out: workers stop first
            site.workers.append(worker)
        for web in site.webs:
            wait_until(lambda web=web: http_ok(f"{web.url}/health"), proc=web, what="/health")
        for worker in site.workers:
            wait_until(lambda worker=worker: "listening on pipeline" in worker.tail(),
                       proc=worker, what="listening")
        yield site


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """`python -m agentsite.scaled`: run the scaled site until Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m agentsite.scaled", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default="",
                        help="a PostgreSQL server URL with a role that may create databases")
    parser.add_argument("--database", default="agentsite_scaled",
                        help="the database to use on that server (made when missing)")
    parser.add_argument("--redis-url", default="", help="a Redis to use (default: start one)")
    parser.add_argument("--webs", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--port", type=int, default=8000, help="the first web port")
    parser.add_argument("--folder", type=Path, default=ROOT / "var" / "scaled")
    args = parser.parse_args(argv)
    if not args.database_url:
        parser.error("give --database-url postgres://USER:PASSWORD@HOST:PORT/postgres "
                     "(`make run-scaled` prepares a local server and passes it)")
    if args.webs < 1 or args.workers < 1:
        parser.error("--webs and --workers must be at least 1")
    database_url = postgres_database(args.database_url, args.database, fresh=False)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        with scaled_site(args.folder, database_url=database_url, redis_url=args.redis_url,
                         webs=args.webs, workers=args.workers, port=args.port,
                         demo=True) as site:
            print("\n  agentsite, scaled out on loopback:")
            for web in site.webs:
                print(f"    {web.name}: {web.url}/   (pid {web.pid})")
            for worker in site.workers:
                print(f"    {worker.name}: runworker pipeline   (pid {worker.pid})")
            print(f"    database: {args.database} on {urlsplit(database_url).hostname}")
            print(f"    redis: {site.env['REDIS_URL']}")
            print(f"    logs: {args.folder}/*.log")
            print("  admin: user admin, password admin (local development only)")
            print("  Ctrl-C stops everything.\n", flush=True)
            while all(p.alive() for p in site.webs + site.workers):
                time.sleep(0.5)
            dead = [p for p in site.webs + site.workers if not p.alive()]
            for proc in dead:
                print(f"{proc.name} exited:\n{proc.tail()}", file=sys.stderr)
            return 1
    except KeyboardInterrupt:
        print("\nstopping (workers finish their running messages first)...", flush=True)
        return 0


if __name__ == "__main__":
    sys.exit(main())
