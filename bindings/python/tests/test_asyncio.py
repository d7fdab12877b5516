"""asyncio: native awaitables and StreamReader/StreamWriter, on asyncio and uvloop."""

from __future__ import annotations

import asyncio
import resource
from typing import Callable, List, Tuple

import pytest

import astranet

Nodes = Tuple[astranet.Node, astranet.Node]
Run = Callable[..., object]


async def _echo_handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        data = await reader.read(65536)
        if not data:
            break
        writer.write(data)
        await writer.drain()
    writer.close()
    await writer.wait_closed()


def test_native_echo(nodes: Nodes, run: Run) -> None:
    server, client = nodes

    async def main() -> None:
        listener = server.bind(7)
        s, peer = await asyncio.gather(client.dial_async(listener.getsockname(), timeout=5), listener.accept_async())
        assert s.getpeername() == peer.getsockname()
        s.sendall(b"hello")
        peer.settimeout(5)
        assert peer.recv(100) == b"hello"
        peer.sendall(b"HELLO")
        s.settimeout(5)
        assert s.recv(100) == b"HELLO"
        s.close()
        peer.close()
        listener.close()
        with pytest.raises(OSError):
            await listener.accept_async()
        with pytest.raises(ConnectionRefusedError):
            await client.dial_async((server.host_id, 8))
        assert await astranet.Node().join_async(("127.0.0.1", server.listen("127.0.0.1:0")[1])) == server.host_id

    run(main())


def test_open_connection_and_start_server(nodes: Nodes, run: Run) -> None:
    server, client = nodes

    async def main() -> None:
        srv = await astranet.start_server(_echo_handler, server, 7)
        async with srv:
            assert srv.is_serving()
            reader, writer = await astranet.open_connection(client, srv.getsockname())
            writer.write(b"line 1\nline 2\n")
            await writer.drain()
            assert await reader.readline() == b"line 1\n"
            assert await reader.readline() == b"line 2\n"
            writer.write_eof()
            assert await reader.read() == b""
            writer.close()
            await writer.wait_closed()
        assert not srv.is_serving()

    run(main())


def test_1000_concurrent_streams(nodes: Nodes, run: Run) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 8192:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(8192, hard), hard))
    server, client = nodes
    n = 1000

    async def main() -> None:
        srv = await astranet.start_server(_echo_handler, server, 7)
        target = srv.getsockname()

        async def one(i: int) -> bytes:
            reader, writer = await astranet.open_connection(client, target, timeout=30)
            msg = (b"%d;" % i) * 300
            writer.write(msg)
            writer.write_eof()
            got = await reader.read()
            writer.close()
            await writer.wait_closed()
            return got

        results = await asyncio.gather(*(one(i) for i in range(n)))
        assert all(r == (b"%d;" % i) * 300 for i, r in enumerate(results))
        srv.close()
        await srv.wait_closed()

    run(main())


def test_1000_concurrent_native_streams(nodes: Nodes, run: Run) -> None:
    server, client = nodes
    n = 1000

    async def main() -> None:
        listener = server.bind(7)
        accepted: List[astranet.Stream] = []

        async def acceptor() -> None:
            for _ in range(n):
                accepted.append(await listener.accept_async())

        task = asyncio.ensure_future(acceptor())
        streams = await asyncio.gather(*(client.dial_async(listener.getsockname()) for _ in range(n)))
        await task
        assert len({s.getsockname() for s in streams}) == n
        for s in streams:
            s.sendall(b"x")
        for a in accepted:
            a.settimeout(5)
            assert a.recv(1) == b"x"
            a.close()
        for s in streams:
            s.close()
        listener.close()

    run(main())


def test_cancelled_dial_and_accept(nodes: Nodes, run: Run) -> None:
    server, client = nodes

    async def main() -> None:
        listener = server.bind(7)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(listener.accept_async(), 0.1)
        with pytest.raises(asyncio.TimeoutError):
            # Nobody accepts: the dial waits, then is cancelled.
            await asyncio.wait_for(client.dial_async(listener.getsockname()), 0.1)
        with pytest.raises(TimeoutError):
            await client.dial_async(listener.getsockname(), timeout=0.1)
        listener.close()

    run(main())
