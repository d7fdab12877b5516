"""Two nodes in one process, one TCP link, an echo service served by threads."""

from __future__ import annotations

import socket
import threading

import astranet


def echo(stream: astranet.Stream) -> None:
    """Sends back everything it receives, until end of stream."""
    with stream:
        while data := stream.recv(65536):
            stream.sendall(data)


def main() -> None:
    with astranet.Node() as server, astranet.Node(keepalive=5.0) as client:
        tcp = server.listen(("127.0.0.1", 0))
        client.join(tcp)
        listener = server.bind(7)

        def serve() -> None:
            for stream in listener:
                threading.Thread(target=echo, args=(stream,), daemon=True).start()

        threading.Thread(target=serve, daemon=True).start()

        with client.dial((server.host_id, 7), timeout=5) as stream:
            stream.settimeout(5)
            stream.sendall(b"hello, astranet")
            stream.shutdown(socket.SHUT_WR)
            with stream.makefile("rb") as f:
                reply: bytes = f.read()
            print(reply.decode(), stream.getsockname(), "->", stream.getpeername())
        listener.close()


if __name__ == "__main__":
    main()
