"""
Tests for the sans-IO liveness policy in ``native_anyio._liveness``.

Synchronous and exact: time is a plain float handed to the policy, so every ping, timeout,
server-ping loss and data-idle verdict is asserted at its exact instant, one tick before it and
at it (reliability properties A1, A2, A3, E3).
"""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from native_anyio._liveness import Fail, Liveness, LivenessConfig, SendPing

EPS = 1e-9


def drain(live: Liveness, now: float) -> list[SendPing | Fail]:
    """Everything ``poll`` wants done at ``now`` (bounded: the policy never asks for more than one)."""
    actions: list[SendPing | Fail] = []
    for _ in range(10):
        action = live.poll(now)
        if action is None:
            return actions
        actions.append(action)
        if isinstance(action, Fail):
            return actions
    raise AssertionError(f"poll({now}) never settles: {actions}")


# ---------------------------------------------------------------------------------------- client pings


def test_client_pings_follow_the_exact_schedule() -> None:
    live = Liveness(LivenessConfig(ping_interval=5.0, ping_timeout=3.0), now=100.0)
    assert live.next_deadline() == 105.0
    assert drain(live, 105.0 - EPS) == []
    [ping] = drain(live, 105.0)
    assert isinstance(ping, SendPing)
    assert live.pings_sent == 1
    # Outstanding: the next thing to happen is the timeout, and no second ping is sent meanwhile.
    assert live.next_deadline() == 108.0
    assert drain(live, 107.0) == []
    live.on_pong(ping.payload, 106.5)
    assert live.pongs_matched == 1
    assert live.last_rtt == 1.5
    # The next ping is due ping_interval after the previous one was *sent*.
    assert live.next_deadline() == 110.0
    assert drain(live, 110.0 - EPS) == []
    [second] = drain(live, 110.0)
    assert isinstance(second, SendPing)
    assert second.payload != ping.payload


def test_half_open_fails_at_exactly_ping_interval_plus_ping_timeout() -> None:
    live = Liveness(LivenessConfig(ping_interval=5.0, ping_timeout=3.0), now=0.0)
    [ping] = drain(live, 5.0)
    assert isinstance(ping, SendPing)
    assert drain(live, 8.0 - EPS) == []
    [fail] = drain(live, 8.0)
    assert fail == Fail("ping_timeout", "no pong within 3 s")
    # It keeps saying so: the verdict is stable until the connection is replaced.
    assert drain(live, 9.0) == [Fail("ping_timeout", "no pong within 3 s")]


def test_a_pong_after_the_deadline_does_not_resurrect_a_polled_connection() -> None:
    live = Liveness(LivenessConfig(ping_interval=1.0, ping_timeout=1.0), now=0.0)
    [ping] = drain(live, 1.0)
    assert isinstance(ping, SendPing)
    assert drain(live, 2.0) == [Fail("ping_timeout", "no pong within 1 s")]


def test_ping_payloads_are_unique_per_connection() -> None:
    live = Liveness(LivenessConfig(ping_interval=1.0, ping_timeout=0.5), now=0.0)
    payloads = []
    for second in range(1, 201):
        [ping] = drain(live, float(second))
        assert isinstance(ping, SendPing)
        payloads.append(ping.payload)
        live.on_pong(ping.payload, second + 0.25)
    assert len(set(payloads)) == 200
    assert all(len(p) <= 125 for p in payloads)
    assert (live.pings_sent, live.pongs_matched, live.pongs_unmatched) == (200, 200, 0)


def test_ping_interval_none_never_pings() -> None:
    live = Liveness(LivenessConfig(ping_interval=None), now=0.0)
    assert live.next_deadline() == math.inf
    assert drain(live, 1e9) == []
    assert live.pings_sent == 0


# ------------------------------------------------------------------------------------ server pings


def test_server_ping_loss_fails_at_exactly_grace_times_cadence() -> None:
    config = LivenessConfig(ping_interval=None, server_ping_interval=2.0, server_ping_grace=1.5)
    live = Liveness(config, now=10.0)
    assert live.next_deadline() == 13.0
    for t in (11.0, 12.5, 14.0):
        assert drain(live, t) == []
        live.on_server_ping(t)
        assert live.next_deadline() == t + 3.0
    assert live.server_pings == 3
    assert drain(live, 17.0 - EPS) == []
    assert drain(live, 17.0) == [Fail("server_ping_lost", "no server ping for 3 s")]


def test_server_pings_do_not_count_as_pongs_or_data() -> None:
    config = LivenessConfig(ping_interval=2.0, ping_timeout=1.0, server_ping_interval=10.0, idle_timeout=5.0)
    live = Liveness(config, now=0.0)
    [ping] = drain(live, 2.0)
    assert isinstance(ping, SendPing)
    live.on_server_ping(2.5)
    assert drain(live, 3.0) == [Fail("ping_timeout", "no pong within 1 s")]

    live = Liveness(config, now=0.0)
    for t in (1.0, 2.0, 3.0, 4.0):
        live.on_server_ping(t)
        for action in drain(live, t):
            assert isinstance(action, SendPing), action
            live.on_pong(action.payload, t)
    assert live.pongs_matched == 2
    live.on_server_ping(5.0)
    assert drain(live, 5.0) == [Fail("idle", "no data for 5 s")]


# --------------------------------------------------------------------------------------- data idle


def test_data_idle_fails_at_exactly_idle_timeout_after_the_last_message() -> None:
    config = LivenessConfig(ping_interval=1.0, ping_timeout=0.5, idle_timeout=5.0)
    live = Liveness(config, now=0.0)
    live.on_data(2.0)
    # Pings and pongs keep flowing; they must not reset the data timer (nautilus NT3).
    for t in (1.0, 2.0, 3.0, 4.0, 5.0, 6.0):
        [ping] = drain(live, t)
        assert isinstance(ping, SendPing)
        live.on_pong(ping.payload, t + 0.1)
    assert live.next_deadline() == 7.0
    assert drain(live, 7.0 - EPS) == []
    assert drain(live, 7.0) == [Fail("idle", "no data for 5 s")]


def test_quiet_but_alive_stream_never_false_fires() -> None:
    live = Liveness(LivenessConfig(ping_interval=None, idle_timeout=5.0), now=0.0)
    t = 0.0
    for _ in range(10 * 60):  # ten minutes of a message every 4.99 s, polled at every deadline
        t += 4.99
        assert drain(live, live.next_deadline() - EPS) == []
        assert drain(live, t) == []
        live.on_data(t)
    assert live.next_deadline() == t + 5.0


# --------------------------------------------------------------------------------------------- E3


def test_unsolicited_pongs_are_counted_and_harmless() -> None:
    live = Liveness(LivenessConfig(ping_interval=5.0, ping_timeout=3.0), now=0.0)
    rng = random.Random(3)
    for i in range(1000):
        live.on_pong(rng.randbytes(rng.randrange(0, 126)), i / 1000)
    assert live.pongs_unmatched == 1000
    assert live.pongs_matched == 0
    assert live.last_rtt is None
    assert live.next_deadline() == 5.0
    [ping] = drain(live, 5.0)
    assert isinstance(ping, SendPing)
    assert drain(live, 8.0) == [Fail("ping_timeout", "no pong within 3 s")]


def test_duplicate_and_stale_pongs_do_not_clear_a_later_ping() -> None:
    live = Liveness(LivenessConfig(ping_interval=1.0, ping_timeout=0.5), now=0.0)
    [first] = drain(live, 1.0)
    assert isinstance(first, SendPing)
    live.on_pong(first.payload, 1.1)
    live.on_pong(first.payload, 1.2)  # duplicate
    assert (live.pongs_matched, live.pongs_unmatched) == (1, 1)
    assert live.last_rtt == pytest.approx(0.1)
    [second] = drain(live, 2.0)
    assert isinstance(second, SendPing)
    live.on_pong(first.payload, 2.1)  # stale answer to the first ping
    live.on_pong(b"", 2.2)
    assert (live.pongs_matched, live.pongs_unmatched) == (1, 3)
    assert drain(live, 2.5) == [Fail("ping_timeout", "no pong within 0.5 s")]


def test_a_pong_that_arrives_before_its_ping_does_not_pre_clear_it() -> None:
    live = Liveness(LivenessConfig(ping_interval=1.0, ping_timeout=0.5), now=0.0)
    [first] = drain(live, 1.0)
    assert isinstance(first, SendPing)
    live.on_pong(first.payload, 1.0)
    # A peer that guesses the next payload (the counter is predictable) gains nothing.
    guessed = (int.from_bytes(first.payload, "big") + 1).to_bytes(len(first.payload), "big")
    live.on_pong(guessed, 1.5)
    [second] = drain(live, 2.0)
    assert isinstance(second, SendPing)
    assert second.payload == guessed
    assert drain(live, 2.5) == [Fail("ping_timeout", "no pong within 0.5 s")]


# ------------------------------------------------------------------------------------ rule order


def test_rules_are_checked_in_the_documented_order() -> None:
    config = LivenessConfig(ping_interval=1.0, ping_timeout=1.0, server_ping_interval=1.0, idle_timeout=2.0)
    live = Liveness(config, now=0.0)
    [ping] = drain(live, 1.0)
    assert isinstance(ping, SendPing)
    # At t=2 the ping timed out, the server pings are lost and the data is idle: ping_timeout wins.
    assert live.poll(2.0) == Fail("ping_timeout", "no pong within 1 s")
    live.on_pong(ping.payload, 2.0)
    assert live.poll(2.0) == Fail("server_ping_lost", "no server ping for 1.5 s")
    live.on_server_ping(2.0)
    assert live.poll(2.0) == Fail("idle", "no data for 2 s")


def test_nothing_configured_means_no_deadline() -> None:
    live = Liveness(LivenessConfig(ping_interval=None), now=0.0)
    assert live.next_deadline() == math.inf
    assert live.poll(1e12) is None


# ---------------------------------------------------------------------------------- config checks


@pytest.mark.parametrize(
    "kwargs",
    [
        {"ping_interval": 0.0},
        {"ping_interval": -1.0},
        {"ping_interval": math.nan},
        {"ping_timeout": 0.0},
        {"ping_timeout": math.nan},
        {"server_ping_interval": 0.0},
        {"server_ping_interval": math.nan},
        {"server_ping_grace": 0.5},
        {"server_ping_grace": math.nan},
        {"idle_timeout": -2.0},
        {"idle_timeout": math.nan},
    ],
)
def test_invalid_config_is_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        LivenessConfig(**kwargs)


# ------------------------------------------------------------------------------------ properties

EVENTS = st.lists(
    st.tuples(
        st.floats(min_value=0.0, max_value=3.0, allow_nan=False),
        st.sampled_from(["pong_match", "pong_junk", "data", "server_ping", "nothing"]),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(
    ping_interval=st.one_of(st.none(), st.floats(min_value=0.01, max_value=5.0)),
    ping_timeout=st.floats(min_value=0.01, max_value=5.0),
    server_ping=st.one_of(st.none(), st.floats(min_value=0.01, max_value=5.0)),
    idle=st.one_of(st.none(), st.floats(min_value=0.01, max_value=5.0)),
    events=EVENTS,
)
def test_driving_the_policy_at_its_deadlines_always_makes_progress(
    ping_interval: float | None,
    ping_timeout: float,
    server_ping: float | None,
    idle: float | None,
    events: list[tuple[float, str]],
) -> None:
    """
    The shell sleeps until ``next_deadline()`` and polls: that must never spin (a deadline that
    does not move after a ``None`` poll), never fail early, and fail exactly at a rule's deadline.
    """
    config = LivenessConfig(
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        server_ping_interval=server_ping,
        idle_timeout=idle,
    )
    live = Liveness(config, now=0.0)
    now = 0.0
    outstanding: tuple[bytes, float] | None = None
    last_data = last_server_ping = 0.0
    for gap, kind in events:
        target = now + gap
        # Run every deadline before the next event, as the watchdog would.
        for _ in range(1000):
            deadline = live.next_deadline()
            if deadline > target:
                break
            now = max(now, deadline)
            action = live.poll(now)
            if isinstance(action, Fail):
                expected = {
                    "ping_timeout": outstanding[1] + ping_timeout if outstanding else None,
                    "server_ping_lost": last_server_ping + server_ping * 1.5 if server_ping else None,
                    "idle": last_data + idle if idle else None,
                }[action.kind]
                assert expected is not None
                assert now == pytest.approx(expected, abs=1e-9)
                return
            if isinstance(action, SendPing):
                assert outstanding is None
                outstanding = (action.payload, now)
            else:
                assert live.next_deadline() > now, "a None poll must move the deadline forward"
        else:
            raise AssertionError("the policy spun on one deadline")
        now = target
        if kind == "pong_match" and outstanding is not None:
            live.on_pong(outstanding[0], now)
            outstanding = None
        elif kind == "pong_junk":
            live.on_pong(b"junk", now)
        elif kind == "data":
            live.on_data(now)
            last_data = now
        elif kind == "server_ping":
            live.on_server_ping(now)
            last_server_ping = now
