"""Reads of traces."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import DecimalField, OuterRef, Q, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce

from runtime.conversations.models import Conversation, Rating
from traces.models import FrameRow, MessageTrace

# A bar narrower than this (percent of the timeline) could not be seen or hovered.
TIMELINE_MIN_BAR_PCT = 0.5


def trace_list_for_conversation(*, conversation_id: int, last: int = 20) -> QuerySet[MessageTrace]:
    """The conversation's latest traces, newest first, with their frames prefetched."""
    return (
        MessageTrace.objects.filter(conversation_id=conversation_id)
        .prefetch_related("frames")
        .order_by("-created_at", "-id")[:last]
    )


def trace_get(*, message_id: str) -> MessageTrace | None:
    """One trace by message id, with its frames."""
    return MessageTrace.objects.prefetch_related("frames").filter(message_id=message_id).first()


@dataclass(frozen=True)
class TimelineBar:
    """One frame record drawn to scale on its trace's timeline."""

    record: FrameRow
    """The frame record the bar stands for."""
    left_pct: float
    """Where the bar starts, in percent of the timeline's width."""
    width_pct: float
    """How wide the bar is, in percent of the timeline's width (at least the minimum)."""

    # The bars are SVG rectangles in a 0..100 wide view box: their geometry is markup
    # (x, width), not inline CSS, which the Content-Security-Policy refuses. Formatted
    # here, so the locale's decimal separator never reaches an attribute.

    @property
    def x(self) -> str:
        """Where the bar starts, in the timeline's 0..100 view box."""
        return f"{self.left_pct:.2f}"

    @property
    def width(self) -> str:
        """The bar's width, in the timeline's 0..100 view box."""
        return f"{self.width_pct:.2f}"

    @property
    def llm_width(self) -> str:
        """The width of the bar's share spent waiting on the model, from the bar's start."""
        duration = self.record.duration_ms
        share = min(self.record.llm_ms / duration, 1.0) if duration > 0 else 0.0
        return f"{self.width_pct * share:.2f}"


@dataclass(frozen=True)
class TimelineFrame:
    """The bars of one frame, one row per record, in graph order."""

    frame: int
    """The frame number (1-based)."""
    bars: tuple[TimelineBar, ...]
    """One bar per node that ran in this frame."""


@dataclass(frozen=True)
class QueryTable:
    """One query a node ran, with the rows its output keeps, for the trace page."""

    sql: str
    """The query."""
    columns: tuple[str, ...]
    """Its column names."""
    rows: tuple[tuple[Any, ...], ...]
    """The rows the node kept (at most 100)."""
    row_count: int
    """How many rows the query gave."""
    truncated: bool = False
    """It had more rows than the database's row limit."""


def query_tables(output: Any) -> tuple[QueryTable, ...]:
    """The queries a node's output records with their rows: the v3 thinker's `sql` and
    `result`, an expert's successful `query` tool calls."""
    if not isinstance(output, dict):
        return ()
    found = []
    runs = [(output.get("sql"), output.get("result"))]
    runs.extend((call.get("args", {}).get("sql"), call.get("data"))
                for call in output.get("tool_calls") or ()
                if isinstance(call, dict) and call.get("tool") == "query" and call.get("ok"))
    for sql, result in runs:
        if not sql or not isinstance(result, dict) or "columns" not in result:
            continue
        found.append(QueryTable(
            sql=str(sql), columns=tuple(str(c) for c in result["columns"]),
            rows=tuple(tuple(row) for row in result.get("rows") or ()),
            row_count=int(result.get("row_count") or 0),
            truncated=bool(result.get("truncated"))))
    return tuple(found)


@dataclass(frozen=True)
class FrameDetail:
    """One frame record with its JSON payloads ready to show."""

    record: FrameRow
    """The stored frame record."""
    input_json: str
    """The node's input, pretty-printed."""
    output_json: str
    """The node's output, pretty-printed."""

    @property
    def queries(self) -> tuple[QueryTable, ...]:
        """The queries it ran, with their rows."""
        return query_tables(self.record.output)


@dataclass(frozen=True)
class FrameComparison:
    """One frame record of a replay beside the original's at the same place."""

    frame: int
    """The frame number."""
    node: str
    """The node (the replay's, or the original's where the replay has none)."""
    before: str
    """The original's decision ("" where it has no record here)."""
    after: str
    """The replay's decision ("" where it has no record here)."""
    same: bool
    """Whether node, decision and output are the same."""
    before_tokens: int = 0
    """The original's tokens (prompt + completion)."""
    after_tokens: int = 0
    """The replay's tokens."""
    before_ms: float = 0.0
    """The original's duration."""
    after_ms: float = 0.0
    """The replay's duration."""


@dataclass(frozen=True)
class TruthNote:
    """A message's data answer's truth, as its nodes recorded it."""

    nodes: tuple[str, ...]
    """The nodes that recorded it (the planner, the answerer)."""
    outcome: str
    """grounded, repaired, replaced (by the result's plain reading) or abstained."""
    ungrounded: tuple[str, ...] = ()
    """The words the model stated that the results did not hold."""
    hints: tuple[str, ...] = ()
    """The value hints the planner was given."""
    misses: tuple[str, ...] = ()
    """What the first query ignored of the question."""
    repaired_from: str = ""
    """The first query, when a repair replaced it."""
    candidates: tuple[dict, ...] = ()
    """The candidate queries with their votes."""
    examples: tuple[str, ...] = ()
    """The verified examples' questions the planner was shown."""


@dataclass(frozen=True)
class TracePage:
    """Everything the admin's trace page shows, fetched in a constant number of queries."""

    trace: MessageTrace
    """The trace, with its conversation and the conversation's user."""
    frames: tuple[FrameDetail, ...]
    """Its frame records in stored order."""
    timeline: tuple[TimelineFrame, ...]
    """The records grouped by frame and drawn to scale."""
    scale_ms: float
    """The milliseconds the timeline's full width stands for."""
    previous_id: int | None
    """The conversation's trace just before this one, if any."""
    next_id: int | None
    """The conversation's trace just after this one, if any."""
    replays: tuple[int, ...] = ()
    """The traces that replay this one, newest first."""
    rating: Rating | None = None
    """The user's rating of this answer, if any."""
    comparison: tuple[FrameComparison, ...] = ()
    """For a replay: its records beside the original's, place by place."""

    @property
    def ticks(self) -> tuple[tuple[int, float], ...]:
        """(percent, ms) marks for the timeline's axis: 0, a quarter, ... the whole."""
        return tuple((pct, self.scale_ms * pct / 100) for pct in (0, 25, 50, 75, 100))

    @property
    def truth(self) -> TruthNote | None:
        """What the message's data answer says of its truth (DESIGN.md §11): the grounding
        outcome, the hints, the candidates and their votes, the examples; None when no node
        answered from data (v3: the thinker plans, the interpreter answers)."""
        grounding: dict = {}
        linking: dict = {}
        nodes = []
        for detail in self.frames:
            output = detail.record.output if isinstance(detail.record.output, dict) else {}
            for key, found in (("grounding", grounding), ("linking", linking)):
                if isinstance(output.get(key), dict):
                    found.clear()
                    found.update(output[key])
                    nodes.append(detail.record.node)
        if not grounding and not linking:
            return None
        return TruthNote(
            nodes=tuple(dict.fromkeys(nodes)), outcome=str(grounding.get("outcome", "")),
            ungrounded=tuple(grounding.get("repaired_ungrounded")
                             or grounding.get("ungrounded") or ()),
            hints=tuple(linking.get("hints") or ()), misses=tuple(linking.get("misses") or ()),
            repaired_from=str(linking.get("repaired_from") or ""),
            candidates=tuple(c for c in linking.get("candidates") or () if isinstance(c, dict)),
            examples=tuple(linking.get("examples") or ()))

    @property
    def tokens(self) -> int:
        """Prompt and completion tokens of the whole message."""
        return self.trace.prompt_tokens + self.trace.completion_tokens


def trace_page(*, trace_id: int) -> TracePage | None:
    """The trace page's data: the trace, its frames, its timeline and its neighbours (4 queries)."""
    trace = (
        MessageTrace.objects.select_related("conversation__user")
        .prefetch_related("frames")
        .filter(id=trace_id)
        .first()
    )
    if trace is None:
        return None
    records = list(trace.frames.all())
    scale_ms = _timeline_scale(trace, records)
    return TracePage(
        trace=trace,
        frames=tuple(
            FrameDetail(record=r, input_json=_pretty(r.input), output_json=_pretty(r.output))
            for r in records
        ),
        timeline=_timeline(records, scale_ms),
        scale_ms=scale_ms,
        previous_id=_neighbour_id(trace, newer=False),
        next_id=_neighbour_id(trace, newer=True),
        replays=tuple(trace.replays.order_by("-pk").values_list("pk", flat=True)[:20]),
        rating=Rating.objects.filter(conversation_id=trace.conversation_id,
                                     message_id=trace.message_id).first(),
        comparison=_comparison(records, list(FrameRow.objects.filter(
            trace_id=trace.replay_of_id).order_by("position"))) if trace.replay_of_id else (),
    )


def _comparison(after: list[FrameRow], before: list[FrameRow]) -> tuple[FrameComparison, ...]:
    """A replay's records beside the original's, by position."""
    rows = []
    for index in range(max(len(after), len(before))):
        new = after[index] if index < len(after) else None
        old = before[index] if index < len(before) else None
        shown = new or old
        rows.append(FrameComparison(
            frame=shown.frame, node=shown.node,
            before=old.decision if old else "", after=new.decision if new else "",
            same=bool(old and new and (old.node, old.decision, _steady(old.output)) ==
                      (new.node, new.decision, _steady(new.output))),
            before_tokens=(old.prompt_tokens + old.completion_tokens) if old else 0,
            after_tokens=(new.prompt_tokens + new.completion_tokens) if new else 0,
            before_ms=old.duration_ms if old else 0.0,
            after_ms=new.duration_ms if new else 0.0))
    return tuple(rows)


def _steady(value):
    """An output without its timings (`ms`), which differ on every run."""
    if isinstance(value, dict):
        return {key: _steady(inner) for key, inner in value.items() if key != "ms"}
    if isinstance(value, list):
        return [_steady(inner) for inner in value]
    return value


def trace_count_older_than(*, older_than: datetime) -> tuple[int, int]:
    """How many traces were created before `older_than`, and how many frame rows they hold."""
    traces = MessageTrace.objects.filter(created_at__lt=older_than).count()
    frames = FrameRow.objects.filter(trace__created_at__lt=older_than).count()
    return traces, frames


def trace_filter_users() -> list[tuple[int, str]]:
    """(id, username) of the users who have conversations, by username, for the admin filter."""
    user_model = get_user_model()
    owners = Conversation.objects.filter(user__isnull=False).values("user_id")
    return list(
        user_model.objects.filter(pk__in=owners)
        .order_by(user_model.USERNAME_FIELD)
        .values_list("pk", user_model.USERNAME_FIELD)
    )


def trace_cost_total(*, rows: QuerySet, field: str = "cost") -> Decimal:
    """The sum of `field` over `rows`, in USD: traces by their `cost`, or conversations
    annotated with `conversation_cost()` by that annotation's name."""
    return rows.aggregate(total=Sum(field))["total"] or Decimal(0)


def conversation_cost() -> Coalesce:
    """A conversation's cost (the sum of its traces'), as an annotation: a subquery rather
    than a join, so that a list of conversations can sum it again (a Sum of a Sum cannot)."""
    traces = (MessageTrace.objects.filter(conversation=OuterRef("pk")).order_by()
              .values("conversation").annotate(total=Sum("cost")).values("total"))
    field = DecimalField(max_digits=14, decimal_places=6)
    return Coalesce(Subquery(traces, output_field=field), Value(Decimal(0)), output_field=field)


def trace_filter_conversation(*, conversation_id: int) -> Conversation | None:
    """The conversation a trace list is filtered by, with its user, to name it."""
    return Conversation.objects.select_related("user").filter(id=conversation_id).first()


def _timeline_scale(trace: MessageTrace, records: list[FrameRow]) -> float:
    # total_ms is the message's wall time; a record measured on another clock can
    # end a hair later, and a bar must never stick out of the timeline.
    ends = [r.started_ms + r.duration_ms for r in records]
    scale = max([trace.total_ms, *ends])
    return scale if scale > 0 else 1.0


def _timeline(records: list[FrameRow], scale_ms: float) -> tuple[TimelineFrame, ...]:
    groups: dict[int, list[TimelineBar]] = {}
    for record in records:
        width = max(record.duration_ms / scale_ms * 100, TIMELINE_MIN_BAR_PCT)
        width = min(width, 100.0)
        # A bar widened to the minimum at the very end is moved left to stay inside.
        left = min(max(record.started_ms / scale_ms * 100, 0.0), 100.0 - width)
        groups.setdefault(record.frame, []).append(
            TimelineBar(record=record, left_pct=left, width_pct=width)
        )
    return tuple(TimelineFrame(frame=f, bars=tuple(bars)) for f, bars in sorted(groups.items()))


def _neighbour_id(trace: MessageTrace, *, newer: bool) -> int | None:
    # Same order as the list: (created_at, id), the id breaking ties between
    # traces stored in the same instant. Served by the (conversation, -created_at) index.
    if newer:
        after = Q(created_at__gt=trace.created_at) | Q(created_at=trace.created_at, id__gt=trace.id)
        order = ["created_at", "id"]
    else:
        after = Q(created_at__lt=trace.created_at) | Q(created_at=trace.created_at, id__lt=trace.id)
        order = ["-created_at", "-id"]
    return (
        MessageTrace.objects.filter(after, conversation_id=trace.conversation_id)
        .order_by(*order)
        .values_list("id", flat=True)
        .first()
    )


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)
