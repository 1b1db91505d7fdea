"""
The feed server of the end-to-end benchmark (``performance-anchors.md`` section 2), with enough
Backpack REST for the full client pipeline.

Run as its own process (``bench_e2e.py`` starts it), pinned to CPU 1 when the machine has two or more
CPUs, so that it never competes with the client, which is pinned to CPU 0. It listens on 127.0.0.1
only: one plain port (``ws://`` and ``http://``) and, with ``--tls-cert``, one TLS port (``wss://`` and
``https://``). Every connection gets its own thread, which reads the HTTP request head and then either:

* **websocket** (``GET /...?n=N`` with ``Upgrade: websocket``):

  1. completes the upgrade (RFC 6455 accept key; no extension, no subprotocol);
  2. reads client frames until the first text frame (the SUBSCRIBE), so every client starts from the
     same point;
  3. with ``&token=T&wait=K`` (the Backpack pipeline rows): waits, bounded, until K depth snapshots
     were served under the REST prefix ``/r/T``, so the book snapshots are in flight before the
     deltas (as when subscribing to a live venue) and the pipeline's sync is the same every run;
  4. ``sendall()``s a pre-built blob of N unmasked text frames (the ``mix`` feed adds a Close(1000));
  5. reads the client's frames (bounded) until its Close, answers it with a Close(1000) and closes the
     socket (RFC 6455 7.1.1: the server closes TCP first); EOF also ends the connection.

* **REST** (``GET [/r/T]/api/v1/markets`` and ``/api/v1/depth?symbol=S&limit=L``): answers with the
  pre-built bodies of the ``backpack`` feed (``_feed.backpack_feed``), keep-alive, until EOF.

Blobs for ``--sizes`` are built before the ``READY {json}`` line is printed (it carries the ports and
each size's feed metadata), so building them never falls inside a client's measurement. Serving costs
the server next to nothing per message (one ``sendall`` of a pre-built buffer, plus the encryption on
the TLS port), and it is the same for every client.

The process exits when its stdin reaches EOF (the runner died or closed it), on SIGTERM, or after
``--max-seconds``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import signal
import socket
import sys
import threading
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, _HERE)
sys.path.insert(0, os.path.dirname(_HERE))  # the repository root, for the simulator's wire formatter

from _feed import backpack_feed, build_blob, close_frame, server_frame  # noqa: E402

if TYPE_CHECKING:
    import ssl

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_IO_TIMEOUT = 30.0  # bound on any single blocking socket call of a connection
_LINGER_TIMEOUT = 10.0  # bound on waiting for the client's close after the blob
_SNAPSHOT_WAIT = 10.0  # bound on waiting for a pipeline client's snapshot requests
_MAX_HEAD = 16 * 1024
_MAX_FRAMES = 1000  # bound on client frames read in one phase of a connection


class FeedServer:
    def __init__(self, sizes: list[int], seed: int, feed: str) -> None:
        self.seed = seed
        self.feed = feed
        self._lock = threading.Lock()
        self._served = threading.Condition(self._lock)
        self.snapshots_served: dict[str, int] = {}  # REST token -> depth snapshots served under it
        self.blobs: dict[int, bytes] = {}
        self.meta: dict[int, dict[str, Any]] = {}
        self.snapshots: dict[str, bytes] = {}
        self.markets = b"[]"
        for n in sizes:
            self._build(n)
        self.stop = threading.Event()
        self.connections = 0

    def _build(self, n: int) -> None:
        if self.feed == "mix":
            self.blobs[n] = build_blob(n, seed=self.seed)
            self.meta[n] = {"n": n}
            return
        feed = backpack_feed(n, seed=self.seed)
        # No Close at the end: the pipeline's session would reconnect on it. Every client closes itself.
        self.blobs[n] = b"".join([server_frame(0x1, p) for p in feed.payloads])
        self.meta[n] = feed.meta
        self.snapshots = feed.snapshots  # the same for every n (drawn before the frames)
        self.markets = feed.markets

    def blob(self, n: int) -> bytes:
        with self._lock:
            if n not in self.blobs:  # not pre-built: built now, before the 101 (outside any measurement)
                self._build(n)
            return self.blobs[n]

    def serve(self, listener: socket.socket, tls: ssl.SSLContext | None) -> None:
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
            threading.Thread(target=self._handle, args=(conn, tls), daemon=True).start()

    def _handle(self, raw: socket.socket, tls: ssl.SSLContext | None) -> None:
        conn = raw
        try:
            raw.settimeout(_IO_TIMEOUT)
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if tls is not None:
                conn = tls.wrap_socket(raw, server_side=True)
            head, rest = _read_head(conn, b"")
            path, headers = _parse_request(head)
            if headers.get("upgrade", "").lower() == "websocket":
                self._websocket(conn, path, headers, rest)
            else:
                self._rest(conn, path, rest)
        except (OSError, ValueError, KeyError):
            pass  # a client that went away early is its own problem; the runner checks counts
        finally:
            conn.close()

    # ------------------------------------------------------------------ websocket

    def _websocket(self, conn: socket.socket, path: str, headers: dict[str, str], rest: bytes) -> None:
        query = parse_qs(urlsplit(path).query)
        n = int(query.get("n", ["1000"])[0])
        token = query.get("token", [""])[0]
        wait = int(query.get("wait", ["0"])[0])
        blob = self.blob(n)
        accept = base64.b64encode(hashlib.sha1(headers["sec-websocket-key"].encode() + _GUID).digest())
        conn.sendall(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        buf = rest
        for _ in range(_MAX_FRAMES):  # until the SUBSCRIBE (a ping or pong first is skipped)
            opcode, _payload, buf = _read_frame(conn, buf)
            if opcode == 0x1:
                break
            if opcode == 0x8:
                return
        else:
            raise ValueError("no SUBSCRIBE")
        if wait:
            with self._served:
                self._served.wait_for(lambda: self.snapshots_served.get(token, 0) >= wait, _SNAPSHOT_WAIT)
                self.snapshots_served.pop(token, None)
        conn.sendall(blob)
        closed = self.feed == "mix"  # that blob ends with our Close
        # Then the client closes: answer its Close with ours and close TCP (the server closes first,
        # RFC 6455 7.1.1; clients such as websockets wait for that before returning).
        conn.settimeout(_LINGER_TIMEOUT)
        for _ in range(_MAX_FRAMES):
            opcode, _payload, buf = _read_frame(conn, buf)
            if opcode == 0x8:
                if not closed:
                    conn.sendall(close_frame(1000))
                return

    # ------------------------------------------------------------------ REST

    def _rest(self, conn: socket.socket, path: str, rest: bytes) -> None:
        for _ in range(_MAX_FRAMES):  # keep-alive: one request after another until EOF
            self._answer(conn, path)
            try:
                head, rest = _read_head(conn, rest)
            except ValueError:
                return  # EOF between requests: the client closed its pool
            path, _ = _parse_request(head)

    def _answer(self, conn: socket.socket, path: str) -> None:
        parts = urlsplit(path)
        route, token = parts.path, ""
        if route.startswith("/r/"):
            _, _, token, route = route.split("/", 3)
            route = "/" + route
        params = {k: v[0] for k, v in parse_qs(parts.query).items()}
        status, body = "404 Not Found", b'{"code":"RESOURCE_NOT_FOUND","message":"Not Found"}'
        if route == "/api/v1/markets":
            status, body = "200 OK", self.markets
        elif route == "/api/v1/depth" and params.get("symbol") in self.snapshots:
            status, body = "200 OK", self.snapshots[params["symbol"]]
        conn.sendall(
            f"HTTP/1.1 {status}\r\nContent-Type: application/json; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        if route == "/api/v1/depth" and status == "200 OK":
            with self._served:
                self.snapshots_served[token] = self.snapshots_served.get(token, 0) + 1
                self._served.notify_all()


def _read_head(conn: socket.socket, buf: bytes) -> tuple[bytes, bytes]:
    while b"\r\n\r\n" not in buf:
        if len(buf) > _MAX_HEAD:
            raise ValueError("request head too large")
        chunk = conn.recv(4096)
        if not chunk:
            raise ValueError("EOF during the request head")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    return head, rest


def _parse_request(head: bytes) -> tuple[str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    if method != "GET":
        raise ValueError("not a GET")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return path, headers


def _read_frame(conn: socket.socket, buf: bytes) -> tuple[int, bytes, bytes]:
    """One complete client frame: ``(opcode, unmasked payload, the bytes after it)``."""
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
            if length > _MAX_HEAD and len(buf) >= head:
                raise ValueError("client frame too large")
            masked = buf[1] & 0x80
            if masked:
                head += 4
            if len(buf) >= head + length:
                payload = buf[head : head + length]
                if masked:
                    mask = buf[head - 4 : head]
                    payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
                return buf[0] & 0x0F, payload, buf[head + length :]
        chunk = conn.recv(65536)
        if not chunk:
            raise ValueError("EOF before a complete frame")
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
    parser.add_argument("--feed", choices=("backpack", "mix"), default="backpack")
    parser.add_argument("--tls-cert", default="", help="PEM with key + chain: also serve TLS")
    parser.add_argument("--cpu", type=int, default=1)
    parser.add_argument("--max-seconds", type=float, default=1800.0)
    args = parser.parse_args()
    _pin(args.cpu)
    server = FeedServer([int(s) for s in args.sizes.split(",") if s], args.seed, args.feed)
    listeners: list[tuple[socket.socket, ssl.SSLContext | None]] = [
        (socket.create_server(("127.0.0.1", 0), backlog=64), None)
    ]
    if args.tls_cert:
        from _tls import server_context

        listeners.append((socket.create_server(("127.0.0.1", 0), backlog=64), server_context(args.tls_cert)))
    signal.signal(signal.SIGTERM, lambda *_: server.stop.set())

    def watch_stdin() -> None:
        try:
            sys.stdin.read()  # returns at EOF: the runner closed the pipe or died
        finally:
            server.stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    threading.Timer(args.max_seconds, server.stop.set).start()
    threads = [
        threading.Thread(target=server.serve, args=(sock, tls), daemon=True) for sock, tls in listeners[1:]
    ]
    for thread in threads:
        thread.start()
    ready = {
        "ws_port": listeners[0][0].getsockname()[1],
        "wss_port": listeners[1][0].getsockname()[1] if len(listeners) > 1 else None,
        "sizes": {n: len(b) for n, b in server.blobs.items()},
        "meta": server.meta,
    }
    print("READY " + json.dumps(ready), flush=True)
    try:
        server.serve(*listeners[0])
    finally:
        for sock, _ in listeners:
            sock.close()
        os._exit(0)  # do not wait for the max-seconds timer or lingering connection threads


if __name__ == "__main__":
    main()
