"""The REST API's one table of endpoints, and the OpenAPI 3.1 document built from it.

`runtime.api.urls` routes exactly these paths, `runtime.api.views` enforces their
methods, auth and request bodies from the same rows, and `/api/openapi.json`
is generated from them: the documentation cannot drift from what is served.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from graphs.config import DOUBLE_TEXTING_POLICIES
from runtime.conversations.owners import CHAT_NAME
from runtime.conversations.turns import MAX_MESSAGE_CHARS
from runtime.engine.approval import DECISIONS
from runtime.wire import TEST_EVENT_TYPES

PATH_PARAM = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class Param:
    """A query parameter: documented and checked (runtime.api.views) from the same row."""

    name: str
    """Its name in the query string."""
    type: str
    """Its JSON Schema type (`string`, `integer`, `number`)."""
    description: str
    """What it does, with its default."""
    required: bool = False
    """Whether a request without it is refused."""
    minimum: float | None = None
    """The smallest value accepted (numbers)."""
    maximum: float | None = None
    """The largest value accepted (numbers)."""
    exclusive_minimum: float | None = None
    """Values must be above this (numbers)."""
    default: Any = None
    """The value when it is absent."""
    pattern: str | None = None
    """A regular expression the whole value must match (strings)."""
    format: str | None = None
    """A JSON Schema format, e.g. `uuid`."""

    def schema(self) -> dict[str, Any]:
        """Its JSON Schema."""
        keywords = {"type": self.type, "minimum": self.minimum, "maximum": self.maximum,
                    "exclusiveMinimum": self.exclusive_minimum, "default": self.default,
                    "pattern": self.pattern, "format": self.format}
        return {key: value for key, value in keywords.items() if value is not None}


@dataclass(frozen=True)
class Operation:
    """One method of one path."""

    handler: str
    """The name of the handler function in `runtime.api.views`."""
    summary: str
    """One line for the documentation."""
    responses: dict[int, str]
    """Status codes and what each means."""
    auth: str = "caller"
    """`caller` (token, session or allowed anonymous), `staff`, or `none`."""
    scoped: bool = True
    """Whether it acts on the caller's conversation chosen by `?chat=`."""
    stores: bool = False
    """Whether it may store something: only then is a missing conversation (and an
    anonymous visitor's session) created; a read answers as for a new conversation."""
    body: dict[str, Any] | None = None
    """The JSON Schema of the request body (an object), if it takes one."""
    params: tuple[Param, ...] = ()
    """Query parameters besides `chat`."""
    path_params: tuple[Param, ...] = ()
    """Parameters in the path (`{name}`), each required."""
    content_type: str = "application/json"
    """The media type of its success response."""
    answer: dict[str, Any] | None = None
    """The JSON Schema of its success response's body, where documented."""


@dataclass(frozen=True)
class Route:
    """One path and its methods."""

    path: str
    """The URL path, from the site root."""
    name: str
    """The URL name (for `reverse`)."""
    operations: dict[str, Operation] = field(default_factory=dict)
    """Operations by HTTP method (upper case)."""


RESULT_EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "A query a data answer was read from (chat event `result`, before the "
                   "answer's `done`; runtime.wire.ResultEvent). What is shown is decided in "
                   "code (runtime.domain.results), never by the model.",
    "required": ["type", "message_id", "node", "sql", "columns", "rows", "row_count",
                 "capped", "cut", "shortened", "ms", "pid", "chart", "check"],
    "properties": {
        "type": {"const": "result"},
        "seq": {"type": "integer", "description": "Its number in the conversation's log."},
        "message_id": {"type": "string", "format": "uuid", "description": "The message."},
        "node": {"type": "string", "description": "The node that answered from it."},
        "sql": {"type": "string", "description": "The query as it ran."},
        "columns": {"type": "array", "items": {
            "type": "object", "required": ["name", "type"],
            "properties": {"name": {"type": "string"},
                           "type": {"enum": ["number", "date", "text"]}}}},
        "rows": {"type": "array", "maxItems": 100, "items": {"type": "array"},
                 "description": "The first rows (at most 100, fewer past 64 KB); a text "
                                "over 200 characters is cut."},
        "row_count": {"type": "integer", "description": "How many rows the query gave."},
        "capped": {"type": "boolean", "description": "The query had more rows than the "
                   "database's row limit: `row_count` is that limit."},
        "cut": {"enum": ["", "rows", "bytes"], "description": "Why `rows` holds fewer than "
                "`row_count`: past 100 rows, or past 64 KB."},
        "shortened": {"type": "boolean", "description": "Some text cells were cut."},
        "ms": {"type": "number", "description": "How long the query ran."},
        "pid": {"type": "string", "description": "The process it ran as (empty: inline)."},
        "chart": {"type": "object", "required": ["kind", "x", "y"], "properties": {
            "kind": {"enum": ["bar", "line", "none"]},
            "x": {"type": "string", "description": "The label or date column."},
            "y": {"type": "array", "items": {"type": "string"},
                  "description": "The number columns."}}},
        "check": {"enum": ["", "grounded", "repaired", "replaced", "abstained"],
                  "description": "How the answer was checked against it."},
    },
}
"""The `result` chat event (runtime.wire.ResultEvent), as the OpenAPI document names it."""
MESSAGE_RESULT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["status", "answer", "controls", "path", "frames", "results"],
    "properties": {
        "status": {"enum": ["running", "queued", "waiting", "done", "failed",
                            "rolled_back"]},
        "answer": {"type": "string"},
        "controls": {"type": "array", "items": {"type": "object"}},
        "path": {"type": "string"},
        "frames": {"type": "integer"},
        "position": {"type": "integer", "description": "`queued`: its place in the queue."},
        "approval": {"type": "object", "description": "`waiting`: the tool call that waits."},
        "results": {"type": "array", "items": {"$ref": "#/components/schemas/Result"},
                    "description": "The queries the answer was read from."},
    },
}


CHAT = Param("chat", "string", 'The conversation (default "main").', default="main",
             pattern=CHAT_NAME.pattern)
MESSAGE_ID = Param("id", "string", "The message id from /api/send.", required=True,
                   format="uuid")
HISTORY_LIMIT = Param("limit", "integer", "How many messages.", minimum=1, maximum=500,
                      default=50)
FRAMES_LAST = Param("last", "integer", "How many traces.", minimum=1, maximum=100, default=20)
AFTER_SEQ = Param("after_seq", "integer",
                  "Send events after this seq; the Last-Event-ID header wins.",
                  minimum=0, maximum=2**62, default=0)
SSE_TIMEOUT = Param("timeout", "number", "Close the stream after this many seconds.",
                    exclusive_minimum=0, maximum=3600, default=300)
TRACE_ID = Param("id", "integer", "The trace's id (`trace_id` in /api/trace; the admin's "
                 "Message traces).", required=True, minimum=1, maximum=2**62)
APPROVAL_ID = Param("id", "string", "The approval's id (the `approval` event's `id`).",
                    required=True, format="uuid")
ELEMENTS = Param("elements", "integer", "1 to include Cytoscape elements.", minimum=0,
                 maximum=1, default=0)
MAX_BODY_BYTES = 64 * 1024
"""The largest request body accepted (413 past it)."""
TEXT_BODY = {
    "type": "object",
    "required": ["text"],
    "properties": {
        "text": {
            "type": "string",
            "maxLength": MAX_MESSAGE_CHARS,
            "pattern": r"\S",
            "description": "The message: at most "
            f"{MAX_MESSAGE_CHARS} characters as sent, not only white space.",
        }
    },
}
SEND_BODY = {
    **TEXT_BODY,
    "properties": {
        **TEXT_BODY["properties"],
        "double_texting": {
            "type": "string",
            "enum": list(DOUBLE_TEXTING_POLICIES),
            "description": "What to do if the conversation is answering another message "
            "(default: the graph's policy, else reject): reject (409), enqueue (queued and "
            "answered in order; 202 says its `position`), interrupt (the running message is "
            "stopped and kept as stopped; this one is answered next, knowing both), "
            "rollback (the same, but the stopped message is taken out of the history and "
            "memory).",
        },
    },
}
COMMON = {400: "Bad input", 401: "Not signed in, or a bad token"}
OVER_QUOTA = ("Over the sender's quotas (messages per minute, messages answered at once, "
              "tokens per day): the error says which `limit`, `retry_after_s` and "
              "`resets_at`, and `Retry-After` when to try again; nothing was stored")
BODY_ERRORS = {413: f"The body is larger than {MAX_BODY_BYTES} bytes"}

ROUTES: tuple[Route, ...] = (
    Route(
        "/health",
        "health",
        {
            "GET": Operation(
                "health", "Liveness: `{status: ok}` while the process answers.",
                {200: "Alive"}, auth="none", scoped=False,
            )
        },
    ),
    Route(
        "/auth/config",
        "api-auth-config",
        {
            "GET": Operation(
                "auth_config",
                "How to sign in, and who the caller is (null when nobody).",
                {200: "The sign-in configuration", 401: "A bad bearer token"},
                auth="none",
                scoped=False,
            )
        },
    ),
    Route(
        "/api/send/check",
        "api-send-check",
        {
            "POST": Operation(
                "send_check",
                "Validate a message without sending it.",
                {
                    200: "It would be accepted (`{ok}`), or queued (`{ok, double_texting}`)",
                    **COMMON,
                    403: "CSRF check failed",
                    409: "The conversation is busy and the policy is `reject`",
                    429: "The sender's quotas would refuse it (`limit`, `retry_after_s`, "
                         "`resets_at`; `Retry-After`); nothing is counted",
                },
                body=SEND_BODY,
            )
        },
    ),
    Route(
        "/api/send",
        "api-send",
        {
            "POST": Operation(
                "send",
                "Send a message; its events go to the conversation's log (sockets, SSE).",
                {
                    202: "Accepted: `{id, after_seq}`; or queued behind the message being "
                         "answered (`enqueue`), or before the queue with that message "
                         "stopped (`interrupt`, `rollback`): `{id, after_seq, double_texting, "
                         "position}`",
                    **COMMON,
                    403: "CSRF check failed",
                    409: "The conversation is busy (`reject` policy): `double_texting` says so",
                    429: OVER_QUOTA,
                    503: "No pipeline worker could be reached; nothing was stored",
                },
                body=SEND_BODY,
                stores=True,
            )
        },
    ),
    Route(
        "/api/action",
        "api-action",
        {
            "POST": Operation(
                "action",
                "Click a control as the socket's `action` does: a machine button "
                "(`data.machine`) moves at once and logs a `controls` event; an offered "
                "button's label is sent as a message, like /api/send.",
                {
                    200: "A machine button was clicked: `{ok, controls, seq}` (seq null while "
                         "a message runs: numbered after its done)",
                    202: "An offered button's label was queued: `{id, after_seq, text}`",
                    **COMMON,
                    403: "CSRF check failed",
                    404: "No such control",
                    409: "The conversation is busy",
                    429: OVER_QUOTA,
                    503: "No pipeline worker could be reached; nothing was stored",
                },
                body={
                    "type": "object",
                    "required": ["action"],
                    "properties": {
                        "action": {"type": "string", "description": "The control's action."},
                        "data": {
                            "type": "object",
                            "description": "`{machine}` for a machine button.",
                            "properties": {"machine": {"type": "string"}},
                        },
                    },
                },
                stores=True,
            )
        },
    ),
    Route(
        "/api/rate",
        "api-rate",
        {
            "POST": Operation(
                "rate",
                "Rate an answer of the conversation: thumbs up or down, with an optional "
                "comment; rating it again replaces the first.",
                {200: "Stored: `{ok, id, rating, comment}`", **COMMON,
                 403: "CSRF check failed", 404: "No such answer in this conversation"},
                body={
                    "type": "object",
                    "required": ["id", "rating"],
                    "properties": {
                        "id": {"type": "string", "format": "uuid",
                               "description": "The answer's message id."},
                        "rating": {"type": "string", "enum": ["up", "down"]},
                        "comment": {"type": "string", "maxLength": 2000},
                    },
                },
                stores=True,
            )
        },
    ),
    Route(
        "/api/result",
        "api-result",
        {
            "GET": Operation(
                "result",
                "A message's status (running, queued with its `position`, waiting with "
                "the `approval` `{id, tool, step, reason, expires_at}` a tool call waits "
                "for, done, failed, rolled_back: taken back by a newer message) and, once "
                "done, its answer, controls, path, frames and the `results` (queries) it "
                "was read from.",
                {200: "The result", **COMMON, 404: "No such message in this conversation"},
                params=(MESSAGE_ID,),
                answer=MESSAGE_RESULT_SCHEMA,
            )
        },
    ),
    Route(
        "/api/clear",
        "api-clear",
        {
            "POST": Operation(
                "clear",
                "Forget history, memory (but the situation) and machines.",
                {
                    200: "Cleared",
                    **COMMON,
                    403: "CSRF check failed",
                    409: "A message is being answered",
                },
                stores=True,
            )
        },
    ),
    Route(
        "/api/state",
        "api-state",
        {
            "GET": Operation(
                "state",
                "Memory, UI (machines, controls), graph, busy flag and last event seq.",
                {200: "The state", **COMMON},
            )
        },
    ),
    Route(
        "/api/history",
        "api-history",
        {
            "GET": Operation(
                "history",
                "The last messages, oldest first.",
                {200: "The messages", **COMMON},
                params=(HISTORY_LIMIT,),
            )
        },
    ),
    Route(
        "/api/frames",
        "api-frames",
        {
            "GET": Operation(
                "frames",
                "The conversation's last frame traces, oldest first.",
                {200: "The traces", **COMMON},
                params=(FRAMES_LAST,),
            )
        },
    ),
    Route(
        "/api/trace",
        "api-trace",
        {
            "GET": Operation(
                "trace",
                "One message's frame trace (staff may read anyone's).",
                {200: "The trace", **COMMON, 404: "No such trace you may read"},
                params=(MESSAGE_ID,),
            )
        },
    ),
    Route(
        "/api/approvals/{id}",
        "api-approval",
        {
            "POST": Operation(
                "approval",
                "Decide a tool call that waits for a person's approval (the `approval` "
                "event): approve and the message goes on from its paused frame, running "
                "the call; deny and it is answered without it.",
                {202: "Decided; the message goes on: `{ok, id, decision, message_id}`",
                 **COMMON, 403: "CSRF check failed",
                 404: "No such approval in this conversation",
                 409: "Decided already: `decision` says how"},
                path_params=(APPROVAL_ID,),
                body={
                    "type": "object",
                    "required": ["decision"],
                    "properties": {
                        "decision": {"type": "string", "enum": list(DECISIONS)},
                    },
                },
                stores=True,
            )
        },
    ),
    Route(
        "/api/traces/{id}/replay",
        "api-trace-replay",
        {
            "POST": Operation(
                "trace_replay",
                "Run a traced message again from its recording (a rerun from a frame on runs "
                "the rest live): without a rerun no model is called, the "
                "run is stored as a new trace linked to it (the conversation is untouched). "
                "`{trace, original, path, frames, answer, model_calls, recorded_calls, "
                "diverged, same}`; `diverged` names the node and call where a changed graph "
                "left the recording.",
                {201: "Replayed", **COMMON, 403: "CSRF check failed",
                 404: "No such trace you may read", 409: "The trace holds no recording"},
                scoped=False,
                path_params=(TRACE_ID,),
                body={
                    "type": "object",
                    "description": "Optional (no body: a full replay). A rerun: frames "
                    "before `from_frame` from the recording, from it on live.",
                    "properties": {
                        "from_frame": {"type": "integer", "minimum": 1},
                        "memory": {"type": "object",
                                   "description": "Memory fields the message meets instead."},
                        "config": {"type": "object",
                                   "description": "`{node: {key: value}}` set before it runs."},
                        "answers": {"type": "object",
                                    "description": "`{\"node:k\": text}`: the node's k-th "
                                    "recorded answer replaced."},
                    },
                },
            )
        },
    ),
    Route(
        "/api/poll",
        "api-poll",
        {
            "GET": Operation(
                "poll",
                "Cheap polling: the state only when its hash changed.",
                {200: "`{hash, changed, state}` (state null when unchanged)", **COMMON},
                params=(Param("since", "string", "The hash from the previous poll."),),
            )
        },
    ),
    Route(
        "/api/events",
        "api-events",
        {
            "GET": Operation(
                "events",
                "The conversation's events as Server-Sent Events (`id: <seq>`); a data "
                "answer's `result` events are `#/components/schemas/Result`.",
                {200: "An event stream", **COMMON},
                content_type="text/event-stream",
                params=(AFTER_SEQ, SSE_TIMEOUT),
                stores=True,  # it follows one conversation from before its first message
            )
        },
    ),
    Route(
        "/api/graph/active",
        "api-graph-active",
        {
            "GET": Operation(
                "graph_active",
                "The conversation's graph with its Cytoscape elements.",
                {200: "The graph", **COMMON},
            )
        },
    ),
    Route(
        "/api/graph/list",
        "api-graph-list",
        {
            "GET": Operation(
                "graph_list",
                "Every graph's name and description.",
                {200: "The graphs", **COMMON},
                scoped=False,
                params=(ELEMENTS,),
            )
        },
    ),
    Route(
        "/api/graph/switch",
        "api-graph-switch",
        {
            "POST": Operation(
                "graph_switch",
                "Run the conversation on another graph from its next message.",
                {200: "Switched", **COMMON, 403: "CSRF check failed", 404: "No such graph"},
                body={
                    "type": "object",
                    "required": ["graph"],
                    "properties": {"graph": {"type": "string"}},
                },
                stores=True,
            )
        },
    ),
    Route(
        "/api/test/status",
        "api-test-status",
        {
            "GET": Operation(
                "test_status",
                "The latest test run: its counts and `events`, each check as the runner "
                "reported it (null when none).",
                {200: "The latest run", 401: COMMON[401], 403: "Staff only"},
                auth="staff",
                scoped=False,
            ),
            "POST": Operation(
                "test_event",
                "Publish one test-runner event to `/ws/test` observers.",
                {202: "Published", **COMMON, 403: "Staff only, or CSRF check failed"},
                auth="staff",
                scoped=False,
                body={
                    "type": "object",
                    "required": ["type"],
                    "properties": {"type": {"type": "string", "enum": list(TEST_EVENT_TYPES)}},
                },
            ),
        },
    ),
    Route(
        "/api/tests",
        "api-tests",
        {
            "GET": Operation(
                "tests",
                "The Markdown test suites (`testcases/*.md`): name and size.",
                {200: "The suites", 401: COMMON[401]},
                scoped=False,
            )
        },
    ),
    Route(
        "/api/openapi.json",
        "api-openapi",
        {
            "GET": Operation(
                "openapi", "This document.", {200: "OpenAPI 3.1"}, auth="none", scoped=False
            )
        },
    ),
)

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "limit": {"type": "string", "description": "`budget_exceeded`: the limit "
                          "reached, e.g. `messages_per_minute`"},
                "retry_after_s": {"type": "number", "description": "`budget_exceeded`: "
                                  "seconds until a message is let in again"},
                "resets_at": {"type": "string", "format": "date-time",
                              "description": "`budget_exceeded`: then, in UTC"},
            },
        }
    },
}
RETRY_AFTER = {"Retry-After": {"description": "Whole seconds to wait, rounded up",
                               "schema": {"type": "integer"}}}


def _operation_doc(op: Operation) -> dict[str, Any]:
    params = [(p, "path") for p in op.path_params] + [
        (p, "query") for p in ((CHAT,) if op.scoped else ()) + op.params]
    doc: dict[str, Any] = {
        "operationId": op.handler,
        "summary": op.summary,
        "parameters": [
            {
                "name": p.name,
                "in": where,
                "required": p.required or where == "path",
                "description": p.description,
                "schema": p.schema(),
            }
            for p, where in params
        ],
        "responses": {
            str(code): {
                "description": text,
                "content": {
                    (op.content_type if code < 300 else "application/json"): {
                        "schema": ERROR_SCHEMA
                    }
                    if code >= 400
                    else {"schema": op.answer} if op.answer is not None and code < 300
                    else {}
                },
                **({"headers": RETRY_AFTER} if code == 429 else {}),
            }
            for code, text in sorted({**op.responses,
                                      **(BODY_ERRORS if op.body is not None else {})}.items())
        },
    }
    if op.body is not None:
        doc["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": op.body}},
        }
    if op.auth == "none":
        doc["security"] = []
    elif op.auth == "staff":
        doc["description"] = "Staff only."
    return doc


def django_path(path: str) -> str:
    """A table path as a Django URL pattern: `{id}` becomes `<str:id>` (checked by the view)."""
    return PATH_PARAM.sub(lambda m: f"<str:{m.group(1)}>", path.lstrip("/"))


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of every route in the table."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "agentsite REST API",
            "version": "1",
            "description": 'Every answer is JSON (but the event stream); every error is '
            '`{"error": {"code", "message"}}`, unknown paths under /api/ included.',
        },
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "`python manage.py createtoken USERNAME`",
                },
                "session": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": "sessionid",
                    "description": "Django session; POSTs need X-CSRFToken.",
                },
            },
            "schemas": {"Error": ERROR_SCHEMA, "Result": RESULT_EVENT_SCHEMA},
        },
        "security": [{"bearer": []}, {"session": []}],
        "paths": {
            route.path: {
                method.lower(): _operation_doc(op) for method, op in route.operations.items()
            }
            for route in ROUTES
        },
    }
