"""pytest fixtures for the stratad integration tests.

  server         one stratad per test module (default flags), fresh data dir
  client         a keep-alive Client to `server`, new per test
  fresh_server   one stratad for this test only
  make_server    factory: make_server(args=[...], env={...}, data_dir=...,
                 start=True) -> StratadServer; all are killed at teardown
  sid / uid      fresh session / user ids

Every server is killed at teardown whatever happens. A server that died on
its own during a test (crash, sanitizer abort) turns teardown into an error
showing its log, and a failing test gets the tail of each server's log
attached to its report.
"""

import os
import signal

import pytest

import strata_testlib as tl


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than a few seconds")


def _require_binary():
    if not (os.path.isfile(tl.STRATAD) and os.access(tl.STRATAD, os.X_OK)):
        pytest.skip("stratad binary not found at %s (set STRATAD)" % tl.STRATAD)


def _check_not_crashed(srv):
    """Raise if the process ended without being asked to (crash, abort)."""
    if srv.proc is not None and srv.proc.poll() is not None and srv.proc.returncode != 0:
        rc = srv.proc.returncode
        if srv.exit_codes and srv.exit_codes[-1] == rc:
            return  # we stopped/killed it ourselves
        what = ("signal %s" % signal.Signals(-rc).name) if rc < 0 else ("exit %d" % rc)
        raise AssertionError("stratad died on its own (%s):\n%s" % (what, srv.log_tail(60)))


# A sanitizer build (cmake -DSTRATA_SANITIZE=ON) reports here; any report fails
# the test that owned the server, even one printed during shutdown.
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "WARNING: ThreadSanitizer", "ERROR: ThreadSanitizer")


class _Registry:
    def __init__(self):
        self.servers = []

    def teardown(self):
        errors = []
        for srv in self.servers:
            try:
                _check_not_crashed(srv)
            except AssertionError as e:
                errors.append(str(e))
            if srv.alive():
                rc = srv.stop()
                if rc not in (0, None):
                    # Graceful shutdown is tested on its own (test_health);
                    # here only a crash-like exit is an error.
                    if isinstance(rc, int) and rc < 0 and rc != -signal.SIGKILL:
                        errors.append("stratad exited with %s on SIGTERM:\n%s"
                                      % (rc, srv.log_tail(60)))
        for srv in self.servers:
            text = srv.log_text(all_runs=True)
            for marker in SANITIZER_MARKERS:
                if marker in text:
                    i = text.index(marker)
                    errors.append("sanitizer report in stratad's log:\n%s"
                                  % text[max(0, i - 200):i + 3000])
                    break
        self.servers = []
        if errors:
            raise AssertionError("\n\n".join(errors))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    _require_binary()
    reg = _Registry()
    d = tmp_path_factory.mktemp("stratad-mod")
    srv = tl.StratadServer(d / "data", log_dir=d)
    reg.servers.append(srv)
    try:
        srv.start()
        yield srv
    finally:
        reg.teardown()


@pytest.fixture
def client(server):
    c = server.client()
    yield c
    c.close()


@pytest.fixture
def make_server(tmp_path, request):
    """Factory for servers with custom flags; all are stopped at teardown."""
    _require_binary()
    reg = _Registry()
    request.node.strata_servers = reg.servers
    counter = [0]

    def factory(args=None, env=None, data_dir=None, start=True, **kw):
        counter[0] += 1
        base = tmp_path / ("srv%d" % counter[0])
        base.mkdir(exist_ok=True)
        srv = tl.StratadServer(data_dir if data_dir is not None else base / "data",
                               args=args, env=env, log_dir=base, **kw)
        reg.servers.append(srv)
        if start:
            srv.start()
        return srv

    try:
        yield factory
    finally:
        reg.teardown()


@pytest.fixture
def fresh_server(make_server):
    return make_server()


@pytest.fixture
def sid():
    return tl.unique_id("sess")


@pytest.fixture
def uid():
    return tl.unique_id("user")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.when != "call" or not rep.failed:
        return
    seen = set()
    cands = []
    funcargs = getattr(item, "funcargs", {}) or {}
    srv = funcargs.get("server")
    if isinstance(srv, tl.StratadServer):
        cands.append(("server", srv))
    for i, srv in enumerate(list(getattr(item, "strata_servers", []) or [])):
        cands.append(("server #%d" % (i + 1), srv))
    for label, srv in cands:
        if id(srv) not in seen:
            seen.add(id(srv))
            rep.sections.append(("stratad log (%s)" % label, srv.log_tail(40)))
