"""The blocking, socket-like API, used from threads."""

from __future__ import annotations

import errno
import hashlib
import os
import signal
import socket
import threading
import time
from typing import Callable, List, Tuple

import pytest

import astranet

Nodes = Tuple[astranet.Node, astranet.Node]


def test_echo_in_threads(nodes: Nodes, echo_addr: Tuple[int, int]) -> None:
    _, client = nodes
    errors: List[BaseException] = []

    def one(i: int) -> None:
        try:
            with client.dial(echo_addr, timeout=10) as s:
                msg = f"hello {i} ".encode() * 100
                s.sendall(msg)
                s.shutdown(socket.SHUT_WR)
                got = b""
                while True:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    got += chunk
                assert got == msg
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors


def test_socket_like_surface(nodes: Nodes) -> None:
    server, client = nodes
    with server.bind() as listener:
        assert listener.getsockname() == (server.host_id, listener.port)
        accepted: List[astranet.Stream] = []
        t = threading.Thread(target=lambda: accepted.append(listener.accept()))
        t.start()
        target = f"{server.host_id:016x}:{listener.port}"
        with client.dial(target) as s:
            t.join(10)
            peer = accepted[0]
            assert s.getpeername() == (server.host_id, listener.port)
            assert peer.getpeername() == s.getsockname()
            assert s.getsockname()[0] == client.host_id
            assert s.gettimeout() is None and s.getblocking()
            assert s.send(b"abc") == 3
            assert s.send(b"") == 0
            buf = bytearray(10)
            assert peer.recv_into(buf, 2) == 2 and buf[:2] == b"ab"
            assert peer.recv(10) == b"c"
            # makefile, text and binary
            w = s.makefile("w", encoding="utf-8")
            w.write("line one\nline two\n")
            w.flush()
            r = peer.makefile("rb")
            assert r.readline() == b"line one\n"
            assert r.readline() == b"line two\n"
            w.close()
            r.close()
            assert not s.closed
            s.close()
            assert s.closed and s.fileno() == -1
            assert peer.recv(10) == b""
            with pytest.raises(OSError) as e:
                s.send(b"x")
            assert e.value.errno == errno.EBADF
            peer.close()
        assert "Stream" in repr(s) and "Node" in repr(server)


def test_sendall_64mib_verified(nodes: Nodes, echo_addr: Tuple[int, int]) -> None:
    _, client = nodes
    size = 64 << 20
    data = os.urandom(size)
    received = bytearray(size)
    with client.dial(echo_addr) as s:
        def send() -> None:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)

        sender = threading.Thread(target=send)
        sender.start()
        view = memoryview(received)
        got = 0
        while got < size:
            n = s.recv_into(view[got:], min(64 << 10, size - got))
            if n == 0:
                break
            got += n
        assert s.recv(1) == b""
        sender.join(30)
    assert got == size
    assert hashlib.sha256(received).digest() == hashlib.sha256(data).digest()


def test_timeouts_raise_timeout_error(nodes: Nodes, echo_addr: Tuple[int, int]) -> None:
    server, client = nodes
    with client.dial(echo_addr) as s:
        s.settimeout(0.2)
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            s.recv(10)
        assert 0.15 < time.monotonic() - started < 2
        s.setblocking(False)
        assert s.gettimeout() == 0.0
        with pytest.raises(BlockingIOError):
            s.recv(10)
        s.settimeout(5)
        s.sendall(b"ping")
        assert s.recv(10) == b"ping"
        with pytest.raises(ValueError):
            s.settimeout(-1)
    with server.bind() as listener:
        listener.settimeout(0.1)
        with pytest.raises(TimeoutError):
            listener.accept()
        # A dial nobody accepts times out.
        with pytest.raises(TimeoutError):
            client.dial(listener.getsockname(), timeout=0.2)


def wait_for(what: str, cond: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 2
    while not cond():
        assert time.monotonic() < deadline, f"{what} did not happen within 2 s"
        time.sleep(0.01)


def test_timed_out_dials_free_backlog_and_stream_limit() -> None:
    # A dial that gave up leaves the server's backlog and both links' stream counts at
    # once: nobody has to call accept() to clear it.
    with astranet.Node(listener_backlog=1, max_streams_per_link=3) as server, astranet.Node() as client:
        client.join(server.listen(("127.0.0.1", 0)), timeout=10)
        with server.bind() as listener:
            addr = listener.getsockname()
            for _ in range(4):
                with pytest.raises(TimeoutError):
                    client.dial(addr, timeout=0.1)
            wait_for("the backlog emptying", lambda: server.stats()["pending_dials"] == 0)
            assert client.stats()["streams"] == 0 and server.stats()["streams"] == 0
            listener.settimeout(5)
            pairs = []
            for _ in range(3):
                dialed: List[astranet.Stream] = []
                t = threading.Thread(target=lambda: dialed.append(client.dial(addr, timeout=5)))
                t.start()
                accepted = listener.accept()
                t.join(5)
                pairs.append((dialed[0], accepted))
            assert server.stats()["streams"] == 3
            with pytest.raises(ConnectionRefusedError, match="limit"):
                client.dial(addr, timeout=5)
            for a, b in pairs:
                a.close()
                b.close()


def test_refused_dial(nodes: Nodes) -> None:
    server, client = nodes
    with pytest.raises(ConnectionRefusedError) as e:
        client.dial((server.host_id, 4242), timeout=5)
    assert "refused" in str(e.value) and "panic" not in str(e.value)
    with pytest.raises(OSError) as e2:
        client.dial((12345, 1))
    assert e2.value.errno == errno.EHOSTUNREACH
    with pytest.raises(ValueError):
        client.dial("")  # not an address, and no valid service name either
    with pytest.raises(TypeError):
        client.dial(3.5)  # type: ignore[arg-type]
    with astranet.Node() as joiner, pytest.raises(ConnectionRefusedError):
        joiner.join(("127.0.0.1", 1))
    # Neither can be done without waiting: a timeout of 0 is refused by both alike.
    for bad in (0, -1.0, float("nan")):
        with pytest.raises(ValueError):
            client.dial((server.host_id, 4242), timeout=bad)
        with pytest.raises(ValueError):
            client.join(("127.0.0.1", 1), timeout=bad)


def test_errors_map_to_python_exceptions(nodes: Nodes) -> None:
    server, client = nodes
    listener = server.bind(9)
    with pytest.raises(OSError) as e:
        server.bind(9)
    assert e.value.errno == errno.EADDRINUSE
    accepted: List[astranet.Stream] = []
    t = threading.Thread(target=lambda: accepted.append(listener.accept()))
    t.start()
    s = client.dial(listener.getsockname())
    t.join(10)
    peer = accepted[0]
    s.abort()
    with pytest.raises(ConnectionResetError):
        peer.recv(10)
    peer.close()
    s2_accepted: List[astranet.Stream] = []
    t = threading.Thread(target=lambda: s2_accepted.append(listener.accept()))
    t.start()
    s2 = client.dial(listener.getsockname())
    t.join(10)
    s2.shutdown(socket.SHUT_WR)
    with pytest.raises(BrokenPipeError):
        s2.sendall(b"x")
    s2.close()
    s2_accepted[0].close()
    listener.close()
    server.close()
    with pytest.raises(OSError, match="closed"):
        server.bind(1)


def test_keyboard_interrupt_interrupts_blocking_recv(nodes: Nodes, echo_addr: Tuple[int, int]) -> None:
    _, client = nodes
    with client.dial(echo_addr) as s:
        timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
        timer.start()
        started = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            s.recv(10)  # nothing ever comes
        assert time.monotonic() - started < 3
        timer.join()
        # The stream is still usable.
        s.sendall(b"after")
        assert s.recv(10) == b"after"


def test_blocked_recv_releases_the_gil(nodes: Nodes, echo_addr: Tuple[int, int]) -> None:
    _, client = nodes
    with client.dial(echo_addr) as s:
        got: List[bytes] = []
        t = threading.Thread(target=lambda: got.append(s.recv(10)))
        t.start()
        # Pure Python work in this thread keeps running while the other one waits.
        deadline = time.monotonic() + 0.3
        spins = 0
        while time.monotonic() < deadline:
            spins += 1
        assert spins > 10_000
        s.sendall(b"wake")
        t.join(10)
        assert got == [b"wake"]


def test_two_threads_transfer_concurrently(nodes: Nodes, echo_addr: Tuple[int, int]) -> None:
    _, client = nodes
    size = 32 << 20
    progress: dict[int, List[float]] = {0: [], 1: []}
    errors: List[BaseException] = []

    def transfer(i: int) -> None:
        try:
            with client.dial(echo_addr) as s:
                # Send a chunk, then read its echo: a chunk larger than a stream's
                # first window (64 KiB) would leave both ends blocked in sendall
                # until the windows grow, as with TCP sockets and small buffers.
                chunk = bytes(64 << 10)
                buf = bytearray(64 << 10)
                got = 0
                for _ in range(size // len(chunk)):
                    s.sendall(chunk)
                    want = len(chunk)
                    while want:
                        n = s.recv_into(buf, want)
                        assert n > 0
                        want -= n
                        got += n
                    progress[i].append(time.monotonic())
                assert got == size
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=transfer, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    a, b = progress[0], progress[1]
    # Each thread made progress while the other was still transferring.
    assert a[0] < b[-1] and b[0] < a[-1]
    overlap = [t for t in a if b[0] <= t <= b[-1]]
    assert len(overlap) >= 2


def test_listener_iteration_and_close(nodes: Nodes) -> None:
    server, client = nodes
    listener = server.bind(11)
    seen: List[Tuple[int, int]] = []

    def serve() -> None:
        for stream in listener:
            seen.append(stream.getpeername())
            stream.close()

    t = threading.Thread(target=serve)
    t.start()
    for _ in range(3):
        with client.dial((server.host_id, 11)) as s:
            assert s.recv(1) == b""
    listener.close()
    t.join(5)
    assert not t.is_alive() and len(seen) == 3
    with pytest.raises(OSError) as e:
        listener.accept()
    assert e.value.errno == errno.EBADF
    # Closed with its node: the same, as a closed socket's.
    other = server.bind()
    assert not other.closed
    server.close()
    assert other.closed
    with pytest.raises(OSError) as e:
        other.accept()
    assert e.value.errno == errno.EBADF


def test_node_settings_and_stats() -> None:
    with astranet.Node(host_id=0x1234, keepalive=2.0, dial_timeout=1.5, max_streams_per_link=10) as node:
        assert node.host_id == 0x1234
        assert node.stats()["links"] == 0 and node.peers() == []
    assert node.closed
    with pytest.raises(ValueError):
        astranet.Node(keepalive=-1)
    with pytest.raises(ValueError):
        astranet.Node(host_id=0)


def test_min_stream_window_is_granted_with_the_first_credit() -> None:
    """A receiver with ``min_stream_window`` lets a sender have that much in flight
    once it has read a little (without it: 64 KiB and what it read)."""
    window = 4 << 20
    with astranet.Node(min_stream_window=window) as server, astranet.Node() as client:
        client.join(server.listen(("127.0.0.1", 0)), timeout=10)
        with server.bind() as listener:
            accepted: List[astranet.Stream] = []
            acceptor = threading.Thread(target=lambda: accepted.append(listener.accept()))
            acceptor.start()
            s = client.dial(listener.getsockname(), timeout=10)
            acceptor.join(10)
            with s, accepted[0] as peer:
                s.sendall(bytes(32 << 10))
                peer.settimeout(5)
                got = 0
                while got < 32 << 10:
                    got += len(peer.recv(32 << 10))
                # Only the credit for what was read is back: the sender may have the
                # granted window in flight, then blocks.
                s.settimeout(1)
                sent = 0
                with pytest.raises(TimeoutError):
                    while sent < 2 * window:
                        sent += s.send(bytes(64 << 10))
                assert sent >= window, f"sent {sent} bytes"
    with pytest.raises(ValueError):
        astranet.Node(max_stream_window=1 << 20, min_stream_window=2 << 20)


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_fork_child_gets_a_clear_error(nodes: Nodes) -> None:
    _, client = nodes
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(r)
        msg = b"no error"
        try:
            client.dial((1, 1))
        except RuntimeError as e:
            msg = str(e).encode()
        except BaseException as e:  # noqa: BLE001
            msg = repr(e).encode()
        os.write(w, msg)
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        msg = f.read()
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert msg.startswith(b"astranet cannot be used in a forked child"), msg


def _pair(server: astranet.Node, client: astranet.Node) -> Tuple[astranet.Stream, astranet.Stream, astranet.Listener]:
    listener = server.bind()
    accepted: List[astranet.Stream] = []
    t = threading.Thread(target=lambda: accepted.append(listener.accept()))
    t.start()
    s = client.dial(f"{server.host_id:016x}:{listener.port}", timeout=10)
    t.join(10)
    return s, accepted[0], listener


def test_idle_timeout_resets_a_quiet_stream(nodes: Nodes) -> None:
    server, client = nodes
    s, peer, listener = _pair(server, client)
    with listener, s, peer:
        s.set_idle_timeout(0.3)
        for _ in range(8):  # traffic keeps it alive
            s.sendall(b"x")
            assert peer.recv(1) == b"x"
            time.sleep(0.1)
        started = time.monotonic()
        s.settimeout(5)
        with pytest.raises(TimeoutError):
            s.recv(16)
        assert time.monotonic() - started < 1.5
        peer.settimeout(5)
        with pytest.raises(ConnectionResetError):
            peer.recv(16)
        with pytest.raises(ValueError):
            s.set_idle_timeout(-1)


def test_the_nodes_stream_idle_timeout_and_turning_it_off() -> None:
    server = astranet.Node(stream_idle_timeout=0.2)
    client = astranet.Node()
    try:
        client.join(server.listen("127.0.0.1:0"), timeout=10)
        s, peer, listener = _pair(server, client)
        with listener, s, peer:
            peer.set_idle_timeout(None)
            time.sleep(0.5)
            s.sendall(b"alive")
            peer.settimeout(5)
            assert peer.recv(5) == b"alive"
        s, peer, listener = _pair(server, client)
        with listener, s, peer:
            s.settimeout(5)
            with pytest.raises(ConnectionResetError):
                s.recv(16)
    finally:
        client.close()
        server.close()
    with pytest.raises(ValueError):
        astranet.Node(stream_idle_timeout=0)


def _connected(nodes: Nodes) -> Tuple[astranet.Listener, astranet.Stream, astranet.Stream]:
    """A listener of the server and a stream accepted on it: (listener, client side, server side)."""
    server, client = nodes
    listener = server.bind()
    accepted: List[astranet.Stream] = []
    t = threading.Thread(target=lambda: accepted.append(listener.accept()))
    t.start()
    s = client.dial(listener.getsockname(), timeout=10)
    t.join(10)
    return listener, s, accepted[0]


def _blocked(call: Callable[[], object]) -> Tuple[threading.Thread, List[object]]:
    """Runs `call` in a thread; the list gets its result or exception."""
    out: List[object] = []

    def run() -> None:
        try:
            out.append(call())
        except BaseException as e:  # noqa: BLE001 - the test looks at it
            out.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    time.sleep(0.2)  # let it block
    assert not out, out
    return t, out


def test_close_shutdown_and_abort_wake_a_recv_blocked_in_another_thread(nodes: Nodes) -> None:
    listener, s, peer = _connected(nodes)
    with listener, s, peer:
        # shutdown(SHUT_RD): b"", as a socket's recv on Linux.
        t, out = _blocked(lambda: s.recv(10))
        s.shutdown(socket.SHUT_RD)
        t.join(5)
        assert out == [b""]
    for end in ("close", "abort"):
        listener, s, peer = _connected(nodes)
        with listener, peer:
            t, out = _blocked(lambda: s.recv(10))
            getattr(s, end)()
            t.join(5)
            assert len(out) == 1 and isinstance(out[0], OSError), (end, out)
            assert out[0].errno == errno.EBADF, (end, out)


def test_two_threads_reading_one_stream_both_get_their_bytes(nodes: Nodes) -> None:
    listener, s, peer = _connected(nodes)
    with listener, s, peer:
        first, out1 = _blocked(lambda: s.recv(1))
        second, out2 = _blocked(lambda: s.recv(1))
        peer.sendall(b"a")
        time.sleep(0.2)
        peer.sendall(b"b")
        first.join(5)
        second.join(5)
        assert sorted(out1 + out2) == [b"a", b"b"]  # type: ignore[type-var]


def test_two_threads_writing_one_stream_both_finish(nodes: Nodes) -> None:
    listener, s, peer = _connected(nodes)
    size = 4 << 20
    with listener, s, peer:
        writers = [threading.Thread(target=s.sendall, args=(bytes([i]) * size,), daemon=True) for i in (1, 2)]
        for w in writers:
            w.start()
        got = 0
        peer.settimeout(10)
        while got < 2 * size:
            chunk = peer.recv(1 << 20)
            assert chunk, "end of stream before both writes arrived"
            got += len(chunk)
        for w in writers:
            w.join(10)
            assert not w.is_alive()


def test_setblocking_shutdown_and_weakrefs_as_sockets(nodes: Nodes) -> None:
    listener, s, peer = _connected(nodes)
    with listener, s, peer:
        import weakref

        assert weakref.ref(s)() is s and weakref.ref(listener)() is listener
        assert weakref.ref(nodes[0])() is nodes[0]
        with pytest.raises(OSError) as e:
            s.shutdown(3)
        assert e.value.errno == errno.EINVAL
        s.setblocking(0)  # type: ignore[arg-type]
        assert s.gettimeout() == 0.0 and not s.getblocking()
        with pytest.raises(BlockingIOError):
            s.recv(1)
        s.setblocking(1)  # type: ignore[arg-type]
        assert s.gettimeout() is None and s.getblocking()
    # Closed: as a closed socket's, these fail with EBADF.
    for call in (s.getpeername, s.getsockname, lambda: s.settimeout(1)):
        with pytest.raises(OSError) as e:
            call()
        assert e.value.errno == errno.EBADF


def test_close_waits_for_the_files_of_makefile(nodes: Nodes) -> None:
    listener, s, peer = _connected(nodes)
    with listener, peer:
        f = s.makefile("rb")
        s.close()
        assert s.closed
        peer.sendall(b"still there\n")
        assert f.readline() == b"still there\n"
        f.close()  # the last file: the stream closes now
        peer.settimeout(10)
        assert peer.recv(10) == b""


_EXIT_WHILE_RESULTS_ARRIVE = """
import asyncio, threading, time
import astranet
server, client = astranet.Node(), astranet.Node()
client.join(server.listen(("127.0.0.1", 0)), timeout=5)
listener = server.bind(7)
def accept():
    for s in listener:
        s.close()
threading.Thread(target=accept, daemon=True).start()
async def dial():
    while True:
        for f in [asyncio.ensure_future(client.dial_async((server.host_id, 7))) for _ in range(50)]:
            try:
                (await f).close()
            except OSError:
                pass
threading.Thread(target=lambda: asyncio.run(dial()), daemon=True).start()
time.sleep(0.3)
"""


def test_exit_while_asyncio_results_arrive_is_clean(tmp_path: "os.PathLike[str]") -> None:
    import subprocess
    import sys

    script = os.path.join(tmp_path, "exit_race.py")
    with open(script, "w") as f:
        f.write(_EXIT_WHILE_RESULTS_ARRIVE)
    for _ in range(8):
        res = subprocess.run([sys.executable, script], capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stderr[-2000:]
        assert "Fatal Python error" not in res.stderr, res.stderr[-2000:]


# The nodes are left to their streams on purpose, and collected open.
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_a_stream_keeps_its_node_alive() -> None:
    import gc

    def connect() -> Tuple[astranet.Stream, astranet.Stream]:
        # Nothing but the two streams survives this function.
        server, client = astranet.Node(), astranet.Node()
        client.join(server.listen(("127.0.0.1", 0)), timeout=10)
        listener, s, peer = _connected((server, client))
        listener.close()
        return s, peer

    s, peer = connect()
    gc.collect()
    with s, peer:
        s.settimeout(10)
        peer.settimeout(10)
        peer.sendall(b"x")
        assert s.recv(1) == b"x"
        s.sendall(b"y")
        assert peer.recv(1) == b"y"


def test_objects_collected_open_warn_as_sockets_do() -> None:
    import gc
    import warnings

    def unclosed(make: Callable[[], object]) -> List[str]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            obj = make()
            del obj
            gc.collect()
        return [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]

    server, client = astranet.Node(), astranet.Node()
    with server, client:
        client.join(server.listen(("127.0.0.1", 0)), timeout=10)

        def open_pair() -> object:
            listener, s, peer = _connected((server, client))
            return (listener, s, peer)

        got = unclosed(open_pair)
        assert sorted(m.split(" ")[1] for m in got) == [
            "<astranet.Listener",
            "<astranet.Stream",
            "<astranet.Stream",
        ], got

        def closed_pair() -> object:
            listener, s, peer = _connected((server, client))
            for o in (listener, s, peer):
                o.close()
            return (listener, s, peer)

        assert unclosed(closed_pair) == []
    got = unclosed(astranet.Node)
    assert len(got) == 1 and got[0].startswith("unclosed <astranet.Node host_id="), got

    def closed_node() -> object:
        node = astranet.Node()
        node.close()
        return node

    assert unclosed(closed_node) == []


def test_attach_runs_a_link_over_a_socketpair() -> None:
    a, b = astranet.Node(), astranet.Node()
    with a, b:
        left, right = socket.socketpair()
        got: List[object] = []
        t = threading.Thread(target=lambda: got.append(b.attach(right, timeout=10)))
        t.start()
        assert a.attach(left, timeout=10) == b.host_id
        t.join(10)
        assert got == [a.host_id]
        # The node took the sockets over.
        assert left.fileno() == -1 and right.fileno() == -1
        _, s, peer = _connected((b, a))
        with s, peer:
            s.sendall(b"over a socketpair")
            peer.settimeout(10)
            assert peer.recv(100) == b"over a socketpair"

        # Not a stream socket: refused, and left to its owner.
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as dgram:
            with pytest.raises(ValueError):
                a.attach(dgram)
            assert dgram.fileno() >= 0
        with pytest.raises(ValueError):
            a.attach(object())  # type: ignore[arg-type]
        with socket.socket() as listening:
            listening.bind(("127.0.0.1", 0))
            listening.listen()
            with pytest.raises(ValueError):
                a.attach(listening)
            assert listening.fileno() >= 0
        # TLS records on the socket would bypass the SSL layer: refused, as asyncio does.
        import ssl

        context = ssl.create_default_context()
        plain, other = socket.socketpair()
        with other, context.wrap_socket(plain, server_hostname="peer", do_handshake_on_connect=False) as wrapped:
            with pytest.raises(TypeError):
                a.attach(wrapped)
            assert wrapped.fileno() >= 0

        # A silent other end: TimeoutError, and the link's end closed (EOF there).
        mine, silent = socket.socketpair()
        with silent:
            with pytest.raises(TimeoutError):
                a.attach(mine, timeout=0.3)
            silent.settimeout(10)
            while silent.recv(4096):  # the HANDSHAKE, then end of file
                pass
