"""Type stubs of the compiled core of the ``astranet`` package (hand-written)."""

import socket
import sys
from types import TracebackType
from typing import Any, Callable, Coroutine, Dict, Iterator, List, Optional, Sequence, Tuple, Union, final, overload

from typing import Literal

if sys.version_info >= (3, 11):
    from typing import Self
else:
    from typing_extensions import Self

from _typeshed import ReadableBuffer, WriteableBuffer
import io
import os

__version__: str
__all__ = ["Listener", "Node", "Stream", "_Notifier", "_Task", "_Waker", "__version__", "_at_exit"]

def _at_exit() -> None: ...

Address = Tuple[int, int]
"""A virtual address ``(host_id, port)``."""

Target = Union[str, Tuple[int, int]]
"""A dial target: a service name, ``"<16 hex digits>:<port>"`` or ``(host_id, port)``."""

Role = Literal["peer", "client", "server", "router"]
"""What a node does in the mesh."""

Service = Dict[str, Any]
"""A service instance: ``name``, ``host_id``, ``port``, ``via`` (int or None), ``reach``."""

Route = Dict[str, Any]
"""A route: ``host_id``, ``via``, ``direct`` (bool)."""

TcpAddress = Union[str, Tuple[str, int]]
"""A TCP address: ``"host:port"`` or ``(host, port)``."""

AccessRule = Dict[str, Any]
"""An access rule: ``peers`` (str pattern), ``announce`` and ``dial`` (lists of str
patterns), ``relay`` (bool)."""

Port = Union[int, str, None]
"""A bind target: a port number, ``":port"``, or ``None``/``0``/``""`` (automatic)."""

@final
class Stream:
    """One bidirectional byte stream between two nodes, used like a connected
    ``socket.socket``. Addresses are virtual ``(host_id, port)`` tuples. Created by
    ``Node.dial`` and ``Listener.accept``.

    ``use_socketpair()`` and ``to_socket()`` use the fd tier: a socketpair pumped by the
    extension, two descriptors and one extra copy per byte."""

    def recv(self, bufsize: int, flags: int = 0, /) -> bytes:
        """Receives up to ``bufsize`` bytes; ``b""`` at end of stream."""
    def recv_into(self, buffer: WriteableBuffer, nbytes: int = 0, flags: int = 0, /) -> int:
        """Receives into ``buffer`` without a copy; returns the count (0 at EOF)."""
    def send(self, data: ReadableBuffer, flags: int = 0, /) -> int:
        """Sends some of ``data``; returns how many bytes were taken."""
    def sendall(self, data: ReadableBuffer, flags: int = 0, /) -> None:
        """Sends all of ``data``; the timeout bounds the whole call."""
    def shutdown(self, how: int, /) -> None:
        """``socket.SHUT_WR``/``SHUT_RDWR`` send end of stream; ``SHUT_RD`` ends reads."""
    def close(self) -> None:
        """Closes gracefully (sent data is still delivered). Idempotent."""
    def abort(self) -> None:
        """Resets the stream: the peer gets ``ConnectionResetError``."""
    @property
    def closed(self) -> bool:
        """True once closed (``close``, ``abort``, ``to_socket``)."""
    def settimeout(self, value: Optional[float], /) -> None:
        """``None``: block; ``0.0``: non-blocking; ``> 0``: ``TimeoutError`` after it."""
    def gettimeout(self) -> Optional[float]:
        """The timeout in seconds, or ``None``."""
    def set_idle_timeout(self, seconds: Optional[float], /) -> None:
        """Resets the stream after ``seconds`` without data either way (``None``: never)."""
    def setblocking(self, flag: bool, /) -> None:
        """``settimeout(None)`` if ``flag`` else ``settimeout(0.0)``."""
    def getblocking(self) -> bool:
        """False when non-blocking."""
    def getsockname(self) -> Address:
        """This end's virtual address."""
    def getpeername(self) -> Address:
        """The other end's virtual address."""
    def fileno(self) -> int:
        """The descriptor given by ``use_socketpair()``; -1 once closed; otherwise
        raises ``io.UnsupportedOperation``."""
    def use_socketpair(self) -> int:
        """Moves the stream to the fd tier and returns its descriptor."""
    def to_socket(self) -> socket.socket:
        """Detaches into a real ``socket.socket`` (fd tier); this Stream is closed."""
    def _recv_ready(self, max: int, waker: _Waker, /) -> Optional[bytes]: ...
    def _io_ref(self) -> None: ...
    def _io_unref(self) -> None: ...
    def _send_ready(self, data: ReadableBuffer, waker: _Waker, /) -> int: ...
    @overload
    def makefile(
        self,
        mode: Literal["r", "w", "rw", "wr", ""] = "r",
        buffering: Optional[int] = None,
        *,
        encoding: Optional[str] = None,
        errors: Optional[str] = None,
        newline: Optional[str] = None,
    ) -> io.TextIOWrapper:
        """A text file object over the stream, as ``socket.makefile``."""
    @overload
    def makefile(
        self,
        mode: Literal["rb", "br"],
        buffering: Optional[int] = None,
        *,
        encoding: Optional[str] = None,
        errors: Optional[str] = None,
        newline: Optional[str] = None,
    ) -> io.BufferedReader:
        """A binary reading file object over the stream."""
    @overload
    def makefile(
        self,
        mode: Literal["wb", "bw"],
        buffering: Optional[int] = None,
        *,
        encoding: Optional[str] = None,
        errors: Optional[str] = None,
        newline: Optional[str] = None,
    ) -> io.BufferedWriter:
        """A binary writing file object over the stream."""
    @overload
    def makefile(
        self,
        mode: str,
        buffering: Optional[int] = None,
        *,
        encoding: Optional[str] = None,
        errors: Optional[str] = None,
        newline: Optional[str] = None,
    ) -> Any:
        """A file object over the stream."""
    def __enter__(self) -> Self:
        """Returns the stream."""
    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> bool:
        """Closes the stream."""

@final
class Listener:
    """A bound virtual port. ``accept()`` returns the next incoming ``Stream``;
    iteration yields streams until it is closed; a context manager."""

    def accept(self) -> Stream:
        """Waits for the next incoming stream (honours the listener's timeout)."""
    def accept_async(self) -> Coroutine[Any, Any, Stream]:
        """``await listener.accept_async()`` in asyncio."""
    def _accept_cb(self, callback: Callable[[Any, Optional[BaseException]], None]) -> _Task: ...
    def settimeout(self, value: Optional[float], /) -> None:
        """The timeout of ``accept`` (see ``Stream.settimeout``)."""
    def gettimeout(self) -> Optional[float]:
        """The timeout of ``accept``."""
    def getsockname(self) -> Address:
        """The bound virtual address ``(host_id, port)``."""
    @property
    def name(self) -> Optional[str]:
        """The service name (environment suffix included), or None for a bare port."""
    @property
    def port(self) -> int:
        """The bound virtual port."""
    def close(self) -> None:
        """Unbinds the port; waiting ``accept`` calls fail. Idempotent."""
    @property
    def closed(self) -> bool:
        """True once closed."""
    def __iter__(self) -> Iterator[Stream]:
        """Yields accepted streams until the listener is closed."""
    def __next__(self) -> Stream:
        """The next accepted stream."""
    def __enter__(self) -> Self:
        """Returns the listener."""
    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> bool:
        """Closes the listener."""

@final
class _Task:
    def cancel(self) -> None: ...

@final
class _Notifier:
    def __new__(cls) -> _Notifier: ...
    def fileno(self) -> int: ...
    def drain(self) -> List[int]: ...
    def waker(self, token: int) -> _Waker: ...

@final
class _Waker: ...

@final
class Node:
    """An astranet node: host id, TCP links, virtual ports and streams. A context
    manager that closes the node on exit."""

    def __new__(
        cls,
        *,
        role: Optional[Role] = None,
        env: Union[str, List[str], None] = None,
        host_id: Optional[int] = None,
        keepalive: Optional[float] = None,
        dial_timeout: Optional[float] = None,
        handshake_timeout: Optional[float] = None,
        frame_stall_timeout: Optional[float] = None,
        linger: Optional[float] = None,
        max_reconnect_delay: Optional[float] = None,
        max_streams_per_link: Optional[int] = None,
        listener_backlog: Optional[int] = None,
        max_link_buffer: Optional[int] = None,
        link_write_queue: Optional[int] = None,
        max_control_queue: Optional[int] = None,
        max_stream_window: Optional[int] = None,
        link_window_budget: Optional[int] = None,
        min_stream_window: Optional[int] = None,
        tls_ca: Union[str, "os.PathLike[str]", bytes, None] = None,
        tls_cert: Union[str, "os.PathLike[str]", bytes, None] = None,
        tls_key: Union[str, "os.PathLike[str]", bytes, None] = None,
        tls_allow_plaintext: bool = False,
        stream_idle_timeout: Optional[float] = None,
        access: Optional[Sequence[AccessRule]] = None,
    ) -> Self:
        """Creates a node (no I/O yet); every setting is optional."""
    @property
    def host_id(self) -> int:
        """This node's host id."""
    def listen(self, addr: TcpAddress) -> Tuple[str, int]:
        """Accepts links on a TCP address; returns the bound ``(ip, port)``."""
    def join(self, addr: TcpAddress, timeout: Optional[float] = None) -> int:
        """Links to the node listening at ``addr`` (kept up); returns its host id."""
    def join_async(self, addr: TcpAddress) -> Coroutine[Any, Any, int]:
        """``await node.join_async(addr)`` in asyncio."""
    def _join_cb(self, addr: TcpAddress, callback: Callable[[Any, Optional[BaseException]], None]) -> _Task: ...
    def attach(self, sock: socket.socket, timeout: Optional[float] = None) -> int:
        """Runs a link over a connected stream socket (taken over); returns the peer's host id."""
    def attach_async(self, sock: socket.socket) -> Coroutine[Any, Any, int]:
        """``await node.attach_async(sock)`` in asyncio."""
    def _attach_cb(self, sock: socket.socket, callback: Callable[[Any, Optional[BaseException]], None]) -> _Task: ...
    def bind(self, port: Port = None) -> Listener:
        """Binds ``"name"``, ``"name:port"``, a port or ``":port"`` (``None``: automatic)."""
    def dial(self, target: Target, timeout: Optional[float] = None, *, key: Optional[str] = None) -> Stream:
        """Opens a stream to ``target``; returns once it is established. ``key``: consistent hashing."""
    def dial_async(
        self, target: Target, timeout: Optional[float] = None, *, key: Optional[str] = None
    ) -> Coroutine[Any, Any, Stream]:
        """``await node.dial_async(target)`` in asyncio."""
    def _dial_cb(
        self,
        target: Target,
        timeout: Optional[float],
        key: Optional[str],
        callback: Callable[[Any, Optional[BaseException]], None],
    ) -> _Task: ...
    def services(self) -> List[Service]:
        """Every service instance this node knows (local, direct, relayed)."""
    def routes(self) -> List[Route]:
        """The hosts this node reaches, directly or through a relay."""
    def peers(self) -> List[int]:
        """Host ids of the nodes linked to this one."""
    def stats(self) -> Dict[str, int]:
        """Counters: links, streams, streams_opened, bytes_in/out, frames_in/dropped,
        pending_dials (dials waiting in this node's backlogs), relayed_streams."""
    def close(self) -> None:
        """Closes every listener and link. Idempotent."""
    @property
    def closed(self) -> bool:
        """True once closed."""
    def __enter__(self) -> Self:
        """Returns the node."""
    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> bool:
        """Closes the node."""
