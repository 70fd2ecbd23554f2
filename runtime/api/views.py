"""REST views of DESIGN §4: thin edges over the conversation services, JSON in and out.

Every route is a row of `runtime.api.schema.ROUTES`; `as_view(route)` turns a
row into a Django view that checks the method (405 JSON), resolves the caller
(`runtime.api.auth`), keeps CSRF protection for cookie-authenticated POSTs,
decodes and checks the JSON body against the row's schema, finds the caller's
conversation from `?chat=`, then calls the row's handler below. Handlers
decode their query, call one service or selector, and encode the result.
Every error is `{"error": {"code", "message"}}` with its code's status
(`runtime.errors.HTTP_STATUS`); a refusal of the runtime (busy, bad text, no
such control...) propagates as its exception and is answered by `ApiError.of`.

The views are `async def`. `/api/send` hands the message to
`runtime.conversations.answering.message_submit`: with pipeline workers (`REDIS_URL`) it goes
to the channel layer and the view answers 202 at once. Otherwise this process
answers it: under ASGI (daphne, `make run`) the event loop is the server's and
lives as long as the process, so the pipeline runs as a task on it, owned by
`runtime.conversations.answering.pipeline_tasks()`, and the view answers 202 at once;
the SSE stream waits with `asyncio.sleep` instead of holding a thread. Under
WSGI there is no loop that outlives a request (Django runs an async view in a
fresh loop that is closed, cancelling its tasks, when the view returns), so
there `/api/send` answers the message before it returns the same 202: slower,
but the contract (an id, then `/api/result` or the event log) is unchanged.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import resolve_url
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from graphs.selectors import graph_list_with_counts, graph_spec_get
from graphs.spec import cytoscape
from runtime.agent.nodes.ui import current_controls
from runtime.api.auth import Caller, caller_resolve, csrf_failure, user_from_bearer
from runtime.api.oidc import oidc_enabled
from runtime.api.schema import (
    AFTER_SEQ,
    CHAT,
    ELEMENTS,
    FRAMES_LAST,
    HISTORY_LIMIT,
    MAX_BODY_BYTES,
    MESSAGE_ID,
    SSE_TIMEOUT,
    Operation,
    Param,
    Route,
    openapi_document,
)
from runtime.conversations import actions, busy, selectors
from runtime.conversations import services as conv
from runtime.conversations.answering import (
    approval_submit,
    approvals_expire,
    handed_dispatch,
    message_submit,
)
from runtime.conversations.approvals import ApprovalRefused, approval_waiting
from runtime.conversations.dbcalls import database_call
from runtime.conversations.eventlog import chat_events_after, chat_last_seq
from runtime.conversations.owners import chat_name_check, conversation_resolve
from runtime.conversations.publish import publish_test
from runtime.conversations.queueing import (
    REJECT,
    conversation_double_texting,
    double_texting_check,
    message_queue_position,
)
from runtime.conversations.quotas import quota_check
from runtime.conversations.replay import Edits
from runtime.conversations.replay import trace_replay as replay_trace
from runtime.conversations.turns import validate_text
from runtime.errors import (
    INTERNAL_MESSAGE,
    AgentError,
    AuthFailed,
    ConversationBusy,
    Forbidden,
    http_status,
    public_message,
)
from runtime.jsonin import BadJSON, json_decode
from runtime.suites.parser import suite_files
from runtime.suites.runs import run_events, run_list_with_trend
from traces.models import MessageTrace
from traces.selectors import trace_get, trace_list_for_conversation

logger = logging.getLogger(__name__)

SSE_POLL_S = 0.2
SSE_KEEPALIVE_S = 15.0


# --- errors ----------------------------------------------------------------------------


class ApiError(Exception):
    """An error answered as `{"error": {"code", "message"}}`, with its code's HTTP status
    (runtime.errors.HTTP_STATUS); `details` go in the error beside them (a quota's
    `limit`, `retry_after_s` and `resets_at`)."""

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None
                 ) -> None:
        super().__init__(message)
        self.status = http_status(code)
        self.code = code
        self.message = message
        self.details = details or {}

    @classmethod
    def of(cls, exc: AgentError | ConversationBusy) -> ApiError:
        """The answer to a refusal or failure of the runtime: its public code and message
        (and details, for a refusal)."""
        refused = isinstance(exc, AgentError) and http_status(exc.code) < 500
        return cls(exc.code, public_message(exc), exc.details() if refused else None)


def error_response(error: ApiError, **headers: str) -> JsonResponse:
    """The JSON error every API failure is answered with; one that says when to try again
    (`retry_after_s`) has the `Retry-After` header too, in whole seconds rounded up."""
    response = JsonResponse({"error": {"code": error.code, "message": error.message,
                                       **error.details}}, status=error.status)
    if error.details.get("retry_after_s") is not None:
        response["Retry-After"] = str(math.ceil(error.details["retry_after_s"]))
    for name, value in headers.items():
        response[name] = value
    return response


def bad_request(message: str) -> ApiError:
    """A 400 with a clear message."""
    return ApiError("bad_request", message)


# --- reads the API needs that the conversation selectors do not offer yet -------------


def _trace_readable(*, trace: MessageTrace, caller: Caller) -> bool:
    """Whether the caller owns the trace's conversation, or is staff."""
    return caller.is_staff or caller.owner.owns(trace.conversation)


# --- encoding --------------------------------------------------------------------------


def trace_as_dict(trace: MessageTrace) -> dict[str, Any]:
    """A stored trace in the shape of a `frame_trace` event (FrameTrace.as_dict)."""
    return {
        "type": "frame_trace",
        "id": trace.pk,
        "replay_of": trace.replay_of_id,
        "message_id": str(trace.message_id),
        "conversation": trace.conversation_id,
        "graph": trace.graph,
        "message": trace.message,
        "answer": trace.answer,
        "path": trace.path,
        "total_frames": trace.total_frames,
        "total_ms": trace.total_ms,
        "error": trace.error,
        "worker": trace.worker,
        "created_at": trace.created_at.isoformat(),
        "frames": [
            {
                "frame": f.frame,
                "node": f.node,
                "node_type": f.node_type,
                "started_ms": f.started_ms,
                "duration_ms": f.duration_ms,
                "input": f.input,
                "output": f.output,
                "decision": f.decision,
                "error": f.error,
                "fallback": f.fallback,
                "llm_calls": f.llm_calls,
                "llm": {
                    "provider": f.llm_provider,
                    "model": f.llm_model,
                    "prompt_tokens": f.prompt_tokens,
                    "completion_tokens": f.completion_tokens,
                    "ms": f.llm_ms,
                }
                if f.llm_provider
                else None,
            }
            for f in trace.frames.all()
        ],
    }


def _user_dict(user) -> dict[str, Any] | None:
    if user is None or not user.is_authenticated:
        return None
    return {"id": user.pk, "username": user.get_username(), "is_staff": user.is_staff}


def _conversation_state(conversation_id: int) -> selectors.ConversationState:
    """The state, or a new conversation's when the caller has none yet (id 0)."""
    if not conversation_id:
        return selectors.conversation_state_new()
    return selectors.conversation_state(conversation_id=conversation_id)


def _last_seq(conversation_id: int) -> int:
    return chat_last_seq(conversation_id=conversation_id) if conversation_id else 0


def _state(*, conversation_id: int) -> dict[str, Any]:
    state = _conversation_state(conversation_id)
    return {
        "conversation": conversation_id or None,
        "graph": state.graph_name,
        "memory": state.memory,
        "ui": {"machines": state.ui["machines"], "controls": current_controls(state.ui)},
        "busy": busy.busy_held(conversation_id=conversation_id),
        "last_seq": _last_seq(conversation_id),
    }


def _state_hash(*, conversation_id: int) -> str:
    last = _last_seq(conversation_id)
    graph = _conversation_state(conversation_id).graph_name
    return hashlib.sha256(f"{last}:{graph}".encode()).hexdigest()[:16]


# --- decoding --------------------------------------------------------------------------


_JSON_TYPES = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "object": (dict,),
    "array": (list,),
    "boolean": (bool,),
}
_TYPE_WORDS = {
    "string": "text",
    "integer": "an integer",
    "number": "a number",
    "object": "an object",
    "array": "a list",
    "boolean": "true or false",
}


def _read_body(request: HttpRequest) -> bytes:
    """The raw body, refused past MAX_BODY_BYTES (read no further than that)."""
    raw = request.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        raise ApiError("too_large", f"the body is larger than {MAX_BODY_BYTES} bytes, "
                       "the limit")
    return raw


def _decode_body(raw: bytes, schema: dict[str, Any]) -> dict[str, Any]:
    """The JSON object body, checked against the route's schema (required, types, enums)."""
    if not raw.strip() and not schema.get("required"):
        return {}  # every field optional: no body is an empty one
    try:
        data = json_decode(raw or b"")
    except BadJSON as exc:
        raise bad_request(f"the body is {exc}" if str(exc).startswith("not JSON")
                          else str(exc)) from None
    if not isinstance(data, dict):
        raise bad_request("the body must be a JSON object")
    for name in schema.get("required", []):
        if name not in data:
            raise bad_request(f"the field {name!r} is required")
    for name, rule in schema.get("properties", {}).items():
        if name not in data:
            continue
        value, kind = data[name], rule["type"]
        wrong_bool = isinstance(value, bool) and kind in ("integer", "number")
        if wrong_bool or not isinstance(value, _JSON_TYPES[kind]):
            raise bad_request(f"{name!r} must be {_TYPE_WORDS[kind]}, got {type(value).__name__}")
        if "enum" in rule and value not in rule["enum"]:
            raise bad_request(f"{name!r} must be one of: {', '.join(rule['enum'])}")
    return data


def _number_param(request: HttpRequest, param: Param) -> float:
    """A numeric query parameter, checked against its row (type, range); its default if absent."""
    raw = request.GET.get(param.name)
    if raw is None or raw == "":
        return param.default
    integer = param.type == "integer"
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        kind = "an integer" if integer else "a number"
        raise bad_request(f"{param.name!r} must be {kind}, got {raw!r}") from None
    low = param.minimum if param.minimum is not None else param.exclusive_minimum
    if ((param.minimum is not None and value < param.minimum)
            or (param.exclusive_minimum is not None and not value > param.exclusive_minimum)
            or (param.maximum is not None and value > param.maximum)
            or value != value):  # NaN
        above = "at least" if param.minimum is not None else "more than"
        raise bad_request(f"{param.name!r} must be {above} {low:g} and at most "
                          f"{param.maximum:g}")
    return value


def _path_param(raw: str, param: Param) -> int | str:
    """A path parameter: an integer within its row's range, or a uuid (`format`)."""
    if param.format == "uuid":
        try:
            return str(uuid.UUID(raw))
        except ValueError:
            raise ApiError("not_found", f"{raw!r} is not an {param.name} in this path") from None
    if not raw.isdigit() or not param.minimum <= int(raw) <= param.maximum:
        raise ApiError("not_found", f"{raw!r} is not a {param.name} in this path")
    return int(raw)


def _message_id_param(request: HttpRequest) -> str:
    raw = request.GET.get(MESSAGE_ID.name, "")
    if not raw:
        raise bad_request("the query parameter 'id' (a message id) is required")
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise bad_request(f"{raw!r} is not a message id") from None


@dataclass(frozen=True)
class Call:
    """One decoded API request, as handlers receive it."""

    request: HttpRequest
    """The Django request (query parameters, headers)."""
    caller: Caller | None
    """Who is calling (None for routes without auth)."""
    conversation_id: int
    """The caller's conversation chosen by `?chat=` (0 for unscoped routes)."""
    body: dict[str, Any]
    """The decoded JSON body ({} without one)."""
    path: dict[str, Any] = field(default_factory=dict)
    """The path's parameters, checked against their rows."""


def as_view(route: Route) -> Callable[..., Awaitable[HttpResponse]]:
    """A Django view serving one row of the endpoint table."""
    allowed = ", ".join(sorted(route.operations))

    async def view(request: HttpRequest, **path: str) -> HttpResponse:
        op = route.operations.get(request.method or "")
        if op is None:
            return error_response(ApiError(
                "method_not_allowed",
                f"{request.method} is not allowed on {route.path}; use {allowed}"),
                Allow=allowed)
        try:
            call = await _decode(request, op)
            call = replace(call, path={p.name: _path_param(path.get(p.name, ""), p)
                                       for p in op.path_params})
            return await HANDLERS[op.handler](call)
        except ApiError as exc:
            return error_response(exc)
        except (AgentError, ConversationBusy) as exc:
            error = ApiError.of(exc)
            if error.status >= 500:  # our side failed: keep the traceback
                logger.exception("%s %s failed", request.method, route.path)
            return error_response(error)
        except Exception:
            # Broad on purpose: a client gets JSON it can read, never Django's HTML 500;
            # the traceback goes to the log.
            logger.exception("%s %s failed", request.method, route.path)
            return error_response(ApiError("internal", INTERNAL_MESSAGE))

    view.__name__ = route.name.replace("-", "_")
    view.__doc__ = next(iter(route.operations.values())).summary
    # CSRF is enforced in `_decode` for every cookie-authenticated request; a bearer-token
    # request carries no cookie an attacker's page could ride on.
    return csrf_exempt(view)


async def _decode(request: HttpRequest, op: Operation) -> Call:
    # Read before the CSRF check, which would parse a form body (multipart...) otherwise.
    raw = _read_body(request) if op.body is not None else b""
    caller = None
    if op.auth != "none":
        caller = await database_call(caller_resolve)(request, stores=op.stores)
        if op.auth == "staff" and not caller.is_staff:
            raise Forbidden("only staff may use this endpoint")
        if request.method == "POST" and caller.via != "token":
            reason = await database_call(csrf_failure)(request)
            if reason:
                raise ApiError(
                    "csrf_failed",
                    f"CSRF check failed ({reason}); send the "
                    "csrftoken cookie's value as the X-CSRFToken header",
                )
    body = _decode_body(raw, op.body) if op.body is not None else {}
    conversation_id = 0
    if op.scoped and caller is not None:
        chat = request.GET.get(CHAT.name, CHAT.default)
        chat_name_check(chat)
        # Only a request that stores something creates a conversation; a read of one that
        # does not exist yet answers as for a new one (id 0).
        conversation = await database_call(conversation_resolve)(
            owner=caller.owner, chat=chat, create=op.stores)
        conversation_id = conversation.id if conversation else 0
    return Call(request=request, caller=caller, conversation_id=conversation_id, body=body)


def _json(data: Any, status: int = 200) -> JsonResponse:
    return JsonResponse(data, status=status, safe=False, json_dumps_params={"default": str})


# --- handlers --------------------------------------------------------------------------


async def auth_config(call: Call) -> HttpResponse:
    """How to sign in, and who the caller is."""
    header = call.request.headers.get("Authorization")
    if header and header.lower().startswith("bearer"):
        user = await database_call(user_from_bearer)(header)
        if user is None:
            raise AuthFailed("the bearer token is unknown or revoked")
    else:
        user = await call.request.auser()
    enabled = oidc_enabled()
    return _json(
        {
            "anonymous_allowed": settings.AGENTSITE_ALLOW_ANONYMOUS,
            # The sign-in page offers the password form and, when configured, the provider.
            "login_url": resolve_url(settings.LOGIN_URL),
            "oidc": enabled,
            "oidc_url": "/oidc/authenticate/" if enabled else None,
            "user": _user_dict(user),
        }
    )


async def send_check(call: Call) -> HttpResponse:
    """Validate a message without sending it: 429 when its sender's quotas would refuse
    it, 409 when it would be refused as busy (the `reject` policy); `{ok, double_texting}`
    when it would be queued. Nothing is stored or counted."""
    validate_text(call.body["text"])
    await database_call(quota_check)(conversation_id=call.conversation_id)
    if not await database_call(busy.busy_held)(conversation_id=call.conversation_id):
        return _json({"ok": True})
    policy = double_texting_check(call.body.get("double_texting")) or await database_call(
        conversation_double_texting)(conversation_id=call.conversation_id)
    if policy == REJECT:
        raise ConversationBusy()
    return _json({"ok": True, "double_texting": policy})


async def send(call: Call) -> HttpResponse:
    """Send a message; 202 with its id and the last seq before its events (and its place
    in the queue when the `enqueue` policy queued it); 409 when `reject` refused it."""
    text = validate_text(call.body["text"])
    try:
        return _json(await _queue(call, text, double_texting=call.body.get("double_texting")),
                     status=202)
    except ConversationBusy as exc:  # refused by the `reject` policy: say which
        error = ApiError.of(exc)
        return _json({"error": {"code": error.code, "message": error.message},
                      "double_texting": REJECT}, status=error.status)


async def _queue(call: Call, text: str, *, double_texting: str | None = None
                 ) -> dict[str, Any]:
    """Start answering `text` in the caller's conversation (or queue it):
    `{id, after_seq}`, plus `{double_texting, position}` when it was queued."""
    after_seq = await database_call(chat_last_seq)(conversation_id=call.conversation_id)
    submitted = await message_submit(
        conversation_id=call.conversation_id, text=text, double_texting=double_texting,
        inline=not isinstance(call.request, ASGIRequest))  # WSGI: see the module docstring
    answer: dict[str, Any] = {"id": submitted.message_id, "after_seq": after_seq}
    if submitted.position:
        answer.update(double_texting=submitted.double_texting, position=submitted.position)
    return answer


async def action(call: Call) -> HttpResponse:
    """Click a control, as the socket's `action` message does.

    With `data.machine` it is a machine button: the machine moves at once (no
    model call), a `controls` event goes to the conversation's log and the
    answer is 200 `{ok, controls, seq}` (`seq` null while a message runs: the event
    is numbered once it ends). Otherwise it is an offered (thinker)
    button: its label is sent as a message, exactly like `/api/send`, and the
    answer is 202 `{id, after_seq, text}`.
    """
    machine = call.body.get("data", {}).get("machine", "")
    if not isinstance(machine, str):
        raise bad_request("'data.machine' must be text")
    clicked = await database_call(actions.conversation_click)(
        conversation_id=call.conversation_id, action=call.body["action"], machine=machine)
    if clicked.event is not None:
        # seq is null while a message runs: the event is numbered right after its done.
        return _json({"ok": True, "controls": clicked.event["controls"],
                      "seq": clicked.event.get("seq")})
    return _json({**await _queue(call, clicked.message), "text": clicked.message}, status=202)


async def result(call: Call) -> HttpResponse:
    """A message's status and answer (`running` while it is answered or waits for a worker,
    `queued` with its `position` while it waits behind another, `waiting` with its
    `approval` while a tool call waits for a person)."""
    message_id = _message_id_param(call.request)
    stored = await database_call(selectors.conversation_message_result)(
        conversation_id=call.conversation_id, message_id=message_id
    )
    if stored is not None:
        return _json(stored)
    # A message whose process died (or whose failure could not be stored) is stored as
    # failed now, so a client polling for it gets its end rather than `running` forever.
    if await busy.busy_reap_and_publish(conversation_id=call.conversation_id,
                                        on_handed=handed_dispatch):
        stored = await database_call(selectors.conversation_message_result)(
            conversation_id=call.conversation_id, message_id=message_id)
        if stored is not None:
            return _json(stored)
    # A message moves one way, queued -> holding the flag -> stored, so reading in that
    # order never misses it.
    position = await database_call(message_queue_position)(
        conversation_id=call.conversation_id, message_id=message_id)
    if position is not None:  # waits behind the message being answered (`enqueue`)
        return _json({"status": "queued", "position": position, "answer": "",
                      "controls": [], "path": "", "frames": 0, "results": []})
    if await database_call(busy.busy_holds)(
            conversation_id=call.conversation_id, message_id=message_id):
        waiting = await database_call(approval_waiting)(
            conversation_id=call.conversation_id, message_id=message_id)
        if waiting is not None:  # paused until someone decides (POST /api/approvals/{id})
            if datetime.fromisoformat(waiting["expires_at"]) <= timezone.now():
                # Past its time, and the process that paused it may be gone: declined now.
                await approvals_expire(conversation_id=call.conversation_id,
                                       inline=not isinstance(call.request, ASGIRequest))
            return _json({"status": "waiting", "approval": waiting, "answer": "",
                          "controls": [], "path": "", "frames": 0, "results": []})
        return _json({"status": "running", "answer": "", "controls": [], "path": "",
                      "frames": 0, "results": []})
    # It may have ended between the first read and the flag's: its answer is stored in
    # the transaction that gave the flag back, so it is there now if it ever will be.
    stored = await database_call(selectors.conversation_message_result)(
        conversation_id=call.conversation_id, message_id=message_id)
    if stored is not None:
        return _json(stored)
    raise ApiError("not_found", f"no message {message_id} in this conversation")


async def rate(call: Call) -> HttpResponse:
    """Rate an answer (runtime.conversations.services.conversation_rate)."""
    try:
        message_id = str(uuid.UUID(call.body["id"]))
    except ValueError:
        raise bad_request(f"{call.body['id']!r} is not a message id") from None
    comment = call.body.get("comment", "")
    await database_call(conv.conversation_rate)(
        conversation_id=call.conversation_id, message_id=message_id,
        value=1 if call.body["rating"] == "up" else -1, comment=comment)
    return _json({"ok": True, "id": message_id, "rating": call.body["rating"],
                  "comment": comment.strip()})


async def approval(call: Call) -> HttpResponse:
    """Decide a tool call that waits for approval (runtime.conversations.approvals)."""
    approval_id = call.path["id"]
    decision = call.body["decision"]
    try:
        message_id = await approval_submit(
            conversation_id=call.conversation_id, approval_id=approval_id, decision=decision,
            inline=not isinstance(call.request, ASGIRequest))  # WSGI: as /api/send
    except ApprovalRefused as exc:
        raise ApiError(exc.code, str(exc),
                       {"decision": exc.decision} if exc.decision else None) from None
    return _json({"ok": True, "id": approval_id, "decision": decision,
                  "message_id": message_id}, status=202)


async def clear(call: Call) -> HttpResponse:
    """Forget the conversation; a `cleared` event tells every listener."""
    await database_call(actions.conversation_clear)(
        conversation_id=call.conversation_id)
    return _json({"ok": True})


async def state(call: Call) -> HttpResponse:
    """The conversation's state."""
    return _json(await database_call(_state)(conversation_id=call.conversation_id))


def _history(*, conversation_id: int, limit: int) -> list[dict[str, Any]]:
    ratings = selectors.conversation_ratings(conversation_id=conversation_id)
    return [
        {
            "message_id": str(m.message_id),
            "role": m.role,
            "text": m.text,
            "status": m.status,
            "controls": m.controls,
            "created_at": m.created_at.isoformat(),
            **({"rating": {1: "up", -1: "down"}[ratings[str(m.message_id)]]}
               if m.role == "assistant" and str(m.message_id) in ratings else {}),
        }
        for m in selectors.conversation_history(conversation_id=conversation_id, limit=limit)
    ]


async def history(call: Call) -> HttpResponse:
    """The last messages, oldest first."""
    limit = int(_number_param(call.request, HISTORY_LIMIT))
    return _json(
        {
            "messages": await database_call(_history)(
                conversation_id=call.conversation_id, limit=limit
            )
        }
    )


def _frames(*, conversation_id: int, last: int) -> list[dict[str, Any]]:
    rows = trace_list_for_conversation(conversation_id=conversation_id, last=last)
    return [trace_as_dict(row) for row in reversed(list(rows))]


async def frames(call: Call) -> HttpResponse:
    """The conversation's last traces, oldest first."""
    last = int(_number_param(call.request, FRAMES_LAST))
    return _json(
        {
            "traces": await database_call(_frames)(
                conversation_id=call.conversation_id, last=last
            )
        }
    )


def _readable_trace(*, message_id: str, caller: Caller) -> dict[str, Any] | None:
    row = trace_get(message_id=message_id)
    if row is None or not _trace_readable(trace=row, caller=caller):
        return None
    return trace_as_dict(row)


async def trace(call: Call) -> HttpResponse:
    """One trace: the caller's own, or anyone's for staff."""
    message_id = _message_id_param(call.request)
    found = await database_call(_readable_trace)(message_id=message_id, caller=call.caller)
    if found is None:
        # Someone else's trace is reported exactly like a missing one: ids leak nothing.
        raise ApiError("not_found", f"no trace {message_id} that you may read")
    return _json(found)


async def poll(call: Call) -> HttpResponse:
    """The state, only when it changed since the client's hash."""
    since = call.request.GET.get("since", "")
    current = await database_call(_state_hash)(conversation_id=call.conversation_id)
    changed = since != current
    body = (
        await database_call(_state)(conversation_id=call.conversation_id)
        if changed
        else None
    )
    return _json({"hash": current, "changed": changed, "state": body})


async def events(call: Call) -> HttpResponse:
    """The conversation's event log as Server-Sent Events, then new events as they come."""
    after = int(_number_param(call.request, AFTER_SEQ))
    last_event_id = call.request.headers.get("Last-Event-ID")
    if last_event_id:
        if not last_event_id.isdigit():
            raise bad_request(f"Last-Event-ID must be a seq number, got {last_event_id!r}")
        after = int(last_event_id)
    timeout = float(_number_param(call.request, SSE_TIMEOUT))
    response = StreamingHttpResponse(
        _event_stream(conversation_id=call.conversation_id, after=after, timeout=timeout),
        content_type="text/event-stream",
    )
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx: do not buffer the stream
    return response


async def _event_stream(*, conversation_id: int, after: int, timeout: float):
    """Poll the log every SSE_POLL_S; a comment every SSE_KEEPALIVE_S keeps proxies open."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    next_ping = loop.time() + SSE_KEEPALIVE_S
    yield "retry: 1000\n\n"
    while True:
        batch = await database_call(chat_events_after)(
            conversation_id=conversation_id, after_seq=after, limit=500
        )
        for event in batch:
            after = event["seq"]
            yield f"id: {after}\ndata: {json.dumps(event, default=str)}\n\n"
        now = loop.time()
        if now >= deadline:
            return
        if now >= next_ping:
            next_ping = now + SSE_KEEPALIVE_S
            yield ": keep-alive\n\n"
        if len(batch) < 500:  # a full batch means more is waiting: read again at once
            await asyncio.sleep(min(SSE_POLL_S, deadline - now))


def _graph_dict(name: str, *, elements: bool) -> dict[str, Any]:
    spec = graph_spec_get(name=name)
    out: dict[str, Any] = {"name": spec.name, "description": spec.description}
    if elements:
        out["elements"] = cytoscape(spec)
    return out


def _active_graph(*, conversation_id: int) -> dict[str, Any]:
    name = _conversation_state(conversation_id).graph_name
    return _graph_dict(name, elements=True)


async def graph_active(call: Call) -> HttpResponse:
    """The conversation's graph."""
    return _json(await database_call(_active_graph)(conversation_id=call.conversation_id))


def _graphs(*, elements: bool) -> list[dict[str, Any]]:
    rows = graph_list_with_counts()
    if elements:
        return [_graph_dict(g.name, elements=True) for g in rows]
    return [{"name": g.name, "description": g.description} for g in rows]


async def graph_list(call: Call) -> HttpResponse:
    """Every graph."""
    elements = bool(_number_param(call.request, ELEMENTS))
    return _json({"graphs": await database_call(_graphs)(elements=elements)})


async def graph_switch(call: Call) -> HttpResponse:
    """Switch the conversation's graph."""
    name = call.body["graph"]
    await database_call(actions.conversation_switch_graph)(
        conversation_id=call.conversation_id, graph_name=name)
    return _json({"ok": True, "graph": name})


def _latest_run() -> dict[str, Any] | None:
    latest = run_list_with_trend(limit=1)
    if not latest:
        return None
    run = latest[0].run
    return {
        "id": run.pk,
        "graph": run.graph,
        "target": run.target,
        "status": run.status,
        "passed": run.passed,
        "failed": run.failed,
        "total": run.total,
        "score": run.score,
        "started_at": run.started_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        # Each check as the runner reported it, from the database: a page follows a run
        # made in another process (a plain in-process `runtests`) without a shared layer.
        "events": run_events(run=run),
    }


async def test_status(call: Call) -> HttpResponse:
    """The latest test run."""
    return _json({"run": await database_call(_latest_run)()})


async def test_event(call: Call) -> HttpResponse:
    """Publish one runner event to `/ws/test` (not stored: `runtests` stores its runs)."""
    await publish_test(event=call.body)
    return _json({"ok": True}, status=202)


def _suites() -> list[dict[str, Any]]:
    return [{"name": p.stem, "file": p.name, "size": p.stat().st_size}
            for p in suite_files(settings.BASE_DIR / "testcases")]


async def tests(call: Call) -> HttpResponse:
    """The Markdown test suites."""
    return _json({"suites": _suites()})


async def openapi(call: Call) -> HttpResponse:
    """The OpenAPI document."""
    return _json(openapi_document())


def _replayable(*, trace_id: int, caller: Caller) -> bool:
    row = MessageTrace.objects.select_related("conversation").filter(pk=trace_id).first()
    return row is not None and _trace_readable(trace=row, caller=caller)


async def trace_replay(call: Call) -> HttpResponse:
    """Run a traced message again from its recording (runtime.conversations.replay)."""
    trace_id = call.path["id"]
    if not await database_call(_replayable)(trace_id=trace_id, caller=call.caller):
        raise ApiError("not_found", f"no trace {trace_id} that you may read")
    body = call.body
    if "from_frame" in body and body["from_frame"] < 1:
        raise bad_request("'from_frame' must be 1 or more")
    if any(not isinstance(v, dict) for v in body.get("config", {}).values()):
        raise bad_request("'config' maps node ids to objects of config keys")
    edits = Edits(memory=body.get("memory", {}), config=body.get("config", {}),
                  answers=body.get("answers", {}))
    result = await replay_trace(trace_id=trace_id, from_frame=body.get("from_frame", 0),
                                edits=edits)
    return _json(asdict(result), status=201)


async def health(call: Call) -> HttpResponse:
    """Liveness: the process answers."""
    return _json({"status": "ok"})


async def not_found(request: HttpRequest, rest: str = "") -> HttpResponse:
    """Any path under /api/ that is not in the table: a JSON 404, like every API answer."""
    return error_response(ApiError("not_found", f"no endpoint {request.path}; the endpoints "
                                   "are listed in /api/openapi.json"))


HANDLERS: dict[str, Callable[[Call], Awaitable[HttpResponse]]] = {
    f.__name__: f
    for f in (
        auth_config,
        send_check,
        send,
        action,
        rate,
        approval,
        result,
        clear,
        state,
        history,
        frames,
        trace,
        poll,
        events,
        graph_active,
        graph_list,
        graph_switch,
        test_status,
        test_event,
        tests,
        openapi,
        health,
        trace_replay,
    )
}
"""Handlers by the name the endpoint table gives them."""
