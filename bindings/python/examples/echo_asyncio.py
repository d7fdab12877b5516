"""The same echo with asyncio: start_server / open_connection, and native awaits."""

from __future__ import annotations

import asyncio

import astranet


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Echoes one stream until end of stream."""
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()
    await writer.wait_closed()


async def main() -> None:
    with astranet.Node() as server, astranet.Node() as client:
        host: int = await client.join_async(server.listen("127.0.0.1:0"))
        async with await astranet.start_server(handle, server, 7) as srv:
            reader, writer = await astranet.open_connection(client, f"{host:016x}:7")
            writer.write(b"hello over asyncio\n")
            await writer.drain()
            print((await reader.readline()).decode().strip(), srv.getsockname())
            writer.close()
            await writer.wait_closed()

        # Native streams without descriptors: dial_async / accept_async.
        listener = server.bind()
        stream, accepted = await asyncio.gather(
            client.dial_async(listener.getsockname(), timeout=5), listener.accept_async()
        )
        stream.sendall(b"native")
        accepted.settimeout(5)
        print(accepted.recv(100))
        stream.close()
        accepted.close()
        listener.close()


if __name__ == "__main__":
    asyncio.run(main())
