"""
The raw feed server of the end-to-end benchmark (``performance-anchors.md`` section 2).

Run as its own process (``bench_e2e.py`` starts it), pinned to CPU 1 when the machine has two or more
CPUs, so that it never competes with the client, which is pinned to CPU 0. For every connection it:

1. completes the HTTP upgrade (RFC 6455 accept key; no extension, no subprotocol);
2. waits for the client's first frame (the SUBSCRIBE), so every client starts from the same point;
3. ``sendall()``s a pre-built blob of N unmasked text frames followed by a Close(1000);
4. waits (bounded) for the client's Close frame or EOF, then closes the socket.

N comes from the request path (``/feed?n=200000``); blobs for ``--sizes`` are built before the
``READY <port>`` line is printed, so building them never falls inside a client's measurement. Serving
costs the server next to nothing per message (one ``sendall`` of a pre-built buffer), and it is the
same for every client. Connections are served concurrently, one thread each. Only 127.0.0.1.

The process exits when its stdin reaches EOF (the runner died or closed it), on SIGTERM, or after
``--max-seconds``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import signal
import socket
import sys
import threading
from urllib.parse import parse_qs, urlsplit

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _feed import build_blob

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_IO_TIMEOUT = 30.0  # bound on any single blocking socket call of a connection
_LINGER_TIMEOUT = 10.0  # bound on waiting for the client's close after our Close frame
_MAX_HEAD = 16 * 1024


class FeedServer:
    def __init__(self, sizes: list[int], seed: int) -> None:
        self.seed = seed
        self.blobs: dict[int, bytes] = {n: build_blob(n, seed=seed) for n in sizes}
        self._lock = threading.Lock()
        self.stop = threading.Event()
        self.connections = 0

    def blob(self, n: int) -> bytes:
        with self._lock:
            blob = self.blobs.get(n)
            if blob is None:  # not pre-built: built now, before the 101 (outside any measurement)
                blob = self.blobs[n] = build_blob(n, seed=self.seed)
            return blob

    def serve(self, listener: socket.socket) -> None:
        listener.settimeout(0.5)
        while not self.stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self.stop.is_set():
                    return
                raise
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(_IO_TIMEOUT)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            head, rest = _read_head(conn)
            path, key = _parse_request(head)
            n = int(parse_qs(urlsplit(path).query).get("n", ["1000"])[0])
            blob = self.blob(n)
            accept = base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()
            conn.sendall(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Accept: " + accept.encode() + b"\r\n\r\n"
            )
            _read_first_frame(conn, rest)
            conn.sendall(blob)
            # The client answers our Close with its own (or just hangs up). Either way the server, which
            # started the close handshake, now closes the TCP connection (RFC 6455 7.1.1): clients such
            # as websockets wait for that before returning.
            conn.settimeout(_LINGER_TIMEOUT)
            conn.recv(65536)
        except (OSError, ValueError):
            pass  # a client that went away early is its own problem; the runner checks counts
        finally:
            conn.close()


def _read_head(conn: socket.socket) -> tuple[bytes, bytes]:
    buf = b""
    while b"\r\n\r\n" not in buf:
        if len(buf) > _MAX_HEAD:
            raise ValueError("request head too large")
        chunk = conn.recv(4096)
        if not chunk:
            raise ValueError("EOF during the handshake")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    return head, rest


def _parse_request(head: bytes) -> tuple[str, str]:
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    if method != "GET":
        raise ValueError("not a GET")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return path, headers["sec-websocket-key"]


def _read_first_frame(conn: socket.socket, buf: bytes) -> None:
    """Read (and discard) one complete client frame: the SUBSCRIBE."""
    while True:
        if len(buf) >= 2:
            length = buf[1] & 0x7F
            head = 2
            if length == 126:
                head = 4
                length = int.from_bytes(buf[2:4], "big") if len(buf) >= 4 else 1 << 30
            elif length == 127:
                head = 10
                length = int.from_bytes(buf[2:10], "big") if len(buf) >= 10 else 1 << 30
            if buf[1] & 0x80:
                head += 4
            if len(buf) >= head + length:
                return
            if length > _MAX_HEAD:
                raise ValueError("first frame too large")
        chunk = conn.recv(4096)
        if not chunk:
            raise ValueError("EOF before the first frame")
        buf += chunk


def _pin(cpu: int) -> None:
    try:
        if len(os.sched_getaffinity(0)) >= 2:
            os.sched_setaffinity(0, {cpu})
    except (AttributeError, OSError):
        pass  # not Linux, or not allowed: run unpinned


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--sizes", default="200000", help="comma-separated N to pre-build")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cpu", type=int, default=1)
    parser.add_argument("--max-seconds", type=float, default=1800.0)
    args = parser.parse_args()
    _pin(args.cpu)
    server = FeedServer([int(s) for s in args.sizes.split(",") if s], args.seed)
    listener = socket.create_server(("127.0.0.1", 0), backlog=64)
    port = listener.getsockname()[1]
    signal.signal(signal.SIGTERM, lambda *_: server.stop.set())

    def watch_stdin() -> None:
        try:
            sys.stdin.read()  # returns at EOF: the runner closed the pipe or died
        finally:
            server.stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    threading.Timer(args.max_seconds, server.stop.set).start()
    sizes = {n: len(b) for n, b in server.blobs.items()}
    print(f"READY {port} {sizes}", flush=True)
    try:
        server.serve(listener)
    finally:
        listener.close()
        os._exit(0)  # do not wait for the max-seconds timer or lingering connection threads


if __name__ == "__main__":
    main()
