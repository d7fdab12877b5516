"""The shared target table (tests/targets.tsv at the repository root, read by every
front) and the errors of addresses: each rejection at once, as Python's sockets
would raise it."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Iterator, List, NamedTuple

import pytest

import astranet

TABLE = Path(__file__).resolve().parents[3] / "tests" / "targets.tsv"


class Row(NamedTuple):
    line: int
    op: str
    text: str
    expect: str


def unescape(s: str) -> str:
    out = bytearray()
    data = s.encode()
    i = 0
    while i < len(data):
        if data[i : i + 1] != b"\\":
            out += data[i : i + 1]
            i += 1
            continue
        esc = data[i + 1 : i + 2]
        if esc == b"x":
            out.append(int(data[i + 2 : i + 4], 16))
            i += 4
            continue
        out += {b"t": b"\t", b"n": b"\n", b"\\": b"\\"}[esc]
        i += 2
    return out.decode()


def rows() -> Iterator[Row]:
    for n, line in enumerate(TABLE.read_text(encoding="utf-8").splitlines(), 1):
        if not line or line.startswith("#"):
            continue
        op, text, repeat, expect = line.split("\t")
        yield Row(n, op, unescape(text) * int(repeat or 1), expect)


def ids(r: Row) -> str:
    return f"line{r.line}"


@pytest.mark.parametrize("row", [r for r in rows() if r.op == "dial"], ids=ids)
def test_dial_table(row: Row) -> None:
    with astranet.Node() as node:
        started = time.monotonic()
        if row.expect == "invalid":
            with pytest.raises(ValueError) as e:
                node.dial(row.text, timeout=30)
            assert len(str(e.value)) < 300, "the message quotes a bounded prefix"
            assert time.monotonic() - started < 1, "refused at once"
        else:
            # Valid: the node looks for it (no such service, or no route to the host).
            with pytest.raises(OSError) as e2:
                node.dial(row.text, timeout=0.05)
            assert not isinstance(e2.value, ValueError)


@pytest.mark.parametrize("row", [r for r in rows() if r.op == "bind"], ids=ids)
def test_bind_table(row: Row) -> None:
    with astranet.Node() as node:
        if row.expect == "invalid":
            with pytest.raises(ValueError):
                node.bind(row.text)
            return
        _, name, port = row.expect.split(" ")
        with node.bind(row.text) as listener:
            if port != "0":
                assert listener.getsockname()[1] == int(port)
            names: List[str] = [s["name"] for s in node.services()]
            assert names == ([] if name == "-" else [name])


def test_ints_out_of_range_raise_overflow_error() -> None:
    with astranet.Node() as node:
        for bad in [(1, 2**32), (1, -1), (2**64, 1), (-1, 1)]:
            with pytest.raises(OverflowError):
                node.dial(bad)
        for port in [2**32, -1]:
            with pytest.raises(OverflowError):
                node.bind(port)
        with pytest.raises(OverflowError):
            node.listen(("127.0.0.1", 70000))
        with pytest.raises(TypeError):
            node.dial((1, 2, 3))  # type: ignore[arg-type]


def test_addresses_that_do_not_resolve_raise_gaierror() -> None:
    with astranet.Node() as node:
        for bad in ["nonsense", ("256.0.0.1", 0), "no-such-host.invalid:1"]:
            with pytest.raises(socket.gaierror):
                node.listen(bad)
            with pytest.raises(socket.gaierror):
                node.join(bad, timeout=5)


def test_join_to_a_silent_listener_times_out_with_or_without_a_timeout() -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    try:
        with astranet.Node(handshake_timeout=0.3) as node:
            with pytest.raises(TimeoutError):
                node.join(silent.getsockname())
            with pytest.raises(TimeoutError):
                node.join(silent.getsockname(), timeout=5)
    finally:
        silent.close()
