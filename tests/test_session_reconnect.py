"""
Reconnect, backoff and resubscription against the real test server over loopback, in virtual
time (properties B1-B5 and B7 of ``reliability-properties.md``).
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

import anyio
import anyio.abc
import anyio.lowlevel
import pytest
from _session_support import (
    Recorder,
    Timeline,
    at,
    config,
    consume,
    count,
    refusing_port,
    replay_subscriptions,
    subscription_log,
)

from native_anyio import (
    Backoff,
    ConnectionLost,
    HandshakeRejected,
    Instrumentation,
    JsonSubscriptions,
    SessionConfig,
    WsSession,
    open_session,
)
from native_anyio.testing import ServerConnection, WsTestServer, open_ws_server

if TYPE_CHECKING:
    from collections.abc import Sequence

pytestmark = pytest.mark.virtual_time


async def _stay(conn: ServerConnection) -> None:
    await anyio.sleep(10_000)


async def _run_forever(url: str, cfg: SessionConfig, hooks: Sequence[Instrumentation] = ()) -> None:
    """A session whose body just waits: it ends only by the session's own failure."""
    async with open_session(url, config=cfg, hooks=hooks):
        await anyio.sleep_forever()


def expected_delays(policy: Backoff, seed: int, n: int, reset_after: int | None = None) -> list[float]:
    """The session's delays, replayed from the same seed (the session draws jitter from ``Random(seed)``)."""
    run = policy.start(random.Random(seed))
    delays = []
    for k in range(1, n + 1):
        delay = run.next_delay(0.0)
        assert delay is not None
        delays.append(delay)
        if k == reset_after:
            run.reset()
    return delays


def cumulative(delays: list[float]) -> list[float]:
    times = [0.0]
    for delay in delays:
        times.append(times[-1] + delay)
    return times


# ----------------------------------------------------------------------------------------- B1

JITTERED = Backoff(initial=0.5, multiplier=2.0, max_delay=4.0, jitter=0.5, max_attempts=8)


async def test_attempts_against_a_refusing_port_follow_the_seeded_schedule() -> None:
    """B1: every attempt happens exactly when the (jittered, seeded) schedule says."""
    rec = Recorder()
    t0 = anyio.current_time()
    with refusing_port() as url, anyio.fail_after(120), pytest.raises(ConnectionLost) as exc_info:
        await _run_forever(url, config(backoff=JITTERED, seed=1234), hooks=[rec])

    delays = expected_delays(JITTERED, 1234, 7)
    assert len(set(delays)) == 7  # jitter is really applied
    assert [f["delay"] for f in rec.fields("reconnect_scheduled")] == delays
    # A refused connect fails at once, so each failure happens at its attempt's start time.
    assert [t - t0 for t in rec.times("reconnect_scheduled")] == [at(t) for t in cumulative(delays)[:-1]]
    assert rec.times("failed")[0] - t0 == at(sum(delays))
    assert exc_info.value.attempts == 8


async def test_attempts_against_a_rejecting_server_follow_the_seeded_schedule() -> None:
    """B1: the same with a server that answers every upgrade with 503 (timed server-side)."""
    async with open_ws_server(_stay) as server:
        server.handshake = 503
        t0 = anyio.current_time()
        with anyio.fail_after(120), pytest.raises(ConnectionLost) as exc_info:
            await _run_forever(server.url, config(backoff=JITTERED, seed=99))

    delays = expected_delays(JITTERED, 99, 7)
    assert [t - t0 for t in server.attempt_times] == [at(t) for t in cumulative(delays)]
    assert exc_info.value.reason.kind == "handshake"
    assert exc_info.value.reason.code == 503


# ----------------------------------------------------------------------------------------- B2


async def test_accept_then_close_does_not_reset_the_backoff_only_data_does() -> None:
    """
    B2: 50 connections that are accepted and closed at once follow the backoff schedule without
    a single reset (a bare handshake is not health). The 51st sends data before closing: only then
    does the schedule start over.
    """
    policy = Backoff(initial=0.5, multiplier=2.0, max_delay=30.0, jitter=0.5)

    async def handler(conn: ServerConnection) -> None:
        if conn.id == 51:
            await conn.send_text("data")
        if conn.id <= 51:
            await conn.close(1000)
        else:
            await _stay(conn)

    t0 = anyio.current_time()
    async with open_ws_server(handler) as server:
        with anyio.fail_after(3600):
            async with open_session(server.url, subscriptions=["s"], config=config(backoff=policy, seed=5)):
                await server.wait_connections(52)

    delays = expected_delays(policy, 5, 51, reset_after=50)
    attempts = [t - t0 for t in server.attempt_times]
    assert attempts == [at(t) for t in cumulative(delays)]
    assert delays[49] <= 30.0
    assert delays[49] >= 15.0  # escalated to the cap (30 s, jitter 0.5) ...
    assert delays[50] <= 0.5  # ... and back to the initial delay only after data
    # The storm bound: no more connects in 10 minutes than the shortest (all-jitter) schedule allows;
    # a client that reset on every handshake would connect every 0.25-0.5 s instead.
    shortest = cumulative([policy.base_delay(k) * (1 - policy.jitter) for k in range(1, 51)])
    assert sum(t < 600.0 for t in attempts) <= sum(t < 600.0 for t in shortest) == 45


# ----------------------------------------------------------------------------------------- B3


@pytest.mark.parametrize("status", [401, 403, 404])
async def test_fatal_handshake_status_surfaces_once_after_exactly_one_attempt(status: int) -> None:
    """B3: a 4xx upgrade answer is fatal: one attempt, no backoff, one error raised by the exit."""
    rec = Recorder()
    sessions: list[WsSession] = []
    body_finished = []

    async def body(url: str) -> None:
        async with open_session(url, config=config(), hooks=[rec]) as session:
            sessions.append(session)
            await anyio.sleep(3600)
            body_finished.append(True)

    async with open_ws_server(_stay) as server:
        server.handshake = status
        t0 = anyio.current_time()
        with anyio.fail_after(60), pytest.raises(HandshakeRejected) as exc_info:
            await body(server.url)

    assert exc_info.value.status_code == status
    assert exc_info.value.fatal
    assert len(server.attempt_times) == 1
    assert rec.names().count("failed") == 1
    assert "reconnect_scheduled" not in rec.names()
    assert anyio.current_time() - t0 == at(0.0)
    assert not body_finished
    [session] = sessions
    assert session.statistics().state == "failed"
    assert session.statistics().attempts == 1
    assert not session.health().ok


@pytest.mark.parametrize("fault", [503, 502, 500, 429, 408, "drop", "stall"])
async def test_transient_handshake_failures_are_retried_with_backoff(fault: int | str) -> None:
    """B3: 5xx, 408/429, a dropped upgrade and a handshake timeout are retried on schedule."""
    cfg = config(handshake_timeout=3.0, backoff=Backoff(initial=1.0, jitter=0.0, max_attempts=3))
    async with open_ws_server(_stay) as server:
        server.handshake = fault
        t0 = anyio.current_time()
        with anyio.fail_after(60), pytest.raises(ConnectionLost) as exc_info:
            await _run_forever(server.url, cfg)

    timeout = 3.0 if fault == "stall" else 0.0
    expected = [0.0, timeout + 1.0, 2 * timeout + 3.0]
    assert [t - t0 for t in server.attempt_times] == [at(t) for t in expected]
    assert exc_info.value.attempts == 3
    assert exc_info.value.reason.kind == "handshake"
    if isinstance(fault, int):
        assert exc_info.value.reason.code == fault


# ----------------------------------------------------------------------------------------- B4


async def test_exhausted_retries_reach_the_caller_from_async_with_and_async_for() -> None:
    """
    B4a: max_attempts=3 against a refusing port. The consumer's ``async for`` (in a task outside
    the session body) and the ``async with`` exit both get the same ConnectionLost, at exactly the
    sum of the backoff delays, with ``attempts == 3``.
    """
    exit_errors: list[BaseException] = []
    cfg = config(backoff=Backoff(initial=1.0, multiplier=2.0, jitter=0.0, max_attempts=3))

    async def run_session(url: str, *, task_status: anyio.abc.TaskStatus[WsSession]) -> None:
        try:
            async with open_session(url, config=cfg) as session:
                task_status.started(session)
                await anyio.sleep_forever()
        except ConnectionLost as exc:
            exit_errors.append(exc)

    t0 = anyio.current_time()
    with refusing_port() as url, anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            session = await tg.start(run_session, url)
            with pytest.raises(ConnectionLost) as consumer_error:
                async for _ in session:
                    pass

    assert anyio.current_time() - t0 == at(1.0 + 2.0)
    [exit_error] = exit_errors
    assert exit_error is consumer_error.value
    assert exit_error.attempts == 3
    assert exit_error.reason.kind == "handshake"
    assert session.statistics().attempts == 3
    assert session.statistics().state == "failed"


async def test_exhausted_retries_end_a_session_whose_body_consumes() -> None:
    """B4a: the same when the body itself iterates: one ConnectionLost, not an ExceptionGroup."""
    cfg = config(backoff=Backoff(initial=1.0, multiplier=2.0, jitter=0.0, max_attempts=3))

    async def body(url: str) -> None:
        async with open_session(url, config=cfg) as session:
            async for _ in session:
                pass

    with refusing_port() as url, anyio.fail_after(60), pytest.raises(ConnectionLost) as exc_info:
        await body(url)
    assert exc_info.value.attempts == 3
    assert type(exc_info.value) is ConnectionLost


async def test_unlimited_retries_stay_observable_and_responsive_for_an_hour() -> None:
    """B4b: unlimited attempts against a refusing port for 1 h of virtual time."""
    samples = []
    t0 = anyio.current_time()
    with refusing_port() as url, anyio.fail_after(7200):
        async with open_session(url, config=config(backoff=Backoff())) as session:
            for minute in range(1, 61):
                await anyio.sleep_until(t0 + 60.0 * minute)
                assert anyio.current_time() - t0 == at(60.0 * minute)  # the body runs on time
                with anyio.fail_after(0.001):  # ... and is not starved by the reconnect loop
                    await anyio.lowlevel.checkpoint()
                stats = session.statistics()
                samples.append((stats.state, stats.attempts, session.health().status))

    states = {state for state, _, _ in samples}
    assert states <= {"backoff", "connecting"}
    attempts = [a for _, a, _ in samples]
    assert attempts == sorted(attempts)
    assert attempts[-1] >= 3600 / 30  # capped at 30 s: at least one attempt per 30 s
    assert attempts[0] < attempts[-1]
    assert {status for _, _, status in samples} == {"degraded"}
    assert session.statistics().state == "closed"


# ----------------------------------------------------------------------------------------- B5


async def test_every_new_connection_gets_the_full_subscription_set_exactly_once() -> None:
    """
    B5: 50 streams, 100 drops (EOF, close 1001, a frame cut mid-way), three subscribe frames per
    connection. Every connection receives exactly the desired set, once, in order.
    """
    streams = [f"depth.S{i:02d}" for i in range(50)]

    async def handler(conn: ServerConnection) -> None:
        await conn.wait_message(3)
        await conn.send_text(f"data {conn.id}")
        if conn.id > 100:
            await _stay(conn)
        elif conn.id % 3 == 0:
            await conn.drop()
        elif conn.id % 3 == 1:
            await conn.close(1001)
        else:
            await conn.send_raw(b"\x81\x7e\x01\x00partial")  # a 256-byte text frame, cut
            await conn.drop()

    protocol = JsonSubscriptions(batch=20)
    async with open_ws_server(handler) as server:
        with anyio.fail_after(600):
            async with open_session(
                server.url, subscriptions=streams, config=config(), protocol=protocol
            ) as s:
                timeline = Timeline()
                await consume(s, timeline, count(bytes, 101))

    assert len(server.connections) == 101
    for conn in server.connections:
        assert len(conn.received) == 3, conn
        assert subscription_log(conn.received) == [("SUBSCRIBE", stream) for stream in streams]
    assert timeline.messages == [f"data {k}".encode() for k in range(1, 102)]
    assert [c.connection_id for c in timeline.connected()] == list(range(1, 102))
    assert len(timeline.disconnected()) == 100


# ----------------------------------------------------------------------------------------- B7


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
async def test_interleaved_subscribe_unsubscribe_and_drops_end_in_the_last_intent(seed: int) -> None:
    """
    B7: 300 seeded operations: subscribe, unsubscribe, server-side drops and pauses. Whenever a
    connection ends, and at the end, its server-side set (replayed from its frames, with no
    duplicate subscribe and no stray unsubscribe) equals the intent at that moment.
    """
    rng = random.Random(seed)
    pool = [f"trade.T{i}" for i in range(12)]
    cfg = config(backoff=Backoff(initial=0.5, multiplier=2.0, max_delay=2.0, jitter=0.0))
    checks: list[tuple[ServerConnection, set[str]]] = []

    async def checkpoint_and_drop(server: WsTestServer, session: WsSession) -> None:
        await anyio.sleep(0.01)  # let the server read everything that was sent
        for conn in server.open_connections:
            checks.append((conn, set(session.subscriptions)))
            await conn.drop()

    async with open_ws_server(_stay) as server:
        with anyio.fail_after(3600):
            async with open_session(server.url, subscriptions=pool[:3], config=cfg) as session:
                await session.wait_connected()
                for _ in range(300):
                    roll = rng.random()
                    if roll < 0.4:
                        await session.subscribe(*rng.sample(pool, rng.randint(1, 3)))
                    elif roll < 0.75:
                        await session.unsubscribe(*rng.sample(pool, rng.randint(1, 3)))
                    elif roll < 0.83:
                        await checkpoint_and_drop(server, session)
                    else:
                        await anyio.sleep(rng.choice([0.0, 0.3, 0.6, 2.5]))
                await session.wait_connected()
                await anyio.sleep(5.0)  # longer than any backoff delay: every send has landed
                [live] = server.open_connections
                checks.append((live, set(session.subscriptions)))

    assert len(checks) >= 8
    unsubscribes = sum(
        method == "UNSUBSCRIBE" for c, _ in checks for method, _ in subscription_log(c.received)
    )
    assert unsubscribes > 10  # the live connections really saw incremental changes
    for conn, intent in checks:
        assert set(replay_subscriptions(conn.received)) == intent, conn
