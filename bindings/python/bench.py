"""Python benchmark: throughput of the bindings as a ratio of the Rust API's figure,
measured in the same run on the same machine.

    python bench.py [--bulk-mib 1024] [--streams 1000] [--stream-kib 1024]
                    [--scale-streams 100000] [--json FILE]

- bulk: one stream between two nodes over one loopback TCP link; a thread sends
  64 KiB ``sendall`` calls, the main thread receives with 64 KiB ``recv_into``.
  Rust figure: ``rust_peer bulk`` (the same shape with the tokio API).
- asyncio: N concurrent streams through ``astranet.open_connection`` /
  ``astranet.start_server`` (StreamReader/StreamWriter), each sending
  ``--stream-kib`` in 64 KiB writes, then EOF, answered by one byte; on native
  streams (the default) and on the fd tier (``use_socketpair=True``), on the default
  event loop and on uvloop. Rust figure: ``rust_peer streams``.
- asyncio scale: ``--scale-streams`` concurrent StreamReader/StreamWriter pairs in one
  process under a 20,000-descriptor limit: all opened, then each echoes a short
  message; streams per second (open and echo) and the memory they hold.

The Rust peer is built with ``cargo build --release --example rust_peer`` (set
ASTRANET_RUST_PEER to use another binary). Figures are MiB/s; no assertion is made.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import resource
import subprocess
import threading
import time
from typing import Callable, Dict, List, Optional

import astranet

HERE = pathlib.Path(__file__).resolve().parent
CHUNK = 64 << 10


def rust_peer() -> str:
    env = os.environ.get("ASTRANET_RUST_PEER")
    if env:
        return env
    subprocess.run(["cargo", "build", "--release", "--quiet", "--example", "rust_peer"], cwd=HERE, check=True)
    return str(HERE / "target" / "release" / "examples" / "rust_peer")


def rust_figure(*args: str) -> float:
    out = subprocess.run([rust_peer(), *args], check=True, capture_output=True, text=True, timeout=600)
    return float(out.stdout.strip())


def linked_nodes() -> tuple[astranet.Node, astranet.Node]:
    server, client = astranet.Node(), astranet.Node()
    client.join(server.listen("127.0.0.1:0"))
    return server, client


def python_bulk(total: int) -> float:
    server, client = linked_nodes()
    listener = server.bind(9)
    chunk = bytes(CHUNK)
    accepted: List[astranet.Stream] = []
    t = threading.Thread(target=lambda: accepted.append(listener.accept()))
    t.start()
    sender_stream = client.dial(listener.getsockname())
    t.join()
    receiver = accepted[0]

    def send() -> None:
        left = total
        while left > 0:
            n = min(left, CHUNK)
            sender_stream.sendall(chunk if n == CHUNK else chunk[:n])
            left -= n
        sender_stream.close()

    buf = bytearray(CHUNK)
    started = time.perf_counter()
    sender = threading.Thread(target=send)
    sender.start()
    got = 0
    while True:
        n = receiver.recv_into(buf)
        if n == 0:
            break
        got += n
    elapsed = time.perf_counter() - started
    sender.join()
    assert got == total, (got, total)
    receiver.close()
    server.close()
    client.close()
    return total / (1 << 20) / elapsed


async def _asyncio_streams(n: int, each: int, use_socketpair: bool) -> float:
    server, client = linked_nodes()

    async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(CHUNK):
            pass
        writer.write(b"k")
        await writer.drain()
        writer.close()

    srv = await astranet.start_server(sink, server, 9, use_socketpair=use_socketpair)
    target = srv.getsockname()
    chunk = bytes(CHUNK)

    async def one() -> None:
        reader, writer = await astranet.open_connection(client, target, use_socketpair=use_socketpair)
        left = each
        while left > 0:
            k = min(left, CHUNK)
            writer.write(chunk if k == CHUNK else chunk[:k])
            await writer.drain()
            left -= k
        writer.write_eof()
        assert await reader.read() == b"k"
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    elapsed = time.perf_counter() - started
    srv.close()
    await srv.wait_closed()
    server.close()
    client.close()
    return n * each / (1 << 20) / elapsed


def python_asyncio(n: int, each: int, factory: Callable[[], asyncio.AbstractEventLoop], use_socketpair: bool) -> float:
    loop = factory()
    try:
        return loop.run_until_complete(_asyncio_streams(n, each, use_socketpair))
    finally:
        loop.close()


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / (1 << 20)


async def _asyncio_scale(n: int) -> Dict[str, float]:
    server, client = linked_nodes()

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(CHUNK):
            writer.write(data)
        writer.close()

    srv = await astranet.start_server(echo, server, 9)
    target = srv.getsockname()
    before = rss_mib()
    started = time.perf_counter()
    pairs = []
    for i in range(0, n, 10_000):
        batch = range(i, min(n, i + 10_000))
        pairs += await asyncio.gather(*(astranet.open_connection(client, target, timeout=120) for _ in batch))
    for i, (_, writer) in enumerate(pairs):
        writer.write(b"%d;" % i)
    replies = await asyncio.gather(*(r.readexactly(len(b"%d;" % i)) for i, (r, _) in enumerate(pairs)))
    elapsed = time.perf_counter() - started
    assert replies == [b"%d;" % i for i in range(n)]
    held = rss_mib() - before
    for _, writer in pairs:
        writer.close()
    srv.close()
    await srv.wait_closed()
    server.close()
    client.close()
    return {"streams_per_s": n / elapsed, "bytes_per_stream": held * (1 << 20) / n}


def python_asyncio_scale(n: int, factory: Callable[[], asyncio.AbstractEventLoop]) -> Dict[str, float]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 20_000), hard))
    loop = factory()
    try:
        return loop.run_until_complete(_asyncio_scale(n))
    finally:
        loop.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bulk-mib", type=int, default=1024)
    ap.add_argument("--streams", type=int, default=1000)
    ap.add_argument("--stream-kib", type=int, default=1024)
    ap.add_argument("--scale-streams", type=int, default=100_000)
    ap.add_argument("--json", type=str, default=None)
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8 * args.streams + 1024)), hard))

    total = args.bulk_mib << 20
    each = args.stream_kib << 10
    rows: List[Dict[str, object]] = []

    rust = rust_figure("bulk", str(total))
    py = python_bulk(total)
    rows.append({"section": f"bulk 1 stream x {args.bulk_mib} MiB, 64 KiB recv_into", "rust": rust, "python": py})

    rust = rust_figure("streams", str(args.streams), str(each))
    loops: Dict[str, Callable[[], asyncio.AbstractEventLoop]] = {"asyncio": asyncio.new_event_loop}
    try:
        import uvloop

        loops["uvloop"] = uvloop.new_event_loop
    except ImportError:
        pass
    for name, factory in loops.items():
        for tier, use_socketpair in (("native", False), ("fd tier", True)):
            py = python_asyncio(args.streams, each, factory, use_socketpair)
            rows.append(
                {
                    "section": f"{args.streams} streams x {args.stream_kib} KiB, StreamReader/Writer on {name}, {tier}",
                    "rust": rust,
                    "python": py,
                }
            )

    print("| section | Rust API (MiB/s) | Python (MiB/s) | Python/Rust |")
    print("|---|---:|---:|---:|")
    for r in rows:
        ratio = float(r["python"]) / float(r["rust"])  # type: ignore[arg-type]
        r["ratio"] = ratio
        print(f"| {r['section']} | {float(r['rust']):,.0f} | {float(r['python']):,.0f} | {ratio:.2f}x |")  # type: ignore[arg-type]

    print()
    print(f"| {args.scale_streams:,} concurrent asyncio streams, 20,000-fd limit | streams/s (open + echo) | memory per stream |")
    print("|---|---:|---:|")
    for name, factory in loops.items():
        scale = python_asyncio_scale(args.scale_streams, factory)
        rows.append({"section": f"{args.scale_streams} asyncio streams on {name}", **scale})
        print(f"| {name} | {scale['streams_per_s']:,.0f} | {scale['bytes_per_stream']:,.0f} B |")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
