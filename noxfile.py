"""
The test matrix: ``nox`` runs tests (Python 3.10-3.13, with and without the trio extra), lint,
typing and the cryptofeed bridge. ``nox -s bench`` runs the benchmarks and ``nox -s reliability``
the long reliability figures (neither is a default session).

Interpreters: on a pyenv machine where only one version is active, the noxfile makes every
installed CPython 3.10-3.13 resolvable by setting PYENV_VERSION before nox looks them up.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import nox

PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
ROOT = Path(__file__).parent

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["tests", "lowest", "lint", "typing", "reliability-short", "bridge-2.4", "bridge-3.0"]

#: The reliability scenarios (tests marked ``reliability``: fault proxy, simulator, every loop)
#: run once, in ``reliability-short``, instead of in every cell of the matrix.
NOT_RELIABILITY = ("-m", "not reliability")
nox.options.error_on_missing_interpreters = True
nox.options.reuse_existing_virtualenvs = True


def _expose_pyenv_versions() -> None:
    if os.environ.get("PYENV_VERSION") or not shutil.which("pyenv"):
        return
    try:
        out = subprocess.run(
            ["pyenv", "versions", "--bare"], capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return
    installed = [v.strip() for v in out.splitlines() if re.fullmatch(r"3\.1[0-3]\.\d+", v.strip())]
    current = subprocess.run(["pyenv", "version-name"], capture_output=True, text=True).stdout.strip()
    ordered = [current] if current in installed else []
    ordered += [v for v in installed if v not in ordered]
    if ordered:
        os.environ["PYENV_VERSION"] = ":".join(ordered)


_expose_pyenv_versions()


@nox.session(python=PYTHONS)
@nox.parametrize("extras", ["asyncio", "trio"])
def tests(session: nox.Session, extras: str) -> None:
    """The test suite; ``extras=asyncio`` runs without trio installed."""
    if extras == "trio":
        session.install(".[test,trio]", "pytest-trio")
    else:
        session.install(".[test]")
        session.run(
            "python",
            "-c",
            "import importlib.util, sys; sys.exit(importlib.util.find_spec('trio') is not None)",
        )
    # Two workers: CI has two cores, and every test is independent (own servers on port 0).
    session.run("python", "-m", "pytest", *(session.posargs or ["-n", "2", *NOT_RELIABILITY]))


@nox.session(python="3.10")
def lowest(session: nox.Session) -> None:
    """The test suite against the lowest versions our dependency floors allow."""
    if session.venv_backend != "uv":
        session.skip("lowest-direct resolution needs uv")
    session.install("--resolution=lowest-direct", ".[test,trio]")
    session.run("python", "-m", "pytest", "-q", *(session.posargs or ["-n", "2", *NOT_RELIABILITY]))


@nox.session(python="3.12")
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("ruff>=0.8")
    session.run(
        "ruff", "check", "native_anyio", "tests", "benchmarks", "bridges", "reliability", "noxfile.py"
    )
    session.run(
        "ruff",
        "format",
        "--check",
        "native_anyio",
        "tests",
        "benchmarks",
        "bridges",
        "reliability",
        "noxfile.py",
    )


@nox.session(python="3.12")
def typing(session: nox.Session) -> None:
    """mypy --strict on the package."""
    # exceptiongroup: mypy checks for Python 3.10, where the code imports the backport.
    session.install(".[trio]", "mypy>=1.13", "exceptiongroup>=1.2")
    session.run("mypy", "native_anyio", "bridges")


@nox.session(python="3.11")
def bench(session: nox.Session) -> None:
    """The benchmark suite (``benchmarks/run.py``): quick unless given ``-- --full``."""
    session.install(".[bench]")
    session.run("python", "benchmarks/run.py", *(session.posargs or ["--quick"]))


@nox.session(name="reliability-short", python="3.11")
def reliability_short(session: nox.Session) -> None:
    """CI's short version of every reliability scenario, on asyncio, asyncio+uvloop and trio."""
    session.install(".[test,trio]")
    session.run("python", "-c", "import uvloop, trio")  # fail, never skip, when a loop is missing
    session.run("python", "-m", "pytest", "-m", "reliability", *(session.posargs or ["-n", "2"]))


@nox.session(python="3.11")
def reliability(session: nox.Session) -> None:
    """The reliability figures, full version, into RELIABILITY.md (``-- --short`` for CI's)."""
    session.install(".[test,trio]")
    args = session.posargs or ["--full"]
    session.run("python", "reliability/run.py", *args, "--out", "RELIABILITY.md")


# The cryptofeed bridge (bridges/). cryptofeed 2.4.1 (permissive licence) installs on Python < 3.13
# only, 3.0.1 (AGPL-3.0) on 3.13+ only; the `cryptofeed` extra picks the right one. `redis` is the
# client cryptofeed's Redis backends import (the scale-out test writes to a real redis-server).
BRIDGE_DEPS = (".[test,cryptofeed]", "redis>=4.5")


def _bridge(session: nox.Session) -> None:
    session.install(*BRIDGE_DEPS)
    # Fail (never skip) when cryptofeed is missing: the bridge tests importorskip it.
    session.run("python", "-c", "import cryptofeed.feedhandler, redis.asyncio")
    if not shutil.which("redis-server"):
        session.error("redis-server is not installed (Debian package redis-server)")
    tests = sorted(str(path.relative_to(ROOT)) for path in ROOT.glob("tests/test_bridge*.py"))
    session.run("python", "-m", "pytest", *tests, *session.posargs)


@nox.session(name="bridge-2.4", python="3.11")
def bridge_24(session: nox.Session) -> None:
    """The cryptofeed bridge against cryptofeed 2.4.1 (Python 3.11)."""
    _bridge(session)


@nox.session(name="bridge-3.0", python="3.13")
def bridge_30(session: nox.Session) -> None:
    """The cryptofeed bridge against cryptofeed 3.0.1 (Python 3.13)."""
    _bridge(session)
