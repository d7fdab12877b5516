"""Shared fixtures: two linked nodes, an echo listener, event loop factories."""

from __future__ import annotations

import asyncio
import threading
from typing import Callable, Iterator, List, Tuple

import pytest

import astranet


@pytest.fixture
def nodes() -> Iterator[Tuple[astranet.Node, astranet.Node]]:
    """(server, client), linked by one loopback TCP link."""
    server = astranet.Node()
    client = astranet.Node()
    addr = server.listen(("127.0.0.1", 0))
    assert client.join(addr, timeout=10) == server.host_id
    yield server, client
    client.close()
    server.close()


def echo(stream: astranet.Stream) -> None:
    """Echoes until EOF (or until the test closes the nodes), then closes."""
    with stream:
        buf = bytearray(64 << 10)
        view = memoryview(buf)
        try:
            while True:
                n = stream.recv_into(buf)
                if n == 0:
                    return
                stream.sendall(view[:n])
        except (ConnectionAbortedError, ConnectionResetError, BrokenPipeError):
            return


@pytest.fixture
def echo_addr(nodes: Tuple[astranet.Node, astranet.Node]) -> Iterator[Tuple[int, int]]:
    """A threaded echo service on the server node."""
    server, _ = nodes
    listener = server.bind(7)
    threads: List[threading.Thread] = []

    def serve() -> None:
        for stream in listener:
            t = threading.Thread(target=echo, args=(stream,), daemon=True)
            t.start()
            threads.append(t)

    acceptor = threading.Thread(target=serve, daemon=True)
    acceptor.start()
    yield listener.getsockname()
    listener.close()
    acceptor.join(5)
    assert not acceptor.is_alive()


def _uvloop_factory() -> asyncio.AbstractEventLoop:
    import uvloop

    return uvloop.new_event_loop()


LOOPS = {"asyncio": asyncio.new_event_loop, "uvloop": _uvloop_factory}


@pytest.fixture(params=sorted(LOOPS))
def run(request: pytest.FixtureRequest) -> Callable[..., object]:
    """Runs a coroutine to completion on a fresh loop of each kind."""
    factory = LOOPS[request.param]

    def runner(coro: object) -> object:
        loop = factory()
        try:
            return loop.run_until_complete(coro)  # type: ignore[arg-type]
        finally:
            loop.close()

    return runner
