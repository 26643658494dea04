"""Handlers shipped with the product. ``builtin_handlers()`` lists what every process registers."""
from __future__ import annotations

from ..jobs import JobHandler


def builtin_handlers() -> list[JobHandler]:
    from .basic import NoopHandler, WaitHandler
    from .data_processor import DataProcessorHandler

    return [NoopHandler(), WaitHandler(), DataProcessorHandler()]
