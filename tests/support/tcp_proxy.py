"""A TCP forwarder that a test controls, to make a database unreachable without stopping it.

Point a client at :attr:`TcpProxy.port` instead of the server, then:

- :meth:`block` — a network partition: every byte and every new connection is held, nothing
  answers (held bytes are delivered on :meth:`resume`, as TCP retransmits them);
- :meth:`drop` — the server stopped: every connection is closed, and so is each new one;
- :meth:`resume` — traffic passes again.

It runs an asyncio loop on a thread of its own and forwards only to the address it was given
(a loopback server of the test).
"""

from __future__ import annotations

import asyncio
import threading
from types import TracebackType
from typing import Literal

Mode = Literal["pass", "block", "drop"]


class TcpProxy:
    """Forwards 127.0.0.1:<port> to ``target_host:target_port``."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self.port = 0
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._mode: Mode = "pass"
        # Created on the proxy's loop.
        self._flowing: asyncio.Event
        self._closing: asyncio.Event
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.connections = 0

    def start(self) -> TcpProxy:
        """Listen on a free loopback port; returns once it accepts connections."""
        self._thread = threading.Thread(target=self._run, name="tcp-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise TimeoutError("the TCP proxy did not start")
        return self

    def block(self) -> None:
        """Hold all traffic and new connections: the server looks unreachable."""
        self._set("block")

    def drop(self) -> None:
        """Close every connection and each new one: the server looks stopped."""
        self._set("drop")

    def resume(self) -> None:
        """Pass traffic again."""
        self._set("pass")

    def close(self) -> None:
        """Close every connection and stop."""
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._closing.set)
            self._thread.join(10)

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- on the proxy's loop ------------------------------------------------------------------

    def _set(self, mode: Mode) -> None:
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(self._apply(mode), self._loop).result(10)

    async def _apply(self, mode: Mode) -> None:
        self._mode = mode
        if mode == "pass":
            self._flowing.set()
            return
        self._flowing.clear()
        if mode == "drop":
            for writer in list(self._writers):
                writer.transport.abort()

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._closing = asyncio.Event()
        server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            await self._closing.wait()
        finally:
            server.close()
            # Abort every connection and let every handler see it and end (cancelling them
            # would make asyncio's start_server log each cancellation).
            self._mode = "drop"
            for writer in list(self._writers):
                writer.transport.abort()
            self._flowing.set()
            if self._tasks:
                await asyncio.wait(self._tasks, timeout=5)
            await server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        self.connections += 1
        upstream: asyncio.StreamWriter | None = None
        try:
            if self._mode == "drop":
                return
            await self._flowing.wait()  # a blocked proxy holds new connections too
            if writer.is_closing():
                return
            try:
                up_reader, upstream = await asyncio.open_connection(*self._target)
            except OSError:
                return
            self._writers.add(upstream)
            await asyncio.gather(self._pump(reader, upstream), self._pump(up_reader, writer))
        finally:
            for end in (writer, upstream):
                if end is not None:
                    self._writers.discard(end)
                    end.transport.abort()
            self._tasks.discard(task)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                await self._flowing.wait()  # bytes read before a block are held too
                if sink.is_closing():
                    break
                sink.write(data)
                await sink.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            # One side ended: end the other, as the server or client would see it.
            sink.transport.abort()
