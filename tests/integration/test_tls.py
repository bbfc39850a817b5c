"""HTTPS: stratad with --tls-cert/--tls-key against Python's ssl, the strata CLI,
curl and openssl s_client. TLS 1.3 is the floor unless --tls-min-version 1.2;
plain HTTP, garbage and stalled handshakes on the TLS port get no answer and
block nobody; keep-alive, pipelining and 1 MB bodies work over TLS; bad or
missing certificate files stop the start with a message naming the file; plain
HTTP off loopback needs --allow-plain-http.

Certificates are made at test time with the openssl tool (self-signed, valid
for 127.0.0.1 and localhost)."""

import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import time

import pytest

import strata_testlib as tl

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None,
                                reason="the openssl tool is needed to make certificates")

ADMIN = "admin-secret-for-tls-tests"
HOST = "127.0.0.1"


# ---- certificates and servers -----------------------------------------------------
def make_cert(d, name):
    cert = str(d / (name + ".crt"))
    key = str(d / (name + ".key"))
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj", "/CN=" + name,
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    return cert, key


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("certs")
    cert, key = make_cert(d, "server")
    other_cert, other_key = make_cert(d, "other")
    return {"cert": cert, "key": key, "other_key": other_key, "dir": d}


def client_context(cafile):
    ctx = ssl.create_default_context(cafile=cafile)
    return ctx


def wait_https(srv, cafile, timeout=tl.READY_TIMEOUT_S):
    """StratadServer.wait_ready, over HTTPS."""
    ctx = client_context(cafile)
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        rc = srv.proc.poll()
        if rc is not None:
            srv.exit_codes.append(rc)
            raise tl.ServerDied("stratad exited with %s:\n%s" % (rc, srv.log_tail()))
        try:
            conn = http.client.HTTPSConnection(HOST, srv.port, timeout=2, context=ctx)
            try:
                conn.request("GET", "/healthz")
                resp = conn.getresponse()
                resp.read()
                if resp.status == 200:
                    return srv
            finally:
                conn.close()
        except (OSError, http.client.HTTPException) as e:
            last = e
        time.sleep(0.05)
    raise TimeoutError("stratad (TLS) not ready: %s\n%s" % (last, srv.log_tail()))


@pytest.fixture
def tls_server(make_server, certs):
    """Factory: a started TLS stratad with extra args."""
    def factory(args=(), **kw):
        srv = make_server(args=["--tls-cert", certs["cert"], "--tls-key", certs["key"]]
                          + list(args), start=False, **kw)
        srv.start(wait=False)
        return wait_https(srv, certs["cert"])
    return factory


def https(srv, certs, timeout=tl.HTTP_TIMEOUT_S):
    return http.client.HTTPSConnection(HOST, srv.port, timeout=timeout,
                                       context=client_context(certs["cert"]))


def get_json(conn, method, path, body=None):
    headers = {"Content-Type": "application/json"} if body is not None else {}
    conn.request(method, path, body=body, headers=headers)
    resp = conn.getresponse()
    data = resp.read()
    return resp.status, (json.loads(data) if data else None)


def metric(srv, certs, name):
    conn = https(srv, certs)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def s_client(srv, *flags):
    p = subprocess.run(["openssl", "s_client", "-connect", "%s:%d" % (HOST, srv.port),
                        "-servername", "localhost"] + list(flags),
                       input="", capture_output=True, text=True, timeout=30)
    return p.returncode, p.stdout + p.stderr


def curl(srv, certs, *flags, path="/healthz"):
    if shutil.which("curl") is None:
        pytest.skip("curl not installed")
    p = subprocess.run(["curl", "-sS", "--max-time", "10", "--cacert", certs["cert"]]
                       + list(flags) + ["https://%s:%d%s" % (HOST, srv.port, path)],
                       capture_output=True, text=True, timeout=30)
    return p.returncode, p.stdout, p.stderr


def client_hello():
    """The bytes of a real TLS 1.3 ClientHello, for half-finished handshakes."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_side=False)
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return out.read()


def run_stratad(args, tmp_path, host=HOST):
    """Run stratad expecting it to refuse to start; returns (rc, stderr)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRATA_")}
    env["STRATA_EMBEDDER"] = "hash"
    p = subprocess.Popen([tl.STRATAD, "--host", host, "--port", str(tl.free_port()),
                          "--data-dir", str(tmp_path / "d")] + args,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        out, err = p.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        pytest.fail("stratad started instead of refusing: %s" % (out + err))
    return p.returncode, out + err


# ---- HTTPS works with every client ---------------------------------------------------
def test_python_ssl_requests_and_keepalive(tls_server, certs, sid, uid):
    srv = tls_server()
    before = metric(srv, certs, "strata_tls_handshakes_total")
    conn = https(srv, certs)
    try:
        st, body = get_json(conn, "POST", "/v1/sessions/%s/turns" % sid,
                            json.dumps({"user_id": uid, "role": "user", "content": "hello tls"}))
        assert st == 201, body
        sock = conn.sock
        assert sock.version() == "TLSv1.3"
        for _ in range(20):
            st, body = get_json(conn, "GET", "/v1/sessions/%s" % sid)
            assert st == 200 and body["buffer"][0]["content"] == "hello tls"
        assert conn.sock is sock, "keep-alive: every request on one TLS connection"
    finally:
        conn.close()
    after = metric(srv, certs, "strata_tls_handshakes_total")
    # This test's connection and the metrics probe: two handshakes, not 22.
    assert after - before == 2
    assert metric(srv, certs, "strata_tls_handshake_failures_total") is not None


def test_cli_cacert_insecure_and_env(tls_server, certs, sid, uid):
    srv = tls_server()
    url = "https://%s:%d" % (HOST, srv.port)
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRATA_")}

    def cli(*args, extra_env=None):
        e = dict(env, **(extra_env or {}))
        return subprocess.run([tl.STRATA_CLI] + list(args), capture_output=True, text=True,
                              timeout=30, env=e)

    p = cli("--url", url, "--cacert", certs["cert"], "turn", "add", sid, "--user", uid, "hi")
    assert p.returncode == 0, p.stderr
    p = cli("--url", url, "--cacert", certs["cert"], "--json", "session", "show", sid)
    assert p.returncode == 0 and json.loads(p.stdout)["buffer"][0]["content"] == "hi"
    # Unknown issuer: verification fails, the server is "unreachable" (exit 3).
    p = cli("--url", url, "health")
    assert p.returncode == 3 and "certificate" in p.stderr.lower(), p.stderr
    p = cli("--url", url, "--insecure", "health")
    assert p.returncode == 0, p.stderr
    p = cli("--url", url, "health", extra_env={"STRATA_CACERT": certs["cert"]})
    assert p.returncode == 0, p.stderr


def test_curl_with_cacert(tls_server, certs):
    srv = tls_server()
    rc, out, err = curl(srv, certs)
    assert rc == 0, err
    assert json.loads(out)["status"] == "ok"


def test_s_client_negotiates_tls13(tls_server, certs):
    srv = tls_server()
    rc, out = s_client(srv, "-tls1_3")
    assert "New, TLSv1.3" in out or "Protocol  : TLSv1.3" in out, out


# ---- protocol floor ------------------------------------------------------------------
def test_tls12_refused_by_default(tls_server, certs):
    srv = tls_server()
    rc, out = s_client(srv, "-tls1_2")
    assert "New, TLSv1.2" not in out and rc != 0, out
    assert "protocol version" in out or "alert" in out, out
    rc, out, err = curl(srv, certs, "--tls-max", "1.2")
    assert rc != 0 and out == "", (rc, out, err)
    # The server keeps serving.
    rc, out, err = curl(srv, certs)
    assert rc == 0, err
    assert metric(srv, certs, "strata_tls_handshake_failures_total") >= 2


def test_tls12_when_configured(tls_server, certs):
    srv = tls_server(["--tls-min-version", "1.2"])
    assert "minimum TLSv1.2" in srv.log_text()
    rc, out = s_client(srv, "-tls1_2")
    assert "New, TLSv1.2" in out or "Protocol  : TLSv1.2" in out, out
    assert "ECDHE" in out, "TLS 1.2 only with forward secrecy"
    rc, out, err = curl(srv, certs, "--tls-max", "1.2")
    assert rc == 0 and json.loads(out)["status"] == "ok", err
    rc, out = s_client(srv, "-tls1_3")
    assert "New, TLSv1.3" in out or "Protocol  : TLSv1.3" in out, out


def test_bad_min_version_refused(tmp_path, certs):
    rc, out = run_stratad(["--tls-cert", certs["cert"], "--tls-key", certs["key"],
                           "--tls-min-version", "1.1"], tmp_path)
    assert rc != 0 and "tls-min-version" in out


# ---- hostile and broken clients ------------------------------------------------------
def test_plain_http_to_tls_port_gets_no_http_answer(tls_server, certs):
    srv = tls_server()
    assert "listening on https://" in srv.log_text()
    status, reply = tl.raw_request(HOST, srv.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
                                   timeout=5, read_all=True)
    assert status is None and b"HTTP/1." not in reply, reply
    conn = https(srv, certs)
    try:
        assert get_json(conn, "GET", "/healthz")[0] == 200
    finally:
        conn.close()


def test_garbage_and_stalled_handshakes_block_nobody(tls_server, certs):
    # One event loop, so every connection shares it; a short request timeout
    # bounds the stalled handshakes.
    srv = tls_server(["--threads", "1", "--request-timeout-ms", "1500"])
    hello = client_hello()
    bad = []
    try:
        for i in range(4):
            s = socket.create_connection((HOST, srv.port), timeout=5)
            if i == 0:
                s.sendall(os.urandom(3000))         # not TLS at all
            elif i == 1:
                s.sendall(hello[:len(hello) // 2])  # half a ClientHello, then silence
            elif i == 2:
                s.sendall(hello)                    # the server answers; we never finish
            bad.append(s)                           # i == 3: connects, says nothing
        t0 = time.monotonic()
        conn = https(srv, certs, timeout=5)
        try:
            for _ in range(10):
                assert get_json(conn, "GET", "/healthz")[0] == 200
        finally:
            conn.close()
        assert time.monotonic() - t0 < 3, "stalled handshakes delayed a good client"
        # Every bad connection is closed, the stalled ones by the request timeout.
        for s in bad:
            assert tl.connection_closed(s, timeout=6)
    finally:
        for s in bad:
            s.close()
    assert metric(srv, certs, "strata_tls_handshake_failures_total") >= 4
    assert srv.alive()


def test_pipelined_requests_over_tls(tls_server, certs):
    srv = tls_server()
    ctx = client_context(certs["cert"])
    raw = socket.create_connection((HOST, srv.port), timeout=10)
    s = ctx.wrap_socket(raw, server_hostname=HOST)
    try:
        one = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        last = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        s.sendall(one * 9 + last)
        reply = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            reply += chunk
    finally:
        s.close()
    assert reply.count(b"HTTP/1.1 200 OK") == 10, reply[:400]
    assert reply.count(b'"status":"ok"') == 10
    assert reply.count(b"Connection: close") == 1


def read_until_closed(s):
    reply = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return reply
        reply += chunk


def test_pipelined_input_buffered_inside_openssl(tls_server, certs):
    """60 requests (12 KB) in one TLS record: the server's first read takes 4 KB,
    the rest waits decrypted inside OpenSSL with nothing left on the socket, so
    only the io_ready path can serve them."""
    srv = tls_server(["--threads", "1"])
    ctx = client_context(certs["cert"])
    s = ctx.wrap_socket(socket.create_connection((HOST, srv.port), timeout=10),
                        server_hostname=HOST)
    try:
        pad = "a" * 150
        reqs = [("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: %s\r\n%s\r\n"
                 % (pad, "Connection: close\r\n" if i == 59 else "")).encode()
                for i in range(60)]
        data = b"".join(reqs)
        assert 8192 < len(data) < 16384
        s.sendall(data)   # one write: one record
        reply = read_until_closed(s)
    finally:
        s.close()
    assert reply.count(b"HTTP/1.1 200 OK") == 60, reply[-300:]


def test_backpressure_then_resume_over_tls(tls_server, certs):
    """Pipelined 1 MB responses the client does not read at first: the server
    waits in WRITE, then serves the rest once the client reads."""
    srv = tls_server(["--threads", "1"])
    conn = https(srv, certs, timeout=30)
    try:
        conn.request("PUT", "/v1/kv/l1/bp", body=json.dumps("y" * 900000).encode(),
                     headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        r.read()
        assert r.status in (200, 201, 204)
    finally:
        conn.close()
    ctx = client_context(certs["cert"])
    s = ctx.wrap_socket(socket.create_connection((HOST, srv.port), timeout=30),
                        server_hostname=HOST)
    try:
        one = b"GET /v1/kv/l1/bp HTTP/1.1\r\nHost: x\r\n\r\n"
        last = b"GET /v1/kv/l1/bp HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        s.sendall(one * 5 + last)
        time.sleep(1.0)   # let the server fill the socket buffers and wait
        reply = read_until_closed(s)
    finally:
        s.close()
    assert reply.count(b"HTTP/1.1 200 OK") == 6
    assert len(reply) > 6 * 900000


def test_one_megabyte_body_both_ways(tls_server, certs):
    srv = tls_server()
    value = "x" * (1000 * 1000)
    body = json.dumps(value).encode()
    conn = https(srv, certs, timeout=30)
    try:
        conn.request("PUT", "/v1/kv/l1/big", body=body,
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        assert resp.status in (200, 201, 204), resp.read()[:300]
        resp.read()
        conn.request("GET", "/v1/kv/l1/big")
        resp = conn.getresponse()
        data = resp.read()
        assert resp.status == 200
        assert json.loads(data) == value   # GET returns the stored document itself
    finally:
        conn.close()


# ---- start-up rules -------------------------------------------------------------------
def test_cert_without_key_refused(tmp_path, certs):
    rc, out = run_stratad(["--tls-cert", certs["cert"]], tmp_path)
    assert rc != 0 and certs["cert"] in out and "--tls-key" in out, out
    rc, out = run_stratad(["--tls-key", certs["key"]], tmp_path)
    assert rc != 0 and certs["key"] in out and "--tls-cert" in out, out


def test_missing_unusable_and_mismatched_files_refused(tmp_path, certs):
    missing = str(tmp_path / "nope.crt")
    rc, out = run_stratad(["--tls-cert", missing, "--tls-key", certs["key"]], tmp_path)
    assert rc != 0 and missing in out and "No such file" in out, out
    rc, out = run_stratad(["--tls-cert", certs["cert"], "--tls-key", missing], tmp_path)
    assert rc != 0 and missing in out, out
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    rc, out = run_stratad(["--tls-cert", str(junk), "--tls-key", certs["key"]], tmp_path)
    assert rc != 0 and str(junk) in out, out
    rc, out = run_stratad(["--tls-cert", certs["cert"], "--tls-key", str(junk)], tmp_path)
    assert rc != 0 and str(junk) in out, out
    rc, out = run_stratad(["--tls-cert", certs["cert"], "--tls-key", certs["other_key"]],
                          tmp_path)
    assert rc != 0 and certs["other_key"] in out and "does not match" in out, out
    if os.geteuid() != 0:   # root reads anything
        unreadable = tmp_path / "secret.key"
        shutil.copy(certs["key"], unreadable)
        os.chmod(unreadable, 0)
        rc, out = run_stratad(["--tls-cert", certs["cert"], "--tls-key", str(unreadable)],
                              tmp_path)
        assert rc != 0 and str(unreadable) in out and "Permission denied" in out, out


def test_encrypted_key_refused_without_prompt(tmp_path, certs):
    enc = str(tmp_path / "enc.key")
    subprocess.run(["openssl", "pkey", "-in", certs["key"], "-aes256", "-passout", "pass:pw",
                    "-out", enc], check=True, capture_output=True)
    rc, out = run_stratad(["--tls-cert", certs["cert"], "--tls-key", enc], tmp_path)
    assert rc != 0 and enc in out, out


def test_plain_http_off_loopback_needs_allow_flag(tmp_path, make_server):
    rc, out = run_stratad(["--admin-key", ADMIN], tmp_path, host="0.0.0.0")
    assert rc != 0 and "plain HTTP" in out and "--allow-plain-http" in out, out
    srv = make_server(args=["--admin-key", ADMIN, "--allow-plain-http"], host="0.0.0.0")
    assert "listening on http://0.0.0.0" in srv.log_text()
    # The same through the environment.
    srv2 = make_server(args=["--admin-key", ADMIN], host="0.0.0.0",
                       env={"STRATA_ALLOW_PLAIN_HTTP": "true"})
    assert srv2.alive()


def test_no_auth_rule_still_applies_with_tls(tmp_path, certs):
    rc, out = run_stratad(["--tls-cert", certs["cert"], "--tls-key", certs["key"]], tmp_path,
                          host="0.0.0.0")
    assert rc != 0 and "authentication" in out, out


def test_tls_off_loopback_starts(make_server, certs):
    srv = make_server(args=["--admin-key", ADMIN, "--tls-cert", certs["cert"],
                            "--tls-key", certs["key"]], host="0.0.0.0", start=False)
    srv.start(wait=False)
    wait_https(srv, certs["cert"])
    assert "listening on https://0.0.0.0" in srv.log_text()


def test_tls_settings_from_environment_and_config_file(make_server, certs, tmp_path):
    conf = tmp_path / "stratad.conf"
    conf.write_text("tls-min-version = 1.2\nallow-plain-http = false\n")
    srv = make_server(args=["--config", str(conf)], start=False,
                      env={"STRATA_TLS_CERT": certs["cert"], "STRATA_TLS_KEY": certs["key"]})
    srv.start(wait=False)
    wait_https(srv, certs["cert"])
    assert "listening on https://" in srv.log_text() and "minimum TLSv1.2" in srv.log_text()
