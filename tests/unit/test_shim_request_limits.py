"""The shim's request limits at the ASGI level: what they read, what they answer, and when."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from fastapi import FastAPI, Request
from pydantic import BaseModel

from proxy_shim import errors
from proxy_shim.request_limits import RequestLimits

LIMIT = 4096
HEADER_LIMIT = 2048
CHUNK = 1000


class Thing(BaseModel):
    name: str


def shim_like_app() -> FastAPI:
    """Routes reading their body both ways the shim does: raw, and as a pydantic model."""
    app = FastAPI()
    errors.install(app)

    @app.post("/raw")
    async def raw(request: Request) -> dict[str, int]:
        return {"read": len(await request.body())}

    @app.post("/model")
    async def model(thing: Thing) -> dict[str, str]:
        return {"name": thing.name}

    return app


class Client:
    """Drives one HTTP request through an ASGI app with a body sent in chunks."""

    def __init__(self, chunks: list[bytes] | None, *, stall_after: int | None = None) -> None:
        self.chunks = chunks
        self.stall_after = stall_after
        self.pulled = 0
        self.sent: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        if self.stall_after is not None and self.pulled >= self.stall_after:
            await asyncio.sleep(3600)
        self.pulled += 1
        if self.chunks is None:  # an endless body
            return {"type": "http.request", "body": b"x" * CHUNK, "more_body": True}
        if self.pulled > len(self.chunks):
            await asyncio.sleep(3600)  # nothing more: wait like a server for a disconnect
        body = self.chunks[self.pulled - 1]
        return {"type": "http.request", "body": body, "more_body": self.pulled < len(self.chunks)}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    @property
    def status(self) -> int:
        return int(self.sent[0]["status"])

    @property
    def headers(self) -> dict[bytes, bytes]:
        return dict(self.sent[0]["headers"])

    @property
    def json(self) -> Any:
        return json.loads(b"".join(m.get("body", b"") for m in self.sent[1:]))


def run(
    app: Callable[..., Awaitable[None]],
    client: Client,
    path: str = "/raw",
    headers: list[tuple[bytes, bytes]] | None = None,
    idle: float = 5.0,
) -> None:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), *(headers or [])],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 2),
    }
    limited = RequestLimits(
        app, max_header_bytes=HEADER_LIMIT, max_body_bytes=LIMIT, body_idle_seconds=idle
    )
    asyncio.run(asyncio.wait_for(limited(scope, client.receive, client.send), 10))


def assert_refused(client: Client, status: int, param: str = "body") -> None:
    assert client.status == status
    assert client.headers[b"connection"] == b"close"
    error = client.json["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == str(status)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param


def test_a_declared_length_over_the_limit_is_refused_before_reading() -> None:
    client = Client(None)
    run(shim_like_app(), client, headers=[(b"content-length", str(LIMIT + 1).encode())])
    assert_refused(client, 413)
    assert "4096 bytes" in client.json["error"]["message"]
    assert client.pulled == 0


@pytest.mark.parametrize("path", ["/raw", "/model"])
def test_an_endless_chunked_body_is_cut_off_just_past_the_limit(path: str) -> None:
    client = Client(None)
    run(shim_like_app(), client, path=path)
    assert_refused(client, 413)
    assert client.pulled == LIMIT // CHUNK + 1  # never read beyond the piece that crossed it


def test_a_body_at_the_limit_reaches_the_route() -> None:
    client = Client([b"x" * CHUNK] * 4 + [b"x" * (LIMIT - 4 * CHUNK)])
    run(shim_like_app(), client, headers=[(b"content-length", str(LIMIT).encode())])
    assert client.status == 200
    assert client.json == {"read": LIMIT}


def test_a_valid_model_body_passes_untouched() -> None:
    client = Client([b'{"name": ', b'"\xc3\xbcn\xc3\xafc\xc3\xb8d\xc3\xa9 \xf0\x9f\x9a\x80"}'])
    run(shim_like_app(), client, path="/model")
    assert client.status == 200
    assert client.json == {"name": "ünïcødé 🚀"}


@pytest.mark.parametrize("path", ["/raw", "/model"])
def test_a_stalled_body_is_a_408(path: str) -> None:
    client = Client([b"{", b"}"], stall_after=1)
    run(shim_like_app(), client, path=path, idle=0.05)
    assert_refused(client, 408)


def test_waiting_for_a_disconnect_after_the_body_is_not_a_stall() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()  # the whole body
        # A streaming answer listens for the client going away: no deadline applies.
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    client = Client([b"{}"])
    run(app, client, idle=0.05)
    assert client.status == 200


def test_an_app_error_unrelated_to_the_limit_still_propagates() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        run(app, Client([b"{}"]))


def test_headers_over_the_limit_are_a_431_before_anything_is_read() -> None:
    client = Client(None)
    run(shim_like_app(), client, headers=[(b"x-padding", b"p" * HEADER_LIMIT)])
    assert_refused(client, 431, param="headers")
    assert client.pulled == 0
    fits = Client([b"{}"])
    run(shim_like_app(), fits, headers=[(b"x-padding", b"p" * (HEADER_LIMIT - 200))])
    assert fits.status == 200
