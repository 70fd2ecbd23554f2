"""The runtime's exceptions: failures with stable codes, and control flow kept apart."""

from __future__ import annotations


def sorry(what: str) -> str:
    """What the user reads when their message could not be answered: what happened, and
    that they can send it again (nothing else was lost)."""
    return (f"Sorry, I could not finish answering that: {what}. "
            "Nothing else was lost; you can send your message again.")


class AgentError(Exception):
    """A failure of the agent, with a stable `code` and a message fit for a person."""

    code = "agent_error"


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


class RatingRefused(AgentError):
    """A rating that cannot be stored: no such answer, or a bad value or comment."""

    code = "bad_request"


class ControlNotFound(AgentError):
    """The conversation offers no such control (or no such machine button)."""

    code = "not_found"


class GraphError(AgentError):
    """A graph definition is invalid or cannot be run."""

    code = "graph_error"


class FrameLimitExceeded(AgentError):
    """A message ran more frames than the configured limit."""

    code = "frame_limit"


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


class ConversationBusy(ControlFlow):
    """A pipeline is already running for this conversation."""

    code = "busy"


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
