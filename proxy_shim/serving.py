"""How the shim is served: uvicorn's options for TLS and against slow or oversized clients.

- **TLS**: ``SHIM_TLS_CERT_FILE`` + ``SHIM_TLS_KEY_FILE`` (PEM) serve HTTPS instead of HTTP.
- **Headers**: a request's line and headers must arrive whole within
  ``SHIM_HEADER_TIMEOUT_SECONDS`` of the connection opening (or, on a kept-alive connection, of
  the request's first byte), else the connection is closed. uvicorn itself has no such limit: a
  client dripping a header byte at a time (slowloris) would hold its connection forever. A
  header block still growing past twice ``SHIM_MAX_HEADER_BYTES`` is refused (400) before it is
  buffered further; ``proxy_shim.request_limits`` refuses the rest over the limit (431).
- **Idle**: a kept-alive connection with no request closes after
  ``SHIM_KEEP_ALIVE_TIMEOUT_SECONDS`` (uvicorn's ``timeout_keep_alive``).
- **Bodies**: size and stalls are the ASGI middleware's (``proxy_shim.request_limits``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from proxy_shim.app import StartupError
from proxy_shim.settings import ShimSettings


class HeaderDeadlineProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline on each request's line and headers, and a
    cap on how far a header block may grow before it is refused.

    httptools (llhttp, in C) rather than h11 (pure Python): parsing requests and writing
    responses with h11 cost the shim about a sixth of its CPU per model call.
    """

    header_timeout_seconds: float = 10.0
    # Past this many bytes of an unfinished request line and headers: 400 and close, as h11
    # did with ``h11_max_incomplete_event_size`` (uvicorn's httptools protocol has no limit).
    max_head_bytes: int = 2 * 16 * 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_deadline: asyncio.TimerHandle | None = None
        # Whether a request's line and headers are being received, and their bytes so far.
        self._in_head = True
        self._head_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """A new connection owes its first request's headers within the deadline."""
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        """Feed the parser; refuse a header block that keeps growing past the cap."""
        super().data_received(data)
        if self._in_head and not self.transport.is_closing():
            self._head_bytes += len(data)
            if self._head_bytes > self.max_head_bytes:
                message = "Invalid HTTP request received."
                self.logger.warning(message)
                self.send_400_response(message)

    def on_message_begin(self) -> None:
        """A request's first byte: its line and headers are now due within the deadline."""
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = 0
        self._arm()

    def on_headers_complete(self) -> None:
        """The headers are in: stop the clock."""
        self._in_head = False
        self._disarm()
        super().on_headers_complete()

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
        {
            "header_timeout_seconds": settings.header_timeout_seconds,
            "max_head_bytes": 2 * settings.max_header_bytes,
        },
    )
    options: dict[str, Any] = {
        "http": protocol,
        "ws": "none",
        "timeout_keep_alive": settings.keep_alive_timeout_seconds,
    }
    if cert is not None and key is not None:
        options["ssl_certfile"] = str(cert)
        options["ssl_keyfile"] = str(key)
    return options
