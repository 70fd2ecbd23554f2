"""Verified queries: storing them (by hand, from a trace, from suites and frozen traces) and
finding the ones like a question (DESIGN.md §11).

`examples_similar` is what the planners get, through `EngineEnv.examples`
(runtime.conversations.turns): the stored pairs of one database whose questions are
most like the one asked (runtime.domain.examples). Every write checks the SQL first
(`VerifiedQuery.clean`): a query that does not run is never stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from django.db import transaction

from runtime.domain.database import database_identity
from runtime.domain.examples import Example, examples_ranked, query_of_outputs
from runtime.domain.models import VerifiedQuery, configured_database
from runtime.errors import AgentError
from traces.models import MessageTrace

CANDIDATES = 2000
"""The newest stored pairs of a database that a question is compared with."""
PEOPLE = (VerifiedQuery.Source.ADMIN, VerifiedQuery.Source.TRACE)
"""Sources where a person verified the pair: a load from files never overwrites them."""

Outcome = Literal["created", "updated", "unchanged", "kept"]


class NothingToVerify(AgentError):
    """A trace with no query to mark correct (or none it could store)."""

    code = "nothing_to_verify"


@dataclass(frozen=True)
class Stored:
    """What a write did."""

    query: VerifiedQuery
    """The row as it is now."""
    outcome: Outcome
    """`created`, `updated`, `unchanged` (the same SQL was there), or `kept` (a person's
    pair was there and a load from files left it)."""


def configured_identity() -> str:
    """The identity of the configured domain database (runtime.domain.database)."""
    return database_identity(configured_database())


def examples_similar(*, database: str, question: str, k: int = 3) -> list[Example]:
    """The `k` stored pairs of `database` whose questions are most like `question`, best first
    (none when nothing is alike: runtime.domain.examples.MIN_SIMILARITY)."""
    rows = (VerifiedQuery.objects.filter(database=database).order_by("-updated_at", "-id")
            .values_list("question", "sql")[:CANDIDATES])
    return examples_ranked(question, [Example(question=q, sql=s) for q, s in rows], k=k)


@transaction.atomic
def verified_query_store(*, database: str, question: str, sql: str, source: str,
                         trace: MessageTrace | None = None, user=None,
                         keep_people: bool = False) -> Stored:
    """Store `sql` as the verified answer to `question` on `database`: one row per question,
    a second store updates it. `keep_people`: leave a pair a person verified (PEOPLE) as it
    is. ValidationError (nothing stored) when the SQL does not pass the check."""
    question = " ".join(question.split())
    row = (VerifiedQuery.objects.select_for_update()
           .filter(database=database, question=question).first())
    if row is not None and keep_people and row.source in PEOPLE:
        return Stored(query=row, outcome="kept")
    outcome: Outcome = "created" if row is None else "updated"
    row = row or VerifiedQuery(database=database, question=question)
    before = (row.sql, row.source, row.trace_id)
    row.sql, row.source, row.trace = sql, source, trace
    row.verified_by = user if user is not None else row.verified_by
    row.clean()  # the SQL as stored: stripped by the guard
    if outcome == "updated" and (row.sql, row.source, row.trace_id) == before:
        return Stored(query=row, outcome="unchanged")
    row.save()
    return Stored(query=row, outcome=outcome)


def verified_query_from_trace(*, trace_id: int, user=None) -> Stored:
    """Mark a trace's answer correct: its message and the last query it ran successfully,
    stored for the configured database with the trace linked. NothingToVerify when there is
    no such trace or it ran no query; ValidationError when the query no longer runs."""
    trace = MessageTrace.objects.filter(pk=trace_id).first()
    if trace is None:
        raise NothingToVerify(f"there is no trace {trace_id}")
    outputs = trace.frames.order_by("position").values_list("output", flat=True)
    sql = query_of_outputs(outputs)
    if not sql:
        raise NothingToVerify("this message ran no successful query: there is no SQL to "
                              "mark correct")
    # The trace does not record which domain database it ran on: it is taken to be the one
    # configured now, where the check runs the query again.
    return verified_query_store(database=configured_identity(), question=trace.message,
                                sql=sql, source=VerifiedQuery.Source.TRACE, trace=trace,
                                user=user)
