"""The HTTP/1.1 protocol ``blender serve`` runs under uvicorn: uvicorn's h11 protocol with a
deadline for request headers.

uvicorn's own settings cover two of the connection limits: ``h11_max_incomplete_event_size``
bounds a request head (``server.max_header_bytes``; past it uvicorn answers 400 and closes), and
``timeout_keep_alive`` closes a connection idle *between* requests (``server.keep_alive_timeout``).
What uvicorn lacks is a deadline before the first request and while headers arrive: its
keep-alive timer starts only after a response and any received byte cancels it, so a connection
that opens and sends nothing, or sends a header line now and then, is kept for ever. This
protocol adds that deadline (``server.header_timeout``): it starts when the connection opens and
again when the first byte of each later request arrives, and stops once the request's headers
are complete; past it the connection gets 408 and is closed. The h11 protocol (pure Python) is
used rather than httptools because only it takes a head size limit.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["GuardedH11Protocol", "guarded_protocol"]

_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"connection: close\r\n"
    b"content-length: 37\r\n\r\n"
    b"request headers not received in time\n"
)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol plus a deadline for each request's headers.

    Attributes:
        header_timeout: Seconds a request's headers may take (class attribute; see
            :func:`guarded_protocol`).
    """

    header_timeout: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_deadline: asyncio.TimerHandle | None = None

    def _between_requests(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _arm(self) -> None:
        if self._header_deadline is None:
            self._header_deadline = self.loop.call_later(self.header_timeout, self._expired)

    def _disarm(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _expired(self) -> None:
        self._header_deadline = None
        if self.transport.is_closing() or not self._between_requests():
            return
        self.logger.info("closing a connection whose request headers did not arrive in time")
        self.transport.write(_TIMEOUT_RESPONSE)
        self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()  # a connection that never sends a request is closed too

    def data_received(self, data: bytes) -> None:
        if self._between_requests():
            self._arm()  # the first bytes of a new request: its headers have the deadline
        super().data_received(data)
        if not self._between_requests():
            self._disarm()  # the headers are complete; the body has its own deadline

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # Idle until the next request is the keep-alive timer's business (timeout_keep_alive).
        if self._between_requests():
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


def guarded_protocol(header_timeout: float) -> type[GuardedH11Protocol]:
    """A :class:`GuardedH11Protocol` class with the given header deadline (uvicorn builds
    one protocol object per connection from the class it is given as ``http``)."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"header_timeout": header_timeout})
