"""An ``asyncio.Transport`` over a native :class:`Stream`, with no descriptor per
stream.

Every event loop gets one :class:`_Driver`: a ``_Notifier`` (one eventfd) watched with
``loop.add_reader``. A transport reads and writes its stream without blocking; when an
operation cannot go on it leaves a waker with the core, which queues the transport's
token on the notifier when the stream is ready again. The driver's reader callback
drains all queued tokens at once and lets each transport retry. Everything runs on the
loop's thread, as asyncio's own socket transports do.
"""

from __future__ import annotations

import asyncio
import socket
import weakref
from typing import Any, Dict, Optional

from ._astranet import Stream, _Notifier

# Bytes read per attempt, and per readiness callback before yielding to other work.
_READ_SIZE = 256 * 1024
_READ_BUDGET = 1024 * 1024


class _Driver:
    """The notifier of one event loop and the transports waiting on it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._notifier = _Notifier()
        self._transports: Dict[int, StreamTransport] = {}
        self._next = 0
        loop.add_reader(self._notifier.fileno(), self._on_ready)

    def register(self, transport: "StreamTransport") -> int:
        self._next += 1
        self._transports[self._next] = transport
        return self._next

    def unregister(self, ident: int) -> None:
        self._transports.pop(ident, None)

    def wakers(self, ident: int) -> Any:
        # Token 2n: stream n readable; 2n + 1: writable.
        return self._notifier.waker(2 * ident), self._notifier.waker(2 * ident + 1)

    def _on_ready(self) -> None:
        for token in self._notifier.drain():
            transport = self._transports.get(token >> 1)
            if transport is None:
                continue
            if token & 1:
                transport._on_writable()
            else:
                transport._on_readable()


_drivers: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Driver]" = weakref.WeakKeyDictionary()


def _driver(loop: asyncio.AbstractEventLoop) -> _Driver:
    driver = _drivers.get(loop)
    if driver is None:
        driver = _drivers[loop] = _Driver(loop)
    return driver


class StreamTransport(asyncio.Transport):
    """An ``asyncio.Transport`` for a native :class:`Stream` (what
    ``open_connection`` and ``start_server`` give their ``StreamWriter``).

    It behaves as asyncio's socket transports do: reading pauses and resumes with
    the protocol's flow control, writes are buffered (``pause_writing`` /
    ``resume_writing`` around the write-buffer limits), ``write_eof()`` half-closes
    after the buffered data, ``close()`` flushes then closes, ``abort()`` resets the
    stream at once. ``get_extra_info`` knows ``"peername"``, ``"sockname"`` (virtual
    ``(host_id, port)`` addresses) and ``"stream"``.
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, stream: Stream, protocol: asyncio.BaseProtocol
    ) -> None:
        super().__init__({"stream": stream, "peername": stream.getpeername(), "sockname": stream.getsockname()})
        self._loop = loop
        self._stream = stream
        self._protocol: Any = protocol
        self._driver = _driver(loop)
        self._id = self._driver.register(self)
        self._read_waker, self._write_waker = self._driver.wakers(self._id)
        self._buffer = bytearray()
        self._high = 64 * 1024
        self._low = 16 * 1024
        self._protocol_paused = False
        self._reading = True
        self._read_scheduled = False
        self._eof_wanted = False
        self._eof_received = False
        self._closing = False
        self._lost = False
        loop.call_soon(protocol.connection_made, self)
        self._schedule_read()

    # --- reading --------------------------------------------------------------
    def is_reading(self) -> bool:
        return self._reading and not self._closing

    def pause_reading(self) -> None:
        self._reading = False

    def resume_reading(self) -> None:
        if not self._reading:
            self._reading = True
            self._schedule_read()

    def _schedule_read(self) -> None:
        if not self._read_scheduled:
            self._read_scheduled = True
            self._loop.call_soon(self._on_readable)

    def _on_readable(self) -> None:
        self._read_scheduled = False
        got = 0
        while self._reading and not self._closing and not self._eof_received:
            try:
                data = self._stream._recv_ready(_READ_SIZE, self._read_waker)
            except (OSError, ValueError) as exc:
                self._fatal(exc)
                return
            if data is None:
                return  # the waker is set
            if not data:
                self._on_eof()
                return
            self._protocol.data_received(data)
            got += len(data)
            if got >= _READ_BUDGET:
                # Others get their turn; the stream may have more.
                self._schedule_read()
                return

    def _on_eof(self) -> None:
        self._eof_received = True
        keep_open = self._protocol.eof_received()
        if not keep_open:
            self.close()

    # --- writing --------------------------------------------------------------
    def write(self, data: Any) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data argument must be a bytes-like object, not {type(data).__name__!r}")
        if self._eof_wanted:
            raise RuntimeError("Cannot call write() after write_eof()")
        if self._closing or not data:
            return
        if not self._buffer:
            # Straight to the stream while it takes data; the attempt that takes
            # nothing leaves the waker that resumes the buffered rest.
            view = memoryview(data)
            while view:
                try:
                    n = self._stream._send_ready(view, self._write_waker)
                except (OSError, ValueError) as exc:
                    self._fatal(exc)
                    return
                if n == 0:
                    break
                view = view[n:]
            if not view:
                return
            data = view
        self._buffer += data
        self._maybe_pause_protocol()

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def _on_writable(self) -> None:
        if self._lost:
            return
        while self._buffer:
            try:
                n = self._stream._send_ready(self._buffer, self._write_waker)
            except (OSError, ValueError) as exc:
                self._fatal(exc)
                return
            if n == 0:
                return  # the waker is set
            del self._buffer[:n]
        self._maybe_resume_protocol()
        if self._eof_wanted:
            self._shutdown_write()
        if self._closing:
            self._finish(None)

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        if self._eof_wanted or self._closing:
            return
        self._eof_wanted = True
        if not self._buffer:
            self._shutdown_write()

    def _shutdown_write(self) -> None:
        try:
            self._stream.shutdown(socket.SHUT_WR)
        except OSError as exc:
            self._fatal(exc)

    def get_write_buffer_size(self) -> int:
        return len(self._buffer)

    def get_write_buffer_limits(self) -> "tuple[int, int]":
        return (self._low, self._high)

    def set_write_buffer_limits(self, high: Optional[int] = None, low: Optional[int] = None) -> None:
        if high is None:
            high = 64 * 1024 if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high, self._low = high, low
        self._maybe_pause_protocol()

    def _maybe_pause_protocol(self) -> None:
        if len(self._buffer) > self._high and not self._protocol_paused:
            self._protocol_paused = True
            self._call_protocol("pause_writing")

    def _maybe_resume_protocol(self) -> None:
        if self._protocol_paused and len(self._buffer) <= self._low:
            self._protocol_paused = False
            self._call_protocol("resume_writing")

    def _call_protocol(self, method: str) -> None:
        try:
            getattr(self._protocol, method)()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._loop.call_exception_handler(
                {"message": f"protocol.{method}() failed", "exception": exc, "transport": self, "protocol": self._protocol}
            )

    # --- closing --------------------------------------------------------------
    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        """Stops reading, sends what is buffered, then closes the stream (the peer
        reads end of stream)."""
        if self._closing:
            return
        self._closing = True
        if not self._buffer:
            self._loop.call_soon(self._finish, None)

    def abort(self) -> None:
        """Resets the stream at once: buffered and unread data is dropped."""
        if self._lost:
            return
        self._buffer.clear()
        self._stream.abort()
        self._closing = True
        self._loop.call_soon(self._finish, None)

    def _fatal(self, exc: BaseException) -> None:
        if self._lost:
            return
        self._buffer.clear()
        self._closing = True
        self._stream.abort()
        self._loop.call_soon(self._finish, exc)

    def _finish(self, exc: Optional[BaseException]) -> None:
        if self._lost:
            return
        self._lost = True
        self._driver.unregister(self._id)
        self._stream.close()
        try:
            self._protocol.connection_lost(exc)
        finally:
            self._protocol = None

    def __repr__(self) -> str:
        state = "closed" if self._lost else "closing" if self._closing else "open"
        return f"<StreamTransport {state} peer={self.get_extra_info('peername')} buffered={len(self._buffer)}>"
