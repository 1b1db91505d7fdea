"""
Session lifecycle against the real test server over loopback, in virtual time: cancellation at
any point (H1), the exception contract (H2), statistics and health, and the small API surface
(send, reconnect, wait_connected, end of stream).
"""

from __future__ import annotations

import math
import random
import ssl
from collections.abc import Awaitable, Callable

import anyio
import anyio.abc
import anyio.lowlevel
import pytest
import trustme
from _session_support import (
    Recorder,
    Timeline,
    at,
    config,
    consume,
    count,
    open_fds,
    refusing_port,
    settle,
)

from native_anyio import (
    AnyioTransport,
    AuthError,
    Backoff,
    CloseReason,
    Connected,
    ConnectionLost,
    Disconnected,
    HandshakeRejected,
    LivenessConfig,
    SessionConfig,
    WsSession,
    open_session,
)
from native_anyio._frames import OP_TEXT, encode_frame
from native_anyio.testing import ServerConnection, WsTestServer, open_ws_server

Handler = Callable[[ServerConnection], Awaitable[None]]

pytestmark = pytest.mark.virtual_time

CLOSE_TIMEOUT = 2.0


# ----------------------------------------------------------------------------------------- H1


async def _stream(conn: ServerConnection) -> None:
    for i in range(10_000):
        if conn.closed.is_set():
            return
        await conn.send_text(f"tick {i}")
        await anyio.sleep(0.1)


async def _half_frame(conn: ServerConnection) -> None:
    await conn.send_raw(encode_frame(OP_TEXT, b"m" * 300, mask=False)[:100])
    await anyio.sleep(10_000)


async def _deaf(conn: ServerConnection) -> None:
    conn.answer_pings = False
    conn.answer_close = False
    await anyio.sleep(10_000)


async def _blackhole(conn: ServerConnection) -> None:
    conn.blackhole()
    await anyio.sleep(10_000)


H1_CASES: dict[str, tuple[str | int, Handler, LivenessConfig | None, float, float]] = {
    # name: (handshake, handler, liveness, cancel at, expected return - cancel)
    "during_handshake": ("stall", _stream, None, 5.0, 0.0),
    "during_backoff_sleep": (503, _stream, None, 5.0, 0.0),
    # The peer's close answer lands inside the frame it left unfinished, so the client cannot
    # read it: the close waits close_timeout, then the socket is released.
    "mid_frame": ("accept", _half_frame, None, 5.0, CLOSE_TIMEOUT),
    "while_streaming": ("accept", _stream, None, 5.05, 0.0),
    # The server sends nothing and ignores close frames: the data-idle timer starts a close at
    # t=2 that waits the full close_timeout; the cancel at t=3 cannot cut that bounded wait short.
    "during_close": ("accept", _deaf, LivenessConfig(ping_interval=None, idle_timeout=2.0), 3.0, 1.0),
    "blackholed_peer": ("accept", _blackhole, None, 5.0, CLOSE_TIMEOUT),
}


async def _run_cancelled(server: WsTestServer, cfg: SessionConfig, cancel_at: float) -> tuple[float, float]:
    """Run a consuming session until ``cancel_at`` (virtual); return (cancel time, return time)."""
    t0 = anyio.current_time()
    with anyio.fail_after(cancel_at + 4 * CLOSE_TIMEOUT + 1), anyio.move_on_after(cancel_at):
        async with open_session(server.url, subscriptions=["a"], config=cfg) as session:
            async for _ in session:
                pass
    returned = anyio.current_time()
    assert session.statistics().state == "closed"
    return t0 + cancel_at, returned


@pytest.mark.parametrize("case", sorted(H1_CASES))
async def test_cancellation_at_any_point_returns_promptly_and_leaves_nothing_behind(case: str) -> None:
    """H1: cancel the caller's scope at a chosen point; exact return time, fds and tasks at baseline."""
    handshake, handler, liveness, cancel_at, expected = H1_CASES[case]
    cfg = config(
        close_timeout=CLOSE_TIMEOUT,
        handshake_timeout=10.0,
        backoff=Backoff(initial=10.0, jitter=0.0),
        liveness=liveness or LivenessConfig(ping_interval=None),
    )
    fds, tasks = open_fds(), len(anyio.get_running_tasks())
    async with open_ws_server(handler) as server:
        server.handshake = handshake
        cancelled_at, returned = await _run_cancelled(server, cfg, cancel_at)
        assert returned - cancelled_at == at(expected)
        assert returned - cancelled_at <= 2 * CLOSE_TIMEOUT
    await settle()
    assert (open_fds(), len(anyio.get_running_tasks())) == (fds, tasks)
    if case == "during_close":
        [conn] = server.connections
        assert conn.close_frames == 1
        assert conn.frames_after_close == []


@pytest.mark.parametrize("seed", range(12))
async def test_cancellation_at_random_points_of_a_faulty_run(seed: int) -> None:
    """
    H1: a seeded script of handshake faults (stall, 503, drop) and connection faults (stream then
    drop, a frame cut mid-way, a blackholed or deaf peer, close 1001), cancelled at a random time.
    The caller gets control back within 2 x close_timeout, with fds and tasks at baseline.
    """
    rng = random.Random(seed)
    handshake_modes: list[str | int] = ["accept", "accept", "accept", "stall", 503, "drop"]
    handshakes = [rng.choice(handshake_modes) for _ in range(200)]
    kinds = ["stream_drop", "half_frame", "blackhole", "deaf", "close_1001"]
    behaviours = [rng.choice(kinds) for _ in range(200)]

    async def handler(conn: ServerConnection) -> None:
        behaviour = behaviours[conn.id % 200]
        if behaviour == "stream_drop":
            with anyio.move_on_after(rng.uniform(0.0, 3.0)):
                await _stream(conn)
            await conn.drop()
        elif behaviour == "half_frame":
            await _half_frame(conn)
        elif behaviour == "blackhole":
            await _blackhole(conn)
        elif behaviour == "deaf":
            await _deaf(conn)
        else:
            await anyio.sleep(rng.uniform(0.0, 2.0))
            await conn.close(1001)

    cfg = config(
        close_timeout=CLOSE_TIMEOUT,
        handshake_timeout=3.0,
        backoff=Backoff(initial=0.5, multiplier=2.0, max_delay=4.0, jitter=0.5),
        liveness=LivenessConfig(ping_interval=1.0, ping_timeout=1.0),
        seed=seed,
    )
    fds, tasks = open_fds(), len(anyio.get_running_tasks())
    async with open_ws_server(handler) as server:
        server.handshake = lambda attempt: handshakes[attempt % 200]
        cancelled_at, returned = await _run_cancelled(server, cfg, rng.uniform(0.0, 30.0))
        assert 0.0 <= returned - cancelled_at <= 2 * CLOSE_TIMEOUT
    await settle()
    assert (open_fds(), len(anyio.get_running_tasks())) == (fds, tasks)


# ----------------------------------------------------------------------------------------- H2


class BodyError(Exception):
    pass


@pytest.mark.parametrize("phase", ["connected", "handshake", "backoff"])
async def test_exception_in_the_body_propagates_unchanged(phase: str) -> None:
    """H2: the body's own exception comes out as itself (not an ExceptionGroup), chain intact."""
    cause = KeyError("cause")
    raised = BodyError("boom")
    modes: dict[str, str | int] = {"connected": "accept", "handshake": "stall", "backoff": 503}
    sessions: list[WsSession] = []

    async def body(server: WsTestServer) -> None:
        async with open_session(server.url, config=config(backoff=Backoff(initial=10.0))) as session:
            sessions.append(session)
            if phase == "connected":
                await session.wait_connected()
            else:
                await anyio.sleep(2.0)  # inside the stalled handshake / the backoff sleep
            try:
                raise cause
            except KeyError as exc:
                raise raised from exc

    async with open_ws_server(_stream) as server:
        server.handshake = modes[phase]
        with anyio.fail_after(30), pytest.raises(BodyError) as exc_info:
            await body(server)

    assert exc_info.value is raised
    assert type(exc_info.value) is BodyError
    assert exc_info.value.__cause__ is cause
    assert sessions[0].statistics().state == "closed"
    if phase == "connected":
        assert server.connections[0].client_close_code == 1000


async def test_fatal_error_inside_the_session_cancels_the_body_and_is_raised_once() -> None:
    """
    H2: the first connection works; then the server drops it and starts refusing with 401. The
    body (a consumer) stops, on both backends alike, and the ``async with`` raises the one
    HandshakeRejected.
    """
    seen: list[BaseException] = []
    sessions: list[WsSession] = []
    timeline = Timeline()
    rec = Recorder()

    async def handler(conn: ServerConnection) -> None:
        await conn.send_text("hello")
        await anyio.sleep(1.0)
        conn.server.handshake = 401
        await conn.drop()

    async def body(server: WsTestServer) -> None:
        async with open_session(server.url, config=config(), hooks=[rec]) as session:
            sessions.append(session)
            try:
                async for item in session:
                    timeline.add([item])
            except BaseException as exc:
                seen.append(exc)
                raise

    async with open_ws_server(handler) as server:
        with anyio.fail_after(30), pytest.raises(HandshakeRejected) as exc_info:
            await body(server)

    # The consumer was waiting in the body: it is woken with the error (on both backends), and
    # the ``async with`` re-raises that same object as itself, not wrapped in a group.
    assert seen == [exc_info.value]
    assert type(exc_info.value) is HandshakeRejected
    assert exc_info.value.status_code == 401
    assert len(server.attempt_times) == 2
    assert rec.names().count("failed") == 1
    assert timeline.messages == [b"hello"]
    [session] = sessions
    assert session.statistics().state == "failed"
    with pytest.raises(HandshakeRejected) as again:
        await session.receive_batch()  # after the inbox is drained, the stored error
    assert again.value is exc_info.value


async def test_fail_from_venue_code_ends_the_session_with_that_error() -> None:
    """H2: ``session.fail(AuthError(...))`` (e.g. a rejected signature) ends everything once."""
    error = AuthError("signature rejected", exchange="test")
    sessions: list[WsSession] = []

    async def handler(conn: ServerConnection) -> None:
        await conn.send_text("rejected")
        await anyio.sleep(1000)

    async def body(server: WsTestServer) -> None:
        async with open_session(server.url, config=config()) as session:
            sessions.append(session)
            async for item in session:
                if item == b"rejected":
                    session.fail(error)
                    await anyio.sleep(1000)  # cancelled by the failure

    async with open_ws_server(handler) as server:
        with anyio.fail_after(30), pytest.raises(AuthError) as exc_info:
            await body(server)

    assert exc_info.value is error
    assert server.connections[0].client_close_code == 1000
    assert len(server.attempt_times) == 1
    assert not sessions[0].health().ok


async def test_wait_connected_raises_the_fatal_error() -> None:
    async with open_ws_server(_stream) as server:
        server.handshake = 403
        waiter_errors: list[BaseException] = []

        async def run(*, task_status: anyio.abc.TaskStatus[None]) -> None:
            try:
                async with open_session(server.url, config=config()) as session:
                    task_status.started()
                    await anyio.sleep_forever()
            except HandshakeRejected as exc:
                waiter_errors.append(exc)
            with pytest.raises(HandshakeRejected):
                await session.wait_connected()

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                await tg.start(run)
    assert len(waiter_errors) == 1


# ------------------------------------------------------------------------------ statistics/health


async def test_statistics_and_health_follow_the_connection_lifecycle() -> None:
    """
    Counters move as expected, health degrades while reconnecting (and when data is old or the
    consumer lags) and recovers to ok, and ends unhealthy once the session is closed.
    """
    go_down = anyio.Event()

    async def handler(conn: ServerConnection) -> None:
        if conn.id == 1:
            for i in range(3):
                await conn.send_text(f"m{i}")
            await conn.send_ping(b"a")
            await conn.send_ping(b"b")
            await go_down.wait()
            conn.server.handshake = 503
            await conn.drop()
        else:
            await conn.send_text("back")
            for i in range(12):
                await conn.send_text(f"lag {i}")
            await anyio.sleep(1000)

    cfg = config(liveness=LivenessConfig(ping_interval=1.0, ping_timeout=1.0), max_queue=20)
    streams = ["a", "b", "c"]
    t0 = anyio.current_time()
    async with open_ws_server(handler) as server:
        with anyio.fail_after(60):
            async with open_session(server.url, subscriptions=streams, config=cfg) as session:
                timeline = Timeline()
                await consume(session, timeline, count(bytes, 3))
                await anyio.sleep_until(t0 + 2.5)
                up = session.statistics()
                assert session.health().ok
                stale = session.health(max_message_age=1.0)

                go_down.set()
                await anyio.sleep_until(t0 + 3.75)  # dropped at 2.5; the attempt at 3.5 got 503
                down = session.statistics()
                down_health = session.health()

                await anyio.sleep_until(t0 + 4.0)
                server.handshake = "accept"  # the attempt at 3.5 + 2 = 5.5 succeeds
                await anyio.sleep_until(t0 + 6.0)
                recovered = session.statistics()
                lagging = session.health()
                await consume(session, timeline, count(bytes, 16))
                assert session.health().ok

    assert (up.state, up.connection_id, up.connects, up.reconnects, up.attempts) == ("connected", 1, 1, 0, 1)
    assert (up.messages, up.queue_depth, up.max_queue, up.subscriptions) == (3, 0, 20, 3)
    assert up.bytes >= sum(2 + len(m) for m in (b"m0", b"m1", b"m2"))
    assert up.last_message_age == at(2.5)
    assert (up.pings_sent, up.pongs_matched, up.pongs_unmatched, up.server_pings) == (2, 2, 0, 2)
    assert up.last_rtt == 0.0
    assert up.last_close_reason is None
    assert stale.status == "degraded"
    assert stale.reasons == ("no message for 2.5 s",)

    assert (down.state, down.connects, down.attempts) == ("backoff", 1, 2)
    reason = CloseReason("handshake", 503, "websocket handshake rejected with HTTP 503 Rejected")
    assert down.last_close_reason == reason
    assert down_health.status == "degraded"
    assert down_health.reasons[0].startswith("backoff (last close: handshake 503")

    assert (recovered.state, recovered.connection_id, recovered.connects, recovered.reconnects) == (
        "connected",
        2,
        2,
        1,
    )
    assert recovered.attempts == 3
    assert recovered.queue_depth == 13
    assert lagging.status == "degraded"
    assert lagging.reasons == ("consumer lagging: 13 messages queued",)
    assert recovered.pings_sent == up.pings_sent  # carried over from connection 1

    final = session.statistics()
    assert (final.state, final.messages) == ("closed", 16)
    assert session.health().status == "unhealthy"
    assert [t - t0 for t in server.attempt_times] == [at(0.0), at(3.5), at(5.5)]


# ------------------------------------------------------------------------------- small API surface


async def test_send_reconnect_and_end_of_stream() -> None:
    async def handler(conn: ServerConnection) -> None:
        await conn.send_text(f"hello {conn.id}")
        await anyio.sleep(1000)

    async with open_ws_server(handler) as server:
        with anyio.fail_after(30):
            async with open_session(server.url, subscriptions=["x"], config=config()) as session:
                timeline = Timeline()
                await consume(session, timeline, count(bytes, 1))
                await session.send('{"method":"PING"}')
                session.reconnect("rotate")
                await consume(session, timeline, count(bytes, 2))
                await server.connections[1].wait_message(1)
        # After a normal exit, the rest of the inbox is delivered, then the iteration ends.
        leftovers = [item async for item in session]

    first, second = server.connections
    assert first.received == ['{"method":"SUBSCRIBE","params":["x"]}', '{"method":"PING"}']
    assert first.client_close_code == 1000
    assert second.received == ['{"method":"SUBSCRIBE","params":["x"]}']
    assert timeline.plain() == [
        Connected(1, server.url),
        b"hello 1",
        Disconnected(1, CloseReason("requested", 1000, "rotate")),
        Connected(2, server.url),
        b"hello 2",
    ]
    assert leftovers == [Disconnected(2, CloseReason("closed", 1000, "session closing"))]
    with pytest.raises(anyio.EndOfStream):
        await session.receive_batch()


async def test_two_concurrent_consumers_share_the_stream_and_both_see_the_end() -> None:
    """Two tasks consume the same session: every message once, and neither is left hanging."""
    n = 200

    async def handler(conn: ServerConnection) -> None:
        for i in range(n):
            await conn.send_text(str(i))
            await anyio.sleep(0.01)
        await anyio.sleep(1000)

    got: dict[str, list[bytes]] = {"a": [], "b": []}
    done = anyio.Event()

    async def consumer(name: str, session: WsSession) -> None:
        async for item in session:  # ends with the session (EndOfStream)
            if isinstance(item, bytes):
                got[name].append(item)
                if len(got["a"]) + len(got["b"]) == n:
                    done.set()

    async def run_session(url: str, *, task_status: anyio.abc.TaskStatus[WsSession]) -> None:
        async with open_session(url, config=config()) as session:
            task_status.started(session)
            await done.wait()

    async with open_ws_server(handler) as server:
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                session = await tg.start(run_session, server.url)
                tg.start_soon(consumer, "a", session)
                tg.start_soon(consumer, "b", session)

    assert sorted(got["a"] + got["b"], key=int) == [str(i).encode() for i in range(n)]
    assert got["a"]
    assert got["b"]


async def test_send_while_disconnected_raises_connection_lost() -> None:
    with refusing_port() as url, anyio.fail_after(10):
        async with open_session(url, config=config(backoff=Backoff(initial=100.0))) as session:
            await anyio.sleep(1.0)
            with pytest.raises(ConnectionLost):
                await session.send("x")
            assert session.statistics().state == "backoff"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"handshake_timeout": 0.0},
        {"handshake_timeout": math.nan},
        {"close_timeout": -1.0},
        {"close_timeout": math.nan},
        {"max_queue": 0},
        {"max_message_size": 0},
        {"slow_consumer": "drop"},
    ],
)
def test_invalid_session_config_is_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        SessionConfig(**kwargs)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------- TLS


async def test_wss_session_over_tls_with_a_local_certificate() -> None:
    """wss:// end to end: TLS handshake with a local CA, messages, a reconnect, and a clean close."""
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)

    async def handler(conn: ServerConnection) -> None:
        await conn.wait_message()
        for i in range(3):
            await conn.send_text(f"secure {conn.id}.{i}")
        if conn.id == 1:
            await conn.close(1001)
            return
        await anyio.sleep(1000)

    async with open_ws_server(handler, ssl_context=server_context) as server:
        assert server.url.startswith("wss://127.0.0.1:")
        transport = AnyioTransport(ssl_context=client_context)
        got: list[bytes] = []
        with anyio.fail_after(30):
            async with open_session(
                server.url, subscriptions=["x"], transport=transport, config=config()
            ) as session:
                async for item in session:
                    if isinstance(item, bytes):
                        got.append(item)
                        if len(got) == 6:
                            break
    assert got == [f"secure {c}.{i}".encode() for c in (1, 2) for i in range(3)]
    assert [c.received for c in server.connections] == [['{"method":"SUBSCRIBE","params":["x"]}']] * 2


async def test_wss_rejects_an_untrusted_certificate() -> None:
    """A certificate from an unknown CA fails the attempt (and the session keeps retrying)."""
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert("127.0.0.1").configure_cert(server_context)

    async def handler(conn: ServerConnection) -> None:
        await anyio.sleep(1000)

    async with open_ws_server(handler, ssl_context=server_context) as server:
        cfg = config(backoff=Backoff(initial=1.0, jitter=0.0, max_attempts=2))
        with anyio.fail_after(30), pytest.raises(ConnectionLost) as info:
            async with open_session(server.url, config=cfg, transport=AnyioTransport()):
                await anyio.sleep(100)
    assert info.value.attempts == 2
    assert info.value.reason.kind == "handshake"
    assert "CERTIFICATE_VERIFY_FAILED" in info.value.reason.detail
    assert server.connections == []
