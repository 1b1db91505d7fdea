"""
The servers of the latency and soak benchmarks, each run as its own process on 127.0.0.1.

``python benchmarks/_paced_server.py paced`` (``bench_latency.py`` starts it) is a raw websocket feed
server pinned to CPU 1. It serves the ``mix`` feed of ``performance-anchors.md`` section 2 (copied from
``_feed.py`` so this benchmark does not move when that one changes) on two paths:

* ``/sat?n=N``: after the client's first frame (the SUBSCRIBE), one ``sendall()`` of N pre-built frames
  and a Close(1000): the *saturation* run, as in ``bench_e2e.py``;
* ``/paced?rate=R&period_us=P&duration=D&tag=T``: every P µs a burst of the frames due by then
  (``int(R * k * P)`` in all after burst k, so the average rate is exact), for D seconds, then a
  Close(1000). Every frame of a burst carries the same ``E``: ``STAMP_BASE + time.perf_counter_ns()``
  read just before the burst is put together and handed to ``sendall()``. ``perf_counter_ns`` is
  ``CLOCK_MONOTONIC`` on Linux, the same clock in every process, so the client's receipt time minus
  ``E - STAMP_BASE`` is the latency from the server's send call to the decoded message. A burst sent
  late (the server's sleep overshot, or ``sendall`` blocked because the client is not reading) keeps
  its place in the schedule: the next bursts catch up, and ``STATS`` counts the late ones.

After each paced connection the server prints ``STATS {json}`` (tag, frames and bursts sent, bursts
started more than one period behind schedule, the worst delay, the median cost of stamping and
sending one burst) on stdout.

``python benchmarks/_paced_server.py backpack`` (``bench_soak.py`` starts it) runs the embedded
Backpack simulator (websocket + REST, ground-truth books) at ``--update-rate`` book updates per second
per symbol, and forces a disconnect of every client every ``--reconnect-every`` seconds from
``--first-disconnect`` on, alternating a close frame (1001) and a TCP drop without one. It prints ``READY <ws_url> <rest_url>`` and then
``FAULT <monotonic seconds> <kind> <connections>`` for each forced disconnect.

Both exit when stdin reaches EOF (the runner died or closed it), on SIGTERM, or after ``--max-seconds``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import random
import signal
import socket
import statistics
import sys
import threading
import time
from typing import Final
from urllib.parse import parse_qs, urlsplit

import msgspec

# --------------------------------------------------------------------------- the feed and its structs

#: ``E`` = STAMP_BASE + perf_counter_ns(): always 19 digits, so a stamp fits the placeholder exactly.
STAMP_BASE: Final = 10**18
_PLACEHOLDER: Final = 1_111_111_111_111_111_111
_PLACEHOLDER_BYTES: Final = b"1111111111111111111"
SUBSCRIBE: Final = '{"method":"SUBSCRIBE","params":["feed.mix"]}'


# The structs, the decoder and the markets are the e2e feed's (``_feed.py``): every stack decodes
# into the very same structs in both benchmarks.
from _feed import _MARKETS, DECODER, Envelope, _price, _size, server_frame  # noqa: E402
from _server import _pin, _read_frame  # noqa: E402  (the e2e feed server's websocket plumbing)

__all__ = ["DECODER", "STAMP_BASE", "SUBSCRIBE", "Envelope"]


def _payload(rng: random.Random, now: int, uid: int) -> dict[str, object]:
    """One message of the ``mix`` feed (45 % depth, 30 % bookTicker, 24 % trade, 1 % ticker)."""
    symbol, mid, pd, sd = _MARKETS[rng.randrange(len(_MARKETS))]
    r = rng.random()
    if r < 0.45:
        na, nb = rng.randint(0, 3), rng.randint(0, 3)
        if na + nb == 0:
            na = 1
        data: dict[str, object] = {
            "E": _PLACEHOLDER,
            "T": now - 170,
            "U": uid,
            "a": [[_price(rng, mid * 1.001, pd), _size(rng, sd)] for _ in range(na)],
            "b": [[_price(rng, mid * 0.999, pd), _size(rng, sd)] for _ in range(nb)],
            "e": "depth",
            "s": symbol,
            "u": uid,
        }
        kind = "depth"
    elif r < 0.75:
        data = {"A": _size(rng, sd), "B": _size(rng, sd), "E": _PLACEHOLDER, "T": now - 210,
                "a": _price(rng, mid * 1.0005, pd), "b": _price(rng, mid * 0.9995, pd),
                "e": "bookTicker", "s": symbol, "u": uid}  # fmt: skip
        kind = "bookTicker"
    elif r < 0.99:
        data = {"E": _PLACEHOLDER, "T": now - 1059, "a": str(rng.randrange(10**9, 10**10)),
                "b": str(rng.randrange(10**9, 10**10)), "e": "trade", "m": rng.random() < 0.5,
                "p": _price(rng, mid, pd), "q": _size(rng, sd), "s": symbol, "t": uid // 7}  # fmt: skip
        kind = "trade"
    else:
        data = {"E": _PLACEHOLDER, "V": f"{rng.uniform(1e5, 1e7):.4f}", "c": _price(rng, mid, pd),
                "e": "ticker", "h": _price(rng, mid * 1.02, pd), "l": _price(rng, mid * 0.98, pd),
                "n": rng.randrange(1000, 100_000), "o": _price(rng, mid, pd), "s": symbol,
                "v": f"{rng.uniform(1e3, 1e5):.2f}"}  # fmt: skip
        kind = "ticker"
    return {"data": data, "stream": f"{kind}.{symbol}"}


def generate_payloads(n: int, *, seed: int = 0) -> list[bytes]:
    """``n`` JSON payloads of the feed, each with the ``E`` placeholder exactly once."""
    rng = random.Random(seed)
    encode = msgspec.json.encode
    now = 1_788_367_430_247_487
    uid = 4_330_360_995
    out: list[bytes] = []
    for _ in range(n):
        now += rng.randrange(5, 400)
        uid += 1
        body = encode(_payload(rng, now, uid))
        if body.count(_PLACEHOLDER_BYTES) != 1:  # a random field happened to contain the placeholder
            raise RuntimeError("placeholder collision; change the seed")
        out.append(body)
    return out


CLOSE_1000: Final = server_frame(0x8, (1000).to_bytes(2, "big"))


# --------------------------------------------------------------------------- websocket plumbing

_GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_IO_TIMEOUT: Final = 30.0  # bound on any single blocking socket call of a connection
_LINGER_TIMEOUT: Final = 10.0  # bound on waiting for the client's close after our Close frame
_MAX_HEAD: Final = 16 * 1024


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


def _handshake(conn: socket.socket) -> str:
    """Complete the HTTP upgrade and read the client's first frame; returns the request path."""
    head, rest = _read_head(conn)
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    if method != "GET":
        raise ValueError("not a GET")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    key = headers["sec-websocket-key"]
    accept = base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()
    conn.sendall(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept.encode() + b"\r\n\r\n"
    )
    _read_frame(conn, rest)  # the SUBSCRIBE, discarded
    return path


def run_queue_wait_ns() -> int:
    """Nanoseconds this thread spent runnable but waiting for a CPU (``/proc/thread-self/schedstat``)."""
    try:
        with open("/proc/thread-self/schedstat", encoding="ascii") as f:
            return int(f.read().split()[1])
    except (OSError, IndexError, ValueError):
        return 0


# --------------------------------------------------------------------------- the paced server


class PacedServer:
    """Serves ``/sat`` and ``/paced`` connections, one thread each (see the module docs)."""

    def __init__(self, pool_size: int, seed: int) -> None:
        frames = [server_frame(0x1, p) for p in generate_payloads(pool_size, seed=seed)]
        self.pool_size = len(frames)
        self.pool = b"".join(frames)
        offsets = [0]
        for frame in frames:
            offsets.append(offsets[-1] + len(frame))
        self.offsets = offsets
        # The saturation blob carries a valid (old) stamp: nobody measures latency on it.
        self._sat_stamp = str(STAMP_BASE + time.perf_counter_ns()).encode()
        self._sat_blobs: dict[int, bytes] = {}
        self._lock = threading.Lock()
        self._print_lock = threading.Lock()
        self.stop = threading.Event()

    def frames(self, start: int, count: int) -> bytes:
        """``count`` consecutive frames of the pool from index ``start`` (wrapping around)."""
        start %= self.pool_size
        offsets, pool = self.offsets, self.pool
        end = start + count
        if end <= self.pool_size:
            return pool[offsets[start] : offsets[end]]
        parts = [pool[offsets[start] :]]
        end -= self.pool_size
        while end > self.pool_size:
            parts.append(pool)
            end -= self.pool_size
        parts.append(pool[: offsets[end]])
        return b"".join(parts)

    def sat_blob(self, n: int) -> bytes:
        with self._lock:
            blob = self._sat_blobs.get(n)
            if blob is None:
                blob = self.frames(0, n).replace(_PLACEHOLDER_BYTES, self._sat_stamp) + CLOSE_1000
                self._sat_blobs[n] = blob
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
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(_IO_TIMEOUT)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            path = _handshake(conn)
            url = urlsplit(path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            if url.path == "/sat":
                conn.sendall(self.sat_blob(int(query.get("n", "1000"))))
            elif url.path == "/paced":
                stats = self._paced(
                    conn, float(query["rate"]), int(query["period_us"]), float(query["duration"])
                )
                stats["tag"] = query.get("tag", "")
                with self._print_lock:
                    print("STATS " + json.dumps(stats), flush=True)
                conn.sendall(CLOSE_1000)
            else:
                raise ValueError(f"unknown path {url.path}")
            # We started the close handshake, so we close the TCP connection once the client answers.
            conn.settimeout(_LINGER_TIMEOUT)
            conn.recv(65536)
        except (OSError, ValueError, KeyError):
            pass  # a client that went away early is its own problem; the runner checks counts
        finally:
            conn.close()

    def _paced(self, conn: socket.socket, rate: float, period_us: int, duration: float) -> dict[str, object]:
        """Send the bursts of one paced run; returns its statistics."""
        period_ns = period_us * 1000
        bursts = max(1, round(duration * 1e6 / period_us))
        per_burst = rate * period_us / 1e6
        clock = time.perf_counter_ns
        sleep = time.sleep
        base = STAMP_BASE
        placeholder = _PLACEHOLDER_BYTES
        sendall = conn.sendall
        sent = 0
        late = 0
        worst = 0
        costs: list[int] = []
        waited0 = run_queue_wait_ns()
        t0 = clock() + 2 * period_ns  # a short lead, so the first burst is on schedule
        for k in range(1, bursts + 1):
            if self.stop.is_set():
                break
            due = t0 + k * period_ns
            now = clock()
            if now < due:
                sleep((due - now) / 1e9)
            target = int(per_burst * k + 1e-9)
            count = target - sent
            if count <= 0:
                continue
            chunk = self.frames(sent, count)
            stamp = clock()
            behind = stamp - due
            if behind > period_ns:
                late += 1
            worst = max(worst, behind)
            sendall(chunk.replace(placeholder, str(base + stamp).encode()))
            costs.append(clock() - stamp)
            sent = target
        elapsed = clock() - t0 + 2 * period_ns
        return {
            "preempted": round((run_queue_wait_ns() - waited0) / max(1, elapsed), 4),
            "sent": sent,
            "bursts": len(costs),
            "late_bursts": late,
            "worst_behind_us": round(worst / 1000, 1),
            "send_us_median": round(statistics.median(costs) / 1000, 1) if costs else None,
            "send_us_max": round(max(costs) / 1000, 1) if costs else None,
        }


def _watch_stdin(stop: threading.Event) -> None:
    try:
        sys.stdin.read()  # returns at EOF: the runner closed the pipe or died
    finally:
        stop.set()


def _main_paced(args: argparse.Namespace) -> None:
    _pin(args.cpu)
    server = PacedServer(args.pool, args.seed)
    listener = socket.create_server(("127.0.0.1", 0), backlog=64)
    port = listener.getsockname()[1]
    signal.signal(signal.SIGTERM, lambda *_: server.stop.set())
    threading.Thread(target=_watch_stdin, args=(server.stop,), daemon=True).start()
    timer = threading.Timer(args.max_seconds, server.stop.set)
    timer.daemon = True
    timer.start()
    print(f"READY {port}", flush=True)
    try:
        server.serve(listener)
    finally:
        listener.close()
        os._exit(0)  # do not wait for lingering connection threads


# --------------------------------------------------------------------------- the soak's Backpack server

SOAK_SYMBOLS: Final = ("SOL_USDC", "BTC_USDC_PERP", "SOL_USDC_PERP", "ETH_USDC_PERP", "AAPL.US_USDC_PERP")


async def _serve_backpack(args: argparse.Namespace) -> None:
    import anyio
    import anyio.to_thread

    from native_anyio.backpack.simulator import SimulatorConfig, open_simulator

    config = SimulatorConfig(
        symbols=tuple(args.symbols.split(",")),
        closed_symbols=(),
        seed=args.seed,
        update_rate=args.update_rate,
    )
    with anyio.move_on_after(args.max_seconds):
        async with open_simulator(config) as sim, anyio.create_task_group() as tg:
            print(f"READY {sim.ws_url} {sim.rest_url}", flush=True)

            async def watch_stdin() -> None:
                await anyio.to_thread.run_sync(sys.stdin.read, abandon_on_cancel=True)
                tg.cancel_scope.cancel()

            tg.start_soon(watch_stdin)
            start = anyio.current_time() + args.first_disconnect
            for n in range(1 << 20):  # bounded by max-seconds and by stdin EOF
                await anyio.sleep_until(start + n * args.reconnect_every)
                open_now = sum(1 for c in sim.connections if c.open)
                kind = "drop" if n % 2 else "close"
                if kind == "close":
                    sim.faults.close("all", code=1001, reason="soak: forced reconnect")
                else:
                    sim.faults.drop("all")
                print(f"FAULT {time.monotonic():.3f} {kind} {open_now}", flush=True)


def _main_backpack(args: argparse.Namespace) -> None:
    import anyio

    _pin(args.cpu)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        anyio.run(_serve_backpack, args, backend=args.backend)
    finally:
        sys.stdout.flush()
        os._exit(0)


def main() -> None:
    parser = argparse.ArgumentParser(description="paced feed server / soak Backpack server")
    sub = parser.add_subparsers(dest="command", required=True)
    paced = sub.add_parser("paced", help="raw websocket feed: /sat (unpaced) and /paced (bursts)")
    paced.add_argument("--pool", type=int, default=50_000, help="distinct frames cycled through")
    paced.add_argument("--seed", type=int, default=0)
    paced.add_argument("--cpu", type=int, default=1)
    paced.add_argument("--max-seconds", type=float, default=900.0)
    backpack = sub.add_parser("backpack", help="the Backpack simulator with forced reconnects")
    backpack.add_argument("--symbols", default=",".join(SOAK_SYMBOLS))
    backpack.add_argument("--update-rate", type=float, default=400.0, help="book updates/s per symbol")
    backpack.add_argument("--reconnect-every", type=float, default=30.0, help="seconds between disconnects")
    backpack.add_argument("--first-disconnect", type=float, default=15.0, help="seconds before the first one")
    backpack.add_argument("--seed", type=int, default=1)
    backpack.add_argument("--cpu", type=int, default=1)
    backpack.add_argument("--backend", default="asyncio", choices=["asyncio", "trio"])
    backpack.add_argument("--max-seconds", type=float, default=1500.0)
    args = parser.parse_args()
    if args.command == "paced":
        _main_paced(args)
    else:
        _main_backpack(args)


if __name__ == "__main__":
    main()
