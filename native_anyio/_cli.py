"""
The ``native-anyio`` command line.

* ``native-anyio watch SYMBOL [SYMBOL ...]``: stream Backpack's normalized events, as a readable
  live view or as JSON lines (``--format json``);
* ``native-anyio book SYMBOL``: a live order-book view (best levels, spread, update id, state);
* ``native-anyio simulate``: run the embedded Backpack simulator on 127.0.0.1.

``--simulate`` starts the embedded simulator in-process and points the client at it; without it
the client talks to ``--ws-url``/``--rest-url`` (default: the real Backpack endpoints).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from contextlib import AsyncExitStack
from typing import IO, TYPE_CHECKING, Any

import anyio
import msgspec

if TYPE_CHECKING:
    from collections.abc import Sequence
    from decimal import Decimal

    from .backpack import BackpackClient, Event

__all__ = ["main"]

_encode = msgspec.json.Encoder().encode


def _fmt(value: Decimal) -> str:
    # One spelling per value: the socket pads to the tick ("100.00"), REST strips ("100").
    return format(value.normalize(), "f")


def _levels(levels: Sequence[tuple[Decimal, Decimal]]) -> list[list[str]]:
    return [[_fmt(p), _fmt(s)] for p, s in levels]


class _Output:
    """Renders events as JSON lines or as a readable live view."""

    def __init__(self, stream: IO[str], *, fmt: str, depth: int, levels: bool = False) -> None:
        self.stream = stream
        self.json = fmt == "json"
        self.depth = depth
        self.levels = levels
        self.count = 0

    def write(self, text: str) -> None:
        self.stream.write(text + "\n")

    def event(self, event: Event) -> None:
        self.count += 1
        if self.json:
            self.write(_encode(event.to_dict()).decode())
            return
        clock = time.strftime("%H:%M:%S", time.localtime(event.receipt_timestamp))
        data = event.to_dict()
        kind = data.pop("type")
        for key in ("exchange", "timestamp", "receipt_timestamp"):
            data.pop(key, None)
        symbol = data.pop("symbol", "") or ""
        if kind == "trade":
            self.write(
                f"{clock} {symbol:<16} trade   {data['side']:<4} {data['amount']:>12} @ {data['price']}"
            )
        elif kind == "top_of_book":
            self.write(
                f"{clock} {symbol:<16} bbo     {data.get('bid_size')} @ {data.get('bid_price')}"
                f"  |  {data.get('ask_price')} x {data.get('ask_size')}"
            )
        else:
            details = " ".join(f"{k}={v}" for k, v in data.items() if v is not None)
            self.write(f"{clock} {symbol:<16} {kind:<7} {details}")

    def book(self, client: BackpackClient, symbol: str, timestamp: float, receipt: float) -> None:
        book = client.book(symbol)
        if book is None:
            return
        self.count += 1
        bids = book.bids(self.depth)
        asks = book.asks(self.depth)
        if self.json:
            line = {"type": "book", "exchange": "BACKPACK", "symbol": symbol, "timestamp": timestamp,
                    "receipt_timestamp": receipt, "bids": _levels(bids), "asks": _levels(asks),
                    "sequence": book.last_update_id}  # fmt: skip
            self.write(_encode(line).decode())
            return
        bid = f"{_fmt(bids[0][1])} @ {_fmt(bids[0][0])}" if bids else "-"
        ask = f"{_fmt(asks[0][0])} x {_fmt(asks[0][1])}" if asks else "-"
        spread = _fmt(asks[0][0] - bids[0][0]) if bids and asks else "-"
        clock = time.strftime("%H:%M:%S", time.localtime(receipt))
        state = client.book_state(symbol)
        self.write(
            f"{clock} {symbol:<16} book    {bid}  |  {ask}  spread {spread}  seq {book.last_update_id}  {state}"
        )
        if self.levels:  # the book view: the best levels of both sides, side by side
            for i in range(max(len(bids), len(asks))):
                left = f"{_fmt(bids[i][1]):>14} @ {_fmt(bids[i][0]):<14}" if i < len(bids) else " " * 31
                right = f"{_fmt(asks[i][0]):>14} x {_fmt(asks[i][1]):<14}" if i < len(asks) else ""
                self.write(f"{'':>26}{left} | {right}".rstrip())


async def _open_client(
    stack: AsyncExitStack, args: argparse.Namespace, symbols: list[str], channels: list[str]
) -> BackpackClient:
    from .backpack import BackpackConfig, open_backpack

    ws_url, rest_url = args.ws_url, args.rest_url
    if args.simulate:
        from .backpack.simulator import SimulatorConfig, open_simulator

        exchange_symbols = tuple(s.replace("-", "_") for s in symbols)
        sim_config = SimulatorConfig(
            symbols=exchange_symbols, seed=args.seed, open_interest_interval=args.sim_open_interest_interval
        )
        sim = await stack.enter_async_context(open_simulator(sim_config))
        ws_url, rest_url = sim.ws_url, sim.rest_url
        print(f"# simulator: {ws_url} {rest_url}", file=sys.stderr)
    config = BackpackConfig.from_env(ws_url=ws_url, rest_url=rest_url, proxy=args.proxy)
    return await stack.enter_async_context(open_backpack(config, symbols=symbols, channels=channels,
                                                         candle_interval=args.interval,
                                                         stale_after=args.stale_after))  # fmt: skip


async def _watch(args: argparse.Namespace, out: _Output, *, book_only: bool = False) -> int:
    from .backpack import BookDelta, BookSnapshot, BookStatus, normalize_symbol

    symbols = [normalize_symbol(s) for s in args.symbols]
    channels = ["book"] if book_only else [c.strip() for c in args.channels.split(",") if c.strip()]
    deadline = math.inf if args.duration is None else args.duration
    limit = math.inf if args.count is None else args.count
    with anyio.move_on_after(deadline):
        async with AsyncExitStack() as stack:
            client = await _open_client(stack, args, symbols, channels)
            while out.count < limit:
                events = await client.receive_events()
                changed: dict[str, tuple[float, float]] = {}
                for event in events:
                    if isinstance(event, (BookSnapshot, BookDelta)):
                        changed[event.symbol] = (event.timestamp, event.receipt_timestamp)
                        continue
                    if book_only and not isinstance(event, BookStatus):
                        continue
                    out.event(event)
                    if out.count >= limit:
                        break
                for symbol, (timestamp, receipt) in changed.items():
                    if out.count >= limit:
                        break
                    out.book(client, symbol, timestamp, receipt)
                out.stream.flush()
    return 0


async def _simulate(args: argparse.Namespace) -> int:
    from .backpack.simulator import SimulatorConfig, serve_simulator

    config = SimulatorConfig(seed=args.seed)
    if args.symbols:
        config = SimulatorConfig(seed=args.seed, symbols=tuple(s.replace("-", "_") for s in args.symbols))
    with anyio.move_on_after(math.inf if args.duration is None else args.duration):
        async with anyio.create_task_group() as tg:
            sim: Any = await tg.start(serve_simulator, config)
            print(f"Backpack simulator\n  websocket: {sim.ws_url}\n  rest:      {sim.rest_url}", flush=True)
            # A throw-away key pair that only this simulator accepts (never a real credential).
            print(f"  export BACKPACK_API_KEY={sim.api_key} BACKPACK_API_SECRET={sim.api_secret}", flush=True)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="native-anyio", description="Native exchange market data (Backpack)."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
        p.add_argument("--ws-url", default="wss://ws.backpack.exchange")
        p.add_argument("--rest-url", default="https://api.backpack.exchange")
        p.add_argument(
            "--simulate", action="store_true", help="run against the embedded simulator (no network)"
        )
        p.add_argument(
            "--proxy", default=None, help="http://host:port proxy (CONNECT) for websocket and REST"
        )
        p.add_argument("--seed", type=int, default=1, help="simulator seed")
        p.add_argument("--sim-open-interest-interval", type=float, default=60.0, metavar="SECONDS",
                       help="with --simulate: seconds between open-interest updates (Backpack: 60)")  # fmt: skip
        p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
        p.add_argument("--count", type=int, default=None, help="stop after this many output lines")
        p.add_argument("--format", choices=["live", "json"], default="live")
        p.add_argument("--depth", type=int, default=10, help="book levels per side in the output")
        p.add_argument("--interval", default="1m", help="candle interval")
        p.add_argument("--stale-after", type=float, default=None, metavar="SECONDS",
                       help="resync a book whose depth stream is silent this long (default: off)")  # fmt: skip

    watch = sub.add_parser("watch", help="stream normalized events")
    watch.add_argument("symbols", nargs="*", default=["SOL_USDC", "BTC_USDC_PERP"], metavar="SYMBOL")
    watch.add_argument("--channels", default="trades,book,bbo,ticker",
                       help="comma-separated: trades,book,bbo,ticker,candles,funding,open_interest,liquidations")  # fmt: skip
    common(watch)
    book = sub.add_parser("book", help="live order book view")
    book.add_argument("symbols", nargs="+", metavar="SYMBOL")
    common(book)
    simulate = sub.add_parser("simulate", help="run the embedded Backpack simulator")
    simulate.add_argument("symbols", nargs="*", metavar="SYMBOL")
    simulate.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    simulate.add_argument("--seed", type=int, default=1)
    simulate.add_argument("--duration", type=float, default=None)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``native-anyio`` command."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "simulate":
            return anyio.run(_simulate, args, backend=args.backend)
        out = _Output(sys.stdout, fmt=args.format, depth=args.depth, levels=args.command == "book")
        return anyio.run(lambda: _watch(args, out, book_only=args.command == "book"), backend=args.backend)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. piped into head
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
