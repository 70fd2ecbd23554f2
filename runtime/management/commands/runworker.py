"""`manage.py runworker pipeline`: Channels' runworker with agentsite's pipeline worker.

The same command and arguments as Channels' own (`runworker CHANNEL [...]
[--layer ALIAS]`); the worker class adds back-pressure, the reaper of lost
messages and a clean stop on SIGTERM (runtime.conversations.worker). `runtime` is listed
before `channels` in INSTALLED_APPS so this command is the one `manage.py`
finds.
"""

from __future__ import annotations

from channels.management.commands import runworker
from django.conf import settings
from django.core.management import CommandError

from runtime.conversations.answering import PIPELINE_CHANNEL
from runtime.conversations.worker import PipelineWorker


class Command(runworker.Command):
    help = ("Answer chat messages from the channel layer: `runworker pipeline` "
            "(needs REDIS_URL; run as many as you like, on any machine).")
    worker_class = PipelineWorker

    def handle(self, *args, **options):
        if options["channels"] != [PIPELINE_CHANNEL]:
            raise CommandError(f"agentsite workers listen on one channel: "
                               f"`runworker {PIPELINE_CHANNEL}` (got {' '.join(options['channels'])})")
        if "InMemoryChannelLayer" in settings.CHANNEL_LAYERS["default"]["BACKEND"]:
            raise CommandError("a pipeline worker needs a channel layer shared with the web "
                               "processes: set REDIS_URL (and run the web processes with it)")
        if not settings.AGENTSITE_PIPELINE_WORKERS:
            raise CommandError("AGENTSITE_PIPELINE_WORKERS is off, so the web processes answer "
                               "messages themselves and send none to workers; turn it on "
                               "(it is on by default with REDIS_URL)")
        super().handle(*args, **options)
