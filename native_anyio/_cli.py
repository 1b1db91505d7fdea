"""
The ``native-anyio`` command line.

``native-anyio demo`` starts a local websocket server on 127.0.0.1 that streams Backpack-shaped
trades, opens a session to it (on asyncio or trio), decodes every message with the router and
prints what arrives, then forces one reconnect to show the session healing itself.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

import anyio
import msgspec

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .testing import ServerConnection

__all__ = ["main"]


class _Trade(msgspec.Struct, frozen=True, tag_field="e", tag="trade"):
    s: str
    p: str
    q: str
    t: int
    m: bool
    T: int


class _Envelope(msgspec.Struct, frozen=True):
    data: _Trade
    stream: str


async def _demo(count: int, symbol: str) -> int:
    from . import Connected, Disconnected, Router, SessionConfig, open_session
    from .testing import open_ws_server

    async def feed(conn: ServerConnection) -> None:
        await conn.wait_message()  # the SUBSCRIBE frame
        price = 100.0
        for i in range(count // 2 if conn.id == 1 else count):
            price += 0.01 * ((i * 7919) % 11 - 5)
            trade = {"e": "trade", "s": symbol, "p": f"{price:.2f}", "q": f"{0.1 + (i % 7) / 10:.3f}",
                     "t": conn.id * 1_000_000 + i, "m": i % 3 == 0, "T": 1_700_000_000_000_000 + i}  # fmt: skip
            await conn.send_text(msgspec.json.encode({"data": trade, "stream": f"trade.{symbol}"}))
            await anyio.sleep(0.01)
        if conn.id == 1:
            await conn.close(1001, "server restarting")  # the session reconnects by itself
            return
        await anyio.sleep(3600)

    router: Router[_Envelope] = Router(_Envelope)
    received = 0
    async with open_ws_server(feed) as server:
        print(f"local feed server on {server.url}")
        config = SessionConfig(seed=0)
        async with open_session(server.url, subscriptions=[f"trade.{symbol}"], config=config) as session:
            with anyio.fail_after(30):
                while received < count:
                    batch = await session.receive_batch()
                    for item in batch:
                        if isinstance(item, (Connected, Disconnected)):
                            print(f"-- {item}")
                    for envelope in router.decode_batch(batch):
                        trade = envelope.data
                        side = "sell" if trade.m else "buy"
                        print(f"{envelope.stream:<16} #{trade.t:<8} {side:<4} {trade.q:>6} @ {trade.p}")
                        received += 1
            stats = session.statistics()
            print(
                f"-- {stats.messages} messages, {stats.reconnects} reconnect(s), health: {session.health().status}"
            )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``native-anyio`` command."""
    parser = argparse.ArgumentParser(prog="native-anyio", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="stream from a local server and print what arrives")
    demo.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    demo.add_argument("--count", type=int, default=40, help="messages to print before exiting")
    demo.add_argument("--symbol", default="SOL_USDC")
    args = parser.parse_args(argv)
    try:
        return anyio.run(_demo, args.count, args.symbol, backend=args.backend)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
