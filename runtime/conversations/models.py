"""Per-conversation state: everything a pipeline needs, persisted."""

from __future__ import annotations

import uuid
from types import MappingProxyType

from django.conf import settings
from django.db import models
from django.db.models import Q

FLAG_FREE = MappingProxyType({"busy_since": None, "busy_beat": None, "busy_token": "",
                              "busy_message_id": "", "busy_text": "", "busy_worker": "",
                              "busy_stop": "", "busy_waiting": None})
"""A conversation's busy flag given back: the fields of its row, as an UPDATE sets them
(runtime.conversations.busy)."""


class Conversation(models.Model):
    """One user's chat: history, memory, UI state, machines, graph and busy flag."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE,
        related_name="conversations",
    )
    session_key = models.CharField(
        max_length=64, blank=True, help_text="Owner of an anonymous conversation."
    )
    chat = models.CharField(max_length=80, default="main")
    graph_name = models.CharField(max_length=80)
    memory = models.JSONField(default=dict, blank=True)
    ui_state = models.JSONField(default=dict, blank=True)
    expert_state = models.JSONField(
        default=dict, blank=True, help_text="Per-expert caches, e.g. described table schemas."
    )
    # The busy flag: one message at a time per conversation (see runtime.conversations.services).
    busy_since = models.DateTimeField(null=True, blank=True,
                                      help_text="When the running message was submitted.")
    busy_token = models.CharField(max_length=64, blank=True)
    busy_message_id = models.CharField(max_length=36, blank=True,
                                       help_text="The message being answered.")
    busy_text = models.TextField(blank=True, help_text="Its text, kept if its worker is lost.")
    busy_worker = models.CharField(
        max_length=200, blank=True,
        help_text="The process answering it (host:pid); empty while it waits for a worker.")
    busy_beat = models.DateTimeField(null=True, blank=True,
                                     help_text="The answering process's last sign of life.")
    busy_waiting = models.DateTimeField(
        null=True, blank=True,
        help_text="Set while the running message waits for a person's approval of a tool "
                  "call: until when (then it is declined). A waiting flag is never reaped.")
    busy_stop = models.CharField(
        max_length=16, blank=True,
        help_text="Set when a newer message asked the running one to stop: the "
                  "double-texting policy (interrupt or rollback) it asked with.")
    last_message_at = models.DateTimeField(null=True, blank=True)
    score = models.PositiveSmallIntegerField(
        null=True, blank=True, choices=[(n, f"{n}/5") for n in range(1, 6)],
        help_text="A builder's score of the conversation as a whole (1 to 5).")
    score_note = models.TextField(blank=True, help_text="Why that score.")
    event_seq = models.PositiveBigIntegerField(
        default=0, help_text="The last sequence number of a stored chat event.")
    event_reserved = models.PositiveBigIntegerField(
        default=0, help_text="Numbers up to here may have been sent by a running message and "
                             "not stored yet: a new event is numbered after both.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            # The reaper looks for held flags every few seconds: only those are indexed.
            models.Index(fields=["busy_beat"], condition=~Q(busy_token=""),
                         name="runtime_conversation_busy"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "chat"], condition=Q(user__isnull=False),
                name="runtime_conversation_user_chat",
            ),
            models.UniqueConstraint(
                fields=["session_key", "chat"], condition=Q(user__isnull=True),
                name="runtime_conversation_session_chat",
            ),
            models.CheckConstraint(
                condition=Q(user__isnull=False) | ~Q(session_key=""),
                name="runtime_conversation_has_owner",
            ),
        ]

    def __str__(self) -> str:
        owner = self.user.get_username() if self.user_id else f"anonymous {self.session_key[:8]}"
        return f"{owner} / {self.chat}"


class Message(models.Model):
    """One message of a conversation's history."""

    class Role(models.TextChoices):
        USER = "user"
        ASSISTANT = "assistant"

    class Status(models.TextChoices):
        OK = "ok"
        ERROR = "error"

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE,
                                     related_name="messages")
    message_id = models.UUIDField(db_index=True)
    role = models.CharField(max_length=16, choices=Role.choices)
    text = models.TextField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OK)
    controls = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.role}: {self.text[:60]}"


class Rating(models.Model):
    """A user's thumbs up or down on one answer, with an optional comment (one per answer)."""

    class Value(models.IntegerChoices):
        UP = 1, "up"
        DOWN = -1, "down"

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE,
                                     related_name="ratings")
    message_id = models.UUIDField(help_text="The answer rated.")
    value = models.SmallIntegerField(choices=Value.choices)
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]
        constraints = [models.UniqueConstraint(fields=["conversation", "message_id"],
                                               name="runtime_rating_one_per_answer")]

    def __str__(self) -> str:
        return f"{self.get_value_display()} on {self.message_id}"


class Process(models.Model):
    """A long tool run (a query) with a pid, progress and a way to cancel it."""

    class Status(models.TextChoices):
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"
        CANCELLED = "cancelled"

    pid = models.CharField(max_length=32, unique=True)
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE,
                                     related_name="processes")
    message_id = models.UUIDField(db_index=True)
    node = models.CharField(max_length=80)
    description = models.TextField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    cancel_requested = models.BooleanField(default=False)
    detail = models.TextField(blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.pid} {self.status}: {self.description[:60]}"


class QueuedMessage(models.Model):
    """A message sent while its conversation answered another, waiting its turn (the
    `enqueue`, `interrupt` and `rollback` double-texting policies,
    runtime.conversations.queueing)."""

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE,
                                     related_name="queued_messages")
    message_id = models.CharField(max_length=36, unique=True)
    text = models.TextField()
    front = models.BooleanField(
        default=False, help_text="Sent with `interrupt` or `rollback`: answered before the "
                                 "messages queued with `enqueue`.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-front", "id"]

    def __str__(self) -> str:
        return f"{self.conversation_id}: {self.message_id} (queued)"


class ChatEvent(models.Model):
    """An event sent on a conversation's chat socket, kept so a client can resume."""

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE,
                                     related_name="events")
    seq = models.PositiveBigIntegerField(
        null=True, blank=True,
        help_text="Its number; empty while it waits for the running message to end.")
    type = models.CharField(max_length=32)
    payload = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["conversation", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["conversation", "seq"], name="runtime_event_seq"),
        ]

    def __str__(self) -> str:
        return f"{self.conversation_id}#{self.seq} {self.type}"


class OIDCIdentity(models.Model):
    """A user's identity at an OIDC provider: users are matched on (issuer, sub)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="oidc_identities")
    issuer = models.CharField(max_length=255)
    sub = models.CharField(max_length=255)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["issuer", "sub"], name="runtime_oidc_identity"),
        ]

    def __str__(self) -> str:
        return f"{self.sub} @ {self.issuer}"


class ApiToken(models.Model):
    """A bearer token for API clients; only its SHA-256 hash is stored."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="api_tokens")
    name = models.CharField(max_length=80, blank=True, help_text="What the token is for.")
    key_hash = models.CharField(max_length=64, unique=True,
                                help_text="SHA-256 hex digest of the token.")
    prefix = models.CharField(max_length=8, help_text="The token's first characters, to "
                                                      "recognise it.")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.name or 'unnamed'})"


class UserQuota(models.Model):
    """A user's own quotas, in place of the AGENTSITE_USER_* settings
    (runtime.conversations.quotas): each left empty follows its setting; 0 is no limit."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                                related_name="quota")
    messages_per_minute = models.PositiveIntegerField(
        null=True, blank=True,
        help_text="Messages admitted in any 60 s. Empty: AGENTSITE_USER_MESSAGES_PER_MINUTE; "
                  "0: no limit.")
    concurrent_messages = models.PositiveIntegerField(
        null=True, blank=True,
        help_text="Messages being answered at once, across the user's chats. Empty: "
                  "AGENTSITE_USER_CONCURRENT_MESSAGES; 0: no limit.")
    tokens_per_day = models.PositiveBigIntegerField(
        null=True, blank=True,
        help_text="Tokens of the user's messages per UTC day. Empty: "
                  "AGENTSITE_USER_TOKENS_PER_DAY; 0: no limit.")
    note = models.CharField(max_length=200, blank=True, help_text="Why this user differs.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["user__username"]

    def __str__(self) -> str:
        return f"quotas of {self.user}"


class QuotaOwner(models.Model):
    """An owner (a user, or an anonymous visitor's session) whose messages are admitted
    under quotas: each admission locks this row first, so an owner's messages are
    admitted one at a time, whichever process receives them."""

    key = models.CharField(max_length=80, unique=True,
                           help_text="`user:<id>` or `session:<session key>`.")
    admitted_at = models.DateTimeField(help_text="When a message of theirs was last admitted.")

    def __str__(self) -> str:
        return self.key


class Admission(models.Model):
    """A message let in by its owner's quotas (refused ones are not kept): the last
    minute's are its owner's rate; older ones are pruned as new ones come."""

    owner = models.CharField(max_length=80, help_text="The QuotaOwner's key.")
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE,
                                     related_name="admissions")
    message_id = models.CharField(max_length=36)
    admitted_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["owner", "admitted_at"], name="runtime_admission_owner")]

    def __str__(self) -> str:
        return f"{self.owner} {self.admitted_at:%H:%M:%S} {self.message_id}"


class Approval(models.Model):
    """A message paused before a tool call that waits for a person's approval
    (runtime.conversations.approvals): what waits, why, and where its engine stood."""

    class Decision(models.TextChoices):
        APPROVE = "approve"
        DENY = "deny"
        TIMEOUT = "timeout", "no decision in time"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE,
                                     related_name="approvals")
    message_id = models.CharField(max_length=36, db_index=True)
    text = models.TextField(help_text="The user's message.")
    node = models.CharField(max_length=80, help_text="The node whose tool call waits.")
    tool = models.CharField(max_length=80)
    args = models.JSONField(default=dict, blank=True)
    step = models.TextField(help_text="The call as the user reads it.")
    reason = models.TextField(help_text="Which approval rule of the graph asked.")
    token = models.CharField(max_length=64, help_text="The busy flag's token it holds.")
    state = models.JSONField(
        default=dict, blank=True,
        help_text="What the message resumes from: the turn it met, the frames done, the "
                  "paused frame's model calls.")
    decision = models.CharField(max_length=16, choices=Decision.choices, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(help_text="Declined when nobody decided by then.")

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["expires_at"], condition=Q(decision=""),
                                name="runtime_approval_undecided")]

    def __str__(self) -> str:
        return f"{self.step[:60]} ({self.decision or 'waiting'})"
