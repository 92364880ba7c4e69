"""How the shim is served: uvicorn's options for TLS and against slow or oversized clients.

- **TLS**: ``SHIM_TLS_CERT_FILE`` + ``SHIM_TLS_KEY_FILE`` (PEM) serve HTTPS instead of HTTP.
- **Headers**: a request's line and headers must arrive whole within
  ``SHIM_HEADER_TIMEOUT_SECONDS`` of the connection opening (or, on a kept-alive connection, of
  the request's first byte), else the connection is closed. uvicorn itself has no such limit: a
  client dripping a header byte at a time (slowloris) would hold its connection forever. A
  header block still growing past twice ``SHIM_MAX_HEADER_BYTES`` is refused by h11 (400) before
  it is buffered further; ``proxy_shim.request_limits`` refuses the rest over the limit (431).
- **Idle**: a kept-alive connection with no request closes after
  ``SHIM_KEEP_ALIVE_TIMEOUT_SECONDS`` (uvicorn's ``timeout_keep_alive``).
- **Bodies**: size and stalls are the ASGI middleware's (``proxy_shim.request_limits``).
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from proxy_shim.app import StartupError
from proxy_shim.settings import ShimSettings


class HeaderDeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline on each request's line and headers."""

    header_timeout_seconds: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """A new connection owes its first request's headers within the deadline."""
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        """Start the clock at a request's first byte; stop it once its headers are in."""
        if self.conn.their_state is h11.IDLE:
            self._arm()
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the deadline of a closed connection."""
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._header_deadline is None:
            self._header_deadline = self.loop.call_later(
                self.header_timeout_seconds, self._headers_too_slow
            )

    def _disarm(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        if not self.transport.is_closing():
            self.transport.close()


def uvicorn_options(settings: ShimSettings) -> dict[str, Any]:
    """Keyword arguments of ``uvicorn.run`` for these settings; StartupError if they are bad."""
    cert, key = settings.tls_cert_file, settings.tls_key_file
    if (cert is None) != (key is None):
        raise StartupError("SHIM_TLS_CERT_FILE and SHIM_TLS_KEY_FILE must be set together")
    for path in (cert, key):
        if path is not None and not path.is_file():
            raise StartupError(f"TLS file {str(path)!r} does not exist")
    protocol = type(
        "HeaderDeadlineProtocol",
        (HeaderDeadlineProtocol,),
        {"header_timeout_seconds": settings.header_timeout_seconds},
    )
    options: dict[str, Any] = {
        "http": protocol,
        "ws": "none",
        "h11_max_incomplete_event_size": 2 * settings.max_header_bytes,
        "timeout_keep_alive": settings.keep_alive_timeout_seconds,
    }
    if cert is not None and key is not None:
        options["ssl_certfile"] = str(cert)
        options["ssl_keyfile"] = str(key)
    return options
