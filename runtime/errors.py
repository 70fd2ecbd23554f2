"""The runtime's exceptions: failures with stable codes, and control flow kept apart.

Every code a client can read is a key of HTTP_STATUS, the one table of what each
code answers over HTTP; a socket sends the same code in its `error` event, and
closes for it with `close_code`. An exception carries its public code (`code`),
so an edge never picks a code or a status by hand: REST answers
`runtime.api.views.ApiError.of(exc)`, a socket `exc.code` and `str(exc)`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

HTTP_STATUS: dict[str, int] = {
    # The caller's request cannot be served as it is.
    "bad_request": 400,
    "graph_invalid": 400,
    "suite_error": 400,
    "unauthenticated": 401,
    "forbidden": 403,
    "csrf_failed": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    # The request is fine but the conversation's (or a recording's) state refuses it now.
    "busy": 409,
    "already_decided": 409,
    "machine_error": 409,
    "replay_impossible": 409,
    "replay_diverged": 409,
    "freeze_impossible": 409,
    "nothing_to_verify": 409,
    "too_large": 413,
    # Our side failed; the message says what, the server log has the traceback.
    "internal": 500,
    "agent_error": 500,
    "graph_error": 500,
    "frame_limit": 500,
    "budget_exceeded": 429,
    "node_failed": 500,
    "db_error": 500,
    "message_lost": 500,
    "worker_lost": 500,
    # The model behind us failed (502) or did not answer in time (504).
    "llm_error": 502,
    "llm_rate_limited": 502,
    "llm_stream_broken": 502,
    "llm_timeout": 504,
    "timeout": 504,
    # No pipeline worker could take the message (DispatchFailed): nothing was stored.
    "unavailable": 503,
}
"""Every public error code and the HTTP status it answers with. `worker_lost` and
`timeout` only name `error` events of a message (no request answers them); the
other control flow (cancelled) is never shown to a client as an error."""


def http_status(code: str) -> int:
    """The HTTP status of a public error code; 500 for a code the table lacks (a test
    keeps it complete for every code an exception declares)."""
    return HTTP_STATUS.get(code, 500)


INTERNAL_MESSAGE = "something went wrong on our side; the details are in the server log"
"""What a client reads when our side failed: the details stay in the log and the trace."""


def public_message(error: Exception) -> str:
    """What a client is told about `error`.

    Its own words when the client can act on them: a refusal (status below 500) or
    `unavailable` (nothing was stored: send again). Otherwise the plain sentence
    INTERNAL_MESSAGE, so no failure's internals (an exception's class, SQL, an
    endpoint's URL) reach a client.
    """
    code = getattr(error, "code", "internal")
    if http_status(code) < 500 or code == "unavailable":
        return str(error)
    return INTERNAL_MESSAGE


def close_code(code: str) -> int:
    """The close code of a socket refused or closed for `code`: 4000 + its HTTP status
    (4400 a bad URL, 4401 sign in again, 4403 not allowed)."""
    return 4000 + http_status(code)


def sorry(what: str) -> str:
    """What the user reads when their message could not be answered: what happened, and
    that they can send it again (nothing else was lost)."""
    return (f"Sorry, I could not finish answering that: {what}. "
            "Nothing else was lost; you can send your message again.")


class AgentError(Exception):
    """A failure of the agent, with a stable `code` and a message fit for a person."""

    code = "agent_error"

    def details(self) -> dict[str, Any]:
        """Fields a client reads beside the code and message (none but for a few refusals,
        e.g. BudgetExceeded's limit and reset)."""
        return {}


class LLMError(AgentError):
    """The model could not be reached or answered with something unusable."""

    code = "llm_error"


class LLMTimeout(LLMError):
    """The model did not answer in time."""

    code = "llm_timeout"


class LLMRateLimited(LLMError):
    """The model's endpoint kept answering 429 after every retry."""

    code = "llm_rate_limited"


class LLMStreamBroken(LLMError):
    """A streamed answer broke off before it finished."""

    code = "llm_stream_broken"


class ReplayDiverged(AgentError):
    """A replay needs a model call its recording does not hold (the graph changed since)."""

    code = "replay_diverged"

    def __init__(self, node: str, call: int) -> None:
        super().__init__(f"the replay diverged at node {node!r}, model call {call}: the "
                         "recording holds no such call (the graph changed since it was made)")
        self.node = node
        self.call = call


class AuthFailed(AgentError):
    """The caller is not signed in, or sent a token that does not work."""

    code = "unauthenticated"


class Forbidden(AgentError):
    """The caller is known but may not do this."""

    code = "forbidden"


class RatingRefused(AgentError):
    """A rating that cannot be stored: a bad value or comment."""

    code = "bad_request"


class AnswerNotFound(RatingRefused):
    """A rating of an answer the conversation does not have."""

    code = "not_found"


class ControlNotFound(AgentError):
    """The conversation offers no such control (or no such machine button)."""

    code = "not_found"


class GraphError(AgentError):
    """A graph definition is invalid or cannot be run."""

    code = "graph_error"


class GraphNotFound(GraphError):
    """No graph of that name is stored; the message lists the known ones."""

    code = "not_found"


class FrameLimitExceeded(AgentError):
    """A message ran more frames than the configured limit."""

    code = "frame_limit"


class BudgetExceeded(AgentError):
    """A limit of a message's budget (runtime.engine.budget) or of its owner's quotas
    (runtime.conversations.quotas) was reached: `what` says which, for the user.

    `setting`, when given, is added to the message for the trace (a message stopped
    midway); a refusal at the door leaves it out and says instead `limit` (which one, e.g.
    `messages_per_minute`), `retry_after_s` (seconds until it lets a message in again) and
    `resets_at` (then, in UTC), which every edge passes on (`details`).
    """

    code = "budget_exceeded"

    def __init__(self, what: str, *, setting: str = "", limit: str = "",
                 retry_after_s: float | None = None, resets_at: datetime | None = None
                 ) -> None:
        super().__init__(f"{what} ({setting})" if setting else what)
        self.what = what
        self.setting = setting
        self.limit = limit
        self.retry_after_s = retry_after_s
        self.resets_at = resets_at

    def details(self) -> dict[str, Any]:
        """What a client reads beside the code and message: the limit, and when it resets
        (only those known)."""
        details: dict[str, Any] = {}
        if self.limit:
            details["limit"] = self.limit
        if self.retry_after_s is not None:
            details["retry_after_s"] = round(max(self.retry_after_s, 0.0), 3)
        if self.resets_at is not None:
            details["resets_at"] = self.resets_at.astimezone(UTC).isoformat()
        return details


class NodeFailed(AgentError):
    """A node raised while running; the original exception is its `__cause__`."""

    code = "node_failed"

    def __init__(self, node: str, frame: int, error: BaseException) -> None:
        self.node = node
        self.frame = frame
        self.error = error
        super().__init__(f"node {node!r} failed in frame {frame}: {type(error).__name__}: {error}")


class DatabaseToolError(AgentError):
    """A query through the shared db module was refused or failed."""

    code = "db_error"


class ControlFlow(Exception):
    """Not a failure: a signal that changes what the runtime does next."""


BUSY_MESSAGE = ("a message is already being answered in this conversation; "
                "try again once it is done")
"""What every edge says when the conversation is busy, whatever was refused."""


class ConversationBusy(ControlFlow):
    """A pipeline is already running for this conversation; its message is BUSY_MESSAGE."""

    code = "busy"

    def __init__(self) -> None:
        super().__init__(BUSY_MESSAGE)


class MessageLost(AgentError):
    """The message's busy flag was taken from its pipeline (its process was presumed dead).

    The failure was already recorded and announced by whoever took the flag, so
    the pipeline stores nothing and says nothing more.
    """

    code = "message_lost"


class DispatchFailed(AgentError):
    """A message could not be handed to a pipeline worker; nothing was stored."""

    code = "unavailable"


class Cancelled(ControlFlow):
    """The user or the system cancelled a running pipeline or process."""

    code = "cancelled"


class QueryCancelled(Cancelled):
    """A running query was cancelled through its handle (a `cancel_process`)."""

    code = "query_cancelled"
