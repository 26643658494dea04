"""SMS/push providers used by the tests, named for what they do."""
from __future__ import annotations

from console.handlers.providers import MessageProvider, OutgoingMessage, ProviderError


class RecordingProvider(MessageProvider):
    """Keeps every message it is given in ``sent`` (shared by all instances)."""

    sent: list[OutgoingMessage] = []

    def __init__(self, config):
        self.config = config

    def send(self, message: OutgoingMessage) -> str:
        self.sent.append(message)
        return f"rec-{len(self.sent)}"


class RejectsEverythingProvider(MessageProvider):
    """Refuses every number, as a provider does for an invalid one."""

    def __init__(self, config):
        pass

    def send(self, message: OutgoingMessage) -> str:
        raise ProviderError(f"{message.recipient} is not a mobile number", retryable=False,
                            error_type="InvalidNumber")


class NotAProvider:
    pass
