"""A minimal OpenAI-compatible upstream for the Envoy tests, on nothing but asyncio.

Run as ``python -m tests.envoy.upstream [--port N]``; it prints ``PORT <n>`` once listening.

``POST /v1/chat/completions`` answers a chat completion with a deterministic ``usage``
(:func:`usage_for`, its total also in the ``x-usage-total-tokens`` response header of a
non-streamed answer) and, to show what Envoy forwarded, the headers and body it received
(``received_headers``, ``received_body``). With ``"stream": true`` it answers server-sent events,
paced so a client can see chunks arrive before the end, and a final usage chunk when the body
asks for ``stream_options.include_usage``. Test knobs, as request headers:

- ``x-test-status: 500`` — answer with that status and an OpenAI error body;
- ``x-test-chunks: 8`` / ``x-test-chunk-delay-ms: 100`` — the stream's length and pace.

Any other path answers 200 ``{"ok": true}``. HTTP/1.1 with keep-alive, as Envoy pools connections.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

PROMPT_TOKENS_BASE = 9
COMPLETION_TOKENS = 12
DEFAULT_CHUNKS = 4
DEFAULT_CHUNK_DELAY_MS = 150
# Response header of a non-streamed answer carrying its usage.total_tokens.
USAGE_HEADER = "x-usage-total-tokens"
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 500: "Internal Server Error"}


def usage_for(body: dict[str, Any]) -> dict[str, int]:
    """The usage this upstream reports for a request body: a pure function of the body."""
    chars = sum(len(m.get("content", "")) for m in body.get("messages", []) if isinstance(m, dict))
    completion = min(COMPLETION_TOKENS, int(body.get("max_tokens") or COMPLETION_TOKENS))
    prompt = PROMPT_TOKENS_BASE + chars // 4
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


async def _read_request(
    reader: asyncio.StreamReader,
) -> tuple[str, str, dict[str, str], bytes] | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = bytearray()
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            if size == 0:
                await reader.readline()
                break
            body += await reader.readexactly(size)
            await reader.readline()
        return method, path, headers, bytes(body)
    length = int(headers.get("content-length", "0"))
    return method, path, headers, await reader.readexactly(length)


def _head(status: int, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def _send_json(
    writer: asyncio.StreamWriter,
    status: int,
    document: Any,
    extra_headers: dict[str, str] | None = None,
) -> None:
    data = json.dumps(document).encode()
    headers = {"content-type": "application/json", "content-length": str(len(data))}
    writer.write(_head(status, {**headers, **(extra_headers or {})}) + data)
    await writer.drain()


async def _chat(
    writer: asyncio.StreamWriter, headers: dict[str, str], body: dict[str, Any]
) -> None:
    model = body.get("model", "unknown")
    usage = usage_for(body)
    status = int(headers.get("x-test-status", "200"))
    if status >= 400:
        error = {"message": "upstream failure", "type": "server_error", "param": None, "code": None}
        await _send_json(writer, status, {"error": error})
        return
    if not body.get("stream"):
        await _send_json(
            writer,
            200,
            {
                "id": "chatcmpl-test",
                "object": "chat.completion",
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "hello from upstream"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": usage,
                "received_headers": headers,
                "received_body": body,
            },
            # What a gateway's ratelimit filter can read without parsing the body
            # (examples/envoy/ratelimit.yaml charges it to the customer's tpm window).
            {USAGE_HEADER: str(usage["total_tokens"])},
        )
        return
    chunks = int(headers.get("x-test-chunks", str(DEFAULT_CHUNKS)))
    delay = int(headers.get("x-test-chunk-delay-ms", str(DEFAULT_CHUNK_DELAY_MS))) / 1000
    writer.write(
        _head(
            200,
            {
                "content-type": "text/event-stream",
                "cache-control": "no-cache",
                "transfer-encoding": "chunked",
            },
        )
    )
    events: list[dict[str, Any]] = []
    for i in range(chunks):
        event: dict[str, Any] = {
            "id": "chatcmpl-test",
            "object": "chat.completion.chunk",
            "model": model,
            "choices": [{"index": 0, "delta": {"content": f"word{i} "}, "finish_reason": None}],
        }
        if i == 0:
            event["received_headers"] = headers
            event["received_body"] = body
        events.append(event)
    stream_options = body.get("stream_options") or {}
    if stream_options.get("include_usage"):
        events.append(
            {
                "id": "chatcmpl-test",
                "object": "chat.completion.chunk",
                "model": model,
                "choices": [],
                "usage": usage,
            }
        )
    for i, event in enumerate(events):
        if i:
            await asyncio.sleep(delay)
        await _write_chunk(writer, f"data: {json.dumps(event)}\n\n".encode())
    await _write_chunk(writer, b"data: [DONE]\n\n")
    writer.write(b"0\r\n\r\n")
    await writer.drain()


async def _write_chunk(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
    await writer.drain()


async def _serve_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            request = await _read_request(reader)
            if request is None:
                return
            method, path, headers, raw = request
            if method == "POST" and path.startswith("/v1/chat/completions"):
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    await _send_json(writer, 400, {"error": {"message": "bad json"}})
                    continue
                await _chat(writer, headers, body)
            else:
                await _send_json(writer, 200, {"ok": True, "received_headers": headers})
    except (ConnectionError, asyncio.IncompleteReadError):
        return
    finally:
        writer.close()


async def _main(port: int) -> None:
    server = await asyncio.start_server(_serve_connection, "127.0.0.1", port)
    bound = server.sockets[0].getsockname()[1]
    print(f"PORT {bound}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    """Serve until killed."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    try:
        asyncio.run(_main(args.port))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
