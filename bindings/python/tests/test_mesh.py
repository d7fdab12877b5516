"""The mesh from Python: roles, environments, names, consistent hashing, introspection."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import List, Tuple

import pytest

import astranet
from conftest import echo


def serve_echo(listener: astranet.Listener) -> None:
    def loop() -> None:
        for stream in listener:
            threading.Thread(target=echo, args=(stream,), daemon=True).start()

    threading.Thread(target=loop, daemon=True).start()


def wait_for(node: astranet.Node, name: str, count: int = 1) -> List[astranet._astranet.Service]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = [s for s in node.services() if s["name"] == name]
        if len(found) >= count:
            return found
        time.sleep(0.01)
    raise AssertionError(f"{name} not announced: {node.services()}")


def test_bind_and_dial_by_name(nodes: Tuple[astranet.Node, astranet.Node]) -> None:
    server, client = nodes
    listener = server.bind("db")
    assert listener.name == "db"
    serve_echo(listener)
    (seen,) = wait_for(client, "db")
    assert (seen["host_id"], seen["port"], seen["via"], seen["reach"]) == (
        server.host_id,
        listener.port,
        server.host_id,
        "direct",
    )
    assert server.services()[0]["reach"] == "local"
    assert client.routes() == [{"host_id": server.host_id, "via": server.host_id, "direct": True}]
    with client.dial("db", timeout=5) as stream:
        stream.sendall(b"by name")
        assert stream.recv(16) == b"by name"
        assert stream.getpeername() == (server.host_id, listener.port)
    with client.dial(f"db:{listener.port}", timeout=5) as stream:
        assert stream.getpeername() == (server.host_id, listener.port)
    with pytest.raises(FileNotFoundError):
        client.dial(f"db:{listener.port + 1}", timeout=0.2)


def test_name_nobody_binds(nodes: Tuple[astranet.Node, astranet.Node]) -> None:
    _, client = nodes
    with pytest.raises(FileNotFoundError, match="nobody"):
        client.dial("nobody", timeout=0.2)


def test_environments_isolate_names() -> None:
    with astranet.Node(env="prod") as server, astranet.Node(env=["prod"]) as prod, astranet.Node(
        env="dev"
    ) as dev:
        addr = server.listen(("127.0.0.1", 0))
        prod.join(addr, timeout=10)
        dev.join(addr, timeout=10)
        listener = server.bind("db")
        assert listener.name == "db.prod"
        serve_echo(listener)
        wait_for(prod, "db.prod")
        wait_for(dev, "db.prod")
        with prod.dial("db", timeout=5) as s:
            s.sendall(b"x")
            assert s.recv(1) == b"x"
        with pytest.raises(FileNotFoundError, match="db.dev"):
            dev.dial("db", timeout=0.2)


def test_consistent_hashing_agrees_between_clients() -> None:
    servers = [astranet.Node() for _ in range(3)]
    clients = [astranet.Node(role="client"), astranet.Node(role="client")]
    try:
        for server in servers:
            addr = server.listen(("127.0.0.1", 0))
            for client in clients:
                client.join(addr, timeout=10)
            serve_echo(server.bind("shard"))
        for client in clients:
            wait_for(client, "shard", 3)
        used = set()
        for k in range(20):
            picks = []
            for client in clients:
                with client.dial("shard", 5, key=f"user-{k}") as s:
                    picks.append(s.getpeername())
            assert picks[0] == picks[1], k
            used.add(picks[0])
        assert len(used) > 1
    finally:
        for n in clients + servers:
            n.close()


def test_a_router_relays_by_name() -> None:
    with astranet.Node(role="router") as router, astranet.Node() as a, astranet.Node() as b:
        addr = router.listen(("127.0.0.1", 0))
        a.join(addr, timeout=10)
        b.join(addr, timeout=10)
        serve_echo(b.bind("svc"))
        (seen,) = wait_for(a, "svc")
        assert (seen["reach"], seen["via"]) == ("relayed", router.host_id)
        assert {"host_id": b.host_id, "via": router.host_id, "direct": False} in a.routes()
        with a.dial("svc", timeout=5) as s:
            s.sendall(b"through the router")
            assert s.recv(64) == b"through the router"


def test_asyncio_by_name(nodes: Tuple[astranet.Node, astranet.Node]) -> None:
    server, client = nodes

    async def main() -> bytes:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(await reader.read(100))
            await writer.drain()
            writer.close()

        srv = await astranet.start_server(handle, server, "aio")
        async with srv:
            reader, writer = await astranet.open_connection(client, "aio", timeout=5)
            writer.write(b"hello")
            await writer.drain()
            data = await reader.read(100)
            writer.close()
            return data

    assert asyncio.run(main()) == b"hello"


def test_bad_role_and_env() -> None:
    with pytest.raises(ValueError, match="role"):
        astranet.Node(role="boss")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        astranet.Node(env=5)  # type: ignore[arg-type]
