"""Fixtures for the strata_client tests.

  stratad      one real ``stratad`` for the whole run (``$STRATAD``, default
               /work/main/build/stratad) on a free port, in a temporary data
               directory, ``--fsync no``; stopped at the end. Tests that need it
               are skipped, with the reason, when the binary is missing; the
               transport and error-mapping tests (fake servers) still run.
  make_stratad factory for extra servers a test may stop, pause or kill.
  url          the base URL of ``stratad``.
  uid          a fresh id factory (``uid("sess")`` -> ``sess-1f3a...``).

Helpers (``run``, ``pending_route``, ``FakeServer``...) are in client_testlib.py.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Iterator

import pytest

from client_testlib import STRATAD, Stratad, unique


def _require_stratad() -> None:
    if not (os.path.isfile(STRATAD) and os.access(STRATAD, os.X_OK)):
        pytest.skip("no stratad binary at %s: build it (cmake --build build --target "
                    "stratad) or set STRATAD" % STRATAD)


@pytest.fixture(scope="session")
def stratad(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stratad]:
    _require_stratad()
    d = tmp_path_factory.mktemp("stratad")
    srv = Stratad(str(d / "data"))
    try:
        srv.start()
    except RuntimeError as e:
        srv.kill()
        pytest.fail("cannot start %s: %s" % (STRATAD, e))
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def url(stratad: Stratad) -> str:
    return stratad.url


@pytest.fixture
def make_stratad(tmp_path: Any) -> Iterator[Callable[..., Stratad]]:
    _require_stratad()
    servers: list[Stratad] = []

    def factory(args: list[str] | None = None) -> Stratad:
        srv = Stratad(str(tmp_path / ("srv%d" % len(servers))), args)
        servers.append(srv)
        return srv.start()

    try:
        yield factory
    finally:
        for s in servers:
            s.stop()


@pytest.fixture
def uid() -> Callable[[str], str]:
    return unique
