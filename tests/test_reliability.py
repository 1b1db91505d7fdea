"""
The short (CI) version of every reliability scenario (``reliability/scenarios``, issue 7): each
must meet its target on every backend it runs on.

Real-time scenarios run on asyncio, asyncio+uvloop and trio; virtual-time scenarios on asyncio
with ``VirtualClockEventLoop`` and trio with ``MockClock(autojump_threshold=0)`` (see conftest).
The full versions, and RELIABILITY.md, come from ``nox -s reliability``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # ``reliability`` is a top-level directory, not part of the package
    sys.path.insert(0, str(ROOT))

from reliability import Context, Scenario  # noqa: E402
from reliability.run import render_markdown, run_one  # noqa: E402
from reliability.scenarios import discover  # noqa: E402

SCENARIOS = discover()
REAL_TIME = [pytest.param(s, id=s.key) for s in SCENARIOS if not s.virtual_time]
VIRTUAL_TIME = [pytest.param(s, id=s.key) for s in SCENARIOS if s.virtual_time]

#: conftest backend name -> Context backend
BACKENDS = {
    "asyncio": "asyncio",
    "asyncio-uvloop": "uvloop",
    "trio": "trio",
    "asyncio-autojump": "asyncio",
    "trio-autojump": "trio",
}


def _context(scenario: Scenario, request: pytest.FixtureRequest) -> Context:
    backend = BACKENDS[request.node.callspec.params["anyio_backend"]]
    if backend not in scenario.backends:
        pytest.skip(f"{scenario.key} does not run on {backend} (declared in its Scenario)")
    return Context(short=True, backend=backend)


def test_scenarios_are_discovered_with_unique_keys() -> None:
    keys = [s.key for s in SCENARIOS]
    assert len(keys) == len(set(keys))
    assert {"gap_recall", "gap_recall_e2e", "reconnect_storm", "rest_politeness", "clock_skew"} <= set(keys)
    assert {"secret_canary", "fuzz"} <= set(keys)


@pytest.mark.uvloop
@pytest.mark.parametrize("scenario", REAL_TIME)
async def test_real_time_scenario_meets_its_target(
    scenario: Scenario, request: pytest.FixtureRequest
) -> None:
    result = await scenario.run(_context(scenario, request))
    assert result.passed, result.value


@pytest.mark.virtual_time
@pytest.mark.parametrize("scenario", VIRTUAL_TIME)
async def test_virtual_time_scenario_meets_its_target(
    scenario: Scenario, request: pytest.FixtureRequest
) -> None:
    result = await scenario.run(_context(scenario, request))
    assert result.passed, result.value


def test_the_runner_reports_failures_and_renders_the_table() -> None:
    """run_one turns an exception into a failed figure; the report shows it and the n/a cells."""

    async def broken(ctx: Context) -> object:
        raise RuntimeError(f"boom on {ctx.backend}")

    failing = Scenario("broken", "Broken figure", "how", "target", broken)  # type: ignore[arg-type]
    virtual = Scenario("virtual", "Virtual figure", "how", "target", broken, virtual_time=True)  # type: ignore[arg-type]
    outcomes = [run_one(failing, "asyncio", short=True), run_one(virtual, "uvloop", short=True)]
    assert outcomes[0].result is not None
    assert not outcomes[0].result.passed
    assert "boom on asyncio" in outcomes[0].result.value
    assert outcomes[1].result is None
    assert outcomes[1].skipped == "n/a (virtual time)"
    text = render_markdown(outcomes, short=True, command="python reliability/run.py --short")
    assert "| Broken figure | how | target | error: RuntimeError: boom on asyncio **(FAILED)**" in text
    assert "n/a (virtual time)" in text
    assert "**Missed targets**: `broken` on asyncio" in text


# ------------------------------------------------ regressions found by the fuzz scenario
# msgspec raises RecursionError for JSON nested deeper than it follows and UnicodeDecodeError for
# invalid UTF-8 inside a string; both escaped the decoders, so one such frame from the server (a
# binary frame is not UTF-8 checked) or one such REST body ended the whole Backpack client.

DEEP = b"[" * 5000 + b"]" * 5000
HOSTILE = [
    pytest.param(b'{"data":' + DEEP + b',"stream":"depth.SOL_USDC"}', id="deep-nesting"),
    pytest.param(b'{"data":{"e":"tr\xb9de"},"stream":"trade.SOL_USDC"}', id="invalid-utf8"),
]


@pytest.mark.parametrize("payload", HOSTILE)
def test_hostile_json_is_a_decode_error_for_every_decoder(payload: bytes) -> None:
    from native_anyio import DecodeError, Router
    from native_anyio.backpack._wire import decode_frame
    from native_anyio.backpack._wire_rest import decode_depth

    with pytest.raises(DecodeError):
        decode_frame(payload)
    with pytest.raises(DecodeError):
        decode_depth(payload)
    router: Router[object] = Router(Any)
    with pytest.raises(DecodeError):
        router.decode(payload)
    assert router.decode_batch([payload]) == []
    assert router.statistics().parse_errors == 2


@pytest.mark.virtual_time
async def test_a_deeply_nested_frame_does_not_kill_the_backpack_client() -> None:
    import anyio

    from native_anyio.backpack import BackpackConfig, BookStatus, open_backpack
    from native_anyio.backpack.simulator import SimulatorConfig, open_simulator

    async with open_simulator(SimulatorConfig(symbols=("SOL_USDC",), seed=1)) as sim:
        config = BackpackConfig(rest_url=sim.rest_url, ws_url=sim.ws_url)
        with anyio.fail_after(60):
            async with open_backpack(config, symbols=["SOL_USDC"], channels=["book"]) as client:
                while client.book("SOL_USDC") is None:
                    await client.receive_events()
                before = client.book("SOL_USDC").last_update_id  # type: ignore[union-attr]
                sim.faults.send_malformed(payload=b'{"data":' + DEEP + b',"stream":"depth.SOL_USDC"}')
                statuses: list[str] = []
                while client.statistics().decode_errors == 0:
                    statuses += [e.state for e in await client.receive_events() if isinstance(e, BookStatus)]
                for _ in range(3):  # and the client keeps going
                    statuses += [e.state for e in await client.receive_events() if isinstance(e, BookStatus)]
                book = client.book("SOL_USDC")
    assert client.statistics().decode_errors == 1
    # Not even its envelope decodes, so it names no book: the books stay live (a depth frame that
    # went missing would show as a gap on the next one).
    assert statuses == []
    assert book is not None
    assert book.last_update_id > before


def test_an_order_book_keeps_prices_longer_than_the_decimal_context_precision() -> None:
    """Unary minus rounds to 28 digits: an ask keyed by it could no longer be read or deleted."""
    from decimal import Decimal

    from native_anyio import OrderBook

    book = OrderBook()
    price = Decimal("99999999999999999999999999999.99999999")  # 37 significant digits
    bid = Decimal("99999999999999999999999999999.99999998")
    book.apply([(bid, Decimal(1))], [(price, Decimal(2))])
    assert book.asks() == [(price, Decimal(2))]
    assert book.best_ask == (price, Decimal(2))
    assert not book.is_crossed()
    book.apply([], [(price, Decimal(0))])
    assert book.asks() == []
    assert len(book) == 1
    book.load([], [(price, Decimal(3))], 1)
    assert book.asks(1) == [(price, Decimal(3))]
