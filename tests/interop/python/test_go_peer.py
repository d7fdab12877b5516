"""The Python front against the original Go package, run as a real process (gopeer).

Run by bindings/python/test.sh with the package installed and $ASTRANET_GOPEER set.
"""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import threading
from typing import Any, Dict, Iterator

import pytest

import astranet

ROOT = pathlib.Path(__file__).resolve().parents[3]


def _gopeer() -> str:
    path = os.environ.get("ASTRANET_GOPEER")
    if path:
        return path
    out = ROOT / "target" / "interop" / "gopeer"
    subprocess.run(
        ["go", "build", "-o", str(out), "."], cwd=ROOT / "tests" / "interop" / "gopeer", check=True, timeout=600
    )
    return str(out)


class GoPeer:
    """A Go astranet node in its own process, driven line by line (see gopeer/main.go)."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [_gopeer(), *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
        )
        self.next_id = 1
        self.addr = None
        while True:
            ev = self._line()
            if ev.get("event") == "listening":
                self.addr = ev["addr"]
            elif ev.get("event") == "ready":
                self.host = int(ev["host"], 16)
                return
            else:
                raise RuntimeError(f"gopeer failed to start: {ev}")

    def _line(self) -> Dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("gopeer exited")
        result: Dict[str, Any] = json.loads(line)
        return result

    def cmd(self, line: str) -> Dict[str, Any]:
        """One command at a time: its answer is the next line with its id."""
        assert self.proc.stdin is not None
        cid, self.next_id = self.next_id, self.next_id + 1
        self.proc.stdin.write(f"{cid} {line}\n")
        self.proc.stdin.flush()
        while True:
            v = self._line()
            if v.get("id") == cid:
                return v

    def services(self) -> list[str]:
        return [s["name"] for s in self.cmd("services").get("services") or []]

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def python_and_go() -> Iterator[tuple[astranet.Node, GoPeer]]:
    node = astranet.Node(env=["py"])
    addr = node.listen(("127.0.0.1", 0))
    go = GoPeer("-env", "py", "-join", f"{addr[0]}:{addr[1]}")
    try:
        yield node, go
    finally:
        go.close()
        node.close()


def _serve_echo(listener: astranet.Listener) -> None:
    def run() -> None:
        while True:
            try:
                s = listener.accept()
            except OSError:
                return
            with s:
                while True:
                    data = s.recv(65536)
                    if not data:
                        break
                    s.sendall(data)

    threading.Thread(target=run, daemon=True).start()


@pytest.mark.timeout(120)
def test_python_and_go_echo_each_other(python_and_go: tuple[astranet.Node, GoPeer]) -> None:
    node, go = python_and_go
    # A Python service, dialed by the Go node with the Go idiom: write, Close(), read.
    listener = node.bind("pyecho")
    _serve_echo(listener)
    for _ in range(100):
        if "pyecho.py" in go.services():
            break
        threading.Event().wait(0.05)
    answer = go.cmd("dial-echo pyecho 1048576 3 1 4 60")
    assert answer["ok"], answer

    # A Go service, dialed from Python: data, half-close, data back, then EOF.
    assert go.cmd("serve gecho echo")["ok"]
    msg = os.urandom(300_000)
    with node.dial("gecho", timeout=20) as s:

        def send() -> None:
            # Beyond a window each way, so the echo must be read while it is written.
            s.sendall(msg)
            s.shutdown(socket.SHUT_WR)

        sender = threading.Thread(target=send)
        sender.start()
        back = bytearray()
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            back += chunk
        sender.join()
    assert bytes(back) == msg
    listener.close()
