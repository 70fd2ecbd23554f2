"""A stored trace per message and a row per node per frame."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone


class MessageTrace(models.Model):
    """What the frame engine did for one message."""

    message_id = models.UUIDField(unique=True)
    conversation = models.ForeignKey(
        "runtime.Conversation", on_delete=models.CASCADE, related_name="traces"
    )
    graph = models.CharField(max_length=80)
    message = models.TextField()
    answer = models.TextField(blank=True)
    path = models.CharField(max_length=400)
    total_frames = models.PositiveIntegerField()
    total_ms = models.FloatField()
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    cost = models.DecimalField(
        max_digits=12, decimal_places=6, default=0,
        help_text="USD, the sum of its frames' (AGENTSITE_LLM_PRICES; 0 without a price).")
    error = models.TextField(blank=True)
    worker = models.CharField(max_length=200, blank=True,
                              help_text="The process that answered (host:pid).")
    turn = models.JSONField(
        default=dict, blank=True,
        help_text="The state the message met (history, memory, ui, experts, now): a "
                  "replay starts from it.")
    replay_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="replays",
        help_text="The trace this one replays.")
    replay_from = models.PositiveIntegerField(
        default=0, help_text="For a rerun: the first frame run live (0: a full replay).")
    replay_edits = models.JSONField(
        default=dict, blank=True,
        help_text="For a rerun: what was changed (memory fields, node config, answers).")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["conversation", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.graph} {self.path} ({self.total_frames} frames)"


class FrameRow(models.Model):
    """One node's record in one frame of a message trace."""

    trace = models.ForeignKey(MessageTrace, on_delete=models.CASCADE, related_name="frames")
    frame = models.PositiveIntegerField()
    node = models.CharField(max_length=80)
    node_type = models.CharField(max_length=40)
    started_ms = models.FloatField()
    duration_ms = models.FloatField()
    input = models.JSONField(default=dict)
    output = models.JSONField(default=dict)
    decision = models.CharField(max_length=400, blank=True)
    llm_provider = models.CharField(max_length=40, blank=True)
    llm_model = models.CharField(max_length=120, blank=True)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    llm_ms = models.FloatField(default=0)
    cost = models.DecimalField(max_digits=12, decimal_places=6, default=0,
                               help_text="USD, the sum of its model calls'.")
    llm_calls = models.JSONField(default=list, help_text="every model call, in order")
    error = models.TextField(blank=True)
    fallback = models.CharField(max_length=400, blank=True)
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["trace", "position"]

    def __str__(self) -> str:
        return f"frame {self.frame} {self.node}"


class ScoreMixin:
    """`score` and `rate` from the `passed` and `total` counters of a run or a suite."""

    passed: int
    total: int

    @property
    def score(self) -> str:
        """Checks passed over checks run, as `passed/total`."""
        return f"{self.passed}/{self.total}"

    @property
    def rate(self) -> float | None:
        """Share of checks passed (0..1), None when no check ran."""
        return self.passed / self.total if self.total else None


class TestRun(ScoreMixin, models.Model):
    """One run of Markdown test suites (`manage.py runtests`) against a graph."""


    class Status(models.TextChoices):
        RUNNING = "running"
        FINISHED = "finished"
        FAILED = "failed"

    started_at = models.DateTimeField(default=timezone.now, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    graph = models.CharField(max_length=80, help_text="Name of the graph the suites ran on.")
    target = models.CharField(
        max_length=300, default="in-process", help_text='"in-process" or the server URL.'
    )
    repeat = models.PositiveIntegerField(default=1)
    selection = models.CharField(
        max_length=400, blank=True, db_index=True,
        help_text="The suites run, by name, sorted: trends compare runs of the same suites.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    triggered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="test_runs",
    )
    passed = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    total = models.PositiveIntegerField(default=0)
    note = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [
            # Trends: the finished runs of one graph, in time order.
            models.Index(
                fields=["graph", "status", "started_at"], name="traces_testrun_graph_trend"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.graph} {self.started_at:%Y-%m-%d %H:%M} {self.score}"

    @property
    def duration(self) -> timedelta | None:
        """Wall time of the run, None while it runs."""
        return self.finished_at - self.started_at if self.finished_at else None


class TestSuiteResult(ScoreMixin, models.Model):
    """One suite (a `testcases/*.md` file) within a test run."""

    run = models.ForeignKey(TestRun, on_delete=models.CASCADE, related_name="suites")
    name = models.CharField(max_length=120, help_text='The suite, e.g. "smoketest".')
    path = models.CharField(max_length=400, blank=True, help_text="The suite's Markdown file.")
    position = models.PositiveIntegerField()
    passed = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    total = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["run", "position"]
        constraints = [
            models.UniqueConstraint(fields=["run", "position"], name="traces_suite_run_position"),
        ]
        indexes = [
            # Suite trends: one suite's results across runs.
            models.Index(fields=["name", "run"], name="traces_suite_name_run"),
        ]

    def __str__(self) -> str:
        return f"{self.name} {self.score}"


class TestCheckResult(models.Model):
    """One check of a suite step, with its verdict and the trace it looked at."""

    class Status(models.TextChoices):
        PASS = "PASS"
        FAIL = "FAIL"

    suite = models.ForeignKey(TestSuiteResult, on_delete=models.CASCADE, related_name="checks")
    position = models.PositiveIntegerField()
    step = models.TextField(help_text="The step, e.g. `send: hello`.")
    # Not `check`: that name is taken by Model.check(), Django's system checks.
    check_text = models.TextField("check", help_text="The check, e.g. `response contains: Hello`.")
    status = models.CharField(max_length=4, choices=Status.choices)
    detail = models.TextField(blank=True)
    trace = models.ForeignKey(
        MessageTrace,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="test_checks",
    )
    # The message id the check looked at, kept even when no local trace has it
    # (a run against a remote server, or a trace deleted since).
    message_id = models.UUIDField(null=True, blank=True)
    duration_ms = models.FloatField(default=0.0)

    class Meta:
        ordering = ["suite", "position"]
        constraints = [
            models.UniqueConstraint(
                fields=["suite", "position"], name="traces_check_suite_position"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.status} {self.check_text}"
