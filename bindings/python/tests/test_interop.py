"""A Python node talks to a Rust node in another process (examples/rust_peer.rs)."""

from __future__ import annotations

import os
import pathlib
import socket
import subprocess
import threading
from typing import Iterator, Tuple

import pytest

import astranet

HERE = pathlib.Path(__file__).resolve().parent.parent


def _peer_binary() -> str:
    env = os.environ.get("ASTRANET_RUST_PEER")
    if env:
        return env
    for profile in ("release", "debug"):
        p = HERE / "target" / profile / "examples" / "rust_peer"
        if p.exists():
            return str(p)
    subprocess.run(["cargo", "build", "--example", "rust_peer"], cwd=HERE, check=True, timeout=900)
    return str(HERE / "target" / "debug" / "examples" / "rust_peer")


@pytest.fixture
def rust_peer() -> Iterator[Tuple[str, int]]:
    proc = subprocess.Popen(
        [_peer_binary(), "serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().split()
        assert line[0] == "READY", line
        yield line[1], int(line[2], 16)
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.timeout(120)
def test_python_node_talks_to_rust_process(rust_peer: Tuple[str, int]) -> None:
    tcp, host = rust_peer
    with astranet.Node() as node:
        assert node.join(tcp, timeout=10) == host
        assert node.peers() == [host]
        for i in range(5):
            with node.dial(f"{host:016x}:7", timeout=10) as s:
                msg = os.urandom(200_000 + i)

                def send(s: astranet.Stream = s, msg: bytes = msg) -> None:
                    s.sendall(msg)
                    s.shutdown(socket.SHUT_WR)

                sender = threading.Thread(target=send)
                sender.start()
                with s.makefile("rb") as f:
                    assert f.read() == msg
                sender.join(10)
