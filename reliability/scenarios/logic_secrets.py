"""
Secret canary (property G2): the API secrets used in a full signed session must appear nowhere in
what the toolkit shows the world.

The canaries are the simulator's API secret (the accepted key) and a second, valid key the
simulator does not know, each searched for in every form: standard base64 (and its first 40
characters, the prefix any base64 of data starting with the seed shares), URL-safe base64, hex
(both cases), the raw 32 bytes, ``str(bytes)`` and the list of byte values.

The session, against the simulator over loopback with DEBUG logging on for ``native_anyio``,
``httpx``, ``httpcore`` and ``anyio`` and a :class:`native_anyio.LoggingHook` on every event:

* configs built from arguments, from the environment (with a trailing newline) and from bytes;
  key errors (a mismatched key, key and secret swapped, a truncated or padded secret, 31 and 33
  bytes), whose messages must not quote the input;
* the Backpack client with public and private channels (book, trades, orders, balances,
  positions), clock sync, balances, a resting order, a crossing order (fills), open orders and
  a cancel; then the failures: an unknown key (401 "Invalid signature"), a clock 90 s ahead (401
  expired, and a private subscription answered 4003), a bad order (400), a request cancelled in
  flight, and an exception raised inside the client's ``async with``.

Captured: every log record (formatted with its traceback), every exception (``repr``, ``str`` and
``traceback.format_exception`` with chained causes), ``repr``/``str``/``format`` of the public
objects (configs, signers, clients, sessions, statistics, health, events, errors) and of each of
their attributes one level down, and the pickles of all of them (refusing to pickle, as the
signer does, is fine).
"""

from __future__ import annotations

import base64
import logging
import pickle
import time
import traceback
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import anyio

from native_anyio import (
    AuthError,
    InstrumentationEvent,
    InvalidKeyError,
    LoggingHook,
    NativeError,
    generate_keypair,
)
from native_anyio.backpack import BackpackConfig, BackpackRest, open_backpack
from native_anyio.backpack.simulator import SimulatorConfig, open_simulator
from reliability._figures import Context, Result, Scenario

if TYPE_CHECKING:
    from native_anyio.backpack import BackpackClient
    from native_anyio.backpack.simulator import Simulator

__all__ = ["SCENARIOS", "canary_forms"]

LOGGERS = ("native_anyio", "httpx", "httpcore", "anyio")
CHANNELS = ["book", "trades", "orders", "balances", "positions"]


def canary_forms(secret_b64: str) -> tuple[list[str], list[bytes]]:
    """The text and byte forms a leak of ``secret_b64`` could take."""
    seed = base64.b64decode(secret_b64)
    texts = [
        secret_b64,
        secret_b64[:40],
        base64.urlsafe_b64encode(seed).decode()[:40],
        seed.hex(),
        seed.hex().upper(),
        repr(seed)[2:-1],
        str(list(seed))[1:-1],
    ]
    raw = [seed, *(text.encode() for text in texts)]
    return texts, raw


class Capture(logging.Handler):
    """Keeps every record, formatted with its traceback, and every text and pickle checked."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.texts: list[str] = []
        self.blobs: list[bytes] = []
        self.records = 0
        self.objects = 0
        self.exceptions = 0
        self.pickled = 0
        self.refused = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.records += 1
        try:
            self.texts.append(self.format(record))
            self.texts.append(repr(record.args))
        except Exception as exc:  # a record that cannot even be formatted is still evidence
            self.texts.append(f"unformattable record {record.name}: {exc!r}")

    def obj(self, value: object, *, deep: bool = True) -> None:
        """``repr``/``str``/``format`` (and a pickle) of ``value`` and, with ``deep``, its attributes."""
        self.objects += 1
        self.texts += [repr(value), str(value), f"{value}", format(value, "")]
        try:
            self.blobs.append(pickle.dumps(value))
            self.pickled += 1
        except Exception as exc:  # refusing is fine; the refusal itself must not leak
            self.refused += 1
            self.texts.append(repr(exc))
        if deep:
            for name in _attributes(value):
                try:
                    self.obj(getattr(value, name), deep=False)
                except AttributeError:
                    continue

    def exc(self, error: BaseException) -> None:
        self.exceptions += 1
        self.texts += [repr(error), str(error), "".join(traceback.format_exception(error))]
        self.obj(error, deep=False)

    def count(self, forms: tuple[list[str], list[bytes]]) -> int:
        texts, raw = forms
        hits = sum(text.count(form) for text in self.texts for form in texts)
        return hits + sum(blob.count(form) for blob in self.blobs for form in raw)


def _attributes(value: object) -> list[str]:
    names: list[str] = []
    for cls in type(value).__mro__:
        names += [n for n in getattr(cls, "__slots__", ()) if isinstance(n, str)]
    names += list(getattr(value, "__dict__", {}))
    return [n for n in dict.fromkeys(names) if not n.startswith("__")]


async def _expect_error(capture: Capture, call: Any) -> None:
    """Run ``call()``; capture the NativeError it raises (any other exception propagates)."""
    try:
        await call()
    except NativeError as error:
        capture.exc(error)


def _key_errors(capture: Capture, sim: Simulator, stranger_key: str) -> tuple[int, int]:
    """Build configs from bad key material; returns (refused, tried): all should be refused."""
    secret = sim.api_secret
    seed = base64.b64decode(secret)
    bad = [
        (stranger_key, secret),  # the key of another secret
        (secret, sim.api_key),  # key and secret swapped
        (sim.api_key, secret[:-4]),  # truncated
        (sim.api_key, secret + "AAAA"),  # padded
        (sim.api_key, base64.b64encode(seed[:31]).decode()),
        (sim.api_key, base64.b64encode(seed + b"\x00").decode()),
    ]
    urlsafe = secret.replace("+", "-").replace("/", "_")
    if urlsafe != secret:  # a random secret may have neither character
        bad.append((sim.api_key, urlsafe))
    refused = 0
    for key, value in bad:
        try:
            BackpackConfig(rest_url=sim.rest_url, ws_url=sim.ws_url, api_key=key, api_secret=value)
        except (InvalidKeyError, ValueError) as error:
            refused += 1
            capture.exc(error)
    return refused, len(bad)


async def _trade(capture: Capture, client: BackpackClient, sim: Simulator) -> None:
    rest = client.rest
    capture.obj(await rest.sync_clock())
    capture.obj(await rest.balances())
    bid = sim.book("SOL_USDC").bids[0][0]
    resting = await rest.execute_order(
        symbol="SOL_USDC",
        side="Bid",
        orderType="Limit",
        quantity="0.5",
        price=str(bid - Decimal(1)),
        clientId=1,
    )
    capture.obj(resting)
    ask = sim.book("SOL_USDC").asks[0][0]
    capture.obj(
        await rest.execute_order(
            symbol="SOL_USDC", side="Bid", orderType="Limit", quantity="0.1", price=str(ask)
        )
    )
    capture.obj(await rest.open_orders("SOL_USDC"))
    capture.obj(await rest.cancel_order("SOL_USDC", order_id=resting["id"]))
    await _expect_error(capture, lambda: rest.execute_order(symbol="SOL_USDC", side="Bid", orderType="Nope"))
    with anyio.move_on_after(0):  # cancelled in flight: nothing to capture but the logs
        await rest.balances()


async def _session(capture: Capture, sim: Simulator, config: BackpackConfig) -> int:
    """The full signed session; returns how many events it delivered."""
    events = 0
    hooks = [LoggingHook(level=logging.DEBUG), capture_hook(capture)]
    try:
        async with open_backpack(config, symbols=["SOL_USDC"], channels=CHANNELS, hooks=hooks) as client:
            await _trade(capture, client, sim)
            with anyio.move_on_after(2.0):
                while True:
                    batch = await client.receive_events()
                    events += len(batch)
                    for event in batch:
                        capture.obj(event, deep=False)
                        capture.texts.append(event.to_json().decode())
            shown: list[object] = [config, config.signer, client, client.session, client.rest, client.symbols]
            shown += [client.statistics(), client.health(), client.session.statistics()]
            shown += [client.rest.statistics(), client.rest.health()]
            for value in shown:
                capture.obj(value)
            raise RuntimeError("forced failure inside the client")
    except RuntimeError as error:
        capture.exc(error)
    return events


def capture_hook(capture: Capture) -> Any:
    def hook(event: InstrumentationEvent) -> None:
        capture.texts.append(repr(event))

    return hook


async def _failures(capture: Capture, sim: Simulator, stranger: tuple[str, str]) -> None:
    # A valid key the venue does not know: 401 Invalid signature.
    other = BackpackConfig(
        rest_url=sim.rest_url, ws_url=sim.ws_url, api_key=stranger[1], api_secret=stranger[0]
    )
    capture.obj(other)
    async with BackpackRest(other) as rest:
        await _expect_error(capture, rest.balances)

    # A clock 90 s ahead: 401 expired on REST (not resent), 4003 on a private subscription. Two
    # configs: the REST failure re-syncs its signer's clock, which would fix the subscription.
    def ahead() -> BackpackConfig:
        return BackpackConfig(
            rest_url=sim.rest_url,
            ws_url=sim.ws_url,
            api_key=sim.api_key,
            api_secret=sim.api_secret,
            clock=lambda: time.time() + 90.0,
        )

    async with BackpackRest(ahead()) as rest:
        await _expect_error(
            capture,
            lambda: rest.execute_order(
                symbol="SOL_USDC", side="Bid", orderType="Limit", quantity="1", price="1"
            ),
        )
    try:
        with anyio.fail_after(20):
            async with open_backpack(ahead(), hooks=[LoggingHook(level=logging.DEBUG)]) as client:
                await client.subscribe([], ["orders"])
                while True:
                    await client.receive_events()
    except AuthError as error:
        capture.exc(error)
    # Environment and bytes inputs (a trailing newline, as a shell `echo` leaves it).
    env = {"BACKPACK_API_KEY": sim.api_key, "BACKPACK_API_SECRET": sim.api_secret + "\n"}
    capture.obj(BackpackConfig.from_env(env, rest_url=sim.rest_url, ws_url=sim.ws_url))


async def run_secrets(ctx: Context) -> Result:
    started = time.perf_counter()
    capture = Capture()
    loggers = [logging.getLogger(name) for name in LOGGERS]
    saved = [(logger, logger.level) for logger in loggers]
    root = logging.getLogger()
    root.addHandler(capture)
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
    stranger = generate_keypair()
    try:
        config_sim = SimulatorConfig(symbols=("SOL_USDC", "SOL_USDC_PERP"), seed=9, update_rate=20.0)
        async with open_simulator(config_sim) as sim:
            secret = sim.api_secret
            config = BackpackConfig(
                rest_url=sim.rest_url, ws_url=sim.ws_url, api_key=sim.api_key, api_secret=secret
            )
            refused, tried = _key_errors(capture, sim, stranger[1])
            events = await _session(capture, sim, config)
            await _failures(capture, sim, stranger)
            accepted = sim.api_secret
    finally:
        root.removeHandler(capture)
        for logger, level in saved:
            logger.setLevel(level)
    occurrences = capture.count(canary_forms(accepted)) + capture.count(canary_forms(stranger[0]))
    # Proof the search works: the same capture plus one deliberate leak must be found.
    capture.texts.append(f"leak {accepted}")
    self_test = capture.count(canary_forms(accepted)) > 0
    capture.texts.pop()
    passed = occurrences == 0 and self_test and refused == tried and events > 0 and capture.records > 0
    value = (
        f"{occurrences} occurrences of 2 canaries x 8 forms in {capture.records} DEBUG log records, "
        f"{capture.objects} object reprs, {capture.exceptions} exceptions (with causes), "
        f"{capture.pickled} pickles ({capture.refused} refused); {refused}/{tried} bad keys refused"
    )
    data: dict[str, float | int | str] = {
        "occurrences": occurrences,
        "log_records": capture.records,
        "objects": capture.objects,
        "exceptions": capture.exceptions,
        "pickles": capture.pickled,
        "pickles_refused": capture.refused,
        "bad_keys_refused": refused,
        "bad_keys_tried": tried,
        "events": events,
        "search_self_test": int(self_test),
        "wall_seconds": time.perf_counter() - started,
    }
    return Result(value, passed, data)


SCENARIOS = [
    Scenario(
        key="secret_canary",
        figure="Secret hygiene (canary)",
        how=(
            "2 canary secrets in 8 forms (base64, prefix, URL-safe, hex, HEX, raw bytes, str(bytes), byte "
            "list) searched in all DEBUG logs (native_anyio, httpx, httpcore, anyio), reprs of public "
            "objects and their attributes, exceptions with causes and pickles of a full signed session "
            "with auth failures and forced exceptions"
        ),
        target="0 occurrences",
        run=run_secrets,
    )
]
