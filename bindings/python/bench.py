"""Python benchmark: throughput of the bindings as a ratio of the Rust API's figure,
measured in the same run on the same machine.

    python bench.py [--bulk-mib 1024] [--streams 1000] [--stream-kib 1024] [--json FILE]

- bulk: one stream between two nodes over one loopback TCP link; a thread sends
  64 KiB ``sendall`` calls, the main thread receives with 64 KiB ``recv_into``.
  Rust figure: ``rust_peer bulk`` (the same shape with the tokio API).
- asyncio: N concurrent streams through ``astranet.open_connection`` /
  ``astranet.start_server`` (StreamReader/StreamWriter, fd tier), each sending
  ``--stream-kib`` in 64 KiB writes, then EOF, answered by one byte. Run on the
  default event loop and on uvloop. Rust figure: ``rust_peer streams``.

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


async def _asyncio_streams(n: int, each: int) -> float:
    server, client = linked_nodes()

    async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(CHUNK):
            pass
        writer.write(b"k")
        await writer.drain()
        writer.close()

    srv = await astranet.start_server(sink, server, 9)
    target = srv.getsockname()
    chunk = bytes(CHUNK)

    async def one() -> None:
        reader, writer = await astranet.open_connection(client, target)
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


def python_asyncio(n: int, each: int, factory: Callable[[], asyncio.AbstractEventLoop]) -> float:
    loop = factory()
    try:
        return loop.run_until_complete(_asyncio_streams(n, each))
    finally:
        loop.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bulk-mib", type=int, default=1024)
    ap.add_argument("--streams", type=int, default=1000)
    ap.add_argument("--stream-kib", type=int, default=1024)
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
        py = python_asyncio(args.streams, each, factory)
        rows.append(
            {
                "section": f"{args.streams} streams x {args.stream_kib} KiB, StreamReader/Writer on {name}",
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
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
