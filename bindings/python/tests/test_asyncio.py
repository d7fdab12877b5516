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
        with astranet.Node() as joiner:
            assert await joiner.join_async(("127.0.0.1", server.listen("127.0.0.1:0")[1])) == server.host_id

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


def test_socketpair_streams_on_request(nodes: Nodes, run: Run) -> None:
    server, client = nodes

    async def main() -> None:
        srv = await astranet.start_server(_echo_handler, server, 7, use_socketpair=True)
        async with srv:
            reader, writer = await astranet.open_connection(client, srv.getsockname(), use_socketpair=True)
            assert writer.get_extra_info("socket") is not None
            writer.write(b"ping")
            writer.write_eof()
            assert await reader.read() == b"ping"
            writer.close()
            await writer.wait_closed()

    run(main())


def test_20000_asyncio_streams_without_a_descriptor_each(nodes: Nodes, run: Run) -> None:
    # Far more streams than the descriptor limit allows sockets: native streams use
    # one eventfd per event loop, whatever their number.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))
    server, client = nodes
    n = 20_000

    async def main() -> None:
        srv = await astranet.start_server(_echo_handler, server, 7)
        target = srv.getsockname()
        opened = await asyncio.gather(*(astranet.open_connection(client, target, timeout=60) for _ in range(n)))
        # All open at once, then every one echoes.
        for i, (_, writer) in enumerate(opened):
            writer.write(b"%d;" % i)
        replies = await asyncio.gather(*(reader.readexactly(len(b"%d;" % i)) for i, (reader, _) in enumerate(opened)))
        assert replies == [b"%d;" % i for i in range(n)]
        for _, writer in opened:
            writer.close()
        await asyncio.gather(*(writer.wait_closed() for _, writer in opened))
        srv.close()
        await srv.wait_closed()

    try:
        run(main())
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_stream_transport_flow_control_and_integrity(nodes: Nodes, run: Run) -> None:
    server, client = nodes
    total = 8 << 20

    async def main() -> None:
        got = asyncio.get_running_loop().create_future()

        async def slow_sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await asyncio.sleep(0.3)  # the writer's buffer fills meanwhile
            data = await reader.readexactly(total)
            assert await reader.read() == b""
            writer.write(b"%d" % len(data))
            writer.close()
            got.set_result(data)

        srv = await astranet.start_server(slow_sink, server, 7)
        async with srv:
            reader, writer = await astranet.open_connection(client, srv.getsockname())
            transport = writer.transport
            assert transport.get_extra_info("peername") == srv.getsockname()
            assert transport.get_extra_info("sockname")[0] == client.host_id
            payload = bytes(range(256)) * (total // 256)
            writer.write(payload)
            assert transport.get_write_buffer_size() > 0, "the window holds back most of it"
            await writer.drain()
            writer.write_eof()
            assert writer.can_write_eof()
            assert await reader.read() == b"%d" % total
            assert await got == payload
            writer.close()
            await writer.wait_closed()

    run(main())


def test_stream_transport_close_abort_and_errors(nodes: Nodes, run: Run) -> None:
    server, client = nodes

    async def main() -> None:
        handlers: "asyncio.Queue[Tuple[asyncio.StreamReader, asyncio.StreamWriter]]" = asyncio.Queue()

        async def keep(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await handlers.put((reader, writer))

        srv = await astranet.start_server(keep, server, 7)
        async with srv:
            # close() flushes what was written: the peer reads it all, then EOF.
            reader, writer = await astranet.open_connection(client, srv.getsockname())
            sr, sw = await handlers.get()
            writer.write(b"x" * 100_000)
            writer.close()
            await writer.wait_closed()
            assert await sr.read() == b"x" * 100_000
            with pytest.raises(RuntimeError):
                sw.write_eof()
                sw.write(b"after eof")
            sw.close()

            # abort(): the peer's read fails with a reset.
            reader, writer = await astranet.open_connection(client, srv.getsockname())
            sr, sw = await handlers.get()
            writer.transport.abort()
            with pytest.raises(ConnectionResetError):
                await sr.read()
            sw.close()

            # The link goes down: an open stream's reader fails, not hangs.
            reader, writer = await astranet.open_connection(client, srv.getsockname())
            sr, sw = await handlers.get()
            server.close()
            with pytest.raises(ConnectionError):
                await asyncio.wait_for(reader.read(), 10)
            writer.close()

    run(main())


def test_attach_async(run: Run) -> None:
    import socket

    async def main() -> None:
        with astranet.Node() as a, astranet.Node() as b:
            left, right = socket.socketpair()
            ids = await asyncio.gather(a.attach_async(left), b.attach_async(right))
            assert ids == [b.host_id, a.host_id]
            assert left.fileno() == -1 and right.fileno() == -1

    run(main())
