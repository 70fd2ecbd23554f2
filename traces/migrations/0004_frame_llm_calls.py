"""Every model call of a frame (failed ones included) instead of the last call's prompt and
answer; the fallback a node took. Old rows keep their last call as a one-call list."""

from django.db import migrations, models


def calls_from_last(apps, schema_editor):
    FrameRow = apps.get_model("traces", "FrameRow")
    for row in FrameRow.objects.exclude(llm_provider="").iterator():
        row.llm_calls = [{
            "provider": row.llm_provider, "model": row.llm_model, "purpose": "",
            "request": {"messages": row.llm_prompt}, "answer": row.llm_answer,
            "tool_calls": [], "prompt_tokens": row.prompt_tokens,
            "completion_tokens": row.completion_tokens, "ms": row.llm_ms, "finish_reason": "",
            "structured": "", "attempts": 1, "outcome": "ok", "error": "", "cost": 0.0,
        }]
        row.save(update_fields=["llm_calls"])


class Migration(migrations.Migration):

    dependencies = [("traces", "0003_trace_worker")]

    operations = [
        migrations.AddField(
            model_name="framerow", name="llm_calls",
            field=models.JSONField(default=list, help_text="every model call, in order"),
        ),
        migrations.AddField(
            model_name="framerow", name="fallback",
            field=models.CharField(blank=True, max_length=400),
        ),
        migrations.RunPython(calls_from_last, migrations.RunPython.noop),
        migrations.RemoveField(model_name="framerow", name="llm_prompt"),
        migrations.RemoveField(model_name="framerow", name="llm_answer"),
    ]
