"""Handlers shipped with the product. ``builtin_handlers()`` lists what every process registers."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..jobs import JobHandler


def builtin_handlers(config: Mapping[str, Any] | None = None, engine=None,
                     service=None) -> list[JobHandler]:
    """The built-in handlers, configured from the app's ``config``.

    :param engine: the database the notification handlers record sends in (and the outbox
        stores into); without one, only the general-purpose handlers are returned.
    :param service: the ``JobService`` the handlers that read analytics or recover jobs use
        (``report_generator``, ``release_stuck_jobs``); without one, they are left out.
    """
    from . import models  # noqa: F401  (their tables join the metadata migrations compare)
    from .basic import NoopHandler, WaitHandler
    from .data_processor import DataProcessorHandler

    handlers: list[JobHandler] = [NoopHandler(), WaitHandler(), DataProcessorHandler()]
    if engine is not None:
        from .cleanup import CustomCleanupHandler
        from .mail import EmailHandler
        from .maintenance import CompactRollupsHandler, PruneFinishedJobsHandler
        from .mobile import PushHandler, SmsHandler
        from .webhook import WebhookHandler

        handlers += [EmailHandler(engine, config), SmsHandler(engine, config),
                     PushHandler(engine, config), WebhookHandler(engine, config),
                     PruneFinishedJobsHandler(engine, config), CompactRollupsHandler(engine),
                     CustomCleanupHandler(engine)]
    if service is not None:
        from .maintenance import ReleaseStuckJobsHandler
        from .reports import ReportGeneratorHandler

        handlers += [ReleaseStuckJobsHandler(service), ReportGeneratorHandler(service)]
    return handlers
