"""WebSocket consumers: `/ws` (chat), `/ws/trace` and `/ws/test` (staff observers).

Thin edges: decode a frame, call one service, send the result. A message is
handed to `runtime.conversations.answering.message_submit` (answered in this process or by a
pipeline worker) and its events come back like every other conversation
event: through the conversation's channel-layer group, numbered by `seq`. The
socket sends them in order, once each, filling any gap from the stored log,
so an answer arrives whole whichever process produced it. A disconnect does
not stop the answer; a resumed client gets it from the log.

The socket does not stream its own answer with `self.send` straight from the
pipeline: with pipeline workers that answer is produced in another process,
and one path for both deployments keeps the order, numbering and gap
filling in one place. Its own replies (errors for its requests, a machine
click it made) are still sent directly.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from asgiref.sync import async_to_sync
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.contrib.sessions.models import Session
from django.utils import timezone

from runtime.api.auth import session_group, socket_refuse, socket_user, token_alive
from runtime.conversations import actions, busy
from runtime.conversations.answering import (
    approval_submit,
    approvals_expire,
    handed_dispatch,
    message_submit,
)
from runtime.conversations.approvals import ApprovalRefused
from runtime.conversations.dbcalls import DatabaseCallsOnly, database_call
from runtime.conversations.eventlog import chat_events_after, chat_last_seq
from runtime.conversations.models import Conversation
from runtime.conversations.owners import chat_name_check, conversation_resolve, owner_resolve
from runtime.conversations.processes import process_cancel
from runtime.conversations.publish import TEST_GROUP, TRACE_GROUP, chat_group
from runtime.conversations.queueing import REJECT
from runtime.conversations.quotas import SocketRate, quota_limits
from runtime.errors import (
    INTERNAL_MESSAGE,
    AgentError,
    AuthFailed,
    BudgetExceeded,
    ConversationBusy,
    Forbidden,
    close_code,
    http_status,
    public_message,
)
from runtime.suites.runs import run_event_key, runs_followed
from runtime.wire import (
    ActionIn,
    ApprovalIn,
    BadMessage,
    CancelProcessIn,
    ErrorEvent,
    MessageIn,
    QueuedEvent,
    ReadyEvent,
    ResumeIn,
    parse_inbound,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Opened:
    """What a chat socket learns in its one database call at connect."""

    user: Any
    """Its user (None: an anonymous visitor)."""
    conversation: Conversation
    """Its conversation."""
    last_seq: int
    """The last event stored when it started listening."""
    busy: bool
    """Whether a message of the conversation was being answered then."""
    messages_per_minute: int = 0
    """Its owner's rate (runtime.conversations.quotas; 0: no limit)."""
    handed: busy.Handed | None = None
    """A queued message handed the flag of a lost one as the socket connected."""
    approval_due: bool = False
    """The running message waits for an approval past its time (declined now)."""


def _socket_open(scope: dict[str, Any], chat: str, listen: Callable[[int], None]) -> _Opened:
    """A chat socket's connect, in one database call: its user (token or session), its
    conversation (a message whose process died recorded as failed first), `listen` to the
    conversation's events, then the last stored one, so no event falls between the two;
    and its owner's rate. AuthFailed for a caller who may not chat."""
    user = socket_user(scope)
    session = scope.get("session")
    owner = owner_resolve(user=user, session_key=getattr(session, "session_key", None) or "")
    conversation = conversation_resolve(owner=owner, chat=chat)
    held, handed = bool(conversation.busy_token), None
    if held and busy.busy_reap(conversation_id=conversation.id):
        # A queued message handed the lost one's flag is answered now (the consumer).
        handed = busy.busy_unclaimed(conversation_id=conversation.id)
        held = handed is not None
    listen(conversation.id)
    rate = quota_limits(user_id=conversation.user_id).messages_per_minute
    waiting = conversation.busy_waiting
    return _Opened(user=user, conversation=conversation,
                   last_seq=chat_last_seq(conversation_id=conversation.id), busy=held,
                   messages_per_minute=rate, handed=handed,
                   approval_due=waiting is not None and waiting <= timezone.now())


def _session_alive(session_key: str | None, user_id: int | None) -> bool:
    """Whether the socket's session still exists, is unexpired and (if any) holds the user."""
    if not session_key:
        return user_id is None
    row = Session.objects.filter(session_key=session_key, expire_date__gt=timezone.now()).first()
    if row is None:
        return False
    if user_id is None:
        return True
    return str(row.get_decoded().get("_auth_user_id")) == str(user_id)


def _after_seq(raw: str | None) -> int | None:
    """The `after_seq` a reconnecting client gives in the socket's URL; BadMessage for
    anything but a whole number of 0 or more."""
    if raw is None:
        return None
    if not raw.isdigit():
        raise BadMessage(f"after_seq must be a whole number of 0 or more, not {raw!r}")
    return int(raw)


GAP_WAIT_S = 3.0
"""How long a socket waits for the log to hold events it missed (`_fill_gap`)."""


class ChatConsumer(DatabaseCallsOnly, AsyncWebsocketConsumer):
    """One browser tab (or API client) chatting in one conversation."""

    conversation_id: int = 0
    sent_seq: int = 0
    """The last conversation event this socket has sent (events come in `seq` order)."""
    watchdog: asyncio.Task | None = None
    closed: bool = False
    rate: SocketRate
    """The messages this socket sent in the last minute: frames beyond its owner's rate
    are refused at once (runtime.conversations.quotas.SocketRate)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rate = SocketRate(limit=0)  # its owner's, once connected

    async def connect(self) -> None:
        """Find the caller's conversation (one database call); refuse callers who may not
        chat."""
        query = self._query()
        chat = query.get("chat", "main")
        listen = async_to_sync(self._listen)
        try:
            chat_name_check(chat)
            after_seq = _after_seq(query.get("after_seq"))
            # A socket cannot set a cookie, so it never starts a session: an anonymous
            # visitor opens the chat page first (runtime.conversations.owners).
            opened = await database_call(_socket_open)(self.scope, chat, listen)
        except AgentError as exc:
            await socket_refuse(self.base_send, exc)
            return
        self.scope["user"] = opened.user
        self.rate = SocketRate(limit=opened.messages_per_minute)
        await self.accept()
        self.sent_seq = opened.last_seq
        await self._send(ReadyEvent(conversation=self.conversation_id,
                                    graph=opened.conversation.graph_name,
                                    last_seq=opened.last_seq, busy=opened.busy).as_dict())
        # `?after_seq=N`: a client that reconnects resumes here, before any live event is
        # relayed, so a gap is filled from what it has (while a message runs the log can
        # be behind it). A number past an idle log is from another log (a reset one).
        if after_seq is not None and (opened.busy or after_seq <= opened.last_seq):
            await self._resume(after_seq)
        if opened.handed is not None:
            await handed_dispatch(opened.handed)
        if opened.approval_due:  # its process may be gone: declined here, it goes on
            await approvals_expire(conversation_id=self.conversation_id)
        self.watchdog = asyncio.create_task(self._watch_session())
        self.watchdog.add_done_callback(_log_task_failure)

    async def _listen(self, conversation_id: int) -> None:
        """Join the conversation's group (and the session's, to hear of a sign-out)."""
        self.conversation_id = conversation_id
        await self.channel_layer.group_add(chat_group(conversation_id), self.channel_name)
        if self._session_key():
            await self.channel_layer.group_add(session_group(self._session_key()),
                                               self.channel_name)

    def _session_key(self) -> str:
        if self.scope.get("auth") == "token":
            return ""
        return getattr(self.scope.get("session"), "session_key", None) or ""

    async def session_ended(self, message: dict[str, Any]) -> None:
        """Its user signed out (runtime.realtime.signals): close at once."""
        if not self.closed:
            await self._close_for(AuthFailed("you signed out; sign in again"))

    async def _watch_session(self) -> None:
        """Close the socket soon after its session ends, its user signs out or is
        deactivated, or its token is revoked."""
        while not self.closed:
            await asyncio.sleep(settings.AGENTSITE_SESSION_CHECK_S)
            token = self.scope.get("token")
            alive = (await database_call(token_alive)(token) if token
                     else await self._still_signed_in())
            if not self.closed and not alive:
                await self._close_for(AuthFailed(
                    "your token was revoked" if token else
                    "your session has expired or you signed out; sign in again"))
                return

    async def disconnect(self, code: int) -> None:
        """Stop listening; a running answer goes on and is stored for `resume`."""
        self.closed = True
        if self.watchdog is not None:
            self.watchdog.cancel()
            await asyncio.gather(self.watchdog, return_exceptions=True)
        if self.conversation_id:
            await self.channel_layer.group_discard(chat_group(self.conversation_id),
                                                   self.channel_name)
            if self._session_key():
                await self.channel_layer.group_discard(session_group(self._session_key()),
                                                       self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None
                      ) -> None:
        """Decode one frame and act on it; bad input gets a clear error, the socket stays.

        The session is not looked up per frame: a sign-out closes the socket at once
        (`session_ended`), and `_watch_session` finds an expired or deleted session.
        """
        if self.closed:
            return
        try:
            message = parse_inbound(text_data if bytes_data is None else bytes_data)
        except BadMessage as exc:
            await self._fail(exc)
            return
        try:
            if isinstance(message, MessageIn):
                await self._start(message.text, double_texting=message.double_texting)
            elif isinstance(message, ActionIn):
                await self._action(message)
            elif isinstance(message, CancelProcessIn):
                await self._cancel(message.pid)
            elif isinstance(message, ResumeIn):
                await self._resume(message.after_seq)
            elif isinstance(message, ApprovalIn):
                await self._approval(message)
        except (AgentError, ConversationBusy) as exc:
            if http_status(exc.code) >= 500:  # our side failed: keep the traceback
                logger.exception("chat socket: %s failed", type(message).__name__)
            await self._fail(exc)  # refused (bad text, busy, no such control...): say why
        except Exception:
            # Broad on purpose: one failed request must not kill the socket (close 1011);
            # the client gets a plain error and the log the traceback.
            logger.exception("chat socket: %s failed", type(message).__name__)
            await self._error("internal", INTERNAL_MESSAGE)

    # --- message handlers ------------------------------------------------------

    async def _start(self, text: str, *, double_texting: str | None = None) -> None:
        # Beyond the rate: refused here at once, so a flood is never queued behind the
        # database (which still counts the owner's other sockets and requests).
        refusal = self.rate.refusal()
        if refusal is not None:
            raise refusal
        sent = self.rate.now()
        try:
            submitted = await message_submit(conversation_id=self.conversation_id,
                                              text=text, double_texting=double_texting)
        except BudgetExceeded as exc:
            self.rate.refused(exc)
            raise
        except ConversationBusy as exc:  # refused by the `reject` policy: say which
            self.rate.let_through(at=sent)  # admitted by the quotas all the same
            await self._send({**ErrorEvent(code=exc.code, message=public_message(exc))
                              .as_dict(), "double_texting": REJECT, "seq": None})
            return
        self.rate.let_through(at=sent)
        if submitted.position:  # queued behind the message being answered: say so
            await self._send({**QueuedEvent(
                message_id=submitted.message_id, text=text.strip(),
                position=submitted.position,
                double_texting=submitted.double_texting).as_dict(), "seq": None})

    async def _action(self, message: ActionIn) -> None:
        clicked = await database_call(actions.conversation_click)(
            conversation_id=self.conversation_id, action=message.action,
            machine=str(message.data.get("machine") or ""))
        if clicked.event is not None and clicked.event.get("seq") is not None:
            await self._send_event(clicked.event)
        elif clicked.event is not None:  # numbered once the running message ends
            await self._send({**clicked.event, "seq": None})
        else:
            await self._start(clicked.message)

    async def _approval(self, message: ApprovalIn) -> None:
        # Any socket of the conversation may decide; every one hears `approval_decided`.
        try:
            approval_id = str(uuid.UUID(message.id))
        except ValueError:
            raise ApprovalRefused(f"{message.id!r} is not an approval id") from None
        await approval_submit(conversation_id=self.conversation_id, approval_id=approval_id,
                              decision=message.decision)

    async def _cancel(self, pid: str) -> None:
        await database_call(process_cancel)(conversation_id=self.conversation_id,
                                                     pid=pid)

    async def _resume(self, after_seq: int) -> None:
        # The client has everything up to `after_seq`: a gap is filled from there on,
        # even while the log is still behind it (a running message's events reach
        # sockets before the log).
        self.sent_seq = max(self.sent_seq, after_seq)
        events = await database_call(chat_events_after)(
            conversation_id=self.conversation_id, after_seq=after_seq)
        for event in events:
            await self._send(event)
            self.sent_seq = max(self.sent_seq, event["seq"])

    # --- the conversation's events, from whichever process caused them ----------

    async def chat_events(self, message: dict[str, Any]) -> None:
        """Several consecutive events of this conversation (a pipeline's batch)."""
        for event in message["events"]:
            await self._send_event(event)

    async def _send_event(self, event: dict[str, Any]) -> None:
        """Send a numbered event once, in order; fill a gap from the stored log first.

        Events of one conversation may come from several processes (a worker's
        answer, another tab's click) and the channel layer may drop a message
        for a slow socket; the log has them all.
        """
        seq = event["seq"]
        if seq <= self.sent_seq:
            return  # sent already (by a resume, a gap fill, or this socket itself)
        if seq > self.sent_seq + 1:
            await self._fill_gap(before=seq)
        if seq > self.sent_seq:  # the log may have brought it already
            await self._send(event)
            self.sent_seq = seq

    async def _fill_gap(self, *, before: int) -> None:
        """Send the events between the last one sent and `before` from the log.

        A running message sends its events before its writer stores them (a few
        tens of ms later), so the log may not have them yet: it is read again,
        more slowly each time, for up to `GAP_WAIT_S`. Numbers a dead process
        reserved and never used are not waited for longer than that.
        """
        pause, waited = 0.01, 0.0
        while True:
            missing = await database_call(chat_events_after)(
                conversation_id=self.conversation_id, after_seq=self.sent_seq,
                limit=before - self.sent_seq - 1)
            for earlier in missing:
                if earlier["seq"] >= before:
                    break
                await self._send(earlier)
                self.sent_seq = earlier["seq"]
            if self.sent_seq >= before - 1 or waited >= GAP_WAIT_S:
                return
            await asyncio.sleep(pause)
            waited += pause
            pause = min(pause * 2, 0.5)

    # --- helpers ---------------------------------------------------------------

    async def _send(self, payload: dict[str, Any]) -> None:
        if not self.closed:
            await self.send(text_data=json.dumps(payload, default=str))

    async def _error(self, code: str, message: str, **details: Any) -> None:
        # Answers to this socket's own requests: not conversation events, so no seq.
        await self._send({**ErrorEvent(code=code, message=message, **details).as_dict(),
                          "seq": None})

    async def _fail(self, exc: AgentError | ConversationBusy) -> None:
        """Tell the client why its request was refused: the exception's public code (and
        details: a quota's limit and reset)."""
        details = exc.details() if isinstance(exc, AgentError) else {}
        await self._error(exc.code, public_message(exc), **details)

    async def _close_for(self, exc: AgentError) -> None:
        """Say why, then close with the code's close code (runtime.errors.close_code)."""
        await self._fail(exc)
        await self.close(code=close_code(exc.code))

    def _query(self) -> dict[str, str]:
        from urllib.parse import parse_qs

        raw = self.scope.get("query_string", b"").decode()
        return {k: v[-1] for k, v in parse_qs(raw).items()}

    async def _still_signed_in(self) -> bool:
        if self.scope.get("auth") == "token":
            return True  # a bearer token was checked when the socket connected
        user = self.scope.get("user")
        session = self.scope.get("session")
        user_id = user.pk if user is not None and user.is_authenticated else None
        if user_id is None and session is None:
            return True
        return await database_call(_session_alive)(
            getattr(session, "session_key", None), user_id)


class StaffObserverConsumer(DatabaseCallsOnly, AsyncWebsocketConsumer):
    """A staff-only socket that relays one group's events and accepts no messages."""

    group = ""
    watching: bool = False
    """Whether the socket was let in (staff) and listens."""

    async def connect(self) -> None:
        """Staff only (one database call: who the caller is)."""
        try:
            user = await database_call(socket_user)(self.scope)
            if user is None:
                raise AuthFailed("sign in as staff")
            if not user.is_staff:
                raise Forbidden("only staff may watch this socket")
        except AgentError as exc:
            await socket_refuse(self.base_send, exc)
            return
        self.scope["user"] = user
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        self.watching = True

    async def disconnect(self, code: int) -> None:
        """Leave the group."""
        await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None
                      ) -> None:
        """Observers only listen: say so clearly."""
        await self.send(text_data=json.dumps(ErrorEvent(
            code=BadMessage.code, message="this socket only sends events; it accepts no "
                                          "messages").as_dict()))


class TraceConsumer(StaffObserverConsumer):
    """`/ws/trace`: HUD and frame_trace events of every conversation, for staff."""

    group = TRACE_GROUP

    async def trace_event(self, message: dict[str, Any]) -> None:
        """Relay one HUD or frame_trace event."""
        await self.send(text_data=json.dumps(message["event"], default=str))


TEST_TAIL_S = 0.5
"""How often `/ws/test` reads the stored runs for events no channel layer brought."""


class TestConsumer(StaffObserverConsumer):
    """`/ws/test`: live test-runner progress (suite_start, step_result, suite_end).

    Events come through the channel layer from a runner that shares it, and from
    the database, where every runner stores its checks as it goes: a plain
    `manage.py runtests` beside `make run` has an in-memory layer of its own, so
    only the database carries its progress here. Each event is sent once,
    whichever way it came first.
    """

    group = TEST_GROUP
    tail: asyncio.Task | None = None

    async def connect(self) -> None:
        """Staff only; then follow the stored runs too."""
        await super().connect()
        if self.watching:
            self.seen: set[tuple] = set()
            self.tail = asyncio.create_task(self._tail(since=timezone.now()))
            self.tail.add_done_callback(_log_task_failure)

    async def disconnect(self, code: int) -> None:
        """Stop following the stored runs; leave the group."""
        if self.tail is not None:
            self.tail.cancel()
            await asyncio.gather(self.tail, return_exceptions=True)
        await super().disconnect(code)

    async def test_event(self, message: dict[str, Any]) -> None:
        """Relay one test-runner event (once)."""
        await self._send_once(message["event"])

    async def _send_once(self, event: dict[str, Any]) -> None:
        key = run_event_key(event)
        if key is not None:
            if key in self.seen:
                return
            self.seen.add(key)
        await self.send(text_data=json.dumps(event, default=str))

    async def _tail(self, *, since) -> None:
        sent: dict[int, int] = {}
        while True:
            await asyncio.sleep(TEST_TAIL_S)
            runs = await database_call(runs_followed)(since=since)
            for run_id, events in runs:
                for event in events[sent.get(run_id, 0):]:
                    await self._send_once(event)
                sent[run_id] = len(events)


def _log_task_failure(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("socket task failed", exc_info=task.exception())
