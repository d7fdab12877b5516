"""The fd tier: use_socketpair() and to_socket() give real descriptors; fileno()
only reports one."""

from __future__ import annotations

import asyncio
import io
import selectors
import socket
import threading
from typing import Callable, List, Tuple

import pytest

import astranet

Nodes = Tuple[astranet.Node, astranet.Node]


def test_to_socket_with_selectors(nodes: Nodes, echo_addr: Tuple[int, int]) -> None:
    _, client = nodes
    sock = client.dial(echo_addr).to_socket()
    assert isinstance(sock, socket.socket)
    sock.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ)
    assert sel.select(0.05) == []
    sock.sendall(b"ping")
    events = sel.select(5)
    assert events and events[0][0].fileobj is sock
    assert sock.recv(10) == b"ping"
    sock.shutdown(socket.SHUT_WR)
    sock.setblocking(True)
    sock.settimeout(5)
    assert sock.recv(10) == b""  # the echo closed after our EOF
    sel.close()
    sock.close()


def test_fileno_is_a_plain_accessor(nodes: Nodes, echo_addr: Tuple[int, int]) -> None:
    _, client = nodes
    with client.dial(echo_addr) as s:
        with pytest.raises(io.UnsupportedOperation, match="use_socketpair"):
            s.fileno()
        assert "fd-tier" not in repr(s)  # asking did not convert it
        s.settimeout(5)
        s.sendall(b"still native")
        assert s.recv(100) == b"still native"
        with s.makefile("rb") as f:
            assert f.name == -1
    assert s.fileno() == -1


def test_use_socketpair_keeps_the_stream_usable(nodes: Nodes, echo_addr: Tuple[int, int]) -> None:
    _, client = nodes
    with client.dial(echo_addr) as s:
        s.settimeout(5)
        fd = s.use_socketpair()
        assert fd >= 0 and s.fileno() == fd and s.use_socketpair() == fd
        assert "fd-tier" in repr(s)
        sel = selectors.DefaultSelector()
        sel.register(s, selectors.EVENT_READ)
        s.sendall(b"abc")
        assert sel.select(5)
        assert s.recv(10) == b"abc"
        sel.close()
    assert s.fileno() == -1


def test_to_socket_with_asyncio_open_connection(nodes: Nodes, echo_addr: Tuple[int, int], run: Callable[..., object]) -> None:
    _, client = nodes

    async def main() -> None:
        sock = client.dial(echo_addr).to_socket()
        reader, writer = await asyncio.open_connection(sock=sock)
        writer.write(b"hello over fd\n")
        await writer.drain()
        assert await reader.readline() == b"hello over fd\n"
        writer.close()
        await writer.wait_closed()

    run(main())


def test_accepted_stream_to_socket(nodes: Nodes) -> None:
    server, client = nodes
    with server.bind() as listener:
        out: List[socket.socket] = []
        t = threading.Thread(target=lambda: out.append(listener.accept().to_socket()))
        t.start()
        s = client.dial(listener.getsockname())
        t.join(10)
        peer = out[0]
        peer.settimeout(5)
        s.sendall(b"to the socket")
        assert peer.recv(100) == b"to the socket"
        peer.sendall(b"back")
        assert s.recv(100) == b"back"
        peer.close()
        s.settimeout(5)
        assert s.recv(100) == b""
        s.close()


def test_abort_after_fileno_resets_the_peer(nodes: Nodes) -> None:
    server, client = nodes
    with server.bind() as listener:
        accepted: List[astranet.Stream] = []
        t = threading.Thread(target=lambda: accepted.append(listener.accept()))
        t.start()
        s = client.dial(listener.getsockname())
        t.join(10)
        peer = accepted[0]
        assert s.use_socketpair() >= 0
        s.abort()
        assert s.closed
        peer.settimeout(5)
        try:
            got = peer.recv(10)
        except ConnectionResetError:
            got = None
        assert got is None
        peer.close()
