"""astranet: millions of independent byte streams over a few TCP links.

Python bindings of the astranet Rust core (wire-compatible with the Go package
github.com/astranet/astranet). A :class:`Node` links to other nodes over TCP
(:meth:`Node.listen`, :meth:`Node.join`), binds virtual ports (:meth:`Node.bind`
gives a :class:`Listener`) and dials streams (:meth:`Node.dial` gives a
:class:`Stream`, used like a connected ``socket.socket``).

asyncio: :func:`open_connection` and :func:`start_server` mirror
``asyncio.open_connection`` / ``asyncio.start_server`` on native streams (a
:class:`StreamTransport` each, no file descriptor per stream); ``await
node.dial_async()`` and ``await listener.accept_async()`` give the streams themselves.
"""

import atexit as _atexit

from ._astranet import Listener, Node, Stream, __version__, _at_exit
from ._aio import Server, open_connection, start_server
from ._transport import StreamTransport

__all__ = [
    "Listener",
    "Node",
    "Server",
    "Stream",
    "StreamTransport",
    "__version__",
    "open_connection",
    "start_server",
]

# Threads blocked in astranet calls must not take the GIL once the interpreter
# finalizes (see runtime.rs); this tells them.
_atexit.register(_at_exit)
