"""Handlers shipped with the product. ``builtin_handlers()`` lists what every process registers."""
from __future__ import annotations

from typing import Any, Mapping

from ..jobs import JobHandler


def builtin_handlers(config: Mapping[str, Any] | None = None, engine=None) -> list[JobHandler]:
    """The built-in handlers, configured from the app's ``config``.

    :param engine: the database the notification handlers record sends in (and the outbox
        stores into); without one, only the general-purpose handlers are returned.
    """
    from . import models  # noqa: F401  (their tables join the metadata migrations compare)
    from .basic import NoopHandler, WaitHandler
    from .data_processor import DataProcessorHandler

    handlers: list[JobHandler] = [NoopHandler(), WaitHandler(), DataProcessorHandler()]
    if engine is not None:
        from .mail import EmailHandler
        from .maintenance import PruneFinishedJobsHandler
        from .mobile import PushHandler, SmsHandler
        from .webhook import WebhookHandler

        handlers += [EmailHandler(engine, config), SmsHandler(engine, config),
                     PushHandler(engine, config), WebhookHandler(engine, config),
                     PruneFinishedJobsHandler(engine)]
    return handlers
