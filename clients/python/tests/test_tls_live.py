"""The client against a real stratad serving HTTPS (--tls-cert/--tls-key): an
https:// base URL with ``ca_file`` or ``ssl_context``, keep-alive over TLS, the
tier objects and the orchestrator passing the TLS options through, and
verification failures mapped to ``tls_error``."""

from __future__ import annotations

import http.client
import os
import shutil
import ssl
import subprocess
import time

import pytest

from client_testlib import READY_TIMEOUT, STRATAD, Stratad, run, unique

import strata_client as sc
from strata_client import MemoryOrchestrator, ShortTermMemory, StrataClient

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None,
                                reason="the openssl tool is needed to make a certificate")


def _make_cert(d, name: str) -> tuple[str, str]:
    cert = str(d / (name + ".crt"))
    key = str(d / (name + ".key"))
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj", "/CN=" + name,
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    return cert, key


class TlsStratad(Stratad):
    """A Stratad serving HTTPS; readiness is probed over TLS."""

    def __init__(self, data_dir: str, cert: str, key: str) -> None:
        super().__init__(data_dir, ["--tls-cert", cert, "--tls-key", key])
        self.cert = cert

    @property
    def url(self) -> str:
        return "https://127.0.0.1:%d" % self.port

    def wait_ready(self) -> None:
        assert self.proc is not None
        ctx = ssl.create_default_context(cafile=self.cert)
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("stratad exited with %s:\n%s"
                                   % (self.proc.returncode, self.log_tail()))
            try:
                conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=2,
                                                   context=ctx)
                try:
                    conn.request("GET", "/healthz")
                    if conn.getresponse().status == 200:
                        return
                finally:
                    conn.close()
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("stratad (TLS) not ready:\n%s" % self.log_tail())


@pytest.fixture(scope="module")
def tls_stratad(tmp_path_factory: pytest.TempPathFactory):
    if not (os.path.isfile(STRATAD) and os.access(STRATAD, os.X_OK)):
        pytest.skip("no stratad binary at %s" % STRATAD)
    d = tmp_path_factory.mktemp("tls")
    cert, key = _make_cert(d, "server")
    srv = TlsStratad(str(d / "data"), cert, key)
    try:
        srv.start()
    except RuntimeError as e:
        srv.kill()
        pytest.fail("cannot start %s with TLS: %s" % (STRATAD, e))
    try:
        yield srv
    finally:
        srv.stop()


def test_https_with_ca_file_and_keepalive(tls_stratad: TlsStratad) -> None:
    async def main() -> None:
        async with StrataClient(tls_stratad.url, ca_file=tls_stratad.cert) as c:
            assert (await c.healthz())["status"] == "ok"
            before = await c.metric("strata_tls_handshakes_total")
            m = MemoryOrchestrator(c)
            sid, user = unique("sess"), unique("user")
            for i in range(10):
                await m.record_turn(sid, user, "user", "over tls %d" % i)
            session = await m.short.get_session(sid)
            assert session.buffer[-1].content == "over tls 9"
            assert c.transport.connections_opened == 1
            assert await c.metric("strata_tls_handshakes_total") == before
    run(main())


def test_https_with_ssl_context_and_options_passthrough(tls_stratad: TlsStratad) -> None:
    async def main() -> None:
        ctx = ssl.create_default_context(cafile=tls_stratad.cert)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        async with ShortTermMemory(base_url=tls_stratad.url, ssl_context=ctx) as st:
            key = unique("k")
            await st.put(key, {"secure": True})
            assert await st.get(key) == {"secure": True}
        async with MemoryOrchestrator(base_url=tls_stratad.url,
                                      ca_file=tls_stratad.cert) as m:
            assert await m.short.get(key) == {"secure": True}
    run(main())


def test_unverified_server_is_a_tls_error(tls_stratad: TlsStratad) -> None:
    async def main() -> None:
        async with StrataClient(tls_stratad.url, timeout=5) as c:  # system CAs only
            with pytest.raises(sc.ConnectionError) as ei:
                await c.healthz()
            assert ei.value.code == "tls_error"
        async with StrataClient(tls_stratad.url, verify=False) as c:
            assert (await c.healthz())["status"] == "ok"
        # Plain HTTP to the TLS port: no HTTP answer, a connection error.
        plain = tls_stratad.url.replace("https://", "http://")
        async with StrataClient(plain, timeout=5) as c:
            with pytest.raises((sc.ConnectionError, sc.ProtocolError)):
                await c.healthz()
    run(main())
