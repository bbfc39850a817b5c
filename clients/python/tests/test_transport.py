"""The HTTP/1.1 transport against scripted servers: framing, keep-alive, retries,
timeouts, cancellation, TLS, limits. No stratad needed."""

from __future__ import annotations

import asyncio
import builtins
import json
import shutil
import ssl
import subprocess
import time

import pytest

from client_testlib import FakeServer, Request, free_port, response, run

import strata_client as sc
from strata_client import StrataClient


async def ok_json(req: Request) -> bytes:
    return response(200, json.dumps({"method": req.method, "target": req.target}))


def test_request_head_and_json_roundtrip() -> None:
    async def main() -> None:
        async with FakeServer(ok_json) as srv:
            async with StrataClient(srv.url, api_key="k-123") as c:
                doc = await c.call("POST", "/v1/x", {"a": "é"})
                assert doc == {"method": "POST", "target": "/v1/x"}
                req = srv.requests[0]
                assert req.headers["host"] == "127.0.0.1:%d" % srv.port
                assert req.headers["authorization"] == "Bearer k-123"
                assert req.headers["content-type"] == "application/json"
                assert req.headers["accept"] == "application/json"
                assert req.headers["user-agent"].startswith("strata-client-python/")
                assert int(req.headers["content-length"]) == len(req.body)
                assert json.loads(req.body) == {"a": "é"}
                # A POST without a body still says Content-Length: 0.
                await c.call("POST", "/v1/y")
                assert srv.requests[1].headers["content-length"] == "0"
                assert "authorization" in srv.requests[1].headers
    run(main())


def test_chunked_response_then_keepalive() -> None:
    async def responder(req: Request) -> list[bytes]:
        body = json.dumps({"n": req.seq_on_conn, "pad": "x" * 300}).encode()
        parts = [b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n"]
        for i in range(0, len(body), 100):
            piece = body[i:i + 100]
            parts.append(b"%x;ext=1\r\n" % len(piece) + piece + b"\r\n")
        parts.append(b"0\r\nX-Trailer: yes\r\n\r\n")
        return parts

    async def main() -> None:
        async with FakeServer(responder) as srv:
            async with StrataClient(srv.url) as c:
                for n in (1, 2, 3):
                    doc = await c.call("GET", "/chunked")
                    assert doc["n"] == n and len(doc["pad"]) == 300
                assert srv.connections == 1
    run(main())


def test_body_until_close_http10() -> None:
    async def responder(req: Request) -> bytes:
        return (b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n"
                b'{"old": true}')

    async def main() -> None:
        srv = FakeServer(responder, close_after=True)
        async with srv:
            async with StrataClient(srv.url) as c:
                assert await c.call("GET", "/a") == {"old": True}
                assert await c.call("GET", "/b") == {"old": True}
                assert srv.connections == 2
                assert c.transport.idle_connections == 0
    run(main())


def test_keepalive_reuses_one_connection() -> None:
    async def main() -> None:
        async with FakeServer(ok_json) as srv:
            async with StrataClient(srv.url) as c:
                for i in range(25):
                    await c.call("GET", "/v1/jobs/j%d" % i)
                assert srv.connections == 1
                assert c.transport.connections_opened == 1
                assert c.transport.requests_sent == 25
    run(main())


def test_connection_close_header_is_honoured() -> None:
    async def responder(req: Request) -> bytes:
        return response(200, "{}", {"Connection": "close"})

    async def main() -> None:
        async with FakeServer(responder) as srv:
            async with StrataClient(srv.url) as c:
                for _ in range(3):
                    await c.call("GET", "/x")
                assert srv.connections == 3
    run(main())


def test_stale_connection_retried_for_idempotent_only() -> None:
    # The server answers the first request of each connection, and closes the
    # connection without answering the second: what a server closing an idle
    # keep-alive connection looks like from the client.
    async def responder(req: Request) -> bytes | None:
        if req.seq_on_conn >= 2:
            return None
        return response(200, json.dumps({"conn": req.conn_no}))

    async def main() -> None:
        async with FakeServer(responder) as srv:
            async with StrataClient(srv.url) as c:
                assert await c.call("GET", "/a") == {"conn": 1}
                # GET on the reused connection fails before any answer: resent once.
                assert await c.call("GET", "/b") == {"conn": 2}
                assert [r.target for r in srv.requests] == ["/a", "/b", "/b"]
                # POST is never resent: it may have been applied.
                with pytest.raises(sc.ConnectionError) as ei:
                    await c.call("POST", "/c", {"x": 1})
                assert isinstance(ei.value, builtins.ConnectionError)
                assert [r.target for r in srv.requests].count("/c") == 1
                # The client recovers: a new connection for the next request.
                assert await c.call("POST", "/d", {}) == {"conn": 3}
    run(main())


def test_idle_connection_closed_by_server_is_not_used() -> None:
    async def responder(req: Request) -> bytes:
        return response(200, "{}")

    async def main() -> None:
        srv = FakeServer(responder, close_after=True)  # closes after each answer, no header
        async with srv:
            async with StrataClient(srv.url) as c:
                await c.call("POST", "/a", {})
                await asyncio.sleep(0.05)  # the FIN arrives while the socket is idle
                await c.call("POST", "/b", {})  # a POST: works because the pool saw the close
                assert srv.connections == 2
    run(main())


def test_timeout_then_recovery() -> None:
    async def responder(req: Request) -> bytes:
        if req.target == "/slow":
            await asyncio.sleep(30)
        return response(200, '{"fast": true}')

    async def main() -> None:
        async with FakeServer(responder) as srv:
            async with StrataClient(srv.url, timeout=0.2) as c:
                t0 = time.monotonic()
                with pytest.raises(sc.Timeout) as ei:
                    await c.call("GET", "/slow")
                assert time.monotonic() - t0 < 2
                assert ei.value.code == "timeout"
                assert isinstance(ei.value, builtins.TimeoutError)
                # The timed-out connection was dropped, not reused.
                assert await c.call("GET", "/fast") == {"fast": True}
                assert srv.connections == 2
                # A per-call timeout overrides the client's.
                resp = await c.request("GET", "/fast", timeout=None)
                assert resp.status == 200
    run(main())


def test_connection_refused() -> None:
    port = free_port()

    async def main() -> None:
        async with StrataClient("http://127.0.0.1:%d" % port, timeout=2) as c:
            with pytest.raises(sc.ConnectionError) as ei:
                await c.healthz()
            assert ei.value.code == "connection_refused"
            assert ei.value.status is None
            assert isinstance(ei.value, builtins.ConnectionError)
            assert isinstance(ei.value, sc.StrataError)
    run(main())


def test_error_statuses_map_to_exceptions() -> None:
    table = {
        "/400": (400, sc.BadRequest), "/401": (401, sc.Unauthorized),
        "/403": (403, sc.Forbidden), "/404": (404, sc.NotFound),
        "/405": (405, sc.MethodNotAllowed), "/409": (409, sc.Conflict),
        "/413": (413, sc.PayloadTooLarge), "/415": (415, sc.UnsupportedMediaType),
        "/422": (422, sc.Unprocessable), "/429": (429, sc.RateLimited),
        "/500": (500, sc.ServerError), "/503": (503, sc.ServiceUnavailable),
        "/418": (418, sc.StrataError),
    }

    async def responder(req: Request) -> bytes:
        status = int(req.target[1:])
        headers = {"Retry-After": "2"} if status in (429, 503) else {}
        if status == 405:
            headers["Allow"] = "GET, PUT"
        return response(status, json.dumps({"error": {"code": "c%d" % status,
                                                      "message": "m%d" % status}}), headers)

    async def main() -> None:
        async with FakeServer(responder) as srv:
            async with StrataClient(srv.url) as c:
                for path, (status, cls) in table.items():
                    with pytest.raises(cls) as ei:
                        await c.call("GET", path)
                    e = ei.value
                    assert type(e) is cls
                    assert (e.status, e.code, e.message) == (status, "c%d" % status,
                                                             "m%d" % status)
                    if status in (429, 503):
                        assert e.retry_after == 2.0  # type: ignore[attr-defined]
                    if status == 405:
                        assert e.allow == ["GET", "PUT"]  # type: ignore[attr-defined]
                assert srv.connections == 1  # error answers keep the connection
    run(main())


def test_non_json_error_body() -> None:
    async def responder(req: Request) -> bytes:
        return response(502, "<html>bad gateway</html>", content_type="text/html")

    async def main() -> None:
        async with FakeServer(responder) as srv:
            async with StrataClient(srv.url) as c:
                with pytest.raises(sc.ServerError) as ei:
                    await c.call("GET", "/")
                assert ei.value.code == "http_502"
                assert "bad gateway" in ei.value.message
    run(main())


def test_interim_100_continue_is_skipped() -> None:
    async def responder(req: Request) -> bytes:
        return b"HTTP/1.1 100 Continue\r\n\r\n" + response(201, '{"made": 1}')

    async def main() -> None:
        async with FakeServer(responder) as srv:
            async with StrataClient(srv.url) as c:
                assert await c.call("POST", "/x", {}) == {"made": 1}
    run(main())


@pytest.mark.parametrize("raw, code", [
    (b"HELLO WORLD\r\n\r\n", "bad_response"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", "truncated_response"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad_response"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", "bad_response"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\nab", "bad_response"),
    (b"HTTP/1.1 200 OK\r\nbroken header\r\n\r\n", "bad_response"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nnope!", "bad_json"),
])
def test_protocol_errors(raw: bytes, code: str) -> None:
    async def responder(req: Request) -> list[bytes]:
        return [raw]

    async def main() -> None:
        srv = FakeServer(responder, close_after=True)
        async with srv:
            async with StrataClient(srv.url) as c:
                with pytest.raises(sc.ProtocolError) as ei:
                    await c.call("GET", "/")
                assert ei.value.code == code
    run(main())


def test_response_size_limit() -> None:
    async def responder(req: Request) -> bytes:
        return response(200, json.dumps({"x": "y" * 5000}))

    async def main() -> None:
        async with FakeServer(responder) as srv:
            async with StrataClient(srv.url, max_response_bytes=1000) as c:
                with pytest.raises(sc.ProtocolError) as ei:
                    await c.call("GET", "/")
                assert ei.value.code == "response_too_large"
    run(main())


def test_max_connections_bounds_sockets() -> None:
    async def responder(req: Request) -> bytes:
        await asyncio.sleep(0.02)
        return response(200, json.dumps({"t": req.target}))

    async def main() -> None:
        async with FakeServer(responder) as srv:
            async with StrataClient(srv.url, max_connections=3) as c:
                docs = await asyncio.gather(*(c.call("GET", "/r%d" % i) for i in range(40)))
                assert [d["t"] for d in docs] == ["/r%d" % i for i in range(40)]
                assert srv.max_open <= 3
                assert c.transport.connections_opened <= 3
                assert c.transport.idle_connections <= 3
    run(main())


def test_cancelled_request_does_not_poison_the_pool() -> None:
    async def responder(req: Request) -> bytes:
        if req.target == "/slow":
            await asyncio.sleep(30)
        return response(200, json.dumps({"t": req.target}))

    async def main() -> None:
        async with FakeServer(responder) as srv:
            async with StrataClient(srv.url, max_connections=1) as c:
                task = asyncio.ensure_future(c.call("GET", "/slow"))
                await asyncio.sleep(0.1)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                # The single slot was released and the half-used socket dropped.
                assert await c.call("GET", "/next") == {"t": "/next"}
                assert srv.connections == 2
    run(main())


def test_closed_client_refuses_requests() -> None:
    async def main() -> None:
        async with FakeServer(ok_json) as srv:
            c = StrataClient(srv.url)
            await c.call("GET", "/")
            await c.close()
            assert c.closed
            with pytest.raises(sc.ConnectionError) as ei:
                await c.call("GET", "/")
            assert ei.value.code == "client_closed"
    run(main())


def test_client_survives_a_new_event_loop() -> None:
    holder: dict[str, StrataClient] = {}

    async def first() -> None:
        async with FakeServer(ok_json) as srv:
            c = holder["c"] = StrataClient(srv.url)
            await c.call("GET", "/1")
            assert c.transport.idle_connections == 1

    async def second() -> None:
        # The first loop is gone; its pooled socket is useless here.
        srv = FakeServer(ok_json)
        async with srv:
            c = holder["c"]
            c.transport.port = srv.port
            assert (await c.call("GET", "/2"))["target"] == "/2"
            await c.close()

    run(first())
    run(second())


def test_base_url_prefix_query_and_quoting() -> None:
    async def main() -> None:
        async with FakeServer(ok_json) as srv:
            async with StrataClient(srv.url + "/strata/") as c:
                mem = sc.LongTermMemory(c)
                await mem.query_subgraph("user:u 1", 3, types=["A", "B"], direction="out",
                                         limit=10, as_of=5)
                t = srv.requests[-1].target
                assert t == ("/strata/v1/graph/subgraph?center=user:u%201&depth=3&types=A,B"
                             "&direction=out&limit=10&as_of=5")
                st = sc.ShortTermMemory(c)
                await st.put("a/b c?", 1)
                assert srv.requests[-1].target == "/strata/v1/kv/l1/a%2Fb%20c%3F"
    run(main())


def test_bad_options() -> None:
    with pytest.raises(ValueError):
        StrataClient("ftp://x")
    with pytest.raises(ValueError):
        StrataClient("http://")
    with pytest.raises(ValueError):
        StrataClient(api_key="a\r\nX-Evil: 1")
    with pytest.raises(ValueError):
        StrataClient(max_connections=0)
    with pytest.raises(ValueError):
        StrataClient(timeout=0)


def test_nan_is_refused_before_sending() -> None:
    async def main() -> None:
        async with FakeServer(ok_json) as srv:
            async with StrataClient(srv.url) as c:
                with pytest.raises(ValueError):
                    await sc.ShortTermMemory(c).put("k", float("nan"))
                assert srv.requests == []
    run(main())


def test_wait_job_times_out() -> None:
    async def responder(req: Request) -> bytes:
        return response(200, json.dumps({"job_id": "j1", "kind": "distill",
                                         "status": "running", "attempts": 1}))

    async def main() -> None:
        async with FakeServer(responder) as srv:
            async with sc.MemoryOrchestrator(base_url=srv.url) as m:
                with pytest.raises(sc.Timeout) as ei:
                    await m.wait_job("j1", timeout=0.3)
                assert ei.value.code == "job_timeout"
    run(main())


# ---- TLS ---------------------------------------------------------------------------
def _make_cert(tmp_path, name: str) -> tuple[str, str]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not available to make a test certificate")
    cert = str(tmp_path / (name + ".crt"))
    key = str(tmp_path / (name + ".key"))
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=" + name, "-addext",
                    "subjectAltName=IP:127.0.0.1,DNS:localhost",
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    return cert, key


def test_tls_verification_options(tmp_path) -> None:
    cert, key = _make_cert(tmp_path, "server")
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(cert, key)

    async def main() -> None:
        async with FakeServer(ok_json, ssl=sctx) as srv:
            assert srv.url.startswith("https://")
            async with StrataClient(srv.url, timeout=5) as c:  # system CAs: rejected
                with pytest.raises(sc.ConnectionError) as ei:
                    await c.call("GET", "/")
                assert ei.value.code == "tls_error"
            async with StrataClient(srv.url, verify=False) as c:
                assert (await c.call("GET", "/a"))["target"] == "/a"
            async with StrataClient(srv.url, ca_file=cert) as c:
                for _ in range(3):
                    assert (await c.call("GET", "/b"))["target"] == "/b"
                assert c.transport.connections_opened == 1
    run(main())


def test_tls_client_certificate(tmp_path) -> None:
    cert, key = _make_cert(tmp_path, "server")
    ccert, ckey = _make_cert(tmp_path, "client")
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(cert, key)
    sctx.verify_mode = ssl.CERT_REQUIRED
    sctx.load_verify_locations(ccert)

    async def main() -> None:
        async with FakeServer(ok_json, ssl=sctx) as srv:
            async with StrataClient(srv.url, ca_file=cert, cert_file=ccert,
                                    key_file=ckey) as c:
                assert (await c.call("GET", "/m"))["target"] == "/m"
            async with StrataClient(srv.url, ca_file=cert, timeout=5) as c:
                with pytest.raises(sc.ConnectionError):
                    await c.call("GET", "/m")
            custom = ssl.create_default_context(cafile=cert)
            custom.load_cert_chain(ccert, ckey)
            async with StrataClient(srv.url, ssl_context=custom) as c:
                assert (await c.call("GET", "/n"))["target"] == "/n"
    run(main())

