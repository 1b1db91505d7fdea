"""
One pytest configuration for every test: each async test runs on asyncio and on trio.

Backends (the ``anyio_backend`` fixture, parametrized in ``pytest_generate_tests``):

* ``asyncio`` with debug mode, and ``trio`` when trio is installed: for ordinary tests;
* for tests marked ``@pytest.mark.uvloop``: ``asyncio-uvloop`` as well, when uvloop is installed
  (the reliability scenarios run on asyncio, asyncio+uvloop and trio);
* for tests marked ``@pytest.mark.virtual_time``: ``asyncio-autojump`` (asyncio on
  :class:`native_anyio.testing.VirtualClockEventLoop`) and ``trio-autojump`` (trio with
  ``MockClock(autojump_threshold=0)``). Both are built inside the fixture body so every test gets
  a fresh clock, and timing is asserted with exact virtual timestamps, never real sleeps.
"""

from __future__ import annotations

import importlib.util

import pytest

from native_anyio.testing import VirtualClockEventLoop

HAVE_TRIO = importlib.util.find_spec("trio") is not None
HAVE_UVLOOP = importlib.util.find_spec("uvloop") is not None

REAL_TIME = ["asyncio", "trio"] if HAVE_TRIO else ["asyncio"]
VIRTUAL_TIME = ["asyncio-autojump", "trio-autojump"] if HAVE_TRIO else ["asyncio-autojump"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "virtual_time: run on virtual-clock backends (asyncio-autojump, trio-autojump)"
    )
    config.addinivalue_line("markers", "asyncio_only: run on the asyncio backend only (the bridge)")
    config.addinivalue_line("markers", "uvloop: also run on asyncio with uvloop (when installed)")
    config.addinivalue_line(
        "markers", "reliability: the reliability scenarios (nox session reliability-short, not the matrix)"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "anyio_backend" not in metafunc.fixturenames:
        return
    if metafunc.definition.get_closest_marker("virtual_time"):
        params = VIRTUAL_TIME
    elif metafunc.definition.get_closest_marker("asyncio_only"):
        params = ["asyncio"]
    else:
        params = REAL_TIME
        if HAVE_UVLOOP and metafunc.definition.get_closest_marker("uvloop"):
            params = [*REAL_TIME, "asyncio-uvloop"]
    metafunc.parametrize("anyio_backend", params, indirect=True)


@pytest.fixture
def anyio_backend(request: pytest.FixtureRequest) -> object:
    name = request.param
    if name == "asyncio":
        return ("asyncio", {"debug": True})
    if name == "asyncio-uvloop":
        return ("asyncio", {"debug": True, "use_uvloop": True})
    if name == "asyncio-autojump":
        return ("asyncio", {"debug": True, "loop_factory": VirtualClockEventLoop})
    if name == "trio-autojump":
        from trio.testing import MockClock

        return ("trio", {"clock": MockClock(autojump_threshold=0)})
    return name
