"""A stored trace per message and a row per node per frame."""

from __future__ import annotations

from django.db import models


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
    error = models.TextField(blank=True)
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
    llm_prompt = models.JSONField(default=list)
    llm_answer = models.TextField(blank=True)
    error = models.TextField(blank=True)
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["trace", "position"]

    def __str__(self) -> str:
        return f"frame {self.frame} {self.node}"
