"""The shim served over TLS, against oversized and slow clients, as a real process.

One stack of its own with short limits (64 KiB bodies, 1-second header, body and keep-alive
timeouts) so the slow cases are quick. Raw sockets play the misbehaving clients.
"""

from __future__ import annotations

import json
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import assert_openai_error
from tests.support.shim_stack import ShimStack, shim_stack

pytestmark = pytest.mark.e2e

MASTER_KEY = "sk-limits-master"
CLIENT_KEY = "sk-limits-client"
MAX_BODY = 64 * 1024
TIMEOUT_S = 1.0
CONFIG = f"""
models:
  house-model:
    base_url: ${{FAKE_UPSTREAM_URL}}
    upstream_model: house-model-v1
    max_output_tokens: 1000
    price: {{input_per_mtok: "1.00", output_per_mtok: "2.00"}}
client_keys: [{CLIENT_KEY}]
"""


@pytest.fixture(scope="module")
def shim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ShimStack]:
    with shim_stack(
        tmp_path_factory.mktemp("limits"),
        config=CONFIG,
        master_key=MASTER_KEY,
        tls=True,
        shim_env={
            "SHIM_MAX_BODY_BYTES": str(MAX_BODY),
            "SHIM_HEADER_TIMEOUT_SECONDS": str(TIMEOUT_S),
            "SHIM_BODY_TIMEOUT_SECONDS": str(TIMEOUT_S),
            "SHIM_KEEP_ALIVE_TIMEOUT_SECONDS": str(TIMEOUT_S),
        },
    ) as stack:
        yield stack


def connect(shim: ShimStack) -> ssl.SSLSocket:
    """A TLS connection to the shim, verified against the test certificate."""
    sock = socket.create_connection(("127.0.0.1", shim.shim_port), timeout=10)
    return shim.client_context().wrap_socket(sock, server_hostname="127.0.0.1")


def head(method: str, path: str, *lines: str) -> bytes:
    return "\r\n".join([f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *lines, "", ""]).encode()


def read_response(sock: ssl.SSLSocket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a Content-Length body."""
    data = b""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(65536)
        assert piece, f"connection closed before a response: {data!r}"
        data += piece
    raw_head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = raw_head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        piece = sock.recv(65536)
        assert piece, "connection closed inside the body"
        body += piece
    return int(status_line.split()[1]), headers, body


def closed_within(sock: ssl.SSLSocket, seconds: float) -> bool:
    """Whether the server closes the connection within ``seconds`` (no response arriving)."""
    sock.settimeout(seconds)
    try:
        return sock.recv(1) == b""
    except (ConnectionResetError, ssl.SSLError):
        return True
    except TimeoutError:
        return False


def assert_openai_413(status: int, headers: dict[str, str], body: bytes) -> None:
    assert status == 413, body
    assert headers["connection"] == "close"
    error = json.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["code"], error["param"]) == (
        "invalid_request_error",
        "413",
        "body",
    )
    assert f"{MAX_BODY} bytes" in error["message"]


# -- TLS ---------------------------------------------------------------------------------------


def test_tls_serves_models_and_admin_routes(shim: ShimStack) -> None:
    with shim.http(MASTER_KEY) as http:
        assert http.get("/health").status_code == 200
        answer = http.post(
            "/chat/completions",
            json={"model": "house-model", "user": "tls-c", "max_tokens": 8, "messages": []},
        )
        assert answer.status_code == 200, answer.text
        assert http.get("/customer/info", params={"end_user_id": "tls-c"}).status_code == 200


def test_plain_http_to_the_tls_port_gets_no_answer(shim: ShimStack) -> None:
    plain = f"http://127.0.0.1:{shim.shim_port}/health"
    with pytest.raises(httpx.TransportError):
        httpx.get(plain, timeout=5)


def test_a_client_that_does_not_trust_the_certificate_is_refused(shim: ShimStack) -> None:
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{shim.shim_url}/health", timeout=5)


# -- body size ---------------------------------------------------------------------------------


def test_a_declared_oversized_body_is_refused_before_it_is_sent(shim: ShimStack) -> None:
    with connect(shim) as sock:
        sock.sendall(
            head(
                "POST",
                "/chat/completions",
                f"Authorization: Bearer {MASTER_KEY}",
                "Content-Type: application/json",
                "Content-Length: 1000000000",
            )
        )
        assert_openai_413(*read_response(sock))
        assert closed_within(sock, 5)


@pytest.mark.parametrize("path", ["/chat/completions", "/customer/new"])
def test_an_oversized_chunked_body_is_cut_off_as_it_arrives(shim: ShimStack, path: str) -> None:
    piece = 16 * 1024
    with connect(shim) as sock:
        sock.sendall(
            head(
                "POST",
                path,
                f"Authorization: Bearer {MASTER_KEY}",
                "Content-Type: application/json",
                "Transfer-Encoding: chunked",
            )
        )
        # Just past the limit, and no last chunk: the shim must not wait for the end.
        for _ in range(MAX_BODY // piece + 1):
            sock.sendall(f"{piece:x}\r\n".encode() + b" " * piece + b"\r\n")
        assert_openai_413(*read_response(sock))


def test_a_client_library_gets_the_413_too(shim: ShimStack) -> None:
    prompt = "x" * (MAX_BODY + 1)
    with shim.http(MASTER_KEY) as http:
        refused = http.post(
            "/chat/completions",
            json={"model": "house-model", "messages": [{"role": "user", "content": prompt}]},
        )
        assert_openai_error(refused, 413, "invalid_request_error")
        # Just under the limit is served.
        fits = http.post(
            "/chat/completions",
            json={
                "model": "house-model",
                "max_tokens": 4,
                "messages": [{"role": "user", "content": "y" * (MAX_BODY - 200)}],
            },
        )
        assert fits.status_code == 200, fits.text


def test_a_stalled_body_is_a_408(shim: ShimStack) -> None:
    with connect(shim) as sock:
        sock.sendall(
            head(
                "POST",
                "/customer/new",
                f"Authorization: Bearer {MASTER_KEY}",
                "Content-Type: application/json",
                "Content-Length: 100",
            )
            + b'{"user_id": '
        )
        started = time.monotonic()
        status, _, body = read_response(sock)
        assert status == 408, body
        assert time.monotonic() - started < TIMEOUT_S + 3
        assert json.loads(body)["error"]["code"] == "408"


@pytest.mark.parametrize(("padding", "status"), [(20_000, 431), (200_000, 400)])
def test_oversized_headers_are_refused(shim: ShimStack, padding: int, status: int) -> None:
    """Over SHIM_MAX_HEADER_BYTES: 431; growing without end: h11 stops buffering (400)."""
    with connect(shim) as sock:
        sock.sendall(head("GET", "/health", f"Authorization: Bearer {MASTER_KEY}"))
        assert read_response(sock)[0] == 200
        sock.sendall(head("GET", "/health", "X-Padding: " + "p" * padding))
        assert read_response(sock)[0] == status


# -- slow clients ------------------------------------------------------------------------------


def test_a_client_dripping_its_headers_is_cut_off(shim: ShimStack) -> None:
    """Slowloris: a byte every 0.1 s keeps the connection busy but never finishes a request."""
    with connect(shim) as sock:
        sock.sendall(b"POST /chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        started = time.monotonic()
        cut_off = False
        received = b""
        while time.monotonic() - started < TIMEOUT_S + 4:
            try:
                sock.sendall(b"X")
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                cut_off = True
                break
            sock.settimeout(0.1)
            try:
                piece = sock.recv(1024)
            except TimeoutError:
                continue
            except (ConnectionResetError, ssl.SSLError):
                cut_off = True
                break
            if not piece:
                cut_off = True
                break
            received += piece
        elapsed = time.monotonic() - started
    assert cut_off, "the shim kept a connection whose headers never ended"
    assert TIMEOUT_S - 0.3 < elapsed < TIMEOUT_S + 3
    assert received == b""  # closed, never answered


def test_a_connection_that_sends_nothing_is_closed(shim: ShimStack) -> None:
    with connect(shim) as sock:
        assert closed_within(sock, TIMEOUT_S + 3)


def test_an_idle_kept_alive_connection_is_closed(shim: ShimStack) -> None:
    with connect(shim) as sock:
        for _ in range(2):  # kept alive between requests that come in time
            sock.sendall(head("GET", "/health"))
            status, headers, _ = read_response(sock)
            assert status == 200 and headers.get("connection") != "close"
        assert closed_within(sock, TIMEOUT_S + 3)


def test_a_kept_alive_connection_dripping_its_next_request_is_cut_off(shim: ShimStack) -> None:
    with connect(shim) as sock:
        sock.sendall(head("GET", "/health"))
        assert read_response(sock)[0] == 200
        sock.sendall(b"GET /health HTTP/1.1\r\n")
        started = time.monotonic()
        while time.monotonic() - started < TIMEOUT_S + 3:
            try:
                sock.sendall(b"X")
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                break
            if closed_within(sock, 0.1):
                break
        assert time.monotonic() - started < TIMEOUT_S + 3


def test_the_shim_still_serves_after_all_that(shim: ShimStack, tmp_path: Path) -> None:
    with shim.http(CLIENT_KEY) as http:
        assert http.get("/health/readiness").status_code == 200
        refused = http.get("/customer/list")
        assert_openai_error(refused, 403, "permission_error")
