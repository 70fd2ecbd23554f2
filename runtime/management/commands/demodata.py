"""`manage.py demodata`: a local admin login and a demo conversation (idempotent)."""

from __future__ import annotations

from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from runtime.conversations.models import Message
from runtime.conversations.owners import Owner, conversation_resolve
from runtime.conversations.turns import turn_run

DEMO_MESSAGES = (
    "hello",
    "my name is Ada",
    "how many customers are there?",
    "give me a counter",
)


class Command(BaseCommand):
    help = ("Create the local-development admin (admin/admin, only with DEBUG on) and a demo "
            "conversation with traces. Safe to run again: nothing is duplicated.")

    def handle(self, *args, **options) -> None:
        users = get_user_model()
        if settings.DEBUG:
            if not users.objects.filter(username="admin").exists():
                users.objects.create_superuser("admin", "admin@localhost", "admin")
                self.stdout.write("created superuser admin (password: admin) for local use")
        else:
            self.stdout.write("DEBUG is off: no admin user created; use createsuperuser")
        demo, _ = users.objects.get_or_create(username="demo")
        conversation = conversation_resolve(owner=Owner(user=demo), chat="main")
        if Message.objects.filter(conversation=conversation).exists():
            self.stdout.write("demo conversation already present")
            return
        for text in DEMO_MESSAGES:
            result = async_to_sync(turn_run)(conversation_id=conversation.id, text=text)
            self.stdout.write(f"demo: {text!r} -> {result.trace.path}")
