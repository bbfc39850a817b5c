"""Health, metrics, routing, keep-alive and process life cycle of stratad."""

import os
import re
import signal
import socket
import time

import pytest

import strata_testlib as tl


# ---- /healthz ----------------------------------------------------------------
def test_healthz(client):
    r = client.get("/healthz")
    assert r.status == 200
    assert r.header("Content-Type", "").startswith("application/json")
    assert r.json()["status"] == "ok"   # extra fields (version...) are allowed


def test_healthz_ignores_query_string(client):
    r = client.get("/healthz?verbose=1")
    assert r.status == 200
    assert r.json()["status"] == "ok"


def test_healthz_post_is_405(client):
    r = client.request("POST", "/healthz", body=b"{}")
    tl.assert_error(r, 405)
    allow = r.header("Allow")
    assert allow and "GET" in allow, "405 without a usable Allow header: %r" % allow


# ---- /metrics ----------------------------------------------------------------
def test_metrics_format(client):
    # Some traffic first, so per-route series exist.
    for _ in range(3):
        assert client.get("/healthz").status == 200
    sid = tl.unique_id()
    assert client.add_turn(sid, "u-metrics", "hello").status == 201
    r = client.metrics()
    assert r.status == 200
    assert r.header("Content-Type", "").startswith("text/plain"), r.header("Content-Type")
    text = r.body.decode("utf-8")
    lines = text.splitlines()
    for prefix in ("strata_http_requests_total",
                   "strata_http_request_duration_seconds_bucket",
                   "strata_l1_sessions"):
        assert any(l.startswith(prefix) for l in lines), "no %s line in:\n%s" % (prefix, text)
    samples = tl.parse_metrics(text)   # every line well-formed
    assert samples
    # TYPE lines are announced for the families we assert on.
    assert re.search(r"(?m)^# TYPE strata_http_requests_total counter$", text), text
    assert re.search(r"(?m)^# TYPE strata_http_request_duration_seconds histogram$", text), text


def test_metrics_counters_increase(client):
    before = tl.parse_metrics(client.metrics().body.decode())
    n = 7
    for _ in range(n):
        assert client.get("/healthz").status == 200
    after = tl.parse_metrics(client.metrics().body.decode())
    delta = (tl.metric_sum(after, "strata_http_requests_total")
             - tl.metric_sum(before, "strata_http_requests_total"))
    assert delta >= n, "requests_total grew by %s after %d requests" % (delta, n)


def test_metrics_per_route_labels(client):
    sid = tl.unique_id()
    client.add_turn(sid, "u-route", "x")
    client.get_session(sid)
    samples = tl.parse_metrics(client.metrics().body.decode())
    reqs = [(l, v) for n, l, v in samples if n == "strata_http_requests_total"]
    assert reqs
    # A route label distinguishes routes: at least two different values.
    label_sets = {tuple(sorted(l.items())) for l, _ in reqs}
    assert len(label_sets) >= 2, reqs
    # Route labels must be templates, not raw paths with ids (unbounded cardinality).
    for l, _ in reqs:
        for v in l.values():
            assert sid not in v, "session id leaked into a metric label: %r" % (l,)


def test_metrics_histograms_are_cumulative(client):
    for _ in range(5):
        client.get("/healthz")
    samples = tl.parse_metrics(client.metrics().body.decode())
    series = {}
    counts = {}
    for name, labels, value in samples:
        if name == "strata_http_request_duration_seconds_bucket":
            key = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
            le = float(labels["le"].replace("+Inf", "inf"))
            series.setdefault(key, []).append((le, value))
        elif name == "strata_http_request_duration_seconds_count":
            counts[tuple(sorted(labels.items()))] = value
    assert series
    for key, buckets in series.items():
        buckets.sort()
        assert buckets[-1][0] == float("inf"), "no +Inf bucket for %s" % (key,)
        vals = [v for _, v in buckets]
        assert vals == sorted(vals), "buckets not cumulative for %s: %s" % (key, buckets)
        if key in counts:
            assert counts[key] == vals[-1], "_count != +Inf bucket for %s" % (key,)


# ---- routing ------------------------------------------------------------------
@pytest.mark.parametrize("path", [
    "/", "/nope", "/v1", "/v1/", "/v1/sessions", "/v1/sessions/",
    "/v1/sessions/abc/turns/extra", "/v1/sessions/abc/unknown", "/v2/sessions/abc",
    "/v1/kv", "/v1/kv/l1", "/healthz/extra", "/v1/users/u1/nothing",
])
def test_unknown_route_404(client, path):
    r = client.get(path)
    tl.assert_error(r, 404)


@pytest.mark.parametrize("method,path,allowed", [
    ("DELETE", "/healthz", "GET"),
    ("PUT", "/healthz", "GET"),
    ("POST", "/metrics", "GET"),
    ("GET", "/v1/sessions/s1/turns", "POST"),
    ("PUT", "/v1/sessions/s1/turns", "POST"),
    ("POST", "/v1/sessions/s1", "GET"),
    ("GET", "/v1/sessions/s1/state", "PATCH"),
    ("POST", "/v1/sessions/s1/state", "PATCH"),
    ("GET", "/v1/sessions/s1/end", "POST"),
    ("POST", "/v1/users/u1/dirty", "GET"),
    ("POST", "/v1/kv/l1/k1", "PUT"),
    ("PATCH", "/v1/kv/l1/k1", "GET"),
    ("POST", "/v1/jobs/job-0000000000000001", "GET"),
])
def test_wrong_method_405(client, method, path, allowed):
    body = b"{}" if method in ("POST", "PUT", "PATCH") else None
    r = client.request(method, path, body=body)
    tl.assert_error(r, 405)
    allow = r.header("Allow")
    assert allow, "405 without an Allow header"
    methods = {m.strip() for m in allow.split(",")}
    assert allowed in methods, "Allow: %r should list %s" % (allow, allowed)
    assert method not in methods


def test_wrong_method_changes_nothing(client):
    sid = tl.unique_id()
    assert client.add_turn(sid, "u405", "one").status == 201
    before = tl.session_snapshot(client, sid)
    r = client.request("PUT", "/v1/sessions/%s/turns" % sid,
                       json_body={"user_id": "u405", "role": "user", "content": "two"})
    assert r.status == 405
    assert client.request("DELETE", "/v1/sessions/%s" % sid).status in (404, 405)
    assert tl.session_snapshot(client, sid) == before


def test_unknown_job_404(client):
    tl.assert_error(client.get_job("job-ffffffffffffffff"), 404)
    tl.assert_error(client.get_job("nonexistent"), (400, 404))


# ---- connections ----------------------------------------------------------------
def test_keep_alive_many_requests_one_connection(server):
    c = server.client()
    try:
        assert c.get("/healthz").status == 200
        port = c.local_port()
        sid = tl.unique_id()
        for i in range(300):
            if i % 3 == 0:
                r = c.get("/healthz")
                assert r.status == 200
            elif i % 3 == 1:
                r = c.add_turn(sid, "u-ka", "turn %d" % i)
                assert r.status == 201, r
            else:
                r = c.get_session(sid)
                assert r.status == 200
        # Error answers keep the connection too.
        assert c.get("/nope").status == 404
        assert c.get("/healthz").status == 200
        assert c.connections == 1, "client had to reconnect %d times" % (c.connections - 1)
        assert c.local_port() == port
    finally:
        c.close()


def test_pipelined_requests(server):
    """Three requests in one write; three answers in order."""
    req = (b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
           b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
           b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    _, reply = tl.raw_request(server.host, server.port, req, read_all=True)
    statuses = re.findall(rb"HTTP/1\.1 (\d{3})", reply)
    assert statuses == [b"200", b"404", b"200"], reply[:1000]


def test_connection_close_honoured(server):
    s = socket.create_connection((server.host, server.port), timeout=5)
    try:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert tl.connection_closed(s, timeout=5)
    finally:
        s.close()


def test_http10_closes_by_default(server):
    st, reply = tl.raw_request(server.host, server.port,
                               b"GET /healthz HTTP/1.0\r\n\r\n", read_all=True, timeout=5)
    assert st == 200, reply


def test_chunked_request_body(client, server):
    sid = tl.unique_id()
    body = b'{"user_id":"u-chunk","role":"user","content":"chunked hello"}'
    chunked = b""
    for i in range(0, len(body), 10):
        part = body[i:i + 10]
        chunked += b"%x\r\n%s\r\n" % (len(part), part)
    chunked += b"0\r\n\r\n"
    req = (b"POST /v1/sessions/%s/turns HTTP/1.1\r\nHost: x\r\n"
           b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
           b"Connection: close\r\n\r\n" % sid.encode()) + chunked
    st, reply = tl.raw_request(server.host, server.port, req, pieces=7)
    assert st == 201, reply
    r = client.get_session(sid)
    assert r.status == 200
    assert r.json()["buffer"][-1]["content"] == "chunked hello"


def test_request_split_into_tiny_pieces(server, client):
    sid = tl.unique_id()
    body = b'{"user_id":"u-slow","role":"user","content":"byte by byte"}'
    req = (b"POST /v1/sessions/%s/turns HTTP/1.1\r\nHost: x\r\n"
           b"Content-Type: application/json\r\nContent-Length: %d\r\n"
           b"Connection: close\r\n\r\n%s" % (sid.encode(), len(body), body))
    st, reply = tl.raw_request(server.host, server.port, req, pieces=3, delay=0.001)
    assert st == 201, reply
    assert client.get_session(sid).json()["state"]["turn_count"] == 1


def test_idle_timeout_closes_connection(make_server):
    srv = make_server(args=["--idle-timeout-ms", "300"])
    s = socket.create_connection((srv.host, srv.port), timeout=5)
    try:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.1)
        s.recv(65536)
        t0 = time.monotonic()
        assert tl.connection_closed(s, timeout=5), "idle connection not closed"
        assert time.monotonic() - t0 < 4
    finally:
        s.close()


def test_request_timeout_closes_half_sent_request(make_server):
    srv = make_server(args=["--request-timeout-ms", "400"])
    s = socket.create_connection((srv.host, srv.port), timeout=5)
    try:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")   # never finished
        assert tl.connection_closed(s, timeout=5), "slow request not timed out"
    finally:
        s.close()
    assert srv.client().get("/healthz").status == 200


def test_max_connections(make_server):
    srv = make_server(args=["--max-connections", "4", "--threads", "1"])
    socks = []
    try:
        for _ in range(4):
            s = socket.create_connection((srv.host, srv.port), timeout=5)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert tl.parse_status(s.recv(65536)) == 200
            socks.append(s)
        # The fifth is refused one way or another (closed, or a 503).
        extra = socket.create_connection((srv.host, srv.port), timeout=5)
        socks.append(extra)
        try:
            extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            data = extra.recv(65536)
        except (ConnectionResetError, BrokenPipeError, socket.timeout):
            data = b""
        st = tl.parse_status(data)
        assert st in (None, 503), "over-limit connection got %s" % st
    finally:
        for s in socks:
            s.close()
    # Once they are gone the server takes connections again.
    deadline = time.monotonic() + 5
    while True:
        try:
            with srv.client() as c:
                if c.get("/healthz").status == 200:
                    break
        except OSError:
            pass
        assert time.monotonic() < deadline, "server did not recover after max-connections"
        time.sleep(0.05)


# ---- life cycle ----------------------------------------------------------------
def test_readiness_line_and_sigterm_exit_zero(make_server):
    srv = make_server()
    assert srv.client().get("/healthz").status == 200
    assert "listening on http://%s:%d" % (srv.host, srv.port) in srv.log_text()
    rc = srv.stop()
    assert rc == 0, "SIGTERM exit code %r\n%s" % (rc, srv.log_tail())


def test_sigterm_with_open_keepalive_connection(make_server):
    srv = make_server()
    c = srv.client()
    assert c.get("/healthz").status == 200   # connection stays open, idle
    t0 = time.monotonic()
    rc = srv.stop()
    assert rc == 0, srv.log_tail()
    assert time.monotonic() - t0 < 5, "shutdown waited for idle keep-alive connections"
    c.close()


def test_sigint_also_graceful(make_server):
    srv = make_server()
    srv.proc.send_signal(signal.SIGINT)
    srv.proc.wait(timeout=15)
    assert srv.proc.returncode == 0


def test_env_configuration(make_server, tmp_path):
    port = tl.free_port()
    data = tmp_path / "envdata"
    srv = make_server(env={"STRATA_PORT": str(port), "STRATA_DATA_DIR": str(data),
                           "STRATA_BUFFER_TURNS": "3",
                           "STRATA_CONSOLIDATE_EVERY": "3"},
                      pass_port=False, pass_data_dir=False, port=port)
    c = srv.client()
    sid = tl.unique_id()
    for i in range(5):
        assert c.add_turn(sid, "u-env", "t%d" % i).status == 201
    buf = c.get_session(sid).json()["buffer"]
    assert [t["content"] for t in buf] == ["t2", "t3", "t4"]
    assert os.path.isdir(data) and os.listdir(data), "STRATA_DATA_DIR not used"


def test_config_file(make_server, tmp_path):
    port = tl.free_port()
    data = tmp_path / "cfgdata"
    cfg = tmp_path / "stratad.conf"
    cfg.write_text("# test config\nport = %d\ndata_dir = %s\n\n"
                   "buffer_turns = 2\nconsolidate_every = 2\n" % (port, data))
    srv = make_server(args=["--config", str(cfg)], pass_port=False, pass_data_dir=False,
                      port=port)
    c = srv.client()
    sid = tl.unique_id()
    for i in range(4):
        assert c.add_turn(sid, "u-cfg", "t%d" % i).status == 201
    assert [t["content"] for t in c.get_session(sid).json()["buffer"]] == ["t2", "t3"]
    assert os.path.isdir(data) and os.listdir(data)


def test_flag_overrides_env(make_server):
    srv = make_server(args=["--buffer-turns", "2", "--consolidate-every", "2"],
                      env={"STRATA_BUFFER_TURNS": "5"})
    c = srv.client()
    sid = tl.unique_id()
    for i in range(4):
        c.add_turn(sid, "u-prec", "t%d" % i)
    assert len(c.get_session(sid).json()["buffer"]) == 2


@pytest.mark.parametrize("args", [
    ["--fsync", "sometimes"],
    ["--port", "notaport"],
    ["--port", "70000"],
    ["--buffer-turns", "-1"],
    ["--no-such-flag"],
    ["--threads", "abc"],
])
def test_bad_flags_fail_fast(make_server, args):
    srv = make_server(args=args, start=False)
    srv.start(wait=False)
    try:
        rc = srv.proc.wait(timeout=10)
    except Exception:
        srv.kill()
        pytest.fail("stratad kept running with bad flags %s" % args)
    assert rc != 0 and rc > 0, "bad flags %s: exit %s" % (args, rc)
    assert srv.log_text().strip(), "no error message for bad flags"
    srv.exit_codes.append(rc)


def test_port_in_use_fails(make_server):
    a = make_server()
    b = make_server(start=False, port=a.port)
    b.start(wait=False)
    try:
        rc = b.proc.wait(timeout=10)
    except Exception:
        b.kill()
        pytest.fail("second stratad on a busy port did not exit")
    b.exit_codes.append(rc)
    assert rc > 0
    assert a.client().get("/healthz").status == 200


def test_second_server_on_same_data_dir_refused(make_server):
    a = make_server()
    b = make_server(start=False, data_dir=a.data_dir)
    b.start(wait=False)
    try:
        rc = b.proc.wait(timeout=10)
    except Exception:
        b.kill()
        pytest.fail("two stratad processes opened the same data dir")
    b.exit_codes.append(rc)
    assert rc > 0
    assert a.client().get("/healthz").status == 200


def test_access_log(make_server, tmp_path):
    path = tmp_path / "access.log"
    srv = make_server(args=["--access-log", str(path)])
    c = srv.client()
    c.get("/healthz")
    c.get("/nope")
    srv.stop()
    text = path.read_text()
    assert "/healthz" in text and "/nope" in text, text
    assert "404" in text
