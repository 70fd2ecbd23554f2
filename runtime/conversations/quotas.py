"""Each owner's quotas: messages per minute, messages answered at once, tokens per day.

An owner is a user (by session or bearer token) or an anonymous visitor's session,
and the quotas hold across all their chats and every process:

- `message_admit` (called by `message_submit`, the one entry of every surface)
  admits a message before it takes its conversation's busy flag, or raises
  BudgetExceeded saying which limit, for a person, and when it resets. A refused
  message stores nothing; an admitted one is recorded (`Admission`), whatever the
  conversation then does with it (answered, queued, refused as busy): that record
  is the owner's rate. The owner's admissions lock the owner's `QuotaOwner` row
  first, inside one transaction, so two messages at once are decided one after the
  other (PostgreSQL's row lock; SQLite's one writer).
- `quota_day_tokens` gives a starting message what its owner may still spend today,
  so a message that would cross the daily limit stops midway, as a message's own
  token budget stops it (runtime.engine.budget).
- `SocketRate` lets a chat socket refuse frames beyond the rate at once, from what
  it let through itself, without waiting on the database.

Limits are the AGENTSITE_USER_* settings, or a user's own (`UserQuota`, in the
admin; anonymous visitors have the settings). With every setting 0 quotas are off:
nothing here reaches the database, and the overrides are not read.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q, Subquery, Sum
from django.utils import timezone

from runtime.conversations.busy import busy_live
from runtime.conversations.dbcalls import database_call
from runtime.conversations.models import Admission, Conversation, QuotaOwner, UserQuota
from runtime.conversations.writes import retrying
from runtime.engine.budget import DayTokens, duration_words
from runtime.errors import BudgetExceeded
from traces.models import MessageTrace

MESSAGES_PER_MINUTE = "messages_per_minute"
CONCURRENT_MESSAGES = "concurrent_messages"
TOKENS_PER_DAY = "tokens_per_day"
"""The limits' names, as BudgetExceeded.limit and the error events and bodies say them."""

WINDOW = timedelta(minutes=1)
"""The rate's window: admissions older than this no longer count (and are pruned)."""
CONCURRENT_RETRY_S = 2.0
"""When to try again after a refusal for messages running at once (their end is not
known in advance)."""
STARTING = timedelta(seconds=10)
"""How long an admitted message counts as running before it holds its conversation's
flag: between its admission and its flag a second message must see it, or two could
pass at the last free place."""


@dataclass(frozen=True)
class Limits:
    """An owner's limits (0: no limit)."""

    messages_per_minute: int
    """Messages admitted in any 60 s."""
    concurrent_messages: int
    """Messages being answered at once, across their chats."""
    tokens_per_day: int
    """Tokens of their stored traces per UTC day."""

    @property
    def off(self) -> bool:
        """Whether none of them limits anything."""
        return not (self.messages_per_minute or self.concurrent_messages
                    or self.tokens_per_day)


def limits_from_settings() -> Limits:
    """The limits every owner has unless the admin gave a user their own."""
    return Limits(messages_per_minute=settings.AGENTSITE_USER_MESSAGES_PER_MINUTE,
                  concurrent_messages=settings.AGENTSITE_USER_CONCURRENT_MESSAGES,
                  tokens_per_day=settings.AGENTSITE_USER_TOKENS_PER_DAY)


def quotas_on() -> bool:
    """Whether any AGENTSITE_USER_* limit is set (otherwise quotas cost nothing)."""
    return not limits_from_settings().off


def _limits_with(own: dict[str, int | None]) -> Limits:
    """The settings' limits, each replaced by the user's own where they have one."""
    default = limits_from_settings()
    return Limits(**{name: default_value if own.get(name) is None else int(own[name])
                     for name, default_value in vars(default).items()})


def quota_limits(*, user_id: int | None) -> Limits:
    """An owner's limits: a user's own (one query), else the settings'."""
    if user_id is None or not quotas_on():
        return limits_from_settings()
    own = UserQuota.objects.filter(user_id=user_id).values(*vars(limits_from_settings())).first()
    return _limits_with(own or {})


@dataclass(frozen=True)
class OwnerQuotas:
    """A conversation's owner and their limits."""

    user_id: int | None
    """Their user (None: an anonymous visitor)."""
    session_key: str
    """The visitor's session key ("" for a user)."""
    limits: Limits
    """Their limits."""

    @property
    def key(self) -> str:
        """Their `QuotaOwner` key."""
        return f"user:{self.user_id}" if self.user_id is not None else f"session:{self.session_key}"

    def conversations(self, prefix: str = "") -> Q:
        """Their conversations (`prefix`: the lookup to the conversation, e.g.
        `conversation__`)."""
        if self.user_id is not None:
            return Q(**{f"{prefix}user_id": self.user_id})
        return Q(**{f"{prefix}user__isnull": True, f"{prefix}session_key": self.session_key})


def _owner_quotas(*, conversation_id: int) -> OwnerQuotas | None:
    """The conversation's owner with their limits, in one query (None: no such
    conversation; whoever sends to it finds out)."""
    names = tuple(vars(limits_from_settings()))
    row = (Conversation.objects.filter(pk=conversation_id)
           .values("user_id", "session_key", *(f"user__quota__{name}" for name in names))
           .first())
    if row is None:
        return None
    own = {name: row[f"user__quota__{name}"] for name in names}
    return OwnerQuotas(user_id=row["user_id"], session_key=row["session_key"],
                       limits=_limits_with(own))


async def message_admit(*, conversation_id: int, message_id: str) -> None:
    """Admit a message for its conversation's owner (one database call; none while quotas
    are off), or raise BudgetExceeded: which limit, when it resets; nothing stored."""
    if quotas_on():
        await database_call(quota_admit)(conversation_id=conversation_id,
                                         message_id=message_id)


def quota_check(*, conversation_id: int, now: datetime | None = None) -> None:
    """BudgetExceeded when a message sent now would be refused by its owner's quotas;
    nothing is recorded (`/api/send/check`). No query while quotas are off."""
    if not quotas_on():
        return
    owner = _owner_quotas(conversation_id=conversation_id)
    if owner is None or owner.limits.off:
        return
    now = now or timezone.now()
    refusal = (_rate_refusal(owner, now=now)
               or _running_refusal(owner, conversation_id=conversation_id, now=now)
               or _day_refusal(owner, now=now))
    if refusal is not None:
        raise refusal


def quota_admit(*, conversation_id: int, message_id: str, now: datetime | None = None
                ) -> None:
    """`message_admit` on a database thread (`now` only in tests)."""
    owner = _owner_quotas(conversation_id=conversation_id)
    if owner is None or owner.limits.off:
        return
    _admit(owner=owner, conversation_id=conversation_id, message_id=message_id,
           now=now or timezone.now())


@retrying
@transaction.atomic
def _admit(*, owner: OwnerQuotas, conversation_id: int, message_id: str, now: datetime
           ) -> None:
    """Lock the owner's row, check each limit, record the admission and prune the old
    ones; a refusal rolls it all back."""
    QuotaOwner.objects.bulk_create(
        [QuotaOwner(key=owner.key, admitted_at=now)], update_conflicts=True,
        unique_fields=["key"], update_fields=["admitted_at"])
    refusal = (_rate_refusal(owner, now=now)
               or _running_refusal(owner, conversation_id=conversation_id, now=now)
               or _day_refusal(owner, now=now))
    if refusal is not None:
        raise refusal
    Admission.objects.filter(owner=owner.key, admitted_at__lte=now - WINDOW).delete()
    Admission.objects.create(owner=owner.key, conversation_id=conversation_id,
                             message_id=message_id, admitted_at=now)


def rate_exceeded(*, limit: int, wait_s: float, resets_at: datetime) -> BudgetExceeded:
    """The refusal of a message beyond the owner's rate (the database's or a socket's)."""
    return BudgetExceeded(
        f"you sent {limit} messages in the last minute; the limit is {limit}. Try again "
        f"in {duration_words(wait_s)}", limit=MESSAGES_PER_MINUTE, retry_after_s=wait_s,
        resets_at=resets_at)


def _rate_refusal(owner: OwnerQuotas, *, now: datetime) -> BudgetExceeded | None:
    """Refused when `limit` messages were admitted in the last minute: until the oldest of
    them leaves the window."""
    limit = owner.limits.messages_per_minute
    if not limit:
        return None
    latest = list(Admission.objects.filter(owner=owner.key, admitted_at__gt=now - WINDOW)
                  .order_by("-admitted_at").values_list("admitted_at", flat=True)[:limit])
    if len(latest) < limit:
        return None
    resets_at = latest[-1] + WINDOW
    return rate_exceeded(limit=limit, wait_s=(resets_at - now).total_seconds(),
                         resets_at=resets_at)


def running_elsewhere(owner: OwnerQuotas, *, conversation_id: int | None = None,
                      now: datetime) -> int:
    """How many of the owner's conversations (but `conversation_id`) are answering a
    message: their flag held and not lost, or a message admitted in the last `STARTING`
    that has not taken the flag yet nor ended since."""
    recent = Admission.objects.filter(conversation_id=OuterRef("pk"),
                                      admitted_at__gt=now - STARTING)
    not_ended = (Q(last_message_at__isnull=True) & Exists(recent)) | Exists(
        recent.filter(admitted_at__gt=OuterRef("last_message_at")))
    rows = Conversation.objects.filter(owner.conversations()).filter(
        busy_live() | (Q(busy_token="") & not_ended))
    if conversation_id is not None:
        rows = rows.exclude(pk=conversation_id)
    return rows.count()


def _running_refusal(owner: OwnerQuotas, *, conversation_id: int, now: datetime
                     ) -> BudgetExceeded | None:
    """Refused when the owner's other chats answer `limit` messages already (a message
    sent where one runs does not run beside it: it is queued or refused as busy)."""
    limit = owner.limits.concurrent_messages
    if not limit:
        return None
    running = running_elsewhere(owner, conversation_id=conversation_id, now=now)
    if running < limit:
        return None
    return BudgetExceeded(
        f"you have {running} messages being answered at once; the limit is {limit}. Try "
        "again when one of them is done", limit=CONCURRENT_MESSAGES,
        retry_after_s=CONCURRENT_RETRY_S, resets_at=now + timedelta(seconds=CONCURRENT_RETRY_S))


def next_midnight(now: datetime) -> datetime:
    """The next UTC midnight after `now`: when a day's tokens start again."""
    day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return day + timedelta(days=1)


def tokens_today(owner: OwnerQuotas, *, now: datetime) -> int:
    """The tokens (prompt + completion) of the owner's stored traces since the last UTC
    midnight; a builder's replays of their messages are not theirs."""
    since = next_midnight(now) - timedelta(days=1)
    spent = (MessageTrace.objects.filter(owner.conversations("conversation__"),
                                         created_at__gte=since, replay_of__isnull=True)
             .aggregate(total=Sum(F("prompt_tokens") + F("completion_tokens"))))["total"]
    return int(spent or 0)


def _day_refusal(owner: OwnerQuotas, *, now: datetime) -> BudgetExceeded | None:
    """Refused when the owner's tokens today reached their daily limit: until midnight UTC."""
    limit = owner.limits.tokens_per_day
    if not limit:
        return None
    spent = tokens_today(owner, now=now)
    if spent < limit:
        return None
    resets_at = next_midnight(now)
    wait = (resets_at - now).total_seconds()
    return BudgetExceeded(
        f"you used {spent} tokens today; the limit is {limit} a day. It resets at midnight "
        f"UTC, in {duration_words(wait)}", limit=TOKENS_PER_DAY, retry_after_s=wait,
        resets_at=resets_at)


def quota_day_annotation() -> dict[str, Any]:
    """For a starting message's read of its conversation: its user's own tokens-per-day
    limit, as `quota_tokens_per_day` (nothing while quotas are off), so that
    `quota_day_tokens` needs no query of its own unless a daily limit applies."""
    if not quotas_on():
        return {}
    own = UserQuota.objects.filter(user_id=OuterRef("user_id")).values("tokens_per_day")[:1]
    return {"quota_tokens_per_day": Subquery(own)}


def quota_day_tokens(*, conversation: Conversation, now: datetime) -> DayTokens | None:
    """What the conversation's owner may still spend today, for the message's budget (None:
    no daily limit). `conversation` was read with `quota_day_annotation()`."""
    if not quotas_on():
        return None
    own = getattr(conversation, "quota_tokens_per_day", None)
    limit = settings.AGENTSITE_USER_TOKENS_PER_DAY if own is None else int(own)
    if not limit:
        return None
    owner = OwnerQuotas(user_id=conversation.user_id, session_key=conversation.session_key,
                        limits=limits_from_settings())
    spent = tokens_today(owner, now=now)
    return DayTokens(limit=limit, left=max(limit - spent, 0), resets_at=next_midnight(now))


@dataclass(frozen=True)
class QuotaUsage:
    """What an owner uses of their quotas now (the admin shows it)."""

    messages_last_minute: int
    """Messages admitted in the last 60 s."""
    running: int
    """Messages being answered now, across their chats."""
    tokens_today: int
    """Tokens of their traces since the last UTC midnight."""


def quota_usage(*, user_id: int | None, session_key: str = "", now: datetime | None = None
                ) -> QuotaUsage:
    """An owner's usage of their quotas (three queries)."""
    now = now or timezone.now()
    owner = OwnerQuotas(user_id=user_id, session_key=session_key,
                        limits=limits_from_settings())
    recent = Admission.objects.filter(owner=owner.key, admitted_at__gt=now - WINDOW).count()
    return QuotaUsage(messages_last_minute=recent, running=running_elsewhere(owner, now=now),
                      tokens_today=tokens_today(owner, now=now))


class SocketRate:
    """A chat socket's own count of the messages it let through in the last minute.

    A frame beyond the owner's rate is refused at once, without waiting on the database
    and behind nothing, so a flood is refused as fast as it comes instead of queued.
    It counts only this socket's messages, so it never refuses what the database would
    admit; the database still counts every socket and request of the owner, and when it
    refuses for the rate this socket refuses too until that refusal's reset. One per
    connection (per-connection state, on the consumer).
    """

    def __init__(self, *, limit: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        """The owner's messages per minute when the socket connected (0: no limit)."""
        self.clock = clock
        self.sent: deque[float] = deque()
        """When each message it let through in the last minute was sent (clock)."""
        self.closed_until = 0.0
        """Until when the database's last refusal for the rate holds (clock)."""

    def now(self) -> float:
        """The socket's clock (monotonic)."""
        return self.clock()

    def refusal(self) -> BudgetExceeded | None:
        """The refusal of a message sent now, or None to send it on."""
        now = self.clock()
        while self.sent and self.sent[0] <= now - WINDOW.total_seconds():
            self.sent.popleft()
        wait = self.closed_until - now
        if self.limit and len(self.sent) >= self.limit:
            wait = max(wait, self.sent[0] + WINDOW.total_seconds() - now)
        if wait <= 0:
            return None
        return rate_exceeded(limit=self.limit, wait_s=wait,
                             resets_at=timezone.now() + timedelta(seconds=wait))

    def let_through(self, *, at: float) -> None:
        """Count a message sent at `at` (the clock) that the database admitted."""
        if self.limit:
            self.sent.append(at)

    def refused(self, refusal: BudgetExceeded) -> None:
        """The database refused a message: for the rate, refuse here too until it resets."""
        if refusal.limit == MESSAGES_PER_MINUTE and refusal.retry_after_s:
            self.closed_until = max(self.closed_until, self.clock() + refusal.retry_after_s)
