"""The command line, run as a user would: a subprocess."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys

import pytest

BACKENDS = ["asyncio", "trio"] if importlib.util.find_spec("trio") else ["asyncio"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_demo_streams_heals_a_server_restart_and_exits_cleanly(backend: str):
    result = subprocess.run(
        [sys.executable, "-m", "native_anyio", "demo", "--count", "10", "--backend", backend],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    trades = [line for line in lines if line.startswith("trade.SOL_USDC")]
    assert len(trades) == 10
    assert all(re.search(r"#\d+\s+(buy|sell)\s+[\d.]+ @ [\d.]+$", t) for t in trades)
    # The server restarts after half the trades: the session reports the break and reconnects.
    assert any("Disconnected" in line and "going_away" in line for line in lines)
    assert sum("Connected(connection_id=" in line for line in lines) == 2
    assert lines[-1].startswith("-- 10 messages, 1 reconnect(s), health: ok")
    assert result.stderr == ""


def test_unknown_command_fails_with_usage():
    result = subprocess.run(
        [sys.executable, "-m", "native_anyio", "nope"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "usage: native-anyio" in result.stderr
