"""Handlers from other packages: the ``console.handlers`` entry-point group.

A package declares, in its ``pyproject.toml``::

    [project.entry-points."console.handlers"]
    custom_data_processor = "my_package.handlers:CustomDataProcessor"

The object named is a ``JobHandler`` subclass (instantiated with no arguments) or an instance.
``create_app`` registers them in every process (web, ``flask worker``, CLI), after the built-in
handlers and ``JOBS_HANDLERS``; a name already registered is skipped with a warning, and an entry
point that cannot be loaded stops the app with an error naming it.
"""
from __future__ import annotations

import logging
from importlib.metadata import EntryPoint, entry_points

from ..jobs import JobHandler

ENTRY_POINT_GROUP = "console.handlers"
log = logging.getLogger(__name__)


class HandlerPluginError(RuntimeError):
    """An entry point in ``console.handlers`` could not be turned into a handler."""


def _describe(entry_point: EntryPoint) -> str:
    dist = getattr(entry_point, "dist", None)
    source = f" from {dist.name} {dist.version}" if dist is not None else ""
    return f"entry point {entry_point.name!r} = {entry_point.value!r}{source}"


def load_handler(entry_point: EntryPoint) -> JobHandler:
    """The handler an entry point names; ``HandlerPluginError`` naming it on any failure."""
    try:
        obj = entry_point.load()
        if isinstance(obj, type) and issubclass(obj, JobHandler):
            obj = obj()
        if not isinstance(obj, JobHandler):
            raise TypeError(f"it names {obj!r}, not a JobHandler subclass or instance")
    except Exception as exc:
        raise HandlerPluginError(f"handler plug-in {_describe(entry_point)} in group "
                                 f"{ENTRY_POINT_GROUP!r} could not be loaded: "
                                 f"{type(exc).__name__}: {exc}") from exc
    return obj


def register_plugin_handlers(service) -> list[str]:
    """Register every ``console.handlers`` entry point's handler; return the names added."""
    added = []
    for entry_point in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        handler = load_handler(entry_point)
        name = handler.handler_name
        if name in service.handlers:
            log.warning("handler plug-in %s is skipped: a handler named %r is already registered",
                        _describe(entry_point), name)
            continue
        try:
            service.register_handler(handler)
        except (TypeError, ValueError) as exc:
            raise HandlerPluginError(f"handler plug-in {_describe(entry_point)} could not be "
                                     f"registered: {exc}") from exc
        log.info("registered handler %r from %s", name, _describe(entry_point))
        added.append(name)
    return added
