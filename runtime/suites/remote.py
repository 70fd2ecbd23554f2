"""Run suite steps against a running server over its REST API (`runtests --server URL`).

`RemoteTarget` is the `Target` of `runtime.suites.runner` for a server
somewhere else: every step is an HTTP call with a bearer token, and a sent
message is followed on the conversation's Server-Sent Events stream until its
`done` event (through its `approval` pauses, each decided as the step says with
POST /api/approvals/{id}), so the Outcome has the same shape as the in-process
one (the message's events, its `frame_trace`, then the controls and memory from
`/api/state`) and the same checks pass. Each suite's chat (`?chat=`) is a
conversation of the token's user on the server.

Every failure (server unreachable, a non-2xx answer, a message that failed
or never finished) is an `AgentError` whose text carries the server's own
JSON error message.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from runtime.conversations.actions import control_find
from runtime.errors import AgentError
from runtime.suites.checks import Outcome
from runtime.suites.decisions import decisions_follow, decisions_none_waiting
from runtime.suites.parser import Step

TIMEOUT_S = 30.0
EVENTS_TIMEOUT_S = 60
"""How long one message may take before its stream is closed (the server's `timeout`)."""


class RemoteTarget:
    """Runs steps on the server at `base_url` as the owner of `token`."""

    def __init__(self, base_url: str, token: str, *, client: httpx.Client | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.client = client or httpx.Client(
            base_url=self.base_url, headers=headers, timeout=TIMEOUT_S
        )
        self.chat = "main"

    def close(self) -> None:
        """Close the HTTP connections."""
        self.client.close()

    # --- the Target protocol ------------------------------------------------------------

    def open(self, *, chat: str, graph: str) -> None:
        """A fresh conversation `chat` on `graph`."""
        self.chat = chat
        self.request("POST", "/api/clear", scoped=True)
        self.request("POST", "/api/graph/switch", scoped=True, json={"graph": graph})

    def run(self, step: Step) -> Outcome:
        """Send, click, clear or switch graph; a message that waits for approval is decided
        as the step says (`> approve`, `> deny`: POST /api/approvals/{id})."""
        if step.action == "send":
            queued = self.request("POST", "/api/send", scoped=True, json={"text": step.argument})
            return self._await(queued, decisions=step.decisions)
        if step.action == "clear":
            self.request("POST", "/api/clear", scoped=True)
            return self._after([])
        if step.action == "graph":
            self.request("POST", "/api/graph/switch", scoped=True, json={"graph": step.argument})
            return self._after([])
        return self._click(step.argument, decisions=step.decisions)

    # --- the caller and its checks --------------------------------------------------------

    def whoami(self) -> dict[str, Any] | None:
        """The token's user (`{id, username, is_staff}`), None when nobody; AgentError if bad."""
        return self.request("GET", "/auth/config").get("user")

    def publish(self, event: dict[str, Any]) -> None:
        """Send one runner event to the server's `/ws/test` observers (staff only)."""
        self.request("POST", "/api/test/status", json=event)

    def request(
        self, method: str, path: str, *, scoped: bool = False, json: Any = None
    ) -> dict[str, Any]:
        """One API call's JSON answer; AgentError with the server's message if it failed."""
        params = {"chat": self.chat} if scoped else None
        try:
            response = self.client.request(method, path, params=params, json=json)
        except httpx.HTTPError as exc:
            raise AgentError(f"{method} {self.base_url}{path} failed: {_reason(exc)}") from exc
        _raise_for_status(response, method, path)
        try:
            return response.json()
        except ValueError:
            raise AgentError(
                f"{method} {self.base_url}{path} answered {response.status_code} with no JSON"
            ) from None

    # --- steps --------------------------------------------------------------------------

    def _click(self, which: str, *, decisions: tuple[str, ...] = ()) -> Outcome:
        control = control_find(self._state()["ui"]["controls"], which)
        if not control["machine"]:
            queued = self.request(
                "POST", "/api/action", scoped=True, json={"action": control["action"]}
            )
            return self._await(queued, decisions=decisions)
        self.request(
            "POST",
            "/api/action",
            scoped=True,
            json={"action": control["action"], "data": {"machine": control["machine"]}},
        )
        decisions_none_waiting(decisions)
        return self._after([])

    def _await(self, queued: dict[str, Any], *, decisions: tuple[str, ...] = ()) -> Outcome:
        """Read the message's events from the stream until its `done`; each time it waits
        for approval, decide it as the step says and read on from there."""
        message_id = queued["id"]
        seq = int(queued["after_seq"])

        def follow() -> list[dict[str, Any]]:
            nonlocal seq
            events, seq = self._follow(message_id, after_seq=seq)
            return events

        def decide(waiting: dict[str, Any], decision: str) -> list[dict[str, Any]]:
            self.request("POST", f"/api/approvals/{waiting['id']}", scoped=True,
                         json={"decision": decision})
            return follow()

        events = decisions_follow(decisions=decisions, events=follow(), decide=decide)
        return self._after(events, answer=events[-1].get("answer", ""), message_id=message_id)

    def _follow(self, message_id: str, *, after_seq: int) -> tuple[list[dict[str, Any]], int]:
        """The message's events after `after_seq` up to its `done` or its `approval` (it
        waits for a decision), and the last seq read."""
        events = []
        for seq, event in self._stream(after_seq=after_seq):
            after_seq = seq if seq is not None else after_seq
            if event.get("message_id") not in (message_id, None, ""):
                continue  # another message of the conversation
            if event.get("type") == "error" and event.get("message_id") == message_id:
                raise AgentError(
                    f"the server failed message {message_id}: {event.get('message', event)}"
                )
            events.append(event)
            if event.get("type") in ("done", "approval") and event.get("message_id") == message_id:
                return events, after_seq
        raise AgentError(
            f"message {message_id} did not finish within {EVENTS_TIMEOUT_S} s on the server"
        )

    def _stream(self, *, after_seq: int):
        """The conversation's events after `after_seq`, as (seq, the event without its seq)."""
        path = "/api/events"
        params = {"chat": self.chat, "after_seq": after_seq, "timeout": EVENTS_TIMEOUT_S}
        try:
            with self.client.stream("GET", path, params=params) as response:
                if response.status_code >= 300:
                    response.read()
                    _raise_for_status(response, "GET", path)
                data: list[str] = []
                for line in response.iter_lines():
                    if line.startswith("data:"):
                        data.append(line[5:].removeprefix(" "))
                    elif line == "" and data:
                        event = json.loads("\n".join(data))
                        data = []
                        seq = event.pop("seq", None)
                        yield (int(seq) if seq is not None else None), event
                    # `id:`, `retry:` and `: keep-alive` comments carry nothing we need
        except httpx.HTTPError as exc:
            raise AgentError(f"GET {self.base_url}{path} failed: {_reason(exc)}") from exc

    def _state(self) -> dict[str, Any]:
        return self.request("GET", "/api/state", scoped=True)

    def _after(
        self, events: list[dict[str, Any]], answer: str = "", message_id: str = ""
    ) -> Outcome:
        state = self._state()
        trace = next((e for e in events if e.get("type") == "frame_trace"), None)
        return Outcome(
            answer=answer,
            events=tuple(events),
            trace=trace,
            controls=tuple(state["ui"]["controls"]),
            memory=dict(state["memory"]),
            message_id=message_id,
        )


def _reason(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect ({exc})"
    if isinstance(exc, httpx.TimeoutException):
        return f"no answer within {TIMEOUT_S:g} s ({type(exc).__name__})"
    return f"{type(exc).__name__}: {exc}"


def _raise_for_status(response: httpx.Response, method: str, path: str) -> None:
    if response.status_code < 300:
        return
    try:
        error = response.json()["error"]
        message = f"{error['message']} ({error['code']})"
    except (ValueError, KeyError, TypeError):
        message = response.text[:300].strip() or response.reason_phrase
    raise AgentError(f"{method} {path} answered {response.status_code}: {message}")
