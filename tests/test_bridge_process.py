"""
The blocking ``FeedHandler.run()`` stop paths, in a subprocess each: SIGINT and SIGTERM, with the
plain asyncio loop and with uvloop (2.4.1: its global uvloop policy plus the documented
``set_event_loop`` workaround for uvloop >= 0.22; 3.x: its ``Runner(loop_factory=uvloop...)``).
The simulator runs in a thread of the child process; the test sends the signal once trades flow
and asserts a clean, bounded exit: exit code 0, the runner task cancelled, the connection closed,
no pending task, and nothing on stderr (no ResourceWarning, no "never retrieved").
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("cryptofeed")

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import asyncio, sys
import anyio.from_thread
from cryptofeed import FeedHandler
from cryptofeed.defines import L2_BOOK, TRADES
from bridges.cryptofeed import CRYPTOFEED_3, BackpackFeed
from native_anyio.backpack import BackpackConfig
from native_anyio.backpack.simulator import SimulatorConfig, open_simulator

use_uvloop = sys.argv[1] == "uvloop"
seen = {}

async def on_trade(trade, receipt_timestamp):
    if not seen:
        seen["loop"] = type(asyncio.get_running_loop()).__module__
        seen["runner"] = feed._connections[-1]._runner
        print("READY", flush=True)
    seen["n"] = seen.get("n", 0) + 1

with anyio.from_thread.start_blocking_portal("asyncio") as portal:
    with portal.wrap_async_context_manager(open_simulator(SimulatorConfig(symbols=("SOL_USDC",), seed=3, update_rate=100.0))) as sim:
        feed = BackpackFeed(symbols=["SOL-USDC"], channels=[TRADES, L2_BOOK], callbacks={TRADES: on_trade},
                            backpack_config=BackpackConfig(rest_url=sim.rest_url, ws_url=sim.ws_url))
        fh = FeedHandler(config={"log": {"disabled": True}, "uvloop": use_uvloop})
        fh.add_feed(feed)
        if use_uvloop and not CRYPTOFEED_3:
            import uvloop
            asyncio.set_event_loop(uvloop.new_event_loop())  # cryptofeed 2.4.1 + uvloop >= 0.22 (issue #1099)
        fh.run()
        runner = seen["runner"]
        conn = feed._connections[-1]
        print("STOPPED", seen["loop"], runner.done(), runner.cancelled(), conn.is_open, conn.client is None, flush=True)
"""


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_blocking_run_stops_cleanly_on_signal(tmp_path, signum, loop):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "default", "PYTHONDEVMODE": ""}
    env.pop("PYTHONASYNCIODEBUG", None)
    proc = subprocess.Popen(
        [sys.executable, "-W", "default", str(script), loop],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = ""
        deadline = time.monotonic() + 60
        while "READY" not in line:
            assert time.monotonic() < deadline, "no trade within 60 s"
            line = proc.stdout.readline()
            assert line or proc.poll() is None, proc.stderr.read()
        sent = time.monotonic()
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=30)
        elapsed = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert elapsed < 10  # 2 x the session's close_timeout
    assert err == "", err
    stopped = next(line for line in out.splitlines() if line.startswith("STOPPED"))
    module, runner_done, runner_cancelled, is_open, client_gone = stopped.split()[1:]
    assert module.startswith("uvloop" if loop == "uvloop" else "asyncio")
    assert (runner_done, runner_cancelled, is_open, client_gone) == ("True", "True", "False", "True")
    assert not (tmp_path / "feedhandler.log").exists()
