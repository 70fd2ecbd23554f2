"""The domain's own rows in the project's database: verified question → SQL pairs.

A `VerifiedQuery` is SQL a person (or a shipped suite, or a frozen trace) vouches for
as the answer to a question on one domain database. It is never stored unchecked:
`verified_sql_check` runs the guard and then the query itself, once, read-only and
capped, on the configured domain database, and a query that fails either is refused
with the reason (a form error in the admin).
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from runtime.domain.database import ErasDatabase, database_identity, redact_url
from runtime.domain.sqlguard import guard_sql
from runtime.errors import DatabaseToolError

QUESTION_MAX_CHARS = 1000
"""A longer message is no question to match others against (and would not fit an index)."""
CHECK_ROWS = 20
"""Rows the check fetches: it proves the query runs, it does not read the answer."""
CHECK_TIME_S = 5.0
"""The longest the check's run may take (less when the database's own limit is lower)."""


def configured_database() -> ErasDatabase:
    """The domain database this process is configured with (ERAS_DATABASE_URL)."""
    return ErasDatabase.from_settings()


def verified_sql_check(*, sql: str, database: str) -> str:
    """`sql` as it will be stored, once it passed the guard as a SELECT and ran, read-only and
    capped, on the configured domain database; DatabaseToolError says why not, also when
    `database` (an identity) is not the configured one, where it cannot be run."""
    db = configured_database()
    here = database_identity(db)
    if database != here:
        raise DatabaseToolError(
            f"it belongs to database {database}, and the domain database configured here "
            f"({redact_url(db.url)}) is {here}: it can only be checked there")
    guarded = guard_sql(sql, dialect=db.dialect)
    if guarded.kind != "select":
        raise DatabaseToolError("refused: an answer to a question is a SELECT, not a DESCRIBE")
    capped = ErasDatabase(db.url, row_limit=CHECK_ROWS,
                          time_limit_s=min(db.time_limit_s, CHECK_TIME_S))
    capped.query(guarded.sql)
    return guarded.sql


class VerifiedQuery(models.Model):
    """A question and the SQL verified to answer it on one domain database; the planners get
    the most similar ones as worked examples (runtime.domain.verified)."""

    class Source(models.TextChoices):
        ADMIN = "admin", "added in the admin"
        TRACE = "trace", "marked correct on a trace"
        FROZEN = "frozen", "a frozen trace"
        SUITE = "suite", "a suite's reference query"

    database = models.CharField(
        max_length=16, editable=False,
        help_text="The domain database it answers on: the first 16 hex digits of its URL's "
                  "sha256 (runtime.domain.database.database_identity).")
    question = models.TextField()
    sql = models.TextField(
        "SQL", help_text="One SELECT; checked by running it on the domain database before it "
                         "is stored.")
    source = models.CharField(max_length=8, choices=Source.choices, default=Source.ADMIN)
    trace = models.ForeignKey(
        "traces.MessageTrace", null=True, blank=True, on_delete=models.SET_NULL,
        related_name="verified_queries", help_text="The trace whose answer was marked correct.")
    verified_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at", "-id"]
        verbose_name = "verified query"
        verbose_name_plural = "verified queries"
        constraints = [models.UniqueConstraint(fields=["database", "question"],
                                               name="verified_query_one_per_question")]

    def __str__(self) -> str:
        return self.question[:80]

    def save(self, *args, **kwargs) -> None:
        """Store it, checked first unless `clean` just checked this database and SQL: an
        unchecked query is never stored (ValidationError)."""
        if getattr(self, "_checked", None) != (self.database, self.sql):
            self.clean()
        super().save(*args, **kwargs)

    def clean(self) -> None:
        """The question in one line and the SQL checked (`verified_sql_check`); the database
        defaults to the configured one. Errors name the field at fault."""
        self.question = " ".join(self.question.split())
        if not self.question:
            raise ValidationError({"question": "A verified query needs its question."})
        if len(self.question) > QUESTION_MAX_CHARS:
            raise ValidationError({"question": f"A question to match others against is at most "
                                               f"{QUESTION_MAX_CHARS} characters long."})
        try:
            self.database = self.database or database_identity(configured_database())
            self.sql = verified_sql_check(sql=self.sql, database=self.database)
        except DatabaseToolError as exc:
            raise ValidationError({"sql": f"This SQL cannot be verified: {exc}."}) from None
        self._checked = (self.database, self.sql)
        # `database` is not a form field, so the form leaves the constraint to the database.
        same = VerifiedQuery.objects.filter(database=self.database, question=self.question)
        if same.exclude(pk=self.pk).exists():
            raise ValidationError({"question": "This question has a verified query already: "
                                               "edit that one."})
