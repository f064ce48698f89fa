"""A real SMTP server for tests: aiosmtpd on 127.0.0.1 and handlers that keep or refuse mail."""

from __future__ import annotations

import email
import email.policy
import socket
from collections.abc import Callable
from typing import Any

StartServer = Callable[..., int]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Collector:
    """Accepts every message and keeps the envelopes."""

    def __init__(self) -> None:
        self.envelopes: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(envelope)
        return "250 2.0.0 OK: queued"

    def messages(self) -> list[email.message.EmailMessage]:
        return [
            email.message_from_bytes(e.content, policy=email.policy.default)  # type: ignore[misc]
            for e in self.envelopes
        ]
