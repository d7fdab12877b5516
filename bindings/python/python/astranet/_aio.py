"""asyncio support: the bridge from the extension's runtime to the event loop, and
``open_connection`` / ``start_server`` mirroring the ones of ``asyncio``.

Results of the Rust runtime reach the event loop through
``loop.call_soon_threadsafe``, which every event loop has (the default one, uvloop),
so nothing here depends on a particular loop.

StreamReader/StreamWriter pairs run on native streams through :class:`StreamTransport`,
an ``asyncio.Transport``: one eventfd per event loop (a ``_Notifier`` watched with
``loop.add_reader``) tells which streams became readable or writable, so a process
holds as many streams as memory allows, whatever its descriptor limit. With
``use_socketpair=True`` a pair runs on the fd tier instead (``Stream.to_socket()``:
two descriptors per stream, the loop's own socket transport does the I/O).
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any, Awaitable, Callable, Optional, Tuple, Union

from ._astranet import Listener, Node, Stream
from ._transport import StreamTransport

_Target = Union[str, Tuple[int, int]]
_Port = Union[int, str, None]
_ClientConnected = Callable[
    [asyncio.StreamReader, asyncio.StreamWriter], Optional[Awaitable[None]]
]


def _resolve(fut: "asyncio.Future[Any]", result: Any, exc: Optional[BaseException]) -> None:
    if fut.done():
        # Cancelled meanwhile: do not leak what arrived.
        close = getattr(result, "close", None)
        if close is not None:
            close()
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)


async def run(start: Callable[..., Any], *args: Any) -> Any:
    """Runs ``start(*args, callback)`` (an operation of the extension that reports
    to ``callback(result, exception)`` from a runtime thread) and awaits its result.
    Cancelling the awaiting task cancels the operation."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[Any] = loop.create_future()

    def done(result: Any, exc: Optional[BaseException]) -> None:
        try:
            loop.call_soon_threadsafe(_resolve, fut, result, exc)
        except RuntimeError:
            # The loop was closed: nobody waits any more.
            close = getattr(result, "close", None)
            if close is not None:
                close()

    task = start(*args, done)
    try:
        return await fut
    except asyncio.CancelledError:
        task.cancel()
        raise


async def _wrap_socket(
    sock: socket.socket, limit: int
) -> Tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=limit, loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    transport, _ = await loop.connect_accepted_socket(lambda: protocol, sock)
    writer = asyncio.StreamWriter(transport, protocol, reader, loop)
    return reader, writer


async def _serve_socket(sock: socket.socket, limit: int, client_connected_cb: _ClientConnected) -> None:
    # As asyncio.start_server does: the protocol makes the writer and runs the
    # callback (a second StreamWriter would close the transport when collected).
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=limit, loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, client_connected_cb, loop=loop)
    await loop.connect_accepted_socket(lambda: protocol, sock)


async def _wrap_stream(stream: Stream, limit: int) -> Tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=limit, loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    transport = StreamTransport(loop, stream, protocol)
    # connection_made runs in the next loop iteration, as with loop.create_connection.
    await asyncio.sleep(0)
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)


def _serve_stream(stream: Stream, limit: int, client_connected_cb: _ClientConnected) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=limit, loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, client_connected_cb, loop=loop)
    StreamTransport(loop, stream, protocol)


async def open_connection(
    node: Node,
    target: _Target,
    *,
    timeout: Optional[float] = None,
    limit: int = 2**16,
    use_socketpair: bool = False,
) -> Tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Dials ``target`` (a service name, ``"<16 hex digits>:<port>"`` or
    ``(host_id, port)``) from ``node`` and returns ``(reader, writer)``, like
    ``asyncio.open_connection``.

    ``writer.write_eof()`` half-closes the stream; ``writer.close()`` closes it. The
    pair runs on the native stream (a :class:`StreamTransport`; no descriptor per
    stream); ``use_socketpair=True`` puts it on a socketpair run by the loop's own
    socket transport instead (two descriptors and one extra copy per stream).
    """
    stream: Stream = await node.dial_async(target, timeout)
    if not use_socketpair:
        try:
            return await _wrap_stream(stream, limit)
        except BaseException:
            stream.close()
            raise
    sock = stream.to_socket()
    try:
        return await _wrap_socket(sock, limit)
    except BaseException:
        sock.close()
        raise


class Server:
    """A listener served by an asyncio task, as returned by :func:`start_server`
    (the counterpart of ``asyncio.Server``); an async context manager."""

    def __init__(
        self, listener: Listener, client_connected_cb: _ClientConnected, limit: int, use_socketpair: bool = False
    ) -> None:
        self._listener = listener
        self._cb = client_connected_cb
        self._limit = limit
        self._use_socketpair = use_socketpair
        self._task: Optional[asyncio.Task[None]] = None
        self._serving_forever: Optional[asyncio.Future[None]] = None
        self._closed = asyncio.Event()
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def listener(self) -> Listener:
        """The bound :class:`Listener`."""
        return self._listener

    def getsockname(self) -> Tuple[int, int]:
        """The bound virtual address ``(host_id, port)``."""
        return self._listener.getsockname()

    def is_serving(self) -> bool:
        """True while it accepts streams."""
        return self._task is not None and not self._task.done()

    async def start_serving(self) -> None:
        """Starts accepting (``start_server`` already did, unless told otherwise)."""
        if self._task is None and not self._listener.closed:
            self._task = asyncio.get_running_loop().create_task(self._accept_loop())

    async def serve_forever(self) -> None:
        """Accepts until the server is closed or the calling task is cancelled
        (which closes the server)."""
        await self.start_serving()
        try:
            await self._closed.wait()
        finally:
            self.close()

    def close(self) -> None:
        """Stops accepting and unbinds the port; streams already accepted go on."""
        self._listener.close()
        if self._task is not None:
            self._task.cancel()
        self._closed.set()

    async def wait_closed(self) -> None:
        """Waits until the accept task has stopped after :meth:`close`."""
        await self._closed.wait()
        if self._task is not None:
            try:
                await self._task
            except (asyncio.CancelledError, OSError):
                pass

    async def __aenter__(self) -> "Server":
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
        await self.wait_closed()

    async def _accept_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                stream = await self._listener.accept_async()
            except OSError:
                # The listener or its node was closed: the server is done.
                self.close()
                return
            if not self._use_socketpair:
                _serve_stream(stream, self._limit, self._cb)
                continue
            handler = loop.create_task(self._handle(stream))
            self._handlers.add(handler)
            handler.add_done_callback(self._handlers.discard)

    async def _handle(self, stream: Stream) -> None:
        sock = stream.to_socket()
        try:
            await _serve_socket(sock, self._limit, self._cb)
        except BaseException:
            sock.close()
            raise


async def start_server(
    client_connected_cb: _ClientConnected,
    node: Node,
    port: _Port = None,
    *,
    limit: int = 2**16,
    start_serving: bool = True,
    use_socketpair: bool = False,
) -> Server:
    """Binds ``port`` on ``node`` (a service name, ``"name:port"``, a number,
    ``":port"``, or ``None`` for an automatic port) and calls ``client_connected_cb(reader, writer)`` for every
    incoming stream, like ``asyncio.start_server``; a coroutine callback runs as a
    task. Streams run natively (no descriptor each) unless ``use_socketpair=True``
    (see :func:`open_connection`). Returns the :class:`Server`."""
    server = Server(node.bind(port), client_connected_cb, limit, use_socketpair)
    if start_serving:
        await server.start_serving()
    return server
