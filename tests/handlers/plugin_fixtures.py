"""Objects that the plug-in tests' fake entry points name."""
from __future__ import annotations

from console.handlers.basic import NoopHandler
from console.jobs import JobHandler


class PluginNoop(NoopHandler):
    handler_name = "plugin_noop"


AN_INSTANCE = PluginNoop()


class ClashesWithNoop(NoopHandler):
    handler_name = "noop"


NOT_A_HANDLER = object()


class NeedsArguments(JobHandler):
    handler_name = "needs_arguments"
    supported_job_types = {"immediate"}

    def __init__(self, required):
        self.required = required
