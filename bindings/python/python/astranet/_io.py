"""File objects over a Stream (``Stream.makefile``), built like ``socket.makefile``."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer, WriteableBuffer


class StreamIO(io.RawIOBase):
    """Raw I/O over a :class:`astranet.Stream`; closing it leaves the stream open."""

    def __init__(self, stream: Any, mode: str) -> None:
        if mode not in ("r", "w", "rw", "rb", "wb", "rwb"):
            raise ValueError(f"invalid mode: {mode!r}")
        super().__init__()
        self._stream = stream
        if "b" not in mode:
            mode += "b"
        self._mode = mode
        self._reading = "r" in mode
        self._writing = "w" in mode
        # As socket.makefile's files: the stream's close() waits for ours.
        stream._io_ref()

    def readinto(self, b: WriteableBuffer) -> Optional[int]:
        """Reads into ``b``; ``None`` when non-blocking and nothing is ready."""
        self._checkClosed()
        self._checkReadable()  # type: ignore[attr-defined]
        try:
            n: int = self._stream.recv_into(b)
            return n
        except BlockingIOError:
            return None

    def write(self, b: ReadableBuffer) -> Optional[int]:
        """Writes some of ``b``; ``None`` when non-blocking and the window is full."""
        self._checkClosed()
        self._checkWritable()  # type: ignore[attr-defined]
        try:
            n: int = self._stream.send(b)
            return n
        except BlockingIOError:
            return None

    def readable(self) -> bool:
        """True if opened for reading."""
        if self.closed:
            raise ValueError("I/O operation on closed stream file.")
        return self._reading

    def writable(self) -> bool:
        """True if opened for writing."""
        if self.closed:
            raise ValueError("I/O operation on closed stream file.")
        return self._writing

    def seekable(self) -> bool:
        """Streams are not seekable."""
        if self.closed:
            raise ValueError("I/O operation on closed stream file.")
        return False

    def fileno(self) -> int:
        """The stream's descriptor, see ``Stream.fileno``."""
        self._checkClosed()
        n: int = self._stream.fileno()
        return n

    @property
    def name(self) -> int:
        """As for sockets' files: the descriptor; -1 once closed or without one."""
        if self.closed:
            return -1
        try:
            return self.fileno()
        except io.UnsupportedOperation:
            return -1

    @property
    def mode(self) -> str:
        """The binary mode it was opened with."""
        return self._mode

    def close(self) -> None:
        """Closes the file; the stream stays open, unless its ``close()`` was called
        and this was its last file."""
        if self.closed:
            return
        io.RawIOBase.close(self)
        stream, self._stream = self._stream, None
        stream._io_unref()


def makefile(
    stream: Any,
    mode: str = "r",
    buffering: Optional[int] = None,
    *,
    encoding: Optional[str] = None,
    errors: Optional[str] = None,
    newline: Optional[str] = None,
) -> Any:
    """``socket.makefile`` for a Stream."""
    if not set(mode) <= {"r", "w", "b"}:
        raise ValueError(f"invalid mode {mode!r} (only r, w, b allowed)")
    writing = "w" in mode
    reading = "r" in mode or not writing
    assert reading or writing
    binary = "b" in mode
    rawmode = ""
    if reading:
        rawmode += "r"
    if writing:
        rawmode += "w"
    raw = StreamIO(stream, rawmode)
    if buffering is None:
        buffering = -1
    if buffering < 0:
        buffering = io.DEFAULT_BUFFER_SIZE
    if buffering == 0:
        if not binary:
            raise ValueError("unbuffered streams must be binary")
        return raw
    buffer: io.BufferedIOBase
    if reading and writing:
        buffer = io.BufferedRWPair(raw, raw, buffering)
    elif reading:
        buffer = io.BufferedReader(raw, buffering)
    else:
        buffer = io.BufferedWriter(raw, buffering)
    if binary:
        return buffer
    # Typeshed's TextIOWrapper wants a buffer with `name`, which its BufferedRWPair
    # lacks; CPython wraps one all the same (socket.makefile does).
    text = io.TextIOWrapper(buffer, encoding, errors, newline)  # type: ignore[type-var]
    text.mode = mode  # type: ignore[misc]
    return text
